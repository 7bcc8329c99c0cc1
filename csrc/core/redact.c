#include "redact.h"

#include <ctype.h>
#include <string.h>
#include <strings.h>

typedef struct {
  char *p;
  size_t left;
} sink;

static void put(sink *s, const char *src, size_t n) {
  if (n >= s->left) n = s->left ? s->left - 1 : 0;
  memcpy(s->p, src, n);
  s->p += n;
  s->left -= n;
}

/* End of a `password=` value: a quoted conninfo value, or a bare one that
 * stops at white space or, inside a URI query, at '&'. */
static const char *value_end(const char *v) {
  if (*v == '\'') {
    for (v++; *v && *v != '\''; v++)
      if (*v == '\\' && v[1]) v++;
    return *v ? v + 1 : v;
  }
  while (*v && !isspace((unsigned char)*v) && *v != '&' && *v != '"') v++;
  return v;
}

void ss_redact(const char *in, char *out, size_t outsz) {
  sink s = {out, outsz};
  const char *p = in;
  if (!outsz) return;
  while (*p) {
    const char *scheme = strstr(p, "://");
    const char *kw = strcasestr(p, "password");
    if (scheme && (!kw || scheme < kw)) {
      /* userinfo ends at the last '@' before the path, query or space */
      const char *auth = scheme + 3, *end = auth, *at = NULL, *colon = NULL;
      while (*end && !strchr("/?# \t\n\"'", *end)) {
        if (*end == '@') at = end;
        end++;
      }
      if (at) colon = memchr(auth, ':', (size_t)(at - auth));
      if (colon) {
        put(&s, p, (size_t)(colon + 1 - p));
        put(&s, "***", 3);
        p = at;
      } else {
        put(&s, p, (size_t)(auth - p));
        p = auth;
      }
      continue;
    }
    if (kw) {
      const char *v = kw + 8;
      while (*v == ' ' || *v == '\t') v++;
      put(&s, p, (size_t)(kw + 8 - p));
      p = kw + 8;
      if (*v == '=') {
        v++;
        while (*v == ' ' || *v == '\t') v++;
        put(&s, "=***", 4);
        p = value_end(v);
      }
      continue;
    }
    put(&s, p, strlen(p));
    break;
  }
  *s.p = '\0';
}
