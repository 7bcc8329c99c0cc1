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
  if (err->status) {
    lua_pushinteger(L, err->status);
    lua_setfield(L, -2, "status");
  }
  luaL_setmetatable(L, SS_ERROR_MT);
}

int ss_push_fail(lua_State *L, const ss_error *err) {
  lua_pushnil(L);
  ss_push_error(L, err);
  return 2;
}

/* Adds prefix, field `key` of the table at 1, and suffix, when the field
 * is a string (or a number). The buffer owns the stack top, so the value
 * goes in through luaL_addvalue, never left on the stack under it. */
static void add_field(lua_State *L, luaL_Buffer *b, const char *key, const char *prefix, const char *suffix,
                      const char *fallback) {
  int present = lua_getfield(L, 1, key) != LUA_TNIL && lua_isstring(L, -1);
  if (!present) {
    lua_pop(L, 1);
    if (fallback) luaL_addstring(b, fallback);
    return;
  }
  lua_pop(L, 1);
  luaL_addstring(b, prefix);
  lua_getfield(L, 1, key);
  luaL_addvalue(b);
  luaL_addstring(b, suffix);
}

/* "postgres error 23505: duplicate key ... (detail: ...)", "qdrant error 404: Not found: ..." */
static int error_tostring(lua_State *L) {
  luaL_Buffer b;
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 1);
  luaL_buffinit(L, &b);
  add_field(L, &b, "kind", "", "", "semstore");
  luaL_addstring(&b, " error");
  add_field(L, &b, "code", " ", "", NULL);
  add_field(L, &b, "status", " ", "", NULL);
  luaL_addstring(&b, ": ");
  add_field(L, &b, "message", "", "", "?");
  add_field(L, &b, "detail", " (", ")", NULL);
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
