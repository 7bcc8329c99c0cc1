/* Bulk chunk rows (db.chunks:create_chunks_bulk), in plain C: rows come in
 * one at a time as C values, are checked, routed by their collection's
 * partition key, and encoded into one binary COPY stream per partition
 * (pg_copy.c). Encoded rows wait in their partition's buffer; when they add
 * up to more than the byte budget, the largest buffer is copied into its
 * leaf table chunks_pNN, so memory stays bounded however many rows come,
 * and a bulk that fits the budget sends nothing before every row was
 * checked.
 *
 * The COPYs are fed without blocking: between rows, the bulk hands the
 * server what its socket takes and goes back to encoding, so the client
 * never waits while it could encode. It waits only when the budget is
 * full and every connection is still busy, or at the end.
 *
 * On one connection everything runs in one transaction (a savepoint on a
 * connection already in one), begun at the first COPY: all rows or none.
 * With more connections (opts.more), each partition's COPY goes to
 * whichever connection is free, each connection in a transaction of its
 * own, and the end is a two-phase commit: every connection runs PREPARE
 * TRANSACTION 'semstore:bulk:<uuid>:<k>', then one decision row in
 * semstore_bulk_decisions records the commit (the coordinator's log), then
 * every part is committed with COMMIT PREPARED. A failure before the
 * decision rolls every part back; after it, every part is committed, by
 * this process or, when it died, by ss_bulk_recover.
 *
 * Any failure (a bad row, the server's error, a lost connection) ends the
 * bulk: what was copied is rolled back, and later calls fail. When the
 * caller itself stops midway (a Lua iterator raised), ss_bulk_abandon does
 * the same. Either way the connections are usable (or, when lost, broken)
 * afterwards; the bulk never gives them back: the caller does, after. */
#ifndef SEMSTORE_CHUNKS_BULK_H
#define SEMSTORE_CHUNKS_BULK_H

#include <stddef.h>

#include "error.h"
#include "pg.h"
#include "repo_statements.h"
#include "value.h"

/* Encoded rows kept in memory before the largest partition is copied. */
#define SS_BULK_BUDGET ((size_t)8 << 20)
/* Ids taken from the chunks' sequence in one round trip when the number of
 * rows is not known; ten times as many at most when it is. */
#define SS_BULK_ID_BLOCK 10000

/* Connections one bulk copies on at most. */
#define SS_BULK_MAX_CONNECTIONS 16
/* How long ss_bulk_recover leaves a bulk's prepared parts alone by
 * default, in seconds: their coordinator may still be committing them. */
#define SS_BULK_RECOVER_GRACE 60.0

typedef struct {
  size_t budget;      /* 0: SS_BULK_BUDGET */
  int return_ids;     /* rows get ids from the sequence here, sent in the COPY and handed back */
  long expected_rows; /* how many rows will come, when known (0: not known); sizes the id blocks */
  /* connections to copy on besides the first (parallel): borrowed by the
   * caller for the bulk's whole life, like the first */
  ss_pg *const *more;
  int nmore;
  /* called at each step of the two-phase commit ("prepare", "decide",
   * "commit", "forget") with the connection's number (0 for decide and
   * forget), before the step runs; may be NULL. May not return (a raise):
   * ss_bulk_abandon then finishes what the decision says. */
  void (*on_step)(void *ud, const char *step, int k);
  void *step_ud;
} ss_bulk_options;

typedef struct ss_bulk ss_bulk;

/* A bulk on pg (and opts->more), which must stay borrowed until
 * ss_bulk_free. Asks the partition count (once per connection). With more
 * connections, copies on all of them only when it can stay atomic: pg
 * not in a transaction, the server's max_prepared_transactions at least
 * the number of connections, and semstore_bulk_decisions migrated;
 * otherwise on pg alone, and ss_bulk_connections says why. NULL with err
 * set. */
ss_bulk *ss_bulk_new(ss_pg *pg, const ss_bulk_options *opts, ss_error *err);

/* The connections the bulk copies on (the first of them pg), and why
 * fewer than were given (NULL when all are used). */
int ss_bulk_connections(const ss_bulk *b, const char **why_fewer);

/* Takes the next row: fields[SS_CHUNK_...], one per entry of ss_chunk_fields
 * (SS_VAL_NULL for a field not given; the values may be rewritten into
 * their checked form). Its bytes are copied at once. With return_ids, *id
 * is the row's id. 0, or -1 with err set: a bad row is an input error
 * "row N: field ..." (see ss_bulk_failed_row), and ends the bulk like any
 * failure. */
int ss_bulk_row(ss_bulk *b, ss_value *fields, long long *id, ss_error *err);

/* Checks the next row as ss_bulk_row does, without taking it (a caller
 * that found something wrong with a row itself reports the row's own
 * faults first). A bad row ends the bulk. */
int ss_bulk_check(ss_bulk *b, ss_value *fields, ss_error *err);

/* The caller found the next row bad in a way only it can see (not a
 * table, a field that is no chunk field, JSON it cannot encode): fails the
 * bulk with "row N: field why" (field may be NULL) in err, as ss_bulk_row
 * does. Returns -1. */
int ss_bulk_reject(ss_bulk *b, const char *field, const char *why, ss_error *err);

/* Copies what is buffered and commits: *rows is the number of rows taken.
 * 0, or -1 with err set (then everything was rolled back). */
int ss_bulk_finish(ss_bulk *b, long *rows, ss_error *err);

/* After a failure, or when the caller stops midway: waits for a COPY the
 * server may still be taking in and rolls back. Does nothing the second
 * time, and nothing after ss_bulk_finish succeeded. */
void ss_bulk_abandon(ss_bulk *b);

/* The row (counted from 1) whose fault failed the bulk, and its field
 * (NULL when the row itself was wrong); 0 when the failure was not a row's
 * (the server's error, a lost connection, memory). */
long ss_bulk_failed_row(const ss_bulk *b, const char **field);

/* Settles what bulks that died midway left on pg's database: their
 * prepared parts older than grace seconds are committed when their bulk
 * has a commit decision, and rolled back otherwise (a rollback decision is
 * written first, so a coordinator still alive cannot commit after);
 * commit decisions older than grace with no part left are deleted, and
 * rollback decisions once a day old (a coordinator taken for dead must
 * still find its bulk's). Parts
 * another role prepared are left alone (only it, or a superuser, may
 * finish them). Counts go to *committed, *rolled_back and *forgotten (may
 * be NULL). 0, or -1 with err set to the first failure: the parts after a
 * failed one are still settled. */
int ss_bulk_recover(ss_pg *pg, double grace, long *committed, long *rolled_back, long *forgotten, ss_error *err);

/* Frees the buffers. Touches no connection: abandon first. NULL is fine. */
void ss_bulk_free(ss_bulk *b);

#endif
