/* semstore.conn: a connection borrowed from a pool. release(), __close
 * and __gc all return it, exactly once; __gc also warns, since a script
 * that relies on it holds a connection for as long as the collector waits. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "binding.h"

ss_conn_handle *ss_conn_new(lua_State *L, ss_pool *pool, int borrowed_for_call) {
  ss_conn_handle *c = ss_newuserdata(L, sizeof *c);
  memset(c, 0, sizeof *c);
  luaL_setmetatable(L, SS_CONN_MT);
  ss_pool_ref(pool);
  c->pool = pool;
  c->borrowed_for_call = borrowed_for_call;
  return c;
}

void ss_conn_release(ss_conn_handle *c) {
  if (c->res) {
    PQclear(c->res);
    c->res = NULL;
  }
  if (c->lease) {
    ss_pool_release(c->pool, c->lease);
    c->lease = NULL;
  }
}

/* Whether NULL decodes as nil for this connection's pool. */
static int null_as_nil(ss_conn_handle *c) { return ((ss_pg_settings *)ss_pool_ctx(c->pool))->null_as_nil; }

int ss_conn_run(lua_State *L, ss_conn_handle *c, int sql_idx, int nparams, int simple) {
  size_t len;
  const char *sql = luaL_checklstring(L, sql_idx, &len);
  ss_params params;
  ss_error err;
  PGresult *res;
  ss_pg *pg;
  int failed = 0, acquired_here = 0, status;
  ss_error_clear(&err);
  if (simple && nparams > 0)
    return luaL_error(L, "exec() takes no parameters: use query() to bind values");
  if (memchr(sql, 0, len)) {
    ss_error_set(&err, SS_ERR_INPUT, "the SQL text contains a zero byte");
    return ss_push_fail(L, &err);
  }
  if (!simple && ss_encode_params(L, sql_idx + 1, nparams, &params, &err)) return ss_push_fail(L, &err);
  if (!c->lease) {
    if (!c->borrowed_for_call) return luaL_error(L, "this connection was released");
    if (!(c->lease = ss_pool_acquire(c->pool, &err))) return ss_push_fail(L, &err);
    acquired_here = 1;
  }
  pg = c->lease->conn;
  if (c->res) { /* left by a decode that an error interrupted */
    PQclear(c->res);
    c->res = NULL;
  }
  res = simple ? ss_pg_exec(pg, sql, &err)
               : ss_pg_stream_start(pg, sql, params.n, params.types, params.values, params.lengths,
                                    params.formats, &err);
  if (res) {
    c->res = res;
    status = ss_push_result(L, &c->res, pg, !simple, null_as_nil(c), &err, &failed);
    PQclear(c->res);
    c->res = NULL;
    if (status != LUA_OK) { /* the decode raised: the connection goes back first */
      if (acquired_here) ss_conn_release(c);
      return lua_error(L);
    }
  }
  if (acquired_here) ss_conn_release(c);
  return !res || failed ? ss_push_fail(L, &err) : 1;
}

ss_conn_handle *ss_conn_for(lua_State *L, int idx, int *owned, ss_error *err) {
  ss_conn_handle *c;
  *owned = 0;
  if (ss_has_metatable(L, idx, SS_CONN_MT)) {
    c = lua_touserdata(L, idx);
    if (!c->lease) luaL_error(L, "this connection was released");
    if (c->busy || c->stream)
      luaL_error(L, "this connection is in use by a call that is still running (a bulk insert's iterator or "
                    "a rows() loop cannot run statements on the same connection)");
    lua_pushvalue(L, idx);
    return c;
  }
  c = ss_conn_new(L, ss_check_pool(L, idx), 1);
  if (!(c->lease = ss_pool_acquire(c->pool, err))) return NULL;
  *owned = 1;
  return c;
}

/* What ss_conn_call's continuation needs: kept in a userdata on the
 * stack, since the body may yield (a coroutine inside a transaction). */
