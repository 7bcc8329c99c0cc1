#include "pg_copy.h"

#include <string.h>

static int put_be(ss_buf *b, uint64_t v, int bytes) {
  int i;
  if (ss_buf_reserve(b, (size_t)bytes)) return -1;
  for (i = bytes - 1; i >= 0; i--) b->data[b->len++] = (char)(v >> (8 * i));
  return 0;
}

int ss_copy_header(ss_buf *b) {
  /* signature, flags (no OIDs), header extension length */
  static const char header[] = "PGCOPY\n\377\r\n\0\0\0\0\0\0\0\0\0";
  return ss_buf_append(b, header, 19);
}

int ss_copy_trailer(ss_buf *b) { return put_be(b, 0xFFFF, 2); }

int ss_copy_row(ss_buf *b, int nfields) { return put_be(b, (uint64_t)nfields, 2); }

int ss_copy_null(ss_buf *b) { return put_be(b, 0xFFFFFFFFu, 4); }

int ss_copy_int4(ss_buf *b, int32_t v) {
  if (ss_buf_reserve(b, 8)) return -1;
  put_be(b, 4, 4);
  return put_be(b, (uint32_t)v, 4);
}

int ss_copy_int8(ss_buf *b, int64_t v) {
  if (ss_buf_reserve(b, 12)) return -1;
  put_be(b, 8, 4);
  return put_be(b, (uint64_t)v, 8);
}

int ss_copy_text(ss_buf *b, const char *s, size_t len) {
  if (len > INT32_MAX - 1 || ss_buf_reserve(b, 4 + len)) return -1;
  put_be(b, len, 4);
  memcpy(b->data + b->len, s, len);
  b->len += len;
  return 0;
}

int ss_copy_jsonb(ss_buf *b, const char *json, size_t len) {
  if (len > INT32_MAX - 2 || ss_buf_reserve(b, 5 + len)) return -1;
  put_be(b, len + 1, 4);
  b->data[b->len++] = 1;
  memcpy(b->data + b->len, json, len);
  b->len += len;
  return 0;
}

int ss_copy_timestamptz(ss_buf *b, int64_t unix_us) {
  return ss_copy_int8(b, unix_us - SS_PG_EPOCH_US);
}

long ss_copy_field_begin(ss_buf *b) {
  long at = (long)b->len;
  return put_be(b, 0, 4) ? -1 : at;
}

void ss_copy_field_end(ss_buf *b, long at) {
  uint32_t n = (uint32_t)(b->len - (size_t)at - 4);
  unsigned char *p = (unsigned char *)b->data + at;
  p[0] = (unsigned char)(n >> 24);
  p[1] = (unsigned char)(n >> 16);
  p[2] = (unsigned char)(n >> 8);
  p[3] = (unsigned char)n;
}
