/* Pipeline mode (ss_pg_pipeline_*) against a real server
 * (SEMSTORE_TEST_DATABASE_URL): results in order, what a failure does to
 * the statements around it with and without sync points, a group failing at its commit, a repeated statement
 * parsed again, COPY refused, a pipeline big enough to fill both socket
 * buffers, and the call's timeout. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "pg.h"
#include "pg_helpers.h"

static const char *url;

static ss_pg *connect_pg(void) {
  ss_error err;
  ss_pg_settings *s = ss_pg_settings_new(url);
  ss_pg *pg;
  s->statement_cache_size = 8;
  pg = ss_pg_connect(s, &err);
  if (!pg) printf("connect: %s\n", err.message);
  ss_pg_settings_free(s);
  return pg;
}

static int add(ss_pg_pipeline *p, const char *sql, const char *v1, const char *v2) {
  const char *values[2] = {v1, v2};
  ss_error err;
  int n = v2 ? 2 : v1 ? 1 : 0;
  return ss_pg_pipeline_add(p, sql, n, NULL, values, NULL, NULL, &err);
}

static const char *value(ss_pg_pipeline *p, size_t i) {
  PGresult **r = ss_pg_pipeline_slot(p, i);
  return r && *r && PQntuples(*r) ? PQgetvalue(*r, 0, 0) : "?";
}

static ExecStatusType status(ss_pg_pipeline *p, size_t i) {
  PGresult **r = ss_pg_pipeline_slot(p, i);
  return r && *r ? PQresultStatus(*r) : PGRES_FATAL_ERROR;
}

static void test_results_in_order(void) {
  ss_pg *pg = connect_pg();
  ss_pg_pipeline *p = ss_pg_pipeline_new();
  ss_error err;
  int i;
  CHECK(ss_pg_pipeline_run(pg, p, &err) == 0); /* empty: nothing sent */
  CHECK(add(p, "select $1::int8 + 1", "41", NULL) == 0);
  CHECK(add(p, "select $1::text || $2::text", "a", "b") == 0);
  CHECK(add(p, "select 'x' is null", NULL, NULL) == 0);
  CHECK(ss_pg_pipeline_count(p) == 3);
  CHECK(ss_pg_pipeline_run(pg, p, &err) == 0);
  if (ss_pg_pipeline_failed(p) >= 0) printf("  %s\n", err.message);
  CHECK(strcmp(value(p, 0), "42") == 0);
  CHECK(strcmp(value(p, 1), "ab") == 0);
  CHECK(strcmp(value(p, 2), "f") == 0);
  CHECK(ss_pg_transaction_status(pg) == PQTRANS_IDLE);
  /* run again: same answers, and nothing prepared (statements go unnamed) */
  for (i = 0; i < 2; i++) {
    CHECK(ss_pg_pipeline_run(pg, p, &err) == 0);
    CHECK(strcmp(value(p, 1), "ab") == 0);
  }
  CHECK(db_scalar(pg, "select count(*) from pg_prepared_statements") == 0);
  ss_pg_pipeline_free(p);
  /* and the connection is a plain one again */
  CHECK(db_scalar(pg, "select 5") == 5);
  ss_pg_close(pg);
}

