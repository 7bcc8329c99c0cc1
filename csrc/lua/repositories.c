/* The repositories' methods, core.repositories.<name>.<method>: one C
 * closure per row of ss_statements. The engine that runs them is in the
 * core (csrc/core/repo.c); this file only reads a call's Lua arguments into
 * C values, runs the engine on a borrowed connection, and turns its answer
 * and its errors into Lua values. A repository is a table whose field `pg`
 * is a pool handle (each call borrows a connection for its length) or a
 * borrowed connection (calls join what runs on it, such as a transaction). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "binding.h"
#include "repo.h"
#include "repo_rules.h"

/* ---- which Lua argument fills which parameter ---- */

/* Each method's Lua arguments after self, as the README writes the call:
 * a name is an argument that is itself a parameter's value; {a, b} is a
 * table argument whose fields a and b are parameters; {*} a table argument
 * holding every parameter not named elsewhere. Parameters the engine fills
 * in itself (new ids, partition keys) are never named. The statement table
 * says nothing of this: it is how Lua calls them. */
static const struct {
  const char *repo, *method, *args;
} lua_args[] = {
    {"users", "create", "{*}"},
    {"users", "get", "id"},
    {"users", "get_by_username", "username"},
    {"users", "update_last_login", "id"},
    {"collections", "create", "{*}"},
    {"collections", "get_by_uuid", "id"},
    {"collections", "get_by_name", "name"},
    {"collections", "get_by_uuid_with_permission_check", "id, user_id"},
    {"collections", "list_for_user", "user_id, {offset, limit}"},
    {"collections", "update_status", "id, status, message"},
    {"collections", "update_stats", "id, {*}"},
    {"collections", "rename", "id, new_name, user_id"},
    {"collections", "delete", "id, user_id"},
    {"documents", "create", "{*}"},
    {"documents", "get", "id"},
    {"documents", "list_by_collection", "collection_id, {status, offset, limit}"},
    {"documents", "update_status", "id, status, error_message"},
    {"documents", "delete", "id"},
    {"operations", "create", "{*}"},
    {"operations", "get_by_uuid", "uuid"},
    {"operations", "update_status", "uuid, status, {error_message, task_id}"},
    {"operations", "list_for_collection", "collection_id, {status, offset, limit}"},
    {"operations", "cancel", "uuid"},
    {"chunks", "create_chunk", "{*}"},
    {"chunks", "get_chunk_by_id", "id, collection_id"},
    {"chunks", "get_chunks_by_document", "document_id, collection_id, limit"},
    {"chunks", "get_chunks_by_collection", "collection_id, {after_id, limit}"},
    {"chunks", "delete_chunks_by_document", "document_id, collection_id"},
    {"chunks", "delete_chunks_by_collection", "collection_id"},
    {"chunks", "get_chunk_statistics", "collection_id"},
    {"chunks", "get_chunks_without_embeddings", "collection_id, limit"},
    {NULL, NULL, NULL}};

/* Where each parameter of a statement comes from. */
typedef struct {
  unsigned char arg[SS_MAX_PARAMS];      /* 1 = the first argument after self; 0 = not read */
  unsigned char in_table[SS_MAX_PARAMS]; /* field `name` of that argument */
  int nargs;
} arg_map;

static int is_read(const ss_param_spec *p) {
  return p->kind != SS_V_NEW_UUID && p->kind != SS_V_PARTITION && p->kind != SS_V_CURRENT;
}

/* Fills m from a signature; 0, or -1 with why set (a mistake in the
 * tables above, found when the module loads). */
