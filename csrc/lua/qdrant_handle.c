/* semstore.qdrant: a Lua handle on a Qdrant client of the core (qdrant.c).
 * request() sends one JSON request and decodes the answer; upsert() reads
 * Lua points (an array or an iterator), checks each, and writes it as JSON
 * straight into the core's batch buffers (vectors as the shortest float32
 * text). Every decision about batches, parallelism and retries is the
 * core's. */
#include <errno.h>
#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "binding.h"
#include "float_text.h"
#include "json.h"
#include "qdrant.h"

#define SS_QDRANT_MT "semstore.qdrant"
#define SS_UPSERT_MT "semstore.qdrant_upsert"

/* seconds: a day is more than any request should take */
#define MAX_SECONDS 86400.0

typedef struct {
  ss_qdrant *q;
} qdrant_ud;

typedef struct {
  ss_qdrant_upsert *u;
} upsert_ud;

static ss_qdrant *check_qdrant(lua_State *L) {
  qdrant_ud *h = luaL_checkudata(L, 1, SS_QDRANT_MT);
  if (!h->q) luaL_error(L, "this Qdrant client was closed");
  return h->q;
}


/* The limits in the options table at idx (absent fields: base's). Times
 * are seconds. */
static int read_limits(lua_State *L, int idx, const ss_qdrant_limits *base, ss_qdrant_limits *out, ss_error *err) {
  double timeout, connect, retries;
  *out = *base;
  if (lua_isnoneornil(L, idx)) return 0;
  if (ss_opt_number(L, idx, "timeout", base->timeout_ms / 1000.0, 0.001, MAX_SECONDS, 0, &timeout, err) ||
      ss_opt_number(L, idx, "connect_timeout", base->connect_timeout_ms / 1000.0, 0.001, MAX_SECONDS, 0, &connect,
                    err) ||
      ss_opt_number(L, idx, "max_retries", base->max_retries, 0, 1000, 1, &retries, err) ||
      ss_opt_number(L, idx, "retry_timeout", base->retry_timeout, 0.001, MAX_SECONDS, 0, &out->retry_timeout, err))
    return -1;
  /* a positive time never rounds down to 0 ms */
  out->timeout_ms = (long)ceil(timeout * 1000);
  out->connect_timeout_ms = (long)ceil(connect * 1000);
  out->max_retries = (int)retries;
  return 0;
}

/* core.qdrant_open{url=, api_key=, timeout=, connect_timeout=,
 * max_retries=, retry_timeout=}; the Lua layer has checked the keys. */
static int qdrant_open(lua_State *L) {
  ss_qdrant_limits defaults, lim;
  ss_error err;
  const char *url, *key = NULL;
  qdrant_ud *h;
  luaL_checktype(L, 1, LUA_TTABLE);
  ss_error_clear(&err);
  lua_getfield(L, 1, "url");
  url = lua_tostring(L, -1);
  lua_getfield(L, 1, "api_key");
  if (lua_type(L, -1) == LUA_TSTRING) key = lua_tostring(L, -1);
  if (!url) return luaL_error(L, "qdrant_open needs a url");
  ss_qdrant_limits_defaults(&defaults);
  if (read_limits(L, 1, &defaults, &lim, &err)) return ss_push_fail(L, &err);
  h = ss_newuserdata(L, sizeof *h);
  h->q = NULL;
  luaL_setmetatable(L, SS_QDRANT_MT);
  h->q = ss_qdrant_new(url, key, &lim, &err);
  if (!h->q) return ss_push_fail(L, &err);
  return 1;
}

/* h:request(method, path, body, opts) -> the decoded answer, retries; or
 * nil, err. body: nil, a JSON string, or a table encoded as JSON. */
