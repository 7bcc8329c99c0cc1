/* semstore.pg_pipeline: the statements of db.pg:pipeline(fn) and
 * conn:pipeline(fn), queued in C (csrc/core/pg.c's ss_pg_pipeline) as
 * fn's p:query calls them, with their parameters encoded then; sent by
 * core.pg_pipeline_run once fn returned, in libpq's pipeline mode. The Lua
 * side (lua/semstore/init.lua) calls fn and ends the pipeline however fn
 * ends, so a p kept past it raises. */
#include <string.h>

#include "binding.h"

#define SS_PG_PIPELINE_MT "semstore.pg_pipeline"

typedef struct {
  ss_pg_pipeline *p;
  int ended;     /* sent, or discarded because fn raised */
  ss_error err;  /* the first statement refused: the pipeline fails with it, nothing sent */
  long refused;  /* its number, from 1; 0 when none */
} builder;

static builder *check_builder(lua_State *L, int idx) { return luaL_checkudata(L, idx, SS_PG_PIPELINE_MT); }

static builder *check_open(lua_State *L) {
  builder *b = check_builder(L, 1);
  if (b->ended || !b->p)
    luaL_error(L, "this pipeline has ended: queue statements with p:query inside the function given to pipeline()");
  return b;
}

/* Drops what the pipeline holds; later use raises. */
static void end_builder(builder *b) {
  b->ended = 1;
  ss_pg_pipeline_free(b->p);
  b->p = NULL;
}

static int builder_gc(lua_State *L) {
  end_builder(check_builder(L, 1));
  return 0;
}

static int builder_tostring(lua_State *L) {
  builder *b = check_builder(L, 1);
  if (!b->p) lua_pushliteral(L, "semstore.pg_pipeline(ended)");
  else lua_pushfstring(L, "semstore.pg_pipeline(%d statements)", (int)ss_pg_pipeline_count(b->p));
  return 1;
}

/* core.pg_pipeline() -> an empty pipeline */
static int pipeline_new(lua_State *L) {
  builder *b = ss_newuserdata(L, sizeof *b);
  memset(b, 0, sizeof *b);
  luaL_setmetatable(L, SS_PG_PIPELINE_MT);
  if (!(b->p = ss_pg_pipeline_new())) return luaL_error(L, "out of memory making a pipeline");
  return 1;
}

/* Prefixes err's message with "statement N: ". */
static void name_statement(ss_error *err, long n) {
  char why[sizeof err->message];
  ss_strlcpy(why, err->message, sizeof why);
  snprintf(err->message, sizeof err->message, "statement %ld: %.900s", n, why);
}

/* p:query(sql, ...): queues the statement with its values encoded now. A
 * refused value (NaN, a zero byte) does not raise: the pipeline fails with
 * the first one, and nothing is sent. */
static int builder_query(lua_State *L) {
  builder *b = check_open(L);
  size_t len;
  const char *sql = luaL_checklstring(L, 2, &len);
  int n = lua_gettop(L) - 2;
  long number = (long)ss_pg_pipeline_count(b->p) + 1;
  ss_params params;
  if (b->refused) return 0;
  if (memchr(sql, 0, len)) {
    ss_error_set(&b->err, SS_ERR_INPUT, "the SQL text contains a zero byte");
  } else if (ss_encode_params(L, 3, n, &params, &b->err) == 0) {
    /* copied: the encoded values (pushed by ss_encode_params) can go */
    if (ss_pg_pipeline_add(b->p, sql, params.n, params.types, params.values, params.lengths, params.formats,
                           &b->err) == 0)
      return 0;
  }
  b->refused = number;
  name_statement(&b->err, number);
  return 0;
}

/* p:sync(): a sync point after the statements queued so far */
static int builder_sync(lua_State *L) {
  ss_pg_pipeline_sync(check_open(L)->p);
  return 0;
}

/* p:count() -> the statements queued */
static int builder_count(lua_State *L) {
  builder *b = check_builder(L, 1);
  lua_pushinteger(L, b->p ? (lua_Integer)ss_pg_pipeline_count(b->p) : 0);
  return 1;
}

