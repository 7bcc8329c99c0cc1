/* The bulk engine (chunks_bulk.c) against a real server, on a database of
 * its own with the built-in schema in 8 partitions (scratch_db.h): rows
 * routed and counted per partition, ids in order, a bad row, the server's
 * CHECK, flushes past a small budget, a connection killed midway, an
 * abandoned bulk, a savepoint in the caller's transaction. No Lua. */
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>

#include "chunks_bulk.h"
#include "harness.h"
#include "hashtext.h"
#include "scratch_db.h"

#define PARTS 8
#define COLLECTIONS 5

static ss_pg *pg, *admin;
static char collections[COLLECTIONS][40];

#define scalar db_scalar
#define exec_ok db_exec_ok

static long chunks(void) { return scalar(admin, "SELECT count(*) FROM chunks"); }

/* Row i: in collection i % COLLECTIONS, chunk_index i, content "chunk i"
 * (or `content`), metadata {"i": i}. The strings live in text and json. */
static void make_row(ss_value *f, int i, const char *content, char text[32], char json[32]) {
  int k;
  for (k = 0; k < SS_CHUNK_NFIELDS; k++) f[k] = ss_null();
  snprintf(text, 32, "chunk %d", i);
  snprintf(json, 32, "{\"i\": %d}", i);
  f[SS_CHUNK_collection_id] = ss_text(collections[i % COLLECTIONS], 36);
  f[SS_CHUNK_chunk_index] = ss_int(i);
  f[SS_CHUNK_content] = content ? ss_text(content, strlen(content)) : ss_text(text, strlen(text));
  f[SS_CHUNK_metadata] = ss_json(json, strlen(json));
  f[SS_CHUNK_token_count] = ss_double(3.0); /* an integral double is taken as an integer */
}

/* Feeds row i with that content; 0 or -1 with err set. */
static int feed_one(ss_bulk *b, int i, const char *content, ss_error *err) {
  ss_value f[SS_CHUNK_NFIELDS];
  char text[32], json[32];
  long long id;
  make_row(f, i, content, text, json);
  return ss_bulk_row(b, f, &id, err);
}

/* Feeds rows from..to-1; the index of the first failure, or to. */
static int feed(ss_bulk *b, int from, int to, long long *ids, ss_error *err) {
  int i;
  for (i = from; i < to; i++) {
    ss_value f[SS_CHUNK_NFIELDS];
    char text[32], json[32];
    long long id;
    make_row(f, i, NULL, text, json);
    if (ss_bulk_row(b, f, &id, err)) return i;
    if (ids) ids[i] = id;
  }
  return to;
}

/* Whether a COPY of this connection's is under way or its transaction is open. */
static int copied_yet(void) {
  char sql[160];
  snprintf(sql, sizeof sql, "SELECT count(*) FROM pg_stat_activity WHERE pid = %d AND state IN ('active', "
           "'idle in transaction') AND query LIKE 'COPY chunks_p%%'", ss_pg_backend_pid(pg));
  return scalar(admin, sql) == 1;
}

static void test_rows_by_partition(void) {
  ss_bulk_options o = {.budget = 0, .return_ids = 0, .expected_rows = 0};
  ss_error err;
  ss_bulk *b = ss_bulk_new(pg, &o, &err);
  long n = -1;
  int k, expect[PARTS] = {0};
  CHECK(b != NULL);
  if (!b) return;
  CHECK(feed(b, 0, 1000, NULL, &err) == 1000);
  CHECK(chunks() == 0 && !copied_yet()); /* within the budget: nothing sent before the end */
  CHECK(ss_bulk_finish(b, &n, &err) == 0 && n == 1000);
  ss_bulk_free(b);
  CHECK(chunks() == 1000);
  for (k = 0; k < 1000; k++) expect[ss_partition_key(collections[k % COLLECTIONS], 36, PARTS)]++;
  for (k = 0; k < PARTS; k++) {
    char sql[64];
    snprintf(sql, sizeof sql, "SELECT count(*) FROM chunks_p%d", k);
    CHECK(scalar(admin, sql) == expect[k]);
  }
  CHECK(scalar(admin, "SELECT count(*) FROM chunks WHERE tableoid <> ('chunks_p' || chunk_partition_key(collection_id))"
                      "::regclass OR content <> 'chunk ' || chunk_index OR (metadata->>'i')::int <> chunk_index "
                      "OR token_count <> 3") == 0);
  CHECK(ss_pg_transaction_status(pg) == PQTRANS_IDLE);
  CHECK(exec_ok(admin, "DELETE FROM chunks"));
  /* no rows: nothing sent, 0 */
  b = ss_bulk_new(pg, &o, &err);
  CHECK(b && ss_bulk_finish(b, &n, &err) == 0 && n == 0);
  ss_bulk_free(b);
}

