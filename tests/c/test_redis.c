/* The Redis connections of csrc/core/redis.c: URL parsing (no server), and
 * against the throwaway redis-server (REDIS_URL): commands as bulk
 * strings, pipelines, AUTH with an ACL user, SELECT, timeouts, and the
 * generic pool over them. */
#include <hiredis/hiredis.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "redis.h"

static int parses(const char *url, const char *host, int port, const char *path, const char *user,
                  const char *password, int db) {
  ss_redis_settings s;
  ss_error err;
  ss_redis_settings_defaults(&s);
  if (ss_redis_parse_url(url, &s, &err)) {
    printf("  %s: %s\n", url, err.message);
    return 0;
  }
  return strcmp(s.host, host) == 0 && s.port == port && strcmp(s.path, path) == 0 && strcmp(s.user, user) == 0 &&
         strcmp(s.password, password) == 0 && s.db == db;
}

static int refused(const char *url, const char *secret) {
  ss_redis_settings s;
  ss_error err;
  ss_redis_settings_defaults(&s);
  return ss_redis_parse_url(url, &s, &err) == -1 && err.kind == SS_ERR_INPUT &&
         (!secret || !strstr(err.message, secret));
}

static void test_parse(void) {
  CHECK(parses("redis://127.0.0.1:6379/0", "127.0.0.1", 6379, "", "", "", 0));
  CHECK(parses("redis://localhost", "localhost", 6379, "", "", "", 0));
  CHECK(parses("redis://h:7000/3", "h", 7000, "", "", "", 3));
  CHECK(parses("redis://app:s3cr%40t@h:1/2", "h", 1, "", "app", "s3cr@t", 2));
  CHECK(parses("redis://:pw@h", "h", 6379, "", "", "pw", 0));
  CHECK(parses("redis://pw@h", "h", 6379, "", "", "pw", 0));
  CHECK(parses("redis://u:p@ss@h:2", "h", 2, "", "u", "p@ss", 0));
  CHECK(parses("redis://[::1]:6380/1", "::1", 6380, "", "", "", 1));
  CHECK(parses("unix:///tmp/r.sock?db=4&password=x%26y", "", 6379, "/tmp/r.sock", "", "x&y", 4));
  CHECK(parses("unix:///tmp/r.sock", "", 6379, "/tmp/r.sock", "", "", 0));
  CHECK(refused("rediss://h", NULL));
  CHECK(refused("http://h", NULL));
  CHECK(refused("redis://h:0", NULL));
  CHECK(refused("redis://h:99999", NULL));
  CHECK(refused("redis://h/x", NULL));
  CHECK(refused("redis://u:bad%zzsecret@h", "secret"));
  CHECK(refused("unix://relative.sock", NULL));
  CHECK(refused("unix:///s.sock?dbx=1", NULL));
  CHECK(refused("redis://h?db=1", NULL));
  CHECK(parses("unix:///tmp/a%3Fb%25.sock?db=1", "", 6379, "/tmp/a?b%.sock", "", "", 1));
  CHECK(parses("redis://app:@h", "h", 6379, "", "app", "", 0));
}

/* the protocol text of commands, with no server */
static void test_format(void) {
  ss_buf b;
  ss_error err;
  unsigned char e;
  const char *set[] = {"SET", "k", "a\0b"}, *sub[] = {"SUBSCRIBE", "x"}, *reply[] = {"client", "reply", "off"};
  const char *multi[] = {"multi"}, *sel[] = {"SELECT", "2"}, *name[] = {"CLIENT", "SETNAME", "n"}, *id[] = {"CLIENT", "ID"};
  size_t set_lens[] = {3, 1, 3}, sub_lens[] = {9, 1}, reply_lens[] = {6, 5, 3}, multi_lens[] = {5}, sel_lens[] = {6, 1};
  size_t name_lens[] = {6, 7, 1}, id_lens[] = {6, 2};
  ss_buf_init(&b);
  CHECK(ss_redis_append_command(&b, 3, set, set_lens, &e, &err) == 0 && e == 0);
  CHECK(b.len == 29 && memcmp(b.data, "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$3\r\na\0b\r\n", 29) == 0);
  /* refused, and nothing written */
  CHECK(ss_redis_append_command(&b, 2, sub, sub_lens, &e, &err) == -1 && err.kind == SS_ERR_INPUT && b.len == 29);
  CHECK(ss_redis_append_command(&b, 3, reply, reply_lens, &e, &err) == -1 && b.len == 29);
  CHECK(ss_redis_append_command(&b, 0, set, set_lens, &e, &err) == -1);
  /* what commands do to the session */
  CHECK(ss_redis_append_command(&b, 1, multi, multi_lens, &e, &err) == 0 && e == SS_REDIS_MULTI);
  CHECK(ss_redis_append_command(&b, 2, sel, sel_lens, &e, &err) == 0 && e == SS_REDIS_DIRTY);
  CHECK(ss_redis_append_command(&b, 3, name, name_lens, &e, &err) == 0 && e == SS_REDIS_DIRTY);
  CHECK(ss_redis_append_command(&b, 2, id, id_lens, &e, &err) == 0 && e == 0);
  ss_buf_free(&b);
}

