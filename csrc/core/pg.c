#include "pg.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <time.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "buf.h"
#include "chunks_bulk.h"
#include "redact.h"

/* A prepared statement known to exist on the connection. Keyed by the SQL
 * text plus the parameter types, since both were fixed when it was prepared. */
typedef struct stmt {
  char *key;
  size_t keylen;
  uint64_t hash;
  char name[24];
  struct stmt *chain;         /* hash bucket */
  struct stmt *newer, *older; /* use order, for eviction */
} stmt;

#define BUCKETS 512
/* Statement keys seen once: a statement is prepared on its second use, so
 * a one-off costs one round trip (JDBC's prepareThreshold = 2). */
#define SEEN 1024
/* Types the decoder does not know, as the catalog describes them: a cache
 * per connection (OIDs are per database), overwritten on a collision. */
#define TYPES 256
/* How long a wait goes on after a cancel request before the connection is
 * given up, and how long the pool's own round trips (ping, reset) may take. */
#define CANCEL_GRACE 5.0
/* A wait on the server looks for an interrupt at least this often (ms),
 * since the signal may land on another thread and not cut its poll short. */
#define INTERRUPT_POLL_MS 250
/* In a pipeline past its deadline, how often (seconds) another cancel
 * request goes while results are still to come: a later group's statement
 * runs after the first cancel, and a request that reaches the server
 * between two statements is dropped by it. */
#define RECANCEL_EVERY 0.2
/* A group that starts while CANCELS_IN_FLIGHT cancel requests are still on
 * their way gets its own as soon as one of them arrived: looked at this
 * often (ms). */
#define RECANCEL_POLL_MS 2

/* Interrupts asked for (ss_pg_interrupt), counted by a signal handler. */
static volatile sig_atomic_t interrupts;

void ss_pg_interrupt(void) { interrupts = interrupts + 1; }

struct ss_pg {
  PGconn *conn;
  int broken;
  /* the session may hold state a borrower left (settings, role, listeners,
   * advisory locks, temporary tables, cursors): reset before reuse */
  int session_dirty;
  int user_prepared;     /* a borrower's PREPARE (or a DO block) may have named statements */
  int ran_statement;     /* since the last reset */
  int stream_in_tx;      /* the statement being read started inside a transaction */
  int reset_always;      /* settings: reset after every borrow that ran a statement */
  int timed_out;         /* the current call passed its deadline and was cancelled */
  int unresponsive;      /* given up: the server did not answer a cancel in time */
  int interrupted;       /* the current call was cancelled by ss_pg_interrupt */
  int pipelining;        /* a pipeline is under way: after a timeout, every statement it still runs is cancelled */
  double cancelled_at;   /* then: when the last cancel request went (monotonic) */
  int recancel;          /* then: a group started while CANCELS_IN_FLIGHT requests were on their way: its own goes once one arrived */
  long interrupts_seen;  /* the interrupt count when the call started */
  double call_timeout;   /* seconds a call may wait for the server, 0 = no limit */
  double deadline;       /* of the call under way (monotonic), 0 = none */
  double limit;          /* the timeout that set it, for messages */
  double service_timeout; /* for the pool's own round trips */
  unsigned savepoints;   /* names nested savepoints */
  struct ss_cancel_req *cancel; /* the last cancel request sent, maybe still on its way */
  int partitions;        /* the repositories' chunk partition count, 0 = not asked yet */
  int cache_max, cache_count;
  unsigned long next_id;
  stmt *buckets[BUCKETS];
  stmt *newest, *oldest;
  uint64_t seen[SEEN];
  struct {
    Oid oid;
    signed char array; /* 1 an array type, 0 not; the slot is empty while oid is 0 */
    char delim;        /* an array's: its element type's typdelim */
  } types[TYPES];
};

void ss_pg_settings_defaults(ss_pg_settings *s) {
  memset(s, 0, sizeof *s);
  ss_strlcpy(s->application_name, "semstore", sizeof s->application_name);
  s->connect_timeout_s = 10;
  s->statement_timeout_ms = 30000;
  s->lock_timeout_ms = 10000;
  s->idle_in_transaction_timeout_ms = 60000;
  s->statement_cache_size = 256;
  s->recover_grace = SS_BULK_RECOVER_GRACE;
}

ss_pg_settings *ss_pg_settings_new(const char *conninfo) {
  ss_pg_settings *s = malloc(sizeof *s);
  size_t n = strlen(conninfo) + 1;
  if (!s) return NULL;
  ss_pg_settings_defaults(s);
  if (!(s->conninfo = malloc(n))) {
    free(s);
    return NULL;
  }
  memcpy(s->conninfo, conninfo, n);
  return s;
}

void ss_pg_settings_free(ss_pg_settings *s) {
  if (!s) return;
  /* the conninfo holds the password: do not leave it in freed memory */
  memset(s->conninfo, 0, strlen(s->conninfo));
  free(s->conninfo);
  free(s);
}

static void set_connection_error_for(ss_pg *pg, const char *conninfo, ss_error *err, const char *what) {
  char msg[sizeof err->message];
  const char *raw = pg && pg->conn ? PQerrorMessage(pg->conn) : "";
  size_t n;
  /* libpq may quote a piece of the conninfo (a bad percent-encoded
   * password) with nothing around it that says it is one */
  ss_redact_conninfo_secrets(raw, conninfo, msg, sizeof msg);
  n = strlen(msg);
  while (n && (msg[n - 1] == '\n' || msg[n - 1] == ' ')) msg[--n] = '\0';
  ss_error_set(err, SS_ERR_CONNECTION, "%s%s%s", what, *msg ? ": " : "", msg);
  if (pg) pg->broken = 1;
}

static void set_connection_error(ss_pg *pg, ss_error *err, const char *what) {
  set_connection_error_for(pg, NULL, err, what);
}

/* NOTICEs are dropped (libpq would print them to stderr). A FATAL one
 * arrives when the server ends an idle session (pg_terminate_backend,
 * shutdown): it marks the connection broken before the socket's EOF is read. */
static void on_notice(void *arg, const PGresult *res) {
  const char *sev = PQresultErrorField(res, PG_DIAG_SEVERITY_NONLOCALIZED);
  if (sev && (strcmp(sev, "FATAL") == 0 || strcmp(sev, "PANIC") == 0)) ((ss_pg *)arg)->broken = 1;
}

ss_pg *ss_pg_connect(const ss_pg_settings *s, ss_error *err) {
  char timeout[16], options[256];
  /* Ours first and the user's conninfo last, so what the user wrote wins. */
  /* GSS encryption is off unless the conninfo asks for it: probing for
   * Kerberos credentials on every connect costs time, and libgssapi's
   * first use from several threads at once leaks. */
  /* TCP keepalives notice a server that vanished (a cut network) within
   * about a minute instead of the kernel's two hours. */
  const char *keys[] = {"application_name", "connect_timeout", "client_encoding", "gssencmode", "keepalives_idle",
                        "keepalives_interval", "keepalives_count", "options", "dbname", NULL};
  const char *vals[] = {s->application_name, timeout, "UTF8", "disable", "30", "10", "3", options, s->conninfo, NULL};
  ss_pg *pg = calloc(1, sizeof *pg);
  if (!pg) {
    ss_error_set(err, SS_ERR_MEMORY, "out of memory connecting to PostgreSQL");
    return NULL;
  }
  snprintf(timeout, sizeof timeout, "%d", s->connect_timeout_s);
  /* DateStyle ISO: the decoder turns timestamps into ISO 8601 by text. */
  snprintf(options, sizeof options,
           "-c DateStyle=ISO,MDY -c bytea_output=hex -c statement_timeout=%d -c lock_timeout=%d "
           "-c idle_in_transaction_session_timeout=%d",
           s->statement_timeout_ms, s->lock_timeout_ms, s->idle_in_transaction_timeout_ms);
  if (!*s->conninfo) vals[8] = NULL; /* libpq's PG* variables and service files */
  pg->conn = PQconnectdbParams(keys, vals, 1);
  if (!pg->conn || PQstatus(pg->conn) != CONNECTION_OK) {
    set_connection_error_for(pg, s->conninfo, err, "could not connect to PostgreSQL");
    ss_pg_close(pg);
    return NULL;
  }
  pg->cache_max = s->statement_cache_size > 0 ? s->statement_cache_size : 1;
  pg->service_timeout = s->connect_timeout_s > 0 ? s->connect_timeout_s : 10;
  pg->reset_always = s->reset_always;
  PQsetNoticeReceiver(pg->conn, on_notice, pg);
  return pg;
}

struct ss_cancel_req;
static void cancel_unref(struct ss_cancel_req *r);
static void cancel_release_all(ss_pg *pg);

void ss_pg_close(ss_pg *pg) {
  int i;
  if (!pg) return;
  cancel_release_all(pg);
  for (i = 0; i < BUCKETS; i++) {
    stmt *st = pg->buckets[i];
    while (st) {
      stmt *next = st->chain;
      free(st->key);
      free(st);
      st = next;
    }
  }
  if (pg->conn) PQfinish(pg->conn);
  free(pg);
}

