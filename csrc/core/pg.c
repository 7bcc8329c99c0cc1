#include "pg.h"

#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

struct ss_pg {
  PGconn *conn;
  int broken;
  int cache_max, cache_count;
  unsigned long next_id;
  stmt *buckets[BUCKETS];
  stmt *newest, *oldest;
};

ss_pg_settings *ss_pg_settings_new(const char *conninfo) {
  ss_pg_settings *s = calloc(1, sizeof *s);
  size_t n = strlen(conninfo) + 1;
  if (!s || !(s->conninfo = malloc(n))) {
    free(s);
    return NULL;
  }
  memcpy(s->conninfo, conninfo, n);
  ss_strlcpy(s->application_name, "semstore", sizeof s->application_name);
  s->connect_timeout_s = 10;
  s->statement_timeout_ms = 30000;
  s->lock_timeout_ms = 10000;
  s->idle_in_transaction_timeout_ms = 60000;
  s->statement_cache_size = 256;
  return s;
}

void ss_pg_settings_free(ss_pg_settings *s) {
  if (!s) return;
  /* the conninfo holds the password: do not leave it in freed memory */
  memset(s->conninfo, 0, strlen(s->conninfo));
  free(s->conninfo);
  free(s);
}

static void set_connection_error(ss_pg *pg, ss_error *err, const char *what) {
  char msg[sizeof err->message];
  const char *raw = pg && pg->conn ? PQerrorMessage(pg->conn) : "";
  size_t n;
  ss_redact(raw, msg, sizeof msg);
  n = strlen(msg);
  while (n && (msg[n - 1] == '\n' || msg[n - 1] == ' ')) msg[--n] = '\0';
  ss_error_set(err, SS_ERR_CONNECTION, "%s%s%s", what, *msg ? ": " : "", msg);
  if (pg) pg->broken = 1;
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
  const char *keys[] = {"application_name", "connect_timeout", "client_encoding", "gssencmode", "options",
                        "dbname", NULL};
  const char *vals[] = {s->application_name, timeout, "UTF8", "disable", options, s->conninfo, NULL};
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
  if (!*s->conninfo) vals[5] = NULL; /* libpq's PG* variables and service files */
  pg->conn = PQconnectdbParams(keys, vals, 1);
  if (!pg->conn || PQstatus(pg->conn) != CONNECTION_OK) {
    set_connection_error(pg, err, "could not connect to PostgreSQL");
    ss_pg_close(pg);
    return NULL;
  }
  pg->cache_max = s->statement_cache_size > 0 ? s->statement_cache_size : 1;
  PQsetNoticeReceiver(pg->conn, on_notice, pg);
  return pg;
}

void ss_pg_close(ss_pg *pg) {
  int i;
  if (!pg) return;
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
    set_connection_error(pg, err, "connection to PostgreSQL lost");
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
    snprintf(sql, sizeof sql, "DEALLOCATE %s", st->name);
    PQclear(PQexec(pg->conn, sql));
  }
  free(st->key);
  free(st);
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

/* Finds or prepares the statement; NULL with err set. */
static stmt *prepared(ss_pg *pg, const char *sql, int n, const Oid *types, ss_error *err) {
  size_t len;
  uint64_t h;
  stmt *st;
  PGresult *res;
  char *key = make_key(sql, n, types, &len);
  if (!key) {
    ss_error_set(err, SS_ERR_MEMORY, "out of memory preparing a statement");
    return NULL;
  }
  h = fnv1a(key, len);
  if ((st = lookup(pg, key, len, h))) {
    free(key);
    unlink_use(pg, st);
    link_newest(pg, st);
    return st;
  }
  if (!(st = calloc(1, sizeof *st))) {
    free(key);
    ss_error_set(err, SS_ERR_MEMORY, "out of memory preparing a statement");
    return NULL;
  }
  st->key = key;
  st->keylen = len;
  st->hash = h;
  snprintf(st->name, sizeof st->name, "ss_%lu", ++pg->next_id);
  res = PQprepare(pg->conn, st->name, sql, n, types);
  if (!result_ok(res)) {
    ss_pg_fail(pg, res, err);
    PQclear(res);
    free(st->key);
    free(st);
    return NULL;
  }
  PQclear(res);
  if (pg->cache_count >= pg->cache_max) forget(pg, pg->oldest, 1);
  st->chain = pg->buckets[h % BUCKETS];
  pg->buckets[h % BUCKETS] = st;
  link_newest(pg, st);
  pg->cache_count++;
  return st;
}

static int stream_ok(const PGresult *res) {
  return result_ok(res) || (res && PQresultStatus(res) == PGRES_SINGLE_TUPLE);
}

/* Reads and drops what is left of the current statement's results. */
static void drain(ss_pg *pg) {
  PGresult *res;
  while ((res = PQgetResult(pg->conn))) PQclear(res);
}

