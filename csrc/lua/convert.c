/* Lua values <-> PostgreSQL values: the one parameter encoder and the one
 * row decoder of the binding. Results arrive in text format; each column
 * gets a decoder from its type OID once per result, not once per cell. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "binding.h"
#include "buf.h"
#include "float_text.h"
#include "value.h"

/* ---- scratch buffers owned by a userdata, so a Lua error cannot leak them ---- */

ss_buf *ss_push_scratch(lua_State *L) {
  ss_buf *b = ss_newuserdata(L, sizeof *b);
  ss_buf_init(b);
  luaL_setmetatable(L, SS_SCRATCH_MT);
  return b;
}

static int scratch_gc(lua_State *L) {
  ss_buf_free(luaL_checkudata(L, 1, SS_SCRATCH_MT));
  return 0;
}

/* ---- encoding ---- */

static int format_number(lua_State *L, int idx, char *out, size_t size) {
  if (lua_isinteger(L, idx))
    return snprintf(out, size, "%lld", (long long)lua_tointeger(L, idx));
  return ss_format_double(out, size, lua_tonumber(L, idx));
}

int ss_is_null(lua_State *L, int idx) {
  int t = lua_type(L, idx);
  return t == LUA_TNIL || t == LUA_TNONE || (t == LUA_TLIGHTUSERDATA && !lua_touserdata(L, idx));
}

int ss_has_metatable(lua_State *L, int idx, const char *name) {
  int same;
  if (!lua_getmetatable(L, idx)) return 0;
  luaL_getmetatable(L, name);
  same = lua_rawequal(L, -1, -2);
  lua_pop(L, 2);
  return same;
}

lua_Integer ss_array_length(lua_State *L, int idx) {
  lua_Integer n;
  idx = lua_absindex(L, idx);
  lua_pushliteral(L, "n");
  n = lua_rawget(L, idx) == LUA_TNUMBER && lua_isinteger(L, -1) ? lua_tointeger(L, -1) : (lua_Integer)lua_rawlen(L, idx);
  lua_pop(L, 1);
  return n;
}

int ss_to_value(lua_State *L, int idx, int as_json, ss_buf *json, ss_value *out, ss_error *err) {
  size_t len;
  const char *s;
  switch (lua_type(L, idx)) {
  case LUA_TNIL:
  case LUA_TNONE:
    *out = ss_null();
    return 0;
  case LUA_TLIGHTUSERDATA:
    if (lua_touserdata(L, idx)) break;
    *out = ss_null(); /* semstore.null */
    return 0;
  case LUA_TBOOLEAN:
    *out = ss_bool(lua_toboolean(L, idx));
    return 0;
  case LUA_TNUMBER:
    *out = lua_isinteger(L, idx) ? ss_int((int64_t)lua_tointeger(L, idx)) : ss_double((double)lua_tonumber(L, idx));
    return 0;
  case LUA_TSTRING:
    s = lua_tolstring(L, idx, &len);
    *out = ss_text(s, len);
    return 0;
  case LUA_TTABLE:
    if (!as_json) break;
    json->len = 0;
    if (ss_encode_json(L, idx, json, err)) return -1;
    *out = ss_json(json->data, json->len);
    return 0;
  default:
    break;
  }
  *out = ss_other(luaL_typename(L, idx));
  return 0;
}

/* PostgreSQL's MAXDIM: an array has at most 6 dimensions, so deeper
 * nesting (a table that contains itself, say) is refused before it could
 * recurse without end. */
#define ARRAY_MAX_DEPTH 6

