/* libpq connections against a real server (SEMSTORE_TEST_DATABASE_URL):
 * session settings, the statement cache, error mapping, streaming,
 * noticing a connection the server ended, and binary COPY. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "pg.h"
#include "pg_copy.h"
#include "pg_helpers.h"
#include "pool.h"

static const char *url;

static ss_pg *connect_with(int cache_size) {
  ss_error err;
  ss_pg_settings *s = ss_pg_settings_new(url);
  ss_pg *pg;
  s->statement_cache_size = cache_size;
  s->statement_timeout_ms = 4321;
  ss_strlcpy(s->application_name, "test_pg", sizeof s->application_name);
  pg = ss_pg_connect(s, &err);
  if (!pg) printf("connect: %s\n", err.message);
  ss_pg_settings_free(s);
  return pg;
}


static void test_query_and_settings(void) {
  ss_pg *pg = connect_with(16);
  ss_error err;
  const char *values[1] = {"41"};
  Oid types[1] = {0};
  PGresult *res = ss_pg_query(pg, "select $1::int8 + 1", 1, types, values, NULL, NULL, &err);
  CHECK(res && strcmp(PQgetvalue(res, 0, 0), "42") == 0);
  PQclear(res);
  res = ss_pg_query(pg, "select current_setting('statement_timeout'), current_setting('application_name'), "
                        "current_setting('DateStyle')", 0, NULL, NULL, NULL, NULL, &err);
  CHECK(res && strcmp(PQgetvalue(res, 0, 0), "4321ms") == 0);
  CHECK(res && strcmp(PQgetvalue(res, 0, 1), "test_pg") == 0);
  CHECK(res && strncmp(PQgetvalue(res, 0, 2), "ISO", 3) == 0);
  PQclear(res);
  ss_pg_close(pg);
}

static void test_statement_cache(void) {
  ss_pg *pg = connect_with(2);
  ss_error err;
  PGresult *res;
  int i;
  CHECK(db_scalar(pg, "select 9") == 9); /* a one-off runs unnamed: one round trip, nothing prepared */
  for (i = 0; i < 5; i++) CHECK(db_scalar(pg, "select 7") == 7);
  /* "select 7" prepared on its second use; the count itself runs unnamed */
  CHECK(db_scalar(pg, "select count(*) from pg_prepared_statements") == 1);
  CHECK(db_scalar(pg, "select 8") == 8);
  CHECK(db_scalar(pg, "select 8") == 8);
  /* the count's second use prepares it, and a third statement evicts the oldest */
  CHECK(db_scalar(pg, "select count(*) from pg_prepared_statements") == 2);
  CHECK(db_scalar(pg, "select count(*) from pg_prepared_statements where statement = 'select 7'") == 0);
  res = ss_pg_exec(pg, "DISCARD ALL", &err);
  CHECK(res != NULL);
  PQclear(res);
  CHECK(db_scalar(pg, "select 8") == 8); /* prepared again, transparently */
  ss_pg_close(pg);
}

static void test_errors(void) {
  ss_pg *pg = connect_with(16);
  ss_error err;
  const char *values[1] = {"1"};
  PGresult *res = ss_pg_exec(pg, "create temp table t (a int constraint t_a_key unique); insert into t values (1)", &err);
  CHECK(res != NULL);
  PQclear(res);
  res = ss_pg_query(pg, "insert into t values ($1)", 1, NULL, values, NULL, NULL, &err);
  CHECK(res == NULL && err.kind == SS_ERR_POSTGRES && strcmp(err.code, "23505") == 0);
  CHECK(strcmp(err.constraint, "t_a_key") == 0 && strcmp(err.table, "t") == 0);
  CHECK(strstr(err.detail, "(a)=(1)") != NULL);
  res = ss_pg_query(pg, "selec 1", 0, NULL, NULL, NULL, NULL, &err);
  CHECK(res == NULL && strcmp(err.code, "42601") == 0);
  CHECK(!ss_pg_is_broken(pg));
  CHECK(db_scalar(pg, "select 1") == 1);
  ss_pg_close(pg);
}

