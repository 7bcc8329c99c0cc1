/* JSON text -> Lua values, straight onto the stack, for json and jsonb
 * columns. Numbers without a fraction or exponent that fit in 64 bits
 * stay integers (lua-cjson would make them floats); null is semstore.null.
 * The server only hands out valid JSON, but the parser still checks every
 * step and reports failure rather than trusting its input. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "binding.h"

#define MAX_DEPTH 512

typedef struct {
  lua_State *L;
  const char *p, *end;
  int depth;
  int box_big; /* an integer no Lua number holds as semstore.json_integer, not as its digits */
} parser;

static void skip_ws(parser *ps) {
  while (ps->p < ps->end && (*ps->p == ' ' || *ps->p == '\n' || *ps->p == '\r' || *ps->p == '\t')) ps->p++;
}

static int hex4(const char *p, unsigned *out) {
  unsigned v = 0;
  int i;
  for (i = 0; i < 4; i++) {
    char c = p[i];
    v <<= 4;
    if (c >= '0' && c <= '9') v |= (unsigned)(c - '0');
    else if (c >= 'a' && c <= 'f') v |= (unsigned)(c - 'a' + 10);
    else if (c >= 'A' && c <= 'F') v |= (unsigned)(c - 'A' + 10);
    else return -1;
  }
  *out = v;
  return 0;
}

static size_t utf8(char *out, unsigned cp) {
  if (cp < 0x80) { out[0] = (char)cp; return 1; }
  if (cp < 0x800) { out[0] = (char)(0xC0 | cp >> 6); out[1] = (char)(0x80 | (cp & 0x3F)); return 2; }
  if (cp < 0x10000) {
    out[0] = (char)(0xE0 | cp >> 12); out[1] = (char)(0x80 | (cp >> 6 & 0x3F)); out[2] = (char)(0x80 | (cp & 0x3F));
    return 3;
  }
  out[0] = (char)(0xF0 | cp >> 18); out[1] = (char)(0x80 | (cp >> 12 & 0x3F));
  out[2] = (char)(0x80 | (cp >> 6 & 0x3F)); out[3] = (char)(0x80 | (cp & 0x3F));
  return 4;
}

/* At the opening quote; pushes the string. */
static int parse_string(parser *ps) {
  const char *s = ++ps->p, *q = s;
  luaL_Buffer b;
  while (q < ps->end && *q != '"' && *q != '\\') q++;
  if (q < ps->end && *q == '"') { /* the common case: nothing to unescape */
    lua_pushlstring(ps->L, s, (size_t)(q - s));
    ps->p = q + 1;
    return 0;
  }
  luaL_buffinit(ps->L, &b);
  luaL_addlstring(&b, s, (size_t)(q - s));
  while (q < ps->end && *q != '"') {
    if (*q != '\\') {
      luaL_addchar(&b, *q++);
      continue;
    }
    if (++q >= ps->end) return -1;
    switch (*q++) {
    case '"': luaL_addchar(&b, '"'); break;
    case '\\': luaL_addchar(&b, '\\'); break;
    case '/': luaL_addchar(&b, '/'); break;
    case 'b': luaL_addchar(&b, '\b'); break;
    case 'f': luaL_addchar(&b, '\f'); break;
    case 'n': luaL_addchar(&b, '\n'); break;
    case 'r': luaL_addchar(&b, '\r'); break;
    case 't': luaL_addchar(&b, '\t'); break;
    case 'u': {
      unsigned cp, lo;
      char out[4];
      if (ps->end - q < 4 || hex4(q, &cp)) return -1;
      q += 4;
      if (cp >= 0xD800 && cp <= 0xDBFF && ps->end - q >= 6 && q[0] == '\\' && q[1] == 'u' && !hex4(q + 2, &lo) &&
          lo >= 0xDC00 && lo <= 0xDFFF) {
        cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
        q += 6;
      }
      luaL_addlstring(&b, out, utf8(out, cp));
      break;
    }
    default:
      return -1;
    }
  }
  if (q >= ps->end) return -1;
  luaL_pushresult(&b);
  ps->p = q + 1;
  return 0;
}

