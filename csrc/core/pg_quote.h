/* Names and literals quoted for SQL text by libpq (PQescapeIdentifier,
 * PQescapeLiteral), for the rare DDL that must build a statement. No server
 * is involved: libpq wants a PGconn only for its encoding settings, so the
 * process keeps one that never connects. */
#ifndef SEMSTORE_PG_QUOTE_H
#define SEMSTORE_PG_QUOTE_H

#include <stddef.h>

#include "error.h"

/* The most bytes the quoted form of len bytes takes, terminator included:
 * every byte doubled, two quotes, and libpq's " E" before a literal that
 * holds a backslash. */
#define SS_QUOTE_MAX(len) (2 * (size_t)(len) + 5)

/* Writes s (len bytes) quoted as a name (as_ident) or as a string literal
 * into out (outsz >= SS_QUOTE_MAX(len)), terminated, and its length into
 * *outlen. 0, or -1 with err set: an input error when s holds a zero byte,
 * is not UTF-8, or is an empty name; a memory error. Thread-safe. */
int ss_pg_quote(const char *s, size_t len, int as_ident, char *out, size_t outsz, size_t *outlen, ss_error *err);

#endif
