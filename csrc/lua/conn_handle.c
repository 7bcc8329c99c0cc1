/* semstore.conn: a connection borrowed from a pool. release(), __close
 * and __gc all return it, exactly once; __gc also warns, since a script
 * that relies on it holds a connection for as long as the collector waits. */
#include <stdio.h>
#include <string.h>

#include "binding.h"

ss_conn *ss_conn_new(lua_State *L, ss_pool *pool, int borrowed_for_call) {
  ss_conn *c = ss_newuserdata(L, sizeof *c);
  memset(c, 0, sizeof *c);
  luaL_setmetatable(L, SS_CONN_MT);
  ss_pool_ref(pool);
  c->pool = pool;
  c->borrowed_for_call = borrowed_for_call;
  return c;
}

void ss_conn_release(ss_conn *c) {
  if (c->res) {
    PQclear(c->res);
    c->res = NULL;
  }
  if (c->item) {
    ss_pool_release(c->pool, c->item);
    c->item = NULL;
  }
}

int ss_conn_run(lua_State *L, ss_conn *c, int sql_idx, int nparams, int simple) {
  size_t len;
  const char *sql = luaL_checklstring(L, sql_idx, &len);
  ss_params params;
  ss_error err;
  PGresult *res;
  ss_pg *pg;
  int failed = 0, acquired_here = 0;
  ss_error_clear(&err);
  if (simple && nparams > 0)
    return luaL_error(L, "exec() takes no parameters: use query() to bind values");
  if (memchr(sql, 0, len)) {
    ss_error_set(&err, SS_ERR_INPUT, "the SQL text contains a zero byte");
    return ss_push_fail(L, &err);
  }
  if (!simple && ss_encode_params(L, sql_idx + 1, nparams, &params, &err)) return ss_push_fail(L, &err);
  if (!c->item) {
    if (!c->borrowed_for_call) return luaL_error(L, "this connection was released");
    if (!(c->item = ss_pool_acquire(c->pool, &err))) return ss_push_fail(L, &err);
    acquired_here = 1;
  }
  pg = c->item->conn;
  if (c->res) { /* left by a decode that an error interrupted */
    PQclear(c->res);
    c->res = NULL;
  }
  res = simple ? ss_pg_exec(pg, sql, &err)
               : ss_pg_stream_start(pg, sql, params.n, params.types, params.values, params.lengths,
                                    params.formats, &err);
  if (res) {
    c->res = res;
    failed = ss_push_result(L, &c->res, simple ? NULL : pg, &err);
    PQclear(c->res);
    c->res = NULL;
  }
  if (acquired_here) ss_conn_release(c);
  return !res || failed ? ss_push_fail(L, &err) : 1;
}

ss_conn *ss_conn_for(lua_State *L, int idx, ss_error *err) {
  ss_conn *c;
  if (ss_has_metatable(L, idx, SS_CONN_MT)) {
    c = lua_touserdata(L, idx);
    if (!c->item) luaL_error(L, "this connection was released");
    lua_pushvalue(L, idx);
    return c;
  }
  c = ss_conn_new(L, ss_check_pool(L, idx), 1);
  if (!(c->item = ss_pool_acquire(c->pool, err))) return NULL;
  return c;
}

void ss_conn_finish(ss_conn *c) {
  if (c->borrowed_for_call) ss_conn_release(c);
}

static ss_conn *check_conn(lua_State *L) { return luaL_checkudata(L, 1, SS_CONN_MT); }

static ss_conn *check_idle_conn(lua_State *L) {
  ss_conn *c = check_conn(L);
  if (c->busy) luaL_error(L, "this connection is in use by a repository call that is still running");
  return c;
}

static int conn_query(lua_State *L) {
  return ss_conn_run(L, check_idle_conn(L), 2, lua_gettop(L) - 2, 0);
}

static int conn_exec(lua_State *L) {
  return ss_conn_run(L, check_idle_conn(L), 2, lua_gettop(L) - 2, 1);
}

static int conn_release(lua_State *L) {
  ss_conn_release(check_idle_conn(L));
  return 0;
}

static ss_pg *live_pg(lua_State *L) {
  ss_conn *c = check_conn(L);
  if (!c->item) luaL_error(L, "this connection was released");
  return c->item->conn;
}

static int conn_backend_pid(lua_State *L) {
  lua_pushinteger(L, ss_pg_backend_pid(live_pg(L)));
  return 1;
}

/* "idle", "in_transaction", "failed_transaction", "active" or "unknown" */
static int conn_transaction_status(lua_State *L) {
  static const char *names[] = {"idle", "active", "in_transaction", "failed_transaction", "unknown"};
  PGTransactionStatusType st = ss_pg_transaction_status(live_pg(L));
  lua_pushstring(L, names[st <= PQTRANS_UNKNOWN ? st : PQTRANS_UNKNOWN]);
  return 1;
}

static int conn_released(lua_State *L) {
  lua_pushboolean(L, check_conn(L)->item == NULL);
  return 1;
}

static int conn_gc(lua_State *L) {
  ss_conn *c = check_conn(L);
  if (c->item && !c->borrowed_for_call) {
    fprintf(stderr,
            "semstore: a connection of pool '%s' was garbage-collected without release(); "
            "it went back to the pool\n",
            ss_pool_name(c->pool));
    ss_pool_note_reclaimed(c->pool);
  }
  ss_conn_release(c);
  if (c->pool) {
    ss_pool_unref(c->pool);
    c->pool = NULL;
  }
  return 0;
}

static int conn_tostring(lua_State *L) {
  ss_conn *c = check_conn(L);
  lua_pushfstring(L, "semstore.conn(%s%s)", c->pool ? ss_pool_name(c->pool) : "?",
                  c->item ? "" : ", released");
  return 1;
}

void ss_open_conn(lua_State *L) {
  static const luaL_Reg methods[] = {
      {"query", conn_query},
      {"exec", conn_exec},
      {"release", conn_release},
      {"released", conn_released},
      {"backend_pid", conn_backend_pid},
      {"transaction_status", conn_transaction_status},
      {NULL, NULL}};
  /* the Lua layer adds transaction() to conn_methods */
  ss_register_type(L, SS_CONN_MT, methods, conn_gc, conn_release, conn_tostring, "conn_methods");
}
