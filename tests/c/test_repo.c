/* The repository engine (repo.c) against a real server, on a database of
 * its own with the built-in schema (scratch_db.h): value checks, the
 * answers' shapes, not_found, access_denied, invalid transitions, the retry
 * when a checked row changes, collections:update's statement builder,
 * update_chunk_embeddings and the password check. No Lua. */
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "hashtext.h"
#include "repo.h"
#include "repo_rules.h"
#include "scratch_db.h"

#define T(s) ss_text(s, strlen(s))
#define NUL ss_null()

static ss_pg *pg;

/* Checks and runs repo.method with values; 0 or -1 with err set. */
static int call(const char *repo, const char *method, const ss_value *values, ss_repo_result *out, ss_error *err) {
  ss_repo_call c;
  const ss_statement *st = ss_statement_find(repo, method);
  memset(out, 0, sizeof *out);
  if (!st) return ss_error_set(err, SS_ERR_INPUT, "no statement %s.%s", repo, method);
  if (ss_repo_check(&c, st, values, err)) return -1;
  return ss_repo_run(&c, pg, out, err);
}

/* Whether calling repo.method fails with an error of that kind whose
 * message holds `part`. */
static int fails(ss_error_kind kind, const char *part, const char *repo, const char *method, const ss_value *values) {
  ss_repo_result r;
  ss_error err;
  int ok;
  if (call(repo, method, values, &r, &err) == 0) {
    ss_repo_result_clear(&r);
    printf("  %s.%s succeeded\n", repo, method);
    return 0;
  }
  ok = err.kind == kind && strstr(err.message, part) != NULL;
  if (!ok) printf("  %s.%s: %s error: %s\n", repo, method, ss_error_kind_name(err.kind), err.message);
  return ok;
}

/* The text of column `col` of the first row, copied into out ("" for none). */
static const char *field(const ss_repo_result *r, const char *col, char *out, size_t size) {
  int c = r->rows ? PQfnumber(r->rows, col) : -1;
  ss_strlcpy(out, c >= 0 && PQntuples(r->rows) > 0 ? PQgetvalue(r->rows, 0, c) : "", size);
  return out;
}

static long scalar(const char *sql) { return db_scalar(pg, sql); }
static int exec_ok(const char *sql) { return db_exec_ok(pg, sql); }

static long long ada, bob;
static char col_a[40], col_b[40];

static long long new_user(const char *name, const char *password) {
  char email[64], id[24];
  ss_value v[4];
  ss_repo_result r;
  ss_error err;
  snprintf(email, sizeof email, "%s@example.org", name);
  v[0] = T(name), v[1] = T(email), v[2] = NUL, v[3] = T(password);
  if (call("users", "create", v, &r, &err)) {
    printf("  users.create: %s\n", err.message);
    return -1;
  }
  field(&r, "id", id, sizeof id);
  CHECK(PQfnumber(r.rows, "hashed_password") < 0); /* the hash never leaves */
  ss_repo_result_clear(&r);
  return atoll(id);
}

/* A collection of `owner` named `name`; its id into out. */
static int new_collection(long long owner, const char *name, char out[40]) {
  ss_value v[12];
  ss_repo_result r;
  ss_error err;
  int k;
  for (k = 0; k < 12; k++) v[k] = NUL;
  v[1] = T(name), v[2] = ss_int(owner), v[3] = T("bge-small");
  if (call("collections", "create", v, &r, &err)) {
    printf("  collections.create: %s\n", err.message);
    return -1;
  }
  field(&r, "id", out, 40);
  ss_repo_result_clear(&r);
  return 0;
}

