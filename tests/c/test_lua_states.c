/* Several Lua states in one process, each on its own thread, share one
 * named pool: the pool is process-wide, in C, and waiting for a connection
 * held by another state is first come, first served across threads.
 * Needs SEMSTORE_TEST_DATABASE_URL and LUA_PATH/LUA_CPATH that find the
 * module (scripts/test.sh sets them). */
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"


static lua_State *new_state(void) {
  lua_State *L = luaL_newstate();
  luaL_openlibs(L);
  return L;
}

/* Runs a chunk; returns its integer results (up to 4) or -1 on error. */
static int run(lua_State *L, const char *code, long long out[4]) {
  int i, n, base = lua_gettop(L);
  if (luaL_loadstring(L, code) != LUA_OK || lua_pcall(L, 0, LUA_MULTRET, 0) != LUA_OK) {
    printf("lua error: %s\n", lua_tostring(L, -1));
    lua_settop(L, base);
    return -1;
  }
  n = lua_gettop(L) - base;
  for (i = 0; i < n && i < 4; i++) out[i] = lua_tointeger(L, base + 1 + i);
  lua_settop(L, base);
  return n;
}

#define CYCLES 300
#define THREADS 4

static const char *churn =
    "local semstore = require 'semstore'\n"
    "local db = assert(semstore.connect{name = 'threads', postgres = os.getenv 'SEMSTORE_TEST_DATABASE_URL',\n"
    "  pool = {size = 2, max_overflow = 1, timeout = 20}})\n"
    "for i = 1, 300 do\n"
    "  local conn = assert(db.pg:acquire())\n"
    "  assert(assert(conn:query('select $1::int as i', i))[1].i == i)\n"
    "  conn:release()\n"
    "end\n"
    "local s = db.pg:stats()\n"
    "db:close()\n"
    "return s.peak, s.max\n";

static void *churn_thread(void *arg) {
  lua_State *L = new_state();
  long long *out = arg;
  if (run(L, churn, out) != 2) out[0] = -1;
  lua_close(L);
  return NULL;
}

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static const char *open_handoff =
    "local semstore = require 'semstore'\n"
    "db = assert(semstore.connect{name = 'handoff', postgres = os.getenv 'SEMSTORE_TEST_DATABASE_URL',\n"
    "  pool = {size = 1, max_overflow = 0, timeout = 10}})\n";

static void *waiter_thread(void *arg) {
  lua_State *L = new_state();
  long long *out = arg;
  double t0;
  if (run(L, open_handoff, out) < 0) {
    out[0] = -1;
  } else {
    t0 = now();
    if (run(L, "local c = assert(db.pg:acquire()); local pid = c:backend_pid(); c:release(); return pid", out) != 1)
      out[0] = -1;
    out[1] = (long long)((now() - t0) * 1000);
    run(L, "db:close()", out + 2);
  }
  lua_close(L);
  return NULL;
}

/* An allocator with a ceiling, to fail an allocation in the middle of a
 * decode the way a memory-starved OpenResty worker would. */
static size_t used, ceiling = (size_t)-1;

static void *limited_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  (void)ud;
  if (!ptr) osize = 0;
  if (nsize == 0) {
    used -= osize;
    free(ptr);
    return NULL;
  }
  if (nsize > osize && used + (nsize - osize) > ceiling) return NULL;
  ptr = realloc(ptr, nsize);
  if (ptr) used += nsize - osize;
  return ptr;
}

/* A memory error raised while rows are decoded: the collector runs again,
 * the connection is usable for the next statement, nothing leaks. */
static void test_memory_error_mid_decode(void) {
  lua_State *L = lua_newstate(limited_alloc, NULL);
  long long out[4];
  luaL_openlibs(L);
  CHECK(run(L,
            "local semstore = require 'semstore'\n"
            "db = assert(semstore.connect{name = 'oom', postgres = os.getenv 'SEMSTORE_TEST_DATABASE_URL',\n"
            "  pool = {size = 1, max_overflow = 0, timeout = 5}})\n"
            "conn = assert(db.pg:acquire())\n"
            "assert(conn:query('select 1'))\n"
            "collectgarbage()",
            out) == 0);
  ceiling = used + 2 * 1024 * 1024; /* far less than 200,000 decoded rows need */
  CHECK(run(L, "local ok, e = pcall(conn.query, conn, 'select g, md5(g::text) from generate_series(1, 200000) g')\n"
               "return (not ok and tostring(e):find('not enough memory')) and 1 or 0",
            out) == 1 && out[0] == 1);
  ceiling = (size_t)-1;
  CHECK(run(L, "return collectgarbage('isrunning') and 1 or 0", out) == 1 && out[0] == 1);
  CHECK(run(L, "return assert(conn:query('select 7 as n'))[1].n, #assert(conn:query('select generate_series(1, 1000)'))",
            out) == 2 && out[0] == 7 && out[1] == 1000);
  CHECK(run(L, "conn:release(); local s = db.pg:stats(); db:close(); return s.in_use", out) == 1 && out[0] == 0);
  lua_close(L);
}

int main(void) {
  pthread_t th[THREADS];
  long long res[THREADS][4], out[4], waited[4];
  lua_State *main_state;
  int i;
  if (!getenv("SEMSTORE_TEST_DATABASE_URL")) {
    printf("SEMSTORE_TEST_DATABASE_URL is not set: skipped\n0 passed, 0 failed\n");
    return 0;
  }
  main_state = new_state();

  /* a handle in the main state keeps the pool alive and reads its stats */
  CHECK(run(main_state,
            "local semstore = require 'semstore'\n"
            "db = assert(semstore.connect{name = 'threads', postgres = os.getenv 'SEMSTORE_TEST_DATABASE_URL',\n"
            "  pool = {size = 2, max_overflow = 1, timeout = 20}})",
            out) == 0);
  for (i = 0; i < THREADS; i++) pthread_create(&th[i], NULL, churn_thread, res[i]);
  for (i = 0; i < THREADS; i++) pthread_join(th[i], NULL);
  for (i = 0; i < THREADS; i++) {
    CHECK(res[i][0] >= 1 && res[i][0] <= 3); /* peak within size + overflow */
    CHECK(res[i][1] == 3);
  }
  CHECK(run(main_state, "local s = db.pg:stats(); return s.acquired, s.peak, s.in_use", out) == 3);
  CHECK(out[0] == THREADS * CYCLES); /* every state's checkouts went through one pool */
  CHECK(out[1] <= 3);
  CHECK(out[2] == 0);

  /* the main state holds the only connection; another state's acquire waits
   * for it and gets exactly that connection when it is released */
  CHECK(run(main_state, open_handoff, out) == 0);
  CHECK(run(main_state, "held = assert(db.pg:acquire()); return held:backend_pid()", out) == 1);
  {
    pthread_t w;
    long long pid = out[0];
    int tries = 0;
    pthread_create(&w, NULL, waiter_thread, waited);
    /* once the waiter waits (however slowly its thread started, under
     * valgrind on a loaded machine), it must go on waiting until release */
    do {
      usleep(10 * 1000);
      if (run(main_state, "return db.pg:stats().waiting", out) != 1) out[0] = -1;
    } while (out[0] != 1 && ++tries < 1000);
    CHECK(out[0] == 1);
    usleep(300 * 1000);
    CHECK(run(main_state, "held:release()", out) == 0);
    pthread_join(w, NULL);
    CHECK(waited[0] == pid);
    CHECK(waited[1] >= 250);
  }
  lua_close(main_state);
  test_memory_error_mid_decode();
  DONE();
}
