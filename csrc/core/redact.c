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

/* ---- Just enough of PostgreSQL's lexer to know where a literal, a quoted
 * name or a comment ends, so that the word PASSWORD counts only where it is
 * a keyword. Not locale-dependent: bytes above 0x7f are letters, as in
 * PostgreSQL's scanner. Every scan stops at `end`; a construct left open
 * runs to it. */

static int ident_start(unsigned char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c >= 0x80;
}

static int ident_char(unsigned char c) { return ident_start(c) || (c >= '0' && c <= '9') || c == '$'; }

/* The length of the dollar-quote tag at s ($$ or $name$), 0 if none: $1
 * is a parameter, not a tag. */
static size_t dollar_tag(const char *s, const char *end) {
  const char *t = s + 1;
  if (s >= end || *s != '$') return 0;
  if (t < end && ident_start((unsigned char)*t))
    while (t < end && ident_char((unsigned char)*t) && *t != '$') t++;
  return t < end && *t == '$' ? (size_t)(t + 1 - s) : 0;
}

/* Where the string literal starting at s ends: '...' ('' inside), E'...'
 * (also \-escapes), U&'...', or $tag$...$tag$. NULL when s starts none. A
 * plain '...' takes a backslash literally (standard_conforming_strings,
 * on since PostgreSQL 9.1). *open gets the length of its opening, *close
 * that of its closing (0 when it runs to end). */
static const char *literal_end(const char *s, const char *end, size_t *open, size_t *close) {
  const char *q = s;
  int escapes = 0;
  size_t tag;
  if (q + 1 < end && (*q == 'E' || *q == 'e') && q[1] == '\'') {
    escapes = 1;
    q++;
  } else if (q + 2 < end && (*q == 'U' || *q == 'u') && q[1] == '&' && q[2] == '\'') {
    q += 2;
  }
  if (q < end && *q == '\'') {
    *open = (size_t)(q + 1 - s);
    *close = 1;
    for (q++; q < end; q++) {
      if (escapes && *q == '\\' && q + 1 < end) {
        q++;
      } else if (*q == '\'') {
        if (q + 1 < end && q[1] == '\'')
          q++;
        else
          return q + 1;
      }
    }
    *close = 0;
    return end;
  }
  if ((tag = dollar_tag(s, end))) {
    const char *c = memmem(s + tag, (size_t)(end - s - tag), s, tag);
    *open = *close = tag;
    if (c) return c + tag;
    *close = 0;
    return end;
  }
  return NULL;
}

/* Where the "quoted name" at s ends ("" inside). */
static const char *quoted_name_end(const char *s, const char *end) {
  for (s++; s < end; s++) {
    if (*s != '"') continue;
    if (s + 1 < end && s[1] == '"')
      s++;
    else
      return s + 1;
  }
  return end;
}

/* Where the comment at s ends (-- to the line's end, nested slash-star
 * comments), NULL when s starts none. *inner gets where its text starts. */
static const char *comment_end(const char *s, const char *end, const char **inner) {
  int depth = 1;
  if (s + 1 >= end) return NULL;
  *inner = s + 2;
  if (s[0] == '-' && s[1] == '-') {
    const char *nl = memchr(s, '\n', (size_t)(end - s));
    return nl ? nl : end;
  }
  if (s[0] != '/' || s[1] != '*') return NULL;
  for (s += 2; s + 1 < end; s++) {
    if (s[0] == '/' && s[1] == '*') {
      depth++;
      s++;
    } else if (s[0] == '*' && s[1] == '/') {
      s++;
      if (!--depth) return s + 1;
    }
  }
  return end;
}

/* Finds the literals that follow the keyword PASSWORD, one at a time, in
 * order. The text of a comment or of a dollar-quoted body (a DO block, a
 * function) is searched too, since a statement there, or one commented
 * out, may hold a password; constructs inside those are skipped whole. */
