/* A growable byte buffer. It never aborts: every function that can
 * allocate returns -1 when memory runs out and leaves the buffer valid. */
#ifndef SEMSTORE_BUF_H
#define SEMSTORE_BUF_H

#include <stddef.h>

typedef struct {
  char *data;
  size_t len, cap;
} ss_buf;

void ss_buf_init(ss_buf *b);
void ss_buf_free(ss_buf *b);
int ss_buf_reserve(ss_buf *b, size_t extra);
int ss_buf_append(ss_buf *b, const void *p, size_t n);
int ss_buf_putc(ss_buf *b, char c);

#endif
