#include "pool.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct waiter {
  pthread_cond_t cv;
  ss_pool_lease *lease; /* a connection handed over */
  int may_open;       /* or the right to open one (a slot already counted) */
  struct waiter *next;
} waiter;

struct ss_pool {
  char *name, *key;
  ss_pool_config cfg;
  const ss_pool_ops *ops;
  void *ctx;
  int refs;
  pthread_mutex_t lock;
  ss_pool_lease *idle; /* most recently used first */
  waiter *wait_head, *wait_tail;
  long total, idle_count, waiting;
  long acquired, timeouts, evicted, opened, reclaimed, peak;
  double wait_ms;
  double invalid_before; /* connections not verified since get a deep ping */
  unsigned rng;
  struct ss_pool *next_pool;
};

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static ss_pool *registry;

double ss_monotonic(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static char *dup_str(const char *s) {
  size_t n = strlen(s) + 1;
  char *d = malloc(n);
  if (d) memcpy(d, s, n);
  return d;
}

static void free_pool(ss_pool *p) {
  if (p->ops && p->ops->free_ctx) p->ops->free_ctx(p->ctx);
  pthread_mutex_destroy(&p->lock);
  free(p->name);
  free(p->key);
  free(p);
}

ss_pool *ss_pool_open(const char *name, const char *key, const ss_pool_config *cfg,
                      const ss_pool_ops *ops, void *ctx, ss_error *err) {
  ss_pool *p;
  if (cfg->size < 1 || cfg->max_overflow < 0 || cfg->timeout < 0) {
    if (ops->free_ctx) ops->free_ctx(ctx);
    ss_error_set(err, SS_ERR_INPUT, "pool size must be at least 1 and overflow and timeout not negative");
    return NULL;
  }
  pthread_mutex_lock(&registry_lock);
  for (p = registry; p; p = p->next_pool) {
    if (strcmp(p->name, name) != 0) continue;
    if (strcmp(p->key, key) != 0 || p->ops != ops) {
      pthread_mutex_unlock(&registry_lock);
      if (ops->free_ctx) ops->free_ctx(ctx);
      ss_error_set(err, SS_ERR_INPUT, "a pool named '%s' already exists for another server", name);
      return NULL;
    }
    pthread_mutex_lock(&p->lock);
    p->refs++;
    pthread_mutex_unlock(&p->lock);
    pthread_mutex_unlock(&registry_lock);
    if (ops->free_ctx) ops->free_ctx(ctx);
    return p;
  }
  p = calloc(1, sizeof *p);
  if (p) {
    p->name = dup_str(name);
    p->key = dup_str(key);
  }
  if (!p || !p->name || !p->key) {
    pthread_mutex_unlock(&registry_lock);
    if (p) { free(p->name); free(p->key); free(p); }
    if (ops->free_ctx) ops->free_ctx(ctx);
    ss_error_set(err, SS_ERR_MEMORY, "out of memory creating pool '%s'", name);
    return NULL;
  }
  pthread_mutex_init(&p->lock, NULL);
  p->cfg = *cfg;
  p->ops = ops;
  p->ctx = ctx;
  p->refs = 1;
  p->rng = (unsigned)time(NULL) ^ (unsigned)(size_t)p;
  p->next_pool = registry;
  registry = p;
  pthread_mutex_unlock(&registry_lock);
  return p;
}

void ss_pool_ref(ss_pool *p) {
  pthread_mutex_lock(&p->lock);
  p->refs++;
  pthread_mutex_unlock(&p->lock);
}

void ss_pool_unref(ss_pool *p) {
  ss_pool **pp;
  ss_pool_lease *it, *next;
  int last;
  /* The registry lock first, so nobody finds the pool between the count
   * reaching zero and its removal. */
  pthread_mutex_lock(&registry_lock);
  pthread_mutex_lock(&p->lock);
  last = --p->refs == 0;
  pthread_mutex_unlock(&p->lock);
  if (last)
    for (pp = &registry; *pp; pp = &(*pp)->next_pool)
      if (*pp == p) { *pp = p->next_pool; break; }
  pthread_mutex_unlock(&registry_lock);
  if (!last) return;
  for (it = p->idle; it; it = next) {
    next = it->next;
    p->ops->close(p->ctx, it->conn);
    free(it);
  }
  free_pool(p);
}

static double lifetime(ss_pool *p) {
  /* Up to 10% jitter, so connections opened together do not retire together. */
  double r = (double)rand_r(&p->rng) / RAND_MAX;
  return p->cfg.recycle > 0 ? p->cfg.recycle * (1.0 - 0.1 * r) : INFINITY;
}

static ss_pool_lease *open_lease(ss_pool *p, ss_error *err) {
  ss_pool_lease *it = calloc(1, sizeof *it);
  double now;
  if (!it) {
    ss_error_set(err, SS_ERR_MEMORY, "out of memory opening a connection");
    return NULL;
  }
  it->conn = p->ops->open(p->ctx, err);
  if (!it->conn) {
    free(it);
    return NULL;
  }
  now = ss_monotonic();
  it->verified = it->last_used = now;
  pthread_mutex_lock(&p->lock);
  it->expires = now + lifetime(p);
  p->opened++;
  pthread_mutex_unlock(&p->lock);
  return it;
}

static void dequeue(ss_pool *p, waiter *w) {
  waiter **ww;
  for (ww = &p->wait_head; *ww; ww = &(*ww)->next)
    if (*ww == w) {
      *ww = w->next;
      if (p->wait_tail == w) {
        waiter *t = p->wait_head;
        while (t && t->next) t = t->next;
        p->wait_tail = t;
      }
      break;
    }
  w->next = NULL;
  p->waiting--;
}

/* Hands a slot (a connection, or with NULL the right to open one) to the
 * oldest waiter. Called with the lock held; 0 if nobody waits. */
static int hand_over(ss_pool *p, ss_pool_lease *it) {
  waiter *w = p->wait_head;
  if (!w) return 0;
  dequeue(p, w);
  w->lease = it;
  w->may_open = it == NULL;
  pthread_cond_signal(&w->cv);
  return 1;
}

/* Takes idle connections past their lifetime or idle timeout off the idle
 * list. Lock held; they stay counted in `total` until closed (see
 * forget_closed), and are chained on *dead for closing after the unlock. */
static long purge_idle(ss_pool *p, double now, ss_pool_lease **dead) {
  ss_pool_lease **pi = &p->idle;
  long n = 0;
  while (*pi) {
    ss_pool_lease *it = *pi;
    int idle_out = p->cfg.idle_timeout > 0 && now - it->last_used >= p->cfg.idle_timeout;
    if (now >= it->expires || idle_out) {
      *pi = it->next;
      it->next = *dead;
      *dead = it;
      p->idle_count--;
      n++;
    } else {
      pi = &it->next;
    }
  }
  return n;
}

static void close_all(ss_pool *p, ss_pool_lease *dead) {
  while (dead) {
    ss_pool_lease *next = dead->next;
    p->ops->close(p->ctx, dead->conn);
    free(dead);
    dead = next;
  }
}

static void note_total(ss_pool *p) {
  if (p->total > p->peak) p->peak = p->total;
}

/* Uncounts n connections once they are closed (or were never opened), so
 * that connections open never exceed size + overflow even for a moment, and
 * hands the freed slots to waiters. */
static void forget_closed(ss_pool *p, long n, int evicted) {
  pthread_mutex_lock(&p->lock);
  p->total -= n;
  p->evicted += evicted;
  while (n-- > 0 && hand_over(p, NULL)) {
    p->total++;
    note_total(p);
  }
  pthread_mutex_unlock(&p->lock);
}

static int healthy(ss_pool *p, ss_pool_lease *it, double invalid_before, double limit) {
  double now = ss_monotonic();
  int deep = it->verified <= invalid_before ||
             (p->cfg.pre_ping && now - it->last_used >= p->cfg.ping_after_idle);
  if (p->ops->ping(p->ctx, it->conn, deep, limit) != 0) return 0;
  if (deep) it->verified = now;
  return 1;
}

ss_pool_lease *ss_pool_acquire(ss_pool *p, ss_error *err) { return ss_pool_acquire_within(p, -1, err); }

ss_pool_lease *ss_pool_acquire_within(ss_pool *p, double wait, ss_error *err) {
  double deadline;
  /* a caller's own wait also bounds the ping of an idle connection */
  double ping_limit = wait >= 0 ? (wait > 0.001 ? wait : 0.001) : 0;
  if (wait < 0 || wait > p->cfg.timeout) wait = p->cfg.timeout;
  deadline = ss_monotonic() + wait;
  for (;;) {
    ss_pool_lease *it = NULL, *dead = NULL;
    int may_open = 0;
    long purged;
    double invalid_before;
    pthread_mutex_lock(&p->lock);
    invalid_before = p->invalid_before;
    /* Expired idle connections still hold their slots: close them and
     * give the slots out before deciding, or with every slot expired the
     * caller would wait for a slot only it could free. */
    if ((purged = purge_idle(p, ss_monotonic(), &dead)) > 0) {
      pthread_mutex_unlock(&p->lock);
      close_all(p, dead);
      forget_closed(p, purged, 0);
      continue;
    }
    if (!p->wait_head && p->idle) {
      it = p->idle;
      p->idle = it->next;
      p->idle_count--;
    } else if (!p->wait_head && p->total < p->cfg.size + p->cfg.max_overflow) {
      p->total++;
      note_total(p);
      may_open = 1;
    } else {
      waiter w;
      struct timespec ts;
      double now = ss_monotonic();
      memset(&w, 0, sizeof w);
      pthread_condattr_t ca;
      pthread_condattr_init(&ca);
      pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
      pthread_cond_init(&w.cv, &ca);
      pthread_condattr_destroy(&ca);
      if (p->wait_tail) p->wait_tail->next = &w; else p->wait_head = &w;
      p->wait_tail = &w;
      p->waiting++;
      clock_gettime(CLOCK_MONOTONIC, &ts);
      {
        double left = deadline - now, whole = floor(left > 0 ? left : 0);
        ts.tv_sec += (time_t)whole;
        ts.tv_nsec += (long)((left > 0 ? left - whole : 0) * 1e9);
        if (ts.tv_nsec >= 1000000000L) { ts.tv_sec++; ts.tv_nsec -= 1000000000L; }
      }
      while (!w.lease && !w.may_open)
        if (pthread_cond_timedwait(&w.cv, &p->lock, &ts) == ETIMEDOUT) break;
      if (!w.lease && !w.may_open) {
        dequeue(p, &w);
        p->timeouts++;
        p->wait_ms += (ss_monotonic() - now) * 1e3;
        pthread_mutex_unlock(&p->lock);
        pthread_cond_destroy(&w.cv);
        ss_error_set(err, SS_ERR_POOL,
                     "pool '%s' exhausted: no connection free within %.3g s (%d + %d overflow in use)",
                     p->name, wait, p->cfg.size, p->cfg.max_overflow);
        return NULL;
      }
      pthread_cond_destroy(&w.cv);
      p->wait_ms += (ss_monotonic() - now) * 1e3;
      it = w.lease;
      may_open = w.may_open;
    }
    pthread_mutex_unlock(&p->lock);

    if (may_open) {
      it = open_lease(p, err);
      if (!it) {
        forget_closed(p, 1, 0);
        return NULL;
      }
    } else if (!healthy(p, it, invalid_before, ping_limit)) {
      it->next = NULL;
      close_all(p, it);
      pthread_mutex_lock(&p->lock);
      /* Others that sat idle as long are suspect too. */
      p->invalid_before = ss_monotonic();
      pthread_mutex_unlock(&p->lock);
      forget_closed(p, 1, 1);
      continue;
    }
    pthread_mutex_lock(&p->lock);
    p->acquired++;
    pthread_mutex_unlock(&p->lock);
    return it;
  }
}

void ss_pool_release(ss_pool *p, ss_pool_lease *it) {
  int reusable = p->ops->reset(p->ctx, it->conn) == 0 && !p->ops->broken(p->ctx, it->conn);
  double now = ss_monotonic();
  pthread_mutex_lock(&p->lock);
  it->last_used = now;
  if (!reusable)
    /* A broken connection usually means a server restart or a network cut:
     * make the others prove themselves with a round trip at checkout. */
    p->invalid_before = now;
  if (reusable && now < it->expires) {
    if (hand_over(p, it)) it = NULL;
    else if (p->total <= p->cfg.size) {
      it->next = p->idle;
      p->idle = it;
      p->idle_count++;
      it = NULL;
    }
  }
  pthread_mutex_unlock(&p->lock);
  if (it) {
    it->next = NULL;
    close_all(p, it);
    forget_closed(p, 1, !reusable);
  }
}

void ss_pool_note_reclaimed(ss_pool *p) {
  pthread_mutex_lock(&p->lock);
  p->reclaimed++;
  pthread_mutex_unlock(&p->lock);
}

void ss_pool_get_stats(ss_pool *p, ss_pool_stats *o) {
  pthread_mutex_lock(&p->lock);
  o->size = p->total;
  o->idle = p->idle_count;
  o->in_use = p->total - p->idle_count;
  o->waiting = p->waiting;
  o->acquired = p->acquired;
  o->timeouts = p->timeouts;
  o->evicted = p->evicted;
  o->opened = p->opened;
  o->reclaimed = p->reclaimed;
  o->peak = p->peak;
  o->max = p->cfg.size + p->cfg.max_overflow;
  o->wait_ms = p->wait_ms;
  pthread_mutex_unlock(&p->lock);
}

const char *ss_pool_name(const ss_pool *p) { return p->name; }
void *ss_pool_ctx(const ss_pool *p) { return p->ctx; }

void ss_pool_config_defaults(ss_pool_config *cfg) {
  cfg->size = 5;
  cfg->max_overflow = 10;
  cfg->timeout = 30;
  cfg->recycle = 3600;
  cfg->idle_timeout = 600;
  cfg->pre_ping = 1;
  cfg->ping_after_idle = 1;
}