static void test_ids_in_order(void) {
  static long long ids[2500];
  ss_bulk_options o = {.budget = 0, .return_ids = 1, .expected_rows = 0};
  ss_error err;
  ss_bulk *b;
  long n = -1;
  int k, ordered = 1;
  char sql[128];
  /* unknown length: blocks of SS_BULK_ID_BLOCK; known: one block */
  for (o.expected_rows = 0; o.expected_rows <= 2500; o.expected_rows += 2500) {
    b = ss_bulk_new(pg, &o, &err);
    CHECK(b != NULL);
    if (!b) return;
    CHECK(feed(b, 0, 2500, ids, &err) == 2500);
    CHECK(ss_bulk_finish(b, &n, &err) == 0 && n == 2500);
    ss_bulk_free(b);
    for (k = 1; k < 2500; k++) ordered &= ids[k] > ids[k - 1];
    CHECK(ordered);
    snprintf(sql, sizeof sql, "SELECT chunk_index FROM chunks WHERE id = %lld", ids[1234]);
    CHECK(scalar(admin, sql) == 1234);
    CHECK(chunks() == 2500);
    CHECK(exec_ok(admin, "DELETE FROM chunks"));
  }
}

static void test_bad_rows(void) {
  ss_bulk_options o = {.budget = 0, .return_ids = 0, .expected_rows = 0};
  ss_value f[SS_CHUNK_NFIELDS];
  char text[32], json[32];
  const char *field;
  long long id;
  ss_error err;
  ss_bulk *b = ss_bulk_new(pg, &o, &err);
  long n;
  CHECK(b != NULL);
  if (!b) return;
  CHECK(feed(b, 0, 4, NULL, &err) == 4);
  CHECK(feed_one(b, 4, "caf\xe9", &err) == -1);
  CHECK(err.kind == SS_ERR_INPUT && strcmp(err.message, "row 5: content must be UTF-8 text without zero bytes") == 0);
  CHECK(ss_bulk_failed_row(b, &field) == 5 && field && strcmp(field, "content") == 0);
  /* over: it takes nothing more */
  CHECK(feed_one(b, 5, NULL, &err) == -1 && ss_bulk_finish(b, &n, &err) == -1);
  ss_bulk_free(b);
  CHECK(chunks() == 0);

  /* each field is checked; the first bad one is named */
  b = ss_bulk_new(pg, &o, &err);
  make_row(f, 0, NULL, text, json);
  f[SS_CHUNK_collection_id] = ss_text("NOT-A-UUID", 10);
  f[SS_CHUNK_chunk_index] = ss_int(-1);
  CHECK(ss_bulk_row(b, f, &id, &err) == -1 && strstr(err.message, "row 1: collection_id must be a UUID"));
  ss_bulk_free(b);
  b = ss_bulk_new(pg, &o, &err);
  make_row(f, 0, NULL, text, json);
  f[SS_CHUNK_chunk_index] = ss_null();
  CHECK(ss_bulk_row(b, f, &id, &err) == -1 && strcmp(err.message, "row 1: chunk_index is required") == 0);
  ss_bulk_free(b);
  b = ss_bulk_new(pg, &o, &err);
  make_row(f, 0, NULL, text, json);
  f[SS_CHUNK_metadata] = ss_text("{}", 2);
  CHECK(ss_bulk_row(b, f, &id, &err) == -1 && strstr(err.message, "row 1: metadata must be JSON"));
  ss_bulk_free(b);
  /* what only the caller sees: the row's number and the field it names */
  b = ss_bulk_new(pg, &o, &err);
  CHECK(feed(b, 0, 2, NULL, &err) == 2);
  CHECK(ss_bulk_reject(b, "colour", "is not a field of a chunk", &err) == -1);
  CHECK(strcmp(err.message, "row 3: colour is not a field of a chunk") == 0);
  CHECK(ss_bulk_failed_row(b, &field) == 3 && strcmp(field, "colour") == 0);
  ss_bulk_free(b);
  CHECK(chunks() == 0);
}

