/* Numbers as text that reads back exactly: the shortest decimal digits
 * that strtod (or strtof) turns into the same bits, from Google's
 * double-conversion through a C++ shim (float_text.cc).
 *
 * The layout is PostgreSQL's float8out: plain decimals from 1e-4 up to
 * below 1e15, otherwise an exponent with a sign and at least two digits
 * ("1e+21", "1e-07"); -0 keeps its sign. Every finite result is both a
 * JSON number and valid float4/float8 input. NaN and infinities come out
 * as PostgreSQL spells them ("NaN", "Infinity", "-Infinity"), which JSON
 * has no form for.
 *
 * Both functions write at most size bytes including the terminator, like
 * snprintf, and return the full length of the text; nothing is allocated
 * and both are safe on any thread. */
#ifndef SEMSTORE_FLOAT_TEXT_H
#define SEMSTORE_FLOAT_TEXT_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* the longest double is "-1.7976931348623157e+308": 24 bytes */
#define SS_DOUBLE_TEXT_SIZE 25
/* the longest float32 is a 15-digit integer such as "-999999940000000": 16 bytes */
#define SS_FLOAT32_TEXT_SIZE 17

int ss_format_double(char *out, size_t size, double d);
/* Shortest for float32 precision: 0.1f is "0.1", not the "0.10000000149011612"
 * its widening to double would print. */
int ss_format_float32(char *out, size_t size, float f);

#ifdef __cplusplus
}
#endif

#endif
