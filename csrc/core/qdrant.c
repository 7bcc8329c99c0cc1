#include "qdrant.h"

#include <curl/curl.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "pool.h" /* ss_monotonic */

/* An answer larger than this is refused rather than grown without end
 * (a scroll page with vectors is a few MB; this is far above). */
#define MAX_ANSWER ((size_t)1 << 30)

struct ss_qdrant {
  char *base;    /* the URL without a trailing slash */
  char *display; /* the same without user:password */
  struct curl_slist *headers;
  ss_qdrant_limits limits;
  CURLM *multi;
  CURL *easy[SS_QDRANT_MAX_PARALLEL]; /* made when first needed, kept for their connections */
  int busy;                           /* a call is under way */
  uint64_t rng;                       /* for the backoff's jitter */
};

/* One request and its attempts. */
typedef struct {
  const char *method;
  char *url;
  ss_buf body, answer;
  ss_buf ids; /* an upsert batch: its ids' JSON texts, each followed by '\0' */
  size_t npoints;
  int attempts, slot;     /* slot: the easy handle it runs on, -1 when not running */
  /* first_start + retry_timeout bounds all its attempts; deadline ends the
   * one running. Both are moved on by the time the caller spends away
   * from the engine (an upsert's iterator), when nobody reads answers. */
  double first_start, deadline, not_before;
  double retry_after;     /* from the last answer's Retry-After, -1 when none */
  ss_error err;           /* the last attempt's failure */
  int done, failed;
} job;

/* The jobs of one call, driven on the client's multi handle. */
typedef struct {
  ss_qdrant *q;
  ss_qdrant_limits lim;
  int parallel;
  job **jobs; /* unfinished */
  size_t njobs, cap;
  int running;
  size_t retries;
  double away_since; /* when control went back to the caller, 0 while driving */
  /* called once per job that finished (done or failed) before it is
   * freed; the single request keeps its job instead */
  void (*finished)(void *ctx, job *j);
  void *ctx;
} engine;

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_result;
static void init_curl(void) { curl_init_result = curl_global_init(CURL_GLOBAL_DEFAULT); }

void ss_qdrant_limits_defaults(ss_qdrant_limits *l) {
  l->connect_timeout_ms = 5000;
  l->timeout_ms = 30000;
  l->max_retries = 6;
  l->retry_timeout = 120;
  l->backoff_base = 0.1;
  l->backoff_max = 10;
}

static char *dup_str(const char *s) {
  size_t n = strlen(s);
  char *d = malloc(n + 1);
  if (d) memcpy(d, s, n + 1);
  return d;
}

/* The URL as it is printed: scheme, host, port and path as libcurl reads
 * them, never the user or password, nor a query. NULL when libcurl cannot
 * read the URL (*bad set) or memory runs out. */
static char *display_url(const char *base, int *bad) {
  CURLU *u = curl_url();
  char *scheme = NULL, *host = NULL, *port = NULL, *path = NULL, *d = NULL;
  *bad = 0;
  if (!u) return NULL;
  if (curl_url_set(u, CURLUPART_URL, base, 0) != CURLUE_OK || curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) ||
      curl_url_get(u, CURLUPART_HOST, &host, 0)) {
    *bad = 1;
  } else {
    size_t n;
    if (curl_url_get(u, CURLUPART_PORT, &port, 0)) port = NULL;
    if (curl_url_get(u, CURLUPART_PATH, &path, 0)) path = NULL;
    n = strlen(scheme) + strlen(host) + (port ? strlen(port) : 0) + (path ? strlen(path) : 0) + 8;
    if ((d = malloc(n)))
      snprintf(d, n, "%s://%s%s%s%s", scheme, host, port ? ":" : "", port ? port : "",
               path && strcmp(path, "/") != 0 ? path : "");
  }
  curl_free(scheme);
  curl_free(host);
  curl_free(port);
  curl_free(path);
  curl_url_cleanup(u);
  return d;
}

