/* A Qdrant REST client over libcurl: single requests and batched, parallel
 * upserts, both retried with exponential backoff and full jitter.
 *
 * Everything runs on the calling thread. A client owns one curl multi
 * handle and its easy handles, so connections stay open (kept alive) from
 * one call to the next. A client is not thread-safe, and it runs one call
 * at a time: a call made while an upsert is under way on the same client
 * (from the code that feeds it points) is refused with an input error.
 *
 * What is retried: answers 429 (after its Retry-After when given), 500,
 * 502, 503 and 504, timeouts and dropped connections. Nothing else: a 400,
 * 404, 409 or 422 fails at once, with Qdrant's own message. A retry sends
 * the same body again, so with point ids it never writes a point twice. */
#ifndef SEMSTORE_QDRANT_H
#define SEMSTORE_QDRANT_H

#include <stddef.h>

#include "buf.h"
#include "error.h"

typedef struct ss_qdrant ss_qdrant;

typedef struct {
  long connect_timeout_ms; /* one connection attempt (default 5000) */
  long timeout_ms;         /* one request, from sending to the last byte of the answer (default 30000) */
  int max_retries;         /* retries of one request or batch (default 6) */
  /* seconds one request or batch may take, all its attempts included
   * (default 120, must be positive): no retry starts after it, and each
   * attempt's timeout is cut to what is left. Time the caller spends away
   * from an upsert (making points) does not count, nor for timeout_ms. */
  double retry_timeout;
  /* the backoff before retry n is uniform in [0, min(backoff_max,
   * backoff_base * 2^n)] seconds ("full jitter") */
  double backoff_base, backoff_max; /* defaults 0.1 and 10 */
} ss_qdrant_limits;

void ss_qdrant_limits_defaults(ss_qdrant_limits *l);

/* url: "http://host:port" or "https://...", optionally with a path prefix;
 * api_key: sent as the api-key header, NULL or "" for none. Both are
 * copied. NULL with err set (input, memory) on failure. */
ss_qdrant *ss_qdrant_new(const char *url, const char *api_key, const ss_qdrant_limits *defaults, ss_error *err);
void ss_qdrant_free(ss_qdrant *q);
const ss_qdrant_limits *ss_qdrant_defaults(const ss_qdrant *q);
/* The URL without any user:password in it, for printing. The API key is
 * never printed anywhere. */
const char *ss_qdrant_display_url(const ss_qdrant *q);

/* One request. method: GET, PUT, POST, PATCH or DELETE; path: starts with
 * '/', percent-encoded by the caller; body: JSON, NULL for none. limits:
 * NULL for the client's. On a 2xx answer returns 0 with the answer's body
 * appended to out. Otherwise -1 with err set: SS_ERR_QDRANT (err->status
 * is the HTTP status, err->message Qdrant's own message), SS_ERR_TIMEOUT,
 * SS_ERR_CONNECTION, SS_ERR_MEMORY, or SS_ERR_INPUT when the client is
 * busy. *retries (when not NULL) gets the number of retries made. */
int ss_qdrant_request(ss_qdrant *q, const char *method, const char *path, const char *body, size_t len,
                      const ss_qdrant_limits *limits, ss_buf *out, int *retries, ss_error *err);

/* An upsert: points go in one by one, are cut into batches by count and by
 * bytes (whichever fills first), and up to `parallel` batches are in
 * flight at once. Memory stays bounded: adding a point waits while
 * `parallel` batches are unfinished. When a batch finally fails, no further
 * batch is sent; batches in flight finish, and their results stand. */
typedef struct ss_qdrant_upsert ss_qdrant_upsert;

typedef struct {
  ss_qdrant_limits limits;
  size_t batch_size; /* points per request (default 256) */
  size_t max_bytes;  /* bytes per request body (default 4 MiB; Qdrant refuses above 32 MiB) */
  int parallel;      /* requests in flight (default 4, at most SS_QDRANT_MAX_PARALLEL) */
} ss_qdrant_upsert_opts;

#define SS_QDRANT_MAX_PARALLEL 64
#define SS_QDRANT_MAX_BODY ((size_t)32 * 1024 * 1024)

typedef struct {
  size_t points;  /* points written (their batch succeeded) */
  size_t batches; /* batches written */
  size_t retries;
  double seconds;
} ss_qdrant_report;

/* Fill o with the defaults (the client's limits), then change what the
 * caller chose. method and path: the points endpoint with its query
 * ("PUT", "/collections/x/points?wait=true"), copied. NULL with err set
 * when an option is out of range, the client is busy, or memory runs out. */
void ss_qdrant_upsert_opts_defaults(ss_qdrant_upsert_opts *o, const ss_qdrant *q);
ss_qdrant_upsert *ss_qdrant_upsert_begin(ss_qdrant *q, const char *method, const char *path,
                                         const ss_qdrant_upsert_opts *o, ss_error *err);
/* The buffer the caller appends the next point's JSON object to (it is
 * the batch's own body, so nothing is copied): write one object, then call
 * ss_qdrant_upsert_add. A point left half-written (an error midway) is
 * dropped by the next call. NULL when memory runs out. */
ss_buf *ss_qdrant_upsert_point(ss_qdrant_upsert *u);
/* Adds the point written into ss_qdrant_upsert_point(u); id is its id as
 * JSON text (42 or "uuid"), kept to report it should its batch fail. May
 * send a batch, and wait for one to finish; every millisecond or so it
 * also lets the requests in flight move on. 0, or -1 with err set when the
 * point alone is larger than max_bytes (input) or memory runs out; a
 * failed batch is not an error here (see ss_qdrant_upsert_stopped). */
int ss_qdrant_upsert_add(ss_qdrant_upsert *u, const char *id, size_t id_len, ss_error *err);
/* The largest point (bytes of JSON) a batch can hold: max_bytes less the
 * batch's own frame. */
size_t ss_qdrant_upsert_room(const ss_qdrant_upsert *u);
/* Nonzero once a batch has finally failed: add nothing more, but record
 * the ids of points that will not be sent with ss_qdrant_upsert_unsent. */
int ss_qdrant_upsert_stopped(const ss_qdrant_upsert *u);
int ss_qdrant_upsert_unsent(ss_qdrant_upsert *u, const char *id, size_t id_len, ss_error *err);
/* Sends what is left and waits for every batch. Returns 0 when every batch
 * was written, -1 with err set to the first failure otherwise; the report
 * is filled either way, and the ids not written can then be read. */
int ss_qdrant_upsert_finish(ss_qdrant_upsert *u, ss_qdrant_report *report, ss_error *err);
size_t ss_qdrant_upsert_failed_count(const ss_qdrant_upsert *u);
/* The ids not written, as given to add (JSON text), one after the other,
 * each followed by '\0'; NULL when there are none. */
const char *ss_qdrant_upsert_failed_ids(const ss_qdrant_upsert *u);
/* Whether a call (an upsert) is under way on q: it may not be freed then. */
int ss_qdrant_busy(const ss_qdrant *q);
/* Stops what is in flight and frees everything; the client is free again.
 * NULL is fine. */
void ss_qdrant_upsert_free(ss_qdrant_upsert *u);

/* Qdrant's message from an error body {"status":{"error":"..."}}, copied
 * into out (size > 0) and unescaped; 0, or -1 (out is "") when the body
 * has no such message. */
int ss_qdrant_error_message(const char *body, size_t len, char *out, size_t size);

#endif
