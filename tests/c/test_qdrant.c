/* The Qdrant client's engine (csrc/core/qdrant.c) against a local socket
 * server of this file's own, which answers from a script: a status and a
 * body, a Retry-After, a stall, or a dropped connection. It records every
 * request, how many were in flight at once and how many connections were
 * opened, so batching, parallelism, keep-alive and retries can be checked
 * exactly. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include "harness.h"
#include "pool.h"
#include "qdrant.h"

#define MAX_SCRIPT 64
#define MAX_REQUESTS 4096

typedef struct {
  int status;       /* 0: drop the connection without an answer */
  const char *body; /* NULL: Qdrant's success body */
  int retry_after;  /* seconds, -1 for no header */
  int stall_ms;     /* before answering */
} action;

typedef struct {
  char method[8], path[256], api_key[64];
  char *body;
  size_t len;
  int status; /* answered with */
} request;

static struct {
  pthread_mutex_t lock;
  int listen_fd, port;
  action script[MAX_SCRIPT];
  int nscript, next;
  request reqs[MAX_REQUESTS];
  int nreqs, in_flight, max_in_flight, connections;
} srv;

static const char OK_BODY[] = "{\"result\":{\"operation_id\":1,\"status\":\"completed\"},\"status\":\"ok\",\"time\":0.001}";

static void script(int status, const char *body, int retry_after, int stall_ms) {
  pthread_mutex_lock(&srv.lock);
  srv.script[srv.nscript].status = status;
  srv.script[srv.nscript].body = body;
  srv.script[srv.nscript].retry_after = retry_after;
  srv.script[srv.nscript].stall_ms = stall_ms;
  srv.nscript++;
  pthread_mutex_unlock(&srv.lock);
}

static void reset_server(void) {
  int i, busy = 1;
  /* answers still stalling from an earlier test would count as in flight */
  for (i = 0; i < 300 && busy; i++) {
    pthread_mutex_lock(&srv.lock);
    busy = srv.in_flight > 0;
    pthread_mutex_unlock(&srv.lock);
    if (busy) usleep(10000);
  }
  pthread_mutex_lock(&srv.lock);
  for (i = 0; i < srv.nreqs; i++) free(srv.reqs[i].body);
  srv.nreqs = srv.nscript = srv.next = srv.max_in_flight = srv.connections = 0;
  pthread_mutex_unlock(&srv.lock);
}

static int requests(void) {
  int n;
  pthread_mutex_lock(&srv.lock);
  n = srv.nreqs;
  pthread_mutex_unlock(&srv.lock);
  return n;
}

/* Reads one request from fd into r; 0, or -1 when the peer closed. */
static int read_request(int fd, request *r, char *buf, size_t cap, size_t *have) {
  char *end, *cl, *key;
  size_t head, need;
  for (;;) {
    ssize_t n;
    buf[*have] = '\0';
    if ((end = strstr(buf, "\r\n\r\n"))) break;
    n = read(fd, buf + *have, cap - 1 - *have);
    if (n <= 0) return -1;
    *have += (size_t)n;
  }
  head = (size_t)(end - buf) + 4;
  sscanf(buf, "%7s %255s", r->method, r->path);
  cl = strcasestr(buf, "\r\ncontent-length:");
  need = cl && cl < end ? strtoul(cl + 17, NULL, 10) : 0;
  r->api_key[0] = '\0';
  key = strcasestr(buf, "\r\napi-key:");
  if (key && key < end) sscanf(key + 10, " %63[^\r]", r->api_key);
  r->body = malloc(need + 1);
  r->len = need;
  if (*have - head >= need) {
    memcpy(r->body, buf + head, need);
  } else {
    size_t got = *have - head;
    memcpy(r->body, buf + head, got);
    while (got < need) {
      ssize_t n = read(fd, r->body + got, need - got);
      if (n <= 0) {
        free(r->body);
        return -1;
      }
      got += (size_t)n;
    }
    *have = head + need; /* nothing of the next request was read */
  }
  r->body[need] = '\0';
  memmove(buf, buf + head + need, *have - head - need);
  *have -= head + need;
  return 0;
}