int ss_pg_fail(ss_pg *pg, const PGresult *res, ss_error *err) {
  const char *code;
  if (!res || PQstatus(pg->conn) == CONNECTION_BAD) {
    if (res && PQresultErrorField(res, PG_DIAG_SQLSTATE)) goto server;
    set_connection_error(pg, err, pg->timed_out ? "no answer from PostgreSQL after a cancel request; "
                                                  "the connection was given up"
                                                : "connection to PostgreSQL lost");
    return -1;
  }
server:
  code = PQresultErrorField(res, PG_DIAG_SQLSTATE);
  ss_error_set(err, SS_ERR_POSTGRES, "%s",
               PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY)
                   ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY)
                   : PQresultErrorMessage(res));
  ss_strlcpy(err->code, code, sizeof err->code);
  ss_strlcpy(err->severity, PQresultErrorField(res, PG_DIAG_SEVERITY_NONLOCALIZED), sizeof err->severity);
  ss_strlcpy(err->detail, PQresultErrorField(res, PG_DIAG_MESSAGE_DETAIL), sizeof err->detail);
  ss_strlcpy(err->hint, PQresultErrorField(res, PG_DIAG_MESSAGE_HINT), sizeof err->hint);
  ss_strlcpy(err->constraint, PQresultErrorField(res, PG_DIAG_CONSTRAINT_NAME), sizeof err->constraint);
  ss_strlcpy(err->table, PQresultErrorField(res, PG_DIAG_TABLE_NAME), sizeof err->table);
  ss_strlcpy(err->column, PQresultErrorField(res, PG_DIAG_COLUMN_NAME), sizeof err->column);
  ss_strlcpy(err->schema, PQresultErrorField(res, PG_DIAG_SCHEMA_NAME), sizeof err->schema);
  if (pg->timed_out && !pg->interrupted && strcmp(err->code, "57014") == 0) {
    /* our own cancel request, sent when the call's time ran out */
    ss_error_set(err, SS_ERR_TIMEOUT, "the statement ran past the call's timeout of %g s and was cancelled",
                 pg->limit);
    ss_strlcpy(err->code, "57014", sizeof err->code);
  }
  /* Class 08 (connection exception) and 57P01-57P03 (shutdown, crash,
   * cannot connect now): this connection is done for. */
  if (PQstatus(pg->conn) == CONNECTION_BAD || strncmp(err->code, "08", 2) == 0 ||
      strcmp(err->code, "57P01") == 0 || strcmp(err->code, "57P02") == 0 ||
      strcmp(err->code, "57P03") == 0) {
    err->kind = SS_ERR_CONNECTION;
    pg->broken = 1;
  }
  return -1;
}

static int result_ok(const PGresult *res) {
  ExecStatusType st = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
  return st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK || st == PGRES_EMPTY_QUERY;
}

static int is_copy(const PGresult *res) {
  ExecStatusType st = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
  return st == PGRES_COPY_IN || st == PGRES_COPY_OUT || st == PGRES_COPY_BOTH;
}

/* ---- waiting for the server: every wait has an end ---- */

/* Starts a call: its deadline comes from the connection's call timeout. */
static void start_call(ss_pg *pg, double timeout) {
  pg->timed_out = 0;
  pg->interrupted = 0;
  pg->interrupts_seen = interrupts;
  pg->limit = timeout;
  pg->deadline = timeout > 0 ? ss_monotonic() + timeout : 0;
}

/* PQcancel connects to the server and waits for it: a stopped server or
 * a cut network would hold the caller past its deadline. It runs on a
 * detached thread of its own instead, with its own copy of what a cancel
 * request needs (PGcancel outlives the connection). Shared by the thread
 * and the connection, freed by whichever lets go last. */
struct ss_cancel_req {
  PGcancel *cancel;
  int refs, done;
  pthread_mutex_t lock;
  pthread_cond_t delivered;
  struct ss_cancel_req *next; /* the connection's one sent before, maybe still on its way */
};

static void cancel_unref(struct ss_cancel_req *r) {
  int last;
  pthread_mutex_lock(&r->lock);
  last = --r->refs == 0;
  pthread_mutex_unlock(&r->lock);
  if (!last) return;
  PQfreeCancel(r->cancel);
  pthread_mutex_destroy(&r->lock);
  pthread_cond_destroy(&r->delivered);
  free(r);
}

static void cancel_release_all(ss_pg *pg) {
  while (pg->cancel) {
    struct ss_cancel_req *next = pg->cancel->next;
    cancel_unref(pg->cancel);
    pg->cancel = next;
  }
}

static void *send_cancel(void *arg) {
  struct ss_cancel_req *r = arg;
  char msg[256];
  PQcancel(r->cancel, msg, sizeof msg);
  pthread_mutex_lock(&r->lock);
  r->done = 1;
  pthread_cond_broadcast(&r->delivered);
  pthread_mutex_unlock(&r->lock);
  cancel_unref(r);
  return NULL;
}

static int cancel_done(struct ss_cancel_req *r) {
  int done;
  pthread_mutex_lock(&r->lock);
  done = r->done;
  pthread_mutex_unlock(&r->lock);
  return done;
}

/* Lets go of the requests that arrived; how many are still on their way. */
static int cancel_prune(ss_pg *pg) {
  struct ss_cancel_req **at = &pg->cancel;
  int left = 0;
  while (*at) {
    struct ss_cancel_req *r = *at;
    if (cancel_done(r)) {
      *at = r->next;
      cancel_unref(r);
    } else {
      left++;
      at = &r->next;
    }
  }
  return left;
}

/* Before the connection runs anything else, every cancel request sent for
 * it must have arrived, or it would cancel that instead. They normally
 * have (the server answered the cancelled statement); one still on its
 * way after CANCEL_SETTLE seconds means the server cannot take it: the
 * connection is given up. */
#define CANCEL_SETTLE 1.0
static void settle_cancel(ss_pg *pg) {
  struct ss_cancel_req *r;
  struct timespec ts;
  if (!pg->cancel) return;
  clock_gettime(CLOCK_REALTIME, &ts);
  ts.tv_sec += (time_t)CANCEL_SETTLE;
  for (r = pg->cancel; r; r = r->next) {
    pthread_mutex_lock(&r->lock);
    while (!r->done)
      if (pthread_cond_timedwait(&r->delivered, &r->lock, &ts) == ETIMEDOUT) break;
    if (!r->done) pg->broken = 1;
    pthread_mutex_unlock(&r->lock);
    if (pg->broken) return;
  }
  cancel_prune(pg);
}

/* Whether a cancel request sent for this connection may still arrive: it
 * would then cancel whatever the connection runs next, so such a
 * connection is not used again. */
static int cancel_in_flight(const ss_pg *pg) {
  struct ss_cancel_req *r;
  for (r = pg->cancel; r; r = r->next)
    if (!cancel_done(r)) return 1;
  return 0;
}

/* At most this many cancel requests on their way at once (a pipeline past
 * its deadline sends one as each group starts, not waiting for the one
 * before to arrive: the server's process for it takes a while to go). */
#define CANCELS_IN_FLIGHT 8

/* Sends a cancel request, on a thread of its own. When one is on its way,
 * none more (0), unless `another` (up to CANCELS_IN_FLIGHT; 1 when that
 * many are). -1 when it could not go. */
static int cancel_request(ss_pg *pg, int another) {
  struct ss_cancel_req *r;
  pthread_attr_t attr;
  pthread_t t;
  int ok, left = cancel_prune(pg);
  if (left && !another) return 0; /* one is on its way */
  if (left >= CANCELS_IN_FLIGHT) return 1;
  if (!(r = calloc(1, sizeof *r))) return -1;
  if (!(r->cancel = PQgetCancel(pg->conn))) {
    free(r);
    return -1;
  }
  pthread_mutex_init(&r->lock, NULL);
  pthread_cond_init(&r->delivered, NULL);
  r->refs = 2;
  pthread_attr_init(&attr);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  ok = pthread_create(&t, &attr, send_cancel, r) == 0;
  pthread_attr_destroy(&attr);
  if (!ok) {
    r->refs = 1;
    cancel_unref(r);
    return -1;
  }
  r->next = pg->cancel;
  pg->cancel = r;
  return 0;
}

int ss_pg_cancel(ss_pg *pg) { return cancel_request(pg, 0) < 0 ? -1 : 0; }

/* How long the call under way may still wait, in ms (-1: no limit),
 * with INTERRUPT_POLL_MS at most so that an interrupt is seen. Past the
 * call's deadline, or when interrupted, one cancel request goes to the
 * server and the wait goes on CANCEL_GRACE seconds more (the server then
 * answers with 57014); after that the connection is given up: -2, with
 * the connection marked broken. */
static int wait_ms(ss_pg *pg) {
  for (;;) {
    int ms = -1;
    if (interrupts != pg->interrupts_seen && !pg->timed_out) {
      /* interrupted (Ctrl-C in the REPL): cancelled as on a timeout, so
       * the server's 57014 comes back, or the connection goes after the
       * grace; the error stays the server's own */
      pg->interrupted = 1;
      pg->deadline = ss_monotonic();
    }
    if (pg->deadline > 0) {
      double left = pg->deadline - ss_monotonic();
      if (left <= 0) {
        if (pg->timed_out) {
          pg->broken = pg->unresponsive = 1;
          return -2;
        }
        pg->timed_out = 1;
        ss_pg_cancel(pg);
        pg->deadline = ss_monotonic() + CANCEL_GRACE;
        pg->cancelled_at = ss_monotonic();
        continue;
      }
      ms = (int)ceil(left * 1000);
      if (pg->timed_out && pg->pipelining) {
        /* the grace is the whole pipeline's, and what still runs of it is
         * cancelled again until its results are all in */
        double now = ss_monotonic();
        if (pg->recancel ? cancel_request(pg, 1) != 1
                         : now - pg->cancelled_at >= RECANCEL_EVERY && !cancel_in_flight(pg) && !ss_pg_cancel(pg)) {
          pg->cancelled_at = now;
          pg->recancel = 0;
        }
        if (ms > (int)(RECANCEL_EVERY * 1000)) ms = (int)(RECANCEL_EVERY * 1000);
        /* the request on its way arrives within a few ms: look again soon */
        if (pg->recancel && ms > RECANCEL_POLL_MS) ms = RECANCEL_POLL_MS;
      }
    }
    if (PQsocket(pg->conn) < 0) {
      pg->broken = 1;
      return -2;
    }
    return ms < 0 || ms > INTERRUPT_POLL_MS ? INTERRUPT_POLL_MS : ms;
  }
}