typedef struct {
  const char *pos, *end;
  /* inside a comment or a dollar body: where its text ends, and where the
   * search goes on after it */
  const char *inner_end, *resume;
} sql_scan;

static const char *skip_blanks(const char *s, const char *end) {
  for (;;) {
    const char *inner, *c;
    while (s < end && isspace((unsigned char)*s)) s++;
    if (!(c = comment_end(s, end, &inner))) return s;
    s = c;
  }
}

/* 1 with [*lit, *lit_end) the next such literal (*open and *close as for
 * literal_end), 0 when there is none. */
static int next_password_literal(sql_scan *sc, const char **lit, const char **lit_end, size_t *open, size_t *close) {
  for (;;) {
    const char *limit = sc->inner_end ? sc->inner_end : sc->end;
    const char *p = sc->pos, *e, *inner = NULL, *inner_end = NULL;
    size_t o, c;
    if (p >= limit) {
      if (!sc->inner_end) return 0;
      sc->pos = sc->resume;
      sc->inner_end = NULL;
      continue;
    }
    if ((e = comment_end(p, limit, &inner))) {
      inner_end = e;
    } else if ((e = literal_end(p, limit, &o, &c))) {
      if (*p != '$') { /* a quoted string is data: skipped whole */
        sc->pos = e;
        continue;
      }
      inner = p + o;
      inner_end = e - c;
    } else if (*p == '"') {
      sc->pos = quoted_name_end(p, limit);
      continue;
    }
    if (e) {
      if (sc->inner_end) { /* one level deep is enough */
        sc->pos = e;
      } else {
        sc->pos = inner;
        sc->inner_end = inner_end;
        sc->resume = e;
      }
      continue;
    }
    if (!ident_start((unsigned char)*p)) {
      sc->pos = p + 1;
      continue;
    }
    for (e = p; e < limit && ident_char((unsigned char)*e); e++) {
    }
    sc->pos = e;
    if (e - p == 8 && strncasecmp(p, "password", 8) == 0) {
      const char *q = skip_blanks(e, limit);
      if ((*lit_end = literal_end(q, limit, open, close))) {
        *lit = q;
        sc->pos = *lit_end;
        return 1;
      }
    }
  }
}

/* The first place at or after p where `in` quotes a password literal of
 * the statement as written there: from its opening quote through its
 * whole text, or through to the end of `in` when the message was cut
 * short. A literal with nothing in it has nothing to hide. */
static const char *quoted_literal(const char *p, const char *statement, size_t *len) {
  sql_scan sc = {statement, statement + strlen(statement), NULL, NULL};
  const char *lit, *lit_end, *best = NULL;
  size_t open, close;
  while (next_password_literal(&sc, &lit, &lit_end, &open, &close)) {
    size_t raw = (size_t)(lit_end - lit), body_end = raw - close;
    const char *q;
    if (body_end <= open) continue;
    for (q = p; *q && (!best || q < best); q++) {
      size_t m = 0;
      while (m < raw && q[m] && q[m] == lit[m]) m++;
      if (m > open && (m >= body_end || !q[m])) {
        best = q;
        *len = m;
        break;
      }
    }
  }
  return best;
}

