#include "chunks_bulk.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "hashtext.h"
#include "pg_copy.h"
#include "repo.h"
#include "repo_rules.h"

/* A row that comes this long after the previous one means a slow source:
 * the COPYs under way are then sent to their end before the caller gets
 * control back, since there is nothing to overlap with and a statement
 * held open while the source works counts against statement_timeout.
 * Seconds. */
#define SLOW_SOURCE 0.05
/* Encoded bytes, or seconds, between two looks at the connections'
 * sockets while rows come. */
#define PUMP_EVERY ((size_t)64 << 10)
#define PUMP_AFTER 0.01
/* A connection idle in its transaction this long while the others work
 * runs a statement, so idle_in_transaction_timeout does not end it.
 * Seconds. */
#define KEEPALIVE 1.0
/* How long a statement that settles an abandoned parallel bulk may wait
 * for the server, when the caller set no limit. Seconds. */
#define SETTLE_TIMEOUT 5.0

/* What a connection of the bulk is doing. */
enum { LANE_IDLE, LANE_FEEDING, LANE_ENDING, LANE_WAITING };

typedef struct {
  ss_pg *pg;
  ss_pg_tx tx;
  int state;
  int part;      /* the partition being copied */
  long rows;     /* its rows */
  ss_buf out;    /* its COPY stream, trailer included */
  size_t fed;    /* bytes of out handed to libpq */
  double since;  /* when the COPY began, or when the lane last ran a statement */
  size_t load;   /* bytes of the partitions given to it */
  int prepared;  /* PREPARE TRANSACTION ran: the part waits for the decision */
} lane;

struct ss_bulk {
  lane lanes[SS_BULK_MAX_CONNECTIONS];
  int nlanes;
  int turn;          /* the lane idle_lane looks at first */
  const char *fewer; /* why fewer connections than given, or NULL */
  char fewer_why[160];
  char bulk_id[37];  /* the two-phase commit's uuid; "" on one connection */
  int decided;       /* the commit decision is written: every part must commit */
  int undecidable;   /* whether a decision was written is not known: recovery settles the parts */
  int committed;     /* every part committed: the decision row is to be deleted */
  void (*on_step)(void *ud, const char *step, int k);
  void *step_ud;
  size_t budget;
  int with_id;
  long expected;
  int nparts;
  ss_buf *parts;      /* one COPY stream per partition, header included once it has rows */
  long *part_rows;
  /* the lane each partition is copied on, once it was copied: always the
   * same, so that rows of one partition share a transaction (a unique
   * index on a leaf sees its duplicates at once, where two transactions
   * would wait on each other until the two-phase commit, unseen by the
   * server's deadlock detector) */
  signed char *part_lane;
  double last_pump;   /* when the sockets were last looked at */
  double last_row;    /* when the caller got control back after the last row */
  size_t buffered;    /* bytes of encoded rows in the partitions' buffers */
  size_t since_pump;  /* bytes encoded since the sockets were last looked at */
  long long *ids;     /* ids taken from the sequence, not yet used */
  long ids_len, ids_next;
  long rows;          /* rows taken */
  int over;           /* failed, abandoned or finished: takes nothing more */
  long bad_row;       /* the row whose fault failed the bulk, or 0 */
  int bad_has_field;
  char bad_field[128];
};

/* Whether this role can use the decision table: it exists (migration
 * 0007) and the role may read, write and delete its rows. */
#define DECISIONS_USABLE                                                                                    \
  "(to_regclass('semstore_bulk_decisions') IS NOT NULL "                                                 \
  "AND has_table_privilege('semstore_bulk_decisions', 'INSERT') "                                        \
  "AND has_table_privilege('semstore_bulk_decisions', 'UPDATE') "                                        \
  "AND has_table_privilege('semstore_bulk_decisions', 'SELECT') "                                        \
  "AND has_table_privilege('semstore_bulk_decisions', 'DELETE'))"

static void set_fewer(ss_bulk *b, const char *why) {
  ss_strlcpy(b->fewer_why, why, sizeof b->fewer_why);
  b->fewer = b->fewer_why;
}

/* Whether the more connections can copy atomically, asked on pg: fills
 * b->bulk_id, or says why not with set_fewer. -1 when pg failed. */
