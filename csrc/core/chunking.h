/* Cutting a text into overlapping chunks for embedding: sizes counted in
 * characters (UTF-8 code points), a cut never inside a character, and
 * preferably just after whitespace. Bytes in, offsets out; no I/O. */
#ifndef SEMSTORE_CHUNKING_H
#define SEMSTORE_CHUNKING_H

#include <stddef.h>

typedef struct {
  size_t start, end; /* byte offsets: the chunk is text[start, end) */
} ss_chunk;

/* Chunks of at most `size` characters (size >= 1); each after the first
 * starts `overlap` characters (overlap < size) before the previous one
 * ends. Writes at most cap chunks into out and returns how many there are
 * (call again with more room when that is more than cap). An empty text
 * has no chunks. Invalid UTF-8 bytes count as one character each. */
size_t ss_chunk_text(const char *text, size_t len, size_t size, size_t overlap, ss_chunk *out, size_t cap);

#endif