static int map_args(const ss_statement *st, const char *sig, arg_map *m, char *why, size_t size) {
  int n = ss_repo_params(st), in_table = 0, star = 0, k;
  const char *p = sig;
  memset(m, 0, sizeof *m);
  while (*p) {
    size_t len;
    if (*p == ' ' || *p == ',') {
      p++;
      continue;
    }
    if (*p == '{' || *p == '}') {
      in_table = *p++ == '{';
      if (in_table) m->nargs++;
      continue;
    }
    if (*p == '*') {
      star = m->nargs;
      p++;
      continue;
    }
    if (!in_table) m->nargs++;
    len = strcspn(p, " ,{}");
    for (k = 0; k < n; k++)
      if (is_read(&st->params[k]) && !m->arg[k] && strlen(st->params[k].name) == len &&
          strncmp(st->params[k].name, p, len) == 0)
        break;
    if (k == n) {
      snprintf(why, size, "%s.%s: the signature names '%.*s', which is no parameter left", st->repo, st->method,
               (int)len, p);
      return -1;
    }
    m->arg[k] = (unsigned char)m->nargs;
    m->in_table[k] = (unsigned char)in_table;
    p += len;
  }
  for (k = 0; k < n; k++) {
    if (!is_read(&st->params[k]) || m->arg[k]) continue;
    if (!star) {
      snprintf(why, size, "%s.%s: no argument fills parameter %s", st->repo, st->method, st->params[k].name);
      return -1;
    }
    m->arg[k] = (unsigned char)star;
    m->in_table[k] = 1;
  }
  return 0;
}

/* ---- reading the arguments ---- */

/* Pushes the raw Lua value parameter k comes from (nil when absent). */
static int push_source(lua_State *L, const ss_param_spec *p, const arg_map *m, int k, ss_error *err) {
  int idx = 1 + m->arg[k];
  if (!m->in_table[k]) {
    lua_pushvalue(L, idx);
    return 0;
  }
  if (lua_istable(L, idx)) {
    lua_getfield(L, idx, p->name);
    return 0;
  }
  lua_pushnil(L);
  if (ss_is_null(L, idx)) return 0;
  return ss_error_set(err, SS_ERR_INPUT, "argument %d must be a table of fields", m->arg[k]);
}

/* Refuses fields of a table argument that no parameter reads: a typo
 * would otherwise be dropped without a word. */
static int check_fields(lua_State *L, const ss_statement *st, const arg_map *m, ss_error *err) {
  int n = ss_repo_params(st), arg, k;
  for (arg = 1; arg <= m->nargs; arg++) {
    const char *names[SS_MAX_PARAMS + 1];
    char what[32];
    int count = 0;
    for (k = 0; k < n; k++)
      if (m->arg[k] == arg && m->in_table[k]) names[count++] = st->params[k].name;
    if (!count || !lua_istable(L, 1 + arg)) continue;
    names[count] = NULL;
    snprintf(what, sizeof what, "argument %d", arg);
    if (ss_check_keys(L, 1 + arg, names, what, err)) return -1;
  }
  return 0;
}

/* Reads the value at idx for parameter p into *v; JSON text is pushed as
 * a Lua string (so it stays anchored, with the zero byte libpq reads up
 * to). The scratch buffer is made when first needed. */
static int read_param(lua_State *L, int idx, const ss_param_spec *p, ss_buf **scratch, ss_value *v, ss_error *err) {
  int json = p->kind == SS_V_JSON && lua_istable(L, idx);
  if (json && !*scratch) {
    *scratch = ss_push_scratch(L);
    lua_insert(L, idx++); /* under the value, so the value stays on top */
  }
  if (ss_to_value(L, idx, json, *scratch, v, err)) {
    char why[sizeof err->message];
    ss_strlcpy(why, err->message, sizeof why);
    return ss_error_set(err, err->kind, "%s: %s", p->name, why);
  }
  if (v->type == SS_VAL_JSON) {
    lua_pushlstring(L, v->as.str.s, v->as.str.len);
    *v = ss_json(lua_tostring(L, -1), v->as.str.len);
  }
  return 0;
}

/* ---- running a statement ---- */

typedef struct {
  ss_repo_call call;
  ss_repo_result res;
  ss_conn_handle *c;
} statement_run;

static void statement_raised(void *ud) { ss_repo_result_clear(&((statement_run *)ud)->res); }

/* Whether NULL columns are left out of rows for this connection's pool. */
static int null_nil(const ss_conn_handle *c) { return ((ss_pg_settings *)ss_pool_ctx(c->pool))->null_as_nil; }

/* Pushes the rows of r->res (the one row decoder), or returns -1 with err
 * set (a result with two columns of one name). */
static int push_rows(lua_State *L, statement_run *r, ss_error *err) {
  int failed, status = ss_push_result(L, &r->res.rows, r->c->lease->conn, r->res.stream != NULL, null_nil(r->c), err,
                                      &failed);
  ss_repo_result_clear(&r->res);
  if (status != LUA_OK) return lua_error(L);
  return failed ? -1 : 0;
}

