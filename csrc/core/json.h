/* JSON text writers over ss_buf: numbers that read back exactly (64-bit
 * integers as integers, doubles and float32s in their shortest round-trip
 * form) and escaped strings. Bytes in, bytes out; the Lua traversal lives
 * in the binding. Every writer returns 0, or -1 when memory runs out. */
#ifndef SEMSTORE_JSON_H
#define SEMSTORE_JSON_H

#include <stddef.h>

#include "buf.h"

int ss_json_integer(ss_buf *b, long long v);
/* d must be finite: JSON has no NaN or infinity. */
int ss_json_double(ss_buf *b, double d);
/* f must be finite; its shortest float32 text, for vectors stored as
 * float32 (Qdrant), so 0.1f is written 0.1. */
int ss_json_float32(ss_buf *b, float f);
/* Whether s is valid UTF-8 (no overlong forms, surrogates or code points
 * above U+10FFFF): JSON text must be, and Qdrant's parser refuses the
 * whole body otherwise. */
int ss_utf8_valid(const char *s, size_t len);
/* A quoted string: ", \ and control characters escaped, other bytes
 * (UTF-8) copied as they are. */
int ss_json_string(ss_buf *b, const char *s, size_t len);

#endif