/* Waits until the socket is readable (want_write: writable, or readable,
 * so a writer can read what the server sends meanwhile and neither side
 * waits for the other), up to the call's deadline (wait_ms). 0, or -1 with
 * the connection marked broken. */
static int wait_socket(ss_pg *pg, int want_write) {
  for (;;) {
    struct pollfd pfd;
    int ms = wait_ms(pg), n;
    if (ms == -2) return -1;
    pfd.fd = PQsocket(pg->conn);
    pfd.events = want_write ? POLLOUT | POLLIN : POLLIN;
    pfd.revents = 0;
    n = poll(&pfd, 1, ms);
    if (n > 0) return 0;
    if (n < 0 && errno != EINTR) {
      pg->broken = 1;
      return -1;
    }
  }
}

/* Sends whatever libpq still holds (a COPY fed without blocking leaves
 * some), waiting as any call waits, and puts the connection back in
 * blocking mode, the mode every other call expects. 0, or -1 with the
 * connection marked broken. */
static int flush_all(ss_pg *pg) {
  int r;
  while ((r = PQflush(pg->conn)) > 0)
    if (wait_socket(pg, 1)) return -1;
  if (r < 0 || PQsetnonblocking(pg->conn, 0)) {
    pg->broken = 1;
    return -1;
  }
  return 0;
}

/* The next result of the statement under way, like PQgetResult, but the
 * wait is bounded by the call's deadline. NULL at the end, or when the
 * wait failed (then the connection is broken). */
static PGresult *next_result(ss_pg *pg) {
  /* what a COPY fed without blocking left unsent goes first: the server
   * waits for it before it answers */
  if (PQisnonblocking(pg->conn) && flush_all(pg)) return NULL;
  while (PQisBusy(pg->conn)) {
    if (wait_socket(pg, 0)) return NULL;
    if (!PQconsumeInput(pg->conn)) {
      pg->broken = 1;
      return NULL;
    }
  }
  return PQgetResult(pg->conn);
}

/* Leaves COPY mode that a statement entered when the caller did not ask
 * for a COPY (query or exec running one): an incoming COPY is failed on
 * purpose, an outgoing one is read to its end and dropped. */
static void leave_copy(ss_pg *pg, ExecStatusType st) {
  if (st == PGRES_COPY_IN) {
    PQputCopyEnd(pg->conn, "COPY FROM STDIN needs conn:copy_from");
    flush_all(pg);
  } else if (st == PGRES_COPY_OUT) {
    for (;;) {
      char *buf = NULL;
      int n = PQgetCopyData(pg->conn, &buf, 1);
      if (buf) PQfreemem(buf);
      if (n > 0) continue;
      if (n < 0) break; /* -1 done, -2 failed: the result says which */
      if (wait_socket(pg, 0) || !PQconsumeInput(pg->conn)) {
        pg->broken = 1;
        break;
      }
    }
  } else {
    pg->broken = 1; /* COPY BOTH is replication's: nothing semstore speaks */
  }
}

/* Reads and drops what is left of the current statement's results. */
static void drain(ss_pg *pg) {
  PGresult *res;
  while ((res = next_result(pg))) {
    ExecStatusType st = PQresultStatus(res);
    PQclear(res);
    if (st == PGRES_COPY_IN || st == PGRES_COPY_OUT || st == PGRES_COPY_BOTH) leave_copy(pg, st);
    if (pg->broken) break;
  }
}

/* ---- session state a borrower may leave behind ---- */

static int starts_word(const char *sql, const char *at) {
  return at == sql || !(isalnum((unsigned char)at[-1]) || at[-1] == '_');
}

/* Whether a statement's text may change the session beyond its own
 * transaction in a way its command tag does not show: set_config(...,
 * false), advisory locks, temporary tables made by CREATE ... AS or
 * SELECT INTO (tag SELECT). Over-matching costs one round trip at release. */
static int ends_word(const char *at) { return !(isalnum((unsigned char)*at) || *at == '_'); }

static int text_touches_session(const char *sql) {
  static const char *const words[] = {"temp", "temporary", "pg_temp", NULL};
  const char *p;
  int k;
  if (strcasestr(sql, "set_config") || strcasestr(sql, "advisory")) return 1;
  for (k = 0; words[k]; k++) {
    size_t n = strlen(words[k]);
    for (p = sql; (p = strcasestr(p, words[k])); p++)
      if (starts_word(sql, p) && ends_word(p + n)) return 1;
  }
  return 0;
}

/* The command tags of statements that leave session state behind. */
static int tag_touches_session(const char *tag) {
  static const char *const tags[] = {"SET", "RESET", "LISTEN", "DECLARE CURSOR", "PREPARE", "LOAD", NULL};
  int k;
  for (k = 0; tags[k]; k++)
    if (strcmp(tag, tags[k]) == 0) return 1;
  return 0;
}

static void forget_all(ss_pg *pg);

static void note_result(ss_pg *pg, const PGresult *res) {
  const char *tag = PQcmdStatus((PGresult *)res);
  /* the server dropped every prepared statement: so does the cache */
  if (strcmp(tag, "DEALLOCATE ALL") == 0 || strcmp(tag, "DISCARD ALL") == 0) forget_all(pg);
  if (tag_touches_session(tag)) pg->session_dirty = 1;
  /* a DO block may do any of it, PREPARE and LISTEN included, out of sight */
  if (strcmp(tag, "PREPARE") == 0 || strcmp(tag, "DO") == 0) pg->session_dirty = pg->user_prepared = 1;
}

/* ---- prepared statement cache ---- */

static uint64_t fnv1a(const char *s, size_t n) {
  uint64_t h = 1469598103934665603ULL;
  while (n--) h = (h ^ (unsigned char)*s++) * 1099511628211ULL;
  return h;
}

static void unlink_use(ss_pg *pg, stmt *st) {
  if (st->newer) st->newer->older = st->older; else pg->newest = st->older;
  if (st->older) st->older->newer = st->newer; else pg->oldest = st->newer;
  st->newer = st->older = NULL;
}

static void link_newest(ss_pg *pg, stmt *st) {
  st->older = pg->newest;
  st->newer = NULL;
  if (pg->newest) pg->newest->newer = st;
  pg->newest = st;
  if (!pg->oldest) pg->oldest = st;
}

/* Runs internal statements (no parameters, results dropped) with the
 * simple protocol; 0, or -1 with err set. */
static int exec_internal(ss_pg *pg, const char *sql, ss_error *err);

static void forget(ss_pg *pg, stmt *st, int deallocate) {
  stmt **pp = &pg->buckets[st->hash % BUCKETS];
  while (*pp != st) pp = &(*pp)->chain;
  *pp = st->chain;
  unlink_use(pg, st);
  pg->cache_count--;
  /* In a failed transaction DEALLOCATE would fail too; the statement then
   * lives on the server until the connection closes, under a unique name. */
  if (deallocate && PQtransactionStatus(pg->conn) != PQTRANS_INERROR) {
    char sql[48];
    ss_error ignored;
    snprintf(sql, sizeof sql, "DEALLOCATE %s", st->name);
    exec_internal(pg, sql, &ignored);
  }
  free(st->key);
  free(st);
}

/* After DEALLOCATE ALL: the cache forgets every statement (the server
 * already did), and which ones were seen once. */
static void forget_all(ss_pg *pg) {
  while (pg->oldest) forget(pg, pg->oldest, 0);
  memset(pg->seen, 0, sizeof pg->seen);
}

static char *make_key(const char *sql, int n, const Oid *types, size_t *len) {
  size_t sl = strlen(sql), i;
  char *k = malloc(sl + 1 + (size_t)n * sizeof(Oid));
  if (!k) return NULL;
  memcpy(k, sql, sl + 1);
  for (i = 0; i < (size_t)n; i++) {
    Oid t = types ? types[i] : 0; /* NULL types: all inferred, as in libpq */
    memcpy(k + sl + 1 + i * sizeof(Oid), &t, sizeof(Oid));
  }
  *len = sl + 1 + (size_t)n * sizeof(Oid);
  return k;
}

static stmt *lookup(ss_pg *pg, const char *key, size_t len, uint64_t h) {
  stmt *st;
  for (st = pg->buckets[h % BUCKETS]; st; st = st->chain)
    if (st->hash == h && st->keylen == len && memcmp(st->key, key, len) == 0) return st;
  return NULL;
}

/* The outcome of the one command just sent (a prepare, a describe): its
 * result when it succeeded (the caller PQclear()s it), or NULL with err
 * set; either way the connection is idle again. */
static PGresult *command_result(ss_pg *pg, ss_error *err) {
  PGresult *res = next_result(pg);
  if (!result_ok(res)) {
    ss_pg_fail(pg, res, err);
    PQclear(res);
    res = NULL;
  }
  drain(pg);
  return res;
}

/* The prepared statement for sql, preparing it when this is its second
 * use; *st NULL (and 0 returned) when it is the first, so the caller runs
 * it unnamed, in one round trip. -1 with err set. */
static int prepared(ss_pg *pg, const char *sql, int n, const Oid *types, stmt **out, ss_error *err) {
  size_t len;
  uint64_t h;
  stmt *st;
  PGresult *res;
  char *key = make_key(sql, n, types, &len);
  *out = NULL;
  if (!key) return ss_error_set(err, SS_ERR_MEMORY, "out of memory preparing a statement");
  h = fnv1a(key, len);
  if ((st = lookup(pg, key, len, h))) {
    free(key);
    unlink_use(pg, st);
    link_newest(pg, st);
    *out = st;
    return 0;
  }
  if (pg->seen[h % SEEN] != h) {
    pg->seen[h % SEEN] = h;
    free(key);
    return 0;
  }
  if (!(st = calloc(1, sizeof *st))) {
    free(key);
    return ss_error_set(err, SS_ERR_MEMORY, "out of memory preparing a statement");
  }
  st->key = key;
  st->keylen = len;
  st->hash = h;
  snprintf(st->name, sizeof st->name, "ss_%lu", ++pg->next_id);
  if (!PQsendPrepare(pg->conn, st->name, sql, n, types)) {
    free(st->key);
    free(st);
    return ss_pg_fail(pg, NULL, err);
  }
  if (!(res = command_result(pg, err))) {
    free(st->key);
    free(st);
    return -1;
  }
  PQclear(res);
  if (pg->cache_count >= pg->cache_max) forget(pg, pg->oldest, 1);
  st->chain = pg->buckets[h % BUCKETS];
  pg->buckets[h % BUCKETS] = st;
  link_newest(pg, st);
  pg->cache_count++;
  *out = st;
  return 0;
}