static void *serve_connection(void *arg) {
  int fd = (int)(long)arg;
  size_t cap = 1 << 16, have = 0;
  char *buf = malloc(cap);
  for (;;) {
    request r;
    action a = {200, NULL, -1, 0};
    char head[512];
    const char *body;
    int n;
    if (read_request(fd, &r, buf, cap, &have)) break;
    pthread_mutex_lock(&srv.lock);
    if (srv.next < srv.nscript) a = srv.script[srv.next++];
    r.status = a.status;
    if (srv.nreqs < MAX_REQUESTS) srv.reqs[srv.nreqs++] = r;
    else free(r.body);
    if (++srv.in_flight > srv.max_in_flight) srv.max_in_flight = srv.in_flight;
    pthread_mutex_unlock(&srv.lock);
    usleep((useconds_t)(a.stall_ms > 0 ? a.stall_ms : 2) * 1000); /* a little, so requests overlap */
    pthread_mutex_lock(&srv.lock);
    srv.in_flight--;
    pthread_mutex_unlock(&srv.lock);
    if (a.status == 0) break;
    body = a.body ? a.body : OK_BODY;
    n = snprintf(head, sizeof head, "HTTP/1.1 %d X\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n", a.status,
                 strlen(body));
    if (a.retry_after >= 0) n += snprintf(head + n, sizeof head - (size_t)n, "Retry-After: %d\r\n", a.retry_after);
    n += snprintf(head + n, sizeof head - (size_t)n, "\r\n");
    if (write(fd, head, (size_t)n) < 0 || write(fd, body, strlen(body)) < 0) break;
  }
  free(buf);
  close(fd);
  return NULL;
}

static void *accept_loop(void *arg) {
  (void)arg;
  for (;;) {
    pthread_t t;
    int fd = accept(srv.listen_fd, NULL, NULL);
    if (fd < 0) {
      if (errno == EINTR) continue;
      return NULL;
    }
    pthread_mutex_lock(&srv.lock);
    srv.connections++;
    pthread_mutex_unlock(&srv.lock);
    pthread_create(&t, NULL, serve_connection, (void *)(long)fd);
    pthread_detach(t);
  }
}

static void start_server(void) {
  struct sockaddr_in a;
  socklen_t len = sizeof a;
  pthread_t t;
  int one = 1;
  pthread_mutex_init(&srv.lock, NULL);
  srv.listen_fd = socket(AF_INET, SOCK_STREAM, 0);
  setsockopt(srv.listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(srv.listen_fd, (struct sockaddr *)&a, sizeof a);
  listen(srv.listen_fd, 64);
  getsockname(srv.listen_fd, (struct sockaddr *)&a, &len);
  srv.port = ntohs(a.sin_port);
  pthread_create(&t, NULL, accept_loop, NULL);
  pthread_detach(t);
}

/* a port nobody listens on */
static int closed_port(void) {
  struct sockaddr_in a;
  socklen_t len = sizeof a;
  int fd = socket(AF_INET, SOCK_STREAM, 0), port;
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, (struct sockaddr *)&a, sizeof a);
  getsockname(fd, (struct sockaddr *)&a, &len);
  port = ntohs(a.sin_port);
  close(fd);
  return port;
}

static ss_qdrant *client(const char *key, ss_qdrant_limits *lim) {
  char url[128];
  ss_error err;
  ss_qdrant *q;
  snprintf(url, sizeof url, "http://user:secret@127.0.0.1:%d/", srv.port);
  q = ss_qdrant_new(url, key, lim, &err);
  if (!q) printf("  client: %s\n", err.message);
  return q;
}

static void fast_limits(ss_qdrant_limits *l) {
  ss_qdrant_limits_defaults(l);
  l->backoff_base = 0.01;
  l->backoff_max = 0.05;
  l->timeout_ms = 2000;
}