/* Array literal text: {1,"two",NULL,{3,4}}; strings are always quoted. */
static int encode_array(lua_State *L, int idx, ss_buf *b, ss_error *err, int param, int depth) {
  lua_Integer i, n;
  char num[64];
  if (depth > ARRAY_MAX_DEPTH)
    return ss_error_set(err, SS_ERR_INPUT, "parameter %d: an array nests more than %d deep (a cycle?)", param,
                        ARRAY_MAX_DEPTH);
  if (!lua_checkstack(L, 4)) return ss_error_set(err, SS_ERR_MEMORY, "parameter %d: no room on the Lua stack", param);
  idx = lua_absindex(L, idx);
  n = ss_array_length(L, idx);
  /* PostgreSQL's MaxArraySize: a larger t.n could only run out of memory, slowly */
  if (n < 0 || n > 134217727)
    return ss_error_set(err, SS_ERR_INPUT, "parameter %d: an array of %lld elements (PostgreSQL takes 0 to 134217727)",
                        param, (long long)n);
  if (ss_buf_putc(b, '{')) goto oom;
  for (i = 1; i <= n; i++) {
    int t = lua_rawgeti(L, idx, i);
    if (i > 1 && ss_buf_putc(b, ',')) goto oom_pop;
    if (ss_is_null(L, -1)) {
      if (ss_buf_append(b, "NULL", 4)) goto oom_pop;
    } else if (t == LUA_TBOOLEAN) {
      if (ss_buf_putc(b, lua_toboolean(L, -1) ? 't' : 'f')) goto oom_pop;
    } else if (t == LUA_TNUMBER) {
      int len = format_number(L, -1, num, sizeof num);
      if (ss_buf_append(b, num, (size_t)len)) goto oom_pop;
    } else if (t == LUA_TSTRING) {
      size_t len;
      const char *s = lua_tolstring(L, -1, &len);
      if (memchr(s, 0, len)) {
        lua_pop(L, 1);
        return ss_error_set(err, SS_ERR_INPUT,
                            "parameter %d: array element %lld contains a zero byte", param, (long long)i);
      }
      if (ss_array_quote(b, s, len)) goto oom_pop;
    } else if (t == LUA_TTABLE && ss_has_metatable(L, -1, SS_JSON_INTEGER_MT)) {
      size_t len;
      const char *digits = ss_json_integer_digits(L, -1, &len);
      if (!digits) {
        lua_pop(L, 2);
        return ss_error_set(err, SS_ERR_INPUT, "parameter %d: array element %lld is a json_integer without an integer's digits",
                            param, (long long)i);
      }
      if (ss_buf_append(b, digits, len)) goto oom_pop2;
      lua_pop(L, 1);
    } else if (t == LUA_TTABLE && !ss_has_metatable(L, -1, SS_BYTEA_MT)) {
      if (encode_array(L, -1, b, err, param, depth + 1)) {
        lua_pop(L, 1);
        return -1;
      }
    } else {
      ss_error_set(err, SS_ERR_INPUT, "parameter %d: array element %lld is a %s, which has no array form",
                   param, (long long)i, luaL_typename(L, -1));
      lua_pop(L, 1);
      return -1;
    }
    lua_pop(L, 1);
  }
  if (ss_buf_putc(b, '}')) goto oom;
  return 0;
oom_pop2:
  lua_pop(L, 1);
oom_pop:
  lua_pop(L, 1);
oom:
  return ss_error_set(err, SS_ERR_MEMORY, "parameter %d: out of memory encoding an array", param);
}

