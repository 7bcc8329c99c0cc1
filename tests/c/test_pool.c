/* The generic pool with in-memory stand-ins for connections: limits under
 * threads, first-come-first-served waiting, timeouts, eviction, lifetimes
 * and reference counting. The PostgreSQL side is tested in test_pg.c and
 * in the specs against a real server. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "pool.h"

typedef struct {
  int id, broken, dead;
} fake;

typedef struct {
  pthread_mutex_t lock;
  int open_now, open_max, opened, closed, next_id, fail_open, freed, deep_pings;
} world;

static void *fake_open(void *ctx, ss_error *err) {
  world *w = ctx;
  fake *f;
  pthread_mutex_lock(&w->lock);
  if (w->fail_open) {
    pthread_mutex_unlock(&w->lock);
    ss_error_set(err, SS_ERR_CONNECTION, "refused");
    return NULL;
  }
  f = calloc(1, sizeof *f);
  f->id = ++w->next_id;
  w->opened++;
  if (++w->open_now > w->open_max) w->open_max = w->open_now;
  pthread_mutex_unlock(&w->lock);
  return f;
}

static void fake_close(void *ctx, void *conn) {
  world *w = ctx;
  pthread_mutex_lock(&w->lock);
  w->open_now--;
  w->closed++;
  pthread_mutex_unlock(&w->lock);
  free(conn);
}

static int fake_ping(void *ctx, void *conn, int deep, double limit) {
  world *w = ctx;
  (void)limit;
  pthread_mutex_lock(&w->lock);
  w->deep_pings += deep;
  pthread_mutex_unlock(&w->lock);
  return ((fake *)conn)->dead ? -1 : 0;
}

static int fake_reset(void *ctx, void *conn) {
  (void)ctx;
  (void)conn;
  return 0;
}

static int fake_broken(void *ctx, void *conn) {
  (void)ctx;
  return ((fake *)conn)->broken;
}

static void fake_free(void *ctx) { ((world *)ctx)->freed = 1; }

static const ss_pool_ops ops = {fake_open, fake_close, fake_ping, fake_reset, fake_broken, fake_free};

static world *new_world(void) {
  world *w = calloc(1, sizeof *w);
  pthread_mutex_init(&w->lock, NULL);
  return w;
}

static ss_pool_config config(int size, int overflow, double timeout) {
  ss_pool_config c;
  memset(&c, 0, sizeof c);
  c.size = size;
  c.max_overflow = overflow;
  c.timeout = timeout;
  c.recycle = 3600;
  c.idle_timeout = 600;
  c.pre_ping = 1;
  c.ping_after_idle = 1;
  return c;
}

static ss_pool *open_pool(const char *name, ss_pool_config c, world *w) {
  ss_error err;
  return ss_pool_open(name, "fake", &c, &ops, w, &err);
}

static void test_reuse_and_overflow(void) {
  world *w = new_world();
  ss_pool *p = open_pool("reuse", config(2, 1, 1), w);
  ss_error err;
  ss_pool_lease *a = ss_pool_acquire(p, &err), *b, *c;
  int id = ((fake *)a->conn)->id;
  ss_pool_stats st;
  ss_pool_release(p, a);
  a = ss_pool_acquire(p, &err);
  CHECK(((fake *)a->conn)->id == id); /* the idle one comes back */
  b = ss_pool_acquire(p, &err);
  c = ss_pool_acquire(p, &err); /* the overflow connection */
  CHECK(a && b && c && w->open_now == 3);
  ss_pool_release(p, c);
  CHECK(w->open_now == 2); /* beyond `size`, closed when given back */
  ss_pool_release(p, b);
  ss_pool_release(p, a);
  ss_pool_get_stats(p, &st);
  CHECK(st.size == 2 && st.idle == 2 && st.in_use == 0 && st.peak == 3 && st.max == 3 && st.acquired == 4);
  ss_pool_unref(p);
  CHECK(w->open_now == 0 && w->freed == 1);
  free(w);
}

typedef struct {
  ss_pool *pool;
  int cycles, errors;
} churn_arg;

static void *churn(void *arg) {
  churn_arg *a = arg;
  int i;
  for (i = 0; i < a->cycles; i++) {
    ss_error err;
    ss_pool_lease *it = ss_pool_acquire(a->pool, &err);
    if (!it) {
      a->errors++;
      continue;
    }
    if (i % 7 == 0) usleep(50);
    ss_pool_release(a->pool, it);
  }
  return NULL;
}