static void test_error_message(void) {
  char out[64];
  const char *b1 = "{\"status\":{\"error\":\"Not found: Collection `x` doesn't exist!\"},\"time\":0.0}";
  const char *b2 = "{ \"time\" : 1e-3, \"result\": [1, {\"a\": \"}\"}], \"status\" : { \"x\": null, \"error\": \"a \\\"q\\\" \\n b\" } }";
  CHECK(ss_qdrant_error_message(b1, strlen(b1), out, sizeof out) == 0 &&
        strcmp(out, "Not found: Collection `x` doesn't exist!") == 0);
  CHECK(ss_qdrant_error_message(b2, strlen(b2), out, sizeof out) == 0 && strcmp(out, "a \"q\" \n b") == 0);
  CHECK(ss_qdrant_error_message("{\"status\":\"ok\"}", 15, out, sizeof out) == -1 && out[0] == '\0');
  CHECK(ss_qdrant_error_message("not json", 8, out, sizeof out) == -1);
  CHECK(ss_qdrant_error_message("{\"status\":{\"error\":\"cut", 23, out, sizeof out) == -1);
  /* a long message is cut to the buffer, never past it */
  {
    char small[8];
    CHECK(ss_qdrant_error_message(b1, strlen(b1), small, sizeof small) == 0 && strcmp(small, "Not fou") == 0);
  }
}

static void test_new(void) {
  ss_error err;
  ss_qdrant *q = ss_qdrant_new("ftp://x", NULL, NULL, &err);
  CHECK(!q && err.kind == SS_ERR_INPUT);
  q = ss_qdrant_new("http://x", "a\r\nb: c", NULL, &err);
  CHECK(!q && err.kind == SS_ERR_INPUT && !strstr(err.message, "a\r\nb"));
  q = ss_qdrant_new("https://u:p@h:1/pre/", NULL, NULL, &err);
  CHECK(q && strcmp(ss_qdrant_display_url(q), "https://h:1/pre") == 0);
  ss_qdrant_free(q);
  /* the host as libcurl reads it, whatever '@' the path or query holds */
  q = ss_qdrant_new("http://user:pw@host:6333/api@v2?x=a@b", NULL, NULL, &err);
  CHECK(q && strcmp(ss_qdrant_display_url(q), "http://host:6333/api@v2") == 0);
  ss_qdrant_free(q);
  q = ss_qdrant_new("http://admin:p%40ss@host", NULL, NULL, &err);
  CHECK(q && strcmp(ss_qdrant_display_url(q), "http://host") == 0);
  ss_qdrant_free(q);
  /* a password with a bare '/' makes no URL: refused, and not echoed */
  q = ss_qdrant_new("http://admin:pa/ss@host", NULL, NULL, &err);
  CHECK(!q && err.kind == SS_ERR_INPUT && !strstr(err.message, "pa/ss") && !strstr(err.message, "admin"));
}