int ss_encode_params(lua_State *L, int first, int n, ss_params *p, ss_error *err) {
  int i, base;
  char *block;
  if (n > 65535)
    return ss_error_set(err, SS_ERR_INPUT, "too many parameters (%d): PostgreSQL takes at most 65535", n);
  if (!lua_checkstack(L, n + 8))
    return ss_error_set(err, SS_ERR_INPUT, "too many parameters (%d) for the Lua stack", n);
  block = ss_newuserdata(L, (size_t)n * (sizeof(char *) + 2 * sizeof(int) + sizeof(Oid)) + 1);
  p->n = n;
  p->values = (const char **)(void *)block;
  p->lengths = (int *)(void *)(block + (size_t)n * sizeof(char *));
  p->formats = p->lengths + n;
  p->types = (Oid *)(void *)(p->formats + n);
  /* Encoded values are kept in a table anchored by the block, so the
   * pointers stay valid for as long as the caller keeps the block. */
  lua_createtable(L, n, 0);
  base = lua_gettop(L);
  for (i = 0; i < n; i++) {
    int idx = first + i, t = lua_type(L, idx);
    size_t len = 0;
    char num[64];
    p->formats[i] = 0;
    p->types[i] = 0;
    p->values[i] = NULL;
    p->lengths[i] = 0;
    switch (t) {
    case LUA_TNIL:
      continue;
    case LUA_TLIGHTUSERDATA:
      if (lua_touserdata(L, idx)) break;
      continue; /* semstore.null */
    case LUA_TBOOLEAN:
      p->values[i] = lua_toboolean(L, idx) ? "t" : "f";
      continue;
    case LUA_TNUMBER:
      len = (size_t)format_number(L, idx, num, sizeof num);
      lua_pushlstring(L, num, len);
      break;
    case LUA_TSTRING:
      lua_pushvalue(L, idx);
      lua_tolstring(L, -1, &len);
      if (memchr(lua_tostring(L, -1), 0, len)) {
        lua_settop(L, base - 2);
        return ss_error_set(err, SS_ERR_INPUT,
                            "parameter %d: text contains a zero byte (PostgreSQL text cannot hold one; "
                            "wrap binary data in semstore.bytea())", i + 1);
      }
      break;
    case LUA_TTABLE:
      if (ss_has_metatable(L, idx, SS_BYTEA_MT)) {
        lua_rawgeti(L, idx, 1);
        p->formats[i] = 1;
        p->types[i] = 17; /* bytea, sent as raw bytes */
      } else if (ss_has_metatable(L, idx, SS_ARRAY_MT)) {
        ss_buf *b = ss_push_scratch(L);
        lua_rawgeti(L, idx, 1);
        if (encode_array(L, -1, b, err, i + 1, 1)) {
          lua_settop(L, base - 2);
          return -1;
        }
        lua_pop(L, 1);
        lua_pushlstring(L, b->data, b->len);
        lua_remove(L, -2);
      } else {
        ss_buf *b = ss_push_scratch(L);
        if (ss_encode_json(L, idx, b, err)) {
          char why[sizeof err->message];
          ss_strlcpy(why, err->message, sizeof why);
          ss_error_set(err, err->kind, "parameter %d: %s", i + 1, why);
          lua_settop(L, base - 2);
          return -1;
        }
        lua_pushlstring(L, b->data, b->len);
        lua_remove(L, -2);
      }
      break;
    default:
      break;
    }
    if (lua_gettop(L) == base) {
      lua_settop(L, base - 2);
      return ss_error_set(err, SS_ERR_INPUT, "parameter %d: cannot bind a %s", i + 1, luaL_typename(L, idx));
    }
    p->values[i] = lua_tolstring(L, -1, &len);
    p->lengths[i] = (int)len;
    lua_rawseti(L, base, i + 1);
  }
  /* one anchor: the table holds the encoded values and the block */
  lua_pushvalue(L, base - 1);
  lua_rawseti(L, base, n + 1);
  lua_remove(L, base - 1);
  return 0;
}

/* ---- decoding ---- */

/* D_GUESS: a type the decoder does not know by OID (an enum, a type of an
 * extension, an array of those): the catalog says whether it is an array
 * (ss_resolve_columns); until it did, text. */
enum { D_TEXT, D_INT, D_FLOAT, D_BOOL, D_JSON, D_BYTEA, D_TIMESTAMP, D_ARRAY, D_GUESS };

typedef ss_column column_decoder;

static column_decoder decoder_for(Oid oid) {
  column_decoder d = {D_GUESS, D_TEXT, 0};
  switch (oid) {
  case 25: case 1043: case 1042: case 19: case 1700: case 2950: case 1082: case 1083: case 1186: d.kind = D_TEXT; break;
  case 20: case 21: case 23: case 26: d.kind = D_INT; break;
  case 700: case 701: d.kind = D_FLOAT; break;
  case 16: d.kind = D_BOOL; break;
  case 114: case 3802: d.kind = D_JSON; break;
  case 17: d.kind = D_BYTEA; break;
  case 1114: case 1184: d.kind = D_TIMESTAMP; break;
  case 1000: d.kind = D_ARRAY; d.elem = D_BOOL; break;
  case 1001: d.kind = D_ARRAY; d.elem = D_BYTEA; break;
  case 1005: case 1007: case 1016: case 1028: d.kind = D_ARRAY; d.elem = D_INT; break;
  case 1021: case 1022: d.kind = D_ARRAY; d.elem = D_FLOAT; break;
  case 199: case 3807: d.kind = D_ARRAY; d.elem = D_JSON; break;
  case 1115: case 1185: d.kind = D_ARRAY; d.elem = D_TIMESTAMP; break;
  /* text, varchar, bpchar, name, numeric, uuid, date, time, interval */
  case 1009: case 1015: case 1014: case 1003: case 1231: case 2951: case 1182: case 1183:
  case 1187: d.kind = D_ARRAY; d.elem = D_TEXT; break;
  default: break;
  }
  return d;
}

