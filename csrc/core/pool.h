/* A generic, thread-safe, process-wide pool of connections, keyed by name.
 *
 * Every Lua state of a process (coroutines, OpenResty worker threads) that
 * asks for the same name gets the same pool. The pool knows nothing about
 * PostgreSQL or Redis: the caller supplies ss_pool_ops.
 *
 * Waiting is first come, first served: a released connection (or the right
 * to open one) is handed straight to the oldest waiter. */
#ifndef SEMSTORE_POOL_H
#define SEMSTORE_POOL_H

#include "error.h"

typedef struct ss_pool ss_pool;

typedef struct {
  /* Opens a connection; NULL with err set on failure. Called without the
   * pool's lock held, possibly from several threads at once. */
  void *(*open)(void *ctx, ss_error *err);
  void (*close)(void *ctx, void *conn);
  /* 0 when the connection is usable. `deep` asks for a round trip to the
   * server, given at most `limit` seconds when limit > 0 (a caller's shorter
   * wait); otherwise only a check that costs no round trip. */
  int (*ping)(void *ctx, void *conn, int deep, double limit);
  /* Called on release: returns the connection to a clean state (an open
   * transaction is rolled back). 0 if reusable, -1 if it must be closed. */
  int (*reset)(void *ctx, void *conn);
  /* Nonzero when the connection saw a fatal failure and must not be reused. */
  int (*broken)(void *ctx, void *conn);
  void (*free_ctx)(void *ctx);
} ss_pool_ops;

typedef struct {
  int size;               /* connections kept open when idle */
  int max_overflow;       /* extra connections opened under load */
  double timeout;         /* seconds an acquire waits before failing */
  double recycle;         /* maximum lifetime in seconds (<= 0: none) */
  double idle_timeout;    /* idle connections older than this close (<= 0: never) */
  int pre_ping;           /* round-trip check after ping_after_idle seconds idle */
  double ping_after_idle;
} ss_pool_config;

/* The defaults of every pool setting, in one place: the binding's
 * pool_open and the Lua layer's pool_from_env (through core.defaults)
 * start from these: 5 kept, 10 more under load, a 30 s wait, a 3600 s
 * lifetime, 600 s idle, a round-trip ping after 1 s idle. */
void ss_pool_config_defaults(ss_pool_config *cfg);

typedef struct {
  long size, idle, in_use, waiting;
  long acquired, timeouts, evicted, opened, reclaimed;
  long peak;       /* most connections open at once */
  long max;        /* size + max_overflow */
  double wait_ms;  /* total time acquirers spent waiting */
} ss_pool_stats;

/* A lease: what ss_pool_acquire lends out, the pool's record of one
 * borrowed connection (a PostgreSQL one is an ss_pg; the binding's Lua
 * handle on a lease is an ss_conn_handle). `conn` is what ops->open
 * returned. */
typedef struct ss_pool_lease {
  void *conn;
  double expires, last_used;
  double verified; /* when it was opened or last answered a round-trip ping */
  struct ss_pool_lease *next;
} ss_pool_lease;

/* Finds the pool called `name` or creates it. `key` identifies the target
 * (for example the conninfo string): asking for an existing name with
 * another key is an SS_ERR_INPUT error. The pool takes ownership of `ctx`
 * in every case (it is freed with ops->free_ctx when not used). The caller
 * owns one reference: give it back with ss_pool_unref. */
ss_pool *ss_pool_open(const char *name, const char *key, const ss_pool_config *cfg,
                      const ss_pool_ops *ops, void *ctx, ss_error *err);
void ss_pool_ref(ss_pool *pool);
/* Drops a reference; the last one closes the idle connections and frees the
 * pool (no connection can be in use then: each borrower holds a reference). */
void ss_pool_unref(ss_pool *pool);

/* Borrows a connection, waiting up to cfg.timeout. NULL with err set on
 * failure (SS_ERR_POOL on timeout, or the error of ops->open). */
ss_pool_lease *ss_pool_acquire(ss_pool *pool, ss_error *err);
/* ss_pool_acquire waiting at most `wait` seconds for a free connection
 * (never longer than the pool's own timeout; negative: the pool's), and
 * giving an idle connection's ping at most `wait` seconds too. */
ss_pool_lease *ss_pool_acquire_within(ss_pool *pool, double wait, ss_error *err);
/* Returns a borrowed connection: reset, then kept, handed to a waiter, or
 * closed (broken, past its lifetime, or beyond `size`). */
void ss_pool_release(ss_pool *pool, ss_pool_lease *lease);
/* Counts a connection returned by the garbage collector. */
void ss_pool_note_reclaimed(ss_pool *pool);

void ss_pool_get_stats(ss_pool *pool, ss_pool_stats *out);
const char *ss_pool_name(const ss_pool *pool);
void *ss_pool_ctx(const ss_pool *pool);

double ss_monotonic(void);

#endif
