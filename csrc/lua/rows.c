/* semstore.rows: `for row in db.pg:rows(sql, ...) do ... end`. The
 * statement runs in single-row mode, and each step of the loop decodes one
 * row, so a result of any size is read in constant memory. The cursor
 * holds the connection (borrowed for the loop when rows() was called on a
 * pool) and the result being read; the loop's closing value, __close and
 * __gc end it: the rest of the result is cancelled and dropped, and a
 * borrowed connection goes back. */
#include <string.h>

#include "binding.h"

#define ROWS_MT "semstore.rows"

typedef struct {
  ss_conn_handle *c;       /* anchored in the cursor's user value table, at 1 */
  int owned;        /* c was borrowed for this loop */
  PGresult *res;    /* the next row, or the final result */
  int ncols, null_nil, done;
  int failed;       /* the stream failed after the row handed out last: err is raised next */
  unsigned stream;  /* its number on c: another means it was ended from outside */
  ss_error err;
  ss_buf *scratch;  /* anchored at 3 */
  ss_column *cols;  /* anchored at 4 */
} cursor;

/* Ends the loop: the rest of the result is dropped, the connection given
 * back when it was borrowed for it. Idempotent. */
static void finish(cursor *k) {
  if (k->res) {
    PQclear(k->res);
    k->res = NULL;
  }
  if (k->done || !k->c) return;
  k->done = 1;
  if (k->c->stream == k->stream) ss_conn_end_stream(k->c);
  if (k->owned) ss_conn_release(k->c);
}

static int rows_close(lua_State *L) {
  finish(luaL_checkudata(L, 1, ROWS_MT));
  return 0;
}

/* The loop's step: the next row, or nothing at the end. A failure midway
 * (a division by zero at row 5,000, a lost connection) raises the error
 * table after the connection went back. */
static int rows_next(lua_State *L) {
  cursor *k = luaL_checkudata(L, 1, ROWS_MT);
  int names, c;
  if (k->failed) {
    k->failed = 0;
    ss_push_error(L, &k->err);
    return lua_error(L);
  }
  if (k->done) return 0;
  /* ended from outside (release(), the transaction it ran in): nothing more */
  if (!k->c->lease || k->c->stream != k->stream) {
    finish(k);
    return 0;
  }
  if (!k->res || PQresultStatus(k->res) != PGRES_SINGLE_TUPLE) {
    finish(k);
    return 0;
  }
  luaL_checkstack(L, k->ncols + 8, "too many columns");
  lua_getiuservalue(L, 1, 1);
  lua_rawgeti(L, -1, 2); /* the names */
  names = lua_gettop(L) + 1;
  for (c = 1; c <= k->ncols; c++) lua_rawgeti(L, names - 1, c);
  ss_push_row(L, k->res, 0, k->ncols, names, k->cols, k->scratch, k->null_nil);
  PQclear(k->res);
  ss_error_clear(&k->err);
  k->res = ss_pg_stream_next(k->c->lease->conn, &k->err);
  if (!k->res) { /* this row stands; the failure is the next step's */
    finish(k);
    k->failed = 1;
    return 1;
  }
  if (PQresultStatus(k->res) != PGRES_SINGLE_TUPLE) finish(k);
  return 1;
}

static int rows_tostring(lua_State *L) {
  cursor *k = luaL_checkudata(L, 1, ROWS_MT);
  lua_pushstring(L, k->done ? "semstore.rows(done)" : "semstore.rows");
  return 1;
}

/* rows(sql, ...) on the pool or conn at 1: returns the cursor's step
 * function, the cursor, nil, and the cursor again as the loop's closing
 * value; or nil, err when the statement fails at once. */
static int rows_open(lua_State *L) {
  int n = lua_gettop(L) - 2, owned, top;
  ss_error err;
  ss_params params;
  ss_conn_handle *c;
  cursor *k;
  PGresult *res;
  ss_error_clear(&err);
  luaL_checkstring(L, 2);
  if (memchr(lua_tostring(L, 2), 0, lua_rawlen(L, 2))) {
    ss_error_set(&err, SS_ERR_INPUT, "the SQL text contains a zero byte");
    return ss_push_fail(L, &err);
  }
  if (ss_encode_params(L, 3, n, &params, &err)) return ss_push_fail(L, &err);
  top = lua_gettop(L); /* the parameters' anchor */
  k = lua_newuserdatauv(L, sizeof *k, 1);
  memset(k, 0, sizeof *k);
  k->done = 1; /* nothing to end until it holds a connection */
  luaL_setmetatable(L, ROWS_MT);
  lua_createtable(L, 4, 0); /* 1 the conn, 2 the names, 3 the scratch buffer, 4 the column decoders */
  lua_setiuservalue(L, -2, 1);
  if (!(c = ss_conn_for(L, 1, &owned, &err))) return ss_push_fail(L, &err);
  lua_getiuservalue(L, top + 1, 1);
  lua_pushvalue(L, -2);
  lua_rawseti(L, -2, 1);
  lua_pop(L, 2);
  k->c = c;
  k->owned = owned;
  k->done = 0;
  k->null_nil = ((ss_pg_settings *)ss_pool_ctx(c->pool))->null_as_nil;
  /* the rows are decoded as they stream in, when the connection cannot ask
   * the catalog about a type: learn the result's types first */
  if (ss_pg_describe_types(c->lease->conn, lua_tostring(L, 2), params.n, params.types, &err)) {
    finish(k);
    return ss_push_fail(L, &err);
  }
  res = ss_pg_stream_start(c->lease->conn, lua_tostring(L, 2), params.n, params.types, params.values, params.lengths,
                           params.formats, &err);
  if (!res) {
    finish(k);
    return ss_push_fail(L, &err);
  }
  k->res = res;
  k->ncols = PQnfields(res);
  lua_getiuservalue(L, top + 1, 1);
  k->scratch = ss_push_scratch(L);
  lua_rawseti(L, -2, 3);
  k->cols = lua_newuserdatauv(L, sizeof *k->cols * (size_t)(k->ncols ? k->ncols : 1), 0);
  lua_rawseti(L, -2, 4);
  lua_createtable(L, k->ncols, 0);
  lua_insert(L, -2);
  lua_pop(L, 1);
  {
    int names = lua_gettop(L) + 1, col;
    if (ss_columns(L, res, k->cols, &err) || ss_resolve_columns(c->lease->conn, res, k->cols, 0, &err)) {
      finish(k);
      return ss_push_fail(L, &err);
    }
    for (col = k->ncols; col >= 1; col--) lua_rawseti(L, names - 1, col);
    lua_getiuservalue(L, top + 1, 1);
    lua_insert(L, -2);
    lua_rawseti(L, -2, 2);
    lua_pop(L, 1);
  }
  /* the connection stays with the loop: other calls on it wait until it ends */
  k->stream = ss_conn_start_stream(c);
  lua_pushcfunction(L, rows_next);
  lua_pushvalue(L, top + 1);
  lua_pushnil(L);
  lua_pushvalue(L, top + 1);
  return 4;
}

void ss_open_rows(lua_State *L) {
  static const luaL_Reg methods[] = {{"close", rows_close}, {NULL, NULL}};
  ss_register_type(L, ROWS_MT, methods, rows_close, rows_close, rows_tostring, "rows_methods");
  lua_pushcfunction(L, rows_open);
  lua_setfield(L, -2, "rows");
}