static int can_go_parallel(ss_bulk *b, ss_pg *pg, int n, ss_error *err) {
  PGresult *res;
  char why[160];
  long most, free_slots;
  if (PQtransactionStatus(ss_pg_conn(pg)) != PQTRANS_IDLE) {
    set_fewer(b, "the connection is inside a transaction, which one connection's COPYs must join");
    return 0;
  }
  /* the slots are the whole server's: other prepared transactions hold some */
  res = ss_pg_query(pg, "SELECT current_setting('max_prepared_transactions')::int, "
                        "to_regclass('semstore_bulk_decisions') IS NOT NULL, gen_random_uuid()::text, "
                        "(SELECT count(*) FROM pg_prepared_xacts), " DECISIONS_USABLE,
                    0, NULL, NULL, NULL, NULL, err);
  if (!res) return -1;
  most = strtol(PQgetvalue(res, 0, 0), NULL, 10);
  free_slots = most - strtol(PQgetvalue(res, 0, 3), NULL, 10);
  if (free_slots < n) {
    snprintf(why, sizeof why, "the server's max_prepared_transactions is %ld, with %ld free: fewer than the %d "
             "connections", most, free_slots < 0 ? 0 : free_slots, n);
    set_fewer(b, why);
  } else if (strcmp(PQgetvalue(res, 0, 1), "t") != 0) {
    set_fewer(b, "semstore_bulk_decisions is missing (migration 0007_bulk_decisions)");
  } else if (strcmp(PQgetvalue(res, 0, 4), "t") != 0) {
    set_fewer(b, "this role may not write semstore_bulk_decisions (it needs SELECT, INSERT, UPDATE and DELETE)");
  } else {
    ss_strlcpy(b->bulk_id, PQgetvalue(res, 0, 2), sizeof b->bulk_id);
  }
  PQclear(res);
  return 0;
}

ss_bulk *ss_bulk_new(ss_pg *pg, const ss_bulk_options *opts, ss_error *err) {
  ss_bulk *b;
  int k, nparts = ss_repo_partitions(pg, err);
  if (nparts < 0) return NULL;
  if (!(b = calloc(1, sizeof *b))) goto oom;
  b->budget = opts->budget ? opts->budget : SS_BULK_BUDGET;
  b->with_id = opts->return_ids;
  b->expected = opts->expected_rows;
  b->on_step = opts->on_step;
  b->step_ud = opts->step_ud;
  b->nparts = nparts;
  b->nlanes = 1;
  b->lanes[0].pg = pg;
  if (opts->nmore > 0) {
    int n = opts->nmore + 1 > SS_BULK_MAX_CONNECTIONS ? SS_BULK_MAX_CONNECTIONS : opts->nmore + 1;
    if (can_go_parallel(b, pg, n, err)) {
      free(b);
      return NULL;
    }
    if (!b->fewer) {
      /* the caller's limit on waiting (conn:settimeout) holds on every connection */
      for (k = 1; k < n; k++) {
        b->lanes[k].pg = opts->more[k - 1];
        ss_pg_set_timeout(b->lanes[k].pg, ss_pg_timeout(pg));
      }
      b->nlanes = n;
      if (n < opts->nmore + 1) set_fewer(b, "a bulk copies on 16 connections at most");
    }
  }
  b->parts = calloc((size_t)nparts, sizeof *b->parts);
  b->part_rows = calloc((size_t)nparts, sizeof *b->part_rows);
  b->part_lane = malloc((size_t)nparts);
  if (!b->parts || !b->part_rows || !b->part_lane) goto oom;
  memset(b->part_lane, -1, (size_t)nparts);
  return b;
oom:
  ss_bulk_free(b);
  ss_error_set(err, SS_ERR_MEMORY, "out of memory");
  return NULL;
}

int ss_bulk_connections(const ss_bulk *b, const char **why_fewer) {
  *why_fewer = b->fewer;
  return b->nlanes;
}

void ss_bulk_free(ss_bulk *b) {
  int i;
  if (!b) return;
  for (i = 0; b->parts && i < b->nparts; i++) ss_buf_free(&b->parts[i]);
  for (i = 0; i < b->nlanes; i++) ss_buf_free(&b->lanes[i].out);
  free(b->parts);
  free(b->part_rows);
  free(b->part_lane);
  free(b->ids);
  free(b);
}

/* ---- the COPYs, fed without blocking ---- */

/* Reads the outcome of l's COPY, whose data all went: waits for it when
 * the server is not done. The lane is idle after, whatever the outcome. */
static int lane_outcome(lane *l, ss_error *err) {
  long long copied = ss_pg_copy_result(l->pg, err);
  long want = l->rows;
  int part = l->part;
  l->state = LANE_IDLE;
  l->since = ss_monotonic();
  ss_buf_free(&l->out);
  if (copied < 0) return -1;
  if (copied != want)
    return ss_error_set(err, SS_ERR_POSTGRES, "COPY into chunks_p%d took %lld rows of %ld", part, copied, want);
  return 0;
}