static void test_failure_rolls_back_its_group(void) {
  ss_pg *pg = connect_pg();
  ss_pg_pipeline *p = ss_pg_pipeline_new();
  ss_error err;
  CHECK(db_exec_ok(pg, "drop table if exists pl_t; create table pl_t (a int primary key)"));
  add(p, "insert into pl_t values (1)", NULL, NULL);
  add(p, "insert into pl_t values (2)", NULL, NULL);
  add(p, "insert into pl_t values (1)", NULL, NULL); /* duplicate key */
  add(p, "insert into pl_t values (3)", NULL, NULL);
  CHECK(ss_pg_pipeline_run(pg, p, &err) == -1);
  CHECK(ss_pg_pipeline_failed(p) == 2);
  CHECK(strcmp(err.code, "23505") == 0);
  CHECK(strncmp(err.message, "statement 3: duplicate key", 26) == 0);
  CHECK(status(p, 0) == PGRES_COMMAND_OK);
  CHECK(status(p, 3) == PGRES_PIPELINE_ABORTED);
  /* one group on an idle connection: one implicit transaction, all rolled back */
  CHECK(db_scalar(pg, "select count(*) from pl_t") == 0);
  CHECK(ss_pg_transaction_status(pg) == PQTRANS_IDLE);
  ss_pg_pipeline_free(p);

  /* sync points: the group before the failure commits, the one after runs */
  p = ss_pg_pipeline_new();
  add(p, "insert into pl_t values (1)", NULL, NULL);
  ss_pg_pipeline_sync(p);
  add(p, "insert into pl_t values (2)", NULL, NULL);
  add(p, "insert into pl_t values (1)", NULL, NULL);
  ss_pg_pipeline_sync(p);
  add(p, "insert into pl_t values (4)", NULL, NULL);
  CHECK(ss_pg_pipeline_run(pg, p, &err) == -1);
  CHECK(ss_pg_pipeline_failed(p) == 2);
  CHECK(status(p, 3) == PGRES_COMMAND_OK);
  CHECK(db_scalar(pg, "select string_agg(a::text, ',' order by a)::int8 from pl_t where a <> 4") == 1);
  CHECK(db_scalar(pg, "select count(*) from pl_t") == 2); /* 1 and 4 */
  ss_pg_pipeline_free(p);

  /* inside an open transaction: a failure aborts it */
  {
    ss_pg_tx tx;
    CHECK(ss_pg_tx_begin(pg, &tx, NULL, &err) == 0);
    p = ss_pg_pipeline_new();
    add(p, "insert into pl_t values (10)", NULL, NULL);
    add(p, "insert into pl_t values (1)", NULL, NULL);
    CHECK(ss_pg_pipeline_run(pg, p, &err) == -1);
    CHECK(ss_pg_transaction_status(pg) == PQTRANS_INERROR);
    CHECK(ss_pg_tx_end(pg, &tx, 1, &err) == -1);
    CHECK(db_scalar(pg, "select count(*) from pl_t where a = 10") == 0);
    ss_pg_pipeline_free(p);
  }
  /* in a transaction that already failed: statement 1 gets the server's 25P02 */
  {
    ss_pg_tx tx;
    CHECK(ss_pg_tx_begin(pg, &tx, NULL, &err) == 0);
    CHECK(db_scalar(pg, "select 1/0") == -1);
    p = ss_pg_pipeline_new();
    add(p, "select 1", NULL, NULL);
    add(p, "select 2", NULL, NULL);
    CHECK(ss_pg_pipeline_run(pg, p, &err) == -1);
    CHECK(ss_pg_pipeline_failed(p) == 0 && strcmp(err.code, "25P02") == 0);
    CHECK(strncmp(err.message, "statement 1: current transaction is aborted", 43) == 0);
    CHECK(ss_pg_tx_end(pg, &tx, 0, &err) == -1);
    CHECK(ss_pg_transaction_status(pg) == PQTRANS_IDLE);
    ss_pg_pipeline_free(p);
  }
  CHECK(db_exec_ok(pg, "drop table pl_t"));
  ss_pg_close(pg);
}

/* a statement the server cannot parse fails in its place, and the
 * connection stays usable, run after run */
static void test_parse_error(void) {
  ss_pg *pg = connect_pg();
  ss_pg_pipeline *p = ss_pg_pipeline_new();
  ss_error err;
  int i;
  add(p, "select 1", NULL, NULL);
  add(p, "selec 1", NULL, NULL); /* a syntax error */
  for (i = 0; i < 3; i++) {
    CHECK(ss_pg_pipeline_run(pg, p, &err) == -1);
    CHECK(ss_pg_pipeline_failed(p) == 1);
    CHECK(strcmp(err.code, "42601") == 0);
    if (strcmp(err.code, "42601") != 0) printf("  run %d: %s\n", i, err.message);
  }
  CHECK(db_scalar(pg, "select 5") == 5);
  ss_pg_pipeline_free(p);
  ss_pg_close(pg);
}

/* after a statement read in single-row mode (a stream), a pipeline's
 * first statement still comes back whole: libpq 15 keeps the single-row
 * flag until the next statement sent outside pipeline mode */
static void after_a_stream(const char *stream_sql) {
  ss_pg *pg = connect_pg();
  ss_pg_pipeline *p = ss_pg_pipeline_new();
  ss_error err;
  PGresult *res = ss_pg_stream_start(pg, stream_sql, 0, NULL, NULL, NULL, NULL, &err);
  while (res && PQresultStatus(res) == PGRES_SINGLE_TUPLE) {
    PQclear(res);
    res = ss_pg_stream_next(pg, &err);
  }
  PQclear(res);
  add(p, "select generate_series(1, 3)", NULL, NULL);
  add(p, "select 2", NULL, NULL);
  CHECK(ss_pg_pipeline_run(pg, p, &err) == 0);
  CHECK(status(p, 0) == PGRES_TUPLES_OK && PQntuples(*ss_pg_pipeline_slot(p, 0)) == 3);
  CHECK(strcmp(value(p, 1), "2") == 0);
  CHECK(!ss_pg_is_broken(pg));
  ss_pg_pipeline_free(p);
  ss_pg_close(pg);
}

