/* Lua values -> JSON text, for tables bound as json/jsonb parameters.
 * Integers stay exact to 64 bits and floats read back exactly (lua-cjson
 * 2.1 prints every number with 14 digits). A table whose keys are exactly
 * 1..n is an array; any other table an object (number keys become
 * strings); the empty table is {}, and semstore.array(t) is always an
 * array, even when empty. semstore.null is null. */
#include <math.h>
#include <string.h>

#include "binding.h"
#include "float_text.h"
#include "json.h"

#define MAX_DEPTH 1000

static int encode_value(lua_State *L, int idx, ss_buf *b, ss_error *err, int depth);

static int oom(ss_error *err) { return ss_error_set(err, SS_ERR_MEMORY, "out of memory encoding JSON"); }

/* n when the keys of the table at idx are exactly 1..n (n > 0), else 0. */
static lua_Integer array_length(lua_State *L, int idx) {
  lua_Integer count = 0, max = 0;
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    lua_pop(L, 1);
    if (!lua_isinteger(L, -1) || lua_tointeger(L, -1) < 1) {
      lua_pop(L, 1);
      return 0;
    }
    if (lua_tointeger(L, -1) > max) max = lua_tointeger(L, -1);
    count++;
  }
  return count == max ? max : 0;
}

static int encode_array(lua_State *L, int idx, lua_Integer n, ss_buf *b, ss_error *err, int depth) {
  lua_Integer i;
  if (ss_buf_putc(b, '[')) return oom(err);
  for (i = 1; i <= n; i++) {
    if (i > 1 && ss_buf_putc(b, ',')) return oom(err);
    lua_rawgeti(L, idx, i);
    if (encode_value(L, lua_gettop(L), b, err, depth + 1)) return -1;
    lua_pop(L, 1);
  }
  return ss_buf_putc(b, ']') ? oom(err) : 0;
}

static int encode_object(lua_State *L, int idx, ss_buf *b, ss_error *err, int depth) {
  int first = 1;
  if (ss_buf_putc(b, '{')) return oom(err);
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    size_t len;
    const char *key;
    char num[32];
    if (!first && ss_buf_putc(b, ',')) return oom(err);
    first = 0;
    switch (lua_type(L, -2)) {
    case LUA_TSTRING:
      key = lua_tolstring(L, -2, &len);
      break;
    case LUA_TNUMBER: /* formatted apart, so lua_next still sees a number key */
      len = lua_isinteger(L, -2) ? (size_t)snprintf(num, sizeof num, "%lld", (long long)lua_tointeger(L, -2))
                                 : (size_t)ss_format_double(num, sizeof num, lua_tonumber(L, -2));
      key = num;
      break;
    default:
      return ss_error_set(err, SS_ERR_INPUT, "a %s cannot be a JSON object key", luaL_typename(L, -2));
    }
    if (!ss_utf8_valid(key, len)) return ss_error_set(err, SS_ERR_INPUT, "a key is not valid UTF-8, as JSON text must be");
    if (ss_json_string(b, key, len) || ss_buf_putc(b, ':')) return oom(err);
    if (encode_value(L, lua_gettop(L), b, err, depth + 1)) return -1;
    lua_pop(L, 1);
  }
  return ss_buf_putc(b, '}') ? oom(err) : 0;
}

static int encode_value(lua_State *L, int idx, ss_buf *b, ss_error *err, int depth) {
  switch (lua_type(L, idx)) {
  case LUA_TNIL:
    return ss_buf_append(b, "null", 4) ? oom(err) : 0;
  case LUA_TLIGHTUSERDATA:
    if (lua_touserdata(L, idx)) break;
    return ss_buf_append(b, "null", 4) ? oom(err) : 0;
  case LUA_TBOOLEAN:
    return (lua_toboolean(L, idx) ? ss_buf_append(b, "true", 4) : ss_buf_append(b, "false", 5)) ? oom(err) : 0;
  case LUA_TNUMBER:
    if (lua_isinteger(L, idx)) return ss_json_integer(b, (long long)lua_tointeger(L, idx)) ? oom(err) : 0;
    if (!isfinite(lua_tonumber(L, idx)))
      return ss_error_set(err, SS_ERR_INPUT, "NaN and infinity have no JSON form");
    return ss_json_double(b, lua_tonumber(L, idx)) ? oom(err) : 0;
  case LUA_TSTRING: {
    size_t len;
    const char *s = lua_tolstring(L, idx, &len);
    if (!ss_utf8_valid(s, len)) return ss_error_set(err, SS_ERR_INPUT, "a string is not valid UTF-8, as JSON text must be");
    return ss_json_string(b, s, len) ? oom(err) : 0;
  }
  case LUA_TTABLE: {
    lua_Integer n;
    int status;
    if (depth >= MAX_DEPTH || !lua_checkstack(L, 6))
      return ss_error_set(err, SS_ERR_INPUT, "tables nested more than %d deep (a cycle?)", MAX_DEPTH);
    if (ss_has_metatable(L, idx, SS_BYTEA_MT)) break;
    if (ss_has_metatable(L, idx, SS_JSON_INTEGER_MT)) {
      size_t len;
      /* checked again: a table given the metatable by hand could hold any text */
      const char *digits = ss_json_integer_digits(L, idx, &len);
      if (!digits)
        return ss_error_set(err, SS_ERR_INPUT, "a json_integer without an integer's digits");
      status = ss_buf_append(b, digits, len) ? oom(err) : 0;
      lua_pop(L, 1);
      return status;
    }
    if (ss_has_metatable(L, idx, SS_ARRAY_MT)) {
      lua_rawgeti(L, idx, 1);
      n = ss_array_length(L, -1);
      /* t.n is the caller's word: a length past PostgreSQL's MaxArraySize
       * could only run out of memory, slowly */
      if (n < 0 || n > 134217727)
        return ss_error_set(err, SS_ERR_INPUT, "an array of %lld elements (0 to 134217727)", (long long)n);
      status = encode_array(L, lua_gettop(L), n, b, err, depth);
      if (status == 0) lua_pop(L, 1);
      return status;
    }
    n = array_length(L, idx);
    return n ? encode_array(L, idx, n, b, err, depth) : encode_object(L, idx, b, err, depth);
  }
  default:
    break;
  }
  return ss_error_set(err, SS_ERR_INPUT, "a %s has no JSON form", luaL_typename(L, idx));
}

int ss_encode_json(lua_State *L, int idx, ss_buf *b, ss_error *err) {
  int top = lua_gettop(L), status = encode_value(L, lua_absindex(L, idx), b, err, 0);
  lua_settop(L, top);
  return status;
}

/* core.json_encode(v): the JSON text of v (as parameters are encoded for
 * json columns), or nil, err. */
int ss_lua_json_encode(lua_State *L) {
  ss_error err;
  ss_buf *b;
  luaL_checkany(L, 1);
  lua_settop(L, 1);
  b = ss_push_scratch(L);
  ss_error_clear(&err);
  if (ss_encode_json(L, 1, b, &err)) return ss_push_fail(L, &err);
  lua_pushlstring(L, b->data ? b->data : "", b->len);
  return 1;
}