static void test_request(void) {
  ss_qdrant_limits lim;
  ss_qdrant *q;
  ss_buf out;
  ss_error err;
  int retries;
  double t0;
  fast_limits(&lim);
  q = client("k3y-secret", &lim);
  ss_buf_init(&out);

  /* a plain GET: the answer's body, the api-key header, one request */
  reset_server();
  script(200, "{\"result\":{\"collections\":[]},\"status\":\"ok\",\"time\":0}", -1, 0);
  CHECK(ss_qdrant_request(q, "GET", "/collections", NULL, 0, NULL, &out, &retries, &err) == 0);
  CHECK(out.len > 0 && strstr(out.data, "\"collections\":[]") != NULL);
  CHECK(requests() == 1 && strcmp(srv.reqs[0].method, "GET") == 0 && strcmp(srv.reqs[0].path, "/collections") == 0);
  CHECK(strcmp(srv.reqs[0].api_key, "k3y-secret") == 0 && retries == 0);

  /* a body goes as it is, with the method asked for */
  reset_server();
  CHECK(ss_qdrant_request(q, "PUT", "/collections/c", "{\"a\":1}", 7, NULL, &out, NULL, &err) == 0);
  CHECK(requests() == 1 && strcmp(srv.reqs[0].method, "PUT") == 0 && strcmp(srv.reqs[0].body, "{\"a\":1}") == 0);

  /* 404: Qdrant's message and status, not retried, no secret in it */
  reset_server();
  script(404, "{\"status\":{\"error\":\"Not found: Collection `c` doesn't exist!\"},\"time\":0}", -1, 0);
  CHECK(ss_qdrant_request(q, "GET", "/collections/c", NULL, 0, NULL, &out, &retries, &err) == -1);
  CHECK(err.kind == SS_ERR_QDRANT && err.status == 404 && requests() == 1 && retries == 0);
  CHECK(strcmp(err.message, "Not found: Collection `c` doesn't exist!") == 0);
  CHECK(strcmp(err.detail, "GET /collections/c") == 0);
  CHECK(!strstr(err.message, "secret") && !strstr(err.detail, "secret"));

  /* 400, 409 and 422 are not retried either */
  reset_server();
  script(400, "{\"status\":{\"error\":\"Wrong input: Vector dimension error: expected dim: 4, got 3\"},\"time\":0}", -1, 0);
  script(409, NULL, -1, 0);
  script(422, "{\"status\":{\"error\":\"Validation error in JSON body: x\"},\"time\":0}", -1, 0);
  CHECK(ss_qdrant_request(q, "PUT", "/p", "{}", 2, NULL, &out, NULL, &err) == -1 && err.status == 400 &&
        strstr(err.message, "expected dim: 4, got 3"));
  CHECK(ss_qdrant_request(q, "PUT", "/p", "{}", 2, NULL, &out, NULL, &err) == -1 && err.status == 409 &&
        strcmp(err.message, "Qdrant answered HTTP 409") == 0);
  CHECK(ss_qdrant_request(q, "PUT", "/p", "{}", 2, NULL, &out, NULL, &err) == -1 && err.status == 422);
  CHECK(requests() == 3);

  /* 503, 500, 502, 504 are retried: the same body each time */
  reset_server();
  script(503, NULL, -1, 0);
  script(500, NULL, -1, 0);
  script(502, NULL, -1, 0);
  script(504, NULL, -1, 0);
  out.len = 0;
  CHECK(ss_qdrant_request(q, "POST", "/x", "{\"b\":2}", 7, NULL, &out, &retries, &err) == 0 && retries == 4);
  CHECK(requests() == 5 && strcmp(srv.reqs[4].body, "{\"b\":2}") == 0 && strcmp(srv.reqs[0].body, "{\"b\":2}") == 0);

  /* 429 waits for its Retry-After */
  reset_server();
  script(429, NULL, 1, 0);
  t0 = ss_monotonic();
  CHECK(ss_qdrant_request(q, "GET", "/x", NULL, 0, NULL, &out, &retries, &err) == 0 && retries == 1);
  CHECK(ss_monotonic() - t0 >= 0.95);

  /* a Retry-After past the retry budget is not waited for */
  reset_server();
  script(429, NULL, 30, 0);
  lim.retry_timeout = 1;
  t0 = ss_monotonic();
  CHECK(ss_qdrant_request(q, "GET", "/x", NULL, 0, &lim, &out, &retries, &err) == -1 && err.status == 429);
  CHECK(ss_monotonic() - t0 < 0.5 && requests() == 1 && strstr(err.detail, "after 1 attempt"));
  lim.retry_timeout = 120;

  /* a stall past the timeout is retried */
  reset_server();
  script(200, NULL, -1, 1500);
  lim.timeout_ms = 300;
  CHECK(ss_qdrant_request(q, "GET", "/x", NULL, 0, &lim, &out, &retries, &err) == 0 && retries == 1);
  /* and when every attempt stalls, a timeout error after max_retries */
  reset_server();
  script(200, NULL, -1, 1000);
  script(200, NULL, -1, 1000);
  lim.max_retries = 1;
  CHECK(ss_qdrant_request(q, "GET", "/x", NULL, 0, &lim, &out, &retries, &err) == -1 && err.kind == SS_ERR_TIMEOUT);
  CHECK(retries == 1 && !strstr(err.message, "secret"));
  lim.max_retries = 6;
  lim.timeout_ms = 2000;

  /* a dropped connection is retried */
  reset_server();
  script(0, NULL, -1, 0);
  CHECK(ss_qdrant_request(q, "GET", "/x", NULL, 0, NULL, &out, &retries, &err) == 0 && retries >= 1);

  /* retry_timeout bounds the whole: a server that always answers 503 */
  reset_server();
  {
    int i;
    for (i = 0; i < MAX_SCRIPT; i++) script(503, NULL, -1, 0);
  }
  lim.max_retries = 1000;
  lim.retry_timeout = 1;
  lim.backoff_base = 0.05;
  lim.backoff_max = 0.1;
  t0 = ss_monotonic();
  CHECK(ss_qdrant_request(q, "GET", "/x", NULL, 0, &lim, &out, &retries, &err) == -1 && err.status == 503);
  /* no retry starts with less than 0.25 s of the budget left */
  CHECK(ss_monotonic() - t0 < 1.05 && ss_monotonic() - t0 >= 0.6 && retries > 2);
  fast_limits(&lim);

  /* retry_timeout bounds the first attempt too */
  reset_server();
  script(200, NULL, -1, 3000);
  lim.timeout_ms = 30000;
  lim.retry_timeout = 0.5;
  t0 = ss_monotonic();
  CHECK(ss_qdrant_request(q, "GET", "/x", NULL, 0, &lim, &out, &retries, &err) == -1 && err.kind == SS_ERR_TIMEOUT);
  CHECK(ss_monotonic() - t0 < 0.8 && retries == 0);
  lim.retry_timeout = 0;
  CHECK(ss_qdrant_request(q, "GET", "/x", NULL, 0, &lim, &out, &retries, &err) == -1 && err.kind == SS_ERR_INPUT);
  fast_limits(&lim);
  ss_buf_free(&out);
  ss_qdrant_free(q);

  /* nobody listening: a connection error, retried as allowed */
  {
    char url[64];
    q = NULL;
    snprintf(url, sizeof url, "http://127.0.0.1:%d", closed_port());
    lim.max_retries = 2;
    q = ss_qdrant_new(url, NULL, &lim, &err);
    ss_buf_init(&out);
    CHECK(ss_qdrant_request(q, "GET", "/x", NULL, 0, NULL, &out, &retries, &err) == -1);
    CHECK(err.kind == SS_ERR_CONNECTION && retries == 2 && strstr(err.message, url));
    ss_buf_free(&out);
    ss_qdrant_free(q);
  }
}

