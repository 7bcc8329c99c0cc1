/* The repositories' methods: core.repositories.<name>.<method>, one C
 * closure per row of ss_statements, all run by run_statement; plus the few
 * methods that are more than one statement. A repository is a table whose
 * field `pg` is a pool handle (each call borrows a connection for its
 * length) or a borrowed connection (calls join what runs on it, such as a
 * transaction). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "binding.h"
#include "hashtext.h"
#include "password.h"
#include "repo_rules.h"
#include "repo_statements.h"

/* ---- reading and checking parameters ---- */

/* Pushes the raw Lua value a parameter comes from (nil when absent). */
static int push_source(lua_State *L, const ss_param_spec *p, ss_error *err) {
  int idx = 1 + p->arg;
  if (!p->in_table) {
    lua_pushvalue(L, idx);
    return 0;
  }
  if (lua_istable(L, idx)) {
    lua_getfield(L, idx, p->name);
    return 0;
  }
  lua_pushnil(L);
  if (ss_is_null(L, idx)) return 0;
  return ss_error_set(err, SS_ERR_INPUT, "argument %d must be a table of fields", p->arg);
}

/* Checks the value on top against p and leaves what is bound in its place. */
static int check_value(lua_State *L, const ss_param_spec *p, ss_error *err) {
  const char *s;
  size_t len;
  lua_Integer i;
  int isint;
  if (ss_is_null(L, -1)) {
    if (p->required) return ss_error_set(err, SS_ERR_INPUT, "%s is required", p->name);
    return 0;
  }
  switch (p->kind) {
  case SS_V_TEXT:
  case SS_V_UUID:
  case SS_V_ENUM:
  case SS_V_PASSWORD:
    if (lua_type(L, -1) != LUA_TSTRING)
      return ss_error_set(err, SS_ERR_INPUT, "%s must be a string, not a %s", p->name, luaL_typename(L, -1));
    s = lua_tolstring(L, -1, &len);
    if (p->kind == SS_V_UUID && !ss_is_uuid(s, len))
      return ss_error_set(err, SS_ERR_INPUT, "%s must be a UUID in canonical lowercase form", p->name);
    if (!ss_is_text(s, len))
      return ss_error_set(err, SS_ERR_INPUT, "%s must be UTF-8 text without zero bytes", p->name);
    if (p->kind == SS_V_ENUM && !ss_is_choice(p->choices, s)) {
      char list[256] = "";
      int k;
      for (k = 0; p->choices[k]; k++)
        snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", k ? ", " : "", p->choices[k]);
      return ss_error_set(err, SS_ERR_INPUT, "%s must be one of %s", p->name, list);
    }
    if (p->kind == SS_V_PASSWORD) {
      char hash[SS_PASSWORD_HASH_SIZE];
      if (len == 0) return ss_error_set(err, SS_ERR_INPUT, "%s must not be empty", p->name);
      if (ss_password_hash(s, hash, err)) return -1;
      lua_pop(L, 1);
      lua_pushstring(L, hash);
    }
    return 0;
  case SS_V_INT:
  case SS_V_COUNT:
  case SS_V_COUNT4:
  case SS_V_SIZE4:
  case SS_V_LIMIT: {
    lua_Integer lo = p->kind == SS_V_INT ? LUA_MININTEGER : p->kind == SS_V_LIMIT || p->kind == SS_V_SIZE4 ? 1 : 0;
    lua_Integer hi = p->kind == SS_V_COUNT4 || p->kind == SS_V_SIZE4 ? INT32_MAX
                     : p->kind == SS_V_LIMIT                         ? SS_MAX_LIMIT
                                                                     : LUA_MAXINTEGER;
    i = lua_tointegerx(L, -1, &isint);
    if (lua_type(L, -1) != LUA_TNUMBER || !isint)
      return ss_error_set(err, SS_ERR_INPUT, "%s must be an integer", p->name);
    if (i < lo || i > hi)
      return ss_error_set(err, SS_ERR_INPUT, "%s must be an integer from %lld to %lld", p->name, (long long)lo,
                          (long long)hi);
    lua_pop(L, 1);
    lua_pushinteger(L, i);
    return 0;
  }
  case SS_V_BOOL:
    if (!lua_isboolean(L, -1)) return ss_error_set(err, SS_ERR_INPUT, "%s must be a boolean", p->name);
    return 0;
  case SS_V_JSON:
    if (!lua_istable(L, -1))
      return ss_error_set(err, SS_ERR_INPUT, "%s must be a table (it is stored as JSON)", p->name);
    return 0;
  }
  return 0;
}