typedef struct {
  ss_conn_handle *c;
  int owned;
  void *ud;
  void (*on_raise)(void *ud);
} call_state;

static int call_after(lua_State *L, int status, lua_KContext top) {
  call_state *cs = lua_touserdata(L, (int)top + 1);
  cs->c->busy = 0;
  if (status != LUA_OK && status != LUA_YIELD) {
    if (cs->on_raise) cs->on_raise(cs->ud);
    if (cs->owned) ss_conn_release(cs->c);
    return lua_error(L);
  }
  if (cs->owned) ss_conn_release(cs->c);
  return lua_gettop(L) - ((int)top + 1);
}

int ss_conn_call(lua_State *L, ss_conn_handle *c, int owned, lua_CFunction body, void *ud, int busy,
                 void (*on_raise)(void *ud)) {
  int top = lua_gettop(L), k;
  call_state *cs;
  if (!lua_checkstack(L, top + 3)) {
    if (owned) ss_conn_release(c);
    return luaL_error(L, "no room on the Lua stack");
  }
  cs = ss_newuserdata(L, sizeof *cs); /* at top + 1 */
  cs->c = c;
  cs->owned = owned;
  cs->ud = ud;
  cs->on_raise = on_raise;
  lua_pushlightuserdata(L, ud);
  lua_pushcclosure(L, body, 1);
  for (k = 1; k <= top; k++) lua_pushvalue(L, k);
  c->busy = busy;
  return call_after(L, lua_pcallk(L, top, LUA_MULTRET, 0, top, call_after), top);
}

static ss_conn_handle *check_conn(lua_State *L) { return luaL_checkudata(L, 1, SS_CONN_MT); }

static ss_conn_handle *check_idle_conn(lua_State *L) {
  ss_conn_handle *c = check_conn(L);
  if (c->busy) luaL_error(L, "this connection is in use by a repository call that is still running");
  if (c->stream)
    luaL_error(L, "this connection is reading a rows() or copy_to() result: finish or leave that loop first");
  return c;
}

static int conn_query(lua_State *L) {
  return ss_conn_run(L, check_idle_conn(L), 2, lua_gettop(L) - 2, 0);
}

static int conn_exec(lua_State *L) {
  return ss_conn_run(L, check_idle_conn(L), 2, lua_gettop(L) - 2, 1);
}

/* Ends an iteration still reading from the connection: the rest of its
 * result is cancelled and dropped. */
unsigned ss_conn_start_stream(ss_conn_handle *c) {
  if (++c->streams == 0) c->streams = 1;
  return c->stream = c->streams;
}

void ss_conn_end_stream(ss_conn_handle *c) {
  if (!c->stream) return;
  c->stream = 0;
  if (c->lease) ss_pg_stream_abandon(c->lease->conn);
}

static int conn_release(lua_State *L) {
  ss_conn_handle *c = check_conn(L);
  if (c->busy) return luaL_error(L, "this connection is in use by a repository call that is still running");
  ss_conn_end_stream(c);
  ss_conn_release(c);
  return 0;
}

static ss_pg *live_pg(lua_State *L) {
  ss_conn_handle *c = check_conn(L);
  if (!c->lease) luaL_error(L, "this connection was released");
  return c->lease->conn;
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
  lua_pushboolean(L, check_conn(L)->lease == NULL);
  return 1;
}

/* ---- transactions ---- */

static const char *const ISOLATIONS[] = {"read committed", "repeatable read", "serializable", NULL};

