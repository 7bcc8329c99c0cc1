/* semstore.redis: a Lua handle on a process-wide pool of Redis connections
 * (the generic pool over csrc/core/redis.c). call() and pipeline() borrow
 * a connection for one round trip; this file only turns Lua arguments into
 * bulk strings and replies into Lua values. */
#include <hiredis/hiredis.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "binding.h"
#include "float_text.h"
#include "redis.h"

#define SS_REDIS_MT "semstore.redis"
#define SS_REDIS_CONN_MT "semstore.redis_conn"
#define SS_REDIS_SUB_MT "semstore.redis_subscriber"
#define SS_REDIS_BUILDER_MT "semstore.redis_pipeline"
#define SS_REPLIES_MT "semstore.redis_replies"
#define MAX_DEPTH 64

/* A pool handle (semstore.redis), or a connection borrowed from it
 * (semstore.redis_conn, lease set) for commands that must share one: a
 * transaction's WATCH, MULTI and EXEC. */
typedef struct {
  ss_pool *pool;
  int null_nil; /* a nil reply is nil, not semstore.null */
  ss_pool_lease *lease;
} redis_ud;

/* Replies held while they are turned into Lua values: freed by __gc if
 * that raises (out of memory), at once otherwise. */
typedef struct {
  redisReply **replies;
  size_t n;
} replies_box;

static redis_ud *check_redis(lua_State *L) {
  redis_ud *u = luaL_checkudata(L, 1, SS_REDIS_MT);
  if (!u->pool) luaL_error(L, "this Redis handle was closed");
  return u;
}

/* A pool handle or a borrowed connection: what call and pipeline run on. */
static redis_ud *check_target(lua_State *L) {
  redis_ud *u = luaL_testudata(L, 1, SS_REDIS_CONN_MT);
  if (!u) return check_redis(L);
  if (!u->lease) luaL_error(L, "this Redis connection was released");
  return u;
}

static void free_replies(replies_box *b) {
  size_t i;
  if (!b->replies) return;
  for (i = 0; i < b->n; i++) ss_redis_free_reply(b->replies[i]);
  free(b->replies);
  b->replies = NULL;
  b->n = 0;
}

static int replies_gc(lua_State *L) {
  free_replies(luaL_checkudata(L, 1, SS_REPLIES_MT));
  return 0;
}

/* core.redis_open{name=, url=, connect_timeout=, command_timeout=, null=,
 * and the pool options}; the Lua layer has checked the keys. */
static int redis_open(lua_State *L) {
  ss_pool_config cfg;
  ss_redis_settings *s;
  ss_error err;
  const char *name, *url, *null_mode;
  char pool_name[300];
  redis_ud *u;
  luaL_checktype(L, 1, LUA_TTABLE);
  ss_error_clear(&err);
  ss_pool_config_defaults(&cfg);
  lua_getfield(L, 1, "name");
  name = lua_isstring(L, -1) ? lua_tostring(L, -1) : "default";
  lua_getfield(L, 1, "url");
  url = lua_isstring(L, -1) ? lua_tostring(L, -1) : "redis://127.0.0.1:6379/0";
  lua_getfield(L, 1, "null");
  null_mode = lua_isstring(L, -1) ? lua_tostring(L, -1) : lua_isnil(L, -1) ? "null" : "";
  if (strcmp(null_mode, "null") != 0 && strcmp(null_mode, "nil") != 0) {
    ss_error_set(&err, SS_ERR_INPUT, "option 'null' must be \"null\" (semstore.null) or \"nil\"");
    return ss_push_fail(L, &err);
  }
  if (!(s = malloc(sizeof *s))) return luaL_error(L, "out of memory");
  ss_redis_settings_defaults(s);
  if (ss_redis_parse_url(url, s, &err) || ss_read_pool_config(L, 1, &cfg, &err) ||
      ss_opt_number(L, 1, "connect_timeout", s->connect_timeout, 0.001, 86400, 0, &s->connect_timeout, &err) ||
      ss_opt_number(L, 1, "command_timeout", s->command_timeout, 0.001, 86400, 0, &s->command_timeout, &err)) {
    memset(s, 0, sizeof *s);
    free(s);
    return ss_push_fail(L, &err);
  }
  /* its own namespace: a PostgreSQL pool may have the same name */
  snprintf(pool_name, sizeof pool_name, "redis:%s", name);
  u = ss_newuserdata(L, sizeof *u);
  u->pool = NULL;
  u->lease = NULL;
  u->null_nil = strcmp(null_mode, "nil") == 0;
  luaL_setmetatable(L, SS_REDIS_MT);
  if (!(u->pool = ss_pool_open(pool_name, url, &cfg, &ss_redis_pool_ops, s, &err))) return ss_push_fail(L, &err);
  return 1;
}

