#include "pg_quote.h"

#include <libpq-fe.h>
#include <pthread.h>
#include <string.h>

#include "repo_rules.h"

/* libpq's escaping functions read only the PGconn's client encoding and
 * write its error message, so one PGconn serves the whole process, one
 * caller at a time. It never connects: an option libpq does not know stops
 * PQconnectStartParams while it reads the options, before any host lookup
 * or socket (so it keeps libpq's defaults: client encoding SQL_ASCII, which
 * takes each byte above 0x7f as a character of its own; no byte of a UTF-8
 * sequence is a quote or a backslash, so valid UTF-8 comes out right, and
 * UTF-8 is checked here first). Made on first use, under the lock, so a
 * failed attempt (out of memory) is tried again next time. */
static PGconn *offline;
static pthread_mutex_t offline_lock = PTHREAD_MUTEX_INITIALIZER;

static PGconn *offline_conn(void) {
  static const char *const keys[] = {"semstore_offline", NULL};
  static const char *const values[] = {"1", NULL};
  if (!offline) offline = PQconnectStartParams(keys, values, 0);
  return offline;
}

/* At exit, or when the Lua module is unloaded. */
__attribute__((destructor)) static void free_offline(void) {
  if (offline) PQfinish(offline);
  offline = NULL;
}

int ss_pg_quote(const char *s, size_t len, int as_ident, char *out, size_t outsz, size_t *outlen, ss_error *err) {
  char *quoted = NULL;
  size_t n;
  const char *what = as_ident ? "a name" : "a literal";
  /* libpq would stop at a zero byte, and with SQL_ASCII it takes any bytes */
  if (memchr(s, '\0', len)) return ss_error_set(err, SS_ERR_INPUT, "%s to quote cannot hold a zero byte", what);
  if (!ss_is_text(s, len)) return ss_error_set(err, SS_ERR_INPUT, "%s to quote must be UTF-8", what);
  if (as_ident && !len) return ss_error_set(err, SS_ERR_INPUT, "a name cannot be empty");
  pthread_mutex_lock(&offline_lock);
  if (offline_conn())
    quoted = as_ident ? PQescapeIdentifier(offline, s, len) : PQescapeLiteral(offline, s, len);
  pthread_mutex_unlock(&offline_lock);
  /* the input was checked, so only memory can have run out */
  if (!quoted) return ss_error_set(err, SS_ERR_MEMORY, "out of memory quoting %s", what);
  n = strlen(quoted);
  if (n >= outsz) {
    PQfreemem(quoted);
    return ss_error_set(err, SS_ERR_MEMORY, "no room for the quoted form of %s", what);
  }
  memcpy(out, quoted, n + 1);
  PQfreemem(quoted);
  *outlen = n;
  return 0;
}