/* Moves l's COPY on as far as it goes without waiting. */
static int lane_step(lane *l, ss_error *err) {
  size_t n;
  int r;
  switch (l->state) {
  case LANE_FEEDING:
    r = ss_pg_copy_feed(l->pg, l->out.data + l->fed, l->out.len - l->fed, &n, err);
    l->fed += n;
    if (r) break;
    l->state = LANE_ENDING;
    if ((r = ss_pg_copy_end(l->pg, err))) break;
    l->state = LANE_WAITING;
    return lane_step(l, err); /* the outcome may be there already */
  case LANE_WAITING:
    if ((r = ss_pg_busy(l->pg, err))) break;
    return lane_outcome(l, err);
  case LANE_ENDING:
    if ((r = ss_pg_copy_flushed(l->pg, err))) break;
    l->state = LANE_WAITING;
    return lane_step(l, err);
  default:
    return 0;
  }
  if (r < 0) {
    /* the server's own error, when it sent one, says more than the socket's */
    ss_error own;
    if (l->state == LANE_FEEDING) ss_pg_copy_done(l->pg, "semstore: sending failed", &own);
    if (lane_outcome(l, &own) && !ss_pg_is_broken(l->pg)) *err = own;
    return -1;
  }
  return 0;
}

/* Waits until a lane moved on: for its socket to take more data, or for
 * the server's answer. Lanes with nothing under way are left out. */
static int wait_lanes(ss_bulk *b, ss_error *err) {
  ss_pg *pgs[SS_BULK_MAX_CONNECTIONS];
  int write[SS_BULK_MAX_CONNECTIONS], i, n = 0;
  for (i = 0; i < b->nlanes; i++)
    if (b->lanes[i].state != LANE_IDLE) {
      pgs[n] = b->lanes[i].pg;
      write[n++] = b->lanes[i].state != LANE_WAITING;
    }
  /* idle connections in a transaction get their keepalive (pump) meanwhile */
  return n ? ss_pg_wait_any(pgs, write, n, b->nlanes > 1 ? KEEPALIVE / 2 : 0, err) : 0;
}

/* Moves every lane on without waiting, and keeps idle ones alive. */
static int pump(ss_bulk *b, ss_error *err) {
  int i;
  double now = ss_monotonic();
  b->since_pump = 0;
  b->last_pump = now;
  for (i = 0; i < b->nlanes; i++) {
    lane *l = &b->lanes[i];
    if (lane_step(l, err)) return -1;
    /* one connection's partitions may get no rows for a while */
    if (l->state == LANE_IDLE && l->tx.open && b->nlanes > 1 && now - l->since > KEEPALIVE) {
      PGresult *res = ss_pg_exec(l->pg, "SELECT 1", err);
      if (!res) return -1;
      PQclear(res);
      l->since = ss_monotonic();
    }
  }
  return 0;
}

/* A lane with nothing under way, waiting for one when all are busy. The
 * lanes take turns, so that work spreads over all of them even when the
 * server keeps up with the caller. */
static lane *idle_lane(ss_bulk *b, ss_error *err) {
  for (;;) {
    int i;
    if (pump(b, err)) return NULL;
    for (i = 0; i < b->nlanes; i++) {
      int k = (b->turn + i) % b->nlanes;
      if (b->lanes[k].state == LANE_IDLE) {
        b->turn = k + 1;
        return &b->lanes[k];
      }
    }
    if (wait_lanes(b, err)) return NULL;
  }
}

/* Sends every COPY under way to its end, waiting for the sockets as need
 * be (not for the server's outcome). */
static int feed_all(ss_bulk *b, ss_error *err) {
  int i;
  for (i = 0; i < b->nlanes; i++) {
    lane *l = &b->lanes[i];
    while (l->state == LANE_FEEDING || l->state == LANE_ENDING) {
      if (ss_pg_wait_any(&l->pg, (int[]){1}, 1, b->nlanes > 1 ? KEEPALIVE / 2 : 0, err) || pump(b, err)) return -1;
    }
  }
  return 0;
}

/* Waits until every lane is done, reading every outcome. */
static int drain_lanes(ss_bulk *b, ss_error *err) {
  for (;;) {
    int i, busy = 0;
    if (pump(b, err)) return -1;
    for (i = 0; i < b->nlanes; i++) busy |= b->lanes[i].state != LANE_IDLE;
    if (!busy) return 0;
    if (wait_lanes(b, err)) return -1;
  }
}

/* Starts copying one partition's stream into its leaf table on an idle
 * lane, handing the stream over to it: the partition starts afresh, and
 * the server takes the rows in while the caller makes the next ones. */