/* The BEGIN mode from opts (isolation, read_only) at idx; 0, or -1 with err set. */
static int tx_mode(lua_State *L, int idx, char *mode, size_t size, ss_error *err) {
  static const char *const keys[] = {"isolation", "read_only", NULL};
  *mode = '\0';
  if (lua_isnoneornil(L, idx)) return 0;
  if (!lua_istable(L, idx)) return ss_error_set(err, SS_ERR_INPUT, "transaction options must be a table");
  if (ss_check_keys(L, idx, keys, "the transaction's options", err)) return -1;
  if (lua_getfield(L, idx, "isolation") != LUA_TNIL) {
    char iso[32];
    size_t len, k;
    const char *v = lua_tolstring(L, -1, &len);
    int i, found = -1;
    if (!v || len >= sizeof iso) return ss_error_set(err, SS_ERR_INPUT, "unknown isolation level");
    for (k = 0; k <= len; k++) iso[k] = v[k] == '_' ? ' ' : (char)((v[k] >= 'A' && v[k] <= 'Z') ? v[k] + 32 : v[k]);
    for (i = 0; ISOLATIONS[i]; i++)
      if (strcmp(iso, ISOLATIONS[i]) == 0) found = i;
    if (found < 0) return ss_error_set(err, SS_ERR_INPUT, "unknown isolation level: %s", v);
    snprintf(mode, size, "ISOLATION LEVEL %s", (const char *[]){"READ COMMITTED", "REPEATABLE READ", "SERIALIZABLE"}[found]);
  }
  lua_pop(L, 1);
  lua_getfield(L, idx, "read_only");
  if (lua_toboolean(L, -1)) snprintf(mode + strlen(mode), size - strlen(mode), "%sREAD ONLY", *mode ? " " : "");
  lua_pop(L, 1);
  return 0;
}

/* An error a transaction's function raised, as an error table: semstore's
 * own as they are, anything else as kind "callback". */
static void push_callback_error(lua_State *L, int idx) {
  ss_error err;
  if (lua_istable(L, idx) && ss_has_metatable(L, idx, SS_ERROR_MT)) {
    lua_pushvalue(L, idx);
    return;
  }
  ss_error_set(&err, SS_ERR_CALLBACK, "%s",
               lua_type(L, idx) == LUA_TSTRING || lua_type(L, idx) == LUA_TNUMBER ? lua_tostring(L, idx)
                                                                                 : luaL_typename(L, idx));
  ss_push_error(L, &err);
}

/* conn:transaction's second half, on (conn, fn, opts, tx) and what fn
 * returned or raised; a continuation, since fn may yield. */
static int tx_after(lua_State *L, int status, lua_KContext ctx) {
  ss_conn_handle *c = lua_touserdata(L, 1);
  ss_pg_tx *tx = lua_touserdata(L, 4);
  int n = lua_gettop(L) - 4;
  ss_error err;
  (void)ctx;
  ss_error_clear(&err);
  if (!c->lease) { /* released inside: the pool rolled it back */
    ss_error_set(&err, SS_ERR_INPUT, "the connection was released inside its transaction, which was rolled back");
    return ss_push_fail(L, &err);
  }
  ss_conn_end_stream(c); /* a copy_to or rows loop fn left unfinished */
  if (status != LUA_OK && status != LUA_YIELD) {
    ss_pg_tx_end(c->lease->conn, tx, 0, &err);
    lua_pushnil(L);
    push_callback_error(L, -2);
    return 2;
  }
  if (n >= 2 && lua_isnil(L, 5) && !lua_isnil(L, 6)) { /* fn returned nil, err */
    ss_pg_tx_end(c->lease->conn, tx, 0, &err);
    lua_pushnil(L);
    lua_pushvalue(L, 6);
    return 2;
  }
  if (ss_pg_tx_end(c->lease->conn, tx, 1, &err)) return ss_push_fail(L, &err);
  if (n == 0 || lua_isnil(L, 5)) {
    lua_pushboolean(L, 1);
    return 1;
  }
  return n;
}

