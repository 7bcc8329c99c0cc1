/* semstore.pool: a Lua handle on a process-wide PostgreSQL pool. Several
 * handles (from several Lua states) may share one pool; each holds a
 * reference. query() and exec() borrow a connection for one call. */
#include <math.h>
#include <string.h>

#include "binding.h"

typedef struct {
  ss_pool *pool;
} pool_ud;

ss_pool *ss_check_pool(lua_State *L, int idx) {
  pool_ud *u = luaL_checkudata(L, idx, SS_POOL_MT);
  if (!u->pool) luaL_error(L, "this pool handle was closed");
  return u->pool;
}

static ss_pool *check_pool(lua_State *L) { return ss_check_pool(L, 1); }

/* Milliseconds for a PostgreSQL timeout; a positive time never becomes 0,
 * which PostgreSQL reads as no limit at all. */
static int ms(double seconds) {
  int v = (int)(seconds * 1000 + 0.5);
  return seconds <= 0 ? 0 : v > 0 ? v : 1;
}

/* The longest time an option takes, in seconds: PostgreSQL's timeouts are
 * int milliseconds, and a day is more than any wait should be. */
#define MAX_SECONDS 2147483.0

int ss_read_pool_config(lua_State *L, int idx, ss_pool_config *cfg, ss_error *err) {
  double size, overflow;
  lua_getfield(L, idx, "pre_ping");
  cfg->pre_ping = lua_isnil(L, -1) ? cfg->pre_ping : lua_toboolean(L, -1);
  lua_pop(L, 1);
  if (ss_opt_number(L, idx, "size", cfg->size, 1, 10000, 1, &size, err) ||
      ss_opt_number(L, idx, "max_overflow", cfg->max_overflow, 0, 10000, 1, &overflow, err) ||
      ss_opt_number(L, idx, "timeout", cfg->timeout, 0, MAX_SECONDS, 0, &cfg->timeout, err) ||
      ss_opt_number(L, idx, "recycle", cfg->recycle, 0, 1e9, 0, &cfg->recycle, err) ||
      ss_opt_number(L, idx, "idle_timeout", cfg->idle_timeout, 0, 1e9, 0, &cfg->idle_timeout, err) ||
      ss_opt_number(L, idx, "ping_after_idle", cfg->ping_after_idle, 0, 1e9, 0, &cfg->ping_after_idle, err))
    return -1;
  cfg->size = (int)size;
  cfg->max_overflow = (int)overflow;
  return 0;
}

/* core.pool_open{name=, conninfo=, size=, max_overflow=, timeout=, recycle=,
 * idle_timeout=, pre_ping=, ping_after_idle=, application_name=,
 * connect_timeout=, statement_timeout=, lock_timeout=,
 * idle_in_transaction_timeout=, statement_cache_size=, null=, reset=, recover_grace=} (times in
 * seconds) */