/* The engine's answer as Lua values, shaped by the statement. */
static int push_answer(lua_State *L, statement_run *r) {
  const ss_statement *st = r->call.st;
  ss_error err;
  ss_error_clear(&err);
  switch (st->returns) {
  case SS_RET_AFFECTED:
    lua_pushinteger(L, (lua_Integer)r->res.affected);
    return 1;
  case SS_RET_DONE:
    lua_pushboolean(L, 1);
    return 1;
  default:
    break;
  }
  if (push_rows(L, r, &err)) return ss_push_fail(L, &err);
  switch (st->returns) {
  case SS_RET_ROWS:
    return 1;
  case SS_RET_PAGE:
    lua_pushinteger(L, (lua_Integer)r->res.total);
    return 2;
  default:
    break;
  }
  /* one row: ROW, PERMITTED, CREATED (the engine made sure there is one) */
  lua_rawgeti(L, -1, 1);
  lua_remove(L, -2);
  if (st->returns == SS_RET_PERMITTED) {
    lua_pushnil(L);
    lua_setfield(L, -2, "permitted");
  }
  if (st->returns == SS_RET_CREATED) {
    lua_pushnil(L);
    lua_setfield(L, -2, "created");
    lua_pushboolean(L, r->res.created);
    return 2;
  }
  return 1;
}

/* What runs on the borrowed connection, protected by ss_conn_call. */
static int statement_body(lua_State *L) {
  statement_run *r = lua_touserdata(L, lua_upvalueindex(1));
  ss_error err;
  ss_error_clear(&err);
  if (ss_repo_run(&r->call, r->c->lease->conn, &r->res, &err)) return ss_push_fail(L, &err);
  return push_answer(L, r);
}

/* Runs st with the arguments at 2.. (self at 1). Every value is read and
 * checked before a connection is borrowed. */
static int run_statement(lua_State *L, const ss_statement *st, const arg_map *m) {
  ss_value values[SS_MAX_PARAMS];
  statement_run r;
  ss_buf *scratch = NULL;
  ss_error err;
  int n = ss_repo_params(st), k, owned;
  ss_error_clear(&err);
  luaL_checktype(L, 1, LUA_TTABLE);
  /* absent arguments become nils, so no value pushed below stands in for one */
  if (lua_gettop(L) < 1 + m->nargs) lua_settop(L, 1 + m->nargs);
  if (check_fields(L, st, m, &err)) return ss_push_fail(L, &err);
  /* each value, JSON text, the scratch buffer, and what the answer needs */
  if (!lua_checkstack(L, 2 * n + 24)) return luaL_error(L, "no room on the Lua stack for %d parameters", n);
  for (k = 0; k < n; k++) {
    values[k] = ss_null();
    if (!m->arg[k]) continue;
    if (push_source(L, &st->params[k], m, k, &err) ||
        read_param(L, lua_gettop(L), &st->params[k], &scratch, &values[k], &err))
      return ss_push_fail(L, &err);
  }
  if (ss_repo_check(&r.call, st, values, &err)) return ss_push_fail(L, &err);
  r.call.stream = 1; /* rows are decoded as they arrive */
  memset(&r.res, 0, sizeof r.res);
  lua_getfield(L, 1, "pg");
  if (!(r.c = ss_conn_for(L, lua_gettop(L), &owned, &err))) return ss_push_fail(L, &err);
  return ss_conn_call(L, r.c, owned, statement_body, &r, 0, statement_raised);
}

static int statement_method(lua_State *L) {
  return run_statement(L, lua_touserdata(L, lua_upvalueindex(1)), lua_touserdata(L, lua_upvalueindex(2)));
}

/* ---- methods that are more than one statement ---- */

static int login_body(lua_State *L) {
  ss_error err;
  ss_conn_handle *c = lua_touserdata(L, lua_gettop(L));
  ss_error_clear(&err);
  if (ss_repo_login_lookup(lua_touserdata(L, lua_upvalueindex(1)), c->lease->conn, &err)) return ss_push_fail(L, &err);
  return 0;
}

