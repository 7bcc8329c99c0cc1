#include "redis.h"

#include <errno.h>
#include <hiredis/hiredis.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>

struct ss_redis {
  redisContext *c;
  int broken;
  /* a command changed the session (SELECT, SUBSCRIBE, CLIENT SETNAME,
   * AUTH, ...): the connection is closed on release rather than handed to
   * the next borrower with that state. A MULTI or WATCH is only state
   * until EXEC, DISCARD (or UNWATCH) ends it. */
  int dirty, in_multi, watching;
};

void ss_redis_settings_defaults(ss_redis_settings *s) {
  memset(s, 0, sizeof *s);
  ss_strlcpy(s->host, "127.0.0.1", sizeof s->host);
  s->port = 6379;
  s->connect_timeout = 5;
  s->command_timeout = 30;
}

static int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/* Copies src[0..n) percent-decoded into dst; -1 when it does not fit or
 * holds a bad escape or a NUL. */
static int decode(char *dst, size_t size, const char *src, size_t n) {
  size_t i, o = 0;
  for (i = 0; i < n; i++) {
    int c = (unsigned char)src[i];
    if (c == '%') {
      int hi, lo;
      if (i + 2 >= n) return -1;
      hi = hexval(src[i + 1]);
      lo = hexval(src[i + 2]);
      if (hi < 0 || lo < 0) return -1;
      c = hi * 16 + lo;
      i += 2;
    }
    if (c == 0 || o + 1 >= size) return -1;
    dst[o++] = (char)c;
  }
  dst[o] = '\0';
  return 0;
}

static int parse_int(const char *s, size_t n, int lo, int hi, int *out) {
  long v = 0;
  size_t i;
  if (n == 0 || n > 9) return -1;
  for (i = 0; i < n; i++) {
    if (s[i] < '0' || s[i] > '9') return -1;
    v = v * 10 + (s[i] - '0');
  }
  if (v < lo || v > hi) return -1;
  *out = (int)v;
  return 0;
}

/* unix:///path[?db=N&user=U&password=P] */
static int parse_unix(const char *rest, ss_redis_settings *s, ss_error *err) {
  const char *q = strchr(rest, '?');
  size_t plen = q ? (size_t)(q - rest) : strlen(rest);
  if (plen == 0 || rest[0] != '/' || decode(s->path, sizeof s->path, rest, plen))
    return ss_error_set(err, SS_ERR_INPUT, "a unix:// Redis URL needs the socket's absolute path: unix:///path.sock");
  while (q && *q) {
    const char *key = q + 1, *eq = strchr(key, '='), *end = strchr(key, '&');
    size_t klen, vlen;
    if (!end) end = key + strlen(key);
    if (!eq || eq > end) return ss_error_set(err, SS_ERR_INPUT, "a unix:// Redis URL's query must be key=value pairs");
    klen = (size_t)(eq - key);
    vlen = (size_t)(end - eq - 1);
    if (klen == 2 && strncmp(key, "db", 2) == 0) {
      if (parse_int(eq + 1, vlen, 0, 100000, &s->db))
        return ss_error_set(err, SS_ERR_INPUT, "the Redis database must be a number from 0");
    } else if (klen == 4 && strncmp(key, "user", 4) == 0) {
      if (decode(s->user, sizeof s->user, eq + 1, vlen)) return ss_error_set(err, SS_ERR_INPUT, "the Redis user is too long");
    } else if (klen == 8 && strncmp(key, "password", 8) == 0) {
      if (decode(s->password, sizeof s->password, eq + 1, vlen))
        return ss_error_set(err, SS_ERR_INPUT, "the Redis password is too long or badly escaped");
    } else {
      return ss_error_set(err, SS_ERR_INPUT, "a unix:// Redis URL knows db, user and password, not %.*s", (int)klen,
                          key);
    }
    q = *end ? end : NULL;
  }
  s->host[0] = '\0';
  return 0;
}