static void test_bad_password(void) {
  char bad[512];
  const char *at = strchr(url + strlen("postgresql://"), '@');
  const char *colon = strchr(url + strlen("postgresql://"), ':');
  ss_pg_settings *s;
  ss_error err;
  ss_pg *pg;
  if (!at || !colon || colon > at) return;
  snprintf(bad, sizeof bad, "%.*s:Wr0ngSecret%s", (int)(colon - url), url, at);
  s = ss_pg_settings_new(bad);
  pg = ss_pg_connect(s, &err);
  CHECK(pg == NULL && err.kind == SS_ERR_CONNECTION);
  CHECK(strstr(err.message, "Wr0ngSecret") == NULL);
  CHECK(strstr(err.message, "password authentication failed") != NULL);
  ss_pg_settings_free(s);
  s = ss_pg_settings_new("host=127.0.0.1 password=Wr0ngSecret port");
  pg = ss_pg_connect(s, &err);
  CHECK(pg == NULL && strstr(err.message, "Wr0ngSecret") == NULL);
  ss_pg_settings_free(s);
}

static void test_terminated_backend(void) {
  ss_pg *victim = connect_with(16), *admin = connect_with(16), *other = connect_with(16);
  char pid[16];
  const char *values[1] = {pid};
  ss_error err;
  PGresult *res;
  snprintf(pid, sizeof pid, "%d", ss_pg_backend_pid(victim));
  res = ss_pg_query(admin, "select pg_terminate_backend($1::int, 5000)", 1, NULL, values, NULL, NULL, &err);
  CHECK(res && strcmp(PQgetvalue(res, 0, 0), "t") == 0);
  PQclear(res);
  usleep(100000);
  /* the free check (no round trip) sees the server's goodbye */
  CHECK(ss_pg_pool_ops.ping(NULL, victim, 0, 0) != 0);
  CHECK(ss_pg_pool_ops.broken(NULL, victim));
  ss_pg_close(victim);

  /* the same failure seen by a query instead */
  snprintf(pid, sizeof pid, "%d", ss_pg_backend_pid(other));
  res = ss_pg_query(admin, "select pg_terminate_backend($1::int, 5000)", 1, NULL, values, NULL, NULL, &err);
  PQclear(res);
  res = ss_pg_query(other, "select 1", 0, NULL, NULL, NULL, NULL, &err);
  CHECK(res == NULL && err.kind == SS_ERR_CONNECTION);
  CHECK(ss_pg_is_broken(other));
  ss_pg_close(other);
  CHECK(ss_pg_pool_ops.ping(NULL, admin, 1, 0) == 0 && ss_pg_pool_ops.ping(NULL, admin, 1, 0.5) == 0);
  ss_pg_close(admin);
}


static void test_reset_rolls_back(void) {
  ss_pg *pg = connect_with(16);
  CHECK(db_exec_ok(pg, "drop table if exists reset_r; create table reset_r (a int)"));
  CHECK(db_exec_ok(pg, "begin; insert into reset_r values (1)"));
  CHECK(ss_pg_transaction_status(pg) == PQTRANS_INTRANS);
  CHECK(ss_pg_pool_ops.reset(NULL, pg) == 0);
  CHECK(ss_pg_transaction_status(pg) == PQTRANS_IDLE);
  CHECK(db_scalar(pg, "select count(*) from reset_r") == 0);
  CHECK(db_exec_ok(pg, "drop table reset_r"));
  ss_pg_close(pg);
}

/* What a borrower leaves in the session is undone at release, and the
 * prepared statements stay. */
