/* luaopen_semstore_core: the C half of require "semstore". */
#include <errno.h>
#include <string.h>
#include <time.h>

#include "binding.h"
#include "hashtext.h"
#include "redact.h"

/* core.redact(s, statement): s with every password replaced by "***";
 * given the statement s is a message about, also the statement's password
 * literals that s quotes. */
static int redact(lua_State *L) {
  size_t len;
  const char *s = luaL_checklstring(L, 1, &len);
  const char *statement = luaL_optstring(L, 2, NULL);
  luaL_Buffer b;
  /* what hides a password can be longer than it (5 bytes for 2 at most) */
  size_t cap = len * 3 + 16;
  char *out = luaL_buffinitsize(L, &b, cap);
  ss_redact_message(s, statement, out, cap);
  luaL_pushresultsize(&b, strlen(out));
  return 1;
}

/* core.monotime(): seconds on a clock that never jumps, for durations. */
static int monotime(lua_State *L) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  lua_pushnumber(L, (lua_Number)ts.tv_sec + (lua_Number)ts.tv_nsec / 1e9);
  return 1;
}

/* core.sleep(seconds): blocks the thread (a wait between polls). */
static int sleep_seconds(lua_State *L) {
  lua_Number s = luaL_checknumber(L, 1);
  struct timespec ts;
  if (!(s > 0)) return 0;
  if (s > 86400) s = 86400;
  ts.tv_sec = (time_t)s;
  ts.tv_nsec = (long)((s - (lua_Number)ts.tv_sec) * 1e9);
  while (nanosleep(&ts, &ts) == -1 && errno == EINTR) {
  }
  return 0;
}

/* core.hashtext(s): PostgreSQL's hashtext(s), an int32. */
static int hashtext(lua_State *L) {
  size_t len;
  const char *s = luaL_checklstring(L, 1, &len);
  lua_pushinteger(L, ss_hashtext(s, len));
  return 1;
}

/* core.partition_key(collection_id, n): the partition of chunks that rows
 * of this collection live in, out of n (default 100). */
static int partition_key(lua_State *L) {
  size_t len;
  const char *s = luaL_checklstring(L, 1, &len);
  lua_Integer n = luaL_optinteger(L, 2, SS_DEFAULT_PARTITIONS);
  luaL_argcheck(L, n >= 1 && n <= INT32_MAX, 2, "the partition count must be a positive integer");
  lua_pushinteger(L, ss_partition_key(s, len, (int)n));
  return 1;
}

void ss_register_type(lua_State *L, const char *mt, const luaL_Reg *methods, lua_CFunction gc,
                      lua_CFunction close, lua_CFunction tostring, const char *field) {
  luaL_newmetatable(L, mt);
  lua_pushcfunction(L, gc);
  lua_setfield(L, -2, "__gc");
  if (close) {
    lua_pushcfunction(L, close);
    lua_setfield(L, -2, "__close");
  }
  lua_pushcfunction(L, tostring);
  lua_setfield(L, -2, "__tostring");
  lua_newtable(L);
  luaL_setfuncs(L, methods, 0);
  lua_pushvalue(L, -1);
  lua_setfield(L, -3, "__index");
  lua_setfield(L, -3, field);
  lua_pop(L, 1);
}

SS_EXPORT int luaopen_semstore_core(lua_State *L) {
  lua_newtable(L);
  /* a NULL light userdata: the same value as lua-cjson's cjson.null */
  lua_pushlightuserdata(L, NULL);
  lua_setfield(L, -2, "null");
  lua_pushcfunction(L, redact);
  lua_setfield(L, -2, "redact");
  lua_pushcfunction(L, monotime);
  lua_setfield(L, -2, "monotime");
  lua_pushcfunction(L, ss_lua_json_encode);
  lua_setfield(L, -2, "json_encode");
  lua_pushcfunction(L, ss_lua_json_decode);
  lua_setfield(L, -2, "json_decode");
  lua_pushcfunction(L, sleep_seconds);
  lua_setfield(L, -2, "sleep");
  lua_pushcfunction(L, hashtext);
  lua_setfield(L, -2, "hashtext");
  lua_pushcfunction(L, partition_key);
  lua_setfield(L, -2, "partition_key");
  ss_open_errors(L);
  ss_open_config(L);
  ss_open_quote(L);
  ss_open_convert(L);
  ss_open_conn(L);
  ss_open_pool(L);
  ss_open_rows(L);
  ss_open_pg_pipeline(L);
  lua_newtable(L); /* core.repositories: name -> methods */
  lua_setfield(L, -2, "repositories");
  ss_open_repositories(L);
  ss_open_chunks_bulk(L);
  ss_open_qdrant(L);
  ss_open_redis(L);
  ss_open_embed(L);
  ss_open_chunking(L);
  ss_open_digest(L);
  ss_open_terminal(L);
  return 1;
}