/* Refuses fields of a table argument that no parameter reads: a typo
 * would otherwise be dropped without a word. */
static int check_fields(lua_State *L, const ss_param_spec *params, int n, ss_error *err) {
  int k, j;
  for (k = 0; k < n; k++) {
    const char *names[SS_MAX_PARAMS + 1];
    char what[32];
    int idx = 1 + params[k].arg, seen_before = 0, count = 0;
    if (!params[k].in_table || !lua_istable(L, idx)) continue;
    for (j = 0; j < k; j++) seen_before |= params[j].in_table && params[j].arg == params[k].arg;
    if (seen_before) continue;
    for (j = 0; j < n; j++)
      if (params[j].in_table && params[j].arg == params[k].arg) names[count++] = params[j].name;
    names[count] = NULL;
    snprintf(what, sizeof what, "argument %d", params[k].arg);
    if (ss_check_keys(L, idx, names, what, err)) return -1;
  }
  return 0;
}

/* ---- running statements ---- */

static int nparams_of(const ss_statement *st) {
  int n = 0;
  while (n < SS_MAX_PARAMS && st->params[n].name) n++;
  return n;
}

/* Runs sql with the n values from stack index first. Leaves the rows on
 * top and returns 0, or leaves the error table and returns -1. */
static int run(lua_State *L, ss_conn *c, const char *sql, int first, int n) {
  int top = lua_gettop(L), k, pushed;
  lua_pushstring(L, sql);
  for (k = 0; k < n; k++) lua_pushvalue(L, first + k);
  pushed = ss_conn_run(L, c, top + 1, n, 0);
  lua_replace(L, top + 1); /* the rows, or the error */
  lua_settop(L, top + 1);
  return pushed == 1 ? 0 : -1;
}

int ss_chunk_partitions(lua_State *L, int self, ss_pg *pg, ss_error *err) {
  PGresult *res;
  int n;
  lua_getfield(L, self, "partitions");
  n = (int)lua_tointeger(L, -1);
  lua_pop(L, 1);
  if (n > 0) return n;
  if (!(res = ss_pg_query(pg, "SELECT chunk_partition_count()", 0, NULL, NULL, NULL, NULL, err))) return -1;
  n = atoi(PQgetvalue(res, 0, 0));
  PQclear(res);
  if (n < 1) return ss_error_set(err, SS_ERR_POSTGRES, "chunk_partition_count() returned %d", n);
  /* fixed when the schema was migrated: asked once per repository */
  lua_pushinteger(L, n);
  lua_setfield(L, self, "partitions");
  return n;
}

static void repo_raised(void *ud) {
  ss_repo_tx *tx = ud;
  ss_error ignored;
  if (tx->abandon) tx->abandon(tx);
  ss_pg_tx_end(tx->pg, &tx->tx, 0, &ignored);
}

int ss_repo_protected(lua_State *L, ss_conn *c, int owned, lua_CFunction body, ss_repo_tx *tx) {
  return ss_conn_call(L, c, owned, body, tx, 1, repo_raised);
}

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

/* The error table on top becomes the call's answer. */
static int fail_with_top(lua_State *L) {
  lua_pushnil(L);
  lua_insert(L, -2);
  return 2;
}

static const char *key_text(lua_State *L, int idx) { return luaL_tolstring(L, idx, NULL); }

/* Runs one statement of the table with the arguments at 2.. (self at 1). */
static int statement_body(lua_State *L);