/* ---- arguments ---- */

typedef struct {
  size_t n, cap;
  const char **argv;
  size_t *lens;
  size_t *num_at; /* for a number: its text's offset in nums + 1; 0 for a string */
  ss_buf *nums;
} args;

/* "the command's", or "command 3's" in a pipeline (cmd > 0): for errors */
static const char *where(char *buf, size_t size, lua_Integer cmd) {
  if (cmd == 0) return "the command's";
  snprintf(buf, size, "command %lld's", (long long)cmd);
  return buf;
}

/* Appends the value at idx as argument i of command cmd (0 outside a
 * pipeline): a string as it is, an integer or a float as exact text. */
static int add_arg(lua_State *L, int idx, args *a, lua_Integer cmd, lua_Integer i, ss_error *err) {
  char label[48];
  if (a->n == a->cap) {
    size_t cap = a->cap ? a->cap * 2 : 16;
    const char **argv = realloc(a->argv, cap * sizeof *argv);
    size_t *lens = argv ? realloc(a->lens, cap * sizeof *lens) : NULL;
    size_t *num_at = lens ? realloc(a->num_at, cap * sizeof *num_at) : NULL;
    if (argv) a->argv = argv;
    if (lens) a->lens = lens;
    if (num_at) a->num_at = num_at;
    if (!argv || !lens || !num_at) return ss_error_set(err, SS_ERR_MEMORY, "out of memory reading arguments");
    a->cap = cap;
  }
  switch (lua_type(L, idx)) {
  case LUA_TSTRING:
    a->argv[a->n] = lua_tolstring(L, idx, &a->lens[a->n]);
    a->num_at[a->n] = 0;
    break;
  case LUA_TNUMBER: {
    char num[40];
    int len;
    if (lua_isinteger(L, idx)) {
      len = snprintf(num, sizeof num, "%lld", (long long)lua_tointeger(L, idx));
    } else {
      double d = lua_tonumber(L, idx);
      if (isnan(d))
        return ss_error_set(err, SS_ERR_INPUT, "%s argument %lld is NaN", where(label, sizeof label, cmd), (long long)i);
      /* Redis spells infinities inf and -inf (ZADD, ZRANGEBYSCORE) */
      len = isinf(d) ? snprintf(num, sizeof num, d > 0 ? "inf" : "-inf") : ss_format_double(num, sizeof num, d);
    }
    a->num_at[a->n] = a->nums->len + 1;
    a->lens[a->n] = (size_t)len;
    if (ss_buf_append(a->nums, num, (size_t)len)) return ss_error_set(err, SS_ERR_MEMORY, "out of memory");
    break;
  }
  default:
    return ss_error_set(err, SS_ERR_INPUT, "%s argument %lld is a %s: Redis takes strings and numbers",
                        where(label, sizeof label, cmd), (long long)i, luaL_typename(L, idx));
  }
  a->n++;
  return 0;
}

/* Points the numbers' arguments into nums, once it no longer moves. */
static void settle(args *a) {
  size_t i;
  for (i = 0; i < a->n; i++)
    if (a->num_at[i]) a->argv[i] = a->nums->data + a->num_at[i] - 1;
}