static int qdrant_request(lua_State *L) {
  ss_qdrant *q = check_qdrant(L);
  const char *method = luaL_checkstring(L, 2), *path = luaL_checkstring(L, 3);
  const char *body = NULL;
  size_t len = 0;
  ss_qdrant_limits lim;
  ss_error err;
  ss_buf *out, *json;
  int retries;
  ss_error_clear(&err);
  lua_settop(L, 5);
  if (read_limits(L, 5, ss_qdrant_defaults(q), &lim, &err)) return ss_push_fail(L, &err);
  json = ss_push_scratch(L); /* 6 */
  out = ss_push_scratch(L);  /* 7 */
  if (lua_type(L, 4) == LUA_TSTRING) {
    body = lua_tolstring(L, 4, &len);
  } else if (lua_type(L, 4) == LUA_TTABLE) {
    if (ss_encode_json(L, 4, json, &err)) return ss_push_fail(L, &err);
    body = json->data;
    len = json->len;
  } else if (!lua_isnil(L, 4)) {
    return luaL_argerror(L, 4, "a body is a JSON string or a table");
  }
  if (ss_qdrant_request(q, method, path, body, len, &lim, out, &retries, &err)) return ss_push_fail(L, &err);
  if (out->len == 0) lua_pushboolean(L, 1);
  else if (ss_push_json(L, out->data, out->len)) {
    ss_error_set(&err, SS_ERR_QDRANT, "Qdrant's answer to %s %s is not JSON", method, path);
    return ss_push_fail(L, &err);
  }
  lua_pushinteger(L, retries);
  return 2;
}

/* ---- points ---- */

typedef struct {
  lua_Integer index; /* of the point, from 1 */
  int dims;          /* stack index of the sizes table, 0 when unknown */
  ss_buf *out;       /* NULL: only check */
  ss_buf *scratch;   /* a payload checked but not written goes here */
  ss_buf *sort;      /* a sparse vector's indices, to find repeats */
  size_t bound;      /* when only checking: at least the bytes the point's JSON takes */
  char field[64];    /* the field being read, for err.field: id, vector, payload */
  char id[48];
  size_t id_len;
  ss_error *err;
} point_ctx;

static int point_error(point_ctx *c, const char *fmt, const char *what, const char *more) {
  char msg[512];
  snprintf(msg, sizeof msg, fmt, what, more);
  return ss_error_set(c->err, SS_ERR_INPUT, "point %lld: %s", (long long)c->index, msg);
}

static int oom(point_ctx *c) { return ss_error_set(c->err, SS_ERR_MEMORY, "out of memory encoding points"); }

static int put(point_ctx *c, const char *s, size_t n) {
  if (!c->out) {
    c->bound += n;
    return 0;
  }
  return ss_buf_append(c->out, s, n) ? oom(c) : 0;
}

static int is_uuid(const char *s, size_t n) {
  size_t i;
  if (n != 36) return 0;
  for (i = 0; i < n; i++) {
    if (i == 8 || i == 13 || i == 18 || i == 23) {
      if (s[i] != '-') return 0;
    } else if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f') || (s[i] >= 'A' && s[i] <= 'F'))) {
      return 0;
    }
  }
  return 1;
}

/* The id at the top of the stack, as JSON text in c->id: an unsigned
 * integer (from 0 to 2^64-1: a Lua integer, an integral float up to 2^53,
 * or a string of digits) or a UUID string (written in lower case). */
