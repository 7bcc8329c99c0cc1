/* The Lua form of ss_error: a table with kind, message and the server's
 * fields, whose __tostring reads like a log line. */
#include "binding.h"

static void set_field(lua_State *L, const char *key, const char *value) {
  if (!*value) return;
  lua_pushstring(L, value);
  lua_setfield(L, -2, key);
}

void ss_push_error(lua_State *L, const ss_error *err) {
  lua_createtable(L, 0, 10);
  set_field(L, "kind", ss_error_kind_name(err->kind));
  set_field(L, "message", err->message);
  set_field(L, "code", err->code);
  set_field(L, "severity", err->severity);
  set_field(L, "detail", err->detail);
  set_field(L, "hint", err->hint);
  set_field(L, "constraint", err->constraint);
  set_field(L, "table", err->table);
  set_field(L, "column", err->column);
  set_field(L, "schema", err->schema);
  luaL_setmetatable(L, SS_ERROR_MT);
}

int ss_push_fail(lua_State *L, const ss_error *err) {
  lua_pushnil(L);
  ss_push_error(L, err);
  return 2;
}

/* "postgres error 23505: duplicate key ... (detail: ...)" */
static int error_tostring(lua_State *L) {
  luaL_Buffer b;
  luaL_checktype(L, 1, LUA_TTABLE);
  luaL_buffinit(L, &b);
  lua_getfield(L, 1, "kind");
  luaL_addstring(&b, lua_isstring(L, -1) ? lua_tostring(L, -1) : "semstore");
  lua_pop(L, 1);
  luaL_addstring(&b, " error");
  lua_getfield(L, 1, "code");
  if (lua_isstring(L, -1)) {
    luaL_addchar(&b, ' ');
    luaL_addstring(&b, lua_tostring(L, -1));
  }
  lua_pop(L, 1);
  luaL_addstring(&b, ": ");
  lua_getfield(L, 1, "message");
  luaL_addstring(&b, lua_isstring(L, -1) ? lua_tostring(L, -1) : "?");
  lua_pop(L, 1);
  lua_getfield(L, 1, "detail");
  if (lua_isstring(L, -1)) {
    luaL_addstring(&b, " (");
    luaL_addstring(&b, lua_tostring(L, -1));
    luaL_addchar(&b, ')');
  }
  lua_pop(L, 1);
  luaL_pushresult(&b);
  return 1;
}

/* core.error{kind=..., message=...}: gives a Lua-made error the same
 * metatable, so the Lua layer reports errors exactly like the C core. */
static int error_new(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 1);
  luaL_setmetatable(L, SS_ERROR_MT);
  return 1;
}

void ss_open_errors(lua_State *L) {
  luaL_newmetatable(L, SS_ERROR_MT);
  lua_pushcfunction(L, error_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_pushliteral(L, "semstore.error");
  lua_setfield(L, -2, "__name");
  lua_pop(L, 1);
  lua_pushcfunction(L, error_new);
  lua_setfield(L, -2, "error");
}