int ss_redis_parse_url(const char *url, ss_redis_settings *s, ss_error *err) {
  const char *p, *at, *hostend, *slash;
  if (strncmp(url, "unix://", 7) == 0) return parse_unix(url + 7, s, err);
  if (strncmp(url, "rediss://", 9) == 0)
    return ss_error_set(err, SS_ERR_INPUT, "rediss:// (TLS) is not supported: Debian's hiredis 0.14 has no TLS");
  if (strncmp(url, "redis://", 8) != 0)
    return ss_error_set(err, SS_ERR_INPUT, "a Redis URL starts with redis:// or unix://");
  p = url + 8;
  slash = strchr(p, '/');
  hostend = slash ? slash : p + strlen(p);
  if (!slash && strpbrk(p, "?#"))
    return ss_error_set(err, SS_ERR_INPUT, "a redis:// URL takes no query: the database goes after the / (redis://host:6379/3)");
  /* the last '@' before the path: a password may hold '@' */
  at = NULL;
  {
    const char *x;
    for (x = p; x < hostend; x++)
      if (*x == '@') at = x;
  }
  s->user[0] = s->password[0] = '\0';
  if (at) {
    const char *colon = memchr(p, ':', (size_t)(at - p));
    if (colon) {
      if (decode(s->user, sizeof s->user, p, (size_t)(colon - p)) ||
          decode(s->password, sizeof s->password, colon + 1, (size_t)(at - colon - 1)))
        return ss_error_set(err, SS_ERR_INPUT, "the Redis URL's user or password is too long or badly escaped");
    } else if (decode(s->password, sizeof s->password, p, (size_t)(at - p))) { /* redis://password@host */
      return ss_error_set(err, SS_ERR_INPUT, "the Redis URL's password is too long or badly escaped");
    }
    p = at + 1;
  }
  {
    const char *colon = NULL, *x;
    size_t hlen;
    if (*p == '[') { /* [::1]:6379 */
      const char *close = memchr(p, ']', (size_t)(hostend - p));
      if (!close) return ss_error_set(err, SS_ERR_INPUT, "the Redis URL's IPv6 host lacks its ]");
      if (close + 1 < hostend && close[1] != ':')
        return ss_error_set(err, SS_ERR_INPUT, "the Redis URL has something between its IPv6 host and the port");
      if (close + 1 < hostend) colon = close + 1;
      hlen = (size_t)(close - p - 1);
      if (hlen == 0 || hlen >= sizeof s->host) return ss_error_set(err, SS_ERR_INPUT, "the Redis URL's host is empty or too long");
      memcpy(s->host, p + 1, hlen);
      s->host[hlen] = '\0';
    } else {
      for (x = p; x < hostend; x++)
        if (*x == ':') {
          if (colon) return ss_error_set(err, SS_ERR_INPUT, "the Redis URL's host has two ':' (an IPv6 host goes in [])");
          colon = x;
        }
      hlen = (size_t)((colon ? colon : hostend) - p);
      if (hlen >= sizeof s->host) return ss_error_set(err, SS_ERR_INPUT, "the Redis URL's host is too long");
      if (hlen > 0) {
        memcpy(s->host, p, hlen);
        s->host[hlen] = '\0';
      }
    }
    s->port = 6379;
    if (colon && parse_int(colon + 1, (size_t)(hostend - colon - 1), 1, 65535, &s->port))
      return ss_error_set(err, SS_ERR_INPUT, "the Redis URL's port must be from 1 to 65535");
  }
  s->db = 0;
  if (slash && strpbrk(slash, "?#"))
    return ss_error_set(err, SS_ERR_INPUT, "a redis:// URL takes no query: the database goes after the / (redis://host:6379/3)");
  if (slash && slash[1]) {
    const char *end = slash + 1 + strlen(slash + 1);
    if (end > slash + 1 && parse_int(slash + 1, (size_t)(end - slash - 1), 0, 100000, &s->db))
      return ss_error_set(err, SS_ERR_INPUT, "the Redis URL's database (after the /) must be a number from 0");
  }
  s->path[0] = '\0';
  return 0;
}

int ss_redis_target(const ss_redis_settings *s, char *out, size_t size) {
  const char *auth = s->password[0] ? (s->user[0] ? ":***@" : "***@") : "";
  if (s->path[0])
    return snprintf(out, size, "unix://%s?db=%d%s%s%s", s->path, s->db, s->user[0] ? "&user=" : "", s->user,
                    s->password[0] ? "&password=***" : "");
  return snprintf(out, size, strchr(s->host, ':') ? "redis://%s%s[%s]:%d/%d" : "redis://%s%s%s:%d/%d",
                  s->password[0] ? s->user : "", auth, s->host, s->port, s->db);
}

static struct timeval tv_of(double seconds) {
  struct timeval tv;
  tv.tv_sec = (time_t)seconds;
  tv.tv_usec = (suseconds_t)((seconds - (double)tv.tv_sec) * 1e6);
  if (tv.tv_sec == 0 && tv.tv_usec == 0) tv.tv_usec = 1;
  return tv;
}