/* db.users:verify_password(username, password): true or false. The hash
 * is compared after the connection went back to the pool. */
static int users_verify_password(lua_State *L) {
  ss_repo_login login;
  ss_value username, password;
  ss_error err;
  ss_conn_handle *c;
  int owned, ok;
  ss_error_clear(&err);
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 3);
  ss_to_value(L, 2, 0, NULL, &username, &err);
  ss_to_value(L, 3, 0, NULL, &password, &err);
  if (ss_repo_login_check(&login, &username, &password, &err)) return ss_push_fail(L, &err);
  lua_getfield(L, 1, "pg");
  if (!(c = ss_conn_for(L, 4, &owned, &err))) return ss_push_fail(L, &err);
  if (ss_conn_call(L, c, owned, login_body, &login, 0, NULL) == 2) return 2;
  if ((ok = ss_repo_login_verify(&login, &password, &err)) < 0) return ss_push_fail(L, &err);
  lua_pushboolean(L, ok);
  return 1;
}

/* db.collections:update(id, fields): sets the named columns (those of
 * ss_collection_updatable; the status moves through update_status). */
static int collections_update(lua_State *L) {
  const char *names[SS_MAX_PARAMS + 1];
  ss_repo_update u;
  arg_map m;
  ss_error err;
  char why[128];
  int k, n = 0;
  ss_error_clear(&err);
  luaL_checktype(L, 3, LUA_TTABLE);
  for (k = 0; ss_collection_updatable[k].name && k < SS_MAX_PARAMS; k++) names[k] = ss_collection_updatable[k].name;
  names[k] = NULL;
  if (ss_check_keys(L, 3, names, "the fields collections:update can set", &err)) return ss_push_fail(L, &err);
  for (k = 0; ss_collection_updatable[k].name && n < SS_MAX_PARAMS; k++) {
    if (lua_getfield(L, 3, ss_collection_updatable[k].name) != LUA_TNIL) names[n++] = ss_collection_updatable[k].name;
    lua_pop(L, 1);
  }
  if (ss_repo_collection_update(&u, names, n, &err)) return ss_push_fail(L, &err);
  if (map_args(&u.st, "id, {*}", &m, why, sizeof why)) return luaL_error(L, "%s", why);
  lua_settop(L, 3);
  return run_statement(L, &u.st, &m);
}

/* The items of update_chunk_embeddings, read before the engine runs: three
 * values an item (appended to a scratch buffer) and their strings kept in
 * a table (an item's __index may make strings nothing else holds). */
static int embeddings_body(lua_State *L) {
  static const char *const names[] = {"chunk_id", "collection_id", "vector_id", NULL};
  ss_conn_handle *c = lua_touserdata(L, 3);
  ss_buf *items = ss_push_scratch(L); /* at 4 */
  lua_Integer i, n = ss_array_length(L, 2);
  long long updated;
  ss_error err;
  int f, anchors, read = 0;
  ss_error_clear(&err);
  lua_newtable(L);
  anchors = lua_gettop(L);
  for (i = 1; i <= n; i++) {
    char what[48];
    snprintf(what, sizeof what, "item %lld", (long long)i);
    lua_geti(L, 2, i);
    if (!lua_istable(L, -1)) {
      ss_error_set(&err, SS_ERR_INPUT, "item %lld must be a table", (long long)i);
      break;
    }
    if (ss_check_keys(L, -1, names, what, &err)) break;
    for (f = 0; f < 3; f++) {
      ss_value v;
      lua_getfield(L, -1, names[f]);
      ss_to_value(L, -1, 0, NULL, &v, &err);
      if (ss_buf_append(items, &v, sizeof v)) return luaL_error(L, "out of memory reading the items");
      if (v.type == SS_VAL_TEXT) lua_rawseti(L, anchors, ++read);
      else lua_pop(L, 1);
    }
    lua_settop(L, anchors);
  }
  /* a bad item the engine finds before the one Lua could not read wins */
  if (i <= n) {
    ss_error first;
    if (ss_repo_embeddings_check((ss_value *)(void *)items->data, (long)(i - 1), &first))
      return ss_push_fail(L, &first);
    return ss_push_fail(L, &err);
  }
  if (ss_repo_update_embeddings(c->lease->conn, (ss_value *)(void *)items->data, (long)n, &updated, &err))
    return ss_push_fail(L, &err);
  lua_pushinteger(L, (lua_Integer)updated);
  return 1;
}