static void free_args(args *a) {
  free(a->argv);
  free(a->lens);
  free(a->num_at);
}

/* ---- replies ---- */

/* Redis's error reply as an error of kind redis */
static void reply_error(const redisReply *r, ss_error *e) {
  ss_error_set(e, SS_ERR_REDIS, "%.*s", (int)(r->len < 1000 ? r->len : 1000), r->str);
}

static void push_reply(lua_State *L, const redisReply *r, int null_nil, int depth) {
  size_t i;
  if (depth > MAX_DEPTH || !lua_checkstack(L, 4)) luaL_error(L, "a Redis reply nested too deep");
  switch (r->type) {
  case REDIS_REPLY_STRING:
  case REDIS_REPLY_STATUS:
    lua_pushlstring(L, r->str, r->len);
    break;
  case REDIS_REPLY_INTEGER:
    ss_pushint64(L, r->integer);
    break;
  case REDIS_REPLY_NIL:
    /* inside an array, always semstore.null: a nil would make a hole */
    if (null_nil && depth == 0) lua_pushnil(L);
    else lua_pushlightuserdata(L, NULL);
    break;
  case REDIS_REPLY_ARRAY:
    lua_createtable(L, (int)r->elements, 0);
    for (i = 0; i < r->elements; i++) {
      push_reply(L, r->element[i], null_nil, depth + 1);
      lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    break;
  case REDIS_REPLY_ERROR: {
    /* an error among replies (a pipeline, EXEC's array): an error table */
    ss_error e;
    reply_error(r, &e);
    ss_push_error(L, &e);
    break;
  }
  default:
    lua_pushnil(L);
  }
}

/* Borrows a connection (or uses the one held), sends the n commands
 * formatted in buf (ss_redis_append_command) and leaves their replies in
 * box, then gives the connection back. 0, or -1 with err set. */
static int run(redis_ud *u, const char *buf, size_t len, size_t n, const unsigned char *effects, replies_box *box,
               ss_error *err) {
  ss_pool_lease *lease;
  int rc;
  if (!(box->replies = calloc(n ? n : 1, sizeof *box->replies)))
    return ss_error_set(err, SS_ERR_MEMORY, "out of memory reading replies");
  if (!(lease = u->lease ? u->lease : ss_pool_acquire(u->pool, err))) return -1;
  rc = ss_redis_run_formatted(lease->conn, buf, len, n, effects, box->replies, err);
  /* a broken connection is closed by the pool, never handed out again */
  if (!u->lease) ss_pool_release(u->pool, lease);
  if (rc == 0) box->n = n;
  return rc;
}

static replies_box *push_box(lua_State *L) {
  replies_box *b = ss_newuserdata(L, sizeof *b);
  b->replies = NULL;
  b->n = 0;
  luaL_setmetatable(L, SS_REPLIES_MT);
  return b;
}

/* h:call(command, ...) -> the reply, or nil, err (an error reply is
 * kind "redis" with Redis's own message). */
static int redis_call(lua_State *L) {
  redis_ud *u = check_target(L);
  int top = lua_gettop(L), i;
  args a;
  ss_error err;
  replies_box *box;
  ss_buf *resp;
  unsigned char effects;
  memset(&a, 0, sizeof a);
  ss_error_clear(&err);
  if (top < 2) return luaL_error(L, "call() needs a command");
  a.nums = ss_push_scratch(L);
  resp = ss_push_scratch(L);
  box = push_box(L);
  for (i = 2; i <= top; i++) {
    if (add_arg(L, i, &a, 0, i - 1, &err)) {
      free_args(&a);
      return ss_push_fail(L, &err);
    }
  }
  settle(&a);
  if (ss_redis_append_command(resp, (int)a.n, a.argv, a.lens, &effects, &err) ||
      run(u, resp->data, resp->len, 1, &effects, box, &err)) {
    free_args(&a);
    return ss_push_fail(L, &err);
  }
  free_args(&a);
  if (box->replies[0]->type == REDIS_REPLY_ERROR) {
    reply_error(box->replies[0], &err);
    free_replies(box);
    return ss_push_fail(L, &err);
  }
  push_reply(L, box->replies[0], u->null_nil, 0);
  free_replies(box);
  return 1;
}

/* ---- a pipeline being built: commands formatted as they are queued ---- */

typedef struct {
  ss_buf resp;    /* the commands, in Redis's protocol */
  ss_buf effects; /* one byte per command: its SS_REDIS_* flags */
  size_t n;
  args a;         /* the current command's arguments, reused */
  ss_buf nums;
  ss_error err;   /* the first command refused: the pipeline fails with it */
} builder_ud;

static builder_ud *check_builder(lua_State *L, int idx) { return luaL_checkudata(L, idx, SS_REDIS_BUILDER_MT); }

static int builder_gc(lua_State *L) {
  builder_ud *b = check_builder(L, 1);
  ss_buf_free(&b->resp);
  ss_buf_free(&b->effects);
  ss_buf_free(&b->nums);
  free_args(&b->a);
  memset(&b->a, 0, sizeof b->a);
  return 0;
}

static int builder_tostring(lua_State *L) {
  lua_pushfstring(L, "semstore.redis_pipeline(%d commands)", (int)check_builder(L, 1)->n);
  return 1;
}

/* h:builder() -> an empty pipeline */
static int redis_builder(lua_State *L) {
  builder_ud *b;
  check_target(L);
  b = ss_newuserdata(L, sizeof *b);
  memset(b, 0, sizeof *b);
  ss_buf_init(&b->resp);
  ss_buf_init(&b->effects);
  ss_buf_init(&b->nums);
  b->a.nums = &b->nums;
  luaL_setmetatable(L, SS_REDIS_BUILDER_MT);
  return 1;
}

/* b:call(command, ...): formats the command at once (no table per
 * command). A refused command or argument does not raise: the pipeline
 * fails with the first one, and nothing is sent. */
static int builder_call(lua_State *L) {
  builder_ud *b = check_builder(L, 1);
  int top = lua_gettop(L), i;
  unsigned char effects;
  if (b->err.kind != SS_OK) return 0;
  b->a.n = 0;
  b->nums.len = 0;
  for (i = 2; i <= top; i++)
    if (add_arg(L, i, &b->a, (lua_Integer)b->n + 1, i - 1, &b->err)) return 0;
  settle(&b->a);
  if (ss_redis_append_command(&b->resp, (int)b->a.n, b->a.argv, b->a.lens, &effects, &b->err)) {
    char why[sizeof b->err.message];
    ss_strlcpy(why, b->err.message, sizeof why);
    snprintf(b->err.message, sizeof b->err.message, "command %zu: %.900s", b->n + 1, why);
    return 0;
  }
  if (ss_buf_putc(&b->effects, (char)effects)) {
    ss_error_set(&b->err, SS_ERR_MEMORY, "out of memory queuing a command");
    return 0;
  }
  b->n++;
  return 0;
}

/* b:count() -> the commands queued */
static int builder_count(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)check_builder(L, 1)->n);
  return 1;
}