static void test_after_a_stream(void) {
  after_a_stream("select generate_series(1, 3)");
  after_a_stream("select 1 where false"); /* no row */
  after_a_stream("select 1/0");           /* failed */
  after_a_stream("set application_name = 'x'"); /* no rows at all */
}

static void test_copy_refused(void) {
  ss_pg_pipeline *p = ss_pg_pipeline_new();
  ss_error err;
  const char *const none[1] = {NULL};
  CHECK(ss_pg_pipeline_add(p, "copy pg_class to stdout", 0, NULL, none, NULL, NULL, &err) == -1);
  CHECK(err.kind == SS_ERR_INPUT);
  CHECK(ss_pg_pipeline_add(p, " /* a /* nested */ comment */ -- and a line\n CoPy x from stdin", 0, NULL, none, NULL,
                           NULL, &err) == -1);
  /* the server's lexer ends a line comment at a carriage return too */
  CHECK(ss_pg_pipeline_add(p, "-- note\rCOPY x to stdout", 0, NULL, none, NULL, NULL, &err) == -1);
  /* the server's parser drops the empty statements semicolons end */
  CHECK(ss_pg_pipeline_add(p, "; copy x from stdin", 0, NULL, none, NULL, NULL, &err) == -1);
  CHECK(ss_pg_pipeline_add(p, ";;  -- c\n ; /* c */;copy x to stdout", 0, NULL, none, NULL, NULL, &err) == -1);
  CHECK(ss_pg_pipeline_add(p, "select 1 as copy", 0, NULL, none, NULL, NULL, &err) == 0);
  CHECK(ss_pg_pipeline_add(p, "copying", 0, NULL, none, NULL, NULL, &err) == 0); /* a word that starts with copy */
  CHECK(ss_pg_pipeline_count(p) == 2);
  ss_pg_pipeline_free(p);
}

/* A group that fails at its commit (a deferred constraint checked at the
 * sync point) is its own group's failure, named by its last statement; the
 * later groups' results stay theirs, and the connection is kept. */
static void test_commit_failure(void) {
  ss_pg *pg = connect_pg();
  ss_pg_pipeline *p = ss_pg_pipeline_new();
  ss_error err;
  int pid = ss_pg_backend_pid(pg);
  CHECK(db_exec_ok(pg, "drop table if exists pl_c; drop table if exists pl_p; create table pl_p (a int primary key);"
                       "create table pl_c (a int references pl_p deferrable initially deferred)"));
  add(p, "select 1", NULL, NULL);
  add(p, "insert into pl_c values (1)", NULL, NULL);
  ss_pg_pipeline_sync(p);
  add(p, "insert into pl_p values (5)", NULL, NULL);
  add(p, "select 7", NULL, NULL);
  CHECK(ss_pg_pipeline_run(pg, p, &err) == -1);
  CHECK(ss_pg_pipeline_failed(p) == 1);
  CHECK(strcmp(err.code, "23503") == 0);
  CHECK(err.kind == SS_ERR_POSTGRES);
  CHECK(status(p, 2) == PGRES_COMMAND_OK);
  CHECK(strcmp(value(p, 3), "7") == 0);
  CHECK(!ss_pg_is_broken(pg) && ss_pg_backend_pid(pg) == pid);
  CHECK(db_scalar(pg, "select count(*) from pl_c") == 0);
  CHECK(db_scalar(pg, "select count(*) from pl_p") == 1);
  ss_pg_pipeline_free(p);
  /* the last group: never a success */
  p = ss_pg_pipeline_new();
  add(p, "insert into pl_c values (2)", NULL, NULL);
  CHECK(ss_pg_pipeline_run(pg, p, &err) == -1);
  CHECK(ss_pg_pipeline_failed(p) == 0 && strcmp(err.code, "23503") == 0);
  CHECK(!ss_pg_is_broken(pg) && db_scalar(pg, "select 5") == 5);
  ss_pg_pipeline_free(p);
  CHECK(db_exec_ok(pg, "drop table pl_c; drop table pl_p"));
  ss_pg_close(pg);
}