static int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/* Pushes one non-NULL value. */
static void push_value(lua_State *L, int kind, const char *s, size_t len) {
  switch (kind) {
  case D_INT: {
    const char *p = s, *end = s + len;
    int neg = 0;
    uint64_t v = 0;
    if (p < end && (*p == '-' || *p == '+')) neg = *p++ == '-';
    while (p < end) v = v * 10 + (uint64_t)(*p++ - '0');
    ss_pushint64(L, (int64_t)(neg ? (uint64_t)0 - v : v));
    return;
  }
  case D_FLOAT: {
    char tmp[64];
    if (len >= sizeof tmp) len = sizeof tmp - 1;
    memcpy(tmp, s, len);
    tmp[len] = '\0';
    lua_pushnumber(L, strtod(tmp, NULL));
    return;
  }
  case D_BOOL:
    lua_pushboolean(L, len > 0 && s[0] == 't');
    return;
  case D_JSON:
    if (ss_push_json(L, s, len)) lua_pushlstring(L, s, len); /* not JSON after all: keep the text */
    return;
  case D_BYTEA:
    if (len >= 2 && s[0] == '\\' && s[1] == 'x') {
      luaL_Buffer b;
      size_t i, n = (len - 2) / 2;
      char *out = luaL_buffinitsize(L, &b, n);
      for (i = 0; i < n; i++) out[i] = (char)(hexval(s[2 + 2 * i]) << 4 | hexval(s[3 + 2 * i]));
      luaL_pushresultsize(&b, n);
    } else {
      lua_pushlstring(L, s, len);
    }
    return;
  case D_TIMESTAMP: {
    /* "2024-05-01 12:00:00+00" -> "2024-05-01T12:00:00+00" */
    char tmp[80];
    const char *sp = memchr(s, ' ', len);
    if (!sp || len >= sizeof tmp) {
      lua_pushlstring(L, s, len);
      return;
    }
    memcpy(tmp, s, len);
    tmp[sp - s] = 'T';
    lua_pushlstring(L, tmp, len);
    return;
  }
  default:
    lua_pushlstring(L, s, len);
  }
}

/* Parses an array literal at p (at '{'), pushing a table; nested braces
 * give nested tables. `tmp` has room for the longest element. */
static const char *push_array(lua_State *L, const char *p, const char *end, int elem, char delim, char *tmp) {
  lua_Integer i = 0;
  luaL_checkstack(L, 4, "arrays nested too deep");
  lua_newtable(L);
  if (p >= end || *p != '{') return end;
  p++;
  if (p < end && *p == '}') return p + 1;
  while (p < end) {
    if (*p == '{') {
      p = push_array(L, p, end, elem, delim, tmp);
    } else if (*p == '"') {
      size_t n = 0;
      for (p++; p < end && *p != '"'; p++) {
        if (*p == '\\' && p + 1 < end) p++;
        tmp[n++] = *p;
      }
      p++;
      push_value(L, elem, tmp, n);
    } else {
      const char *start = p;
      while (p < end && *p != delim && *p != '}') p++;
      if (p - start == 4 && strncmp(start, "NULL", 4) == 0)
        lua_pushlightuserdata(L, NULL);
      else
        push_value(L, elem, start, (size_t)(p - start));
    }
    lua_rawseti(L, -2, ++i);
    if (p < end && *p == delim) {
      p++;
      continue;
    }
    return p < end ? p + 1 : end;
  }
  return end;
}

typedef struct {
  PGresult **slot; /* the result being decoded, owned by the caller's userdata */
  ss_pg *pg;       /* the connection it came from */
  int streaming;   /* further rows come from pg (ss_pg_stream_next); else *slot holds them all */
  int null_nil;    /* NULL columns are left out of the row (read as nil) */
  ss_error *err;
} row_source;