static int flush_part(ss_bulk *b, int part, lane *l, ss_error *err) {
  char sql[320];
  ss_buf *in = &b->parts[part];
  size_t encoded = in->len; /* what `buffered` counted, without the trailer */
  b->part_lane[part] = (signed char)(l - b->lanes);
  l->load += encoded;
  if (!l->tx.open && ss_pg_tx_begin(l->pg, &l->tx, NULL, err)) return -1;
  snprintf(sql, sizeof sql, "COPY chunks_p%d (%s" SS_CHUNK_COLUMNS ") FROM STDIN (FORMAT binary)", part,
           b->with_id ? "id, " : "");
  if (ss_copy_trailer(in)) return ss_error_set(err, SS_ERR_MEMORY, "out of memory");
  if (ss_pg_copy_begin(l->pg, sql, err)) return -1;
  l->out = *in;
  memset(in, 0, sizeof *in);
  l->fed = 0;
  l->part = part;
  l->rows = b->part_rows[part];
  l->since = ss_monotonic();
  l->state = LANE_FEEDING;
  b->buffered -= encoded;
  b->part_rows[part] = 0;
  return lane_step(l, err);
}

/* Copies the largest partitions whose lane is free (a partition not yet
 * copied goes to the free lane with the least so far) until the buffers
 * hold no more than `keep` bytes, waiting for a lane when none is free. */
static int flush_down_to(ss_bulk *b, size_t keep, ss_error *err) {
  while (b->buffered > keep) {
    int i, part = -1;
    lane *fresh = NULL; /* where a partition not yet copied would go */
    if (pump(b, err)) return -1;
    for (i = 0; i < b->nlanes; i++) {
      lane *l = &b->lanes[(b->turn + i) % b->nlanes];
      if (l->state == LANE_IDLE && (!fresh || l->load < fresh->load)) fresh = l;
    }
    for (i = 0; i < b->nparts; i++) {
      int k = b->part_lane[i];
      if (!b->part_rows[i] || (k >= 0 ? b->lanes[k].state != LANE_IDLE : !fresh)) continue;
      if (part < 0 || b->parts[i].len > b->parts[part].len) part = i;
    }
    if (part < 0) {
      if (wait_lanes(b, err)) return -1;
      continue;
    }
    b->turn++;
    if (flush_part(b, part, b->part_lane[part] >= 0 ? &b->lanes[b->part_lane[part]] : fresh, err)) return -1;
  }
  return 0;
}

/* ---- the end: commit on one connection, two phases on more ---- */

static void step(ss_bulk *b, const char *what, int k) {
  if (b->on_step) b->on_step(b->step_ud, what, k);
}

static void gid(const ss_bulk *b, int k, char *out, size_t size) {
  snprintf(out, size, "semstore:bulk:%s:%d", b->bulk_id, k);
}

/* Runs a statement of the two-phase commit on l's connection, or on any
 * other lane's when that one is lost (COMMIT PREPARED and ROLLBACK
 * PREPARED may run on any session of the database). */
static int settle_sql(ss_bulk *b, lane *l, const char *sql, ss_error *err) {
  int i;
  PGresult *res = NULL;
  ss_error_set(err, SS_ERR_CONNECTION, "every connection of the bulk was lost");
  if (!ss_pg_is_broken(l->pg)) res = ss_pg_exec(l->pg, sql, err);
  for (i = 0; !res && i < b->nlanes; i++)
    if (&b->lanes[i] != l && !ss_pg_is_broken(b->lanes[i].pg)) res = ss_pg_exec(b->lanes[i].pg, sql, err);
  if (!res) return -1;
  PQclear(res);
  return 0;
}

/* The decision on pg: 'c' commit, 'r' rollback, whichever was written
 * first for this bulk (the primary key orders a coordinator and a
 * recovery that race). `parts` > 0 is the coordinator's: it writes commit
 * only while all its parts are still prepared, since a recovery that
 * rolled them back may have deleted its rollback row already. Recovery
 * (parts 0) writes rollback. 0 with err set when pg could not write it. */
static char decide(ss_pg *pg, const char *bulk_id, int parts, ss_error *err) {
  char n[16];
  const char *values[2] = {bulk_id, n};
  char got;
  PGresult *res;
  snprintf(n, sizeof n, "%d", parts);
  res = parts > 0
            ? ss_pg_query(pg,
                          "INSERT INTO semstore_bulk_decisions (bulk, outcome) SELECT $1::uuid, 'commit' "
                          "WHERE (SELECT count(*) FROM pg_prepared_xacts WHERE gid LIKE 'semstore:bulk:' || $1 || "
                          "':%') = $2::int ON CONFLICT (bulk) DO UPDATE SET bulk = EXCLUDED.bulk RETURNING outcome",
                          2, NULL, values, NULL, NULL, err)
            : ss_pg_query(pg,
                          "INSERT INTO semstore_bulk_decisions (bulk, outcome) VALUES ($1::uuid, 'rollback') "
                          "ON CONFLICT (bulk) DO UPDATE SET bulk = EXCLUDED.bulk RETURNING outcome",
                          1, NULL, values, NULL, NULL, err);
  if (!res) return 0;
  /* no row: a part is gone, rolled back by a recovery */
  got = PQntuples(res) == 1 ? PQgetvalue(res, 0, 0)[0] : 'r';
  PQclear(res);
  return got;
}