static int stream_ok(const PGresult *res) {
  return result_ok(res) || (res && PQresultStatus(res) == PGRES_SINGLE_TUPLE);
}

/* A prepared statement whose result shape no longer matches a table it
 * reads ("cached plan must not change result type"): the one 0A000 that
 * preparing again cures. Other 0A000 errors (feature not supported) are
 * the statement's own and must not make it run twice. */
static int plan_changed(const PGresult *res) {
  const char *fn = PQresultErrorField(res, PG_DIAG_SOURCE_FUNCTION);
  const char *msg = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
  return (fn && strcmp(fn, "RevalidateCachedQuery") == 0) ||
         (msg && strcmp(msg, "cached plan must not change result type") == 0);
}

/* Makes the connection ready for a statement: what a reader abandoned (a
 * stream whose decoding raised, rows not iterated to the end) is read and
 * dropped first. -1 with err set when the connection is busy otherwise. */
static int ready(ss_pg *pg, ss_error *err) {
  settle_cancel(pg);
  if (cancel_in_flight(pg))
    return ss_error_set(err, SS_ERR_CONNECTION, "a cancel request for this connection could not be delivered; "
                                                "the connection was given up");
  if (pg->broken) return ss_pg_fail(pg, NULL, err);
  /* a COPY fed without blocking was left midway: its data goes first */
  if (PQisnonblocking(pg->conn) && flush_all(pg)) return ss_pg_fail(pg, NULL, err);
  if (PQtransactionStatus(pg->conn) == PQTRANS_ACTIVE) drain(pg);
  if (PQtransactionStatus(pg->conn) == PQTRANS_ACTIVE || pg->broken) return ss_pg_fail(pg, NULL, err);
  return 0;
}

static PGresult *refuse_copy(ss_pg *pg, PGresult *res, ss_error *err) {
  ExecStatusType st = PQresultStatus(res);
  PQclear(res);
  leave_copy(pg, st);
  drain(pg);
  ss_error_set(err, SS_ERR_INPUT, "COPY runs through conn:copy_from and conn:copy_to, not query or exec");
  return NULL;
}

static PGresult *run(ss_pg *pg, const char *sql, int n, const Oid *types, const char *const *values,
                     const int *lengths, const int *formats, int single_row, ss_error *err) {
  int attempt;
  start_call(pg, pg->call_timeout);
  if (ready(pg, err)) return NULL;
  pg->ran_statement = 1;
  pg->stream_in_tx = PQtransactionStatus(pg->conn) != PQTRANS_IDLE;
  if (text_touches_session(sql)) pg->session_dirty = 1;
  for (attempt = 0; attempt < 2; attempt++) {
    int idle = PQtransactionStatus(pg->conn) == PQTRANS_IDLE, sent;
    const char *code;
    PGresult *res;
    stmt *st;
    if (prepared(pg, sql, n, types, &st, err)) return NULL;
    sent = st ? PQsendQueryPrepared(pg->conn, st->name, n, values, lengths, formats, 0)
              : PQsendQueryParams(pg->conn, sql, n, types, values, lengths, formats, 0);
    if (!sent) {
      ss_pg_fail(pg, NULL, err);
      return NULL;
    }
    if (single_row) PQsetSingleRowMode(pg->conn);
    res = next_result(pg);
    if (is_copy(res)) return refuse_copy(pg, res, err);
    if (stream_ok(res)) {
      note_result(pg, res);
      if (PQresultStatus(res) != PGRES_SINGLE_TUPLE) drain(pg);
      return res;
    }
    drain(pg);
    /* The statement vanished (DISCARD ALL) or a table it reads changed
     * shape: prepare it again. Outside a transaction nothing ran, so one
     * more try is safe; inside one the transaction is aborted anyway. */
    code = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    if (st && code && (strcmp(code, "26000") == 0 || (strcmp(code, "0A000") == 0 && plan_changed(res)))) {
      forget(pg, st, strcmp(code, "0A000") == 0);
      if (idle && attempt == 0) {
        PQclear(res);
        continue;
      }
    }
    ss_pg_fail(pg, res, err);
    PQclear(res);
    return NULL;
  }
  return NULL;
}

PGresult *ss_pg_query(ss_pg *pg, const char *sql, int n, const Oid *types, const char *const *values,
                      const int *lengths, const int *formats, ss_error *err) {
  return run(pg, sql, n, types, values, lengths, formats, 0, err);
}

PGresult *ss_pg_stream_start(ss_pg *pg, const char *sql, int n, const Oid *types, const char *const *values,
                             const int *lengths, const int *formats, ss_error *err) {
  return run(pg, sql, n, types, values, lengths, formats, 1, err);
}

PGresult *ss_pg_stream_next(ss_pg *pg, ss_error *err) {
  PGresult *res = next_result(pg);
  if (stream_ok(res)) {
    /* after the final result, read the end marker so the connection is idle */
    if (PQresultStatus(res) != PGRES_SINGLE_TUPLE) {
      note_result(pg, res);
      drain(pg);
    }
    return res;
  }
  /* NULL here means the final result never came: the connection broke */
  ss_pg_fail(pg, res, err);
  PQclear(res);
  drain(pg);
  return NULL;
}

int ss_pg_stream_abandon(ss_pg *pg) {
  /* The rest could be millions of rows: ask the server to stop sending.
   * Not inside a transaction, which a cancelled statement would abort:
   * there the rest is read and dropped. */
  if (PQtransactionStatus(pg->conn) == PQTRANS_ACTIVE && !pg->broken && !pg->stream_in_tx) ss_pg_cancel(pg);
  start_call(pg, pg->service_timeout);
  drain(pg);
  return pg->broken || PQtransactionStatus(pg->conn) == PQTRANS_ACTIVE ? -1 : 0;
}

/* Every statement's result is read, so that a COPY among them is ended
 * and every command tag is seen; the last one is returned. */
static PGresult *exec_simple(ss_pg *pg, const char *sql, ss_error *err) {
  PGresult *res, *last = NULL;
  int failed = 0;
  if (ready(pg, err)) return NULL;
  if (!PQsendQuery(pg->conn, sql)) {
    ss_pg_fail(pg, NULL, err);
    return NULL;
  }
  while ((res = next_result(pg))) {
    if (is_copy(res)) {
      if (!failed) ss_error_set(err, SS_ERR_INPUT, "COPY runs through conn:copy_from and conn:copy_to, not query or exec");
      failed = 1;
      leave_copy(pg, PQresultStatus(res));
      PQclear(res);
    } else if (result_ok(res)) {
      note_result(pg, res);
      PQclear(last);
      last = res;
    } else {
      if (!failed) ss_pg_fail(pg, res, err);
      failed = 1;
      PQclear(res);
    }
    if (pg->broken) break;
  }
  if (!failed && (pg->broken || !last)) {
    failed = 1;
    ss_pg_fail(pg, NULL, err);
  }
  if (failed) {
    PQclear(last);
    return NULL;
  }
  return last;
}

PGresult *ss_pg_exec(ss_pg *pg, const char *sql, ss_error *err) {
  start_call(pg, pg->call_timeout);
  pg->ran_statement = 1;
  if (text_touches_session(sql)) pg->session_dirty = 1;
  return exec_simple(pg, sql, err);
}

static int exec_internal(ss_pg *pg, const char *sql, ss_error *err) {
  PGresult *res = exec_simple(pg, sql, err);
  PQclear(res);
  return res ? 0 : -1;
}

void ss_pg_set_timeout(ss_pg *pg, double seconds) { pg->call_timeout = seconds > 0 ? seconds : 0; }
double ss_pg_timeout(const ss_pg *pg) { return pg->call_timeout; }

void ss_pg_limit_call(ss_pg *pg, double seconds) {
  double until = ss_monotonic() + seconds;
  if (pg->deadline == 0 || pg->deadline > until) {
    pg->deadline = until;
    pg->limit = seconds;
  }
}

/* ---- transactions: nesting follows the server's transaction status ---- */

int ss_pg_tx_begin(ss_pg *pg, ss_pg_tx *tx, const char *mode, ss_error *err) {
  char sql[96];
  tx->open = 0;
  start_call(pg, pg->call_timeout);
  if (ready(pg, err)) return -1;
  switch (PQtransactionStatus(pg->conn)) {
  case PQTRANS_IDLE:
    tx->savepoint = 0;
    snprintf(sql, sizeof sql, "BEGIN%s%s", mode && *mode ? " " : "", mode ? mode : "");
    break;
  case PQTRANS_INTRANS:
    if (mode && *mode)
      return ss_error_set(err, SS_ERR_INPUT,
                          "isolation and read_only apply to a whole transaction; this one nests in an open one");
    tx->savepoint = ++pg->savepoints;
    snprintf(sql, sizeof sql, "SAVEPOINT semstore_sp_%u", tx->savepoint);
    break;
  case PQTRANS_INERROR:
    ss_error_set(err, SS_ERR_POSTGRES,
                 "current transaction is aborted, commands ignored until end of transaction block");
    ss_strlcpy(err->code, "25P02", sizeof err->code);
    return -1;
  default:
    return ss_pg_fail(pg, NULL, err);
  }
  if (exec_internal(pg, sql, err)) return -1;
  tx->open = 1;
  return 0;
}