/* p:discard(): ends the pipeline unsent (what the Lua side does when fn raises) */
static int builder_discard(lua_State *L) {
  end_builder(check_builder(L, 1));
  return 0;
}

typedef struct {
  ss_conn_handle *c;
  builder *b;
} run_state;

/* nil, err with err.statement the failing statement's number */
static int push_statement_fail(lua_State *L, const ss_error *err, long n) {
  ss_push_fail(L, err);
  if (n > 0) {
    lua_pushinteger(L, n);
    lua_setfield(L, -2, "statement");
  }
  return 2;
}

/* On the borrowed connection, protected by ss_conn_call: runs the
 * pipeline and decodes each result with the one row decoder. */
static int run_body(lua_State *L) {
  run_state *rs = lua_touserdata(L, lua_upvalueindex(1));
  ss_pg *pg = rs->c->lease->conn;
  ss_pg_pipeline *p = rs->b->p;
  int null_nil = ((ss_pg_settings *)ss_pool_ctx(rs->c->pool))->null_as_nil;
  size_t i, n = ss_pg_pipeline_count(p);
  ss_error err;
  ss_error_clear(&err);
  if (ss_pg_pipeline_run(pg, p, &err)) return push_statement_fail(L, &err, ss_pg_pipeline_failed(p) + 1);
  if (!lua_checkstack(L, 8)) return luaL_error(L, "no room on the Lua stack");
  lua_createtable(L, n < 1u << 26 ? (int)n : 0, 0);
  for (i = 0; i < n; i++) {
    int failed = 0, status;
    /* the results stay p's, so a raise while decoding leaks none */
    status = ss_push_result(L, ss_pg_pipeline_slot(p, i), pg, 0, null_nil, &err, &failed);
    if (status != LUA_OK) return lua_error(L);
    if (failed) {
      name_statement(&err, (long)i + 1);
      return push_statement_fail(L, &err, (long)i + 1);
    }
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  ss_pg_pipeline_clear_results(p);
  return 1;
}

/* core.pg_pipeline_run(target, p): target is a pool (a connection is
 * borrowed for the call and given back on every way out) or a borrowed
 * connection. Returns the array of results, each as query() returns its
 * rows, or nil, err naming the failing statement (err.statement). The
 * pipeline ends either way. */
static int pipeline_run(lua_State *L) {
  builder *b = check_builder(L, 2);
  run_state *rs;
  ss_error err;
  int owned;
  ss_error_clear(&err);
  lua_settop(L, 2);
  if (!ss_has_metatable(L, 1, SS_CONN_MT)) ss_check_pool(L, 1);
  if (b->ended || !b->p) return luaL_error(L, "this pipeline has ended: it was already sent or discarded");
  b->ended = 1;
  if (b->refused) { /* nothing sent */
    err = b->err;
    end_builder(b);
    return push_statement_fail(L, &err, b->refused);
  }
  if (ss_pg_pipeline_count(b->p) == 0) {
    end_builder(b);
    lua_newtable(L);
    return 1;
  }
  rs = ss_newuserdata(L, sizeof *rs); /* at 3: lives as long as the call */
  rs->b = b;
  if (!(rs->c = ss_conn_for(L, 1, &owned, &err))) {
    end_builder(b);
    return ss_push_fail(L, &err);
  }
  owned = ss_conn_call(L, rs->c, owned, run_body, rs, 1, NULL); /* the values it returns */
  end_builder(b); /* a raise leaves this to the collector */
  return owned;
}

void ss_open_pg_pipeline(lua_State *L) {
  static const luaL_Reg methods[] = {{"query", builder_query},
                                     {"sync", builder_sync},
                                     {"count", builder_count},
                                     {"discard", builder_discard},
                                     {NULL, NULL}};
  ss_register_type(L, SS_PG_PIPELINE_MT, methods, builder_gc, NULL, builder_tostring, "pg_pipeline_methods");
  lua_pushcfunction(L, pipeline_new);
  lua_setfield(L, -2, "pg_pipeline");
  lua_pushcfunction(L, pipeline_run);
  lua_setfield(L, -2, "pg_pipeline_run");
}