/* The server's CHECK, in a part copied early: its error, and nothing stays. */
static void test_server_check(void) {
  ss_bulk_options o = {.budget = 4096, .return_ids = 0, .expected_rows = 0};
  const char *field;
  ss_error err;
  ss_bulk *b;
  long n;
  CHECK(exec_ok(admin, "ALTER TABLE chunks ADD CONSTRAINT test_no_bad CHECK (content <> 'bad')"));
  b = ss_bulk_new(pg, &o, &err);
  CHECK(feed_one(b, 0, "bad", &err) == 0);
  err.kind = SS_OK;
  /* the budget is small: the bad row's partition is copied while more come */
  if (feed(b, 1, 400, NULL, &err) == 400) CHECK(ss_bulk_finish(b, &n, &err) == -1);
  CHECK(err.kind == SS_ERR_POSTGRES && strcmp(err.code, "23514") == 0 && strcmp(err.constraint, "test_no_bad") == 0);
  CHECK(ss_bulk_failed_row(b, &field) == 0);
  ss_bulk_free(b);
  CHECK(ss_pg_transaction_status(pg) == PQTRANS_IDLE);
  CHECK(chunks() == 0);
  CHECK(exec_ok(admin, "ALTER TABLE chunks DROP CONSTRAINT test_no_bad"));
}

/* A budget of a few rows: COPYs run while rows still come, and the whole
 * is still one transaction. */
static void test_small_budget(void) {
  ss_bulk_options o = {.budget = 2000, .return_ids = 1, .expected_rows = 0};
  static long long ids[3000];
  ss_error err;
  ss_bulk *b = ss_bulk_new(pg, &o, &err);
  long n = -1;
  CHECK(b != NULL);
  if (!b) return;
  CHECK(feed(b, 0, 100, ids, &err) == 100);
  CHECK(copied_yet());
  CHECK(chunks() == 0); /* not committed yet: another connection sees none */
  CHECK(feed(b, 100, 3000, ids, &err) == 3000);
  CHECK(ss_bulk_finish(b, &n, &err) == 0 && n == 3000);
  ss_bulk_free(b);
  CHECK(chunks() == 3000);
  CHECK(scalar(admin, "SELECT count(DISTINCT id) FROM chunks") == 3000);
  CHECK(exec_ok(admin, "DELETE FROM chunks"));
}

static void test_abandoned(void) {
  ss_bulk_options o = {.budget = 2000, .return_ids = 0, .expected_rows = 0};
  ss_error err;
  ss_bulk *b = ss_bulk_new(pg, &o, &err);
  long n;
  CHECK(b != NULL);
  if (!b) return;
  CHECK(feed(b, 0, 500, NULL, &err) == 500);
  CHECK(ss_pg_transaction_status(pg) == PQTRANS_INTRANS || ss_pg_transaction_status(pg) == PQTRANS_ACTIVE);
  ss_bulk_abandon(b); /* what the binding does when the Lua iterator raises */
  ss_bulk_abandon(b);
  CHECK(ss_bulk_finish(b, &n, &err) == -1);
  ss_bulk_free(b);
  CHECK(ss_pg_transaction_status(pg) == PQTRANS_IDLE);
  CHECK(scalar(pg, "SELECT count(*) FROM chunks") == 0);
}

/* Inside the caller's transaction the bulk is a savepoint: a failed bulk
 * leaves what the transaction did before it. */