/* Whether a server of the bulk did not even answer a cancel (stopped, cut
 * off): then it is asked nothing more. Every connection is given up; the
 * server ends the transactions that are not prepared when it sees them
 * go, and recovery settles the prepared ones. */
static int give_up_if_unresponsive(ss_bulk *b) {
  int k, unresponsive = 0;
  for (k = 0; k < b->nlanes; k++) unresponsive |= ss_pg_unresponsive(b->lanes[k].pg);
  if (unresponsive)
    for (k = 0; k < b->nlanes; k++) ss_pg_give_up(b->lanes[k].pg);
  return unresponsive;
}

/* Commits every prepared part; a part no connection could commit is left
 * for ss_bulk_recover, which finds the decision. */
static int commit_parts(ss_bulk *b, ss_error *err) {
  int k, failed = 0;
  for (k = 0; k < b->nlanes; k++) {
    lane *l = &b->lanes[k];
    char sql[128], name[80];
    if (!l->prepared) continue;
    give_up_if_unresponsive(b); /* then the commit fails at once: recovery's */
    step(b, "commit", k);
    gid(b, k, name, sizeof name);
    snprintf(sql, sizeof sql, "COMMIT PREPARED '%s'", name);
    /* 42704, no such part: a recovery that read the decision committed it */
    if (settle_sql(b, l, sql, err) && strcmp(err->code, "42704") != 0) failed = 1;
    else l->prepared = 0;
  }
  if (failed) {
    char why[sizeof err->message];
    ss_strlcpy(why, err->message, sizeof why);
    return ss_error_set(err, SS_ERR_CONNECTION,
                        "the bulk is decided and will commit whole, but a part could not be committed yet (%s); "
                        "`semstore recover` or the next process's first connection commits it", why);
  }
  return 0;
}

/* Rolls every part back: prepared ones by name, the others on their own
 * connections. A prepared part no connection could reach is rolled back
 * by ss_bulk_recover, since no commit decision exists. */
static void rollback_parts(ss_bulk *b) {
  int k;
  for (k = 0; k < b->nlanes; k++) {
    lane *l = &b->lanes[k];
    ss_error ignored;
    give_up_if_unresponsive(b); /* then nothing more is asked: recovery's */
    if (l->prepared && !b->undecidable) {
      char sql[128], name[80];
      gid(b, k, name, sizeof name);
      snprintf(sql, sizeof sql, "ROLLBACK PREPARED '%s'", name);
      if (settle_sql(b, l, sql, &ignored) == 0) l->prepared = 0;
    } else if (!l->prepared) {
      ss_pg_tx_end(l->pg, &l->tx, 0, &ignored);
    }
  }
}

/* Forgets the decision once every part committed; a row left behind is
 * deleted by ss_bulk_recover. */
static void forget(ss_bulk *b) {
  const char *values[1] = {b->bulk_id};
  ss_error ignored;
  int k;
  b->committed = 0;
  for (k = 0; k < b->nlanes; k++) {
    PGresult *res;
    if (ss_pg_is_broken(b->lanes[k].pg)) continue;
    res = ss_pg_query(b->lanes[k].pg, "DELETE FROM semstore_bulk_decisions WHERE bulk = $1::uuid", 1, NULL, values,
                      NULL, NULL, &ignored);
    PQclear(res);
    if (res) return;
  }
}

/* Every lane's COPYs are in: one connection commits; more prepare, decide
 * and commit. */