int ss_pg_tx_end(ss_pg *pg, ss_pg_tx *tx, int commit, ss_error *err) {
  char sql[128];
  PGresult *res;
  PGTransactionStatusType st;
  if (!tx->open) return commit ? 0 : -1;
  tx->open = 0;
  /* a COMMIT may take long (deferred constraints, synchronous replication):
   * it waits like any call; only a rollback is bounded by the pool's own limit */
  start_call(pg, commit || pg->call_timeout > 0 ? pg->call_timeout : pg->service_timeout);
  if (ready(pg, err)) return -1;
  st = PQtransactionStatus(pg->conn);
  if (st == PQTRANS_IDLE) {
    /* COMMIT or ROLLBACK ran inside: what it belonged to is gone */
    if (commit)
      return ss_error_set(err, SS_ERR_INPUT, "the transaction was ended inside its own function (a COMMIT or ROLLBACK ran there)");
    return -1;
  }
  if (commit && st == PQTRANS_INERROR) {
    ss_error ignored;
    ss_pg_tx_end(pg, &(ss_pg_tx){tx->savepoint, 1}, 0, &ignored);
    ss_error_set(err, SS_ERR_POSTGRES, "a statement failed inside the transaction, which was rolled back");
    ss_strlcpy(err->code, "25P02", sizeof err->code);
    return -1;
  }
  if (commit) {
    if (tx->savepoint) snprintf(sql, sizeof sql, "RELEASE SAVEPOINT semstore_sp_%u", tx->savepoint);
    else ss_strlcpy(sql, "COMMIT", sizeof sql);
    if (!(res = exec_simple(pg, sql, err))) {
      /* the savepoint is gone: a ROLLBACK and a new BEGIN ran inside */
      if (tx->savepoint && strcmp(err->code, "3B001") == 0)
        ss_error_set(err, SS_ERR_INPUT, "the transaction was ended inside its own function (a COMMIT or ROLLBACK ran there)");
      return -1;
    }
    /* COMMIT of a transaction that failed answers ROLLBACK */
    if (!tx->savepoint && strcmp(PQcmdStatus(res), "COMMIT") != 0) {
      PQclear(res);
      ss_error_set(err, SS_ERR_POSTGRES, "the transaction could not commit and was rolled back");
      ss_strlcpy(err->code, "40000", sizeof err->code);
      return -1;
    }
    PQclear(res);
    return 0;
  }
  if (!pg->broken) {
    ss_error ignored;
    if (tx->savepoint)
      snprintf(sql, sizeof sql, "ROLLBACK TO SAVEPOINT semstore_sp_%u; RELEASE SAVEPOINT semstore_sp_%u",
               tx->savepoint, tx->savepoint);
    else
      ss_strlcpy(sql, "ROLLBACK", sizeof sql);
    exec_internal(pg, sql, &ignored);
  }
  return -1;
}

/* ---- COPY ---- */

/* Runs a COPY statement and checks it entered the mode asked for
 * (PGRES_COPY_IN or PGRES_COPY_OUT); any other outcome is ended and
 * refused, and the connection is left idle. */
static int copy_start(ss_pg *pg, const char *sql, ExecStatusType want, ss_error *err) {
  PGresult *res;
  const char *what = want == PGRES_COPY_IN ? "COPY ... FROM STDIN" : "COPY ... TO STDOUT";
  start_call(pg, pg->call_timeout);
  if (ready(pg, err)) return -1;
  pg->ran_statement = 1;
  pg->stream_in_tx = PQtransactionStatus(pg->conn) != PQTRANS_IDLE;
  if (text_touches_session(sql)) pg->session_dirty = 1;
  if (!PQsendQuery(pg->conn, sql)) return ss_pg_fail(pg, NULL, err);
  res = next_result(pg);
  if (res && PQresultStatus(res) == want) {
    PQclear(res);
    return 0;
  }
  if (is_copy(res)) { /* the other direction */
    refuse_copy(pg, res, err);
    return ss_error_set(err, SS_ERR_INPUT, "the statement is not a %s", what);
  }
  if (result_ok(res)) {
    PQclear(res);
    drain(pg);
    return ss_error_set(err, SS_ERR_INPUT, "the statement is not a %s", what);
  }
  ss_pg_fail(pg, res, err);
  PQclear(res);
  drain(pg);
  return -1;
}

int ss_pg_copy_begin(ss_pg *pg, const char *sql, ss_error *err) { return copy_start(pg, sql, PGRES_COPY_IN, err); }

int ss_pg_copy_send(ss_pg *pg, const char *data, size_t len, ss_error *err) {
  while (len > 0) {
    int n = len > (1u << 30) ? (1 << 30) : (int)len;
    if (PQputCopyData(pg->conn, data, n) != 1) return ss_pg_fail(pg, NULL, err);
    data += n;
    len -= (size_t)n;
  }
  return 0;
}

int ss_pg_copy_done(ss_pg *pg, const char *abort_reason, ss_error *err) {
  if (PQputCopyEnd(pg->conn, abort_reason) != 1 || flush_all(pg)) return ss_pg_fail(pg, NULL, err);
  return 0;
}

long long ss_pg_copy_result(ss_pg *pg, ss_error *err) {
  PGresult *res;
  long long rows = -1;
  int failed = 0;
  /* the COPY's own result, then NULL; an error the server raised midway
   * (a constraint, the partition bound) arrives here */
  while ((res = next_result(pg))) {
    if (PQresultStatus(res) == PGRES_COMMAND_OK) {
      /* the COPY's count; statements after it in the same text are seen too */
      if (rows < 0) rows = strtoll(PQcmdTuples(res), NULL, 10);
      note_result(pg, res);
    } else if (!failed) {
      failed = 1;
      ss_pg_fail(pg, res, err);
    }
    PQclear(res);
    if (PQstatus(pg->conn) == CONNECTION_BAD || pg->broken) break;
  }
  if (!failed && rows < 0) return ss_pg_fail(pg, NULL, err);
  return failed ? -1 : rows;
}

/* ---- COPY FROM STDIN without blocking, on one or more connections ---- */

/* libpq is handed this much at a time, and only once it sent what it
 * had, so what it buffers stays small whatever the caller has ready. */
#define FEED_PIECE ((size_t)256 << 10)

int ss_pg_copy_feed(ss_pg *pg, const char *data, size_t len, size_t *taken, ss_error *err) {
  *taken = 0;
  if (!PQisnonblocking(pg->conn) && PQsetnonblocking(pg->conn, 1)) return ss_pg_fail(pg, NULL, err);
  for (;;) {
    int r = PQflush(pg->conn);
    size_t n;
    if (r < 0) return ss_pg_fail(pg, NULL, err);
    if (r > 0) return 1; /* the socket is full: the server is busy with what it has */
    if (*taken == len) return 0;
    n = len - *taken < FEED_PIECE ? len - *taken : FEED_PIECE;
    /* 0 would mean libpq could not grow its buffer: it is empty here */
    if (PQputCopyData(pg->conn, data + *taken, (int)n) != 1) return ss_pg_fail(pg, NULL, err);
    *taken += n;
  }
}

int ss_pg_copy_end(ss_pg *pg, ss_error *err) {
  int r;
  if (!PQisnonblocking(pg->conn) && PQsetnonblocking(pg->conn, 1)) return ss_pg_fail(pg, NULL, err);
  /* PQputCopyEnd queues the end (0 only when it cannot grow its buffer),
   * then the flush says whether everything went */
  if (PQputCopyEnd(pg->conn, NULL) != 1 || (r = PQflush(pg->conn)) < 0) return ss_pg_fail(pg, NULL, err);
  if (r > 0) return 1;
  PQsetnonblocking(pg->conn, 0); /* everything went: statements block as usual again */
  return 0;
}

int ss_pg_copy_flushed(ss_pg *pg, ss_error *err) {
  int r = PQflush(pg->conn);
  if (r < 0) return ss_pg_fail(pg, NULL, err);
  if (r == 0) PQsetnonblocking(pg->conn, 0);
  return r;
}

int ss_pg_busy(ss_pg *pg, ss_error *err) {
  if (!PQconsumeInput(pg->conn)) {
    pg->broken = 1;
    return ss_pg_fail(pg, NULL, err);
  }
  return PQisBusy(pg->conn);
}

int ss_pg_wait_any(ss_pg *const *pgs, const int *want_write, int n, double most, ss_error *err) {
  struct pollfd pfd[SS_PG_WAIT_MAX];
  int i, ms, r;
  double until = most > 0 ? ss_monotonic() + most : 0;
  if (n > SS_PG_WAIT_MAX) n = SS_PG_WAIT_MAX;
  for (;;) {
    ms = INTERRUPT_POLL_MS;
    if (until > 0) {
      double left = until - ss_monotonic();
      if (left <= 0) return 0;
      if (left * 1000 < ms) ms = (int)ceil(left * 1000);
    }
    for (i = 0; i < n; i++) {
      int m = wait_ms(pgs[i]);
      if (m == -2) return ss_pg_fail(pgs[i], NULL, err);
      if (m < ms) ms = m;
      pfd[i].fd = PQsocket(pgs[i]->conn);
      pfd[i].events = want_write[i] ? POLLOUT | POLLIN : POLLIN; /* as wait_socket */
      pfd[i].revents = 0;
    }
    r = poll(pfd, (nfds_t)n, ms);
    if (r > 0) return 0;
    if (r < 0 && errno != EINTR) {
      for (i = 0; i < n; i++) pgs[i]->broken = 1;
      return ss_error_set(err, SS_ERR_CONNECTION, "waiting for the server failed: %s", strerror(errno));
    }
  }
}