static int pool_open(lua_State *L) {
  ss_pool_config cfg;
  ss_pg_settings *s, d; /* d: the defaults (ss_pg_settings_defaults) */
  ss_error err;
  double connect_timeout, stmt_timeout, lock_timeout, idle_tx, cache, recover_grace;
  const char *name, *conninfo, *app, *null_mode, *reset_mode;
  pool_ud *u;
  ss_error_clear(&err);
  ss_pool_config_defaults(&cfg);
  ss_pg_settings_defaults(&d);
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_getfield(L, 1, "name");
  name = lua_isstring(L, -1) ? lua_tostring(L, -1) : "default";
  lua_getfield(L, 1, "conninfo");
  conninfo = lua_isstring(L, -1) ? lua_tostring(L, -1) : "";
  lua_getfield(L, 1, "application_name");
  app = lua_isstring(L, -1) ? lua_tostring(L, -1) : NULL;
  lua_getfield(L, 1, "null");
  null_mode = lua_isstring(L, -1) ? lua_tostring(L, -1) : lua_isnil(L, -1) ? "null" : "";
  if (strcmp(null_mode, "null") != 0 && strcmp(null_mode, "nil") != 0) {
    ss_error_set(&err, SS_ERR_INPUT, "option 'null' must be \"null\" (semstore.null) or \"nil\"");
    return ss_push_fail(L, &err);
  }
  lua_getfield(L, 1, "reset");
  reset_mode = lua_isstring(L, -1) ? lua_tostring(L, -1) : lua_isnil(L, -1) ? "auto" : "";
  if (strcmp(reset_mode, "auto") != 0 && strcmp(reset_mode, "always") != 0) {
    ss_error_set(&err, SS_ERR_INPUT, "option 'reset' must be \"auto\" or \"always\"");
    return ss_push_fail(L, &err);
  }
  if (ss_read_pool_config(L, 1, &cfg, &err) ||
      ss_opt_number(L, 1, "connect_timeout", d.connect_timeout_s, 0, MAX_SECONDS, 0, &connect_timeout, &err) ||
      ss_opt_number(L, 1, "statement_timeout", d.statement_timeout_ms / 1000.0, 0, MAX_SECONDS, 0, &stmt_timeout, &err) ||
      ss_opt_number(L, 1, "lock_timeout", d.lock_timeout_ms / 1000.0, 0, MAX_SECONDS, 0, &lock_timeout, &err) ||
      ss_opt_number(L, 1, "idle_in_transaction_timeout", d.idle_in_transaction_timeout_ms / 1000.0, 0, MAX_SECONDS, 0,
                 &idle_tx, &err) ||
      ss_opt_number(L, 1, "statement_cache_size", d.statement_cache_size, 1, 100000, 1, &cache, &err))
    return ss_push_fail(L, &err);
  /* recover_grace: seconds, or false for no recovery on the first connection */
  lua_getfield(L, 1, "recover_grace");
  if (lua_isboolean(L, -1) && !lua_toboolean(L, -1)) recover_grace = -1;
  else if (ss_opt_number(L, 1, "recover_grace", d.recover_grace, 0, MAX_SECONDS, 0, &recover_grace, &err))
    return ss_push_fail(L, &err);
  if (!(s = ss_pg_settings_new(conninfo))) {
    ss_error_set(&err, SS_ERR_MEMORY, "out of memory");
    return ss_push_fail(L, &err);
  }
  if (app) ss_strlcpy(s->application_name, app, sizeof s->application_name);
  s->connect_timeout_s = connect_timeout >= 1 ? (int)connect_timeout : 1;
  s->statement_timeout_ms = ms(stmt_timeout);
  s->lock_timeout_ms = ms(lock_timeout);
  s->idle_in_transaction_timeout_ms = ms(idle_tx);
  s->statement_cache_size = (int)cache;
  s->null_as_nil = strcmp(null_mode, "nil") == 0;
  s->reset_always = strcmp(reset_mode, "always") == 0;
  s->recover_grace = recover_grace;
  u = ss_newuserdata(L, sizeof *u);
  u->pool = NULL;
  luaL_setmetatable(L, SS_POOL_MT);
  if (!(u->pool = ss_pool_open(name, conninfo, &cfg, &ss_pg_pool_ops, s, &err))) return ss_push_fail(L, &err);
  return 1;
}

static int pool_query(lua_State *L) {
  ss_pool *p = check_pool(L);
  int n = lua_gettop(L) - 2;
  luaL_checkstring(L, 2);
  ss_conn_new(L, p, 1);
  lua_insert(L, 2); /* keep the parameters right after the SQL */
  return ss_conn_run(L, lua_touserdata(L, 2), 3, n, 0);
}

static int pool_exec(lua_State *L) {
  ss_pool *p = check_pool(L);
  int n = lua_gettop(L) - 2;
  luaL_checkstring(L, 2);
  ss_conn_new(L, p, 1);
  lua_insert(L, 2);
  return ss_conn_run(L, lua_touserdata(L, 2), 3, n, 1);
}