static int read_id(lua_State *L, point_ctx *c) {
  const char *bad = "the id must be an unsigned integer or a UUID string%s%s";
  switch (lua_type(L, -1)) {
  case LUA_TNUMBER:
    if (lua_isinteger(L, -1)) {
      lua_Integer v = lua_tointeger(L, -1);
      if (v < 0) return point_error(c, "the id %s is negative: ids are unsigned integers or UUIDs%s", lua_tostring(L, -1), "");
      c->id_len = (size_t)snprintf(c->id, sizeof c->id, "%lld", (long long)v);
      return 0;
    } else {
      double d = lua_tonumber(L, -1);
      if (d >= 0 && d <= 9007199254740992.0 && d == floor(d)) {
        /* d + 0.0 turns -0.0 into 0, which "%.0f" would print as "-0" */
        c->id_len = (size_t)snprintf(c->id, sizeof c->id, "%.0f", d + 0.0);
        return 0;
      }
      return point_error(c, bad, " (a whole number from 0 to 2^53 as a float)", "");
    }
  case LUA_TSTRING: {
    size_t n, i;
    const char *s = lua_tolstring(L, -1, &n);
    if (is_uuid(s, n)) {
      c->id[0] = '"';
      for (i = 0; i < n; i++) c->id[i + 1] = (char)((s[i] >= 'A' && s[i] <= 'F') ? s[i] + 32 : s[i]);
      c->id[n + 1] = '"';
      c->id_len = n + 2;
      return 0;
    }
    if (n > 0 && n <= 20 && strspn(s, "0123456789") == n) {
      unsigned long long v = 0;
      int over = 0;
      for (i = 0; i < n; i++) {
        unsigned d = (unsigned)(s[i] - '0');
        if (v > (ULLONG_MAX - d) / 10) over = 1;
        v = v * 10 + d;
      }
      if (!over) {
        c->id_len = (size_t)snprintf(c->id, sizeof c->id, "%llu", v);
        return 0;
      }
    }
    return point_error(c, bad, ", like 550e8400-e29b-41d4-a716-446655440000", "");
  }
  case LUA_TNIL:
    return point_error(c, "it has no id%s%s", "", "");
  default:
    return point_error(c, bad, ", not a ", luaL_typename(L, -1));
  }
}

/* One float32 component at the top of the stack (of Lua type `type`),
 * appended to out. */
static int put_float(lua_State *L, point_ctx *c, int type, const char *name, lua_Integer i) {
  double d;
  float f;
  char what[256];
  if (type != LUA_TNUMBER) {
    snprintf(what, sizeof what, "%.120s[%lld]", name, (long long)i);
    return point_error(c, "%s is %s, not a number", what, type == LUA_TNIL ? "missing" : luaL_typename(L, -1));
  }
  d = lua_tonumber(L, -1);
  f = (float)d;
  if (!isfinite(f)) {
    snprintf(what, sizeof what, "%.120s[%lld]", name, (long long)i);
    return point_error(c, "%s is %s", what,
                       isnan(d) ? "NaN" : isinf(d) ? "infinite" : "beyond float32's range (Qdrant stores float32)");
  }
  /* given all the room there is (SS_FLOAT32_TEXT_SIZE a number was
   * reserved, at least), float_text writes in place, without a copy */
  if (c->out) c->out->len += (size_t)ss_format_float32(c->out->data + c->out->len, c->out->cap - c->out->len, f);
  return 0;
}

/* The dense vector at idx, of `size` numbers when size >= 0. */
static int put_dense(lua_State *L, point_ctx *c, int idx, const char *name, lua_Integer size) {
  lua_Integer n = (lua_Integer)lua_rawlen(L, idx), i;
  char what[256];
  if (n == 0) return point_error(c, "%s is empty%s", name, "");
  if (size >= 0 && n != size) {
    snprintf(what, sizeof what, "%.120s has %lld numbers, the collection's have %lld", name, (long long)n, (long long)size);
    return point_error(c, "%s%s", what, "");
  }
  if (!c->out) c->bound += (size_t)n * SS_FLOAT32_TEXT_SIZE + 2;
  else if (ss_buf_reserve(c->out, (size_t)n * SS_FLOAT32_TEXT_SIZE + 2)) return oom(c);
  if (c->out) c->out->data[c->out->len++] = '[';
  for (i = 1; i <= n; i++) {
    if (put_float(L, c, lua_rawgeti(L, idx, i), name, i)) return -1;
    lua_pop(L, 1);
    if (c->out) c->out->data[c->out->len++] = i < n ? ',' : ']';
  }
  return 0;
}

/* A dense vector, or a multivector (an array of dense vectors of `size`
 * each, for collections made with multivector settings). */
static int put_dense_or_multi(lua_State *L, point_ctx *c, int idx, const char *name, lua_Integer size) {
  lua_Integer n, i;
  char what[256];
  if (lua_rawgeti(L, idx, 1) != LUA_TTABLE) {
    lua_pop(L, 1);
    return put_dense(L, c, idx, name, size);
  }
  lua_pop(L, 1);
  n = (lua_Integer)lua_rawlen(L, idx);
  if (put(c, "[", 1)) return -1;
  for (i = 1; i <= n; i++) {
    snprintf(what, sizeof what, "%.120s[%lld]", name, (long long)i);
    if (lua_rawgeti(L, idx, i) != LUA_TTABLE) return point_error(c, "%s is a %s, not a vector", what, luaL_typename(L, -1));
    if (put_dense(L, c, lua_gettop(L), what, size) || put(c, i < n ? "," : "]", 1)) return -1;
    lua_pop(L, 1);
  }
  return 0;
}

