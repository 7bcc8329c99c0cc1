/* PostgreSQL connections over libpq: connect with session settings, run
 * statements through a per-connection cache of prepared statements, map
 * failures to ss_error, and serve as the pool's ops. */
#ifndef SEMSTORE_PG_H
#define SEMSTORE_PG_H

#include <libpq-fe.h>

#include "error.h"
#include "pool.h"

typedef struct ss_pg ss_pg;

/* What every connection of a pool is opened with. */
typedef struct {
  char *conninfo;            /* URL or key=value string; "" = libpq defaults (PG* variables) */
  char application_name[64];
  int connect_timeout_s;
  int statement_timeout_ms;  /* 0 = none */
  int lock_timeout_ms;
  int idle_in_transaction_timeout_ms;
  int statement_cache_size;  /* prepared statements kept per connection */
  int null_as_nil;           /* how the binding hands NULL columns over: absent instead of a null value */
  int reset_always;          /* reset the session after every borrow that ran a statement, not only
                                when one looked like it changed the session */
  double recover_grace;      /* the pool's first connection settles the parts that parallel bulks which
                                died left prepared, older than this (ss_bulk_recover); < 0: it does not */
  int recovered;             /* that ran (or was not to run) */
} ss_pg_settings;

/* The defaults of every connection setting, in one place (the pool's own
 * are ss_pool_config_defaults): application_name "semstore", 10 s to
 * connect, statement_timeout 30 s, lock_timeout 10 s,
 * idle_in_transaction_session_timeout 60 s, 256 prepared statements, NULL
 * columns as null, dead bulks' parts settled on the first connection after
 * 60 s. conninfo is left NULL. */
void ss_pg_settings_defaults(ss_pg_settings *s);
/* The defaults with a copy of conninfo; free with ss_pg_settings_free.
 * NULL on out of memory. */
ss_pg_settings *ss_pg_settings_new(const char *conninfo);
void ss_pg_settings_free(ss_pg_settings *s);

/* Opens a connection. The settings' passwords never reach err. */
ss_pg *ss_pg_connect(const ss_pg_settings *s, ss_error *err);
void ss_pg_close(ss_pg *pg);

/* Runs one statement with bound parameters (types 0 let the server infer).
 * Its first use runs unnamed (one round trip); from its second use on it is
 * prepared once and the prepared statement reused.
 * Results come in text format. Returns a result the caller PQclear()s, or
 * NULL with err set. */
PGresult *ss_pg_query(ss_pg *pg, const char *sql, int nparams, const Oid *types,
                      const char *const *values, const int *lengths, const int *formats,
                      ss_error *err);

/* The same, streamed: rows arrive one PGRES_SINGLE_TUPLE result at a time
 * while the server is still sending, so decoding overlaps the transfer.
 * Returns the first result (a row, or the final PGRES_TUPLES_OK or
 * PGRES_COMMAND_OK), or NULL with err set. */
PGresult *ss_pg_stream_start(ss_pg *pg, const char *sql, int nparams, const Oid *types,
                             const char *const *values, const int *lengths, const int *formats,
                             ss_error *err);
/* The result after a PGRES_SINGLE_TUPLE one; the stream ends with a
 * result of another status. On a failure midway (for example division by
 * zero at row 5,000) returns NULL with err set. Either way the rest is read,
 * so the connection is ready for the next statement. */
PGresult *ss_pg_stream_next(ss_pg *pg, ss_error *err);

/* Runs one or more statements without parameters (simple protocol);
 * returns the last statement's result, or NULL with err set (the first
 * failure). A COPY among them is ended and refused (SS_ERR_INPUT). */
PGresult *ss_pg_exec(ss_pg *pg, const char *sql, ss_error *err);

/* Ends a stream its reader stopped reading (rows not taken to the end):
 * asks the server to cancel and reads what is left. 0 when the connection
 * is idle again, -1 when it had to be given up. */
int ss_pg_stream_abandon(ss_pg *pg);

/* Fills err from a failed result (or from the connection when res is NULL)
 * and marks the connection broken on a fatal failure. Returns -1. */
int ss_pg_fail(ss_pg *pg, const PGresult *res, ss_error *err);

/* How long each following call on this connection may wait for the
 * server, in seconds (0: no limit but the server's statement_timeout).
 * Past it a cancel request goes to the server and the call fails with
 * SS_ERR_TIMEOUT (code 57014); with no answer 5 s later the connection is
 * given up. The pool sets it back to 0 when the connection is returned. */
void ss_pg_set_timeout(ss_pg *pg, double seconds);
double ss_pg_timeout(const ss_pg *pg);
/* Bounds the call under way (a COPY being fed, say) to `seconds` from now,
 * unless its own deadline comes sooner. */