int ss_pg_copy_out_begin(ss_pg *pg, const char *sql, ss_error *err) {
  return copy_start(pg, sql, PGRES_COPY_OUT, err);
}

long ss_pg_copy_out_next(ss_pg *pg, char **data, ss_error *err) {
  *data = NULL;
  for (;;) {
    int n = PQgetCopyData(pg->conn, data, 1);
    if (n > 0) return n;
    if (n == 0) {
      if (wait_socket(pg, 0) || !PQconsumeInput(pg->conn)) {
        pg->broken = 1;
        ss_pg_fail(pg, NULL, err);
        return -1;
      }
      continue;
    }
    /* -1: the data ended; -2: it failed. The result tells which. */
    if (ss_pg_copy_result(pg, err) < 0) return -1;
    return 0;
  }
}

/* ---- notifications ---- */

int ss_pg_notification(ss_pg *pg, double timeout, ss_pg_notify *out, ss_error *err) {
  double deadline = timeout >= 0 ? ss_monotonic() + timeout : 0;
  start_call(pg, 0);
  if (ready(pg, err)) return -1;
  for (;;) {
    PGnotify *n;
    struct pollfd pfd;
    int ms = -1, r;
    if (!PQconsumeInput(pg->conn)) return ss_pg_fail(pg, NULL, err);
    if ((n = PQnotifies(pg->conn))) {
      ss_strlcpy(out->channel, n->relname, sizeof out->channel);
      out->payload = malloc(strlen(n->extra) + 1);
      if (!out->payload) {
        PQfreemem(n);
        return ss_error_set(err, SS_ERR_MEMORY, "out of memory reading a notification");
      }
      strcpy(out->payload, n->extra);
      out->pid = n->be_pid;
      PQfreemem(n);
      return 1;
    }
    if (ss_pg_is_broken(pg)) return ss_pg_fail(pg, NULL, err);
    if (deadline > 0) {
      double left = deadline - ss_monotonic();
      if (left <= 0) return 0;
      ms = (int)ceil(left * 1000);
    }
    pfd.fd = PQsocket(pg->conn);
    pfd.events = POLLIN;
    pfd.revents = 0;
    r = poll(&pfd, 1, ms);
    if (r < 0 && errno != EINTR) {
      pg->broken = 1;
      return ss_pg_fail(pg, NULL, err);
    }
  }
}

/* ---- what the catalog says of types the decoder does not know ---- */

int ss_pg_type_is_array(const ss_pg *pg, Oid oid) {
  unsigned h = (unsigned)oid % TYPES;
  return oid && pg->types[h].oid == oid ? pg->types[h].array : -1;
}

char ss_pg_array_delimiter(const ss_pg *pg, Oid oid) {
  unsigned h = (unsigned)oid % TYPES;
  return ss_pg_type_is_array(pg, oid) == 1 ? pg->types[h].delim : 0;
}

static void remember_type(ss_pg *pg, Oid oid, int array, char delim) {
  unsigned h = (unsigned)oid % TYPES;
  pg->types[h].oid = oid;
  pg->types[h].array = (signed char)array;
  pg->types[h].delim = delim ? delim : ',';
}

int ss_pg_learn_types(ss_pg *pg, const Oid *oids, int n, ss_error *err) {
  char list[2 + 12 * 64];
  const char *values[1] = {list};
  size_t len = 0;
  PGresult *res;
  int i, asked = 0;
  list[len++] = '{';
  for (i = 0; i < n && asked < 64; i++) {
    if (ss_pg_type_is_array(pg, oids[i]) >= 0) continue;
    len += (size_t)snprintf(list + len, sizeof list - len, "%s%u", asked ? "," : "", (unsigned)oids[i]);
    asked++;
  }
  if (!asked) return 0;
  list[len++] = '}';
  list[len] = '\0';
  res = ss_pg_query(pg, "SELECT t.oid::int8, t.typcategory = 'A' AND t.typelem <> 0, e.typdelim "
                        "FROM pg_catalog.pg_type t LEFT JOIN pg_catalog.pg_type e ON e.oid = t.typelem "
                        "WHERE t.oid = ANY ($1::pg_catalog.oid[])",
                    1, NULL, values, NULL, NULL, err);
  if (!res) return -1;
  /* a type dropped meanwhile is no array either */
  for (i = 0; i < n; i++)
    if (ss_pg_type_is_array(pg, oids[i]) < 0) remember_type(pg, oids[i], 0, 0);
  for (i = 0; i < PQntuples(res); i++)
    remember_type(pg, (Oid)strtoul(PQgetvalue(res, i, 0), NULL, 10), PQgetvalue(res, i, 1)[0] == 't',
                  PQgetvalue(res, i, 2)[0]);
  PQclear(res);
  return 0;
}

int ss_pg_describe_types(ss_pg *pg, const char *sql, int n, const Oid *types, ss_error *err) {
  PGresult *res;
  Oid oids[64];
  int i, cols;
  start_call(pg, pg->call_timeout);
  if (ready(pg, err)) return -1;
  /* the unnamed statement: the run that follows parses it again anyway */
  if (!PQsendPrepare(pg->conn, "", sql, n, types)) return ss_pg_fail(pg, NULL, err);
  if (!(res = command_result(pg, err))) return -1;
  PQclear(res);
  if (!PQsendDescribePrepared(pg->conn, "")) return ss_pg_fail(pg, NULL, err);
  if (!(res = command_result(pg, err))) return -1;
  cols = PQnfields(res) < 64 ? PQnfields(res) : 64;
  for (i = 0; i < cols; i++) oids[i] = PQftype(res, i);
  PQclear(res);
  return ss_pg_learn_types(pg, oids, cols, err);
}

PGTransactionStatusType ss_pg_transaction_status(const ss_pg *pg) {
  return PQtransactionStatus(pg->conn);
}

int ss_pg_backend_pid(const ss_pg *pg) { return PQbackendPID(pg->conn); }

int ss_pg_unresponsive(const ss_pg *pg) { return pg->unresponsive; }
void ss_pg_give_up(ss_pg *pg) { pg->broken = 1; }

int ss_pg_is_broken(const ss_pg *pg) {
  return pg->broken || PQstatus(pg->conn) != CONNECTION_OK;
}

PGconn *ss_pg_conn(ss_pg *pg) { return pg->conn; }

int ss_pg_partitions(const ss_pg *pg) { return pg->partitions; }
void ss_pg_set_partitions(ss_pg *pg, int n) { pg->partitions = n; }

/* ---- pool ops ---- */

/* The pool's first connection settles the prepared parts a bulk that
 * died midway left behind (they hold locks until then); a failure there
 * (a role that may not settle them) is the next `semstore recover`'s. */
static void *op_open(void *ctx, ss_error *err) {
  ss_pg_settings *s = ctx;
  ss_pg *pg = ss_pg_connect(s, err);
  if (pg && s->recover_grace >= 0 && !__atomic_exchange_n(&s->recovered, 1, __ATOMIC_ACQ_REL)) {
    ss_error ignored;
    ss_bulk_recover(pg, s->recover_grace, NULL, NULL, NULL, &ignored);
  }
  return pg;
}

static void op_close(void *ctx, void *conn) {
  (void)ctx;
  ss_pg_close(conn);
}

static int op_ping(void *ctx, void *conn, int deep, double limit) {
  ss_pg *pg = conn;
  struct pollfd pfd;
  (void)ctx;
  if (ss_pg_is_broken(pg)) return -1;
  /* An idle connection has nothing to read unless the server said goodbye
   * (terminated backend, shutdown): a free check. What it reads is parsed
   * (a FATAL notice marks it broken), and notifications stay queued for
   * the borrower. */
  pfd.fd = PQsocket(pg->conn);
  pfd.events = POLLIN;
  pfd.revents = 0;
  if (pfd.fd < 0) return -1;
  if (poll(&pfd, 1, 0) > 0) {
    if (!PQconsumeInput(pg->conn) || PQstatus(pg->conn) != CONNECTION_OK) return -1;
    PQisBusy(pg->conn); /* parses what arrived */
    if (ss_pg_is_broken(pg)) return -1;
  }
  if (deep) {
    ss_error ignored;
    start_call(pg, limit > 0 && (pg->service_timeout <= 0 || limit < pg->service_timeout) ? limit : pg->service_timeout);
    if (exec_internal(pg, "", &ignored)) return -1;
  }
  return 0;
}

/* What a borrower may have changed in the session, undone in one round
 * trip while keeping the prepared statements (DISCARD ALL would drop
 * them): settings back to the startup packet's (RESET ALL), the session
 * user and role, held cursors, listeners, advisory locks, temporary tables. */
#define SESSION_RESET \
  "RESET ALL; SET SESSION AUTHORIZATION DEFAULT; RESET ROLE; CLOSE ALL; UNLISTEN *; " \
  "SELECT pg_advisory_unlock_all(); DISCARD TEMP"

static int op_reset(void *ctx, void *conn) {
  ss_pg *pg = conn;
  ss_error ignored;
  PGnotify *n;
  (void)ctx;
  pg->call_timeout = 0;
  settle_cancel(pg);
  if (ss_pg_is_broken(pg)) return -1;
  /* rows a reader did not take to the end, a COPY left under way */
  if (PQtransactionStatus(pg->conn) == PQTRANS_ACTIVE && ss_pg_stream_abandon(pg)) return -1;
  start_call(pg, pg->service_timeout);
  switch (PQtransactionStatus(pg->conn)) {
  case PQTRANS_IDLE:
    break;
  case PQTRANS_INTRANS:
  case PQTRANS_INERROR:
    if (exec_internal(pg, "ROLLBACK", &ignored)) return -1;
    break;
  default:
    return -1;
  }
  if (pg->reset_always && pg->ran_statement) pg->session_dirty = 1;
  if (pg->session_dirty) {
    if (exec_internal(pg, pg->user_prepared ? SESSION_RESET "; DEALLOCATE ALL" : SESSION_RESET, &ignored)) return -1;
    if (pg->user_prepared) forget_all(pg);
    pg->session_dirty = pg->user_prepared = 0;
  }
  pg->ran_statement = 0;
  /* notifications for the listeners just dropped belong to the borrower before */
  while ((n = PQnotifies(pg->conn))) PQfreemem(n);
  return ss_pg_is_broken(pg) ? -1 : 0;
}