static void test_threads_never_exceed_the_limit(void) {
  world *w = new_world();
  ss_pool *p = open_pool("threads", config(3, 2, 10), w);
  pthread_t th[8];
  churn_arg args[8];
  ss_pool_stats st;
  int i, errors = 0;
  for (i = 0; i < 8; i++) {
    args[i].pool = p;
    args[i].cycles = 1250; /* 10,000 in all */
    args[i].errors = 0;
    pthread_create(&th[i], NULL, churn, &args[i]);
  }
  for (i = 0; i < 8; i++) {
    pthread_join(th[i], NULL);
    errors += args[i].errors;
  }
  ss_pool_get_stats(p, &st);
  CHECK(errors == 0);
  CHECK(w->open_max <= 5);
  CHECK(st.peak <= 5);
  CHECK(st.acquired == 10000);
  CHECK(st.in_use == 0 && st.waiting == 0);
  ss_pool_unref(p);
  CHECK(w->open_now == 0);
  free(w);
}

static double now(void) { return ss_monotonic(); }

static void test_timeout(void) {
  world *w = new_world();
  ss_pool *p = open_pool("timeout", config(1, 0, 0.2), w);
  ss_error err;
  ss_pool_lease *a = ss_pool_acquire(p, &err), *b;
  double t0 = now(), waited;
  ss_pool_stats st;
  b = ss_pool_acquire(p, &err);
  waited = now() - t0;
  CHECK(b == NULL);
  CHECK(err.kind == SS_ERR_POOL);
  CHECK(waited >= 0.19 && waited < 1.5);
  ss_pool_get_stats(p, &st);
  CHECK(st.timeouts == 1 && st.waiting == 0 && st.wait_ms >= 190);
  ss_pool_release(p, a);
  CHECK((b = ss_pool_acquire(p, &err)) != NULL);
  ss_pool_release(p, b);
  ss_pool_unref(p);
  free(w);
}

typedef struct {
  ss_pool *pool;
  int order; /* 1 + the position in which it got the connection */
} waiter_arg;

static pthread_mutex_t order_lock = PTHREAD_MUTEX_INITIALIZER;
static int order_next;

static void *wait_for_one(void *arg) {
  waiter_arg *a = arg;
  ss_error err;
  ss_pool_lease *it = ss_pool_acquire(a->pool, &err);
  if (!it) return NULL;
  pthread_mutex_lock(&order_lock);
  a->order = ++order_next;
  pthread_mutex_unlock(&order_lock);
  usleep(20000);
  ss_pool_release(a->pool, it);
  return NULL;
}

static void test_first_come_first_served(void) {
  world *w = new_world();
  ss_pool *p = open_pool("fifo", config(1, 0, 5), w);
  ss_error err;
  ss_pool_lease *held = ss_pool_acquire(p, &err);
  waiter_arg a = {p, 0}, b = {p, 0}, c = {p, 0};
  pthread_t ta, tb, tc;
  ss_pool_stats st;
  pthread_create(&ta, NULL, wait_for_one, &a);
  usleep(50000);
  pthread_create(&tb, NULL, wait_for_one, &b);
  usleep(50000);
  pthread_create(&tc, NULL, wait_for_one, &c);
  usleep(50000);
  ss_pool_get_stats(p, &st);
  CHECK(st.waiting == 3);
  ss_pool_release(p, held);
  pthread_join(ta, NULL);
  pthread_join(tb, NULL);
  pthread_join(tc, NULL);
  CHECK(a.order == 1 && b.order == 2 && c.order == 3);
  CHECK(w->opened == 1); /* handed over, never reopened */
  ss_pool_unref(p);
  free(w);
}

static void test_broken_and_dead(void) {
  world *w = new_world();
  ss_pool *p = open_pool("broken", config(2, 0, 1), w);
  ss_error err;
  ss_pool_lease *a = ss_pool_acquire(p, &err);
  int first = ((fake *)a->conn)->id;
  ss_pool_stats st;
  ((fake *)a->conn)->broken = 1;
  ss_pool_release(p, a);
  ss_pool_get_stats(p, &st);
  CHECK(st.evicted == 1 && st.size == 0 && w->open_now == 0);
  a = ss_pool_acquire(p, &err);
  CHECK(a && ((fake *)a->conn)->id != first);
  /* dead while idle: replaced at checkout without the caller seeing it */
  ss_pool_release(p, a);
  ((fake *)a->conn)->dead = 1;
  a = ss_pool_acquire(p, &err);
  CHECK(a != NULL && !((fake *)a->conn)->dead);
  ss_pool_get_stats(p, &st);
  CHECK(st.evicted == 2);
  ss_pool_release(p, a);
  ss_pool_unref(p);
  free(w);
}