static int cmp_u32(const void *a, const void *b) {
  uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
  return x < y ? -1 : x > y;
}

/* The sparse vector {indices =, values =} at idx. */
static int put_sparse(lua_State *L, point_ctx *c, int idx, const char *name) {
  lua_Integer n, i;
  int indices, values;
  char what[256];
  uint32_t *seen;
  lua_getfield(L, idx, "indices");
  lua_getfield(L, idx, "values");
  indices = lua_gettop(L) - 1;
  values = indices + 1;
  if (!lua_istable(L, indices) || !lua_istable(L, values))
    return point_error(c, "%s is a sparse vector: it needs the arrays indices and values%s", name, "");
  n = (lua_Integer)lua_rawlen(L, indices);
  if ((lua_Integer)lua_rawlen(L, values) != n) {
    snprintf(what, sizeof what, "%.120s has %lld indices and %lld values", name, (long long)n,
             (long long)lua_rawlen(L, values));
    return point_error(c, "%s%s", what, "");
  }
  c->sort->len = 0;
  if (ss_buf_reserve(c->sort, (size_t)n * sizeof *seen + 1)) return oom(c);
  seen = (uint32_t *)(void *)c->sort->data;
  if (put(c, "{\"indices\":[", 12)) return -1;
  for (i = 1; i <= n; i++) {
    lua_Integer v;
    int ok;
    lua_rawgeti(L, indices, i);
    v = lua_tointegerx(L, -1, &ok);
    lua_pop(L, 1);
    if (!ok || v < 0 || v > (lua_Integer)UINT32_MAX) {
      snprintf(what, sizeof what, "%.120s.indices[%lld]", name, (long long)i);
      return point_error(c, "%s must be an integer from 0 to 4294967295%s", what, "");
    }
    seen[i - 1] = (uint32_t)v;
    {
      char num[16];
      int len = snprintf(num, sizeof num, i < n ? "%u," : "%u", (unsigned)v);
      if (put(c, num, (size_t)len)) return -1;
    }
  }
  qsort(seen, (size_t)n, sizeof *seen, cmp_u32);
  for (i = 1; i < n; i++)
    if (seen[i] == seen[i - 1]) {
      snprintf(what, sizeof what, "%.120s.indices holds %u twice", name, (unsigned)seen[i]);
      return point_error(c, "%s%s", what, "");
    }
  if (put(c, "],\"values\":[", 12)) return -1;
  if (!c->out) c->bound += (size_t)n * SS_FLOAT32_TEXT_SIZE;
  else if (ss_buf_reserve(c->out, (size_t)n * SS_FLOAT32_TEXT_SIZE + 3)) return oom(c);
  snprintf(what, sizeof what, "%.120s.values", name);
  for (i = 1; i <= n; i++) {
    if (put_float(L, c, lua_rawgeti(L, values, i), what, i)) return -1;
    lua_pop(L, 1);
    if (c->out && i < n) c->out->data[c->out->len++] = ',';
  }
  lua_pop(L, 2);
  return put(c, "]}", 2);
}

/* vector = {...} (the collection's one unnamed vector) or a table of
 * named vectors, each dense {...} or sparse {indices=, values=}. dims
 * (when known) maps "" or each name to a size, or to "sparse". */
