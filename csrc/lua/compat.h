/* Differences between Lua versions live here, so the binding is written
 * against Lua 5.4 alone. Only 5.4 is built and tested today; LuaJIT for
 * OpenResty would add its definitions here (it also lacks 64-bit integers,
 * which the decoder relies on for int8). */
#ifndef SEMSTORE_COMPAT_H
#define SEMSTORE_COMPAT_H

#include <lauxlib.h>
#include <lua.h>

#if LUA_VERSION_NUM < 504
#error "semstore's binding needs Lua 5.4"
#endif

#define ss_newuserdata(L, size) lua_newuserdatauv((L), (size), 0)

/* the module exports luaopen_semstore_core and nothing else */
#define SS_EXPORT __attribute__((visibility("default")))

#endif
