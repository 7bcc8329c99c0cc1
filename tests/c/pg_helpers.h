/* What the C tests against a server share: a scalar query and running
 * statements, each saying on a line why it failed. */
#ifndef SEMSTORE_TEST_PG_HELPERS_H
#define SEMSTORE_TEST_PG_HELPERS_H

#include <stdio.h>
#include <stdlib.h>

#include "pg.h"

/* The first column of the first row of a parameterless query, as a
 * long; -1 (and a line saying why) when it failed. */
static long db_scalar(ss_pg *on, const char *sql) {
  ss_error err;
  PGresult *res = ss_pg_query(on, sql, 0, NULL, NULL, NULL, NULL, &err);
  long v = res && PQntuples(res) ? atol(PQgetvalue(res, 0, 0)) : -1;
  if (!res) printf("  %s: %s\n", sql, err.message);
  PQclear(res);
  return v;
}

/* Runs statements without parameters; 1 when they succeeded. */
static int db_exec_ok(ss_pg *on, const char *sql) {
  ss_error err;
  PGresult *res = ss_pg_exec(on, sql, &err);
  if (!res) printf("  %s: %s\n", sql, err.message);
  PQclear(res);
  return res != NULL;
}

#endif