static int op_broken(void *ctx, void *conn) {
  (void)ctx;
  return ss_pg_is_broken(conn);
}

static void op_free_ctx(void *ctx) { ss_pg_settings_free(ctx); }

const ss_pool_ops ss_pg_pool_ops = {op_open, op_close, op_ping, op_reset, op_broken, op_free_ctx};

/* ---- pipeline mode ---- */

/* A queued statement: its text and parameters live in the pipeline's
 * buffers (offsets, since the buffers grow), so the caller's values may go
 * as soon as ss_pg_pipeline_add returns. */
typedef struct {
  size_t sql;      /* offset of the zero-terminated text in data */
  size_t param;    /* index of its first parameter in the parameter arrays */
  int n;           /* its parameters */
  int sync_after;  /* a sync point follows it */
} pl_stmt;

struct ss_pg_pipeline {
  ss_buf data;           /* SQL texts and parameter values */
  pl_stmt *stmts;
  size_t n, cap;
  size_t *voff;          /* per parameter: offset in data */
  int *vlen;             /* its length, -1 for NULL */
  int *fmt;              /* 0 text, 1 binary */
  Oid *types;
  size_t np, pcap;
  int max_params;
  PGresult **results;    /* after a run: one per statement, NULL where none came */
  long failed;           /* the failing statement (from 0), -1 */
  size_t unsynced;       /* after a read that failed: the statement to name if every result came */
};

ss_pg_pipeline *ss_pg_pipeline_new(void) {
  ss_pg_pipeline *p = calloc(1, sizeof *p);
  if (!p) return NULL;
  ss_buf_init(&p->data);
  p->failed = -1;
  return p;
}

void ss_pg_pipeline_clear_results(ss_pg_pipeline *p) {
  size_t i;
  if (!p->results) return;
  for (i = 0; i < p->n; i++) PQclear(p->results[i]);
  free(p->results);
  p->results = NULL;
}

void ss_pg_pipeline_free(ss_pg_pipeline *p) {
  if (!p) return;
  ss_pg_pipeline_clear_results(p);
  ss_buf_free(&p->data);
  free(p->stmts);
  free(p->voff);
  free(p->vlen);
  free(p->fmt);
  free(p->types);
  free(p);
}

size_t ss_pg_pipeline_count(const ss_pg_pipeline *p) { return p->n; }
long ss_pg_pipeline_failed(const ss_pg_pipeline *p) { return p->failed; }
PGresult **ss_pg_pipeline_slot(ss_pg_pipeline *p, size_t i) { return p->results && i < p->n ? &p->results[i] : NULL; }

void ss_pg_pipeline_sync(ss_pg_pipeline *p) {
  if (p->n) p->stmts[p->n - 1].sync_after = 1;
}

/* Whether a statement's text starts with the keyword COPY (after blanks,
 * comments and semicolons: the server's parser drops the empty statements
 * they end, so "; copy ..." is one statement, a COPY): its CopyInResponse
 * would stop the pipeline, so it is refused before anything is sent. The
 * extended protocol takes one statement per text, and a function cannot
 * COPY to or from the client, so the first keyword decides. */
static int starts_with_copy(const char *s) {
  for (;;) {
    while (isspace((unsigned char)*s) || *s == ';') s++;
    if (s[0] == '-' && s[1] == '-') {
      /* the server's lexer ends a line comment at either */
      while (*s && *s != '\n' && *s != '\r') s++;
    } else if (s[0] == '/' && s[1] == '*') {
      int depth = 0; /* SQL block comments nest */
      do {
        if (s[0] == '/' && s[1] == '*') depth++, s += 2;
        else if (s[0] == '*' && s[1] == '/') depth--, s += 2;
        else s++;
      } while (depth > 0 && *s);
    } else {
      break;
    }
  }
  return strncasecmp(s, "copy", 4) == 0 && ends_word(s + 4);
}

static int grow(void **arr, size_t *cap, size_t need, size_t size) {
  size_t c = *cap ? *cap : 16;
  void *a;
  if (need <= *cap) return 0;
  while (c < need) c *= 2;
  if (!(a = realloc(*arr, c * size))) return -1;
  *arr = a;
  *cap = c;
  return 0;
}

int ss_pg_pipeline_add(ss_pg_pipeline *p, const char *sql, int n, const Oid *types, const char *const *values,
                       const int *lengths, const int *formats, ss_error *err) {
  size_t pcap = p->pcap, np = p->np, len = p->data.len;
  pl_stmt *st;
  int k;
  if (starts_with_copy(sql))
    return ss_error_set(err, SS_ERR_INPUT, "COPY runs through conn:copy_from and conn:copy_to, not a pipeline");
  if (p->n >= (size_t)INT32_MAX) return ss_error_set(err, SS_ERR_INPUT, "too many statements in one pipeline");
  if (grow((void **)&p->stmts, &p->cap, p->n + 1, sizeof *p->stmts)) goto oom;
  /* the four parameter arrays share one capacity: grow them together */
  if (np + (size_t)n > pcap) {
    size_t c = pcap;
    if (grow((void **)&p->voff, &c, np + (size_t)n, sizeof *p->voff)) goto oom;
    c = pcap;
    if (grow((void **)&p->vlen, &c, np + (size_t)n, sizeof *p->vlen)) goto oom;
    c = pcap;
    if (grow((void **)&p->fmt, &c, np + (size_t)n, sizeof *p->fmt)) goto oom;
    c = pcap;
    if (grow((void **)&p->types, &c, np + (size_t)n, sizeof *p->types)) goto oom;
    p->pcap = c;
  }
  st = &p->stmts[p->n];
  st->sql = p->data.len;
  st->param = np;
  st->n = n;
  st->sync_after = 0;
  if (ss_buf_append(&p->data, sql, strlen(sql) + 1)) goto oom;
  for (k = 0; k < n; k++) {
    int binary = formats && formats[k];
    p->types[np + k] = types ? types[k] : 0;
    p->fmt[np + k] = binary;
    if (!values[k]) {
      p->vlen[np + k] = -1;
      p->voff[np + k] = 0;
      continue;
    }
    p->vlen[np + k] = binary ? lengths[k] : (int)strlen(values[k]);
    p->voff[np + k] = p->data.len;
    /* zero-terminated: libpq reads a text value up to its zero byte */
    if (ss_buf_append(&p->data, values[k], (size_t)p->vlen[np + k]) || ss_buf_putc(&p->data, '\0')) goto oom;
  }
  p->np = np + (size_t)n;
  if (n > p->max_params) p->max_params = n;
  p->n++;
  return 0;
oom:
  p->data.len = len; /* the statement was not queued */
  return ss_error_set(err, SS_ERR_MEMORY, "out of memory queuing a statement");
}

/* Where reading a pipeline's results stands. */
typedef struct {
  size_t sent;    /* statements sent */
  size_t i;       /* statements answered */
  size_t end;     /* end (exclusive) of the group being answered */
  int syncs;      /* sync results still to come (of the sync points sent) */
  int nulls;      /* NULLs in a row */
  int group_err;  /* the group being answered failed at its sync point */
} pl_read;

/* The end (exclusive) of the group that starts at statement i. */
static size_t group_end(const ss_pg_pipeline *p, size_t i) {
  while (i < p->n && !p->stmts[i].sync_after && i + 1 < p->n) i++;
  return i < p->n ? i + 1 : p->n;
}

/* Takes one result (NULL: the end of a statement's). Per group: each
 * statement's result, then the group's PGRES_PIPELINE_SYNC; an error that
 * comes after all its statements answered and before its sync result is
 * the group's own (its implicit COMMIT failed: a deferred constraint) and
 * goes to its last statement, whose OK result the rollback undid. A COPY's
 * answer (which starts_with_copy keeps from being sent) or anything out of
 * step: -1 (res freed). */
static int pipeline_take(ss_pg *pg, ss_pg_pipeline *p, pl_read *rd, PGresult *res) {
  if (!res) {
    /* exactly one NULL ends each statement's results (an error at a sync
     * point may have one too): two in a row would mean libpq and the
     * server are out of step */
    return ++rd->nulls > 1 ? -1 : 0;
  }
  rd->nulls = 0;
  if (PQresultStatus(res) == PGRES_PIPELINE_SYNC) {
    PQclear(res);
    if (rd->i != rd->end) return -1;
    rd->syncs--;
    rd->end = group_end(p, rd->i);
    rd->group_err = 0;
    /* past the deadline, the next group starts now: cancel it at once */
    if (rd->syncs > 0 && pg->timed_out) {
      if (cancel_request(pg, 1) == 1) {
        pg->recancel = 1; /* as soon as one on its way arrived (wait_ms) */
      } else {
        pg->recancel = 0;
        pg->cancelled_at = ss_monotonic();
      }
    }
    return 0;
  }
  if (is_copy(res)) {
    PQclear(res);
    return -1;
  }
  if (rd->i < rd->end) {
    p->results[rd->i++] = res;
    return 0;
  }
  if (rd->end > 0 && !rd->group_err && PQresultStatus(res) == PGRES_FATAL_ERROR) {
    PQclear(p->results[rd->end - 1]);
    p->results[rd->end - 1] = res;
    rd->group_err = 1;
    return 0;
  }
  PQclear(res);
  return -1;
}

/* Takes the results libpq already holds, without waiting, while the
 * pipeline is being sent: a backend that dies midway closes the
 * connection, and libpq then drops what it has not given out yet. -1 out
 * of step (the caller gives the connection up). */
