#include "buf.h"

#include <stdlib.h>
#include <string.h>

void ss_buf_init(ss_buf *b) {
  b->data = NULL;
  b->len = b->cap = 0;
}

void ss_buf_free(ss_buf *b) {
  free(b->data);
  ss_buf_init(b);
}

int ss_buf_reserve(ss_buf *b, size_t extra) {
  size_t need = b->len + extra, cap = b->cap ? b->cap : 64;
  char *d;
  if (need < b->len) return -1; /* overflow */
  if (need <= b->cap) return 0;
  while (cap < need) cap *= 2;
  if (!(d = realloc(b->data, cap))) return -1;
  b->data = d;
  b->cap = cap;
  return 0;
}

int ss_buf_append(ss_buf *b, const void *p, size_t n) {
  if (ss_buf_reserve(b, n)) return -1;
  memcpy(b->data + b->len, p, n);
  b->len += n;
  return 0;
}

int ss_buf_putc(ss_buf *b, char c) { return ss_buf_append(b, &c, 1); }
