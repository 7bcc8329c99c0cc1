/* One error record for every failure the core reports. It is a plain value
 * (fixed buffers, no allocation) so it can be filled on any path, including
 * out-of-memory, and copied freely. The binding turns it into a Lua table. */
#ifndef SEMSTORE_ERROR_H
#define SEMSTORE_ERROR_H

#include <stdarg.h>

typedef enum {
  SS_OK = 0,
  SS_ERR_POSTGRES,   /* the server answered with an error (SQLSTATE set) */
  SS_ERR_CONNECTION, /* could not connect, or the connection broke */
  SS_ERR_POOL,       /* pool exhausted until the timeout, or closed */
  SS_ERR_INPUT,      /* a value the caller passed cannot be used */
  SS_ERR_MEMORY,
  SS_ERR_TIMEOUT,    /* a call ran past its own timeout and was cancelled */
  SS_ERR_CALLBACK,   /* a caller's function (a transaction's body) raised */
  SS_ERR_QDRANT,     /* Qdrant answered with an error (status set) */
  SS_ERR_REDIS,      /* Redis answered with an error reply */
  /* the repositories' refusals */
  SS_ERR_NOT_FOUND,          /* no row with that id */
  SS_ERR_ACCESS_DENIED,      /* the row exists, the user may not use it */
  SS_ERR_INVALID_TRANSITION  /* a status change the state machine forbids */
} ss_error_kind;

typedef struct {
  ss_error_kind kind;
  char message[1024];
  char code[6];        /* SQLSTATE, "" when not from the server */
  int status;          /* the HTTP status of an answer from Qdrant, 0 otherwise */
  char severity[16];
  char detail[512];
  char hint[256];
  char constraint[128];
  char table[128];
  char column[128];
  char schema[128];
} ss_error;

/* Resets every field; kind becomes SS_OK. */
void ss_error_clear(ss_error *err);

/* Sets kind and a printf-style message, clearing the other fields. Always
 * returns -1 so callers can write `return ss_error_set(...)`. */
int ss_error_set(ss_error *err, ss_error_kind kind, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* The name used for err.kind in Lua ("postgres", "connection", ...). */
const char *ss_error_kind_name(ss_error_kind kind);

/* Copies at most size-1 bytes and always terminates; NULL src gives "". */
void ss_strlcpy(char *dst, const char *src, unsigned long size);

#endif