/* A statement repeated right after itself is parsed again: one whose
 * analysis the first run changed (its search_path) runs as through query. */
static void test_repeat_parsed_again(void) {
  ss_pg *pg = connect_pg();
  ss_pg_pipeline *p = ss_pg_pipeline_new();
  ss_error err;
  const char *S = "select set_config('search_path', $1, false) as sp, * from pl_t";
  CHECK(db_exec_ok(pg, "drop schema if exists pl_s1 cascade; drop schema if exists pl_s2 cascade;"
                       "create schema pl_s1; create schema pl_s2; create table pl_s1.pl_t (a int); insert into pl_s1.pl_t values (1);"
                       "create table pl_s2.pl_t (a int, b text); insert into pl_s2.pl_t values (2, 'two')"));
  add(p, "set search_path = pl_s1", NULL, NULL);
  add(p, S, "pl_s2", NULL);
  add(p, S, "pl_s2", NULL);
  CHECK(ss_pg_pipeline_run(pg, p, &err) == 0);
  if (ss_pg_pipeline_failed(p) >= 0) printf("  %s\n", err.message);
  CHECK(status(p, 2) == PGRES_TUPLES_OK && PQnfields(*ss_pg_pipeline_slot(p, 2)) == 3);
  ss_pg_pipeline_free(p);
  CHECK(db_exec_ok(pg, "reset search_path; drop schema pl_s1 cascade; drop schema pl_s2 cascade"));
  ss_pg_close(pg);
}

static void test_big_pipeline(void) {
  ss_pg *pg = connect_pg();
  ss_pg_pipeline *p = ss_pg_pipeline_new();
  ss_error err;
  char *big = malloc(4001);
  int i;
  memset(big, 'x', 4000);
  big[4000] = '\0';
  /* 20,000 statements of 4 kB each way: 80 MB out, 80 MB back, far past
   * both sockets' buffers */
  for (i = 0; i < 20000; i++) add(p, "select $1::text", big, NULL);
  CHECK(ss_pg_pipeline_run(pg, p, &err) == 0);
  CHECK(strlen(value(p, 19999)) == 4000);
  ss_pg_pipeline_free(p);
  free(big);
  CHECK(db_scalar(pg, "select 6") == 6);
  ss_pg_close(pg);
}

static void test_timeout(void) {
  ss_pg *pg = connect_pg();
  ss_pg_pipeline *p = ss_pg_pipeline_new();
  ss_error err;
  add(p, "select 1", NULL, NULL);
  add(p, "select pg_sleep(5)", NULL, NULL);
  add(p, "select 3", NULL, NULL);
  ss_pg_set_timeout(pg, 0.3);
  CHECK(ss_pg_pipeline_run(pg, p, &err) == -1);
  CHECK(err.kind == SS_ERR_TIMEOUT);
  CHECK(strcmp(err.code, "57014") == 0);
  CHECK(ss_pg_pipeline_failed(p) == 1);
  CHECK(strncmp(err.message, "statement 2: ", 13) == 0);
  ss_pg_set_timeout(pg, 0);
  CHECK(db_scalar(pg, "select 7") == 7);
  ss_pg_pipeline_free(p);
  ss_pg_close(pg);
}

/* past the timeout, a later group's statement is cancelled too: back in
 * time, with the first group's 57014, and the connection goes on */
static void test_timeout_groups(void) {
  ss_pg *pg = connect_pg();
  ss_pg_pipeline *p = ss_pg_pipeline_new();
  ss_error err;
  double t0 = ss_monotonic();
  int i;
  add(p, "select pg_sleep(3)", NULL, NULL);
  ss_pg_pipeline_sync(p);
  add(p, "select pg_sleep(10)", NULL, NULL);
  ss_pg_pipeline_sync(p);
  add(p, "select pg_sleep(10)", NULL, NULL);
  ss_pg_set_timeout(pg, 0.3);
  CHECK(ss_pg_pipeline_run(pg, p, &err) == -1);
  CHECK(err.kind == SS_ERR_TIMEOUT && ss_pg_pipeline_failed(p) == 0);
  CHECK(ss_monotonic() - t0 < 2.5);
  CHECK(!ss_pg_is_broken(pg) && db_scalar(pg, "select 7") == 7);
  ss_pg_pipeline_free(p);
  /* many short groups after the cancelled one: they run or are cancelled,
   * the error is the first group's, and the connection goes on */
  p = ss_pg_pipeline_new();
  t0 = ss_monotonic();
  add(p, "select pg_sleep(3)", NULL, NULL);
  for (i = 0; i < 3000; i++) {
    ss_pg_pipeline_sync(p);
    add(p, "select 1", NULL, NULL);
  }
  CHECK(ss_pg_pipeline_run(pg, p, &err) == -1);
  CHECK(err.kind == SS_ERR_TIMEOUT && ss_pg_pipeline_failed(p) == 0);
  CHECK(ss_monotonic() - t0 < 2.5);
  ss_pg_set_timeout(pg, 0);
  CHECK(!ss_pg_is_broken(pg) && db_scalar(pg, "select 7") == 7);
  ss_pg_pipeline_free(p);
  ss_pg_close(pg);
}