/* JSON's number: -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)? */
static int parse_number(parser *ps) {
  const char *s = ps->p, *e = ps->end, *p = s;
  int integral = 1;
  char tmp[64], *endp;
  size_t n;
  if (p < e && *p == '-') p++;
  if (p < e && *p == '0') p++;
  else if (p < e && *p >= '1' && *p <= '9') while (p < e && *p >= '0' && *p <= '9') p++;
  else return -1;
  if (p < e && *p == '.') {
    integral = 0;
    if (++p >= e || *p < '0' || *p > '9') return -1;
    while (p < e && *p >= '0' && *p <= '9') p++;
  }
  if (p < e && (*p == 'e' || *p == 'E')) {
    integral = 0;
    if (++p < e && (*p == '+' || *p == '-')) p++;
    if (p >= e || *p < '0' || *p > '9') return -1;
    while (p < e && *p >= '0' && *p <= '9') p++;
  }
  ps->p = p;
  n = (size_t)(p - s);
  if (n >= sizeof tmp) {
    /* too long for any integer a box holds: a float is the best it gets */
    lua_pushlstring(ps->L, s, n);
    lua_pushnumber(ps->L, lua_tonumber(ps->L, -1));
    lua_remove(ps->L, -2);
    return 0;
  }
  memcpy(tmp, s, n);
  tmp[n] = '\0';
  if (integral) {
    long long v;
    errno = 0;
    v = strtoll(tmp, &endp, 10);
    /* beyond what a Lua number holds exactly (under LuaJIT beyond 2^53,
     * and in both beyond int64, up to 2^64-1), a box when asked for */
    if (ps->box_big && (errno == ERANGE ? ss_is_json_integer(s, n)
                                        : !SS_INT64_NUMBERS && (v > SS_EXACT_INT_MAX || v < -SS_EXACT_INT_MAX))) {
      lua_createtable(ps->L, 1, 0);
      lua_pushlstring(ps->L, s, n);
      lua_rawseti(ps->L, -2, 1);
      luaL_setmetatable(ps->L, SS_JSON_INTEGER_MT);
      return 0;
    }
    /* exact when it fits in 64 bits (under LuaJIT, digits beyond 2^53),
     * a float beyond */
    if (errno != ERANGE) {
      ss_pushint64(ps->L, (int64_t)v);
      return 0;
    }
  }
  lua_pushnumber(ps->L, strtod(tmp, &endp));
  return 0;
}

static int parse_value(parser *ps);

/* Counts the elements of the container at p (just past its opening
 * bracket) so its table is allocated once instead of growing by rehashes.
 * The look-ahead is bounded; past it the count is a lower bound. */
static int count_elements(const char *p, const char *end) {
  int depth = 0, n = 0, any = 0;
  const char *stop = end - p > 4096 ? p + 4096 : end;
  for (; p < stop; p++) {
    switch (*p) {
    case '"':
      for (p++; p < stop && *p != '"'; p++)
        if (*p == '\\') p++;
      any = 1;
      break;
    case '{': case '[': depth++; any = 1; break;
    case '}': case ']':
      if (depth-- == 0) return n + any;
      break;
    case ',': if (depth == 0) n++; break;
    case ' ': case '\n': case '\r': case '\t': break;
    default: any = 1;
    }
  }
  return n;
}

static int parse_container(parser *ps, int object) {
  lua_Integer i = 0;
  if (++ps->depth > MAX_DEPTH || !lua_checkstack(ps->L, 4)) return -1;
  ps->p++;
  if (object) lua_createtable(ps->L, 0, count_elements(ps->p, ps->end));
  else lua_createtable(ps->L, count_elements(ps->p, ps->end), 0);
  skip_ws(ps);
  if (ps->p < ps->end && *ps->p == (object ? '}' : ']')) {
    ps->p++;
    ps->depth--;
    return 0;
  }
  for (;;) {
    skip_ws(ps);
    if (object) {
      if (ps->p >= ps->end || *ps->p != '"' || parse_string(ps)) return -1;
      skip_ws(ps);
      if (ps->p >= ps->end || *ps->p++ != ':') return -1;
      if (parse_value(ps)) return -1;
      lua_rawset(ps->L, -3);
    } else {
      if (parse_value(ps)) return -1;
      lua_rawseti(ps->L, -2, ++i);
    }
    skip_ws(ps);
    if (ps->p >= ps->end) return -1;
    if (*ps->p == ',') {
      ps->p++;
      continue;
    }
    if (*ps->p++ != (object ? '}' : ']')) return -1;
    ps->depth--;
    return 0;
  }
}