static int run_statement(lua_State *L, const ss_statement *st) {
  ss_error err;
  ss_conn *c;
  int n = nparams_of(st), k, last_arg = 0, owned;
  ss_error_clear(&err);
  luaL_checktype(L, 1, LUA_TTABLE);
  /* absent arguments become nils, so no value pushed below stands in for one */
  for (k = 0; k < n; k++)
    if (st->params[k].arg > last_arg) last_arg = st->params[k].arg;
  if (lua_gettop(L) < 1 + last_arg) lua_settop(L, 1 + last_arg);
  if (check_fields(L, st->params, n, &err)) return ss_push_fail(L, &err);
  /* the values, their copies for a statement, and what the result needs */
  if (!lua_checkstack(L, 2 * n + 24)) return luaL_error(L, "no room on the Lua stack for %d parameters", n);
  /* read and check every value before a connection is borrowed */
  for (k = 0; k < n; k++) {
    const ss_param_spec *p = &st->params[k];
    if (p->kind == SS_V_NEW_UUID) {
      char id[37];
      if (ss_uuid_v4(id)) {
        ss_error_set(&err, SS_ERR_INPUT, "the system gave no randomness for a UUID");
        return ss_push_fail(L, &err);
      }
      lua_pushstring(L, id);
    } else if (p->kind == SS_V_PARTITION || p->kind == SS_V_CURRENT) {
      lua_pushnil(L); /* filled in on the connection */
    } else if (push_source(L, p, &err) || check_value(L, p, &err)) {
      return ss_push_fail(L, &err);
    }
  }
  lua_getfield(L, 1, "pg");
  if (!(c = ss_conn_for(L, lua_gettop(L), &owned, &err))) return ss_push_fail(L, &err);
  return ss_conn_call(L, c, owned, statement_body, (void *)st, 0, NULL);
}

/* The part of run_statement that runs on the borrowed connection,
 * protected by ss_conn_call: the values at base .. base + n - 1, the
 * repository's pg field, then the connection on top. */
static int statement_body(lua_State *L) {
  const ss_statement *st = lua_touserdata(L, lua_upvalueindex(1));
  int n = nparams_of(st), conn_idx = lua_gettop(L), base = conn_idx - n - 1, k, attempt, current = 0;
  ss_conn *c = lua_touserdata(L, conn_idx);
  ss_error err;
  ss_error_clear(&err);
  for (k = 0; k < n; k++)
    if (st->params[k].kind == SS_V_CURRENT) current = base + k;
  for (k = 0; k < n; k++) {
    const ss_param_spec *p = &st->params[k];
    size_t len;
    const char *id;
    int parts;
    if (p->kind != SS_V_PARTITION) continue;
    if ((parts = ss_chunk_partitions(L, 1, c->item->conn, &err)) < 0) return ss_push_fail(L, &err);
    id = lua_tolstring(L, base + p->of - 1, &len);
    lua_pushinteger(L, ss_partition_key(id, len, parts));
    lua_replace(L, base + k);
  }
  for (attempt = 0;; attempt++) {
    if (st->check != SS_CHECK_NONE) {
      if (run(L, c, st->pre_sql, base, 1)) return fail_with_top(L);
      if (lua_rawgeti(L, -1, 1) != LUA_TTABLE) {
        ss_error_set(&err, SS_ERR_NOT_FOUND, "%s %s not found", st->entity, key_text(L, base));
        return ss_push_fail(L, &err);
      }
      lua_getfield(L, -1, "v");
      if (st->check == SS_CHECK_OWNER && !lua_compare(L, -1, base + st->check_param - 1, LUA_OPEQ)) {
        ss_error_set(&err, SS_ERR_ACCESS_DENIED, "user %s does not own %s %s",
                     key_text(L, base + st->check_param - 1), st->entity, key_text(L, base));
        return ss_push_fail(L, &err);
      }
      if (st->check == SS_CHECK_TRANSITION) {
        const char *from = lua_tostring(L, -1);
        const char *to = st->to_state ? st->to_state : lua_tostring(L, base + st->check_param - 1);
        if (!st->allowed(from, to)) {
          ss_error_set(&err, SS_ERR_INVALID_TRANSITION, "%s %s cannot go from %s to %s", st->entity,
                       key_text(L, base), from, to);
          return ss_push_fail(L, &err);
        }
        lua_pushvalue(L, -1);
        lua_replace(L, current);
      }
      lua_settop(L, conn_idx);
    }
    if (run(L, c, st->sql, base, n)) return fail_with_top(L);
    /* No row, though there should be one: the row the check saw changed
     * before the statement ran, or the document that made create's INSERT
     * do nothing was committed after the statement's snapshot was taken.
     * A new statement (and check) sees what changed. */
    if ((st->check != SS_CHECK_NONE || st->returns == SS_RET_CREATED) && lua_rawlen(L, -1) == 0) {
      if (attempt < 3) {
        lua_settop(L, conn_idx);
        continue;
      }
      ss_error_set(&err, SS_ERR_POSTGRES, "the %s kept changing while this call ran; try again", st->entity);
      ss_strlcpy(err.code, "40001", sizeof err.code); /* serialization_failure: a retry may succeed */
      return ss_push_fail(L, &err);
    }
    break;
  }
  switch (st->returns) {
  case SS_RET_ROWS:
    return 1;
  case SS_RET_AFFECTED:
  case SS_RET_DONE:
    lua_getfield(L, -1, "affected");
    if (st->returns == SS_RET_AFFECTED) return 1;
    if (lua_tointeger(L, -1) > 0) {
      lua_pushboolean(L, 1);
      return 1;
    }
    ss_error_set(&err, SS_ERR_NOT_FOUND, "%s %s not found", st->entity, key_text(L, base));
    return ss_push_fail(L, &err);
  case SS_RET_PAGE:
    if (run(L, c, st->count_sql, base, st->count_params)) return fail_with_top(L);
    lua_rawgeti(L, -1, 1);
    lua_getfield(L, -1, "v");
    lua_replace(L, -3);
    lua_pop(L, 1);
    return 2;
  default:
    break;
  }
  /* one row: ROW, PERMITTED, CREATED */
  if (lua_rawgeti(L, -1, 1) != LUA_TTABLE) {
    ss_error_set(&err, SS_ERR_NOT_FOUND, "%s %s not found", st->entity, key_text(L, base));
    return ss_push_fail(L, &err);
  }
  if (st->returns == SS_RET_PERMITTED) {
    lua_getfield(L, -1, "permitted");
    if (!lua_toboolean(L, -1)) {
      ss_error_set(&err, SS_ERR_ACCESS_DENIED, "user %s may not use %s %s", key_text(L, base + 1), st->entity,
                   key_text(L, base));
      return ss_push_fail(L, &err);
    }
    lua_pop(L, 1);
    lua_pushnil(L);
    lua_setfield(L, -2, "permitted");
  }
  if (st->returns == SS_RET_CREATED) {
    lua_getfield(L, -1, "created");
    lua_pushnil(L);
    lua_setfield(L, -3, "created");
    return 2;
  }
  return 1;
}