int ss_run_transaction(lua_State *L) {
  ss_conn_handle *c = luaL_checkudata(L, 1, SS_CONN_MT);
  ss_pg_tx *tx;
  ss_error err;
  char mode[96];
  ss_error_clear(&err);
  luaL_checktype(L, 2, LUA_TFUNCTION);
  lua_settop(L, 3);
  if (!c->lease) return luaL_error(L, "this connection was released");
  if (c->busy || c->stream) return luaL_error(L, "this connection is in use by a repository call that is still running");
  if (tx_mode(L, 3, mode, sizeof mode, &err)) return ss_push_fail(L, &err);
  tx = ss_newuserdata(L, sizeof *tx); /* at 4: the savepoint's name must outlive a yield */
  if (ss_pg_tx_begin(c->lease->conn, tx, mode, &err)) return ss_push_fail(L, &err);
  lua_pushvalue(L, 2);
  lua_pushvalue(L, 1);
  return tx_after(L, lua_pcallk(L, 1, LUA_MULTRET, 0, 0, tx_after), 0);
}

/* ---- timeouts, notifications, COPY ---- */

/* A number of seconds at idx: finite and not negative, or an input error. */
int ss_check_seconds(lua_State *L, int idx, const char *what, double *out, ss_error *err) {
  double v;
  if (lua_type(L, idx) != LUA_TNUMBER) return ss_error_set(err, SS_ERR_INPUT, "%s must be a number of seconds", what);
  v = lua_tonumber(L, idx);
  if (!(v >= 0 && v <= 1e9)) /* NaN fails both */
    return ss_error_set(err, SS_ERR_INPUT, "%s must be from 0 to 1e9 seconds, not %s", what, lua_tostring(L, idx));
  *out = v;
  return 0;
}

/* conn:settimeout(seconds): how long each following call may wait for the server (nil or 0: no limit). */
static int conn_settimeout(lua_State *L) {
  ss_conn_handle *c = check_idle_conn(L);
  double t = 0;
  ss_error err;
  if (!c->lease) return luaL_error(L, "this connection was released");
  if (!lua_isnoneornil(L, 2) && ss_check_seconds(L, 2, "the timeout", &t, &err)) return ss_push_fail(L, &err);
  ss_pg_set_timeout(c->lease->conn, t);
  lua_pushboolean(L, 1);
  return 1;
}

/* Runs "LISTEN name" or "UNLISTEN name" with the channel quoted by libpq. */
static int listen_cmd(lua_State *L, const char *cmd) {
  ss_conn_handle *c = check_idle_conn(L);
  size_t len;
  const char *ch = luaL_checklstring(L, 2, &len);
  ss_error err;
  char *quoted;
  PGresult *res;
  ss_error_clear(&err);
  if (!c->lease) return luaL_error(L, "this connection was released");
  if (len == 0 || len > 63 || memchr(ch, 0, len)) {
    ss_error_set(&err, SS_ERR_INPUT, "a channel name is 1 to 63 bytes without zero bytes");
    return ss_push_fail(L, &err);
  }
  if (!(quoted = PQescapeIdentifier(ss_pg_conn(c->lease->conn), ch, len))) {
    ss_error_set(&err, SS_ERR_INPUT, "the channel name cannot be quoted (not valid in the client encoding)");
    return ss_push_fail(L, &err);
  }
  lua_pushfstring(L, "%s %s", cmd, quoted);
  PQfreemem(quoted);
  res = ss_pg_exec(c->lease->conn, lua_tostring(L, -1), &err);
  if (!res) return ss_push_fail(L, &err);
  PQclear(res);
  lua_pushboolean(L, 1);
  return 1;
}

static int conn_listen(lua_State *L) { return listen_cmd(L, "LISTEN"); }
static int conn_unlisten(lua_State *L) { return listen_cmd(L, "UNLISTEN"); }