static int commit(ss_bulk *b, ss_error *err) {
  int k, ok, parts = 0;
  char c = 0;
  PGresult *res;
  if (!b->bulk_id[0]) return ss_pg_tx_end(b->lanes[0].pg, &b->lanes[0].tx, 1, err);
  for (k = 0; k < b->nlanes; k++) {
    lane *l = &b->lanes[k];
    char sql[128], name[80];
    if (!l->tx.open) continue;
    step(b, "prepare", k);
    gid(b, k, name, sizeof name);
    snprintf(sql, sizeof sql, "PREPARE TRANSACTION '%s'", name);
    /* the transaction is over either way: prepared, or rolled back. Only
     * its own connection can prepare it (elsewhere PREPARE TRANSACTION
     * finds no transaction, warns and does nothing). */
    l->tx.open = 0;
    if (!(res = ss_pg_exec(l->pg, sql, err))) return -1;
    ok = strcmp(PQcmdStatus(res), "PREPARE TRANSACTION") == 0;
    PQclear(res);
    if (!ok) {
      ss_error_set(err, SS_ERR_POSTGRES, "the part on connection %d could not be prepared and was rolled back", k + 1);
      ss_strlcpy(err->code, "40000", sizeof err->code);
      return -1;
    }
    l->prepared = 1;
    parts++;
  }
  if (!parts) return 0; /* no rows: nothing to commit */
  step(b, "decide", 0);
  ss_error_set(err, SS_ERR_CONNECTION, "every connection of the bulk was lost");
  for (k = 0; k < b->nlanes && !c; k++) {
    if (ss_pg_is_broken(b->lanes[k].pg)) continue;
    c = decide(b->lanes[k].pg, b->bulk_id, parts, err);
    /* the server refused the statement on a live connection: nothing was
     * written, and every part can roll back */
    if (!c && !ss_pg_is_broken(b->lanes[k].pg)) return -1;
  }
  if (c == 'r')
    return ss_error_set(err, SS_ERR_POSTGRES, "the bulk was rolled back by recovery (semstore recover) before it "
                                              "could commit: its prepared parts were older than the grace period");
  if (!c) {
    /* a decision may have been written before the connection went: only
     * recovery, reading it, may settle the prepared parts */
    char why[sizeof err->message];
    b->undecidable = 1;
    ss_strlcpy(why, err->message, sizeof why);
    return ss_error_set(err, SS_ERR_CONNECTION, "lost the connections while writing the bulk's decision (%s); its "
                        "prepared parts are settled, all or none, by `semstore recover` or the next process's "
                        "first connection", why);
  }
  b->decided = 1;
  if (commit_parts(b, err)) return -1;
  b->decided = 0;
  b->committed = 1;
  step(b, "forget", 0);
  forget(b);
  return 0;
}

void ss_bulk_abandon(ss_bulk *b) {
  int k;
  ss_error ignored;
  double limits[SS_BULK_MAX_CONNECTIONS];
  ss_error_clear(&ignored);
  if (b->committed) forget(b); /* on_step raised just before */
  if (b->over && !b->decided) return;
  b->over = 1;
  b->on_step = NULL; /* no caller's code runs while the bulk is undone */
  /* the statements that settle the bulk may not wait without end */
  for (k = 0; k < b->nlanes; k++) {
    limits[k] = ss_pg_timeout(b->lanes[k].pg);
    if (limits[k] <= 0 || limits[k] > SETTLE_TIMEOUT) ss_pg_set_timeout(b->lanes[k].pg, SETTLE_TIMEOUT);
  }
  /* the server must be done with every COPY before a transaction ends */
  for (k = 0; k < b->nlanes && !give_up_if_unresponsive(b); k++) {
    lane *l = &b->lanes[k];
    /* a COPY still being fed fails on purpose; one whose end is queued
     * has it sent as the outcome is read */
    if (l->state != LANE_IDLE) ss_pg_limit_call(l->pg, SETTLE_TIMEOUT);
    if (l->state == LANE_FEEDING) ss_pg_copy_done(l->pg, "semstore: the bulk was abandoned", &ignored);
    if (l->state != LANE_IDLE) lane_outcome(l, &ignored);
  }
  if (b->decided) {
    /* past the decision every part commits, even when the caller raised */
    if (commit_parts(b, &ignored) == 0) forget(b);
  } else {
    rollback_parts(b);
  }
  b->decided = 0;
  for (k = 0; k < b->nlanes; k++) ss_pg_set_timeout(b->lanes[k].pg, limits[k]);
}

/* Takes `count` ids from the chunks' sequence in one round trip. */
static int take_ids(ss_bulk *b, long count, ss_error *err) {
  char num[24];
  const char *values[1] = {num};
  PGresult *res;
  long i;
  long long *ids;
  /* a connection must be done with its COPY before it runs a query */
  lane *l = idle_lane(b, err);
  if (!l) return -1;
  snprintf(num, sizeof num, "%ld", count);
  res = ss_pg_query(l->pg,
                    "SELECT nextval(pg_get_serial_sequence('chunks', 'id')) FROM generate_series(1, $1::int4)", 1,
                    NULL, values, NULL, NULL, err);
  if (!res) return -1;
  if (!(ids = realloc(b->ids, sizeof *ids * (size_t)count))) {
    PQclear(res);
    return ss_error_set(err, SS_ERR_MEMORY, "out of memory");
  }
  b->ids = ids;
  for (i = 0; i < count && i < PQntuples(res); i++) ids[i] = strtoll(PQgetvalue(res, i, 0), NULL, 10);
  b->ids_len = i;
  b->ids_next = 0;
  PQclear(res);
  return i > 0 ? 0 : ss_error_set(err, SS_ERR_POSTGRES, "the chunks' sequence gave no ids");
}

/* ---- rows ---- */