static int literal(parser *ps, const char *word, size_t n) {
  if ((size_t)(ps->end - ps->p) < n || memcmp(ps->p, word, n) != 0) return -1;
  ps->p += n;
  return 0;
}

static int parse_value(parser *ps) {
  skip_ws(ps);
  if (ps->p >= ps->end) return -1;
  switch (*ps->p) {
  case '{': return parse_container(ps, 1);
  case '[': return parse_container(ps, 0);
  case '"': return parse_string(ps);
  case 't': if (literal(ps, "true", 4)) return -1; lua_pushboolean(ps->L, 1); return 0;
  case 'f': if (literal(ps, "false", 5)) return -1; lua_pushboolean(ps->L, 0); return 0;
  case 'n': if (literal(ps, "null", 4)) return -1; lua_pushlightuserdata(ps->L, NULL); return 0;
  default: return parse_number(ps);
  }
}

static int push_json(lua_State *L, const char *s, size_t len, int box_big) {
  int top = lua_gettop(L);
  parser ps = {L, s, s + len, 0, box_big};
  if (parse_value(&ps) == 0) {
    skip_ws(&ps);
    if (ps.p == ps.end) return 0;
  }
  lua_settop(L, top);
  return -1;
}

int ss_push_json(lua_State *L, const char *s, size_t len) { return push_json(L, s, len, 0); }

/* core.json_decode(s, opts): the Lua value of the JSON text s, or nil,
 * err. opts.big_integers: "string" (the default: an integer beyond what a
 * Lua number holds exactly, under LuaJIT, is its decimal digits) or
 * "json_integer" (it is semstore.json_integer(digits), which the JSON writer
 * writes back as the same bare number). */
int ss_lua_json_decode(lua_State *L) {
  size_t len;
  const char *s = luaL_checklstring(L, 1, &len);
  int box_big = 0;
  ss_error err;
  if (!lua_isnoneornil(L, 2)) {
    const char *how;
    size_t how_len;
    if (!lua_istable(L, 2)) {
      ss_error_set(&err, SS_ERR_INPUT, "json_decode's options are a table, not a %s", luaL_typename(L, 2));
      return ss_push_fail(L, &err);
    }
    lua_pushnil(L);
    while (lua_next(L, 2)) {
      if (lua_type(L, -2) != LUA_TSTRING || strcmp(lua_tostring(L, -2), "big_integers") != 0) {
        ss_error_set(&err, SS_ERR_INPUT, "json_decode's options: unknown option %s (it takes big_integers)",
                     lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : luaL_typename(L, -2));
        return ss_push_fail(L, &err);
      }
      lua_pop(L, 1);
    }
    lua_getfield(L, 2, "big_integers");
    how = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &how_len) : NULL;
    if (how && how_len == 12 && memcmp(how, "json_integer", 12) == 0) box_big = 1;
    else if (!lua_isnil(L, -1) && !(how && how_len == 6 && memcmp(how, "string", 6) == 0)) {
      ss_error_set(&err, SS_ERR_INPUT, "json_decode's big_integers is \"string\" or \"json_integer\"");
      return ss_push_fail(L, &err);
    }
    lua_pop(L, 1);
    lua_settop(L, 1);
  }
  if (push_json(L, s, len, box_big) == 0) return 1;
  ss_error_set(&err, SS_ERR_INPUT, "not valid JSON text (or nested more than %d deep)", MAX_DEPTH);
  return ss_push_fail(L, &err);
}
