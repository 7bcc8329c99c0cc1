/* Removes passwords from connection strings and from messages that may
 * quote them (libpq echoes a bad conninfo string in its parse errors). */
#ifndef SEMSTORE_REDACT_H
#define SEMSTORE_REDACT_H

#include <stddef.h>

/* Writes `in` to `out` (at most outsz bytes, always terminated) with the
 * password of every `scheme://user:password@` and every `password=value`
 * (plain, quoted, or as a URI query parameter) replaced by "***". */
void ss_redact(const char *in, char *out, size_t outsz);

#endif