/* writes point i as {"id":i,"vector":[...]} padded to about `size` bytes */
static void write_point(ss_qdrant_upsert *u, int i, size_t size, char *id, size_t *id_len) {
  ss_buf *b = ss_qdrant_upsert_point(u);
  size_t start = b->len; /* the point goes at the end of the batch's body */
  char head[64];
  int n = snprintf(head, sizeof head, "{\"id\":%d,\"payload\":{\"pad\":\"", i);
  ss_buf_append(b, head, (size_t)n);
  while (b->len - start + 3 < size) ss_buf_putc(b, 'x');
  ss_buf_append(b, "\"}}", 3);
  *id_len = (size_t)snprintf(id, 32, "%d", i);
}

/* every id 0..n-1 in exactly one request body answered 200 */
static int each_once(int n) {
  int *seen = calloc((size_t)n, sizeof *seen), i, ok = 1;
  for (i = 0; i < srv.nreqs; i++) {
    const char *p = srv.reqs[i].body;
    if (srv.reqs[i].status != 200) continue;
    if (strncmp(p, "{\"points\":[", 11) != 0 || srv.reqs[i].body[srv.reqs[i].len - 1] != '}') ok = 0;
    while ((p = strstr(p, "{\"id\":"))) {
      int id = atoi(p + 6);
      if (id >= 0 && id < n) seen[id]++;
      p += 6;
    }
  }
  for (i = 0; i < n; i++)
    if (seen[i] != 1) ok = 0;
  free(seen);
  return ok;
}