ss_qdrant *ss_qdrant_new(const char *url, const char *api_key, const ss_qdrant_limits *defaults, ss_error *err) {
  ss_qdrant *q;
  size_t n;
  struct curl_slist *h;
  if (!url || (strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0)) {
    ss_error_set(err, SS_ERR_INPUT, "the Qdrant URL must start with http:// or https://");
    return NULL;
  }
  if (api_key && strpbrk(api_key, "\r\n")) {
    ss_error_set(err, SS_ERR_INPUT, "the Qdrant API key holds a line break");
    return NULL;
  }
  pthread_once(&curl_once, init_curl);
  if (curl_init_result != CURLE_OK) {
    ss_error_set(err, SS_ERR_CONNECTION, "libcurl could not start: %s", curl_easy_strerror(curl_init_result));
    return NULL;
  }
  q = calloc(1, sizeof *q);
  if (!q) goto oom;
  q->base = dup_str(url);
  if (!q->base) goto oom;
  n = strlen(q->base);
  while (n > 0 && q->base[n - 1] == '/') q->base[--n] = '\0';
  {
    int bad;
    q->display = display_url(q->base, &bad);
    if (bad) {
      ss_qdrant_free(q);
      /* not echoed: it may hold a password */
      ss_error_set(err, SS_ERR_INPUT, "libcurl cannot read the Qdrant URL (a password with '/' or '@' must be "
                                      "percent-encoded)");
      return NULL;
    }
  }
  if (!q->display) goto oom;
  if (defaults) q->limits = *defaults;
  else ss_qdrant_limits_defaults(&q->limits);
  /* "Expect:" turns off curl's 100-continue handshake for bodies over
   * 1 MiB, which would cost a round trip per batch */
  h = curl_slist_append(NULL, "Content-Type: application/json");
  if (h) h = (q->headers = h, curl_slist_append(h, "Expect:"));
  if (!h) goto oom;
  if (api_key && *api_key) {
    size_t len = strlen(api_key) + sizeof "api-key: ";
    char *line = malloc(len);
    if (!line) goto oom;
    snprintf(line, len, "api-key: %s", api_key);
    h = curl_slist_append(q->headers, line);
    /* the key lives only in the header list */
    memset(line, 0, len);
    free(line);
    if (!h) goto oom;
  }
  q->multi = curl_multi_init();
  if (!q->multi) goto oom;
  q->rng = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32) ^ (uint64_t)(uintptr_t)q;
  if (!q->rng) q->rng = 88172645463325252ULL;
  return q;
oom:
  ss_qdrant_free(q);
  ss_error_set(err, SS_ERR_MEMORY, "out of memory making a Qdrant client");
  return NULL;
}

void ss_qdrant_free(ss_qdrant *q) {
  int i;
  if (!q) return;
  for (i = 0; i < SS_QDRANT_MAX_PARALLEL; i++)
    if (q->easy[i]) curl_easy_cleanup(q->easy[i]);
  if (q->multi) curl_multi_cleanup(q->multi);
  curl_slist_free_all(q->headers);
  free(q->base);
  free(q->display);
  free(q);
}

const ss_qdrant_limits *ss_qdrant_defaults(const ss_qdrant *q) { return &q->limits; }
const char *ss_qdrant_display_url(const ss_qdrant *q) { return q->display; }

/* xorshift64*: uniform in [0, 1) */
static double random_unit(ss_qdrant *q) {
  q->rng ^= q->rng >> 12;
  q->rng ^= q->rng << 25;
  q->rng ^= q->rng >> 27;
  return (double)((q->rng * 2685821657736338717ULL) >> 11) / 9007199254740992.0;
}

/* ---- Qdrant's error body ---- */

static const char *skip_ws(const char *p, const char *end) {
  while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')) p++;
  return p;
}

/* At a '"': the string's end (after the closing quote), copying its text,
 * unescaped, into out when out is not NULL. NULL when unterminated. */
static const char *read_string(const char *p, const char *end, char *out, size_t size) {
  size_t n = 0;
  for (p++; p < end && *p != '"'; p++) {
    char c = *p;
    if (c == '\\') {
      if (++p >= end) return NULL;
      switch (*p) {
      case 'n': c = '\n'; break;
      case 't': c = '\t'; break;
      case 'r': c = '\r'; break;
      case 'b': c = '\b'; break;
      case 'f': c = '\f'; break;
      case 'u': /* kept as it is written: this is a message to read, not data */
        c = '\\';
        p--;
        break;
      default: c = *p;
      }
    }
    if (out && n + 1 < size) out[n++] = c;
  }
  if (out && size) out[n] = '\0';
  return p < end ? p + 1 : NULL;
}