/* Ends the bulk over a fault of the next row: err's message gets the row
 * in front, and the row and field are kept for ss_bulk_failed_row. */
static int row_failed(ss_bulk *b, const char *field, ss_error *err) {
  char why[sizeof err->message];
  ss_strlcpy(why, err->message, sizeof why);
  b->bad_row = b->rows + 1;
  b->bad_has_field = field != NULL;
  ss_strlcpy(b->bad_field, field, sizeof b->bad_field);
  ss_error_set(err, SS_ERR_INPUT, "row %ld: %s", b->bad_row, why);
  ss_bulk_abandon(b);
  return -1;
}

static int is_over(ss_error *err) {
  return ss_error_set(err, SS_ERR_INPUT, "this bulk is over (it failed, or was finished)");
}

int ss_bulk_check(ss_bulk *b, ss_value *fields, ss_error *err) {
  int f;
  if (b->over) return is_over(err);
  for (f = 0; f < SS_CHUNK_NFIELDS; f++)
    if (ss_repo_check_value(&ss_chunk_fields[f], &fields[f], err)) return row_failed(b, ss_chunk_fields[f].name, err);
  return 0;
}

int ss_bulk_reject(ss_bulk *b, const char *field, const char *why, ss_error *err) {
  if (b->over) return is_over(err);
  ss_error_set(err, SS_ERR_INPUT, "%s%s%s", field ? field : "", field ? " " : "", why);
  return row_failed(b, field, err);
}

/* One checked field in COPY's binary form. */
static int encode_field(ss_buf *out, const ss_param_spec *p, const ss_value *v) {
  switch (v->type) {
  case SS_VAL_NULL:
    return ss_copy_null(out);
  case SS_VAL_INT:
    return p->kind == SS_V_COUNT4 || p->kind == SS_V_SIZE4 ? ss_copy_int4(out, (int32_t)v->as.i)
                                                           : ss_copy_int8(out, v->as.i);
  case SS_VAL_TEXT:
    return ss_copy_text(out, v->as.str.s, v->as.str.len);
  case SS_VAL_JSON:
    return ss_copy_jsonb(out, v->as.str.s, v->as.str.len);
  default:
    return -1; /* no chunk field takes another kind: the check refused it */
  }
}

int ss_bulk_row(ss_bulk *b, ss_value *fields, long long *id, ss_error *err) {
  const ss_value *coll = &fields[SS_CHUNK_collection_id];
  ss_buf *out;
  size_t mark;
  double now;
  int part, f;
  *id = 0;
  if (ss_bulk_check(b, fields, err)) return -1;
  if (b->with_id) {
    if (b->ids_next == b->ids_len) {
      long left = b->expected - b->rows;
      if (take_ids(b, left > 0 ? (left < 10 * SS_BULK_ID_BLOCK ? left : 10 * SS_BULK_ID_BLOCK) : SS_BULK_ID_BLOCK, err))
        goto fail;
    }
    *id = b->ids[b->ids_next++];
  }
  part = ss_partition_key(coll->as.str.s, coll->as.str.len, b->nparts);
  out = &b->parts[part];
  mark = out->len;
  if (out->len == 0 && ss_copy_header(out)) goto oom;
  if (ss_copy_row(out, SS_CHUNK_NFIELDS + 1 + b->with_id)) goto oom;
  if (b->with_id && ss_copy_int8(out, *id)) goto oom;
  for (f = 0; f < SS_CHUNK_NFIELDS; f++)
    if (encode_field(out, &ss_chunk_fields[f], &fields[f])) goto oom;
  if (ss_copy_int4(out, part)) goto oom;
  b->rows++;
  b->part_rows[part]++;
  b->buffered += out->len - mark;
  b->since_pump += out->len - mark;
  now = ss_monotonic();
  if ((b->since_pump >= PUMP_EVERY || now - b->last_pump > PUMP_AFTER) && pump(b, err)) goto fail;
  if (b->buffered > b->budget && flush_down_to(b, b->budget, err)) goto fail;
  if (b->last_row > 0 && now - b->last_row > SLOW_SOURCE && feed_all(b, err)) goto fail;
  b->last_row = ss_monotonic();
  return 0;
oom:
  out->len = mark;
  ss_error_set(err, SS_ERR_MEMORY, "out of memory encoding row %ld", b->rows + 1);
fail:
  ss_bulk_abandon(b);
  return -1;
}

int ss_bulk_finish(ss_bulk *b, long *rows, ss_error *err) {
  *rows = 0;
  if (b->over) return is_over(err);
  if (flush_down_to(b, 0, err) || drain_lanes(b, err) || commit(b, err)) goto fail;
  *rows = b->rows;
  b->over = 1; /* nothing more to take, nothing to abandon */
  return 0;
fail:
  ss_bulk_abandon(b);
  return -1;
}