static int pool_acquire(lua_State *L) {
  static const char *const keys[] = {"timeout", NULL};
  ss_error err;
  ss_conn_handle *c;
  double wait = -1;
  ss_error_clear(&err);
  check_pool(L);
  lua_settop(L, 2);
  /* opts.timeout: how long to wait for a free connection, at most the pool's */
  luaL_argexpected(L, lua_isnil(L, 2) || lua_istable(L, 2), 2, "a table of options");
  if (!lua_isnil(L, 2) && (ss_check_keys(L, 2, keys, "acquire's options", &err) ||
                           ss_opt_number(L, 2, "timeout", 1e9, 0, 1e9, 0, &wait, &err)))
    return ss_push_fail(L, &err);
  c = ss_conn_new(L, check_pool(L), 0);
  if (!(c->lease = ss_pool_acquire_within(c->pool, wait, &err))) return ss_push_fail(L, &err);
  return 1;
}

/* pool:transaction(fn, opts): one connection for the whole transaction,
 * given back whatever happens. */
static int pool_transaction(lua_State *L) {
  ss_error err;
  ss_conn_handle *c;
  int owned;
  ss_error_clear(&err);
  check_pool(L);
  luaL_checktype(L, 2, LUA_TFUNCTION);
  lua_settop(L, 3);
  if (!(c = ss_conn_for(L, 1, &owned, &err))) return ss_push_fail(L, &err);
  lua_replace(L, 1); /* (conn, fn, opts): conn:transaction's own arguments */
  return ss_conn_call(L, c, owned, ss_run_transaction, NULL, 0, NULL);
}

static void set_int(lua_State *L, const char *key, long v) {
  lua_pushinteger(L, v);
  lua_setfield(L, -2, key);
}

void ss_push_pool_stats(lua_State *L, ss_pool *p) {
  ss_pool_stats st;
  ss_pool_get_stats(p, &st);
  lua_createtable(L, 0, 13);
  lua_pushstring(L, ss_pool_name(p));
  lua_setfield(L, -2, "name");
  set_int(L, "size", st.size);
  set_int(L, "idle", st.idle);
  set_int(L, "in_use", st.in_use);
  set_int(L, "waiting", st.waiting);
  set_int(L, "acquired", st.acquired);
  set_int(L, "timeouts", st.timeouts);
  set_int(L, "evicted", st.evicted);
  set_int(L, "opened", st.opened);
  set_int(L, "reclaimed", st.reclaimed);
  set_int(L, "peak", st.peak);
  set_int(L, "max", st.max);
  lua_pushnumber(L, st.wait_ms);
  lua_setfield(L, -2, "wait_ms");
}

static int pool_stats(lua_State *L) {
  ss_push_pool_stats(L, check_pool(L));
  return 1;
}

static int pool_name(lua_State *L) {
  lua_pushstring(L, ss_pool_name(check_pool(L)));
  return 1;
}

/* Drops this handle's reference; the pool closes when no handle or
 * borrowed connection refers to it any more. */
static int pool_close(lua_State *L) {
  pool_ud *u = luaL_checkudata(L, 1, SS_POOL_MT);
  if (u->pool) {
    ss_pool_unref(u->pool);
    u->pool = NULL;
  }
  return 0;
}

static int pool_tostring(lua_State *L) {
  pool_ud *u = luaL_checkudata(L, 1, SS_POOL_MT);
  lua_pushfstring(L, "semstore.pool(%s)", u->pool ? ss_pool_name(u->pool) : "closed");
  return 1;
}

void ss_open_pool(lua_State *L) {
  static const luaL_Reg methods[] = {
      {"query", pool_query}, {"exec", pool_exec}, {"acquire", pool_acquire}, {"stats", pool_stats},
      {"name", pool_name},   {"close", pool_close}, {"transaction", pool_transaction}, {NULL, NULL}};
  ss_register_type(L, SS_POOL_MT, methods, pool_close, NULL, pool_tostring, "pool_methods");
  lua_pushcfunction(L, pool_open);
  lua_setfield(L, -2, "pool_open");
}
