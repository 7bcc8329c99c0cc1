#include "repo_rules.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>

int ss_is_uuid(const char *s, size_t len) {
  size_t i;
  if (len != 36) return 0;
  for (i = 0; i < 36; i++) {
    char c = s[i];
    if (i == 8 || i == 13 || i == 18 || i == 23) {
      if (c != '-') return 0;
    } else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) {
      return 0;
    }
  }
  return 1;
}

int ss_is_text(const char *s, size_t len) {
  const unsigned char *p = (const unsigned char *)s, *end = p + len;
  while (p < end) {
    unsigned c = *p;
    size_t n, i;
    unsigned cp;
    /* a run of ASCII without zero bytes, eight bytes at a time: most text
     * a bulk carries, and this check ran for most of its client time */
    while (end - p >= 8) {
      uint64_t v;
      memcpy(&v, p, 8);
      if ((v | ((v - 0x0101010101010101ULL) & ~v)) & 0x8080808080808080ULL) break;
      p += 8;
    }
    if (p == end) break;
    c = *p;
    if (c < 0x80) {
      if (c == 0) return 0;
      p++;
      continue;
    }
    if (c >= 0xc2 && c <= 0xdf) n = 1, cp = c & 0x1f;
    else if (c >= 0xe0 && c <= 0xef) n = 2, cp = c & 0x0f;
    else if (c >= 0xf0 && c <= 0xf4) n = 3, cp = c & 0x07;
    else return 0;
    if ((size_t)(end - p) <= n) return 0;
    for (i = 1; i <= n; i++) {
      if ((p[i] & 0xc0) != 0x80) return 0;
      cp = cp << 6 | (p[i] & 0x3f);
    }
    /* overlong forms, surrogates, beyond U+10FFFF */
    if ((n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
      return 0;
    p += n + 1;
  }
  return 1;
}

int ss_uuid_v4(char out[37]) {
  unsigned char r[16];
  size_t got = 0;
  while (got < sizeof r) {
    ssize_t n = getrandom(r + got, sizeof r - got, 0);
    if (n <= 0) return -1;
    got += (size_t)n;
  }
  r[6] = (unsigned char)((r[6] & 0x0f) | 0x40); /* version 4 */
  r[8] = (unsigned char)((r[8] & 0x3f) | 0x80); /* RFC 4122 variant */
  snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", r[0], r[1],
           r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9], r[10], r[11], r[12], r[13], r[14], r[15]);
  return 0;
}


static int index_of(const char *const *names, const char *name) {
  int i;
  for (i = 0; names[i]; i++)
    if (strcmp(names[i], name) == 0) return i;
  return -1;
}

const char *const ss_collection_statuses[] = {"pending", "ready", "processing", "error", "degraded", NULL};
const char *const ss_document_statuses[] = {"pending", "processing", "completed", "failed", "deleted", NULL};
const char *const ss_operation_types[] = {"index", "append", "reindex", "remove_source", "delete", NULL};
const char *const ss_operation_statuses[] = {"pending", "processing", "completed", "failed", "cancelled", NULL};
const char *const ss_quantizations[] = {"float32", "float16", "int8", NULL};

int ss_is_choice(const char *const *choices, const char *name) { return index_of(choices, name) >= 0; }

/* allowed[from] is a bit set of the statuses `from` may move to. Setting
 * the status a collection already has is allowed (it updates the message). */
#define S(x) (1 << (x))
enum { PENDING, READY, PROCESSING, ERROR, DEGRADED };
static const int collection_moves[] = {
    [PENDING] = S(PENDING) | S(PROCESSING) | S(READY) | S(ERROR),
    [READY] = S(READY) | S(PROCESSING) | S(DEGRADED) | S(ERROR),
    [PROCESSING] = S(PROCESSING) | S(READY) | S(ERROR) | S(DEGRADED),
    [ERROR] = S(ERROR) | S(PROCESSING) | S(PENDING),
    [DEGRADED] = S(DEGRADED) | S(PROCESSING) | S(READY) | S(ERROR),
};

int ss_collection_transition_ok(const char *from, const char *to) {
  int f = index_of(ss_collection_statuses, from), t = index_of(ss_collection_statuses, to);
  return f >= 0 && t >= 0 && (collection_moves[f] & S(t)) != 0;
}

enum { OP_PENDING, OP_PROCESSING, OP_COMPLETED, OP_FAILED, OP_CANCELLED };
static const int operation_moves[] = {
    [OP_PENDING] = S(OP_PROCESSING) | S(OP_FAILED) | S(OP_CANCELLED),
    [OP_PROCESSING] = S(OP_PROCESSING) | S(OP_COMPLETED) | S(OP_FAILED) | S(OP_CANCELLED),
    [OP_COMPLETED] = 0,
    [OP_FAILED] = 0,
    [OP_CANCELLED] = 0,
};

int ss_operation_transition_ok(const char *from, const char *to) {
  int f = index_of(ss_operation_statuses, from), t = index_of(ss_operation_statuses, to);
  return f >= 0 && t >= 0 && (operation_moves[f] & S(t)) != 0;
}

int ss_const_time_equal(const char *a, const char *b) {
  size_t la = strlen(a), lb = strlen(b), i;
  unsigned char diff = (unsigned char)(la != lb);
  for (i = 0; i < la; i++) diff |= (unsigned char)(a[i] ^ b[i < lb ? i : 0]);
  return diff == 0;
}