/* Past one JSON value (strings, nested containers and scalars), or NULL. */
static const char *skip_value(const char *p, const char *end, int depth) {
  p = skip_ws(p, end);
  if (p >= end || depth > 64) return NULL;
  if (*p == '"') return read_string(p, end, NULL, 0);
  if (*p == '{' || *p == '[') {
    char close = *p == '{' ? '}' : ']';
    p = skip_ws(p + 1, end);
    if (p < end && *p == close) return p + 1;
    for (;;) {
      if (close == '}') {
        p = skip_ws(p, end);
        if (p >= end || *p != '"' || !(p = read_string(p, end, NULL, 0))) return NULL;
        p = skip_ws(p, end);
        if (p >= end || *p != ':') return NULL;
        p++;
      }
      if (!(p = skip_value(p, end, depth + 1))) return NULL;
      p = skip_ws(p, end);
      if (p < end && *p == ',') { p++; continue; }
      return p < end && *p == close ? p + 1 : NULL;
    }
  }
  while (p < end && !strchr(",}] \t\r\n", *p)) p++;
  return p;
}

/* In the object at p, the value of key `key` (positioned at it), or NULL. */
static const char *find_key(const char *p, const char *end, const char *key) {
  size_t klen = strlen(key);
  p = skip_ws(p, end);
  if (p >= end || *p != '{') return NULL;
  p++;
  for (;;) {
    const char *k;
    p = skip_ws(p, end);
    if (p >= end || *p != '"') return NULL;
    k = p + 1;
    if (!(p = read_string(p, end, NULL, 0))) return NULL;
    p = skip_ws(p, end);
    if (p >= end || *p != ':') return NULL;
    p = skip_ws(p + 1, end);
    if ((size_t)(p - k) >= klen + 1 && memcmp(k, key, klen) == 0 && k[klen] == '"') return p;
    if (!(p = skip_value(p, end, 1))) return NULL;
    p = skip_ws(p, end);
    if (p >= end || *p != ',') return NULL;
    p++;
  }
}

int ss_qdrant_error_message(const char *body, size_t len, char *out, size_t size) {
  const char *end = body + len, *p;
  out[0] = '\0';
  if (!body) return -1;
  p = find_key(body, end, "status");
  if (p) p = find_key(p, end, "error");
  if (!p || *p != '"' || !read_string(p, end, out, size)) {
    out[0] = '\0';
    return -1;
  }
  return 0;
}

/* ---- one attempt on an easy handle ---- */

static size_t on_answer(char *data, size_t size, size_t n, void *ud) {
  job *j = ud;
  size_t len = size * n;
  if (j->answer.len + len > MAX_ANSWER || ss_buf_append(&j->answer, data, len)) return 0;
  return len;
}

static size_t on_header(char *data, size_t size, size_t n, void *ud) {
  job *j = ud;
  size_t len = size * n;
  static const char name[] = "retry-after:";
  if (len > sizeof name - 1 && strncasecmp(data, name, sizeof name - 1) == 0) {
    char value[64];
    size_t vlen = len - (sizeof name - 1);
    char *end;
    double secs;
    if (vlen >= sizeof value) vlen = sizeof value - 1;
    memcpy(value, data + sizeof name - 1, vlen);
    value[vlen] = '\0';
    secs = strtod(value, &end);
    if (end != value && secs >= 0 && isfinite(secs)) {
      j->retry_after = secs;
    } else { /* the HTTP-date form */
      time_t at = curl_getdate(value, NULL);
      if (at != -1) j->retry_after = at > time(NULL) ? (double)(at - time(NULL)) : 0;
    }
  }
  return len;
}

static CURL *slot_handle(ss_qdrant *q, int slot) {
  CURL *e = q->easy[slot];
  if (e) return e;
  e = curl_easy_init();
  if (!e) return NULL;
  curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(e, CURLOPT_HTTPHEADER, q->headers);
  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_answer);
  curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, NULL);
  curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
  q->easy[slot] = e;
  return e;
}

static int free_slot(engine *en) {
  int used[SS_QDRANT_MAX_PARALLEL] = {0};
  size_t i;
  int s;
  for (i = 0; i < en->njobs; i++)
    if (en->jobs[i]->slot >= 0) used[en->jobs[i]->slot] = 1;
  for (s = 0; s < en->parallel; s++)
    if (!used[s]) return s;
  return -1;
}