int ss_resolve_columns(ss_pg *pg, const PGresult *res, ss_column *dec, int may_ask, ss_error *err) {
  Oid oids[64];
  int c, n = 0, ncols = PQnfields(res);
  for (c = 0; may_ask && c < ncols && n < 64; c++)
    if (dec[c].kind == D_GUESS && ss_pg_type_is_array(pg, PQftype(res, c)) < 0) oids[n++] = PQftype(res, c);
  if (n && ss_pg_learn_types(pg, oids, n, err)) return -1;
  for (c = 0; c < ncols; c++)
    if (dec[c].kind == D_GUESS) {
      char delim = ss_pg_array_delimiter(pg, PQftype(res, c));
      dec[c].kind = delim ? D_ARRAY : D_TEXT;
      dec[c].elem = D_TEXT;
      dec[c].delim = delim;
    }
  return 0;
}

/* Whether a column's type must be asked of the catalog first. */
static int needs_catalog(ss_pg *pg, const PGresult *res, const ss_column *dec) {
  int c, ncols = PQnfields(res);
  for (c = 0; c < ncols; c++)
    if (dec[c].kind == D_GUESS && ss_pg_type_is_array(pg, PQftype(res, c)) < 0) return 1;
  return 0;
}

/* Results read ahead of decoding, freed by __gc whatever happens. */
#define PENDING_MT "semstore.pending_results"
typedef struct {
  PGresult **items;
  size_t n, cap, next;
} pending;

static int pending_gc(lua_State *L) {
  pending *p = luaL_checkudata(L, 1, PENDING_MT);
  size_t i;
  for (i = 0; i < p->n; i++) PQclear(p->items[i]);
  free(p->items);
  memset(p, 0, sizeof *p);
  return 0;
}

/* Reads the rest of a stream into a pending list, so the connection is
 * idle for a catalog question; 0, or -1 with err set. */
static int read_ahead(lua_State *L, row_source *src, pending **out) {
  pending *p = ss_newuserdata(L, sizeof *p);
  memset(p, 0, sizeof *p);
  luaL_setmetatable(L, PENDING_MT);
  *out = p;
  for (;;) {
    PGresult *res = ss_pg_stream_next(src->pg, src->err);
    if (!res) return -1;
    if (p->n == p->cap) {
      size_t cap = p->cap ? p->cap * 2 : 64;
      PGresult **items = realloc(p->items, cap * sizeof *items);
      if (!items) {
        PQclear(res);
        return ss_error_set(src->err, SS_ERR_MEMORY, "out of memory reading rows");
      }
      p->items = items;
      p->cap = cap;
    }
    p->items[p->n++] = res;
    if (PQresultStatus(res) != PGRES_SINGLE_TUPLE) return 0;
  }
}

/* Pushes one row (a table keyed by column name) of res. */
void ss_push_row(lua_State *L, const PGresult *res, int r, int ncols, int names, const ss_column *dec,
                 ss_buf *scratch, int null_nil) {
  int c;
  lua_createtable(L, 0, ncols);
  for (c = 0; c < ncols; c++) {
    if (PQgetisnull(res, r, c) && null_nil) continue;
    lua_pushvalue(L, names + c);
    if (PQgetisnull(res, r, c)) {
      lua_pushlightuserdata(L, NULL);
    } else {
      const char *s = PQgetvalue(res, r, c);
      size_t len = (size_t)PQgetlength(res, r, c);
      if (dec[c].kind == D_ARRAY) {
        const char *p = s, *end = s + len;
        if (ss_buf_reserve(scratch, len + 1)) luaL_error(L, "out of memory decoding an array");
        if (*p == '[') { /* explicit bounds: [0:2]={...} */
          const char *eq = memchr(p, '=', len);
          if (eq) p = eq + 1;
        }
        push_array(L, p, end, dec[c].elem, dec[c].delim ? dec[c].delim : ',', scratch->data);
      } else {
        push_value(L, dec[c].kind == D_GUESS ? D_TEXT : dec[c].kind, s, len);
      }
    }
    lua_rawset(L, -3);
  }
}