static PGresult *run(ss_pg *pg, const char *sql, int n, const Oid *types, const char *const *values,
                     const int *lengths, const int *formats, int single_row, ss_error *err) {
  int attempt;
  /* a stream its reader abandoned (an error raised while decoding) */
  if (PQtransactionStatus(pg->conn) == PQTRANS_ACTIVE) drain(pg);
  for (attempt = 0; attempt < 2; attempt++) {
    int idle = PQtransactionStatus(pg->conn) == PQTRANS_IDLE;
    const char *code;
    PGresult *res;
    stmt *st = prepared(pg, sql, n, types, err);
    if (!st) return NULL;
    if (!PQsendQueryPrepared(pg->conn, st->name, n, values, lengths, formats, 0)) {
      ss_pg_fail(pg, NULL, err);
      return NULL;
    }
    if (single_row) PQsetSingleRowMode(pg->conn);
    res = PQgetResult(pg->conn);
    if (stream_ok(res)) {
      if (PQresultStatus(res) != PGRES_SINGLE_TUPLE) drain(pg);
      return res;
    }
    drain(pg);
    /* The statement vanished (DISCARD ALL) or a table it reads changed
     * shape: prepare it again. Outside a transaction nothing ran, so one
     * more try is safe; inside one the transaction is aborted anyway. */
    code = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    if (code && (strcmp(code, "26000") == 0 || strcmp(code, "0A000") == 0)) {
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
  PGresult *res = PQgetResult(pg->conn);
  if (stream_ok(res)) {
    /* after the final result, read the end marker so the connection is idle */
    if (PQresultStatus(res) != PGRES_SINGLE_TUPLE) drain(pg);
    return res;
  }
  /* NULL here means the final result never came: the connection broke */
  ss_pg_fail(pg, res, err);
  PQclear(res);
  drain(pg);
  return NULL;
}

PGresult *ss_pg_exec(ss_pg *pg, const char *sql, ss_error *err) {
  PGresult *res = PQexec(pg->conn, sql);
  if (result_ok(res)) return res;
  ss_pg_fail(pg, res, err);
  PQclear(res);
  return NULL;
}

int ss_pg_copy_begin(ss_pg *pg, const char *sql, ss_error *err) {
  PGresult *res = PQexec(pg->conn, sql);
  if (res && PQresultStatus(res) == PGRES_COPY_IN) {
    PQclear(res);
    return 0;
  }
  if (result_ok(res)) {
    PQclear(res);
    return ss_error_set(err, SS_ERR_INPUT, "not a COPY ... FROM STDIN statement: %s", sql);
  }
  ss_pg_fail(pg, res, err);
  PQclear(res);
  return -1;
}

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
  return PQputCopyEnd(pg->conn, abort_reason) == 1 ? 0 : ss_pg_fail(pg, NULL, err);
}

long long ss_pg_copy_result(ss_pg *pg, ss_error *err) {
  PGresult *res;
  long long rows = -1;
  int failed = 0;
  /* the COPY's own result, then NULL; an error the server raised midway
   * (a constraint, the partition bound) arrives here */
  while ((res = PQgetResult(pg->conn))) {
    if (PQresultStatus(res) == PGRES_COMMAND_OK) {
      rows = strtoll(PQcmdTuples(res), NULL, 10);
    } else if (!failed) {
      failed = 1;
      ss_pg_fail(pg, res, err);
    }
    PQclear(res);
    if (PQstatus(pg->conn) == CONNECTION_BAD) break;
  }
  if (!failed && rows < 0) return ss_pg_fail(pg, NULL, err);
  return failed ? -1 : rows;
}

PGTransactionStatusType ss_pg_transaction_status(const ss_pg *pg) {
  return PQtransactionStatus(pg->conn);
}

int ss_pg_backend_pid(const ss_pg *pg) { return PQbackendPID(pg->conn); }

int ss_pg_is_broken(const ss_pg *pg) {
  return pg->broken || PQstatus(pg->conn) != CONNECTION_OK;
}

/* ---- pool ops ---- */

static void *op_open(void *ctx, ss_error *err) { return ss_pg_connect(ctx, err); }

static void op_close(void *ctx, void *conn) {
  (void)ctx;
  ss_pg_close(conn);
}

static int op_ping(void *ctx, void *conn, int deep) {
  ss_pg *pg = conn;
  struct pollfd pfd;
  PGnotify *n;
  (void)ctx;
  if (ss_pg_is_broken(pg)) return -1;
  /* An idle connection has nothing to read unless the server said goodbye
   * (terminated backend, shutdown) or sent a notification: a free check. */
  pfd.fd = PQsocket(pg->conn);
  pfd.events = POLLIN;
  pfd.revents = 0;
  if (pfd.fd < 0) return -1;
  if (poll(&pfd, 1, 0) > 0) {
    if (!PQconsumeInput(pg->conn) || PQstatus(pg->conn) != CONNECTION_OK) return -1;
    /* parses what arrived: notifications, or a FATAL that on_notice sees */
    while ((n = PQnotifies(pg->conn))) PQfreemem(n);
    if (ss_pg_is_broken(pg)) return -1;
  }
  if (deep) {
    PGresult *res = PQexec(pg->conn, "");
    int ok = res && PQresultStatus(res) == PGRES_EMPTY_QUERY;
    PQclear(res);
    if (!ok) return -1;
  }
  return 0;
}

static int op_reset(void *ctx, void *conn) {
  ss_pg *pg = conn;
  (void)ctx;
  switch (PQtransactionStatus(pg->conn)) {
  case PQTRANS_IDLE:
    return 0;
  case PQTRANS_INTRANS:
  case PQTRANS_INERROR: {
    PGresult *res = PQexec(pg->conn, "ROLLBACK");
    int ok = res && PQresultStatus(res) == PGRES_COMMAND_OK;
    PQclear(res);
    return ok ? 0 : -1;
  }
  default: /* a command still running, or a dead connection */
    return -1;
  }
}

static int op_broken(void *ctx, void *conn) {
  (void)ctx;
  return ss_pg_is_broken(conn);
}

static void op_free_ctx(void *ctx) { ss_pg_settings_free(ctx); }

const ss_pool_ops ss_pg_pool_ops = {op_open, op_close, op_ping, op_reset, op_broken, op_free_ctx};