static int start(engine *en, job *j, int slot, double now) {
  ss_qdrant *q = en->q;
  CURL *e = slot_handle(q, slot);
  double budget_end;
  if (!e) return ss_error_set(&j->err, SS_ERR_MEMORY, "out of memory making a request");
  if (j->attempts == 0) j->first_start = now;
  /* the engine times attempts itself (see drive), so that time spent away
   * from it does not count; an attempt ends with the retry budget too */
  j->deadline = now + en->lim.timeout_ms / 1000.0;
  budget_end = j->first_start + en->lim.retry_timeout;
  if (budget_end < j->deadline) j->deadline = budget_end;
  j->answer.len = 0;
  j->retry_after = -1;
  curl_easy_setopt(e, CURLOPT_URL, j->url);
  curl_easy_setopt(e, CURLOPT_WRITEDATA, j);
  curl_easy_setopt(e, CURLOPT_HEADERDATA, j);
  curl_easy_setopt(e, CURLOPT_PRIVATE, j);
  curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, en->lim.connect_timeout_ms);
  curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, 0L);
  if (j->body.data) {
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)j->body.len);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, j->body.data);
  } else {
    curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
  }
  curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, strcmp(j->method, "GET") == 0 ? NULL : j->method);
  if (curl_multi_add_handle(q->multi, e) != CURLM_OK)
    return ss_error_set(&j->err, SS_ERR_MEMORY, "could not start a request");
  j->slot = slot;
  j->attempts++;
  en->running++;
  return 0;
}

/* What the request was, for messages: "PUT /collections/x/points". */
static const char *request_path(const engine *en, const job *j) {
  size_t n = strlen(en->q->base);
  return strncmp(j->url, en->q->base, n) == 0 ? j->url + n : j->url;
}

/* Sets j->err from the finished attempt; 1 when it may be retried. */
static int classify(engine *en, job *j, CURL *e, CURLcode rc) {
  long status = 0;
  ss_error_clear(&j->err);
  if (rc == CURLE_OK) {
    curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
    if (status >= 200 && status < 300) return 0;
    ss_error_set(&j->err, SS_ERR_QDRANT, "%s", "");
    j->err.status = (int)status;
    if (ss_qdrant_error_message(j->answer.data, j->answer.len, j->err.message, sizeof j->err.message) != 0)
      snprintf(j->err.message, sizeof j->err.message, "Qdrant answered HTTP %ld", status);
    snprintf(j->err.detail, sizeof j->err.detail, "%s %s", j->method, request_path(en, j));
    return status == 429 || status == 500 || status == 502 || status == 503 || status == 504;
  }
  switch (rc) {
  case CURLE_OPERATION_TIMEDOUT:
    ss_error_set(&j->err, SS_ERR_TIMEOUT, "Qdrant at %s did not answer %s %s in time", en->q->display, j->method,
                 request_path(en, j));
    return 1;
  case CURLE_WRITE_ERROR:
    ss_error_set(&j->err, SS_ERR_MEMORY, "Qdrant's answer to %s %s was too large to hold", j->method,
                 request_path(en, j));
    return 0;
  case CURLE_COULDNT_CONNECT:
  case CURLE_GOT_NOTHING:
  case CURLE_SEND_ERROR:
  case CURLE_RECV_ERROR:
  case CURLE_PARTIAL_FILE:
  case CURLE_HTTP2:
  case CURLE_HTTP2_STREAM:
    ss_error_set(&j->err, SS_ERR_CONNECTION, "Qdrant at %s: %s (%s %s)", en->q->display, curl_easy_strerror(rc),
                 j->method, request_path(en, j));
    return 1;
  default: /* a bad URL, a host that does not resolve, TLS refused: retrying will not help */
    ss_error_set(&j->err, SS_ERR_CONNECTION, "Qdrant at %s: %s (%s %s)", en->q->display, curl_easy_strerror(rc),
                 j->method, request_path(en, j));
    return 0;
  }
}

/* An attempt ended (j->err says how; retry: whether it may be retried):
 * the job is done, failed, or waits for its retry. */
static void attempt_ended(engine *en, job *j, int retry, double now) {
  curl_multi_remove_handle(en->q->multi, en->q->easy[j->slot]);
  j->slot = -1;
  en->running--;
  if (j->err.kind == SS_OK) {
    j->done = 1;
    return;
  }
  if (retry && j->attempts <= en->lim.max_retries) {
    double left = j->first_start + en->lim.retry_timeout - now, delay;
    if (j->err.status == 429 && j->retry_after >= 0) {
      delay = j->retry_after;
    } else {
      double cap = en->lim.backoff_base * pow(2, j->attempts - 1);
      if (cap > en->lim.backoff_max) cap = en->lim.backoff_max;
      delay = cap * random_unit(en->q);
    }
    /* a retry that would have less than this to run in is not worth
     * starting: it would fail with a timeout that hides the real answer */
    double least = en->lim.timeout_ms < 250 ? en->lim.timeout_ms / 1000.0 : 0.25;
    if (delay + least <= left) {
      j->not_before = now + delay;
      en->retries++;
      return;
    }
  }
  if (retry) {
    size_t n = strlen(j->err.detail);
    snprintf(j->err.detail + n, sizeof j->err.detail - n, "%safter %d attempt%s", n ? ", " : "", j->attempts,
             j->attempts == 1 ? "" : "s");
  }
  j->done = j->failed = 1;
}