int ss_columns(lua_State *L, const PGresult *res, ss_column *dec, ss_error *err) {
  int ncols = PQnfields(res), c, top = lua_gettop(L);
  luaL_checkstack(L, ncols + 4, "too many columns");
  lua_createtable(L, 0, ncols); /* the names seen, to find one given twice */
  for (c = 0; c < ncols; c++) {
    const char *name = PQfname(res, c);
    lua_pushstring(L, name);
    lua_pushvalue(L, -1);
    if (lua_rawget(L, top + 1) != LUA_TNIL) {
      ss_error_set(err, SS_ERR_INPUT,
                   "the result has two columns named '%s' (columns %d and %d): give one of them an alias", name,
                   (int)lua_tointeger(L, -1), c + 1);
      ss_strlcpy(err->column, name, sizeof err->column);
      lua_settop(L, top);
      return -1;
    }
    lua_pop(L, 1);
    lua_pushvalue(L, -1);
    lua_pushinteger(L, c + 1);
    lua_rawset(L, top + 1);
    dec[c] = decoder_for(PQftype(res, c));
  }
  lua_remove(L, top + 1);
  return 0;
}

/* Pushes the rows table, or nil with src->err set when the stream failed midway. */
static int push_rows(lua_State *L) {
  row_source *src = lua_touserdata(L, 1);
  PGresult *res = *src->slot;
  int ncols = PQnfields(res), c, names, base, rows, n = 0;
  column_decoder *dec;
  ss_buf *scratch;
  pending *ahead = NULL;
  const char *affected;
  lua_settop(L, 0);
  luaL_checkstack(L, ncols + 10, "too many columns");
  dec = ss_newuserdata(L, sizeof *dec * (size_t)(ncols ? ncols : 1));
  base = lua_gettop(L);
  scratch = ss_push_scratch(L); /* unescaped array elements, reused by every cell */
  names = lua_gettop(L) + 1;
  if (ss_columns(L, res, dec, src->err)) {
    lua_pushnil(L);
    return 1;
  }
  /* A type only the catalog can tell about: the connection must be idle to
   * ask, so the rest of a stream is read first (once per type and
   * connection; the rows all become Lua values anyway). */
  if ((needs_catalog(src->pg, res, dec) && src->streaming && PQresultStatus(res) == PGRES_SINGLE_TUPLE &&
       read_ahead(L, src, &ahead)) ||
      ss_resolve_columns(src->pg, res, dec, ahead || !(src->streaming && PQresultStatus(res) == PGRES_SINGLE_TUPLE),
                         src->err)) {
    lua_pushnil(L);
    return 1;
  }
  lua_createtable(L, PQresultStatus(res) == PGRES_SINGLE_TUPLE ? 0 : PQntuples(res), 0);
  rows = lua_gettop(L);
  for (;;) {
    int r, nt = PQntuples(res);
    for (r = 0; r < nt; r++) {
      ss_push_row(L, res, r, ncols, names, dec, scratch, src->null_nil);
      lua_rawseti(L, rows, ++n);
    }
    if (PQresultStatus(res) != PGRES_SINGLE_TUPLE) break;
    PQclear(res);
    if (ahead) {
      res = ahead->items[ahead->next];
      ahead->items[ahead->next++] = NULL;
      *src->slot = res;
    } else {
      *src->slot = res = ss_pg_stream_next(src->pg, src->err);
    }
    if (!res) {
      lua_pushnil(L);
      return 1;
    }
  }
  /* columns and affected come through the metatable, so the rows stay a
   * plain array for ipairs and for JSON encoders */
  affected = PQcmdTuples(res);
  lua_createtable(L, 0, 1);
  lua_createtable(L, 0, 2);
  lua_createtable(L, ncols, 0);
  for (c = 0; c < ncols; c++) {
    lua_pushvalue(L, names + c);
    lua_rawseti(L, -2, c + 1);
  }
  lua_setfield(L, -2, "columns");
  lua_pushinteger(L, *affected ? strtoll(affected, NULL, 10) : n);
  lua_setfield(L, -2, "affected");
  lua_setfield(L, -2, "__index");
  lua_setmetatable(L, rows);
  lua_replace(L, base);
  lua_settop(L, base);
  return 1;
}

int ss_push_result(lua_State *L, PGresult **slot, ss_pg *pg, int streaming, int null_nil, ss_error *err,
                   int *failed) {
  /* Everything made while decoding stays reachable from the result, so a
   * collection meanwhile frees nothing and only marks more: pause the
   * collector (if it runs) for the decode, in a protected call so that an
   * error cannot leave it paused. */
  row_source src = {slot, pg, streaming, null_nil, err};
  int running = lua_gc(L, LUA_GCISRUNNING, 0), status;
  *failed = 0;
  if (running) lua_gc(L, LUA_GCSTOP, 0);
  lua_pushcfunction(L, push_rows);
  lua_pushlightuserdata(L, &src);
  status = lua_pcall(L, 1, 1, 0);
  if (running) lua_gc(L, LUA_GCRESTART, 0);
  if (status != LUA_OK) return status; /* the error value is on top */
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    *failed = 1;
  }
  return LUA_OK;
}

