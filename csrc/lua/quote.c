/* semstore.quote_ident(s) and semstore.quote_literal(s): s quoted by libpq
 * for SQL text, or nil and an input error when s is not text. */
#include "binding.h"
#include "pg_quote.h"

static int quote(lua_State *L, int as_ident) {
  ss_error err;
  luaL_Buffer b;
  size_t len, n;
  const char *s;
  char *out;
  /* a number would quote as its text form: name the type instead */
  if (lua_type(L, 1) != LUA_TSTRING) return luaL_typeerror(L, 1, "string");
  s = lua_tolstring(L, 1, &len);
  luaL_argcheck(L, len < ((size_t)-1 - 5) / 2, 1, "string too long");
  ss_error_clear(&err);
  out = luaL_buffinitsize(L, &b, SS_QUOTE_MAX(len));
  if (ss_pg_quote(s, len, as_ident, out, SS_QUOTE_MAX(len), &n, &err)) {
    luaL_pushresultsize(&b, 0); /* closes the buffer before anything else is pushed */
    lua_pop(L, 1);
    return ss_push_fail(L, &err);
  }
  luaL_pushresultsize(&b, n);
  return 1;
}

static int quote_ident(lua_State *L) { return quote(L, 1); }

static int quote_literal(lua_State *L) { return quote(L, 0); }

void ss_open_quote(lua_State *L) {
  lua_pushcfunction(L, quote_ident);
  lua_setfield(L, -2, "quote_ident");
  lua_pushcfunction(L, quote_literal);
  lua_setfield(L, -2, "quote_literal");
}