/* conn:wait_notification(timeout): {channel =, payload =, pid =}, or nil on timeout. */
static int conn_wait_notification(lua_State *L) {
  ss_conn_handle *c = check_idle_conn(L);
  double t = -1;
  ss_error err;
  ss_pg_notify n;
  int got;
  ss_error_clear(&err);
  if (!c->lease) return luaL_error(L, "this connection was released");
  if (!lua_isnoneornil(L, 2) && ss_check_seconds(L, 2, "the timeout", &t, &err)) return ss_push_fail(L, &err);
  if ((got = ss_pg_notification(c->lease->conn, t, &n, &err)) < 0) return ss_push_fail(L, &err);
  if (got == 0) {
    lua_pushnil(L);
    return 1;
  }
  lua_createtable(L, 0, 3);
  lua_pushstring(L, n.channel);
  lua_setfield(L, -2, "channel");
  lua_pushstring(L, n.payload);
  free(n.payload);
  lua_setfield(L, -2, "payload");
  lua_pushinteger(L, n.pid);
  lua_setfield(L, -2, "pid");
  return 1;
}

typedef struct {
  ss_pg *pg;
  int copying; /* in COPY IN mode: a raise must end it */
} copy_state;

static void copy_abandon(void *ud) {
  copy_state *cs = ud;
  ss_error ignored;
  if (!cs->copying) return;
  cs->copying = 0;
  if (ss_pg_copy_done(cs->pg, "semstore: the data source raised an error", &ignored) == 0)
    ss_pg_copy_result(cs->pg, &ignored);
}

static int copy_piece(copy_state *cs, lua_State *L, int idx, ss_error *err) {
  size_t len;
  const char *s;
  if (lua_type(L, idx) != LUA_TSTRING)
    return ss_error_set(err, SS_ERR_INPUT, "COPY data must be strings, not a %s", luaL_typename(L, idx));
  s = lua_tolstring(L, idx, &len);
  return ss_pg_copy_send(cs->pg, s, len, err);
}

/* The body of copy_from, on (conn, sql, source) at 1..3. */
static int copy_from_body(lua_State *L) {
  copy_state *cs = lua_touserdata(L, lua_upvalueindex(1));
  ss_error err;
  long long rows;
  int failed = 0;
  ss_error_clear(&err);
  if (ss_pg_copy_begin(cs->pg, lua_tostring(L, 2), &err)) return ss_push_fail(L, &err);
  cs->copying = 1;
  if (lua_type(L, 3) == LUA_TSTRING) {
    failed = copy_piece(cs, L, 3, &err);
  } else if (lua_isfunction(L, 3)) {
    for (;;) {
      lua_pushvalue(L, 3);
      lua_call(L, 0, 1);
      if (lua_isnil(L, -1)) break;
      if ((failed = copy_piece(cs, L, -1, &err))) break;
      lua_pop(L, 1);
    }
  } else {
    lua_Integer i, n = ss_array_length(L, 3);
    for (i = 1; i <= n && !failed; i++) {
      lua_rawgeti(L, 3, i);
      failed = copy_piece(cs, L, -1, &err);
      lua_pop(L, 1);
    }
  }
  cs->copying = 0;
  if (failed) {
    ss_error ignored;
    if (ss_pg_copy_done(cs->pg, err.message, &ignored) == 0) ss_pg_copy_result(cs->pg, &ignored);
    return ss_push_fail(L, &err);
  }
  if (ss_pg_copy_done(cs->pg, NULL, &err) || (rows = ss_pg_copy_result(cs->pg, &err)) < 0) return ss_push_fail(L, &err);
  lua_pushinteger(L, rows);
  return 1;
}

/* conn:copy_from(sql, source): source is a string, an array of strings or
 * an iterator of strings; returns the rows copied, or nil, err. */
static int conn_copy_from(lua_State *L) {
  ss_conn_handle *c = check_idle_conn(L);
  copy_state cs = {NULL, 0};
  int t;
  luaL_checkstring(L, 2);
  t = lua_type(L, 3);
  luaL_argexpected(L, t == LUA_TSTRING || t == LUA_TTABLE || t == LUA_TFUNCTION, 3, "string, array or iterator");
  lua_settop(L, 3);
  if (!c->lease) return luaL_error(L, "this connection was released");
  cs.pg = c->lease->conn;
  return ss_conn_call(L, c, 0, copy_from_body, &cs, 1, copy_abandon);
}