static int put_vector(lua_State *L, point_ctx *c, int idx) {
  int first = 1;
  if (!lua_istable(L, idx)) return point_error(c, "vector must be a table, not a %s%s", luaL_typename(L, idx), "");
  if (lua_rawlen(L, idx) > 0) {
    lua_Integer size = -1;
    if (c->dims) {
      lua_getfield(L, c->dims, "");
      if (lua_isnil(L, -1))
        return point_error(c, "the collection's vectors are named: give vector = { <name> = {...} }%s%s", "", "");
      size = lua_tointeger(L, -1);
      lua_pop(L, 1);
    }
    return put_dense_or_multi(L, c, idx, "vector", size);
  }
  if (put(c, "{", 1)) return -1;
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    int v = lua_gettop(L), sparse;
    lua_Integer size = -1;
    size_t klen;
    const char *name;
    char what[256];
    if (lua_type(L, -2) != LUA_TSTRING)
      return point_error(c, "vector is neither an array of numbers nor a table of named vectors%s%s", "", "");
    name = lua_tolstring(L, -2, &klen);
    if (!ss_utf8_valid(name, klen)) return point_error(c, "a vector's name is not valid UTF-8%s%s", "", "");
    snprintf(what, sizeof what, "vector.%.100s", name);
    if (!lua_istable(L, v)) return point_error(c, "%s must be a table, not a %s", what, luaL_typename(L, v));
    lua_getfield(L, v, "indices");
    sparse = !lua_isnil(L, -1);
    lua_pop(L, 1);
    if (c->dims) {
      lua_pushvalue(L, -2);
      lua_gettable(L, c->dims);
      if (lua_isnil(L, -1)) return point_error(c, "the collection has no vector named '%s'%s", name, "");
      if (lua_type(L, -1) == LUA_TSTRING) {
        if (!sparse) return point_error(c, "%s is a sparse vector: it needs the arrays indices and values%s", what, "");
      } else {
        if (sparse) return point_error(c, "%s is a dense vector, not a sparse one%s", what, "");
        size = lua_tointeger(L, -1);
      }
      lua_pop(L, 1);
    }
    if (!first && put(c, ",", 1)) return -1;
    first = 0;
    if (!c->out) c->bound += klen * 6 + 3;
    else if (ss_json_string(c->out, name, klen) || ss_buf_putc(c->out, ':')) return oom(c);
    if (sparse ? put_sparse(L, c, v, what) : put_dense_or_multi(L, c, v, what, size)) return -1;
    lua_pop(L, 1);
  }
  if (first) return point_error(c, "vector is empty%s%s", "", "");
  return put(c, "}", 1);
}

/* The point at idx: checked, and written to c->out when it is set. */
static int put_point(lua_State *L, point_ctx *c, int idx) {
  int top = lua_gettop(L);
  c->field[0] = '\0';
  if (!lua_istable(L, idx)) return point_error(c, "a point is a table {id =, vector =, payload =}, not a %s%s", luaL_typename(L, idx), "");
  /* a misspelt field would otherwise be dropped in silence */
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : NULL;
    lua_pop(L, 1);
    if (!k || (strcmp(k, "id") && strcmp(k, "vector") && strcmp(k, "payload"))) {
      ss_strlcpy(c->field, k, sizeof c->field);
      return point_error(c, "unknown field %s (a point has id, vector and payload)%s",
                         k ? k : lua_typename(L, lua_type(L, -1)), "");
    }
  }
  ss_strlcpy(c->field, "id", sizeof c->field);
  lua_getfield(L, idx, "id");
  if (read_id(L, c)) return -1;
  if (put(c, "{\"id\":", 6) || put(c, c->id, c->id_len) || put(c, ",\"vector\":", 10)) return -1;
  ss_strlcpy(c->field, "vector", sizeof c->field);
  lua_getfield(L, idx, "vector");
  if (lua_isnil(L, -1)) return point_error(c, "it has no vector%s%s", "", "");
  if (put_vector(L, c, lua_gettop(L))) return -1;
  ss_strlcpy(c->field, "payload", sizeof c->field);
  lua_getfield(L, idx, "payload");
  if (!ss_is_null(L, -1)) {
    ss_buf *to = c->out ? c->out : c->scratch;
    if (!lua_istable(L, -1) || lua_rawlen(L, -1) > 0)
      return point_error(c, "payload must be a table of fields, not %s%s",
                         lua_istable(L, -1) ? "an array" : luaL_typename(L, -1), "");
    to->len = c->out ? to->len : 0;
    if (put(c, ",\"payload\":", 11)) return -1;
    if (ss_encode_json(L, lua_gettop(L), to, c->err)) {
      char why[sizeof c->err->message];
      ss_strlcpy(why, c->err->message, sizeof why);
      return point_error(c, "payload: %.400s%s", why, "");
    }
    if (!c->out) c->bound += to->len;
  }
  lua_settop(L, top);
  c->field[0] = '\0'; /* what fails after this is no one field's fault */
  return put(c, "}", 1);
}