/* h:run(b) -> the array of replies (an error reply is an error table in
 * its place), or nil, err when a command was refused (nothing was sent)
 * or the connection failed. */
static int redis_run(lua_State *L) {
  redis_ud *u = check_target(L);
  builder_ud *b = check_builder(L, 2);
  ss_error err;
  replies_box *box;
  size_t i;
  lua_settop(L, 2);
  if (b->err.kind != SS_OK) return ss_push_fail(L, &b->err);
  if (b->n == 0) {
    lua_newtable(L);
    return 1;
  }
  box = push_box(L);
  if (run(u, b->resp.data, b->resp.len, b->n, (const unsigned char *)b->effects.data, box, &err))
    return ss_push_fail(L, &err);
  lua_createtable(L, (int)b->n, 0);
  for (i = 0; i < b->n; i++) {
    push_reply(L, box->replies[i], 0, 1);
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  free_replies(box);
  return 1;
}

/* h:acquire() -> a connection of the pool's own, for commands that must
 * share one; give it back with release() (a to-be-closed variable, or the
 * collector, does it too). */
static int redis_acquire(lua_State *L) {
  redis_ud *u = check_redis(L), *c;
  ss_error err;
  c = ss_newuserdata(L, sizeof *c);
  c->pool = NULL;
  c->lease = NULL;
  c->null_nil = u->null_nil;
  luaL_setmetatable(L, SS_REDIS_CONN_MT);
  if (!(c->lease = ss_pool_acquire(u->pool, &err))) return ss_push_fail(L, &err);
  ss_pool_ref(u->pool);
  c->pool = u->pool;
  return 1;
}

static void give_back(redis_ud *c, int reclaimed) {
  if (!c->lease) return;
  ss_pool_release(c->pool, c->lease);
  if (reclaimed) ss_pool_note_reclaimed(c->pool);
  c->lease = NULL;
  ss_pool_unref(c->pool);
  c->pool = NULL;
}

static int conn_release(lua_State *L) {
  give_back(luaL_checkudata(L, 1, SS_REDIS_CONN_MT), 0);
  return 0;
}

static int conn_gc(lua_State *L) {
  give_back(luaL_checkudata(L, 1, SS_REDIS_CONN_MT), 1);
  return 0;
}

static int conn_tostring(lua_State *L) {
  redis_ud *c = luaL_checkudata(L, 1, SS_REDIS_CONN_MT);
  lua_pushfstring(L, "semstore.redis_conn(%s)", c->lease ? ss_pool_name(c->pool) : "released");
  return 1;
}

/* ---- a subscriber: a connection of its own, outside the pool ---- */

typedef struct {
  ss_redis *r;
} sub_ud;

static ss_redis *check_sub(lua_State *L) {
  sub_ud *s = luaL_checkudata(L, 1, SS_REDIS_SUB_MT);
  if (!s->r) luaL_error(L, "this Redis subscriber was closed");
  return s->r;
}

/* h:subscriber() -> a new connection for SUBSCRIBE, with the pool's
 * settings (a subscribed connection can run nothing else, so it is never
 * a pooled one). */
static int redis_subscriber(lua_State *L) {
  redis_ud *u = check_redis(L);
  ss_error err;
  sub_ud *s = ss_newuserdata(L, sizeof *s);
  s->r = NULL;
  luaL_setmetatable(L, SS_REDIS_SUB_MT);
  if (!(s->r = ss_redis_connect(ss_pool_ctx(u->pool), &err))) return ss_push_fail(L, &err);
  return 1;
}

/* sub:send(command, ...) -> true, or nil, err: SUBSCRIBE, PSUBSCRIBE,
 * UNSUBSCRIBE, PING; their confirmations come back through next(). */
static int sub_send(lua_State *L) {
  ss_redis *r = check_sub(L);
  int top = lua_gettop(L), i;
  args a;
  ss_error err;
  memset(&a, 0, sizeof a);
  ss_error_clear(&err);
  if (top < 2) return luaL_error(L, "send() needs a command");
  a.nums = ss_push_scratch(L);
  for (i = 2; i <= top; i++) {
    if (add_arg(L, i, &a, 0, i - 1, &err)) {
      free_args(&a);
      return ss_push_fail(L, &err);
    }
  }
  settle(&a);
  if (ss_redis_send(r, (int)a.n, a.argv, a.lens, &err)) {
    free_args(&a);
    return ss_push_fail(L, &err);
  }
  free_args(&a);
  lua_pushboolean(L, 1);
  return 1;
}

/* sub:next(timeout) -> the next message as Redis sends it (an array such
 * as { "message", channel, data }), false when timeout seconds passed
 * without one (nil or negative: no limit), or nil, err when the
 * connection failed. */
static int sub_next(lua_State *L) {
  ss_redis *r = check_sub(L);
  double timeout = luaL_optnumber(L, 2, -1);
  replies_box *box;
  ss_error err;
  redisReply *reply;
  if (timeout != timeout) return luaL_argerror(L, 2, "the timeout is NaN");
  box = push_box(L);
  if (ss_redis_next(r, timeout, &reply, &err)) return ss_push_fail(L, &err);
  if (!reply) {
    lua_pushboolean(L, 0);
    return 1;
  }
  box->replies = malloc(sizeof *box->replies);
  if (!box->replies) {
    ss_redis_free_reply(reply);
    return luaL_error(L, "out of memory");
  }
  box->replies[0] = reply;
  box->n = 1;
  push_reply(L, reply, 0, 1);
  free_replies(box);
  return 1;
}

static int sub_close(lua_State *L) {
  sub_ud *s = luaL_checkudata(L, 1, SS_REDIS_SUB_MT);
  ss_redis_close(s->r);
  s->r = NULL;
  return 0;
}

static int sub_tostring(lua_State *L) {
  sub_ud *s = luaL_checkudata(L, 1, SS_REDIS_SUB_MT);
  lua_pushstring(L, s->r ? "semstore.redis_subscriber" : "semstore.redis_subscriber(closed)");
  return 1;
}

/* h:target() -> where it connects, printable: the password as *** */
static int redis_target(lua_State *L) {
  char out[800];
  ss_redis_target(ss_pool_ctx(check_redis(L)->pool), out, sizeof out);
  lua_pushstring(L, out);
  return 1;
}

static int redis_stats(lua_State *L) {
  ss_push_pool_stats(L, check_redis(L)->pool);
  return 1;
}

static int redis_close(lua_State *L) {
  redis_ud *u = luaL_checkudata(L, 1, SS_REDIS_MT);
  if (u->pool) {
    ss_pool_unref(u->pool);
    u->pool = NULL;
  }
  return 0;
}

static int redis_tostring(lua_State *L) {
  redis_ud *u = luaL_checkudata(L, 1, SS_REDIS_MT);
  lua_pushfstring(L, "semstore.redis(%s)", u->pool ? ss_pool_name(u->pool) : "closed");
  return 1;
}

void ss_open_redis(lua_State *L) {
  static const luaL_Reg methods[] = {{"call", redis_call},   {"builder", redis_builder}, {"run", redis_run},
                                     {"stats", redis_stats}, {"close", redis_close},
                                     {"acquire", redis_acquire}, {"subscriber", redis_subscriber},
                                     {"target", redis_target},
                                     {NULL, NULL}};
  static const luaL_Reg builder_methods[] = {{"call", builder_call}, {"count", builder_count}, {NULL, NULL}};
  static const luaL_Reg sub_methods[] = {{"send", sub_send}, {"next", sub_next}, {"close", sub_close}, {NULL, NULL}};
  static const luaL_Reg conn_methods[] = {{"call", redis_call},
                                          {"builder", redis_builder},
                                          {"run", redis_run},
                                          {"release", conn_release},
                                          {NULL, NULL}};
  ss_register_type(L, SS_REDIS_MT, methods, redis_close, NULL, redis_tostring, "redis_methods");
  ss_register_type(L, SS_REDIS_CONN_MT, conn_methods, conn_gc, conn_release, conn_tostring, "redis_conn_methods");
  ss_register_type(L, SS_REDIS_BUILDER_MT, builder_methods, builder_gc, NULL, builder_tostring, "redis_pipeline_methods");
  ss_register_type(L, SS_REDIS_SUB_MT, sub_methods, sub_close, sub_close, sub_tostring, "redis_subscriber_methods");
  luaL_newmetatable(L, SS_REPLIES_MT);
  lua_pushcfunction(L, replies_gc);
  lua_setfield(L, -2, "__gc");
  lua_pop(L, 1);
  lua_pushcfunction(L, redis_open);
  lua_setfield(L, -2, "redis_open");
}