/* err from the context's failure; marks the connection broken. */
static int context_error(ss_redis *r, ss_error *err) {
  redisContext *c = r->c;
  r->broken = 1;
  if (c->err == REDIS_ERR_IO && (errno == EAGAIN || errno == EWOULDBLOCK || errno == ETIMEDOUT ||
                                 strstr(c->errstr, "temporarily unavailable")))
    return ss_error_set(err, SS_ERR_TIMEOUT, "Redis did not answer in time");
  if (c->err == REDIS_ERR_OOM) return ss_error_set(err, SS_ERR_MEMORY, "out of memory talking to Redis");
  if (c->err == REDIS_ERR_EOF) return ss_error_set(err, SS_ERR_CONNECTION, "Redis closed the connection");
  return ss_error_set(err, SS_ERR_CONNECTION, "Redis: %s", c->errstr);
}

/* One command on a fresh connection, during connect: its error reply is a
 * redis error naming `what`, never quoting the arguments (a password). */
static int setup_command(ss_redis *r, int argc, const char **argv, const char *what, ss_error *err) {
  size_t lens[3];
  int i;
  redisReply *reply;
  for (i = 0; i < argc; i++) lens[i] = strlen(argv[i]);
  if (redisAppendCommandArgv(r->c, argc, argv, lens) != REDIS_OK || redisGetReply(r->c, (void **)&reply) != REDIS_OK)
    return context_error(r, err);
  if (reply->type == REDIS_REPLY_ERROR) {
    ss_error_set(err, SS_ERR_REDIS, "Redis refused %s: %.200s", what, reply->str);
    freeReplyObject(reply);
    return -1;
  }
  freeReplyObject(reply);
  return 0;
}

ss_redis *ss_redis_connect(const ss_redis_settings *s, ss_error *err) {
  ss_redis *r = calloc(1, sizeof *r);
  struct timeval tv = tv_of(s->connect_timeout);
  if (!r) {
    ss_error_set(err, SS_ERR_MEMORY, "out of memory connecting to Redis");
    return NULL;
  }
  r->c = s->path[0] ? redisConnectUnixWithTimeout(s->path, tv) : redisConnectWithTimeout(s->host, s->port, tv);
  if (!r->c) {
    free(r);
    ss_error_set(err, SS_ERR_MEMORY, "out of memory connecting to Redis");
    return NULL;
  }
  if (r->c->err) {
    if (s->path[0]) ss_error_set(err, SS_ERR_CONNECTION, "could not connect to Redis at %s: %s", s->path, r->c->errstr);
    else ss_error_set(err, SS_ERR_CONNECTION, "could not connect to Redis at %s:%d: %s", s->host, s->port, r->c->errstr);
    ss_redis_close(r);
    return NULL;
  }
  if (!s->path[0]) redisEnableKeepAlive(r->c);
  if (redisSetTimeout(r->c, tv_of(s->command_timeout)) != REDIS_OK) {
    context_error(r, err);
    ss_redis_close(r);
    return NULL;
  }
  /* a user with an empty password (redis://app:@host) is still named: a
   * nopass ACL user accepts it */
  if (s->password[0] || s->user[0]) {
    const char *auth_user[] = {"AUTH", s->user, s->password}, *auth[] = {"AUTH", s->password};
    int rc = s->user[0] ? setup_command(r, 3, auth_user, "the user name or password (AUTH)", err)
                        : setup_command(r, 2, auth, "the password (AUTH)", err);
    if (rc) {
      ss_redis_close(r);
      return NULL;
    }
  }
  if (s->db > 0) {
    char db[16];
    const char *select[] = {"SELECT", db};
    snprintf(db, sizeof db, "%d", s->db);
    if (setup_command(r, 2, select, "the database (SELECT)", err)) {
      ss_redis_close(r);
      return NULL;
    }
  }
  return r;
}

void ss_redis_close(ss_redis *r) {
  if (!r) return;
  if (r->c) redisFree(r->c);
  free(r);
}

int ss_redis_broken(const ss_redis *r) { return r->broken; }

static int is_word(const char *const *words, const char *s, size_t len) {
  int i;
  for (i = 0; words[i]; i++)
    if (strlen(words[i]) == len && strncasecmp(words[i], s, len) == 0) return 1;
  return 0;
}

/* Commands after which the session is not what a fresh connection has
 * (CLIENT only for its subcommands that set something). */
static int changes_session(int argc, const char **argv, const size_t *lens) {
  static const char *const words[] = {"SELECT", "AUTH", "HELLO", "READONLY", "READWRITE", "RESET", "QUIT", NULL};
  static const char *const client[] = {"SETNAME", "TRACKING", "REPLY", "NO-EVICT", "NO-TOUCH", "SETINFO",
                                       "CACHING", NULL};
  if (is_word(words, argv[0], lens[0])) return 1;
  return lens[0] == 6 && strncasecmp(argv[0], "CLIENT", 6) == 0 && argc > 1 && is_word(client, argv[1], lens[1]);
}