static void test_checks(void) {
  ss_value v[12];
  int k;
  /* users.create: types, zero bytes, UTF-8, required, empty password */
  v[0] = ss_int(42), v[1] = T("e@example.org"), v[2] = NUL, v[3] = T("pw");
  CHECK(fails(SS_ERR_INPUT, "username must be a string, not a number", "users", "create", v));
  v[0] = ss_text("e\0ve", 4);
  CHECK(fails(SS_ERR_INPUT, "username must be UTF-8 text without zero bytes", "users", "create", v));
  v[0] = T("eve\xff");
  CHECK(fails(SS_ERR_INPUT, "UTF-8", "users", "create", v));
  v[0] = T("eve"), v[3] = NUL;
  CHECK(fails(SS_ERR_INPUT, "password is required", "users", "create", v));
  v[3] = T("");
  CHECK(fails(SS_ERR_INPUT, "password must not be empty", "users", "create", v));
  v[3] = ss_other("function");
  CHECK(fails(SS_ERR_INPUT, "password must be a string, not a function", "users", "create", v));
  CHECK(scalar("select count(*) from users where username = 'eve'") == 0);

  /* integers: kinds and ranges; an integral double is an integer */
  v[0] = ss_double(1.5);
  CHECK(fails(SS_ERR_INPUT, "id must be an integer", "users", "get", v));
  v[0] = ss_double(987654.0);
  CHECK(fails(SS_ERR_NOT_FOUND, "user 987654 not found", "users", "get", v));
  CHECK(fails(SS_ERR_INPUT, "document_count must be a", "collections", "update_stats",
              (ss_value[]){T(col_a), ss_int(-1), NUL, NUL, NUL}));
  CHECK(fails(SS_ERR_INPUT, "limit must be an integer from 1 to 10000", "collections", "list_for_user",
              (ss_value[]){ss_int(ada), NUL, ss_int(0)}));
  for (k = 0; k < 10; k++) v[k] = NUL;
  v[0] = T(col_a), v[2] = ss_int(2147483648LL), v[3] = T("x");
  CHECK(fails(SS_ERR_INPUT, "chunk_index must be an integer from 0 to 2147483647", "chunks", "create_chunk", v));

  /* UUIDs, enums, JSON */
  CHECK(fails(SS_ERR_INPUT, "id must be a UUID in canonical lowercase form", "collections", "get_by_uuid",
              (ss_value[]){T("550E8400-E29B-41D4-A716-446655440000")}));
  for (k = 0; k < 12; k++) v[k] = NUL;
  v[1] = T("q"), v[2] = ss_int(ada), v[3] = T("m"), v[5] = T("float64");
  CHECK(fails(SS_ERR_INPUT, "quantization must be one of float32, float16, int8", "collections", "create", v));
  v[5] = NUL, v[9] = T("{\"a\":1}");
  CHECK(fails(SS_ERR_INPUT, "meta must be JSON", "collections", "create", v));
  CHECK(scalar("select count(*) from collections where name = 'q'") == 0);
}

