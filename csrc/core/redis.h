/* Redis connections over hiredis (0.14: RESP2, no TLS), for the generic
 * pool (ss_redis_pool_ops). A connection runs AUTH and SELECT when it
 * opens; every command goes out as separate bulk strings (never spliced
 * into a command line). Replies are hiredis's redisReply trees: the
 * binding turns them into Lua values. */
#ifndef SEMSTORE_REDIS_H
#define SEMSTORE_REDIS_H

#include <stddef.h>

#include "buf.h"
#include "error.h"
#include "pool.h"

struct redisReply;

typedef struct {
  char host[256];
  int port;
  char path[256]; /* a unix socket, instead of host and port */
  char user[128], password[256];
  int db;
  double connect_timeout, command_timeout; /* seconds, > 0 */
} ss_redis_settings;

/* redis://[user:password@]host[:port][/db] (user and password
 * percent-decoded) or unix:///path.sock[?db=N][&user=U][&password=P]; port
 * 6379 and db 0 by default. Timeouts are left as they are. 0, or -1 with an
 * input error that never quotes the password. */
int ss_redis_parse_url(const char *url, ss_redis_settings *s, ss_error *err);
void ss_redis_settings_defaults(ss_redis_settings *s);
/* The settings as a URL to print: the password as ***, never itself.
 * Returns what snprintf returns. */
int ss_redis_target(const ss_redis_settings *s, char *out, size_t size);

typedef struct ss_redis ss_redis;

/* Connects, then AUTH (when a password is set) and SELECT (when db > 0).
 * NULL with err set: connection (or timeout), or redis for a refused AUTH
 * or SELECT, with no password in the message. */
ss_redis *ss_redis_connect(const ss_redis_settings *s, ss_error *err);
void ss_redis_close(ss_redis *r);
/* Nonzero once the connection failed (I/O error, timeout, protocol): it
 * is never used again. */
int ss_redis_broken(const ss_redis *r);

/* Sends n commands (argc[i] arguments each, taken in order from argv and
 * lens) in one write, and reads their n replies into replies[0..n-1]
 * (free each with ss_redis_free_reply). An error reply is a reply, not a
 * failure. -1 with err set (connection, timeout, memory) when the
 * connection failed: then it is broken, and replies holds nothing. */
int ss_redis_run(ss_redis *r, size_t n, const int *argc, const char **argv, const size_t *lens,
                 struct redisReply **replies, ss_error *err);
void ss_redis_free_reply(struct redisReply *reply);

/* What a command does to its connection's session, found when it is
 * formatted and applied when it is sent. */
enum { SS_REDIS_DIRTY = 1, SS_REDIS_MULTI = 2, SS_REDIS_WATCH = 4, SS_REDIS_UNWATCH = 8, SS_REDIS_END_MULTI = 16 };
/* Checks one command and appends it to out in Redis's protocol (bytes in,
 * bytes out: no I/O); *effects gets its SS_REDIS_* flags. 0, or -1 with
 * err set (input: a command whose replies would come out of step, such as
 * SUBSCRIBE; memory). out is unchanged on failure. */
int ss_redis_append_command(ss_buf *out, int argc, const char **argv, const size_t *lens, unsigned char *effects,
                            ss_error *err);
/* Sends the n commands formatted in buf by ss_redis_append_command in one
 * write and reads their n replies, as ss_redis_run does. */
int ss_redis_run_formatted(ss_redis *r, const char *buf, size_t len, size_t n, const unsigned char *effects,
                           struct redisReply **replies, ss_error *err);

/* For a subscriber's own connection: sends one command without reading a
 * reply (SUBSCRIBE's confirmations come as messages); and waits up to
 * timeout seconds (< 0: no limit) for the next message: 0 with *reply set,
 * 0 with *reply NULL when the time ran out (the connection is still good),
 * -1 with err set when the connection failed. */
int ss_redis_send(ss_redis *r, int argc, const char **argv, const size_t *lens, ss_error *err);
int ss_redis_next(ss_redis *r, double timeout, struct redisReply **reply, ss_error *err);

/* For the generic pool: ctx is an ss_redis_settings the pool owns (made
 * with malloc). ping with `deep` sends PING. */
extern const ss_pool_ops ss_redis_pool_ops;

#endif
