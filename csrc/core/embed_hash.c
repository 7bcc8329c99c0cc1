#include "embed_hash.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* FNV-1a, 64 bits: stable across platforms and runs, so vectors stored in
 * Qdrant stay comparable with the queries of a later process. */
static uint64_t fnv1a(const unsigned char *p, size_t n, uint64_t h) {
  size_t i;
  for (i = 0; i < n; i++) {
    h ^= p[i];
    h *= 1099511628211ULL;
  }
  return h;
}

#define FNV_BASIS 14695981039346656037ULL

static int is_word_byte(unsigned char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c >= 0x80;
}

static unsigned char fold(unsigned char c) { return c >= 'A' && c <= 'Z' ? (unsigned char)(c + 32) : c; }

/* Adds weight w to the slot of feature (p, n), seeded apart by `kind` so a
 * word and a trigram with the same bytes land apart. */
static void add_feature(float *out, size_t dim, const unsigned char *p, size_t n, unsigned char kind, float w) {
  uint64_t h = fnv1a(&kind, 1, FNV_BASIS);
  h = fnv1a(p, n, h);
  out[(h >> 1) % dim] += (h & 1) ? w : -w;
}

void ss_embed_dense(const char *text, size_t len, float *out, size_t dim) {
  const unsigned char *s = (const unsigned char *)text;
  unsigned char word[258];
  size_t i = 0, k;
  double norm = 0;
  memset(out, 0, dim * sizeof *out);
  while (i < len) {
    size_t n = 0;
    while (i < len && !is_word_byte(s[i])) i++;
    /* a word, folded and framed by spaces, at most 256 bytes */
    word[n++] = ' ';
    while (i < len && is_word_byte(s[i])) {
      if (n < sizeof word - 1) word[n++] = fold(s[i]);
      i++;
    }
    word[n++] = ' ';
    if (n <= 2) continue;
    add_feature(out, dim, word + 1, n - 2, 'w', 2.0f);
    for (k = 0; k + 3 <= n; k++) add_feature(out, dim, word + k, 3, 't', 1.0f);
  }
  for (k = 0; k < dim; k++) norm += (double)out[k] * out[k];
  if (norm > 0) {
    float inv = (float)(1.0 / sqrt(norm));
    for (k = 0; k < dim; k++) out[k] *= inv;
  }
}

typedef struct {
  uint32_t index;
  float tf;
} term;

static int by_index(const void *a, const void *b) {
  uint32_t x = ((const term *)a)->index, y = ((const term *)b)->index;
  return x < y ? -1 : x > y;
}

size_t ss_embed_sparse(const char *text, size_t len, double avg_words, uint32_t *indices, float *values, size_t cap) {
  const unsigned char *s = (const unsigned char *)text;
  unsigned char word[256];
  term *terms;
  size_t i = 0, nterms = 0, words = 0, out = 0, k;
  const double k1 = 1.2, b = 0.75;
  /* at most one term per two bytes (a letter and a separator) */
  terms = malloc((len / 2 + 1) * sizeof *terms);
  if (!terms) return 0;
  while (i < len) {
    size_t n = 0;
    while (i < len && !is_word_byte(s[i])) i++;
    while (i < len && is_word_byte(s[i])) {
      if (n < sizeof word) word[n++] = fold(s[i]);
      i++;
    }
    if (n == 0) continue;
    terms[nterms].index = (uint32_t)(fnv1a(word, n, FNV_BASIS) >> 32);
    terms[nterms].tf = 1;
    nterms++;
    words++;
  }
  qsort(terms, nterms, sizeof *terms, by_index);
  if (avg_words <= 0) avg_words = 1;
  for (k = 0; k < nterms; k++) {
    double tf = 1, w;
    while (k + 1 < nterms && terms[k + 1].index == terms[k].index) {
      tf++;
      k++;
    }
    /* BM25's saturating term frequency, with its length normalisation */
    w = tf * (k1 + 1) / (tf + k1 * (1 - b + b * (double)words / avg_words));
    if (out < cap) {
      indices[out] = terms[k].index;
      values[out] = (float)w;
    }
    out++;
  }
  free(terms);
  return out;
}
