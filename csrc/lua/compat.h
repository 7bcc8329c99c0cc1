/* Differences between Lua versions live here, so the binding is written
 * against Lua 5.4 alone. Lua 5.4 is the default build; LuaJIT 2.1
 * (OpenResty's, -DSEMSTORE_LUA=luajit) speaks the 5.1 API, which Debian's
 * lua-compat-5.3 header lifts to 5.3's, and the few 5.4 calls the binding
 * makes are defined below on top of it. */
#ifndef SEMSTORE_COMPAT_H
#define SEMSTORE_COMPAT_H

#include <stdint.h>
#include <stdio.h>

#include <lauxlib.h>
#include <lua.h>

#if LUA_VERSION_NUM == 501
#include <compat-5.3.h>

/* a userdata's one user value is its environment table: the binding only
 * ever stores tables there */
#define lua_newuserdatauv(L, size, nuv) ((void)(nuv), lua_newuserdata((L), (size)))
#define lua_getiuservalue(L, idx, n) ((void)(n), lua_getuservalue((L), (idx)))
#define lua_setiuservalue(L, idx, n) ((void)(n), lua_setuservalue((L), (idx)))
#define luaL_typeerror(L, arg, tname) luaL_typerror((L), (arg), (tname))
#define luaL_argexpected(L, cond, arg, tname) ((void)((cond) || luaL_typeerror((L), (arg), (tname))))

/* 5.4's integer arguments: 3.5 is refused, as 5.4 refuses it (LuaJIT's
 * own luaL_checkinteger would quietly take 3) */
static inline lua_Integer ss_checkinteger(lua_State *L, int arg) {
  int exact;
  lua_Integer v = lua_tointegerx(L, arg, &exact);
  if (!exact) {
    if (lua_isnumber(L, arg))
      luaL_argerror(L, arg, "number has no integer representation");
    else
      luaL_typeerror(L, arg, "number");
  }
  return v;
}
#define luaL_checkinteger(L, arg) ss_checkinteger((L), (arg))
#define luaL_optinteger(L, arg, def) (lua_isnoneornil((L), (arg)) ? (lua_Integer)(def) : ss_checkinteger((L), (arg)))

/* 5.1 keeps no main thread in the registry: the caller's own state, which
 * is the main one wherever the binding asks (the REPL's top level) */
static inline lua_State *ss_main_thread(lua_State *L) { return L; }

/* LuaJIT's numbers are doubles: an int8 beyond 2^53 becomes the exact
 * decimal string, one inside a number (the README's "64-bit integers
 * under LuaJIT") */
#define SS_EXACT_INT_MAX 9007199254740992LL
static inline void ss_pushint64(lua_State *L, int64_t v) {
  if (v >= -SS_EXACT_INT_MAX && v <= SS_EXACT_INT_MAX)
    lua_pushnumber(L, (lua_Number)v);
  else {
    char digits[24];
    lua_pushlstring(L, digits, (size_t)snprintf(digits, sizeof digits, "%lld", (long long)v));
  }
}
#else
#define ss_pushint64(L, v) lua_pushinteger((L), (lua_Integer)(v))
static inline lua_State *ss_main_thread(lua_State *L) {
  lua_State *main;
  lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_MAINTHREAD);
  main = lua_tothread(L, -1);
  lua_pop(L, 1);
  return main;
}
#endif

#define ss_newuserdata(L, size) lua_newuserdatauv((L), (size), 0)

/* the module exports luaopen_semstore_core and nothing else */
#define SS_EXPORT __attribute__((visibility("default")))

#endif