static void test_upsert(void) {
  ss_qdrant_limits lim;
  ss_qdrant *q;
  ss_qdrant_upsert_opts o;
  ss_qdrant_upsert *u;
  ss_qdrant_report rep;
  ss_error err;
  ss_buf out;
  char id[32];
  size_t id_len;
  int i;
  fast_limits(&lim);
  q = client(NULL, &lim);
  ss_buf_init(&out);

  /* by count: 1000 points, 100 a batch, 4 in flight on kept-alive connections */
  reset_server();
  /* the first answers take 300 ms, longer than encoding a batch takes even
   * under valgrind on a loaded machine, so batches surely overlap */
  for (i = 0; i < 4; i++) script(200, NULL, -1, 300);
  ss_qdrant_upsert_opts_defaults(&o, q);
  o.batch_size = 100;
  o.parallel = 4;
  u = ss_qdrant_upsert_begin(q, "PUT", "/collections/c/points?wait=true", &o, &err);
  CHECK(u != NULL);
  for (i = 0; i < 1000; i++) {
    write_point(u, i, 200, id, &id_len);
    CHECK(ss_qdrant_upsert_add(u, id, id_len, &err) == 0);
  }
  CHECK(ss_qdrant_upsert_finish(u, &rep, &err) == 0);
  CHECK(rep.points == 1000 && rep.batches == 10 && rep.retries == 0 && rep.seconds > 0);
  CHECK(requests() == 10 && each_once(1000) && strcmp(srv.reqs[0].path, "/collections/c/points?wait=true") == 0);
  CHECK(srv.max_in_flight > 1 && srv.max_in_flight <= 4);
  CHECK(ss_qdrant_upsert_failed_count(u) == 0 && ss_qdrant_upsert_failed_ids(u) == NULL);
  ss_qdrant_upsert_free(u);
  /* the next call reuses the connections */
  CHECK(ss_qdrant_request(q, "GET", "/x", NULL, 0, NULL, &out, NULL, &err) == 0);
  CHECK(srv.connections <= 4);

  /* by bytes: batches never pass max_bytes */
  reset_server();
  o.batch_size = 1000;
  o.max_bytes = 4096;
  o.parallel = 2;
  u = ss_qdrant_upsert_begin(q, "PUT", "/collections/c/points", &o, &err);
  for (i = 0; i < 50; i++) {
    write_point(u, i, 1000, id, &id_len);
    CHECK(ss_qdrant_upsert_add(u, id, id_len, &err) == 0);
  }
  CHECK(ss_qdrant_upsert_finish(u, &rep, &err) == 0 && rep.points == 50);
  CHECK(each_once(50) && requests() == 13); /* 4 points of 1000 bytes fill 4096 with the frame */
  for (i = 0; i < requests(); i++) CHECK(srv.reqs[i].len <= 4096);
  /* a point larger than max_bytes alone is refused, nothing sent for it */
  ss_qdrant_upsert_free(u);
  reset_server();
  u = ss_qdrant_upsert_begin(q, "PUT", "/collections/c/points", &o, &err);
  write_point(u, 1, 5000, id, &id_len);
  CHECK(ss_qdrant_upsert_add(u, id, id_len, &err) == -1 && err.kind == SS_ERR_INPUT && strstr(err.message, "max_bytes"));
  /* the client is busy until the upsert is freed */
  CHECK(ss_qdrant_request(q, "GET", "/x", NULL, 0, NULL, &out, NULL, &err) == -1 && err.kind == SS_ERR_INPUT &&
        strstr(err.message, "busy"));
  ss_qdrant_upsert_free(u);
  CHECK(requests() == 0);
  CHECK(ss_qdrant_request(q, "GET", "/x", NULL, 0, NULL, &out, NULL, &err) == 0);

  /* retries within an upsert: every point lands once, retries counted */
  reset_server();
  script(503, NULL, -1, 0);
  script(200, NULL, -1, 0);
  script(429, NULL, 0, 0);
  script(0, NULL, -1, 0);
  o.batch_size = 10;
  o.max_bytes = 1 << 20;
  o.parallel = 1;
  u = ss_qdrant_upsert_begin(q, "PUT", "/collections/c/points", &o, &err);
  for (i = 0; i < 40; i++) {
    write_point(u, i, 100, id, &id_len);
    CHECK(ss_qdrant_upsert_add(u, id, id_len, &err) == 0);
  }
  CHECK(ss_qdrant_upsert_finish(u, &rep, &err) == 0);
  /* a connection dropped after a kept-alive reuse is retried by curl
   * itself, so only the 503 and the 429 are sure to count */
  CHECK(rep.points == 40 && rep.batches == 4 && rep.retries >= 2 && each_once(40));
  ss_qdrant_upsert_free(u);

  /* a batch that finally fails: later batches are not sent, the ids not
   * written are listed, the batches before stand */
  reset_server();
  script(200, NULL, -1, 0);
  script(400, "{\"status\":{\"error\":\"Wrong input: bad\"},\"time\":0}", -1, 0);
  u = ss_qdrant_upsert_begin(q, "PUT", "/collections/c/points", &o, &err);
  for (i = 0; i < 50; i++) {
    write_point(u, i, 100, id, &id_len);
    if (ss_qdrant_upsert_stopped(u)) CHECK(ss_qdrant_upsert_unsent(u, id, id_len, &err) == 0);
    else CHECK(ss_qdrant_upsert_add(u, id, id_len, &err) == 0);
  }
  CHECK(ss_qdrant_upsert_finish(u, &rep, &err) == -1 && err.kind == SS_ERR_QDRANT && err.status == 400);
  CHECK(rep.points == 10 && rep.batches == 1 && requests() == 2);
  CHECK(ss_qdrant_upsert_failed_count(u) == 40);
  {
    const char *p = ss_qdrant_upsert_failed_ids(u);
    CHECK(p && strcmp(p, "10") == 0);
    for (i = 1; i < 40; i++) p += strlen(p) + 1;
    CHECK(strcmp(p, "49") == 0);
  }
  ss_qdrant_upsert_free(u);

  /* a slow producer (an embedding model, say): the time spent making
   * points does not count against the requests in flight */
  reset_server();
  o.batch_size = 2;
  o.parallel = 2;
  o.limits.timeout_ms = 300;
  u = ss_qdrant_upsert_begin(q, "PUT", "/collections/c/points", &o, &err);
  for (i = 0; i < 10; i++) {
    write_point(u, i, 100, id, &id_len);
    CHECK(ss_qdrant_upsert_add(u, id, id_len, &err) == 0);
    usleep(120000);
  }
  CHECK(ss_qdrant_upsert_finish(u, &rep, &err) == 0 && rep.points == 10 && rep.retries == 0 && requests() == 5);
  ss_qdrant_upsert_free(u);
  o.limits = lim;

  /* but while points flow, a stalled batch still times out, and is
   * retried before the stream ends */
  reset_server();
  script(200, NULL, -1, 5000);
  o.batch_size = 10;
  o.parallel = 2;
  o.limits.timeout_ms = 300;
  u = ss_qdrant_upsert_begin(q, "PUT", "/collections/c/points", &o, &err);
  {
    double t0 = ss_monotonic();
    for (i = 0; i < 300; i++) {
      write_point(u, i, 100, id, &id_len);
      CHECK(ss_qdrant_upsert_add(u, id, id_len, &err) == 0);
      usleep(5000);
    }
    CHECK(requests() >= 31 && ss_monotonic() - t0 < 4);
  }
  /* (the stalled request reached the server: its points may be written twice, harmlessly) */
  CHECK(ss_qdrant_upsert_finish(u, &rep, &err) == 0 && rep.points == 300 && rep.retries == 1);
  ss_qdrant_upsert_free(u);
  o.limits = lim;

  /* a point left half-written (its encoding failed) is dropped */
  reset_server();
  u = ss_qdrant_upsert_begin(q, "PUT", "/collections/c/points", &o, &err);
  write_point(u, 1, 100, id, &id_len);
  CHECK(ss_qdrant_upsert_add(u, id, id_len, &err) == 0);
  ss_buf_append(ss_qdrant_upsert_point(u), "{\"id\":2,\"vec", 12);
  write_point(u, 3, 100, id, &id_len);
  CHECK(ss_qdrant_upsert_add(u, id, id_len, &err) == 0);
  CHECK(ss_qdrant_upsert_finish(u, &rep, &err) == 0 && rep.points == 2 && requests() == 1);
  CHECK(strstr(srv.reqs[0].body, "\"id\":2") == NULL && strstr(srv.reqs[0].body, "\"id\":3") != NULL);
  ss_qdrant_upsert_free(u);

  /* options out of range */
  o.parallel = 0;
  CHECK(!ss_qdrant_upsert_begin(q, "PUT", "/p", &o, &err) && err.kind == SS_ERR_INPUT);
  o.parallel = 1;
  o.max_bytes = SS_QDRANT_MAX_BODY + 1;
  CHECK(!ss_qdrant_upsert_begin(q, "PUT", "/p", &o, &err) && strstr(err.message, "max_bytes"));
  ss_buf_free(&out);
  ss_qdrant_free(q);
}

int main(void) {
  /* the server writes to clients that gave up (a timeout test) */
  signal(SIGPIPE, SIG_IGN);
  start_server();
  test_error_message();
  test_new();
  test_request();
  test_upsert();
  reset_server();
  DONE();
}