static void test_reset_restores_the_session(void) {
  ss_pg *pg = connect_with(16);
  int prepared_before;
  CHECK(db_scalar(pg, "select 11") == 11);
  CHECK(db_scalar(pg, "select 11") == 11); /* now prepared */
  prepared_before = (int)db_scalar(pg, "select count(*) from pg_prepared_statements");
  CHECK(db_exec_ok(pg, "set statement_timeout = 1234; set search_path = pg_catalog; create temp table tmp_left (a int)"));
  CHECK(db_exec_ok(pg, "listen left_channel"));
  CHECK(db_scalar(pg, "select count(*) from (select pg_advisory_lock(4242)) s") == 1);
  CHECK(db_scalar(pg, "select count(*) from (select set_config('app.user_id', '7', false)) s") == 1);
  CHECK(ss_pg_pool_ops.reset(NULL, pg) == 0);
  CHECK(db_scalar(pg, "select count(*) from pg_listening_channels()") == 0);
  CHECK(db_scalar(pg, "select count(*) from pg_locks where locktype = 'advisory' and pid = pg_backend_pid()") == 0);
  CHECK(db_scalar(pg, "select count(*) from pg_class where relname = 'tmp_left'") == 0);
  {
    ss_error err;
    PGresult *res = ss_pg_query(pg, "select current_setting('statement_timeout'), current_setting('search_path'), "
                                    "coalesce(current_setting('app.user_id', true), '')", 0, NULL, NULL, NULL, NULL, &err);
    CHECK(res && strcmp(PQgetvalue(res, 0, 0), "4321ms") == 0); /* the startup packet's value stays */
    CHECK(res && strcmp(PQgetvalue(res, 0, 1), "pg_catalog") != 0);
    CHECK(res && strcmp(PQgetvalue(res, 0, 2), "") == 0);
    PQclear(res);
  }
  CHECK(db_scalar(pg, "select count(*) from pg_prepared_statements") >= prepared_before);
  CHECK(db_scalar(pg, "select 11") == 11);
  ss_pg_close(pg);
}

/* COPY through query or exec is refused and leaves the connection usable. */
static void test_copy_through_query(void) {
  ss_pg *pg = connect_with(16);
  ss_error err;
  PGresult *res = ss_pg_query(pg, "copy (select 1) to stdout", 0, NULL, NULL, NULL, NULL, &err);
  CHECK(res == NULL && err.kind == SS_ERR_INPUT);
  CHECK(ss_pg_transaction_status(pg) == PQTRANS_IDLE && db_scalar(pg, "select 3") == 3);
  CHECK(db_exec_ok(pg, "create temp table copy_q (a int)"));
  res = ss_pg_exec(pg, "copy copy_q from stdin", &err);
  CHECK(res == NULL && err.kind == SS_ERR_INPUT);
  CHECK(ss_pg_transaction_status(pg) == PQTRANS_IDLE && db_scalar(pg, "select 4") == 4);
  res = ss_pg_exec(pg, "select 1; copy (select g from generate_series(1, 100000) g) to stdout; select 2", &err);
  CHECK(res == NULL && err.kind == SS_ERR_INPUT);
  CHECK(ss_pg_transaction_status(pg) == PQTRANS_IDLE && db_scalar(pg, "select 5") == 5);
  ss_pg_close(pg);
}

/* A call that runs past its own timeout is cancelled and fails with
 * SS_ERR_TIMEOUT; the connection stays usable. */
static void test_call_timeout(void) {
  ss_pg *pg = connect_with(16);
  ss_error err;
  double t0 = ss_monotonic();
  PGresult *res;
  ss_pg_set_timeout(pg, 0.2);
  res = ss_pg_query(pg, "select pg_sleep(3)", 0, NULL, NULL, NULL, NULL, &err);
  CHECK(res == NULL && err.kind == SS_ERR_TIMEOUT && strcmp(err.code, "57014") == 0);
  CHECK(ss_monotonic() - t0 < 2.5);
  CHECK(!ss_pg_is_broken(pg) && db_scalar(pg, "select 6") == 6);
  ss_pg_close(pg);
}

/* ss_pg_interrupt (Ctrl-C) cancels the statement under way, from another
 * thread as from a signal handler; the error is the server's own 57014. */
static void *interrupt_soon(void *arg) {
  (void)arg;
  usleep(200 * 1000);
  ss_pg_interrupt();
  return NULL;
}