void ss_pg_limit_call(ss_pg *pg, double seconds);
/* Asks the server to cancel what this connection runs (PQcancel: a
 * connection of its own; safe from another thread). 0 if the request was
 * delivered. */
int ss_pg_cancel(ss_pg *pg);
/* Interrupts the statements under way in this process (Ctrl-C in the
 * REPL): each connection waiting on the server sends it a cancel request
 * within a quarter second, and its call fails with the server's 57014. Safe
 * in a signal handler; a call that starts later is not affected. */
void ss_pg_interrupt(void);

/* A transaction on one connection. Nesting follows the server's own
 * status: BEGIN (with `mode`, such as "ISOLATION LEVEL SERIALIZABLE READ
 * ONLY") when the connection is idle, a savepoint when a transaction is
 * open (then `mode` is an input error), and a 25P02 error when it failed.
 * end commits (or releases the savepoint); if a statement failed inside,
 * or the COMMIT answers ROLLBACK, it rolls back and returns -1 with err
 * set. end with commit = 0 rolls back and returns -1, err untouched. */
typedef struct {
  unsigned savepoint; /* 0: the outermost transaction */
  int open;
} ss_pg_tx;
int ss_pg_tx_begin(ss_pg *pg, ss_pg_tx *tx, const char *mode, ss_error *err);
int ss_pg_tx_end(ss_pg *pg, ss_pg_tx *tx, int commit, ss_error *err);

/* COPY ... FROM STDIN. begin runs the COPY statement (no parameters);
 * send streams bytes of the data (blocking until libpq took them); done
 * ends the data, or with `abort_reason` makes the server fail the COPY on
 * purpose, without waiting for the server; result then waits for the
 * outcome and returns the rows copied. Between done and result the caller
 * may do other work while the server is still busy with the rows. Every
 * call returns -1 with err set on failure; once begin succeeded, done and
 * result must still be called to leave COPY mode. */
int ss_pg_copy_begin(ss_pg *pg, const char *sql, ss_error *err);
int ss_pg_copy_send(ss_pg *pg, const char *data, size_t len, ss_error *err);
int ss_pg_copy_done(ss_pg *pg, const char *abort_reason, ss_error *err);
long long ss_pg_copy_result(ss_pg *pg, ss_error *err);

/* The same COPY fed without blocking, so the caller can make more data
 * (or feed other connections) while the server takes it in. After
 * ss_pg_copy_begin, feed hands libpq data from `data`, a piece at a time
 * and only as fast as the socket takes it: *taken is how much went; 0
 * when all of it was taken and sent, 1 when the socket is full (wait for
 * it to be writable and feed the rest). end then sends the end of the
 * data: 0 once sent, 1 when some is still to go (wait writable, then
 * call flushed until it returns 0). busy reads what the server sent and
 * says whether the COPY's outcome is still to come (1) or can be read
 * with ss_pg_copy_result without waiting (0). Every call -1 with err set
 * on failure, after which ss_pg_copy_result reports the server's error. */
int ss_pg_copy_feed(ss_pg *pg, const char *data, size_t len, size_t *taken, ss_error *err);
int ss_pg_copy_end(ss_pg *pg, ss_error *err);
int ss_pg_copy_flushed(ss_pg *pg, ss_error *err);
int ss_pg_busy(ss_pg *pg, ss_error *err);
/* Waits until one of n connections (SS_PG_WAIT_MAX at most) is writable
 * (want_write[i]) or readable, each wait bounded by its own call's
 * deadline and cancelled as a single call's is, and the whole wait by
 * `most` seconds when > 0 (then 0 may mean nothing happened yet). 0, or -1
 * with err set. */
#define SS_PG_WAIT_MAX 64
int ss_pg_wait_any(ss_pg *const *pgs, const int *want_write, int n, double most, ss_error *err);

/* COPY ... TO STDOUT. begin runs the statement; next hands out the data
 * piece by piece: its length with *data set (free it with PQfreemem), 0
 * at the end (the connection is idle again), or -1 with err set. */
int ss_pg_copy_out_begin(ss_pg *pg, const char *sql, ss_error *err);
long ss_pg_copy_out_next(ss_pg *pg, char **data, ss_error *err);

/* A notification (LISTEN/NOTIFY). payload is malloc'ed: the caller frees it. */
typedef struct {
  char channel[64];
  char *payload;
  int pid;
} ss_pg_notify;
/* Waits up to timeout seconds (< 0: without end) for a notification:
 * 1 with *out filled, 0 on timeout, -1 with err set. */
int ss_pg_notification(ss_pg *pg, double timeout, ss_pg_notify *out, ss_error *err);