/* Commands whose replies do not come one per command (a subscribed or
 * monitoring connection, replies turned off): refused, since every reply
 * after them would be read as another command's. */
static const char *unanswerable(int argc, const char **argv, const size_t *lens) {
  static const char *const words[] = {"SUBSCRIBE", "PSUBSCRIBE", "SSUBSCRIBE", "MONITOR", "SYNC", "PSYNC", NULL};
  static const char *const reply[] = {"REPLY", NULL};
  if (is_word(words, argv[0], lens[0])) return "it changes how Redis answers: use db.redis:subscribe for pub/sub";
  if (lens[0] == 6 && strncasecmp(argv[0], "CLIENT", 6) == 0 && argc > 1 && is_word(reply, argv[1], lens[1]))
    return "CLIENT REPLY would leave replies unread";
  return NULL;
}

/* Writes n as decimal text at p; returns the length. */
static size_t put_size(char *p, size_t n) {
  char tmp[24];
  size_t len = 0, i;
  do tmp[len++] = (char)('0' + n % 10); while ((n /= 10) > 0);
  for (i = 0; i < len; i++) p[i] = tmp[len - 1 - i];
  return len;
}

int ss_redis_append_command(ss_buf *out, int argc, const char **argv, const size_t *lens, unsigned char *effects,
                            ss_error *err) {
  const char *why;
  size_t need = 16, i;
  int k;
  if (argc < 1) return ss_error_set(err, SS_ERR_INPUT, "a Redis command needs at least its name");
  if ((why = unanswerable(argc, argv, lens)))
    return ss_error_set(err, SS_ERR_INPUT, "%.*s is refused here: %s", (int)(lens[0] < 32 ? lens[0] : 32), argv[0], why);
  *effects = 0;
  if (changes_session(argc, argv, lens)) *effects |= SS_REDIS_DIRTY;
  if (lens[0] == 5 && strncasecmp(argv[0], "MULTI", 5) == 0) *effects |= SS_REDIS_MULTI;
  else if (lens[0] == 5 && strncasecmp(argv[0], "WATCH", 5) == 0) *effects |= SS_REDIS_WATCH;
  else if (lens[0] == 7 && strncasecmp(argv[0], "UNWATCH", 7) == 0) *effects |= SS_REDIS_UNWATCH;
  else if ((lens[0] == 4 && strncasecmp(argv[0], "EXEC", 4) == 0) ||
           (lens[0] == 7 && strncasecmp(argv[0], "DISCARD", 7) == 0))
    *effects |= SS_REDIS_END_MULTI;
  /* RESP: *argc, then $len and the bytes of each argument */
  for (k = 0; k < argc; k++) need += lens[k] + 32;
  if (ss_buf_reserve(out, need)) return ss_error_set(err, SS_ERR_MEMORY, "out of memory formatting a command");
  {
    char *p = out->data + out->len;
    *p++ = '*';
    p += put_size(p, (size_t)argc);
    *p++ = '\r';
    *p++ = '\n';
    for (k = 0; k < argc; k++) {
      *p++ = '$';
      p += put_size(p, lens[k]);
      *p++ = '\r';
      *p++ = '\n';
      for (i = 0; i < lens[k]; i++) p[i] = argv[k][i];
      p += lens[k];
      *p++ = '\r';
      *p++ = '\n';
    }
    out->len = (size_t)(p - out->data);
  }
  return 0;
}

int ss_redis_run_formatted(ss_redis *r, const char *buf, size_t len, size_t n, const unsigned char *effects,
                           struct redisReply **replies, ss_error *err) {
  size_t i;
  if (r->broken) return ss_error_set(err, SS_ERR_CONNECTION, "this Redis connection failed before");
  for (i = 0; i < n; i++) {
    unsigned char e = effects[i];
    if (e & SS_REDIS_DIRTY) r->dirty = 1;
    if (e & SS_REDIS_MULTI) r->in_multi = 1;
    if (e & SS_REDIS_WATCH) r->watching = 1;
    if (e & SS_REDIS_UNWATCH) r->watching = 0;
    /* outside a MULTI, Redis refuses EXEC and DISCARD, and the WATCH stays */
    if ((e & SS_REDIS_END_MULTI) && r->in_multi) r->in_multi = r->watching = 0;
  }
  if (redisAppendFormattedCommand(r->c, buf, len) != REDIS_OK) return context_error(r, err);
  for (i = 0; i < n; i++) {
    if (redisGetReply(r->c, (void **)&replies[i]) != REDIS_OK) {
      size_t k;
      for (k = 0; k < i; k++) freeReplyObject(replies[k]);
      return context_error(r, err);
    }
  }
  return 0;
}

