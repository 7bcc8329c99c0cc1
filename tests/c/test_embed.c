/* The local embedder (csrc/core/embed_hash.c): bytes in, numbers out. */
#include <math.h>
#include <string.h>

#include "embed_hash.h"
#include "harness.h"

static double dot(const float *a, const float *b, size_t n) {
  double s = 0;
  size_t i;
  for (i = 0; i < n; i++) s += (double)a[i] * b[i];
  return s;
}

int main(void) {
  float a[128], b[128], c[128];
  uint32_t idx[16];
  float val[16];
  size_t n, i;
  const char *q = "How do I reset my account password?";
  ss_embed_dense(q, strlen(q), a, 128);
  ss_embed_dense(q, strlen(q), b, 128);
  CHECK(memcmp(a, b, sizeof a) == 0);                /* deterministic */
  CHECK(fabs(dot(a, a, 128) - 1) < 1e-5);            /* unit length */
  ss_embed_dense("Resetting the password of your account", 38, b, 128);
  ss_embed_dense("Two cups of flour and an egg", 28, c, 128);
  CHECK(dot(a, b, 128) > dot(a, c, 128) + 0.2);      /* shared words land near */
  ss_embed_dense(" ,;! ", 5, c, 128);                /* no features: zero */
  for (i = 0; i < 128; i++) CHECK(c[i] == 0);
  ss_embed_dense("caf\xc3\xa9", 5, c, 1);            /* dim 1 and UTF-8 */
  CHECK(fabs(fabs(c[0]) - 1) < 1e-6);
  /* sparse: sorted, unique, saturating */
  n = ss_embed_sparse("b a b b c", 9, 5, idx, val, 16);
  CHECK(n == 3);
  for (i = 1; i < n; i++) CHECK(idx[i - 1] < idx[i]);
  {
    float wb = 0, wa = 0;
    uint32_t ia, ib;
    ss_embed_sparse("a", 1, 5, &ia, val, 1);
    ss_embed_sparse("b", 1, 5, &ib, val, 1);
    n = ss_embed_sparse("b a b b c", 9, 5, idx, val, 16);
    for (i = 0; i < n; i++) {
      if (idx[i] == ia) wa = val[i];
      if (idx[i] == ib) wb = val[i];
    }
    CHECK(wb > wa && wb < 3 * wa);
  }
  /* more terms than room: the count says so, nothing written past cap */
  idx[1] = 7;
  CHECK(ss_embed_sparse("x y z", 5, 1, idx, val, 1) == 3 && idx[1] == 7);
  CHECK(ss_embed_sparse("", 0, 1, idx, val, 16) == 0);
  DONE();
}