static ss_redis_settings server(void) {
  ss_redis_settings s;
  ss_error err;
  ss_redis_settings_defaults(&s);
  ss_redis_parse_url(getenv("REDIS_URL"), &s, &err);
  return s;
}

/* runs one command given as strings; the reply, or NULL */
static redisReply *cmd(ss_redis *r, int argc, const char **argv) {
  size_t lens[16];
  redisReply *reply = NULL;
  ss_error err;
  int i;
  for (i = 0; i < argc; i++) lens[i] = strlen(argv[i]);
  if (ss_redis_run(r, 1, &argc, argv, lens, &reply, &err)) printf("  %s: %s\n", argv[0], err.message);
  return reply;
}

static void test_commands(void) {
  ss_redis_settings s = server();
  ss_error err;
  ss_redis *r = ss_redis_connect(&s, &err);
  redisReply *rep, *reps[1000];
  const char *set[] = {"SET", "bin", "a\0b"};
  size_t set_lens[] = {3, 3, 3};
  int one = 3;
  CHECK(r != NULL);
  if (!r) return;
  /* arguments are bulk strings: a NUL byte goes through */
  CHECK(ss_redis_run(r, 1, &one, set, set_lens, &rep, &err) == 0 && rep->type == REDIS_REPLY_STATUS);
  ss_redis_free_reply(rep);
  {
    const char *get[] = {"GET", "bin"};
    rep = cmd(r, 2, get);
    CHECK(rep && rep->type == REDIS_REPLY_STRING && rep->len == 3 && memcmp(rep->str, "a\0b", 3) == 0);
    ss_redis_free_reply(rep);
  }
  /* an argument with a space and CRLF is one argument, never a command line */
  {
    const char *set2[] = {"SET", "k", "x\r\nFLUSHALL\r\n"}, *get[] = {"GET", "k"}, *exists[] = {"EXISTS", "bin"};
    ss_redis_free_reply(cmd(r, 3, set2));
    rep = cmd(r, 2, get);
    CHECK(rep && strcmp(rep->str, "x\r\nFLUSHALL\r\n") == 0);
    ss_redis_free_reply(rep);
    rep = cmd(r, 2, exists);
    CHECK(rep && rep->type == REDIS_REPLY_INTEGER && rep->integer == 1);
    ss_redis_free_reply(rep);
  }
  /* an error reply is a reply; the connection stays good */
  {
    const char *bogus[] = {"BOGUS"};
    rep = cmd(r, 1, bogus);
    CHECK(rep && rep->type == REDIS_REPLY_ERROR && strstr(rep->str, "unknown command") && !ss_redis_broken(r));
    ss_redis_free_reply(rep);
  }
  /* 1000 commands in one write */
  {
    int argc[1000], i, ok = 1;
    const char **argv = malloc(1000 * 2 * sizeof *argv);
    size_t *lens = malloc(1000 * 2 * sizeof *lens);
    for (i = 0; i < 1000; i++) {
      argc[i] = 2;
      argv[2 * i] = "INCR";
      argv[2 * i + 1] = "counter-c";
      lens[2 * i] = 4;
      lens[2 * i + 1] = 9;
    }
    {
      const char *del[] = {"DEL", "counter-c"};
      ss_redis_free_reply(cmd(r, 2, del));
    }
    CHECK(ss_redis_run(r, 1000, argc, argv, lens, reps, &err) == 0);
    for (i = 0; i < 1000; i++) {
      if (reps[i]->type != REDIS_REPLY_INTEGER || reps[i]->integer != i + 1) ok = 0;
      ss_redis_free_reply(reps[i]);
    }
    CHECK(ok);
    free(argv);
    free(lens);
  }
  /* a command past its timeout: a timeout error, and the connection is done */
  ss_redis_close(r);
  s.command_timeout = 0.2;
  r = ss_redis_connect(&s, &err);
  {
    const char *blpop[] = {"BLPOP", "never-pushed", "5"};
    size_t lens[] = {5, 12, 1};
    int argc = 3;
    CHECK(ss_redis_run(r, 1, &argc, blpop, lens, &rep, &err) == -1 && err.kind == SS_ERR_TIMEOUT &&
          ss_redis_broken(r));
    CHECK(ss_redis_run(r, 1, &argc, blpop, lens, &rep, &err) == -1 && err.kind == SS_ERR_CONNECTION);
  }
  ss_redis_close(r);
}

