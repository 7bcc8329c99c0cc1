/* A freshly migrated database of its own, for the C tests of the engines
 * (test_repo, test_chunks_bulk): made through the superuser URL that
 * scripts/servers.sh exports, migrated by the semstore command itself
 * (`lua5.4 bin/semstore migrate up` with the module just built, so the
 * schema is exactly the built-in migrations'), and dropped at the end.
 * The test runs wherever it is started from: the paths come from CMake. */
#ifndef SEMSTORE_TEST_SCRATCH_DB_H
#define SEMSTORE_TEST_SCRATCH_DB_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pg.h"
#include "pg_helpers.h"

static char scratch_url[512], scratch_name[64];

/* Runs one statement as the superuser; 0 when it succeeded. */
static int scratch_admin(const char *sql) {
  ss_error err;
  ss_pg_settings *s = ss_pg_settings_new(getenv("SEMSTORE_TEST_PG_SUPERUSER_URL"));
  ss_pg *pg = s ? ss_pg_connect(s, &err) : NULL;
  PGresult *res = pg ? ss_pg_exec(pg, sql, &err) : NULL;
  if (!res) printf("%s: %s\n", sql, pg ? err.message : "could not connect as the superuser");
  PQclear(res);
  ss_pg_close(pg);
  ss_pg_settings_free(s);
  return res ? 0 : -1;
}

/* Makes and migrates the database `tag`_PID with `partitions` chunk
 * partitions; scratch_url is its URL. 1 when it is ready, 0 when the
 * servers' variables are not set (the test is skipped), -1 on failure. */
static int scratch_db_create(const char *tag, int partitions) {
  const char *url = getenv("SEMSTORE_TEST_DATABASE_URL"), *slash;
  char sql[256], cmd[2048];
  if (!url || !getenv("SEMSTORE_TEST_PG_SUPERUSER_URL")) return 0;
  snprintf(scratch_name, sizeof scratch_name, "%s_%d", tag, (int)getpid());
  slash = strrchr(url, '/');
  snprintf(scratch_url, sizeof scratch_url, "%.*s/%s", (int)(slash - url), url, scratch_name);
  snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS %s WITH (FORCE)", scratch_name);
  if (scratch_admin(sql)) return -1;
  snprintf(sql, sizeof sql, "CREATE DATABASE %s OWNER semstore", scratch_name);
  if (scratch_admin(sql)) return -1;
  /* from the build folder: no .env or ./migrations of the checkout's is read */
  snprintf(cmd, sizeof cmd,
           "cd '%s' && DATABASE_URL='%s' CHUNK_PARTITION_COUNT=%d LUA_PATH='%s/lua/?.lua;%s/lua/?/init.lua;;' "
           "LUA_CPATH='%s/?.so;;' lua5.4 '%s/bin/semstore' migrate up > '%s/tests/%s.migrate.log' 2>&1",
           SEMSTORE_BINARY_DIR, scratch_url, partitions, SEMSTORE_SOURCE_DIR, SEMSTORE_SOURCE_DIR,
           SEMSTORE_BINARY_DIR, SEMSTORE_SOURCE_DIR, SEMSTORE_BINARY_DIR, scratch_name);
  if (system(cmd) != 0) {
    printf("migrating %s failed: see %s/tests/%s.migrate.log\n", scratch_name, SEMSTORE_BINARY_DIR, scratch_name);
    return -1;
  }
  snprintf(cmd, sizeof cmd, "%s/tests/%s.migrate.log", SEMSTORE_BINARY_DIR, scratch_name);
  remove(cmd);
  return 1;
}

static void scratch_db_drop(void) {
  char sql[256];
  snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS %s WITH (FORCE)", scratch_name);
  scratch_admin(sql);
}

/* A connection to the scratch database; NULL (and a line saying why) on failure. */
static ss_pg *scratch_connect(void) {
  ss_error err;
  ss_pg_settings *s = ss_pg_settings_new(scratch_url);
  ss_pg *pg = s ? ss_pg_connect(s, &err) : NULL;
  if (s && !pg) printf("connect: %s\n", err.message);
  ss_pg_settings_free(s);
  return pg;
}


#endif
