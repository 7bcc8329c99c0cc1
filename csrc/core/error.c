#include "error.h"

#include <stdio.h>
#include <string.h>

void ss_error_clear(ss_error *err) { memset(err, 0, sizeof *err); }

int ss_error_set(ss_error *err, ss_error_kind kind, const char *fmt, ...) {
  va_list ap;
  ss_error_clear(err);
  err->kind = kind;
  va_start(ap, fmt);
  vsnprintf(err->message, sizeof err->message, fmt, ap);
  va_end(ap);
  return -1;
}

const char *ss_error_kind_name(ss_error_kind kind) {
  switch (kind) {
  case SS_OK: return "ok";
  case SS_ERR_POSTGRES: return "postgres";
  case SS_ERR_CONNECTION: return "connection";
  case SS_ERR_POOL: return "pool";
  case SS_ERR_INPUT: return "input";
  case SS_ERR_MEMORY: return "memory";
  case SS_ERR_TIMEOUT: return "timeout";
  case SS_ERR_CALLBACK: return "callback";
  case SS_ERR_QDRANT: return "qdrant";
  case SS_ERR_REDIS: return "redis";
  case SS_ERR_NOT_FOUND: return "not_found";
  case SS_ERR_ACCESS_DENIED: return "access_denied";
  case SS_ERR_INVALID_TRANSITION: return "invalid_transition";
  }
  return "unknown";
}

void ss_strlcpy(char *dst, const char *src, unsigned long size) {
  unsigned long n;
  if (size == 0) return;
  if (!src) src = "";
  n = strlen(src);
  if (n >= size) n = size - 1;
  memcpy(dst, src, n);
  dst[n] = '\0';
}