static void test_deep_ping_after_a_failure(void) {
  world *w = new_world();
  ss_pool *p = open_pool("verify", config(3, 0, 1), w);
  ss_error err;
  ss_pool_lease *a = ss_pool_acquire(p, &err), *b = ss_pool_acquire(p, &err);
  ss_pool_release(p, b);
  CHECK(w->deep_pings == 0); /* used a moment ago: the free check only */
  ((fake *)a->conn)->broken = 1;
  ss_pool_release(p, a);
  b = ss_pool_acquire(p, &err);
  CHECK(w->deep_pings == 1); /* a broken one makes the others prove themselves */
  ss_pool_release(p, b);
  b = ss_pool_acquire(p, &err);
  CHECK(w->deep_pings == 1); /* once */
  ss_pool_release(p, b);
  ss_pool_unref(p);
  free(w);
}

static void test_open_failure_frees_the_slot(void) {
  world *w = new_world();
  ss_pool *p = open_pool("refused", config(1, 0, 0.5), w);
  ss_error err;
  ss_pool_lease *a;
  ss_pool_stats st;
  w->fail_open = 1;
  CHECK(ss_pool_acquire(p, &err) == NULL);
  CHECK(err.kind == SS_ERR_CONNECTION && strcmp(err.message, "refused") == 0);
  ss_pool_get_stats(p, &st);
  CHECK(st.size == 0);
  w->fail_open = 0;
  CHECK((a = ss_pool_acquire(p, &err)) != NULL);
  ss_pool_release(p, a);
  ss_pool_unref(p);
  free(w);
}

static void test_lifetime_and_idle_timeout(void) {
  world *w = new_world();
  ss_pool_config c = config(2, 0, 1);
  ss_pool *p;
  ss_error err;
  ss_pool_lease *a;
  int id;
  c.recycle = 0.05;
  p = open_pool("recycle", c, w);
  a = ss_pool_acquire(p, &err);
  id = ((fake *)a->conn)->id;
  usleep(100000);
  CHECK(w->open_now == 1); /* past its lifetime but borrowed: kept */
  ss_pool_release(p, a);
  CHECK(w->open_now == 0); /* retired when given back */
  a = ss_pool_acquire(p, &err);
  CHECK(((fake *)a->conn)->id != id);
  ss_pool_release(p, a);
  ss_pool_unref(p);

  c = config(2, 0, 1);
  c.idle_timeout = 0.05;
  p = open_pool("idle", c, w);
  a = ss_pool_acquire(p, &err);
  id = ((fake *)a->conn)->id;
  ss_pool_release(p, a);
  usleep(100000);
  a = ss_pool_acquire(p, &err);
  CHECK(((fake *)a->conn)->id != id);
  ss_pool_release(p, a);
  ss_pool_unref(p);
  CHECK(w->open_now == 0);
  free(w);
}

/* Every slot idle past its timeout (or lifetime) with no room to open more:
 * the next acquire closes them and opens anew instead of waiting for a slot
 * that the expired connections still hold. */
static void test_all_slots_expired(void) {
  int lifetime;
  for (lifetime = 0; lifetime < 2; lifetime++) {
    world *w = new_world();
    ss_pool_config c = config(2, 0, 0.5);
    ss_pool *p;
    ss_error err;
    ss_pool_lease *a, *b;
    ss_pool_stats st;
    if (lifetime) c.recycle = 0.05; else c.idle_timeout = 0.05;
    p = open_pool(lifetime ? "all-recycled" : "all-idle", c, w);
    a = ss_pool_acquire(p, &err);
    b = ss_pool_acquire(p, &err);
    ss_pool_release(p, a);
    ss_pool_release(p, b);
    usleep(120000);
    a = ss_pool_acquire(p, &err);
    CHECK(a != NULL);
    b = ss_pool_acquire(p, &err);
    CHECK(b != NULL);
    ss_pool_get_stats(p, &st);
    CHECK(st.size == 2 && st.timeouts == 0 && w->open_now == 2 && w->opened == 4);
    if (a) ss_pool_release(p, a);
    if (b) ss_pool_release(p, b);
    ss_pool_unref(p);
    CHECK(w->open_now == 0);
    free(w);
  }
}

/* Every idle connection dead (a server restart): one acquire replaces them
 * all without failing. */