static void test_shapes_and_refusals(void) {
  ss_repo_result r;
  ss_error err;
  char buf[64], doc[40];
  ss_value v[8];
  int k;
  /* PERMITTED: the owner yes, another user access_denied, an unknown id not_found */
  CHECK(call("collections", "get_by_uuid_with_permission_check", (ss_value[]){T(col_a), ss_int(ada)}, &r, &err) == 0);
  CHECK(strcmp(field(&r, "id", buf, sizeof buf), col_a) == 0);
  ss_repo_result_clear(&r);
  CHECK(fails(SS_ERR_ACCESS_DENIED, "may not use collection", "collections", "get_by_uuid_with_permission_check",
              (ss_value[]){T(col_a), ss_int(bob)}));
  CHECK(fails(SS_ERR_NOT_FOUND, "not found", "collections", "get_by_uuid_with_permission_check",
              (ss_value[]){T("00000000-0000-4000-8000-000000000000"), ss_int(ada)}));

  /* OWNER pre-check: only the owner renames */
  CHECK(fails(SS_ERR_ACCESS_DENIED, "does not own collection", "collections", "rename",
              (ss_value[]){T(col_a), T("taken"), ss_int(bob)}));
  CHECK(call("collections", "rename", (ss_value[]){T(col_a), T("renamed"), ss_int(ada)}, &r, &err) == 0);
  CHECK(strcmp(field(&r, "name", buf, sizeof buf), "renamed") == 0);
  ss_repo_result_clear(&r);

  /* TRANSITION: pending -> degraded refused, -> processing allowed with its message */
  CHECK(fails(SS_ERR_INVALID_TRANSITION, "cannot go from pending to degraded", "collections", "update_status",
              (ss_value[]){T(col_a), T("degraded"), NUL, NUL}));
  CHECK(call("collections", "update_status", (ss_value[]){T(col_a), T("processing"), T("busy"), NUL}, &r, &err) == 0);
  CHECK(strcmp(field(&r, "status", buf, sizeof buf), "processing") == 0);
  CHECK(strcmp(field(&r, "status_message", buf, sizeof buf), "busy") == 0);
  ss_repo_result_clear(&r);
  CHECK(fails(SS_ERR_NOT_FOUND, "not found", "collections", "update_status",
              (ss_value[]){T("00000000-0000-4000-8000-000000000000"), T("ready"), NUL, NUL}));

  /* an operation: cancelled once, then never again */
  CHECK(call("operations", "create", (ss_value[]){NUL, T(col_a), ss_int(ada), T("index"), ss_json("{\"k\":1}", 7), NUL},
             &r, &err) == 0);
  field(&r, "uuid", buf, sizeof buf);
  CHECK(ss_is_uuid(buf, strlen(buf)));
  ss_repo_result_clear(&r);
  CHECK(call("operations", "cancel", (ss_value[]){T(buf), NUL}, &r, &err) == 0);
  ss_repo_result_clear(&r);
  CHECK(fails(SS_ERR_INVALID_TRANSITION, "cannot go from cancelled to cancelled", "operations", "cancel",
              (ss_value[]){T(buf), NUL}));

  /* CREATED: the same content hash twice is one document */
  for (k = 0; k < 8; k++) v[k] = NUL;
  v[0] = T(col_a), v[1] = T("/a"), v[2] = T("a"), v[3] = ss_int(1), v[5] = T("h1");
  CHECK(call("documents", "create", v, &r, &err) == 0 && r.created == 1);
  field(&r, "id", doc, sizeof doc);
  ss_repo_result_clear(&r);
  CHECK(call("documents", "create", v, &r, &err) == 0 && r.created == 0);
  CHECK(strcmp(field(&r, "id", buf, sizeof buf), doc) == 0);
  ss_repo_result_clear(&r);

  /* PAGE: the rows and the count of them all */
  CHECK(call("collections", "list_for_user", (ss_value[]){ss_int(ada), NUL, ss_int(1)}, &r, &err) == 0);
  CHECK(r.rows && PQntuples(r.rows) == 1 && r.total == scalar("select count(*) from collections"));
  ss_repo_result_clear(&r);

  /* PAGE asked as a stream comes whole: the count and the page go in one
   * pipeline, and the connection is a plain idle one after */
  {
    ss_repo_call c;
    const ss_statement *st = ss_statement_find("collections", "list_for_user");
    CHECK(ss_repo_check(&c, st, (ss_value[]){ss_int(ada), NUL, NUL}, &err) == 0);
    c.stream = 1;
    CHECK(ss_repo_run(&c, pg, &r, &err) == 0 && r.stream == NULL);
    CHECK(r.rows && PQresultStatus(r.rows) == PGRES_TUPLES_OK && PQntuples(r.rows) == r.total && r.total >= 2);
    CHECK(r.affected == r.total);
    ss_repo_result_clear(&r);
    CHECK(ss_pg_transaction_status(pg) == PQTRANS_IDLE && scalar("select 7") == 7);
    /* the page and its count are one implicit transaction: inside an open
     * one they run in it and leave it open */
    CHECK(db_exec_ok(pg, "begin"));
    CHECK(ss_repo_check(&c, st, (ss_value[]){ss_int(ada), ss_int(1), ss_int(1)}, &err) == 0);
    CHECK(ss_repo_run(&c, pg, &r, &err) == 0 && PQntuples(r.rows) == 1 && r.total >= 2);
    ss_repo_result_clear(&r);
    CHECK(ss_pg_transaction_status(pg) == PQTRANS_INTRANS);
    CHECK(db_exec_ok(pg, "rollback"));
    CHECK(ss_pg_transaction_status(pg) == PQTRANS_IDLE);
  }

  /* DONE and AFFECTED */
  CHECK(fails(SS_ERR_NOT_FOUND, "document 00000000-0000-4000-8000-000000000000 not found", "documents", "delete",
              (ss_value[]){T("00000000-0000-4000-8000-000000000000")}));
  CHECK(call("documents", "delete", (ss_value[]){T(doc)}, &r, &err) == 0 && r.rows == NULL);
  CHECK(call("chunks", "delete_chunks_by_collection", (ss_value[]){T(col_b), NUL}, &r, &err) == 0 && r.affected == 0);

  /* a server's error comes as it is, and the connection is idle after */
  CHECK(call("users", "create", (ss_value[]){T("ada"), T("x@example.org"), NUL, T("pw")}, &r, &err) == -1);
  CHECK(err.kind == SS_ERR_POSTGRES && strcmp(err.code, "23505") == 0 && strcmp(err.constraint, "users_username_key") == 0);
  CHECK(ss_pg_transaction_status(pg) == PQTRANS_IDLE);
}