static int statement_method(lua_State *L) {
  return run_statement(L, lua_touserdata(L, lua_upvalueindex(1)));
}

/* ---- methods that are more than one statement ---- */

/* db.users:verify_password(username, password): true or false. The hash
 * is compared after the connection went back to the pool. */
static int users_verify_password(lua_State *L) {
  const ss_statement *lookup = NULL;
  static const ss_param_spec password_spec = {"password", SS_V_TEXT, 2, 0, 1, 0, NULL};
  const char *password;
  char hash[SS_PASSWORD_HASH_SIZE] = "";
  ss_error err;
  int k;
  ss_error_clear(&err);
  lua_settop(L, 3);
  lua_pushvalue(L, 3);
  /* a zero byte would end the password early for crypt_r */
  if (check_value(L, &password_spec, &err)) return ss_push_fail(L, &err);
  password = lua_tostring(L, 3);
  lua_settop(L, 3);
  for (k = 0; !lookup; k++)
    if (strcmp(ss_statements[k].method, "_password_hash") == 0) lookup = &ss_statements[k];
  if (run_statement(L, lookup) == 2) return 2;
  if (lua_rawgeti(L, -1, 1) == LUA_TTABLE) {
    lua_getfield(L, -1, "v");
    ss_strlcpy(hash, lua_tostring(L, -1), sizeof hash);
  }
  lua_pushboolean(L, ss_password_verify(password, *hash ? hash : NULL));
  return 1;
}

/* db.collections:update(id, fields): sets the named columns (those of
 * ss_collection_updatable; the status moves through update_status). */