static void free_job(job *j) {
  if (!j) return;
  free(j->url);
  ss_buf_free(&j->body);
  ss_buf_free(&j->answer);
  ss_buf_free(&j->ids);
  free(j);
}

static job *new_job(const ss_qdrant *q, const char *method, const char *path) {
  job *j = calloc(1, sizeof *j);
  size_t n;
  if (!j) return NULL;
  n = strlen(q->base) + strlen(path) + 1;
  j->url = malloc(n);
  if (!j->url) {
    free(j);
    return NULL;
  }
  snprintf(j->url, n, "%s%s", q->base, path);
  j->method = method;
  j->slot = -1;
  j->retry_after = -1;
  return j;
}

static int add_job(engine *en, job *j) {
  if (en->njobs == en->cap) {
    size_t cap = en->cap ? en->cap * 2 : 8;
    job **jobs = realloc(en->jobs, cap * sizeof *jobs);
    if (!jobs) return -1;
    en->jobs = jobs;
    en->cap = cap;
  }
  en->jobs[en->njobs++] = j;
  return 0;
}

static size_t unfinished(const engine *en) {
  size_t i, n = 0;
  for (i = 0; i < en->njobs; i++) n += !en->jobs[i]->done;
  return n;
}

/* Back from the caller: a long absence (an iterator waiting on an
 * embedding model, say) does not count against the attempts under way,
 * since nobody read their answers or sent their bodies meanwhile; beyond
 * AWAY_GRACE, it is forgiven. A busy caller comes back every millisecond
 * or so (PUMP_EVERY), and its time counts, so a stalled server still
 * times out while points flow. */
#define AWAY_GRACE 0.05

static void enter(engine *en, double now) {
  size_t i;
  if (en->away_since > 0 && now - en->away_since > AWAY_GRACE) {
    double gap = now - en->away_since - AWAY_GRACE;
    for (i = 0; i < en->njobs; i++) {
      job *j = en->jobs[i];
      if (j->done) continue;
      j->first_start += gap;
      if (j->slot >= 0) j->deadline += gap;
    }
  }
  en->away_since = 0;
}

/* Runs the engine until `pending` jobs or fewer are unfinished, or only
 * once over without waiting when !block. With en->finished, finished jobs
 * go to it and are freed; without, they stay (the single request reads its
 * own). 0, or -1 with err set when the multi interface itself fails (the
 * jobs are left as they are). */
static int drive(engine *en, size_t pending, int block, ss_error *err) {
  ss_qdrant *q = en->q;
  enter(en, ss_monotonic());
  for (;;) {
    double now = ss_monotonic(), wake = -1, wait_ms;
    size_t i, kept;
    int still, left;
    CURLMsg *msg;
    long curl_wait;
    /* start what may start, oldest first */
    for (i = 0; i < en->njobs && en->running < en->parallel; i++) {
      job *j = en->jobs[i];
      if (j->slot >= 0 || j->done || j->not_before > now) continue;
      if (start(en, j, free_slot(en), now)) j->done = j->failed = 1;
    }
    if (curl_multi_perform(q->multi, &still) != CURLM_OK) {
      en->away_since = ss_monotonic();
      return ss_error_set(err, SS_ERR_CONNECTION, "libcurl's multi interface failed");
    }
    while ((msg = curl_multi_info_read(q->multi, &left))) {
      job *j;
      if (msg->msg != CURLMSG_DONE) continue;
      curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&j);
      attempt_ended(en, j, classify(en, j, msg->easy_handle, msg->data.result), ss_monotonic());
    }
    now = ss_monotonic();
    for (i = 0; i < en->njobs; i++) { /* attempts past their time */
      job *j = en->jobs[i];
      if (j->slot < 0 || now < j->deadline) continue;
      ss_error_set(&j->err, SS_ERR_TIMEOUT, "Qdrant at %s did not answer %s %s in time", q->display, j->method,
                   request_path(en, j));
      attempt_ended(en, j, 1, now);
    }
    if (en->finished) { /* hand over the finished ones, keeping the others in order */
      for (i = 0, kept = 0; i < en->njobs; i++) {
        job *j = en->jobs[i];
        if (j->done) {
          en->finished(en->ctx, j);
          free_job(j);
        } else {
          en->jobs[kept++] = j;
        }
      }
      en->njobs = kept;
    }
    if (!block || unfinished(en) <= pending) break;
    /* sleep until curl wants to act, an attempt's time is up, or the
     * first retry is due (when a handle is free for it) */
    if (curl_multi_timeout(q->multi, &curl_wait) != CURLM_OK || curl_wait < 0) curl_wait = 1000;
    wait_ms = (double)curl_wait;
    for (i = 0; i < en->njobs; i++) {
      job *j = en->jobs[i];
      if (j->done) continue;
      if (j->slot >= 0) {
        if ((j->deadline - now) * 1000 < wait_ms) wait_ms = (j->deadline - now) * 1000;
      } else if (en->running < en->parallel && (wake < 0 || j->not_before < wake)) {
        wake = j->not_before;
      }
    }
    if (wake >= 0 && (wake - now) * 1000 < wait_ms) wait_ms = (wake - now) * 1000;
    if (wait_ms > 0 && curl_multi_poll(q->multi, NULL, 0, (int)ceil(wait_ms), NULL) != CURLM_OK) {
      en->away_since = ss_monotonic();
      return ss_error_set(err, SS_ERR_CONNECTION, "libcurl's multi interface failed");
    }
  }
  en->away_since = ss_monotonic();
  return 0;
}