/* db.chunks:update_chunk_embeddings{{chunk_id =, collection_id =, vector_id =}, ...} */
static int chunks_update_embeddings(lua_State *L) {
  ss_error err;
  ss_conn_handle *c;
  int owned;
  ss_error_clear(&err);
  luaL_checktype(L, 1, LUA_TTABLE);
  luaL_checktype(L, 2, LUA_TTABLE);
  lua_settop(L, 2);
  lua_getfield(L, 1, "pg");
  if (!(c = ss_conn_for(L, 3, &owned, &err))) return ss_push_fail(L, &err);
  lua_remove(L, 3); /* the connection at 3 */
  /* busy: an item's metamethod may not use the connection meanwhile */
  return ss_conn_call(L, c, owned, embeddings_body, NULL, 1, NULL);
}

/* ---- shared with chunks_bulk.c and config.c ---- */

int ss_check_keys(lua_State *L, int idx, const char *const *names, const char *what, ss_error *err) {
  idx = lua_absindex(L, idx);
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    int known = 0, k;
    lua_pop(L, 1);
    if (lua_type(L, -1) == LUA_TSTRING)
      for (k = 0; names[k] && !known; k++) known = strcmp(names[k], lua_tostring(L, -1)) == 0;
    if (!known) {
      ss_error_set(err, SS_ERR_INPUT, "unknown field '%s' in %s", luaL_tolstring(L, -1, NULL), what);
      ss_strlcpy(err->column, lua_tostring(L, -1), sizeof err->column);
      lua_pop(L, 2);
      return -1;
    }
  }
  return 0;
}

/* The signature of repo.method in lua_args, or NULL. */
static const char *signature(const ss_statement *st) {
  int k;
  for (k = 0; lua_args[k].repo; k++)
    if (strcmp(lua_args[k].repo, st->repo) == 0 && strcmp(lua_args[k].method, st->method) == 0) return lua_args[k].args;
  return NULL;
}

/* core.is_uuid(v): whether v is an id as the repositories take them (a
 * lowercase UUID), for the Lua layer's own arguments. */
static int is_uuid(lua_State *L) {
  size_t len;
  const char *s = lua_type(L, 1) == LUA_TSTRING ? lua_tolstring(L, 1, &len) : NULL;
  lua_pushboolean(L, s && ss_is_uuid(s, len));
  return 1;
}

void ss_open_repositories(lua_State *L) {
  int k;
  lua_getfield(L, -1, "repositories");
  for (k = 0; ss_statements[k].repo; k++) {
    const ss_statement *st = &ss_statements[k];
    const char *sig = signature(st);
    arg_map *m;
    char why[160];
    if (st->method[0] == '_') continue; /* used by a method of its own */
    if (!sig) luaL_error(L, "semstore: %s.%s has no Lua signature", st->repo, st->method);
    if (lua_getfield(L, -1, st->repo) != LUA_TTABLE) {
      lua_pop(L, 1);
      lua_newtable(L);
      lua_pushvalue(L, -1);
      lua_setfield(L, -3, st->repo);
    }
    lua_pushlightuserdata(L, (void *)st);
    m = ss_newuserdata(L, sizeof *m);
    if (map_args(st, sig, m, why, sizeof why)) luaL_error(L, "semstore: %s", why);
    lua_pushcclosure(L, statement_method, 2);
    lua_setfield(L, -2, st->method);
    lua_pop(L, 1);
  }
  lua_getfield(L, -1, "users");
  lua_pushcfunction(L, users_verify_password);
  lua_setfield(L, -2, "verify_password");
  lua_getfield(L, -2, "collections");
  lua_pushcfunction(L, collections_update);
  lua_setfield(L, -2, "update");
  lua_getfield(L, -3, "chunks");
  lua_pushcfunction(L, chunks_update_embeddings);
  lua_setfield(L, -2, "update_chunk_embeddings");
  lua_pop(L, 4);
  lua_pushcfunction(L, is_uuid);
  lua_setfield(L, -2, "is_uuid");
}