static int collections_update(lua_State *L) {
  const char *names[SS_MAX_PARAMS + 1];
  ss_statement st;
  ss_error err;
  char sql[1024] = "UPDATE collections SET ";
  int k, n = 1;
  ss_error_clear(&err);
  luaL_checktype(L, 3, LUA_TTABLE);
  memset(&st, 0, sizeof st);
  st.repo = "collections";
  st.entity = "collection";
  st.returns = SS_RET_ROW;
  st.params[0] = (ss_param_spec){"id", SS_V_UUID, 1, 0, 1, 0, NULL};
  for (k = 0; ss_collection_updatable[k].name && k < SS_MAX_PARAMS; k++) names[k] = ss_collection_updatable[k].name;
  names[k] = NULL;
  if (ss_check_keys(L, 3, names, "the fields collections:update can set", &err)) return ss_push_fail(L, &err);
  /* in the table's order, so the same fields make the same statement */
  for (k = 0; ss_collection_updatable[k].name; k++) {
    const ss_param_spec *p = &ss_collection_updatable[k];
    int present = lua_getfield(L, 3, p->name) != LUA_TNIL;
    lua_pop(L, 1);
    if (!present) continue;
    /* the id and every updatable column must fit st.params */
    if (n >= SS_MAX_PARAMS) return luaL_error(L, "collections:update: more columns than SS_MAX_PARAMS");
    st.params[n] = *p;
    snprintf(sql + strlen(sql), sizeof sql - strlen(sql), "%s = $%d, ", p->name, n + 1);
    n++;
  }
  if (n == 1) {
    ss_error_set(&err, SS_ERR_INPUT, "collections:update needs at least one field");
    return ss_push_fail(L, &err);
  }
  snprintf(sql + strlen(sql), sizeof sql - strlen(sql), "updated_at = now() WHERE id = $1 RETURNING *");
  st.sql = sql;
  lua_settop(L, 3);
  return run_statement(L, &st);
}

/* db.chunks:update_chunk_embeddings{{chunk_id =, collection_id =, vector_id =}, ...}:
 * one UPDATE per partition over arrays of the rows that go there, in one
 * transaction. Returns the number of chunks updated. Run protected by
 * ss_repo_protected, on 1 self, 2 items, 3 the connection. */