/* Stops every running attempt (a call that ends early). */
static void abandon(engine *en) {
  size_t i;
  for (i = 0; i < en->njobs; i++) {
    job *j = en->jobs[i];
    if (j->slot >= 0) curl_multi_remove_handle(en->q->multi, en->q->easy[j->slot]);
    free_job(j);
  }
  free(en->jobs);
  en->jobs = NULL;
  en->njobs = en->cap = 0;
  en->running = 0;
}

static int check_limits(const ss_qdrant_limits *l, ss_error *err) {
  if (l->connect_timeout_ms <= 0 || l->timeout_ms <= 0)
    return ss_error_set(err, SS_ERR_INPUT, "Qdrant timeouts must be positive");
  if (l->max_retries < 0) return ss_error_set(err, SS_ERR_INPUT, "max_retries must be 0 or more");
  if (!(l->retry_timeout > 0) || !(l->backoff_base >= 0) || !(l->backoff_max >= 0))
    return ss_error_set(err, SS_ERR_INPUT, "retry_timeout must be positive, and the backoff 0 or more");
  return 0;
}

static int claim(ss_qdrant *q, ss_error *err) {
  if (q->busy)
    return ss_error_set(err, SS_ERR_INPUT,
                        "this Qdrant client is busy with an upsert (called from the code that feeds it points?)");
  q->busy = 1;
  return 0;
}

int ss_qdrant_request(ss_qdrant *q, const char *method, const char *path, const char *body, size_t len,
                      const ss_qdrant_limits *limits, ss_buf *out, int *retries, ss_error *err) {
  engine en;
  job *j;
  int rc = -1;
  if (retries) *retries = 0;
  if (!limits) limits = &q->limits;
  if (check_limits(limits, err) || claim(q, err)) return -1;
  memset(&en, 0, sizeof en);
  en.q = q;
  en.lim = *limits;
  en.parallel = 1;
  j = new_job(q, method, path);
  if (!j || (body && ss_buf_append(&j->body, body, len)) || (body && len == 0 && ss_buf_reserve(&j->body, 1)) ||
      add_job(&en, j)) {
    free_job(j);
    free(en.jobs);
    q->busy = 0;
    return ss_error_set(err, SS_ERR_MEMORY, "out of memory making a request");
  }
  if (drive(&en, 0, 1, err) == 0) {
    if (j->failed) *err = j->err;
    else if (ss_buf_append(out, j->answer.data ? j->answer.data : "", j->answer.len))
      ss_error_set(err, SS_ERR_MEMORY, "out of memory reading Qdrant's answer");
    else rc = 0;
  }
  if (retries) *retries = (int)en.retries;
  abandon(&en);
  q->busy = 0;
  return rc;
}

/* ---- upserts ---- */

static const char BATCH_HEAD[] = "{\"points\":[";
static const char BATCH_TAIL[] = "]}";

/* How often, at most, adding points lets the transfers in flight move on:
 * often enough that answers are read while the caller makes points, rarely
 * enough that the syscalls cost nothing next to encoding. */
#define PUMP_EVERY 0.001