static int pipeline_poll(ss_pg *pg, ss_pg_pipeline *p, pl_read *rd) {
  while ((rd->syncs > 0 || rd->i < rd->sent) && PQstatus(pg->conn) != CONNECTION_BAD && !PQisBusy(pg->conn))
    if (pipeline_take(pg, p, rd, PQgetResult(pg->conn))) return -1;
  return 0;
}

/* How much a pipeline queues before it waits for libpq to have written it. */
#define PIPELINE_FLUSH_BYTES (256 * 1024)

/* Sends every statement, with a sync after each group, then waits until
 * libpq wrote it all. Non-blocking, and reading while it waits to write:
 * a server that blocks writing results while the client blocks writing
 * statements would wait for ever. -1 with the connection broken.
 *
 * Every statement goes unnamed (parse, bind, execute at its turn, a repeat
 * of the statement before it too: a parse re-used would be checked against
 * its first analysis, and fail with 0A000 where running the statements one
 * by one works), so each is analyzed when the server reaches it, after whatever the statements before it changed, and
 * the connection's prepared statements are neither used nor touched: nothing a statement of the pipeline does to them
 * (DEALLOCATE ALL, DISCARD ALL) or to a table can make another fail, and a
 * failure is the statement's own, never retried. */
static int pipeline_send(ss_pg *pg, ss_pg_pipeline *p, const char **values, int *lengths, pl_read *rd) {
  size_t i, queued = 0;
  int k, r, group_start = 1;
  if (PQsetnonblocking(pg->conn, 1) || !PQenterPipelineMode(pg->conn)) goto broken;
  /* A sync point first: libpq 15 keeps the single-row flag of a streamed
   * statement that returned no row, and applies it to the first statement
   * of a pipeline (its rows would come one result each); a statement that
   * comes after a sync result clears it (pqPipelineProcessQueue). A sync
   * alone cannot fail, also in a failed transaction, where statement 1
   * then gets the server's 25P02, or runs when it is a ROLLBACK. */
  if (!PQpipelineSync(pg->conn)) goto broken;
  rd->syncs++;
  for (i = 0; i < p->n; i++) {
    const pl_stmt *s = &p->stmts[i];
    const char *sql = p->data.data + s->sql;
    const int *fmt = p->fmt + s->param;
    /* a deadline found passed while the last group went out (flushing it)
     * keeps the next group from going at all */
    if (group_start && pg->timed_out) break;
    group_start = 0;
    for (k = 0; k < s->n; k++) {
      size_t j = s->param + (size_t)k;
      values[k] = p->vlen[j] < 0 ? NULL : p->data.data + p->voff[j];
      lengths[k] = p->vlen[j] < 0 ? 0 : p->vlen[j];
      queued += (size_t)lengths[k];
    }
    if (!PQsendQueryParams(pg->conn, sql, s->n, p->types + s->param, values, lengths, fmt, 0)) goto broken;
    rd->sent++;
    queued += strlen(sql) + 64;
    if (s->sync_after || i + 1 == p->n) {
      if (!PQpipelineSync(pg->conn)) goto broken;
      rd->syncs++;
      /* past the deadline (or interrupted), the groups not sent yet never
       * go: only whole groups, so none commits in part */
      if (pg->timed_out) break;
      group_start = 1;
    }
    if (pipeline_poll(pg, p, rd)) goto broken;
    /* what libpq holds goes out as it goes, so that a timeout can keep the
     * rest from being sent (and libpq's buffer stays small) */
    if (queued >= PIPELINE_FLUSH_BYTES) {
      queued = 0;
      while ((r = PQflush(pg->conn)) == 1)
        if (wait_socket(pg, 1) || !PQconsumeInput(pg->conn) || pipeline_poll(pg, p, rd)) goto broken;
      if (r < 0) goto broken;
    }
  }
  while ((r = PQflush(pg->conn)) == 1)
    if (wait_socket(pg, 1) || !PQconsumeInput(pg->conn) || pipeline_poll(pg, p, rd)) goto broken;
  if (r == 0) return 0;
broken:
  pg->broken = 1;
  return -1;
}

/* Reads each statement's result into p->results, up to the last sync
 * result. On a connection that failed (a backend that died, maybe while
 * the pipeline was still being sent) what libpq already holds is read all
 * the same, without waiting, so the statement the backend ran when it died
 * gets its FATAL (57P01) and the statements before it their results. -1
 * with the connection broken. */
static int pipeline_read(ss_pg *pg, ss_pg_pipeline *p, pl_read *rdp) {
  pl_read rd = *rdp;
  while (rd.syncs > 0) {
    PGresult *res;
    if (pg->broken || PQstatus(pg->conn) == CONNECTION_BAD) {
      /* no waiting: libpq parses what it holds; once that is all, it
       * makes up a "connection lost" result (no SQLSTATE), the end */
      if (PQstatus(pg->conn) != CONNECTION_BAD && PQisBusy(pg->conn)) break;
      res = PQgetResult(pg->conn);
      if (res && PQresultStatus(res) == PGRES_FATAL_ERROR && !PQresultErrorField(res, PG_DIAG_SQLSTATE)) {
        PQclear(res);
        break;
      }
    } else {
      res = next_result(pg);
      if (pg->broken || PQstatus(pg->conn) == CONNECTION_BAD) {
        /* a FATAL the server sent before it closed (57P01) is the statement's answer */
        if (res && PQresultErrorField(res, PG_DIAG_SQLSTATE) && rd.i < rd.end && !p->results[rd.i])
          p->results[rd.i] = res;
        else
          PQclear(res);
        pg->broken = 1;
        break;
      }
    }
    if (pipeline_take(pg, p, &rd, res)) break;
  }
  pg->recancel = 0;
  if (rd.syncs == 0 && !pg->broken) return 0;
  pg->broken = 1;
  /* the statement named when every one that came answered: the last of
   * the group left without its sync result */
  p->unsynced = rd.end > rd.i ? rd.i : rd.end ? rd.end - 1 : 0;
  return -1;
}

int ss_pg_pipeline_run(ss_pg *pg, ss_pg_pipeline *p, ss_error *err) {
  const char **values = NULL;
  int *lengths = NULL, read_failed = 0, lost = 0;
  pl_read rd = {0, 0, 0, 0, 0, 0};
  size_t i;
  ss_pg_pipeline_clear_results(p);
  p->failed = -1;
  if (p->n == 0) return 0;
  start_call(pg, pg->call_timeout);
  if (ready(pg, err)) return -1;
  pg->ran_statement = 1;
  for (i = 0; i < p->n; i++)
    if (text_touches_session(p->data.data + p->stmts[i].sql)) pg->session_dirty = 1;
  p->results = calloc(p->n, sizeof *p->results);
  values = calloc((size_t)p->max_params + 1, sizeof *values);
  lengths = calloc((size_t)p->max_params + 1, sizeof *lengths);
  if (!p->results || !values || !lengths) {
    free(values);
    free(lengths);
    return ss_error_set(err, SS_ERR_MEMORY, "out of memory sending a pipeline");
  }
  pg->pipelining = 1;
  pg->recancel = 0;
  /* what was sent is read even when sending failed: a backend that died
   * midway answered the statements before the one it ran */
  pipeline_send(pg, p, values, lengths, &rd);
  if (!pipeline_read(pg, p, &rd)) {
    /* back to a plain connection; a broken one is closed as it is (a
     * blocking flush of what it still holds could wait for ever) */
    if (PQsetnonblocking(pg->conn, 0) || !PQexitPipelineMode(pg->conn)) pg->broken = 1;
  } else {
    read_failed = 1;
  }
  pg->pipelining = 0;
  free(values);
  free(lengths);
  /* what every statement that ran did to the session, a failure's later
   * groups included (DEALLOCATE ALL: the cache forgets its statements,
   * which no statement of the pipeline ran as); then the first failure,
   * not the statements the server skipped after it */
  for (i = 0; i < p->n && !pg->broken; i++)
    if (p->results[i] && result_ok(p->results[i])) note_result(pg, p->results[i]);
  for (i = 0; i < p->n && p->failed < 0; i++) {
    PGresult *res = p->results[i];
    if (res && (result_ok(res) || PQresultStatus(res) == PGRES_PIPELINE_ABORTED)) continue;
    p->failed = (long)i;
  }
  /* no answer at all after the last one that came, or skipped for no reason seen */
  for (i = 0; i < p->n && p->failed < 0; i++)
    if (!p->results[i] || !result_ok(p->results[i])) p->failed = (long)i;
  /* every statement answered, but the read stopped before the end (its
   * group's sync result never came): never a success */
  if (p->failed < 0 && read_failed) {
    p->failed = (long)p->unsynced;
    lost = 1;
  }
  if (p->failed < 0) return 0;
  {
    char why[sizeof err->message];
    PGresult *res = lost ? NULL : p->results[p->failed];
    if (res && PQresultStatus(res) == PGRES_PIPELINE_ABORTED) {
      ss_error_set(err, SS_ERR_POSTGRES, "the server skipped the statement (the pipeline was aborted)");
    } else if (!res && !pg->broken && pg->timed_out) {
      /* a later group, not sent: the call ran out of time or was interrupted first */
      if (pg->interrupted) {
        ss_error_set(err, SS_ERR_POSTGRES, "not sent: the call was interrupted");
      } else {
        ss_error_set(err, SS_ERR_TIMEOUT, "not sent: the pipeline ran past the call's timeout of %g s", pg->limit);
      }
      ss_strlcpy(err->code, "57014", sizeof err->code);
    } else {
      ss_pg_fail(pg, res, err);
    }
    ss_strlcpy(why, err->message, sizeof why);
    snprintf(err->message, sizeof err->message, "statement %ld: %.900s", p->failed + 1, why);
  }
  return -1;
}