int ss_redis_run(ss_redis *r, size_t n, const int *argc, const char **argv, const size_t *lens,
                 struct redisReply **replies, ss_error *err) {
  ss_buf resp;
  unsigned char *effects = malloc(n ? n : 1);
  size_t i, off = 0;
  int rc = -1;
  ss_buf_init(&resp);
  if (!effects) return ss_error_set(err, SS_ERR_MEMORY, "out of memory formatting commands");
  /* every command is checked before any is sent */
  for (i = 0; i < n; i++) {
    if (ss_redis_append_command(&resp, argc[i], argv + off, lens + off, &effects[i], err)) goto done;
    off += (size_t)argc[i];
  }
  rc = ss_redis_run_formatted(r, resp.data, resp.len, n, effects, replies, err);
done:
  ss_buf_free(&resp);
  free(effects);
  return rc;
}

void ss_redis_free_reply(struct redisReply *reply) {
  if (reply) freeReplyObject(reply);
}

int ss_redis_send(ss_redis *r, int argc, const char **argv, const size_t *lens, ss_error *err) {
  int done = 0;
  if (r->broken) return ss_error_set(err, SS_ERR_CONNECTION, "this Redis connection failed before");
  r->dirty = 1;
  if (redisAppendCommandArgv(r->c, argc, argv, lens) != REDIS_OK) return context_error(r, err);
  while (!done)
    if (redisBufferWrite(r->c, &done) != REDIS_OK) return context_error(r, err);
  return 0;
}

int ss_redis_next(ss_redis *r, double timeout, struct redisReply **reply, ss_error *err) {
  void *got = NULL;
  double deadline = timeout >= 0 ? ss_monotonic() + timeout : 0;
  *reply = NULL;
  if (r->broken) return ss_error_set(err, SS_ERR_CONNECTION, "this Redis connection failed before");
  if (redisGetReplyFromReader(r->c, &got) != REDIS_OK) return context_error(r, err);
  while (!got) {
    /* wait on the socket ourselves: a read timeout would leave hiredis's
     * context unusable, and no message in time is not a failure here */
    struct pollfd p;
    int ms = -1, n;
    if (timeout >= 0) {
      double left = deadline - ss_monotonic();
      if (left <= 0) return 0;
      ms = (int)(left * 1000) + 1;
    }
    p.fd = r->c->fd;
    p.events = POLLIN;
    p.revents = 0;
    n = poll(&p, 1, ms);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ss_error_set(err, SS_ERR_CONNECTION, "waiting for Redis: %s", strerror(errno));
    if (n == 0) return 0;
    if (redisBufferRead(r->c) != REDIS_OK || redisGetReplyFromReader(r->c, &got) != REDIS_OK)
      return context_error(r, err);
  }
  *reply = got;
  return 0;
}

/* ---- the pool's operations ---- */

static void *op_open(void *ctx, ss_error *err) { return ss_redis_connect(ctx, err); }

static void op_close(void *ctx, void *conn) {
  (void)ctx;
  ss_redis_close(conn);
}

static int op_ping(void *ctx, void *conn, int deep, double limit) {
  ss_redis *r = conn;
  static const char *ping[] = {"PING"};
  static const size_t len[] = {4};
  static const int argc[] = {1};
  redisReply *reply;
  ss_error err;
  (void)ctx;
  (void)limit; /* the connection's command_timeout bounds it */
  if (r->broken) return -1;
  if (!deep) return 0;
  if (ss_redis_run(r, 1, argc, ping, len, &reply, &err)) return -1;
  ss_redis_free_reply(reply);
  return 0;
}

static int op_reset(void *ctx, void *conn) {
  ss_redis *r = conn;
  (void)ctx;
  return r->broken || r->dirty || r->in_multi || r->watching ? -1 : 0;
}

static int op_broken(void *ctx, void *conn) {
  (void)ctx;
  return ((ss_redis *)conn)->broken;
}

static void op_free_ctx(void *ctx) {
  ss_redis_settings *s = ctx;
  if (!s) return;
  /* the password does not outlive the pool in memory */
  memset(s, 0, sizeof *s);
  free(s);
}

const ss_pool_ops ss_redis_pool_ops = {op_open, op_close, op_ping, op_reset, op_broken, op_free_ctx};