struct ss_qdrant_upsert {
  engine en;
  const char *method;
  char *path;
  size_t batch_size, max_bytes;
  /* the batch being filled: points are written straight into its body;
   * `committed` is its length after the last point added, `mark` where
   * the point being written starts */
  job *batch;
  size_t committed, mark;
  size_t expect; /* the body size a new batch reserves: the largest so far */
  ss_buf failed; /* ids not written, each followed by '\0' */
  size_t nfailed;
  size_t points, batches;
  double started, last_pump;
  int stopped;
  ss_error first; /* the first batch that finally failed */
};

void ss_qdrant_upsert_opts_defaults(ss_qdrant_upsert_opts *o, const ss_qdrant *q) {
  o->limits = q->limits;
  o->batch_size = 256;
  o->max_bytes = (size_t)4 * 1024 * 1024;
  o->parallel = 4;
}

static int add_failed(ss_qdrant_upsert *u, const char *id, size_t len) {
  if (ss_buf_append(&u->failed, id, len) || ss_buf_putc(&u->failed, '\0')) return -1;
  u->nfailed++;
  return 0;
}

static int add_failed_batch(ss_qdrant_upsert *u, const job *j) {
  size_t off = 0;
  while (off < j->ids.len) {
    size_t n = strlen(j->ids.data + off);
    if (add_failed(u, j->ids.data + off, n)) return -1;
    off += n + 1;
  }
  return 0;
}

static void batch_finished(void *ctx, job *j) {
  ss_qdrant_upsert *u = ctx;
  if (!j->failed) {
    u->points += j->npoints;
    u->batches++;
    return;
  }
  if (!u->stopped) u->first = j->err;
  u->stopped = 1;
  if (add_failed_batch(u, j) && u->first.kind != SS_ERR_MEMORY)
    ss_error_set(&u->first, SS_ERR_MEMORY, "out of memory listing the ids not written");
}

ss_qdrant_upsert *ss_qdrant_upsert_begin(ss_qdrant *q, const char *method, const char *path,
                                         const ss_qdrant_upsert_opts *o, ss_error *err) {
  ss_qdrant_upsert *u;
  if (check_limits(&o->limits, err)) return NULL;
  if (o->parallel < 1 || o->parallel > SS_QDRANT_MAX_PARALLEL) {
    ss_error_set(err, SS_ERR_INPUT, "parallel must be between 1 and %d", SS_QDRANT_MAX_PARALLEL);
    return NULL;
  }
  if (o->batch_size < 1) {
    ss_error_set(err, SS_ERR_INPUT, "batch_size must be at least 1");
    return NULL;
  }
  if (o->max_bytes < 1024 || o->max_bytes > SS_QDRANT_MAX_BODY) {
    ss_error_set(err, SS_ERR_INPUT, "max_bytes must be between 1024 and %zu (Qdrant's limit)", SS_QDRANT_MAX_BODY);
    return NULL;
  }
  if (claim(q, err)) return NULL;
  u = calloc(1, sizeof *u);
  if (!u || !(u->path = dup_str(path))) {
    free(u);
    q->busy = 0;
    ss_error_set(err, SS_ERR_MEMORY, "out of memory starting an upsert");
    return NULL;
  }
  u->en.q = q;
  u->en.lim = o->limits;
  u->en.parallel = o->parallel;
  u->en.finished = batch_finished;
  u->en.ctx = u;
  u->method = method;
  u->batch_size = o->batch_size;
  u->max_bytes = o->max_bytes;
  u->expect = o->max_bytes < 65536 ? o->max_bytes : 65536;
  u->started = u->last_pump = ss_monotonic();
  return u;
}

size_t ss_qdrant_upsert_room(const ss_qdrant_upsert *u) {
  return u->max_bytes - (sizeof BATCH_HEAD - 1) - (sizeof BATCH_TAIL - 1);
}

int ss_qdrant_upsert_stopped(const ss_qdrant_upsert *u) { return u->stopped; }

static job *new_batch(ss_qdrant_upsert *u) {
  job *j = new_job(u->en.q, u->method, u->path);
  if (!j) return NULL;
  if (ss_buf_reserve(&j->body, u->expect) || ss_buf_append(&j->body, BATCH_HEAD, sizeof BATCH_HEAD - 1)) {
    free_job(j);
    return NULL;
  }
  return j;
}

ss_buf *ss_qdrant_upsert_point(ss_qdrant_upsert *u) {
  if (!u->batch) {
    if (!(u->batch = new_batch(u))) return NULL;
    u->committed = u->batch->body.len;
  }
  u->batch->body.len = u->committed; /* drops a point left half-written */
  if (u->batch->npoints > 0 && ss_buf_putc(&u->batch->body, ',')) return NULL;
  u->mark = u->batch->body.len;
  return &u->batch->body;
}