static void test_all_slots_dead(void) {
  world *w = new_world();
  ss_pool *p = open_pool("all-dead", config(3, 0, 0.5), w);
  ss_error err;
  ss_pool_lease *it[3];
  ss_pool_stats st;
  int i;
  for (i = 0; i < 3; i++) it[i] = ss_pool_acquire(p, &err);
  for (i = 0; i < 3; i++) {
    ((fake *)it[i]->conn)->dead = 1;
    ss_pool_release(p, it[i]);
  }
  for (i = 0; i < 3; i++) CHECK((it[i] = ss_pool_acquire(p, &err)) != NULL && !((fake *)it[i]->conn)->dead);
  for (i = 0; i < 3; i++) if (it[i]) ss_pool_release(p, it[i]);
  ss_pool_get_stats(p, &st);
  CHECK(st.evicted == 3 && st.size == 3 && st.timeouts == 0 && w->open_now == 3);
  ss_pool_unref(p);
  free(w);
}

typedef struct {
  ss_pool *pool;
  ss_pool_lease *got;
  int dead;
} dead_waiter_arg;

static void *wait_and_keep(void *arg) {
  dead_waiter_arg *a = arg;
  ss_error err;
  a->got = ss_pool_acquire(a->pool, &err);
  a->dead = a->got ? ((fake *)a->got->conn)->dead : -1;
  return NULL;
}

/* All borrowed, a waiter queued; the connection handed to it fails its
 * check (the server went away): the waiter opens a new one instead of
 * timing out, and the evicted slot is not counted twice. */
static void test_waiter_woken_by_an_eviction(void) {
  world *w = new_world();
  ss_pool *p = open_pool("evict-wake", config(1, 0, 2), w);
  ss_error err;
  ss_pool_lease *held = ss_pool_acquire(p, &err);
  dead_waiter_arg a = {p, NULL, 0};
  pthread_t t;
  ss_pool_stats st;
  pthread_create(&t, NULL, wait_and_keep, &a);
  usleep(50000);
  ss_pool_get_stats(p, &st);
  CHECK(st.waiting == 1 && st.in_use == 1);
  ((fake *)held->conn)->dead = 1; /* dies while borrowed, seen at the waiter's checkout */
  ss_pool_release(p, held);
  pthread_join(t, NULL);
  CHECK(a.got != NULL && a.dead == 0);
  ss_pool_get_stats(p, &st);
  CHECK(st.size == 1 && st.evicted == 1 && st.timeouts == 0 && w->open_now == 1);
  if (a.got) ss_pool_release(p, a.got);
  ss_pool_unref(p);
  free(w);
}

static void test_names_and_refs(void) {
  world *w1 = new_world(), *w2 = new_world(), *w3 = new_world();
  ss_pool_config c = config(1, 0, 1);
  ss_error err;
  ss_pool *p = ss_pool_open("shared", "key-a", &c, &ops, w1, &err);
  ss_pool *q = ss_pool_open("shared", "key-a", &c, &ops, w2, &err);
  ss_pool *r = ss_pool_open("shared", "key-b", &c, &ops, w3, &err);
  ss_pool_lease *a;
  CHECK(p == q);
  CHECK(w2->freed == 1); /* the second context was not needed */
  CHECK(r == NULL && err.kind == SS_ERR_INPUT && w3->freed == 1);
  a = ss_pool_acquire(p, &err);
  ss_pool_unref(q);
  CHECK(w1->open_now == 1 && !w1->freed); /* still referenced */
  ss_pool_release(p, a);
  ss_pool_unref(p);
  CHECK(w1->open_now == 0 && w1->freed);
  CHECK((r = ss_pool_open("shared", "key-b", &c, &ops, w3, &err)) != NULL); /* the name is free again */
  ss_pool_unref(r);
  c.size = 0;
  CHECK(ss_pool_open("zero", "k", &c, &ops, w1, &err) == NULL && err.kind == SS_ERR_INPUT);
  free(w1);
  free(w2);
  free(w3);
}

int main(void) {
  test_reuse_and_overflow();
  test_threads_never_exceed_the_limit();
  test_timeout();
  test_first_come_first_served();
  test_broken_and_dead();
  test_deep_ping_after_a_failure();
  test_open_failure_frees_the_slot();
  test_lifetime_and_idle_timeout();
  test_all_slots_expired();
  test_all_slots_dead();
  test_waiter_woken_by_an_eviction();
  test_names_and_refs();
  DONE();
}