/* ---- upsert ---- */

static int upsert_gc(lua_State *L) {
  upsert_ud *b = luaL_checkudata(L, 1, SS_UPSERT_MT);
  ss_qdrant_upsert_free(b->u);
  b->u = NULL;
  return 0;
}

/* Pushes the report {points, batches, retries, seconds, failed_ids}. */
static void push_report(lua_State *L, ss_qdrant_upsert *u, const ss_qdrant_report *r) {
  size_t n = ss_qdrant_upsert_failed_count(u), i;
  lua_createtable(L, 0, 5);
  lua_pushinteger(L, (lua_Integer)r->points);
  lua_setfield(L, -2, "points");
  lua_pushinteger(L, (lua_Integer)r->batches);
  lua_setfield(L, -2, "batches");
  lua_pushinteger(L, (lua_Integer)r->retries);
  lua_setfield(L, -2, "retries");
  lua_pushnumber(L, r->seconds);
  lua_setfield(L, -2, "seconds");
  if (n > 0) {
    const char *id = ss_qdrant_upsert_failed_ids(u);
    lua_createtable(L, (int)(n < INT32_MAX ? n : INT32_MAX), 0);
    for (i = 1; i <= n; i++) {
      size_t len = strlen(id);
      if (id[0] == '"') lua_pushlstring(L, id + 1, len - 2);
      else {
        char *end;
        long long v;
        errno = 0;
        v = strtoll(id, &end, 10);
        if (errno == ERANGE || *end) lua_pushlstring(L, id, len); /* above 2^63: as the digits */
        else ss_pushint64(L, (int64_t)v);
      }
      lua_rawseti(L, -2, (lua_Integer)i);
      id += len + 1;
    }
    lua_setfield(L, -2, "failed_ids");
  }
}

/* Names the refused point on the error table on top: err.point, its index
 * from 1, and err.field, the field that was refused (when known). */
static void set_point(lua_State *L, lua_Integer point, const char *field) {
  lua_pushinteger(L, point);
  lua_setfield(L, -2, "point");
  if (field && *field) {
    lua_pushstring(L, field);
    lua_setfield(L, -2, "field");
  }
}

/* Ends the upsert: pushes the report, or nil and the error with the
 * report in err.report (and err.point when a point was refused). */
static int upsert_end(lua_State *L, ss_qdrant_upsert *u, const ss_error *refused, lua_Integer point,
                      const char *field) {
  ss_qdrant_report r;
  ss_error err;
  int rc = ss_qdrant_upsert_finish(u, &r, &err);
  if (refused) {
    err = *refused;
    if (point && err.kind == SS_ERR_INPUT && strncmp(err.message, "point ", 6) != 0) {
      char why[sizeof err.message];
      ss_strlcpy(why, err.message, sizeof why);
      snprintf(err.message, sizeof err.message, "point %lld: %.900s", (long long)point, why);
    }
  }
  else if (rc == 0) {
    push_report(L, u, &r);
    return 1;
  }
  ss_push_fail(L, &err);
  push_report(L, u, &r);
  lua_setfield(L, -2, "report");
  if (point) set_point(L, point, field);
  return 2;
}

/* The body of h:upsert, run protected: 1 the box, 2 points, 3 dims (or
 * nil), with scratch buffers at 4, 5 and 6. */