/* A statement whose row appears only on its third run: the engine runs
 * the check and the statement again, and gives up after four runs. */
static void test_retry(void) {
  static const char *const statuses[] = {"pending", "ready", NULL};
  ss_statement st;
  ss_repo_call c;
  ss_repo_result r;
  ss_error err;
  memset(&st, 0, sizeof st);
  st.repo = "test";
  st.method = "retry";
  st.entity = "thing";
  st.returns = SS_RET_ROW;
  st.check = SS_CHECK_TRANSITION;
  st.pre_sql = "SELECT 'pending'::text AS v WHERE $1::text IS NOT NULL";
  st.check_param = 2;
  st.allowed = ss_collection_transition_ok;
  st.sql = "SELECT $1::text AS id, $2::text AS status, $3::text AS was, n FROM (SELECT nextval('retry_seq') AS n) s "
           "WHERE n >= 3";
  st.params[0] = (ss_param_spec){"id", SS_V_TEXT, 1, 0, NULL};
  st.params[1] = (ss_param_spec){"status", SS_V_ENUM, 1, 0, statuses};
  st.params[2] = (ss_param_spec){"status", SS_V_CURRENT, 0, 0, NULL};
  CHECK(exec_ok("CREATE SEQUENCE retry_seq"));
  CHECK(ss_repo_check(&c, &st, (ss_value[]){T("x"), T("ready"), NUL}, &err) == 0);
  CHECK(ss_repo_run(&c, pg, &r, &err) == 0);
  if (r.rows) {
    char buf[16];
    CHECK(strcmp(field(&r, "n", buf, sizeof buf), "3") == 0);
    CHECK(strcmp(field(&r, "was", buf, sizeof buf), "pending") == 0); /* the status the check read */
  }
  ss_repo_result_clear(&r);
  st.sql = "SELECT $1::text AS id, $2::text, $3::text, n FROM (SELECT nextval('retry_seq') AS n) s WHERE n >= 100";
  CHECK(ss_repo_check(&c, &st, (ss_value[]){T("x"), T("ready"), NUL}, &err) == 0);
  CHECK(ss_repo_run(&c, pg, &r, &err) == -1);
  CHECK(err.kind == SS_ERR_POSTGRES && strcmp(err.code, "40001") == 0 && strstr(err.message, "thing kept changing"));
  CHECK(scalar("SELECT last_value FROM retry_seq") == 7); /* three runs, then four */
  CHECK(exec_ok("DROP SEQUENCE retry_seq"));
}