static void test_savepoint(void) {
  ss_bulk_options o = {.budget = 2000, .return_ids = 0, .expected_rows = 0};
  ss_error err;
  ss_bulk *b;
  long n;
  CHECK(exec_ok(pg, "BEGIN"));
  b = ss_bulk_new(pg, &o, &err);
  CHECK(feed(b, 0, 10, NULL, &err) == 10 && ss_bulk_finish(b, &n, &err) == 0 && n == 10);
  ss_bulk_free(b);
  b = ss_bulk_new(pg, &o, &err);
  CHECK(feed(b, 10, 300, NULL, &err) == 300);
  CHECK(feed_one(b, 300, "\xff", &err) == -1);
  ss_bulk_free(b);
  CHECK(ss_pg_transaction_status(pg) == PQTRANS_INTRANS);
  CHECK(scalar(pg, "SELECT count(*) FROM chunks") == 10);
  CHECK(exec_ok(pg, "COMMIT"));
  CHECK(chunks() == 10);
  CHECK(exec_ok(admin, "DELETE FROM chunks"));
}

/* The server ends the bulk's backend between two COPYs: a connection
 * error, and nothing left behind. */
static void test_killed(void) {
  ss_bulk_options o = {.budget = 2000, .return_ids = 0, .expected_rows = 0};
  char sql[96];
  ss_error err;
  ss_bulk *b = ss_bulk_new(pg, &o, &err);
  long n;
  int stopped;
  CHECK(b != NULL);
  if (!b) return;
  CHECK(feed(b, 0, 200, NULL, &err) == 200 && copied_yet());
  snprintf(sql, sizeof sql, "SELECT pg_terminate_backend(%d, 5000)::int", ss_pg_backend_pid(pg));
  CHECK(scalar(admin, sql) == 1);
  stopped = feed(b, 200, 2000, NULL, &err);
  if (stopped == 2000) CHECK(ss_bulk_finish(b, &n, &err) == -1);
  CHECK(err.kind == SS_ERR_CONNECTION);
  ss_bulk_abandon(b);
  ss_bulk_free(b);
  CHECK(ss_pg_is_broken(pg));
  CHECK(chunks() == 0);
  ss_pg_close(pg);
  pg = scratch_connect();
}

static long prepared_parts(void) {
  return scalar(admin, "SELECT count(*) FROM pg_prepared_xacts WHERE gid LIKE 'semstore:bulk:%' "
                       "AND database = current_database()");
}

/* The steps a two-phase commit went through, and one to stop at: the test
 * stands in for a process that dies there by leaving the bulk alone. */
static char steps[256];
static void note_step(void *ud, const char *step, int k) {
  size_t n = strlen(steps);
  (void)ud;
  snprintf(steps + n, sizeof steps - n, "%s%s %d", n ? ", " : "", step, k + 1);
}

/* Two connections: every partition's COPY on whichever is free, a
 * two-phase commit at the end, nothing prepared or decided left over. */
static void test_parallel(void) {
  ss_pg *second = scratch_connect();
  ss_pg *more[1] = {second};
  ss_bulk_options o = {.budget = 2000, .return_ids = 1, .more = more, .nmore = 1, .on_step = note_step};
  const char *why;
  ss_error err;
  ss_bulk *b = ss_bulk_new(pg, &o, &err);
  long long ids[3000];
  long n = -1;
  CHECK(b != NULL && second != NULL);
  if (!b) return;
  steps[0] = 0;
  CHECK(ss_bulk_connections(b, &why) == 2 && why == NULL);
  CHECK(feed(b, 0, 3000, ids, &err) == 3000);
  CHECK(ss_bulk_finish(b, &n, &err) == 0 && n == 3000);
  ss_bulk_free(b);
  CHECK(strcmp(steps, "prepare 1, prepare 2, decide 1, commit 1, commit 2, forget 1") == 0);
  CHECK(chunks() == 3000);
  CHECK(scalar(admin, "SELECT count(DISTINCT id) FROM chunks") == 3000);
  CHECK(prepared_parts() == 0 && scalar(admin, "SELECT count(*) FROM semstore_bulk_decisions") == 0);
  CHECK(PQisnonblocking(ss_pg_conn(pg)) == 0 && PQisnonblocking(ss_pg_conn(second)) == 0);
  CHECK(exec_ok(admin, "DELETE FROM chunks"));
  /* inside a transaction: one connection, and why */
  CHECK(exec_ok(pg, "BEGIN"));
  b = ss_bulk_new(pg, &o, &err);
  CHECK(b && ss_bulk_connections(b, &why) == 1 && why && strstr(why, "transaction"));
  ss_bulk_free(b);
  CHECK(exec_ok(pg, "ROLLBACK"));
  ss_pg_close(second);
}