static int update_embeddings_body(lua_State *L) {
  static const ss_param_spec fields[] = {{"chunk_id", SS_V_INT, 0, 1, 1, 0, NULL},
                                         {"collection_id", SS_V_UUID, 0, 1, 1, 0, NULL},
                                         {"vector_id", SS_V_TEXT, 0, 1, 1, 0, NULL}};
  static const char *const names[] = {"chunk_id", "collection_id", "vector_id", NULL};
  ss_repo_tx *tx = lua_touserdata(L, lua_upvalueindex(1));
  ss_conn *c = lua_touserdata(L, 3);
  ss_error err;
  lua_Integer i, n = ss_array_length(L, 2), total = 0;
  int groups = 4, seen = 5, parts, f, p;
  ss_error_clear(&err);
  if ((parts = ss_chunk_partitions(L, 1, tx->pg, &err)) < 0) return ss_push_fail(L, &err);
  lua_settop(L, 3);
  lua_newtable(L); /* 4: partition -> {ids, collection ids, vector ids} */
  lua_newtable(L); /* 5: chunks seen: one given twice would have no one vector id */
  for (i = 1; i <= n; i++) {
    size_t len;
    const char *id;
    char what[48];
    lua_geti(L, 2, i);
    snprintf(what, sizeof what, "item %lld", (long long)i);
    if (!lua_istable(L, -1)) {
      ss_error_set(&err, SS_ERR_INPUT, "item %lld must be a table", (long long)i);
      return ss_push_fail(L, &err);
    }
    if (ss_check_keys(L, -1, names, what, &err)) return ss_push_fail(L, &err);
    for (f = 0; f < 3; f++) {
      lua_getfield(L, -1 - f, fields[f].name);
      if (check_value(L, &fields[f], &err)) {
        char why[sizeof err.message];
        ss_strlcpy(why, err.message, sizeof why);
        ss_error_set(&err, SS_ERR_INPUT, "%s: %s", what, why);
        return ss_push_fail(L, &err);
      }
    }
    /* the item at seen + 1, its checked values at seen + 2 .. seen + 4 */
    lua_pushfstring(L, "%I %s", (LUAI_UACINT)lua_tointeger(L, seen + 2), lua_tostring(L, seen + 3));
    lua_pushvalue(L, -1);
    if (lua_rawget(L, seen) != LUA_TNIL) {
      ss_error_set(&err, SS_ERR_INPUT, "%s: chunk %lld of collection %s appears twice", what,
                   (long long)lua_tointeger(L, seen + 2), lua_tostring(L, seen + 3));
      return ss_push_fail(L, &err);
    }
    lua_pop(L, 1);
    lua_pushboolean(L, 1);
    lua_rawset(L, seen);
    id = lua_tolstring(L, seen + 3, &len);
    p = ss_partition_key(id, len, parts);
    if (lua_rawgeti(L, groups, p) != LUA_TTABLE) {
      lua_pop(L, 1);
      lua_createtable(L, 3, 0);
      for (f = 1; f <= 3; f++) {
        lua_newtable(L);
        lua_rawseti(L, -2, f);
      }
      lua_pushvalue(L, -1);
      lua_rawseti(L, groups, p);
    }
    for (f = 1; f <= 3; f++) {
      lua_rawgeti(L, -1, f);
      lua_pushvalue(L, seen + 1 + f);
      lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
      lua_pop(L, 1);
    }
    lua_settop(L, seen);
  }
  if (ss_pg_tx_begin(tx->pg, &tx->tx, NULL, &err)) return ss_push_fail(L, &err);
  for (p = 0; p < parts; p++) {
    char sql[320];
    if (lua_rawgeti(L, groups, p) != LUA_TTABLE) {
      lua_pop(L, 1);
      continue;
    }
    for (f = 1; f <= 3; f++) { /* semstore.array{...} of each column */
      lua_rawgeti(L, seen + 1, f);
      lua_createtable(L, 1, 0);
      lua_insert(L, -2);
      lua_rawseti(L, -2, 1);
      luaL_setmetatable(L, SS_ARRAY_MT);
    }
    snprintf(sql, sizeof sql,
             "UPDATE chunks_p%d AS c SET embedding_vector_id = u.vector_id, updated_at = now() "
             "FROM unnest($1::int8[], $2::text[], $3::text[]) AS u(id, collection_id, vector_id) "
             "WHERE c.id = u.id AND c.collection_id = u.collection_id", p);
    if (run(L, c, sql, seen + 2, 3)) {
      ss_pg_tx_end(tx->pg, &tx->tx, 0, &err);
      lua_pushnil(L);
      lua_insert(L, -2);
      return 2;
    }
    lua_getfield(L, -1, "affected");
    total += lua_tointeger(L, -1);
    lua_settop(L, seen);
  }
  if (ss_pg_tx_end(tx->pg, &tx->tx, 1, &err)) return ss_push_fail(L, &err);
  lua_pushinteger(L, total);
  return 1;
}

static int chunks_update_embeddings(lua_State *L) {
  ss_repo_tx tx;
  ss_error err;
  ss_conn *c;
  int owned;
  ss_error_clear(&err);
  luaL_checktype(L, 1, LUA_TTABLE);
  luaL_checktype(L, 2, LUA_TTABLE);
  lua_settop(L, 2);
  lua_getfield(L, 1, "pg");
  if (!(c = ss_conn_for(L, 3, &owned, &err))) return ss_push_fail(L, &err);
  memset(&tx, 0, sizeof tx);
  tx.pg = c->item->conn;
  lua_remove(L, 3); /* the connection at 3 */
  return ss_repo_protected(L, c, owned, update_embeddings_body, &tx);
}

void ss_open_repositories(lua_State *L) {
  int k;
  lua_getfield(L, -1, "repositories");
  for (k = 0; ss_statements[k].repo; k++) {
    const ss_statement *st = &ss_statements[k];
    if (st->method[0] == '_') continue; /* used by a method of its own */
    if (lua_getfield(L, -1, st->repo) != LUA_TTABLE) {
      lua_pop(L, 1);
      lua_newtable(L);
      lua_pushvalue(L, -1);
      lua_setfield(L, -3, st->repo);
    }
    lua_pushlightuserdata(L, (void *)st);
    lua_pushcclosure(L, statement_method, 1);
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
}