long ss_bulk_failed_row(const ss_bulk *b, const char **field) {
  *field = b->bad_row && b->bad_has_field ? b->bad_field : NULL;
  return b->bad_row;
}

/* ---- recovery of bulks that died midway ---- */

/* Seconds a rollback decision is kept after its parts are gone. */
#define ROLLBACK_KEPT "86400"

/* Whether gid is a bulk part's name, 'semstore:bulk:<uuid>:<k>': then
 * its uuid goes to bulk_id. Any other name is not ours to settle. */
static int part_name(const char *gid, char bulk_id[37]) {
  static const char prefix[] = "semstore:bulk:";
  const char *p = gid + sizeof prefix - 1;
  int i;
  /* ss_is_uuid stops at the first byte that is not the uuid's, a NUL too */
  if (strncmp(gid, prefix, sizeof prefix - 1) != 0 || !ss_is_uuid(p, 36)) return 0;
  if (p[36] != ':' || !p[37]) return 0;
  for (i = 37; p[i]; i++)
    if (p[i] < '0' || p[i] > '9' || i > 40) return 0;
  memcpy(bulk_id, p, 36);
  bulk_id[36] = 0;
  return 1;
}

int ss_bulk_recover(ss_pg *pg, double grace, long *committed, long *rolled_back, long *forgotten, ss_error *err) {
  char secs[32];
  const char *values[1] = {secs};
  PGresult *res;
  long c = 0, r = 0, f = 0;
  int i, rc = 0;
  if (committed) *committed = 0;
  if (rolled_back) *rolled_back = 0;
  if (forgotten) *forgotten = 0;
  snprintf(secs, sizeof secs, "%.3f", grace > 0 ? grace : 0);
  res = ss_pg_query(pg, "SELECT " DECISIONS_USABLE, 0, NULL, NULL, NULL, NULL, err);
  if (!res) return -1;
  i = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
  PQclear(res);
  /* not migrated, or a role that may not use the table: no bulk of its
   * went parallel here */
  if (!i) return 0;
  /* only the role that prepared a part, or a superuser, may finish it:
   * another role's parts are its own recovery's */
  res = ss_pg_query(pg, "SELECT gid FROM pg_prepared_xacts WHERE database = current_database() "
                        "AND gid LIKE 'semstore:bulk:%' AND prepared <= now() - make_interval(secs => $1::float8) "
                        "AND (owner = current_user OR (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)) "
                        "ORDER BY gid",
                    1, NULL, values, NULL, NULL, err);
  if (!res) return -1;
  for (i = 0; i < PQntuples(res); i++) {
    const char *name = PQgetvalue(res, i, 0);
    char bulk_id[37], sql[128], outcome;
    ss_error part_err;
    PGresult *done;
    if (!part_name(name, bulk_id)) continue;
    /* a rollback decision unless the coordinator wrote its commit first */
    if (!(outcome = decide(pg, bulk_id, 0, &part_err))) {
      if (!rc) *err = part_err;
      rc = -1;
      if (ss_pg_is_broken(pg)) break;
      continue; /* the next parts may still be settled */
    }
    snprintf(sql, sizeof sql, "%s PREPARED '%s'", outcome == 'c' ? "COMMIT" : "ROLLBACK", name);
    if ((done = ss_pg_exec(pg, sql, &part_err))) {
      PQclear(done);
      if (outcome == 'c') c++;
      else r++;
    } else if (strcmp(part_err.code, "42704") != 0) {
      /* 42704: settled meanwhile, by its coordinator or another recovery */
      if (!rc) *err = part_err;
      rc = -1;
      if (ss_pg_is_broken(pg)) break;
    }
  }
  PQclear(res);
  if (!ss_pg_is_broken(pg)) {
    ss_error del_err;
    /* a rollback row outlives its bulk's coordinator by far (a day): while
     * it stands, the coordinator's decision finds it and cannot commit */
    res = ss_pg_query(pg, "DELETE FROM semstore_bulk_decisions d WHERE decided_at <= now() - make_interval(secs => "
                          "CASE d.outcome WHEN 'commit' THEN $1::float8 ELSE greatest($1::float8, "
                          ROLLBACK_KEPT ") END) AND NOT EXISTS (SELECT 1 FROM pg_prepared_xacts p WHERE p.gid LIKE "
                          "'semstore:bulk:' || d.bulk || ':%')",
                      1, NULL, values, NULL, NULL, &del_err);
    if (!res) {
      if (!rc) *err = del_err;
      rc = -1;
    } else {
      f = strtol(PQcmdTuples(res), NULL, 10);
    }
    PQclear(res);
  }
  if (committed) *committed = c;
  if (rolled_back) *rolled_back = r;
  if (forgotten) *forgotten = f;
  return rc;
}