/* A coordinator that dies at a step of its two-phase commit: on_step
 * jumps out of the engine (as a Lua raise does), and the connections are
 * closed with the parts as they are, as the kernel closes them for a
 * killed process. Then recovery settles what is left. */
static jmp_buf died;
static const char *die_at;
static void die_on_step(void *ud, const char *step, int k) {
  char name[32];
  (void)ud;
  snprintf(name, sizeof name, "%s %d", step, k + 1);
  if (strcmp(name, die_at) == 0) longjmp(died, 1);
}

static void test_recover(void) {
  static const struct {
    const char *at;
    long rows, prepared, committed, rolled_back;
  } cases[] = {
      {"prepare 1", 0, 0, 0, 0},
      {"prepare 2", 0, 1, 0, 1},
      {"commit 1", 1000, 2, 2, 0},
      {"commit 2", 1000, 1, 1, 0},
  };
  size_t i;
  for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    ss_pg *first = scratch_connect(), *second = scratch_connect();
    ss_pg *more[1] = {second};
    ss_bulk_options o = {.budget = 2000, .more = more, .nmore = 1, .on_step = die_on_step};
    ss_error err;
    ss_bulk *volatile b = ss_bulk_new(first, &o, &err);
    long committed = -1, rolled_back = -1, forgotten = -1, n;
    CHECK(b != NULL && feed(b, 0, 1000, NULL, &err) == 1000);
    if (!b) return;
    die_at = cases[i].at;
    if (setjmp(died) == 0) CHECK(ss_bulk_finish(b, &n, &err) == 999); /* never returns */
    ss_bulk_free(b);
    ss_pg_close(first);
    ss_pg_close(second);
    CHECK(prepared_parts() == cases[i].prepared);
    /* younger than the grace: left alone */
    CHECK(ss_bulk_recover(pg, 60, &committed, &rolled_back, &forgotten, &err) == 0);
    CHECK(committed == 0 && rolled_back == 0);
    CHECK(ss_bulk_recover(pg, 0, &committed, &rolled_back, &forgotten, &err) == 0);
    CHECK(committed == cases[i].committed && rolled_back == cases[i].rolled_back);
    /* commit decisions go with their parts; rollback decisions stay a day */
    CHECK(prepared_parts() == 0 &&
          scalar(admin, "SELECT count(*) FROM semstore_bulk_decisions WHERE outcome = 'commit'") == 0);
    CHECK(chunks() == cases[i].rows);
    if (chunks() != cases[i].rows) printf("  dying at %s\n", cases[i].at);
    CHECK(exec_ok(admin, "DELETE FROM chunks"));
  }
}

int main(void) {
  int ready = scratch_db_create("c_test_chunks_bulk", PARTS), k;
  if (ready == 0) {
    printf("SEMSTORE_TEST_DATABASE_URL or SEMSTORE_TEST_PG_SUPERUSER_URL is not set: skipped\n0 passed, 0 failed\n");
    return 0;
  }
  CHECK(ready == 1);
  if (ready != 1 || !(pg = scratch_connect()) || !(admin = scratch_connect())) DONE();
  CHECK(exec_ok(admin, "INSERT INTO users (username, email, hashed_password) VALUES ('ada', 'ada@example.org', 'x')"));
  for (k = 0; k < COLLECTIONS; k++) {
    char sql[256];
    ss_error err;
    PGresult *res;
    snprintf(sql, sizeof sql, "INSERT INTO collections (name, owner_id, vector_store_name, embedding_model) "
             "SELECT 'c%d', id, 'c%d', 'm' FROM users RETURNING id", k, k);
    res = ss_pg_exec(admin, sql, &err);
    CHECK(res && PQntuples(res) == 1);
    if (res) ss_strlcpy(collections[k], PQgetvalue(res, 0, 0), sizeof collections[k]);
    PQclear(res);
  }
  test_rows_by_partition();
  test_ids_in_order();
  test_bad_rows();
  test_server_check();
  test_small_budget();
  test_abandoned();
  test_savepoint();
  test_killed();
  test_parallel();
  test_recover();
  ss_pg_close(pg);
  ss_pg_close(admin);
  scratch_db_drop();
  DONE();
}