/* core.bytea(s) and core.array(t) mark a value for the encoder: {value}
 * with a metatable that says how to bind it. */
static int wrap(lua_State *L, int type, const char *mt) {
  luaL_checktype(L, 1, type);
  lua_createtable(L, 1, 0);
  lua_pushvalue(L, 1);
  lua_rawseti(L, -2, 1);
  luaL_setmetatable(L, mt);
  return 1;
}

static int wrap_bytea(lua_State *L) { return wrap(L, LUA_TSTRING, SS_BYTEA_MT); }
static int wrap_array(lua_State *L) { return wrap(L, LUA_TTABLE, SS_ARRAY_MT); }

/* core.json_integer(digits): an integer the JSON writer prints as a bare
 * number, digits and all: how an integer beyond 2^53, which LuaJIT holds
 * as its decimal string, goes back into JSON as a number. -2^63 to 2^64-1
 * (the range of int8 and of Qdrant's point ids). */
int ss_is_json_integer(const char *s, size_t n) {
  int neg;
  uint64_t magnitude;
  return ss_decimal_digits(s, n, &neg, &magnitude) && (!neg || magnitude <= (uint64_t)INT64_MAX + 1);
}

const char *ss_json_integer_digits(lua_State *L, int idx, size_t *len) {
  const char *digits;
  lua_rawgeti(L, idx, 1);
  digits = lua_tolstring(L, -1, len);
  return digits && ss_is_json_integer(digits, *len) ? digits : NULL;
}

static int wrap_json_integer(lua_State *L) {
  size_t n;
  const char *s = luaL_checklstring(L, 1, &n);
  if (!ss_is_json_integer(s, n)) return luaL_argerror(L, 1, "not an integer's decimal digits from -2^63 to 2^64-1");
  return wrap(L, LUA_TSTRING, SS_JSON_INTEGER_MT);
}

/* tostring(semstore.json_integer(digits)): the digits */
static int json_integer_digits(lua_State *L) {
  lua_rawgeti(L, 1, 1);
  return 1;
}

void ss_open_convert(lua_State *L) {
  luaL_newmetatable(L, PENDING_MT);
  lua_pushcfunction(L, pending_gc);
  lua_setfield(L, -2, "__gc");
  lua_pop(L, 1);
  luaL_newmetatable(L, SS_SCRATCH_MT);
  lua_pushcfunction(L, scratch_gc);
  lua_setfield(L, -2, "__gc");
  lua_pop(L, 1);
  luaL_newmetatable(L, SS_BYTEA_MT);
  lua_pop(L, 1);
  luaL_newmetatable(L, SS_ARRAY_MT);
  lua_pop(L, 1);
  luaL_newmetatable(L, SS_JSON_INTEGER_MT);
  lua_pushcfunction(L, json_integer_digits);
  lua_setfield(L, -2, "__tostring");
  lua_pop(L, 1);
  lua_pushcfunction(L, wrap_json_integer);
  lua_setfield(L, -2, "json_integer");
  lua_pushcfunction(L, wrap_bytea);
  lua_setfield(L, -2, "bytea");
  lua_pushcfunction(L, wrap_array);
  lua_setfield(L, -2, "array");
}

int ss_opt_number(lua_State *L, int idx, const char *key, double dflt, double lo, double hi, int integer, double *out,
                  ss_error *err) {
  int t = lua_getfield(L, idx, key);
  *out = dflt;
  if (t == LUA_TNUMBER) *out = lua_tonumber(L, -1);
  lua_pop(L, 1);
  if (t != LUA_TNIL && t != LUA_TNUMBER)
    return ss_error_set(err, SS_ERR_INPUT, "option '%s' must be a number", key);
  if (!(*out >= lo && *out <= hi) || (integer && *out != floor(*out))) /* NaN fails the first test */
    return ss_error_set(err, SS_ERR_INPUT, "option '%s' must be %s from %g to %g", key,
                        integer ? "an integer" : "a number", lo, hi);
  return 0;
}