static void test_collection_update(void) {
  const char *all[16];
  ss_repo_update u;
  ss_repo_call c;
  ss_repo_result r;
  ss_error err;
  ss_value v[SS_MAX_PARAMS];
  char buf[64];
  int k, n = 0;
  CHECK(ss_repo_collection_update(&u, NULL, 0, &err) == -1 && strstr(err.message, "at least one field"));
  CHECK(ss_repo_collection_update(&u, (const char *[]){"name", "status"}, 2, &err) == -1);
  CHECK(err.kind == SS_ERR_INPUT && strcmp(err.column, "status") == 0);
  CHECK(ss_repo_collection_update(&u, (const char *[]){"name", "name"}, 2, &err) == -1 && strstr(err.message, "twice"));
  /* every column at once: the id and 13 more fill the parameters */
  for (k = 0; ss_collection_updatable[k].name; k++) all[n++] = ss_collection_updatable[k].name;
  CHECK(n + 1 <= SS_MAX_PARAMS);
  CHECK(ss_repo_collection_update(&u, all, n, &err) == 0);
  CHECK(ss_repo_params(&u.st) == n + 1 && strstr(u.sql, "qdrant_staging = $14") != NULL);
  /* two of them, named in another order: the parameters follow the table */
  CHECK(ss_repo_collection_update(&u, (const char *[]){"meta", "description"}, 2, &err) == 0);
  CHECK(strcmp(u.st.params[1].name, "description") == 0 && strcmp(u.st.params[2].name, "meta") == 0);
  v[0] = T(col_b), v[1] = T("about b"), v[2] = ss_json("{\"x\":[1,2]}", 11);
  CHECK(ss_repo_check(&c, &u.st, v, &err) == 0 && ss_repo_run(&c, pg, &r, &err) == 0);
  CHECK(strcmp(field(&r, "description", buf, sizeof buf), "about b") == 0);
  CHECK(strcmp(field(&r, "meta", buf, sizeof buf), "{\"x\": [1, 2]}") == 0);
  ss_repo_result_clear(&r);
  /* its values are checked like any statement's */
  CHECK(ss_repo_collection_update(&u, (const char *[]){"chunk_size"}, 1, &err) == 0);
  CHECK(ss_repo_check(&c, &u.st, (ss_value[]){T(col_b), ss_int(0)}, &err) == -1 && strstr(err.message, "chunk_size"));
}

/* Three chunks in col_a, two in col_b (another partition), then the
 * embedding update across both. */
static void test_update_embeddings(void) {
  long long ids[5], updated = -1;
  char key_a[16], key_b[16];
  ss_value items[18];
  ss_repo_result r;
  ss_error err;
  int k, forbidden;
  CHECK(ss_pg_partitions(pg) == 100); /* asked once, by the first chunk statement, and kept */
  for (k = 0; k < 5; k++) {
    ss_value v[10] = {T(k < 3 ? col_a : col_b), NUL, ss_int(k), T("text"), NUL, NUL, NUL, NUL, NUL, NUL};
    char id[24];
    CHECK(call("chunks", "create_chunk", v, &r, &err) == 0);
    ids[k] = atoll(field(&r, "id", id, sizeof id));
    field(&r, "partition_key", k < 3 ? key_a : key_b, 16);
    ss_repo_result_clear(&r);
  }
  CHECK(strcmp(key_a, key_b) != 0);
  for (k = 0; k < 5; k++) {
    items[3 * k] = ss_int(ids[k]);
    items[3 * k + 1] = T(k < 3 ? col_a : col_b);
    items[3 * k + 2] = T(k % 2 ? "odd" : "even");
  }
  /* a bad item, or a chunk named twice: nothing is updated, the item is named */
  items[4] = T("NOT-A-UUID");
  CHECK(ss_repo_update_embeddings(pg, items, 5, &updated, &err) == -1);
  CHECK(strstr(err.message, "item 2: collection_id must be a UUID") != NULL);
  items[4] = T(col_a);
  items[12] = ss_int(ids[1]), items[13] = T(col_a); /* item 5 names item 2's chunk */
  CHECK(ss_repo_update_embeddings(pg, items, 5, &updated, &err) == -1);
  CHECK(strstr(err.message, "item 5: chunk") != NULL && strstr(err.message, "appears twice") != NULL);
  items[12] = ss_double((double)ids[4]), items[13] = T(col_b); /* an integral double is an id */
  CHECK(scalar("select count(*) from chunks where embedding_vector_id is not null") == 0);

  /* a failure in the second partition's UPDATE undoes the first's too */
  forbidden = atoi(key_a) < atoi(key_b) ? 14 : 2;
  CHECK(exec_ok("ALTER TABLE chunks ADD CONSTRAINT test_no_forbidden CHECK (embedding_vector_id <> 'forbidden')"));
  items[forbidden] = T("forbidden");
  CHECK(ss_repo_update_embeddings(pg, items, 5, &updated, &err) == -1);
  CHECK(err.kind == SS_ERR_POSTGRES && strcmp(err.code, "23514") == 0 && updated == 0);
  CHECK(scalar("select count(*) from chunks where embedding_vector_id is not null") == 0);
  CHECK(ss_pg_transaction_status(pg) == PQTRANS_IDLE);
  CHECK(exec_ok("ALTER TABLE chunks DROP CONSTRAINT test_no_forbidden"));
  items[forbidden] = T("even");

  CHECK(ss_repo_update_embeddings(pg, items, 5, &updated, &err) == 0 && updated == 5);
  CHECK(scalar("select count(*) from chunks where embedding_vector_id = 'odd'") == 2);
  /* a chunk named with another collection changes nothing */
  items[1] = T(col_b);
  CHECK(ss_repo_update_embeddings(pg, items, 1, &updated, &err) == 0 && updated == 0);
  CHECK(ss_repo_update_embeddings(pg, items, 0, &updated, &err) == 0 && updated == 0);
  /* inside an open transaction: a savepoint, rolled back alone */
  CHECK(exec_ok("BEGIN"));
  items[1] = T(col_a), items[2] = T("in tx");
  CHECK(ss_repo_update_embeddings(pg, items, 1, &updated, &err) == 0 && updated == 1);
  CHECK(ss_pg_transaction_status(pg) == PQTRANS_INTRANS);
  CHECK(exec_ok("ROLLBACK"));
  CHECK(scalar("select count(*) from chunks where embedding_vector_id = 'in tx'") == 0);
}