/* The iterator copy_to returns: upvalue 1 the conn. Each call gives the
 * next piece of data, nil at the end; a failure midway raises the error table. */
static int copy_to_next(lua_State *L) {
  ss_conn_handle *c = lua_touserdata(L, lua_upvalueindex(1));
  ss_error err;
  char *data;
  long n;
  /* ended: by its loop, by release(), or by the transaction it ran in */
  if (!c->lease || c->stream != (unsigned)lua_tointeger(L, lua_upvalueindex(2))) return 0;
  ss_error_clear(&err);
  n = ss_pg_copy_out_next(c->lease->conn, &data, &err);
  if (n > 0) {
    lua_pushlstring(L, data, (size_t)n);
    PQfreemem(data);
    return 1;
  }
  c->stream = 0;
  if (n == 0) return 0;
  ss_push_error(L, &err);
  return lua_error(L);
}

static int stream_close(lua_State *L) {
  ss_conn_handle *c = lua_touserdata(L, lua_upvalueindex(1));
  if (c->stream == (unsigned)lua_tointeger(L, lua_upvalueindex(2))) ss_conn_end_stream(c);
  return 0;
}

/* Pushes the to-be-closed value a generic for gets as its fourth: leaving
 * the loop (break, error) ends the iteration on the conn userdata at idx.
 * Its close() does the same by hand, for LuaJIT, whose generic for has no
 * closing value. */
void ss_push_stream_closer(lua_State *L, int idx, unsigned stream) {
  idx = lua_absindex(L, idx);
  lua_createtable(L, 0, 1);
  lua_createtable(L, 0, 1);
  lua_pushvalue(L, idx);
  lua_pushinteger(L, stream);
  lua_pushcclosure(L, stream_close, 2);
  lua_pushvalue(L, -1);
  lua_setfield(L, -3, "__close");
  lua_setfield(L, -3, "close");
  lua_setmetatable(L, -2);
}

/* conn:copy_to(sql): an iterator of data pieces (with a closing value for
 * a generic for), or nil, err when the server refuses the statement. */
static int conn_copy_to(lua_State *L) {
  ss_conn_handle *c = check_idle_conn(L);
  unsigned stream;
  ss_error err;
  ss_error_clear(&err);
  luaL_checkstring(L, 2);
  if (!c->lease) return luaL_error(L, "this connection was released");
  if (ss_pg_copy_out_begin(c->lease->conn, lua_tostring(L, 2), &err)) return ss_push_fail(L, &err);
  stream = ss_conn_start_stream(c);
  lua_pushvalue(L, 1);
  lua_pushinteger(L, stream);
  lua_pushcclosure(L, copy_to_next, 2);
  ss_push_stream_closer(L, 1, stream);
  lua_pushnil(L);
  lua_pushvalue(L, -2);
  return 4; /* next, closer, nil, closer: the second value is the one to close() */
}

static int conn_gc(lua_State *L) {
  ss_conn_handle *c = check_conn(L);
  if (c->lease && !c->borrowed_for_call) {
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
  ss_conn_handle *c = check_conn(L);
  lua_pushfstring(L, "semstore.conn(%s%s)", c->pool ? ss_pool_name(c->pool) : "?",
                  c->lease ? "" : ", released");
  return 1;
}

void ss_open_conn(lua_State *L) {
  static const luaL_Reg methods[] = {
      {"query", conn_query},
      {"exec", conn_exec},
      {"transaction", ss_run_transaction},
      {"release", conn_release},
      {"released", conn_released},
      {"backend_pid", conn_backend_pid},
      {"transaction_status", conn_transaction_status},
      {"settimeout", conn_settimeout},
      {"listen", conn_listen},
      {"unlisten", conn_unlisten},
      {"wait_notification", conn_wait_notification},
      {"copy_from", conn_copy_from},
      {"copy_to", conn_copy_to},
      {NULL, NULL}};
  ss_register_type(L, SS_CONN_MT, methods, conn_gc, conn_release, conn_tostring, "conn_methods");
}