/* Sends the batch being filled, then waits while `parallel` batches are
 * unfinished, so at most that many (and the one being filled) are held. */
static int send_batch(ss_qdrant_upsert *u, ss_error *err) {
  job *j = u->batch;
  if (!j) return 0;
  u->batch = NULL;
  j->body.len = u->committed;
  if (j->npoints == 0) {
    free_job(j);
    return 0;
  }
  if (ss_buf_append(&j->body, BATCH_TAIL, sizeof BATCH_TAIL - 1) || add_job(&u->en, j)) {
    free_job(j);
    return ss_error_set(err, SS_ERR_MEMORY, "out of memory sending a batch");
  }
  if (j->body.len > u->expect) u->expect = j->body.len;
  return drive(&u->en, (size_t)u->en.parallel - 1, 1, err);
}

int ss_qdrant_upsert_add(ss_qdrant_upsert *u, const char *id, size_t id_len, ss_error *err) {
  job *b = u->batch;
  size_t len;
  if (!b) return ss_error_set(err, SS_ERR_INPUT, "no point was written (ss_qdrant_upsert_point)");
  len = b->body.len - u->mark;
  if (u->stopped) {
    b->body.len = u->committed;
    return ss_qdrant_upsert_unsent(u, id, id_len, err);
  }
  if (len > ss_qdrant_upsert_room(u)) {
    b->body.len = u->committed;
    return ss_error_set(err, SS_ERR_INPUT, "the point is %zu bytes of JSON, more than max_bytes allows (%zu)", len,
                        ss_qdrant_upsert_room(u));
  }
  if (b->body.len + sizeof BATCH_TAIL - 1 > u->max_bytes) {
    /* it does not fit: it starts the next batch, and this one goes */
    job *next = new_batch(u);
    if (!next || ss_buf_append(&next->body, b->body.data + u->mark, len)) {
      free_job(next);
      goto oom;
    }
    if (send_batch(u, err)) {
      free_job(next);
      return -1;
    }
    u->batch = b = next;
    if (u->stopped) { /* the batch just sent failed at once */
      b->body.len = sizeof BATCH_HEAD - 1;
      u->committed = b->body.len;
      return ss_qdrant_upsert_unsent(u, id, id_len, err);
    }
  }
  if (ss_buf_append(&b->ids, id, id_len) || ss_buf_putc(&b->ids, '\0')) goto oom;
  b->npoints++;
  u->committed = b->body.len;
  if (b->npoints == u->batch_size) return send_batch(u, err);
  {
    double now = ss_monotonic();
    if (now - u->last_pump >= PUMP_EVERY && u->en.njobs > 0) {
      u->last_pump = now;
      return drive(&u->en, 0, 0, err);
    }
  }
  return 0;
oom:
  b->body.len = u->committed;
  return ss_error_set(err, SS_ERR_MEMORY, "out of memory building a batch");
}

int ss_qdrant_upsert_unsent(ss_qdrant_upsert *u, const char *id, size_t id_len, ss_error *err) {
  if (add_failed(u, id, id_len)) return ss_error_set(err, SS_ERR_MEMORY, "out of memory listing the ids not written");
  return 0;
}

int ss_qdrant_upsert_finish(ss_qdrant_upsert *u, ss_qdrant_report *report, ss_error *err) {
  int rc = 0;
  if (u->batch && u->stopped) {
    if (add_failed_batch(u, u->batch)) rc = ss_error_set(err, SS_ERR_MEMORY, "out of memory listing the ids not written");
    free_job(u->batch);
    u->batch = NULL;
  }
  if (rc == 0 && (send_batch(u, err) || drive(&u->en, 0, 1, err))) rc = -1;
  if (rc == 0 && u->stopped) {
    *err = u->first;
    rc = -1;
  }
  report->points = u->points;
  report->batches = u->batches;
  report->retries = u->en.retries;
  report->seconds = ss_monotonic() - u->started;
  return rc;
}

size_t ss_qdrant_upsert_failed_count(const ss_qdrant_upsert *u) { return u->nfailed; }

const char *ss_qdrant_upsert_failed_ids(const ss_qdrant_upsert *u) { return u->failed.data; }

int ss_qdrant_busy(const ss_qdrant *q) { return q->busy; }

void ss_qdrant_upsert_free(ss_qdrant_upsert *u) {
  if (!u) return;
  abandon(&u->en);
  free_job(u->batch);
  ss_buf_free(&u->failed);
  free(u->path);
  u->en.q->busy = 0;
  free(u);
}
