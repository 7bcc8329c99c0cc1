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

/* the integers a Lua number holds exactly: all of int64 in 5.4, within
 * +-2^53 under LuaJIT */
#define SS_EXACT_INT_MAX 9007199254740992LL

#if LUA_VERSION_NUM == 501
#define SS_INT64_NUMBERS 0
#include <compat-5.3.h>

/* a userdata's one user value is its environment table: the binding only
 * ever stores tables there */
#define lua_newuserdatauv(L, size, nuv) ((void)(nuv), lua_newuserdata((L), (size)))
#define lua_getiuservalue(L, idx, n) ((void)(n), lua_getuservalue((L), (idx)))
#define lua_setiuservalue(L, idx, n) ((void)(n), lua_setuservalue((L), (idx)))
#define luaL_typeerror(L, arg, tname) luaL_typerror((L), (arg), (tname))
#define luaL_argexpected(L, cond, arg, tname) ((void)((cond) || luaL_typeerror((L), (arg), (tname))))

/* 5.4's luaL_checkinteger and luaL_optinteger: a number with a fraction
 * is an error (5.1's truncate it) */
static inline lua_Integer ss_checkinteger(lua_State *L, int arg) {
  int isnum;
  lua_Integer i = lua_tointegerx(L, arg, &isnum);
  if (!isnum) {
    if (lua_isnumber(L, arg)) luaL_argerror(L, arg, "number has no integer representation");
    else luaL_typeerror(L, arg, "number");
  }
  return i;
}
static inline lua_Integer ss_optinteger(lua_State *L, int arg, lua_Integer def) {
  return lua_isnoneornil(L, arg) ? def : ss_checkinteger(L, arg);
}
#undef luaL_checkinteger
#undef luaL_optinteger
#define luaL_checkinteger ss_checkinteger
#define luaL_optinteger ss_optinteger

/* 5.1 keeps no main thread in the registry: the caller's own state, which
 * is the main one wherever the binding asks (the REPL's top level) */
static inline lua_State *ss_main_thread(lua_State *L) { return L; }

/* LuaJIT's numbers are doubles: an int8 beyond 2^53 becomes the exact
 * decimal string, one inside a number (the README's "64-bit integers
 * under LuaJIT") */
static inline void ss_pushint64(lua_State *L, int64_t v) {
  if (v >= -SS_EXACT_INT_MAX && v <= SS_EXACT_INT_MAX)
    lua_pushnumber(L, (lua_Number)v);
  else {
    char digits[24];
    lua_pushlstring(L, digits, (size_t)snprintf(digits, sizeof digits, "%lld", (long long)v));
  }
}
#else
#define SS_INT64_NUMBERS 1
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
