/* The repository engine: runs the rows of ss_statements (repo_statements.h)
 * over C values on one PostgreSQL connection, and the methods that are more
 * than one statement (collections:update's statement builder, the
 * embedding update, the password check). Every decision is made here:
 * value checks, new ids, partition keys, the check before a statement
 * (owner, status move), retries when a row changed meanwhile, and the
 * refusals (not_found, access_denied, invalid_transition). The caller (the
 * binding, or a C test) only reads its values in and turns the answer into
 * its own values: the PGresult is handed over for the binding's one row
 * decoder.
 *
 * A call comes in two steps, so that a bad value (or the slow password
 * hashing) never holds a connection: ss_repo_check with no connection, then
 * ss_repo_run on a borrowed one. */
#ifndef SEMSTORE_REPO_H
#define SEMSTORE_REPO_H

#include <libpq-fe.h>

#include "error.h"
#include "password.h"
#include "pg.h"
#include "repo_statements.h"
#include "value.h"

/* One call of a statement: its checked values and what the engine fills
 * in. A plain value (no heap), on the caller's stack; it points into the
 * caller's values, which must outlive it (see value.h). */
typedef struct {
  const ss_statement *st;
  int n;                                /* the statement's parameters */
  /* set after ss_repo_check to have the rows of SS_RET_ROWS statements
   * come as a stream (see ss_repo_result); an SS_RET_PAGE page comes
   * whole, in one pipeline with its count */
  int stream;
  ss_value values[SS_MAX_PARAMS];       /* in statement order */
  char new_uuid[37];                    /* SS_V_NEW_UUID */
  char hash[SS_PASSWORD_HASH_SIZE];     /* SS_V_PASSWORD: what is bound instead of the password */
  char current[64];                     /* SS_V_CURRENT: the status the pre-check read */
} ss_repo_call;

/* What a statement answered, shaped by st->returns. `rows` is owned here
 * until ss_repo_result_clear (the binding decodes it first); it is NULL
 * for SS_RET_AFFECTED and SS_RET_DONE, which need only the count. When
 * `stream` is set, rows is only the first result of a single-row-mode
 * stream still arriving on that connection (decoding overlaps the
 * transfer): the rest come from ss_pg_stream_next until a result of
 * another status, and `affected` is not known here. */
typedef struct {
  PGresult *rows;
  ss_pg *stream;
  long long affected; /* rows the statement returned or changed */
  long long total;    /* SS_RET_PAGE: what count_sql counted */
  int created;        /* SS_RET_CREATED: the row was inserted, not found */
} ss_repo_result;

/* The number of parameters of st (its params up to the first NULL name). */
int ss_repo_params(const ss_statement *st);

/* Checks v against p: NULL only when not required; text UTF-8 without zero
 * bytes; UUIDs canonical lowercase; integers within the kind's range (an
 * integral double is taken, and *v becomes the integer); enum values among
 * the choices; JSON given as JSON; a password not empty. 0, or -1 with an
 * input error that begins with p->name. */
int ss_repo_check_value(const ss_param_spec *p, ss_value *v, ss_error *err);

/* Step 1, no connection needed: checks values[0 .. n-1] (one per parameter
 * of st, in order; those the engine fills in are ignored) and fills `call`:
 * a fresh version 4 UUID for SS_V_NEW_UUID, the libxcrypt hash for a
 * password. 0, or -1 with err set (an input error naming the parameter). */
int ss_repo_check(ss_repo_call *call, const ss_statement *st, const ss_value *values, ss_error *err);

/* Step 2, on pg: computes partition keys (the partition count asked of the
 * server once per connection), runs the pre-check and the statement (again,
 * up to 3 times more, when the checked row changed before the statement
 * ran, or create's conflicting row was not yet visible; then a postgres
 * error 40001); an SS_RET_PAGE statement and its count_sql go in one
 * pipeline (one round trip; one implicit transaction when none is open). 0 with *out filled, or -1
 * with err set: the server's error, or SS_ERR_NOT_FOUND, SS_ERR_ACCESS_DENIED,
 * SS_ERR_INVALID_TRANSITION. Nothing is left to clear on failure. */
int ss_repo_run(ss_repo_call *call, ss_pg *pg, ss_repo_result *out, ss_error *err);

/* Frees rows; a stream not read to its end is cancelled and drained, so
 * the connection is ready for the next statement. */
void ss_repo_result_clear(ss_repo_result *r);

/* The number of chunk partitions (chunk_partition_count()), asked of the
 * server once per connection and kept with it; -1 with err set. */
int ss_repo_partitions(ss_pg *pg, ss_error *err);

/* db.collections:update(id, fields): a statement setting the columns
 * named in names[0 .. n-1] (each one of ss_collection_updatable, once),
 * built into u. Its parameters are the id and then those columns in the
 * order of ss_collection_updatable (not of names): fill the values for
 * ss_repo_check by u->st.params[k].name. 0, or -1 with an input error (an
 * unknown name, in err->column too; a name twice; no name). */
typedef struct {
  ss_statement st;
  char sql[1024];
} ss_repo_update;
int ss_repo_collection_update(ss_repo_update *u, const char *const *names, int n, ss_error *err);

/* db.chunks:update_chunk_embeddings: items[3i], items[3i + 1], items[3i + 2]
 * are item i's chunk_id, collection_id and vector_id.
 * ss_repo_embeddings_check checks them (an input error begins "item N: ",
 * counted from 1; a chunk named twice is refused, since which vector id
 * won would be left to chance) and may rewrite integral doubles as
 * integers. ss_repo_update_embeddings checks them too, then groups them by
 * partition and sends one UPDATE ... FROM unnest(...) per partition in one
 * pipeline (one round trip), as one transaction (the pipeline's implicit
 * one, or a savepoint inside an open transaction): all or nothing. *updated
 * is the number of chunks changed (an item whose chunk is not in that
 * collection changes none). */
int ss_repo_embeddings_check(ss_value *items, long n, ss_error *err);
int ss_repo_update_embeddings(ss_pg *pg, ss_value *items, long n, long long *updated, ss_error *err);

/* db.users:verify_password in three steps, so that the slow comparison
 * runs after the connection went back: check (no connection: a password
 * with a zero byte would be cut short by crypt), lookup (the hash of an
 * active user of that name, "" when there is none), verify (1 when the
 * password matches; as slow for no user as for one, and constant-time). */
typedef struct {
  ss_repo_call lookup;
  char hash[SS_PASSWORD_HASH_SIZE];
} ss_repo_login;
int ss_repo_login_check(ss_repo_login *l, const ss_value *username, const ss_value *password, ss_error *err);
int ss_repo_login_lookup(ss_repo_login *l, ss_pg *pg, ss_error *err);
/* 1 or 0; -1 with err set when memory runs out. */
int ss_repo_login_verify(const ss_repo_login *l, const ss_value *password, ss_error *err);

#endif