static void test_auth_select(void) {
  ss_redis_settings s = server(), admin = s;
  ss_error err;
  ss_redis *r = ss_redis_connect(&admin, &err), *u;
  const char *acl[] = {"ACL", "SETUSER", "semstore_c", "on", ">c-pass-word", "~*", "+@all"};
  redisReply *rep;
  rep = cmd(r, 7, acl);
  CHECK(rep && rep->type == REDIS_REPLY_STATUS);
  ss_redis_free_reply(rep);
  /* AUTH with an ACL user */
  ss_strlcpy(s.user, "semstore_c", sizeof s.user);
  ss_strlcpy(s.password, "c-pass-word", sizeof s.password);
  s.db = 3;
  u = ss_redis_connect(&s, &err);
  CHECK(u != NULL);
  if (u) {
    const char *who[] = {"ACL", "WHOAMI"}, *set[] = {"SET", "in-db-3", "x"};
    rep = cmd(u, 2, who);
    CHECK(rep && strcmp(rep->str, "semstore_c") == 0);
    ss_redis_free_reply(rep);
    ss_redis_free_reply(cmd(u, 3, set));
    ss_redis_close(u);
  }
  /* SELECT ran: the key is in database 3, not 0 */
  {
    const char *exists[] = {"EXISTS", "in-db-3"}, *sel[] = {"SELECT", "3"};
    rep = cmd(r, 2, exists);
    CHECK(rep && rep->integer == 0);
    ss_redis_free_reply(rep);
    ss_redis_free_reply(cmd(r, 2, sel));
    rep = cmd(r, 2, exists);
    CHECK(rep && rep->integer == 1);
    ss_redis_free_reply(rep);
  }
  /* a wrong password: a redis error that does not quote it */
  ss_strlcpy(s.password, "wrong-secret-pw", sizeof s.password);
  u = ss_redis_connect(&s, &err);
  CHECK(!u && err.kind == SS_ERR_REDIS && strstr(err.message, "AUTH") && !strstr(err.message, "wrong-secret-pw"));
  /* nobody listening */
  s = server();
  s.port = 1;
  u = ss_redis_connect(&s, &err);
  CHECK(!u && err.kind == SS_ERR_CONNECTION);
  {
    const char *del[] = {"ACL", "DELUSER", "semstore_c"};
    ss_redis_free_reply(cmd(r, 3, del));
  }
  ss_redis_close(r);
}

static void test_pool(void) {
  ss_pool_config cfg;
  ss_pool *pool;
  ss_pool_stats st;
  ss_error err;
  ss_redis_settings *s = malloc(sizeof *s);
  int i, ok = 1;
  *s = server();
  ss_pool_config_defaults(&cfg);
  cfg.size = 2;
  cfg.max_overflow = 1;
  pool = ss_pool_open("redis:c-test", getenv("REDIS_URL"), &cfg, &ss_redis_pool_ops, s, &err);
  CHECK(pool != NULL);
  if (!pool) return;
  for (i = 0; i < 10000 && ok; i++) {
    ss_pool_lease *l = ss_pool_acquire(pool, &err);
    if (!l) ok = 0;
    else ss_pool_release(pool, l);
  }
  ss_pool_get_stats(pool, &st);
  CHECK(ok && st.opened == 1 && st.in_use == 0 && st.acquired == 10000);
  /* a borrower that changed the session (SELECT) does not hand it on */
  {
    ss_pool_lease *l = ss_pool_acquire(pool, &err);
    const char *sel[] = {"SELECT", "5"};
    ss_redis_free_reply(cmd(l->conn, 2, sel));
    ss_pool_release(pool, l);
    ss_pool_get_stats(pool, &st);
    CHECK(st.idle == 0);
    l = ss_pool_acquire(pool, &err);
    ss_pool_get_stats(pool, &st);
    CHECK(l && st.opened == 2);
    ss_pool_release(pool, l);
  }
  ss_pool_unref(pool);
}

int main(void) {
  test_parse();
  test_format();
  if (!getenv("REDIS_URL")) {
    printf("REDIS_URL is not set: run through scripts/test.sh\n");
    test_failed++;
  } else {
    test_commands();
    test_auth_select();
    test_pool();
  }
  DONE();
}
