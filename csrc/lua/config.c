/* What lua/semstore/config.lua asks of C: the check that refuses options
 * nobody knows (the same one the repositories use, so every "unknown field"
 * error of the library reads alike), libpq's own list of connection
 * keywords, and the pool's defaults as the core defines them. */
#include "binding.h"
#include "qdrant.h"
#include "redis.h"

/* core.check_keys(t, names, what): true, or nil and an input error naming
 * the first key of t that is not one of the strings in the array names
 * (the key also in err.column). A key that is not a string is refused as
 * such: options are named. */
static int check_keys(lua_State *L) {
  ss_error err;
  const char **names;
  const char *what = luaL_checkstring(L, 3);
  lua_Integer n, i;
  luaL_checktype(L, 1, LUA_TTABLE);
  luaL_checktype(L, 2, LUA_TTABLE);
  ss_error_clear(&err);
  n = luaL_len(L, 2);
  luaL_argcheck(L, n >= 0 && n < 10000, 2, "too many names");
  /* a userdata, so a raise below leaks nothing; the strings stay in `names` */
  names = ss_newuserdata(L, (size_t)(n + 1) * sizeof *names);
  for (i = 1; i <= n; i++) {
    lua_rawgeti(L, 2, i);
    luaL_argcheck(L, lua_type(L, -1) == LUA_TSTRING, 2, "names must be strings");
    names[i - 1] = lua_tostring(L, -1);
    lua_pop(L, 1);
  }
  names[n] = NULL;
  lua_pushnil(L);
  while (lua_next(L, 1)) {
    lua_pop(L, 1);
    if (lua_type(L, -1) != LUA_TSTRING) {
      const char *type = luaL_typename(L, -1);
      ss_error_set(&err, SS_ERR_INPUT, "%s are named, and the key %s (a %s) is not a string", what,
                   luaL_tolstring(L, -1, NULL), type);
      return ss_push_fail(L, &err);
    }
  }
  if (ss_check_keys(L, 1, names, what, &err)) return ss_push_fail(L, &err);
  lua_pushboolean(L, 1);
  return 1;
}

/* Copies the keywords of the PQconninfoOption array (a light userdata) into
 * a new array. */
static int copy_keywords(lua_State *L) {
  const PQconninfoOption *o = lua_touserdata(L, 1);
  lua_Integer n = 0;
  lua_newtable(L);
  for (; o->keyword; o++) {
    lua_pushstring(L, o->keyword);
    lua_rawseti(L, -2, ++n);
  }
  return 1;
}

/* core.conninfo_keywords(): an array of every keyword this libpq takes
 * (PQconndefaults), in its order, so a postgres table can pass any of them
 * and be refused anything else, with no list of our own to fall behind. */
static int conninfo_keywords(lua_State *L) {
  PQconninfoOption *opts = PQconndefaults();
  int status;
  if (!opts) return luaL_error(L, "out of memory listing libpq's keywords");
  /* the copy runs protected: a memory error must not leak libpq's array */
  lua_pushcfunction(L, copy_keywords);
  lua_pushlightuserdata(L, opts);
  status = lua_pcall(L, 1, 1, 0);
  PQconninfoFree(opts);
  if (status != LUA_OK) return lua_error(L);
  return 1;
}

/* An integer when v is one (30, not 30.0), as the options are written. */
static void set_number(lua_State *L, const char *key, double v) {
  if (v == (double)(lua_Integer)v) lua_pushinteger(L, (lua_Integer)v);
  else lua_pushnumber(L, v);
  lua_setfield(L, -2, key);
}

/* core.defaults: every pool option's default, named as opts.pool names it
 * (times in seconds), from the core's one definition of them
 * (ss_pool_config_defaults, ss_pg_settings_defaults); pool_open starts
 * from the same. */
static void push_defaults(lua_State *L) {
  ss_pool_config cfg;
  ss_pg_settings s;
  ss_pool_config_defaults(&cfg);
  ss_pg_settings_defaults(&s);
  lua_createtable(L, 0, 14);
  set_number(L, "size", cfg.size);
  set_number(L, "max_overflow", cfg.max_overflow);
  set_number(L, "timeout", cfg.timeout);
  set_number(L, "recycle", cfg.recycle);
  set_number(L, "idle_timeout", cfg.idle_timeout);
  lua_pushboolean(L, cfg.pre_ping);
  lua_setfield(L, -2, "pre_ping");
  set_number(L, "ping_after_idle", cfg.ping_after_idle);
  set_number(L, "connect_timeout", s.connect_timeout_s);
  set_number(L, "statement_timeout", s.statement_timeout_ms / 1000.0);
  set_number(L, "lock_timeout", s.lock_timeout_ms / 1000.0);
  set_number(L, "idle_in_transaction_timeout", s.idle_in_transaction_timeout_ms / 1000.0);
  set_number(L, "statement_cache_size", s.statement_cache_size);
  set_number(L, "recover_grace", s.recover_grace);
  lua_pushstring(L, s.application_name);
  lua_setfield(L, -2, "application_name");
  /* the Qdrant and Redis clients' own, so a caller that bounds them (the
   * worker's --timeout) never loosens them */
  {
    ss_qdrant_limits q;
    ss_redis_settings r;
    ss_qdrant_limits_defaults(&q);
    ss_redis_settings_defaults(&r);
    lua_createtable(L, 0, 4);
    set_number(L, "timeout", q.timeout_ms / 1000.0);
    set_number(L, "connect_timeout", q.connect_timeout_ms / 1000.0);
    set_number(L, "max_retries", q.max_retries);
    set_number(L, "retry_timeout", q.retry_timeout);
    lua_setfield(L, -2, "qdrant");
    lua_createtable(L, 0, 2);
    set_number(L, "connect_timeout", r.connect_timeout);
    set_number(L, "command_timeout", r.command_timeout);
    lua_setfield(L, -2, "redis");
  }
}

void ss_open_config(lua_State *L) {
  push_defaults(L);
  lua_setfield(L, -2, "defaults");
  lua_pushcfunction(L, check_keys);
  lua_setfield(L, -2, "check_keys");
  lua_pushcfunction(L, conninfo_keywords);
  lua_setfield(L, -2, "conninfo_keywords");
}