/* DEALLOCATE ALL inside a pipeline, after statements the connection
 * prepared: the cache forgets them, and they are prepared again */
static void test_deallocate_all(void) {
  ss_pg *pg = connect_pg();
  ss_pg_pipeline *p = ss_pg_pipeline_new();
  ss_error err;
  int i;
  for (i = 0; i < 2; i++) CHECK(db_scalar(pg, "select 8") == 8); /* prepared on its second use */
  add(p, "deallocate all", NULL, NULL);
  add(p, "select 8", NULL, NULL);
  add(p, "deallocate all", NULL, NULL);
  CHECK(ss_pg_pipeline_run(pg, p, &err) == 0);
  CHECK(strcmp(value(p, 1), "8") == 0);
  for (i = 0; i < 3; i++) CHECK(db_scalar(pg, "select 8") == 8);
  ss_pg_pipeline_free(p);
  ss_pg_close(pg);
}

/* in a failed transaction, a pipeline's ROLLBACK runs: nothing of the
 * pipeline's own goes before statement 1 */
static void test_rollback_failed_transaction(void) {
  ss_pg *pg = connect_pg();
  ss_pg_pipeline *p = ss_pg_pipeline_new();
  ss_error err;
  CHECK(db_exec_ok(pg, "begin"));
  CHECK(db_scalar(pg, "select 1/0") == -1);
  CHECK(ss_pg_transaction_status(pg) == PQTRANS_INERROR);
  add(p, "rollback", NULL, NULL);
  add(p, "select 9", NULL, NULL);
  CHECK(ss_pg_pipeline_run(pg, p, &err) == 0);
  CHECK(strcmp(value(p, 1), "9") == 0);
  CHECK(ss_pg_transaction_status(pg) == PQTRANS_IDLE);
  ss_pg_pipeline_free(p);
  ss_pg_close(pg);
}

static void *interrupt_soon(void *arg) {
  (void)arg;
  usleep(300000);
  ss_pg_interrupt();
  return NULL;
}

/* Ctrl-C in the REPL (ss_pg_interrupt) cancels the statement a pipeline
 * waits on, with the server's own 57014, and the connection goes on */
static void test_interrupt(void) {
  ss_pg *pg = connect_pg();
  ss_pg_pipeline *p = ss_pg_pipeline_new();
  ss_error err;
  pthread_t t;
  double t0 = ss_monotonic();
  add(p, "select 1", NULL, NULL);
  add(p, "select pg_sleep(5)", NULL, NULL);
  pthread_create(&t, NULL, interrupt_soon, NULL);
  CHECK(ss_pg_pipeline_run(pg, p, &err) == -1);
  pthread_join(t, NULL);
  CHECK(err.kind == SS_ERR_POSTGRES && strcmp(err.code, "57014") == 0 && ss_pg_pipeline_failed(p) == 1);
  CHECK(ss_monotonic() - t0 < 2.5);
  CHECK(!ss_pg_is_broken(pg) && db_scalar(pg, "select 7") == 7);
  ss_pg_pipeline_free(p);
  ss_pg_close(pg);
}

int main(void) {
  url = getenv("SEMSTORE_TEST_DATABASE_URL");
  if (!url) {
    printf("SEMSTORE_TEST_DATABASE_URL is not set: skipped\n0 passed, 0 failed\n");
    return 0;
  }
  test_results_in_order();
  test_failure_rolls_back_its_group();
  test_parse_error();
  test_after_a_stream();
  test_copy_refused();
  test_commit_failure();
  test_repeat_parsed_again();
  test_big_pipeline();
  test_timeout();
  test_timeout_groups();
  test_deallocate_all();
  test_rollback_failed_transaction();
  test_interrupt();
  DONE();
}