void ss_redact_message(const char *in, const char *statement, char *out, size_t outsz) {
  sink s = {out, outsz};
  const char *p = in, *lit = NULL, *lit_end = NULL;
  size_t open, close;
  /* the password literals of `in` itself, when it is SQL */
  sql_scan sc = {in, in + strlen(in), NULL, NULL};
  int more;
  if (!outsz) return;
  more = next_password_literal(&sc, &lit, &lit_end, &open, &close);
  while (*p) {
    const char *scheme = strstr(p, "://");
    const char *kw = strcasestr(p, "password");
    const char *at = NULL, *after = NULL, *quoted;
    size_t quoted_len = 0;
    while (more && lit_end <= p) more = next_password_literal(&sc, &lit, &lit_end, &open, &close);
    if (more) { /* what another rule left of a literal is still hidden */
      at = lit < p ? p : lit;
      after = lit_end;
    }
    if (statement && (quoted = quoted_literal(p, statement, &quoted_len)) && (!at || quoted < at)) {
      at = quoted;
      after = quoted + quoted_len;
    }
    if (at && (!scheme || at < scheme) && (!kw || at < kw)) {
      put(&s, p, (size_t)(at - p));
      put(&s, "'***'", 5);
      p = after;
      continue;
    }
    if (scheme && (!kw || scheme < kw)) {
      /* userinfo ends at the last '@' before the path, query or space */
      const char *auth = scheme + 3, *end = auth, *at_sign = NULL, *colon = NULL;
      while (*end && !strchr("/?# \t\n\"'", *end)) {
        if (*end == '@') at_sign = end;
        end++;
      }
      if (at_sign) colon = memchr(auth, ':', (size_t)(at_sign - auth));
      if (colon) {
        put(&s, p, (size_t)(colon + 1 - p));
        put(&s, "***", 3);
        p = at_sign;
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

void ss_redact(const char *in, char *out, size_t outsz) { ss_redact_message(in, NULL, out, outsz); }

/* Replaces every occurrence of secret[0..n) in buf (NUL-terminated, room
 * for size bytes) by "***". */
static void replace_all(char *buf, size_t size, const char *secret, size_t n) {
  char tmp[2048];
  size_t o = 0;
  const char *p = buf;
  if (n == 0 || size > sizeof tmp) return;
  while (*p && o + 4 < size) {
    if (strncmp(p, secret, n) == 0) {
      memcpy(tmp + o, "***", 3);
      o += 3;
      p += n;
    } else {
      tmp[o++] = *p++;
    }
  }
  tmp[o] = '\0';
  memcpy(buf, tmp, o + 1);
}

static int hexdigit(char c) {
  return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* Hides secret[0..n) and its percent-decoded form. */
static void hide(char *buf, size_t size, const char *secret, size_t n) {
  char dec[256];
  size_t i, d = 0;
  replace_all(buf, size, secret, n);
  for (i = 0; i < n && d + 1 < sizeof dec; i++) {
    if (secret[i] == '%' && i + 2 < n + 0 && hexdigit(secret[i + 1]) >= 0 && hexdigit(secret[i + 2]) >= 0) {
      dec[d++] = (char)(hexdigit(secret[i + 1]) * 16 + hexdigit(secret[i + 2]));
      i += 2;
    } else {
      dec[d++] = secret[i];
    }
  }
  if (d != n) replace_all(buf, size, dec, d);
}

void ss_redact_conninfo_secrets(const char *in, const char *conninfo, char *out, size_t outsz) {
  const char *p;
  ss_redact(in, out, outsz);
  if (!conninfo) return;
  /* scheme://user:secret@host */
  if ((p = strstr(conninfo, "://"))) {
    const char *start = p + 3, *end = start, *at = NULL, *colon;
    while (*end && *end != '/' && *end != '?') {
      if (*end == '@') at = end;
      end++;
    }
    if (at && (colon = memchr(start, ':', (size_t)(at - start)))) hide(out, outsz, colon + 1, (size_t)(at - colon - 1));
  }
  /* password=secret, as a keyword or a URI query parameter */
  for (p = conninfo; (p = strcasestr(p, "password")); p += 8) {
    const char *v = p + 8, *e;
    while (*v == ' ' || *v == '\t') v++;
    if (*v != '=') continue;
    v++;
    while (*v == ' ' || *v == '\t') v++;
    if (*v == '\'') {
      for (e = ++v; *e && *e != '\''; e++)
        if (*e == '\\' && e[1]) e++;
    } else {
      for (e = v; *e && *e != ' ' && *e != '&' && *e != '\t'; e++) {}
    }
    hide(out, outsz, v, (size_t)(e - v));
  }
}
