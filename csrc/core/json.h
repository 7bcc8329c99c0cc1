/* JSON text writers over ss_buf: numbers that read back exactly (64-bit
 * integers as integers, doubles in their shortest round-trip form) and
 * escaped strings. Bytes in, bytes out; the Lua traversal lives in the
 * binding. Every writer returns 0, or -1 when memory runs out. */
#ifndef SEMSTORE_JSON_H
#define SEMSTORE_JSON_H

#include <stddef.h>

#include "buf.h"

/* The shortest decimal text that reads back as d (at most 24 bytes plus
 * the terminator; NaN and infinities as PostgreSQL spells them). Returns
 * its length. */
int ss_format_double(char *out, size_t size, double d);

int ss_json_integer(ss_buf *b, long long v);
/* d must be finite: JSON has no NaN or infinity. */
int ss_json_double(ss_buf *b, double d);
/* A quoted string: ", \ and control characters escaped, other bytes
 * (UTF-8) copied as they are. */
int ss_json_string(ss_buf *b, const char *s, size_t len);

#endif