static void test_login(void) {
  ss_value ada_name = T("ada"), nobody = T("nobody"), right = T("s3cret"), wrong = T("s3cret!"),
           cut = ss_text("s3cret\0x", 8);
  ss_repo_login l;
  ss_error err;
  CHECK(ss_repo_login_check(&l, &ada_name, &cut, &err) == -1);
  CHECK(err.kind == SS_ERR_INPUT && strstr(err.message, "password"));
  CHECK(ss_repo_login_check(&l, &ada_name, &right, &err) == 0);
  CHECK(ss_repo_login_lookup(&l, pg, &err) == 0 && strncmp(l.hash, "$y$", 3) == 0);
  CHECK(ss_repo_login_verify(&l, &right, &err) == 1);
  CHECK(ss_repo_login_verify(&l, &wrong, &err) == 0);
  CHECK(ss_repo_login_check(&l, &nobody, &right, &err) == 0);
  CHECK(ss_repo_login_lookup(&l, pg, &err) == 0 && l.hash[0] == '\0');
  CHECK(ss_repo_login_verify(&l, &right, &err) == 0);
}

int main(void) {
  int tries = 0, ready = scratch_db_create("c_test_repo", 100);
  if (ready == 0) {
    printf("SEMSTORE_TEST_DATABASE_URL or SEMSTORE_TEST_PG_SUPERUSER_URL is not set: skipped\n0 passed, 0 failed\n");
    return 0;
  }
  CHECK(ready == 1);
  if (ready != 1 || !(pg = scratch_connect())) DONE();
  CHECK(ss_pg_partitions(pg) == 0);
  ada = new_user("ada", "s3cret");
  bob = new_user("bob", "other");
  CHECK(ada > 0 && bob > 0);
  CHECK(new_collection(ada, "a", col_a) == 0);
  /* b in another partition than a (two random ids share one 1 time in 100) */
  do {
    char name[16];
    snprintf(name, sizeof name, "b%d", ++tries);
    CHECK(new_collection(ada, name, col_b) == 0);
  } while (ss_partition_key(col_a, 36, 100) == ss_partition_key(col_b, 36, 100) && tries < 10);
  test_checks();
  test_shapes_and_refusals();
  test_retry();
  test_collection_update();
  test_update_embeddings();
  test_login();
  ss_pg_close(pg);
  scratch_db_drop();
  DONE();
}