static int upsert_run(lua_State *L) {
  upsert_ud *b = lua_touserdata(L, 1);
  ss_qdrant_upsert *u = b->u;
  ss_error err;
  point_ctx c;
  lua_Integer i, n;
  ss_buf *exact; /* a point whose size must be known exactly */
  ss_error memory;
  memset(&c, 0, sizeof c);
  c.dims = lua_istable(L, 3) ? 3 : 0;
  c.scratch = ss_push_scratch(L); /* 4 */
  c.sort = ss_push_scratch(L);    /* 5 */
  exact = ss_push_scratch(L);     /* 6 */
  c.err = &err;
  ss_error_set(&memory, SS_ERR_MEMORY, "out of memory building a batch");
  if (lua_istable(L, 2)) {
    n = (lua_Integer)lua_rawlen(L, 2);
    /* every point is checked before anything is sent; its size too,
     * exactly (written out) only when its bound is past the room */
    for (i = 1; i <= n; i++) {
      int bad;
      c.index = i;
      c.bound = 0;
      c.out = NULL;
      lua_rawgeti(L, 2, i);
      bad = put_point(L, &c, lua_gettop(L));
      if (!bad && c.bound > ss_qdrant_upsert_room(u)) {
        c.out = exact;
        exact->len = 0;
        bad = put_point(L, &c, lua_gettop(L));
        if (!bad && c.out->len > ss_qdrant_upsert_room(u)) {
          char what[128];
          snprintf(what, sizeof what, "the point is %zu bytes of JSON, more than max_bytes allows (%zu)", c.out->len,
                   ss_qdrant_upsert_room(u));
          bad = point_error(&c, "%s%s", what, "");
        }
      }
      if (bad) {
        ss_push_fail(L, &err);
        set_point(L, i, c.field);
        return 2;
      }
      lua_pop(L, 1);
    }
    for (i = 1; i <= n; i++) {
      c.index = i;
      lua_rawgeti(L, 2, i);
      if (ss_qdrant_upsert_stopped(u)) { /* only the ids, for the report */
        lua_getfield(L, -1, "id");
        if (read_id(L, &c) || ss_qdrant_upsert_unsent(u, c.id, c.id_len, &err)) return upsert_end(L, u, &err, i, c.field);
      } else {
        if (!(c.out = ss_qdrant_upsert_point(u))) return upsert_end(L, u, &memory, i, NULL);
        if (put_point(L, &c, lua_gettop(L)) || ss_qdrant_upsert_add(u, c.id, c.id_len, &err))
          return upsert_end(L, u, &err, i, c.field);
      }
      lua_settop(L, 6);
    }
    return upsert_end(L, u, NULL, 0, NULL);
  }
  /* an iterator: each point is checked as it comes; one that is refused
   * ends the upsert, and the points before it are written */
  for (i = 1; !ss_qdrant_upsert_stopped(u); i++) {
    c.index = i;
    lua_pushvalue(L, 2);
    lua_call(L, 0, 1);
    if (lua_isnil(L, -1)) break;
    if (!(c.out = ss_qdrant_upsert_point(u))) return upsert_end(L, u, &memory, i, NULL);
    if (put_point(L, &c, lua_gettop(L)) || ss_qdrant_upsert_add(u, c.id, c.id_len, &err))
      return upsert_end(L, u, &err, i, c.field);
    lua_settop(L, 6);
  }
  return upsert_end(L, u, NULL, 0, NULL);
}

/* h:upsert(path, points, opts, dims) -> report | nil, err. points: an
 * array or an iterator function; dims: the collection's vector sizes
 * ({[""] = 512} or {dense = 512, text = "sparse"}), nil when unknown. */
/* The upsert options at idx (a table or nil) into o; -1 with err set for a
 * value out of its range. */
static int read_upsert_opts(lua_State *L, int idx, ss_qdrant *q, ss_qdrant_upsert_opts *o, ss_error *err) {
  double batch, bytes, parallel;
  ss_qdrant_upsert_opts_defaults(o, q);
  if (read_limits(L, idx, ss_qdrant_defaults(q), &o->limits, err)) return -1;
  if (lua_isnil(L, idx)) return 0;
  if (ss_opt_number(L, idx, "batch_size", (double)o->batch_size, 1, 1000000, 1, &batch, err) ||
      ss_opt_number(L, idx, "max_bytes", (double)o->max_bytes, 1024, (double)SS_QDRANT_MAX_BODY, 1, &bytes, err) ||
      ss_opt_number(L, idx, "parallel", o->parallel, 1, SS_QDRANT_MAX_PARALLEL, 1, &parallel, err))
    return -1;
  o->batch_size = (size_t)batch;
  o->max_bytes = (size_t)bytes;
  o->parallel = (int)parallel;
  return 0;
}

