/* Every difference between Lua 5.4 and Lua 5.1/LuaJIT lives here, so the
 * binding is written against 5.4 alone. */
#ifndef SEMSTORE_COMPAT_H
#define SEMSTORE_COMPAT_H

#include <lauxlib.h>
#include <lua.h>

#if LUA_VERSION_NUM >= 504
#define ss_newuserdata(L, size) lua_newuserdatauv((L), (size), 0)
#else
#define ss_newuserdata(L, size) lua_newuserdata((L), (size))
#endif

#if LUA_VERSION_NUM < 502
#define lua_rawlen(L, i) lua_objlen((L), (i))
#define luaL_setfuncs(L, l, n) luaL_register((L), NULL, (l))
#define luaL_setmetatable(L, name) (luaL_getmetatable((L), (name)), lua_setmetatable((L), -2))
#define luaL_testudata(L, i, name) ss_testudata((L), (i), (name))
static inline void *ss_testudata(lua_State *L, int i, const char *name) {
  void *p = lua_touserdata(L, i);
  if (!p || !lua_getmetatable(L, i)) return NULL;
  luaL_getmetatable(L, name);
  if (!lua_rawequal(L, -1, -2)) p = NULL;
  lua_pop(L, 2);
  return p;
}
#endif

#define SS_EXPORT __attribute__((visibility("default")))

#endif