/* Types the decoder does not know by OID (enums, extensions' types, arrays
 * of those) are asked of the catalog, once per connection.
 * type_is_array: 1 or 0, or -1 when the connection has not asked yet.
 * learn_types asks about those of the n OIDs it has not (the connection
 * must be idle); describe_types learns the result columns of sql without
 * running it (two round trips), for a reader that streams its rows. 0, or
 * -1 with err set. */
int ss_pg_type_is_array(const ss_pg *pg, Oid oid);
/* An array type's element delimiter (',', or ';' for box), 0 when oid is
 * no array or was not asked about. */
char ss_pg_array_delimiter(const ss_pg *pg, Oid oid);
int ss_pg_learn_types(ss_pg *pg, const Oid *oids, int n, ss_error *err);
int ss_pg_describe_types(ss_pg *pg, const char *sql, int n, const Oid *types, ss_error *err);

PGTransactionStatusType ss_pg_transaction_status(const ss_pg *pg);
int ss_pg_backend_pid(const ss_pg *pg);
/* Whether the connection was given up because the server did not answer
 * a cancel request in time (it may be stopped or cut off), and giving a
 * connection up on purpose: the pool closes it. */
int ss_pg_unresponsive(const ss_pg *pg);
void ss_pg_give_up(ss_pg *pg);
int ss_pg_is_broken(const ss_pg *pg);
/* The libpq connection, for libpq's own helpers (PQescapeIdentifier). */
PGconn *ss_pg_conn(ss_pg *pg);
/* The number of chunk partitions, asked of the server once per connection
 * by the repositories (repo.c) and kept here for the connection's life; 0
 * until set. The schema fixes it when it is migrated. */
int ss_pg_partitions(const ss_pg *pg);
void ss_pg_set_partitions(ss_pg *pg, int n);

/* ctx is an ss_pg_settings*, owned by the pool. */
extern const ss_pool_ops ss_pg_pool_ops;

/* ---- pipeline mode ----
 * Many statements sent before any result is read (libpq's pipeline mode):
 * one round trip for all of them. Statements are queued with their
 * parameters copied, so nothing is sent until ss_pg_pipeline_run. A sync
 * point follows the last statement, and any statement after which
 * ss_pg_pipeline_sync was called. Between two sync points the server runs
 * the statements in one implicit transaction when none is open (a failure
 * rolls back the group's earlier statements, and the later ones are
 * skipped: PGRES_PIPELINE_ABORTED); groups before a failing one stay
 * committed, and groups after it run. Inside an open transaction a failure
 * aborts that transaction, as any failed statement does. */
typedef struct ss_pg_pipeline ss_pg_pipeline;
/* An empty pipeline; NULL on out of memory. Free with ss_pg_pipeline_free. */
ss_pg_pipeline *ss_pg_pipeline_new(void);
void ss_pg_pipeline_free(ss_pg_pipeline *p);
/* Queues one statement, its SQL text and parameters (as ss_pg_query takes
 * them) copied. A COPY is refused (SS_ERR_INPUT): its data would stop the
 * pipeline. 0, or -1 with err set and nothing queued. */
int ss_pg_pipeline_add(ss_pg_pipeline *p, const char *sql, int nparams, const Oid *types,
                       const char *const *values, const int *lengths, const int *formats, ss_error *err);
/* A sync point after the statements queued so far (none: nothing). */
void ss_pg_pipeline_sync(ss_pg_pipeline *p);
size_t ss_pg_pipeline_count(const ss_pg_pipeline *p);
/* Sends every statement, then reads every result, each wait bounded by
 * the call's deadline (ss_pg_set_timeout) and ss_pg_interrupt (past it
 * every statement still running is cancelled until all results are in).
 * Statements go unnamed, never as the connection's prepared statements
 * (a repeat of the statement before it in its group binds that one's
 * parse), and none is ever sent twice. A sync point goes first (libpq 15's
 * single-row flag left by a stream is cleared by it). Sending is non-blocking and reads while it waits, so a pipeline of any
 * size cannot deadlock. Statements that change the session mark the
 * connection for a reset as ss_pg_query does. 0 when every statement
 * succeeded; -1 with err set to the first failure (its message begins
 * "statement N: ", and ss_pg_pipeline_failed gives N - 1), or with a
 * connection error when the connection broke (it is then given up). Either
 * way the results that came are kept in p until the next run or free. */
int ss_pg_pipeline_run(ss_pg *pg, ss_pg_pipeline *p, ss_error *err);
/* The failing statement of the last run (from 0), or -1. */
long ss_pg_pipeline_failed(const ss_pg_pipeline *p);
/* Statement i's result after a run (owned by p; the slot may be set to
 * NULL by a caller that takes the result over), or NULL when there is none. */
PGresult **ss_pg_pipeline_slot(ss_pg_pipeline *p, size_t i);
/* Frees the results of the last run. */
void ss_pg_pipeline_clear_results(ss_pg_pipeline *p);

#endif