static void test_interrupt(void) {
  ss_pg *pg = connect_with(16);
  ss_error err;
  pthread_t t;
  double t0 = ss_monotonic();
  PGresult *res;
  pthread_create(&t, NULL, interrupt_soon, NULL);
  res = ss_pg_query(pg, "select pg_sleep(5)", 0, NULL, NULL, NULL, NULL, &err);
  pthread_join(t, NULL);
  CHECK(res == NULL && err.kind == SS_ERR_POSTGRES && strcmp(err.code, "57014") == 0);
  CHECK(ss_monotonic() - t0 < 2.5);
  CHECK(!ss_pg_is_broken(pg) && db_scalar(pg, "select 7") == 7); /* the next call runs */
  ss_pg_close(pg);
}

/* Transactions nest by the server's status: a savepoint inside the
 * caller's own BEGIN, which the caller still ends. */
static void test_transactions_nest_by_status(void) {
  ss_pg *pg = connect_with(16);
  ss_pg_tx outer, inner;
  ss_error err;
  CHECK(db_exec_ok(pg, "create temp table tx_t (a int)"));
  CHECK(db_exec_ok(pg, "begin; insert into tx_t values (1)"));
  CHECK(ss_pg_tx_begin(pg, &outer, NULL, &err) == 0 && outer.savepoint != 0);
  CHECK(db_exec_ok(pg, "insert into tx_t values (2)"));
  CHECK(ss_pg_tx_begin(pg, &inner, NULL, &err) == 0 && inner.savepoint > outer.savepoint);
  CHECK(db_exec_ok(pg, "insert into tx_t values (3)"));
  CHECK(ss_pg_tx_end(pg, &inner, 0, &err) == -1); /* rolled back alone */
  CHECK(ss_pg_tx_end(pg, &outer, 1, &err) == 0);
  CHECK(ss_pg_transaction_status(pg) == PQTRANS_INTRANS); /* still the caller's */
  CHECK(db_scalar(pg, "select count(*) from tx_t") == 2);
  CHECK(db_exec_ok(pg, "rollback"));
  CHECK(db_scalar(pg, "select count(*) from tx_t") == 0);
  /* a mode on a nested one is refused; a failed statement inside rolls back */
  CHECK(db_exec_ok(pg, "begin"));
  CHECK(ss_pg_tx_begin(pg, &inner, "READ ONLY", &err) == -1 && err.kind == SS_ERR_INPUT);
  CHECK(db_exec_ok(pg, "rollback"));
  CHECK(ss_pg_tx_begin(pg, &outer, "ISOLATION LEVEL SERIALIZABLE", &err) == 0 && outer.savepoint == 0);
  CHECK(ss_pg_exec(pg, "select 1/0", &err) == NULL);
  CHECK(ss_pg_tx_end(pg, &outer, 1, &err) == -1 && strcmp(err.code, "25P02") == 0);
  CHECK(ss_pg_transaction_status(pg) == PQTRANS_IDLE);
  ss_pg_close(pg);
}

static void test_stream(void) {
  ss_pg *pg = connect_with(16);
  ss_error err;
  PGresult *res = ss_pg_stream_start(pg, "select g from generate_series(1, 1000) g", 0, NULL, NULL, NULL, NULL, &err);
  long rows = 0, sum = 0;
  while (res && PQresultStatus(res) == PGRES_SINGLE_TUPLE) {
    rows++;
    sum += atol(PQgetvalue(res, 0, 0));
    PQclear(res);
    res = ss_pg_stream_next(pg, &err);
  }
  CHECK(res && PQresultStatus(res) == PGRES_TUPLES_OK);
  CHECK(res && strcmp(PQcmdTuples(res), "1000") == 0);
  PQclear(res);
  CHECK(rows == 1000 && sum == 500500);
  CHECK(ss_pg_transaction_status(pg) == PQTRANS_IDLE);

  res = ss_pg_stream_start(pg, "select 1 / (500 - g) from generate_series(1, 1000) g", 0, NULL, NULL, NULL, NULL, &err);
  rows = 0;
  while (res && PQresultStatus(res) == PGRES_SINGLE_TUPLE) {
    rows++;
    PQclear(res);
    res = ss_pg_stream_next(pg, &err);
  }
  CHECK(res == NULL && strcmp(err.code, "22012") == 0);
  CHECK(rows < 1000);
  CHECK(ss_pg_transaction_status(pg) == PQTRANS_IDLE && db_scalar(pg, "select 5") == 5);
  ss_pg_close(pg);
}