/* h:check_upsert_options(opts) -> true | nil, err: what upsert would say of
 * opts' values, without a request (a service checks its options once). */
static int qdrant_check_upsert_options(lua_State *L) {
  ss_qdrant *q = check_qdrant(L);
  ss_qdrant_upsert_opts o;
  ss_error err;
  ss_error_clear(&err);
  lua_settop(L, 2);
  if (read_upsert_opts(L, 2, q, &o, &err)) return ss_push_fail(L, &err);
  lua_pushboolean(L, 1);
  return 1;
}

static int qdrant_upsert(lua_State *L) {
  ss_qdrant *q = check_qdrant(L);
  const char *path = luaL_checkstring(L, 2);
  ss_qdrant_upsert_opts o;
  ss_error err;
  upsert_ud *b;
  int status;
  ss_error_clear(&err);
  lua_settop(L, 5);
  luaL_argexpected(L, lua_istable(L, 3) || lua_isfunction(L, 3), 3, "an array of points or an iterator");
  if (read_upsert_opts(L, 4, q, &o, &err)) return ss_push_fail(L, &err);
  b = ss_newuserdata(L, sizeof *b); /* 6: frees the upsert if anything raises */
  b->u = NULL;
  luaL_setmetatable(L, SS_UPSERT_MT);
  b->u = ss_qdrant_upsert_begin(q, "PUT", path, &o, &err);
  if (!b->u) return ss_push_fail(L, &err);
  lua_pushcfunction(L, upsert_run);
  lua_pushvalue(L, 6);
  lua_pushvalue(L, 3);
  lua_pushvalue(L, 5);
  status = lua_pcall(L, 3, 2, 0);
  /* the client is free again at once, whatever happened */
  ss_qdrant_upsert_free(b->u);
  b->u = NULL;
  if (status != LUA_OK) return lua_error(L);
  return 2;
}

/* ---- the handle ---- */

static int qdrant_close(lua_State *L) {
  qdrant_ud *h = luaL_checkudata(L, 1, SS_QDRANT_MT);
  /* the upsert under way holds the client (this runs from its iterator);
   * __gc cannot come here then, as the upsert's caller holds the handle */
  if (h->q && ss_qdrant_busy(h->q)) return luaL_error(L, "cannot close a Qdrant client while an upsert runs on it");
  ss_qdrant_free(h->q);
  h->q = NULL;
  return 0;
}

static int qdrant_tostring(lua_State *L) {
  qdrant_ud *h = luaL_checkudata(L, 1, SS_QDRANT_MT);
  if (h->q) lua_pushfstring(L, "semstore.qdrant(%s)", ss_qdrant_display_url(h->q));
  else lua_pushliteral(L, "semstore.qdrant(closed)");
  return 1;
}

/* h:url(): where it sends requests, without any user:password */
static int qdrant_url(lua_State *L) {
  lua_pushstring(L, ss_qdrant_display_url(check_qdrant(L)));
  return 1;
}

void ss_open_qdrant(lua_State *L) {
  static const luaL_Reg methods[] = {{"request", qdrant_request},
                                     {"upsert", qdrant_upsert},
                                     {"check_upsert_options", qdrant_check_upsert_options},
                                     {"url", qdrant_url},
                                     {"close", qdrant_close},
                                     {NULL, NULL}};
  ss_register_type(L, SS_QDRANT_MT, methods, qdrant_close, NULL, qdrant_tostring, "qdrant_methods");
  luaL_newmetatable(L, SS_UPSERT_MT);
  lua_pushcfunction(L, upsert_gc);
  lua_setfield(L, -2, "__gc");
  lua_pop(L, 1);
  lua_pushcfunction(L, qdrant_open);
  lua_setfield(L, -2, "qdrant_open");
}
