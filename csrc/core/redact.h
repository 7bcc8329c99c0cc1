/* Removes passwords from connection strings, SQL and messages that may
 * quote them (libpq echoes a bad conninfo string in its parse errors; the
 * server quotes a statement's text in a syntax error). */
#ifndef SEMSTORE_REDACT_H
#define SEMSTORE_REDACT_H

#include <stddef.h>

/* Writes `in` to `out` (at most outsz bytes, always terminated) with the
 * password of every `scheme://user:password@` and every `password=value`
 * (plain, quoted, or as a URI query parameter) replaced by "***", and the
 * literal after every SQL keyword PASSWORD ('...', E'...', U&'...',
 * $$...$$ or $tag$...$tag$; also in comments and dollar-quoted bodies, not
 * in other literals or names) replaced by '***' (an unterminated one hides
 * everything after it). The output is at most 3 * strlen(in) + 1 bytes. */
void ss_redact(const char *in, char *out, size_t outsz);

/* ss_redact, and also: where `in` (a server's message about `statement`)
 * quotes one of the statement's password literals as written there, or the
 * start of one when the message was cut short, that becomes '***' too.
 * statement may be NULL. Same bound on the output. */
void ss_redact_message(const char *in, const char *statement, char *out, size_t outsz);

/* ss_redact, and also every occurrence of a password that conninfo (a URL
 * or key=value string) holds, as written there or percent-decoded: libpq's
 * parse errors may quote it bare ("invalid percent-encoded token"). */
void ss_redact_conninfo_secrets(const char *in, const char *conninfo, char *out, size_t outsz);

#endif