/* Binary COPY from the encoder through the connection: rows in, a
 * server-side failure reported at the end, an abandoned COPY, and the
 * connection usable after each. */
static void test_copy(void) {
  ss_pg *pg = connect_with(16);
  ss_error err;
  ss_buf b;
  PGresult *res;
  int i;
  ss_buf_init(&b);
  res = ss_pg_exec(pg, "create temp table copy_t (n int4 not null check (n >= 0), s text, j jsonb)", &err);
  CHECK(res != NULL);
  PQclear(res);
  ss_copy_header(&b);
  for (i = 0; i < 1000; i++) {
    ss_copy_row(&b, 3);
    ss_copy_int4(&b, i);
    if (i % 2) ss_copy_text(&b, "odd", 3); else ss_copy_null(&b);
    ss_copy_jsonb(&b, "{\"k\": 1}", 8);
  }
  ss_copy_trailer(&b);
  CHECK(ss_pg_copy_begin(pg, "copy copy_t from stdin (format binary)", &err) == 0);
  CHECK(ss_pg_copy_send(pg, b.data, b.len, &err) == 0);
  CHECK(ss_pg_copy_done(pg, NULL, &err) == 0);
  CHECK(ss_pg_copy_result(pg, &err) == 1000);
  CHECK(db_scalar(pg, "select count(*) from copy_t where s = 'odd' and j->>'k' = '1'") == 500);
  /* a row the CHECK refuses: the error arrives with the result, with its SQLSTATE and constraint */
  b.len = 0;
  ss_copy_header(&b);
  ss_copy_row(&b, 3);
  ss_copy_int4(&b, -1);
  ss_copy_null(&b);
  ss_copy_null(&b);
  ss_copy_trailer(&b);
  CHECK(ss_pg_copy_begin(pg, "copy copy_t from stdin (format binary)", &err) == 0);
  CHECK(ss_pg_copy_send(pg, b.data, b.len, &err) == 0);
  CHECK(ss_pg_copy_done(pg, NULL, &err) == 0);
  CHECK(ss_pg_copy_result(pg, &err) == -1);
  CHECK(err.kind == SS_ERR_POSTGRES && strcmp(err.code, "23514") == 0);
  CHECK(strcmp(err.constraint, "copy_t_n_check") == 0);
  /* abandoned on purpose: nothing of it stays */
  CHECK(ss_pg_copy_begin(pg, "copy copy_t from stdin (format binary)", &err) == 0);
  CHECK(ss_pg_copy_send(pg, b.data, 19, &err) == 0);
  CHECK(ss_pg_copy_done(pg, "given up", &err) == 0);
  CHECK(ss_pg_copy_result(pg, &err) == -1);
  CHECK(strstr(err.message, "given up") != NULL);
  /* a statement that is not a COPY FROM STDIN */
  CHECK(ss_pg_copy_begin(pg, "select 1", &err) == -1);
  CHECK(err.kind == SS_ERR_INPUT && strstr(err.message, "not a COPY") != NULL);
  CHECK(db_scalar(pg, "select count(*) from copy_t") == 1000);
  CHECK(!ss_pg_is_broken(pg));
  ss_buf_free(&b);
  ss_pg_close(pg);
}

int main(void) {
  url = getenv("SEMSTORE_TEST_DATABASE_URL");
  if (!url) {
    printf("SEMSTORE_TEST_DATABASE_URL is not set: skipped\n0 passed, 0 failed\n");
    return 0;
  }
  test_query_and_settings();
  test_statement_cache();
  test_errors();
  test_bad_password();
  test_terminated_backend();
  test_reset_rolls_back();
  test_reset_restores_the_session();
  test_copy_through_query();
  test_call_timeout();
  test_interrupt();
  test_transactions_nest_by_status();
  test_stream();
  test_copy();
  DONE();
}
