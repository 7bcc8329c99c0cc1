/* db.chunks:create_chunks_bulk(rows, opts): the Lua side of the bulk
 * engine (csrc/core/chunks_bulk.c). Rows come from a Lua array or an
 * iterator and are read once: each chunk table's fields are read into C
 * values and handed to the engine, which checks, routes, buffers and
 * copies them. Only what is about Lua values is decided here: a row that
 * is not a table, a field name that is no chunk field, metadata with no
 * JSON form. */
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "binding.h"
#include "chunks_bulk.h"

#define BULK_MT "semstore.chunks_bulk"

/* A bulk's C state, owned by a userdata so that a raise cannot leak it:
 * the engine's, and the connections borrowed for opts.parallel besides
 * the call's own. */
typedef struct {
  ss_bulk *b;
  ss_pool *pool;
  ss_pool_lease *more[SS_BULK_MAX_CONNECTIONS];
  int nmore;
  lua_State *L;  /* the thread the bulk runs on, for on_step */
  int on_step;   /* stack index of opts.on_step, or 0 */
} bulk_ud;

/* Gives back the connections borrowed for parallel copying. */
static void give_back(bulk_ud *u) {
  while (u->nmore > 0) ss_pool_release(u->pool, u->more[--u->nmore]);
}

static int bulk_gc(lua_State *L) {
  bulk_ud *u = luaL_checkudata(L, 1, BULK_MT);
  if (u->b) ss_bulk_abandon(u->b);
  give_back(u);
  ss_bulk_free(u->b);
  u->b = NULL;
  return 0;
}

/* A raise (the iterator's, a metamethod's, on_step's, out of memory) while
 * the bulk runs: the engine rolls back (or, past its decision, commits)
 * before the connections go back. */
static void bulk_raised(void *ud) {
  bulk_ud *u = ud;
  if (u->b) ss_bulk_abandon(u->b);
  give_back(u);
}

/* opts.on_step(step, k): called by the engine between the steps of its
 * two-phase commit. A raise there unwinds through the engine, which left
 * its state whole before the call; bulk_raised then settles the bulk. */
static void call_on_step(void *ud, const char *step, int k) {
  bulk_ud *u = ud;
  lua_State *L = u->L;
  lua_pushvalue(L, u->on_step);
  lua_pushstring(L, step);
  lua_pushinteger(L, k + 1);
  lua_call(L, 2, 0);
}

/* Borrows up to want - 1 connections besides the call's own from its
 * pool, as many as it has free without waiting. Pushes nothing. */
static void borrow_more(bulk_ud *u, ss_pool *pool, int want) {
  ss_pool_stats st;
  long spare;
  ss_pool_get_stats(pool, &st);
  spare = st.max - st.in_use - st.waiting;
  u->pool = pool;
  while (u->nmore < want - 1 && u->nmore < spare) {
    ss_error ignored;
    ss_pool_lease *l = ss_pool_acquire(pool, &ignored);
    if (!l) break;
    u->more[u->nmore++] = l;
  }
}

/* Reads the chunk table at tbl into fields and checks what only Lua can
 * see, leaving the values on the stack above tbl (they anchor the
 * strings fields point to). 1 when the table has fields no chunk has,
 * and so a typo to name once its own fields were checked; 0; or -1 when
 * the bulk failed (err set). */
static int read_row(lua_State *L, ss_bulk *b, int tbl, ss_buf *json, ss_value *fields, ss_error *err) {
  int f, known = 0, total = 0;
  if (lua_type(L, tbl) != LUA_TTABLE) {
    char why[64];
    snprintf(why, sizeof why, "a chunk must be a table, not a %s", luaL_typename(L, tbl));
    return ss_bulk_reject(b, NULL, why, err);
  }
  for (f = 0; f < SS_CHUNK_NFIELDS; f++) {
    if (lua_getfield(L, tbl, ss_chunk_field_names[f]) != LUA_TNIL) known++;
    if (ss_to_value(L, -1, f == SS_CHUNK_metadata, json, &fields[f], err)) {
      char why[sizeof err->message];
      ss_strlcpy(why, err->message, sizeof why);
      return ss_bulk_reject(b, ss_chunk_field_names[f], why, err);
    }
  }
  /* a field this table has that no column takes is a typo, not data to
   * drop. Fewer raw keys than fields read means some came through
   * __index, which is no typo. */
  lua_pushnil(L);
  while (lua_next(L, tbl)) {
    total++;
    lua_pop(L, 1);
  }
  return total != known;
}

/* The bulk itself, run protected by ss_conn_call with the connection busy:
 * the arguments (1 self, 2 rows, 3 opts), the bulk's userdata (4), the
 * pool handle or connection (5), the connection used (6). */
static int bulk_body(lua_State *L) {
  bulk_ud *u = lua_touserdata(L, lua_upvalueindex(1));
  ss_conn_handle *c = lua_touserdata(L, 6);
  ss_bulk_options o = {.budget = 0, .return_ids = 0, .expected_rows = 0};
  ss_value fields[SS_CHUNK_NFIELDS];
  ss_error err;
  ss_buf *json;
  int iter = lua_isfunction(L, 2), ids_idx = 0, tbl;
  long row = 0, n;
  lua_Integer len = iter ? 0 : ss_array_length(L, 2);
  const char *field;
  ss_error_clear(&err);
  /* a row, its fields, and what a typo's check pushes on top */
  luaL_checkstack(L, SS_CHUNK_NFIELDS + 16, "no room on the Lua stack for a row");
  ss_pg *more[SS_BULK_MAX_CONNECTIONS];
  double parallel = 1;
  int k, used;
  const char *fewer;
  if (lua_istable(L, 3)) {
    lua_getfield(L, 3, "return_ids");
    o.return_ids = lua_toboolean(L, -1);
    lua_pop(L, 1);
    if (ss_opt_number(L, 3, "parallel", 1, 1, SS_BULK_MAX_CONNECTIONS, 1, &parallel, &err)) return ss_push_fail(L, &err);
    lua_getfield(L, 3, "on_step");
    if (!lua_isnil(L, -1)) {
      if (!lua_isfunction(L, -1)) {
        ss_error_set(&err, SS_ERR_INPUT, "create_chunks_bulk's option on_step must be a function, not a %s",
                     luaL_typename(L, -1));
        return ss_push_fail(L, &err);
      }
      lua_replace(L, 3); /* the options are read: on_step takes their place */
      u->L = L;
      u->on_step = 3;
      o.on_step = call_on_step;
      o.step_ud = u;
    } else {
      lua_pop(L, 1);
    }
  }
  o.expected_rows = len > 0 && len < (lua_Integer)LONG_MAX ? (long)len : 0;
  if (parallel > 1) borrow_more(u, c->pool, (int)parallel);
  for (k = 0; k < u->nmore; k++) more[k] = u->more[k]->conn;
  o.more = more;
  o.nmore = u->nmore;
  if (!(u->b = ss_bulk_new(c->lease->conn, &o, &err))) {
    give_back(u);
    return ss_push_fail(L, &err);
  }
  used = ss_bulk_connections(u->b, &fewer);
  if (!fewer && used < (int)parallel) fewer = "the pool had no more connections free";
  /* connections the bulk will not copy on go back now */
  while (u->nmore > used - 1) ss_pool_release(u->pool, u->more[--u->nmore]);
  json = ss_push_scratch(L); /* metadata of the row being read, at 7 */
  if (o.return_ids) {
    /* rows.n is the caller's word, not yet checked: presize modestly */
    lua_createtable(L, iter ? 0 : (int)(len < 10 * SS_BULK_ID_BLOCK ? len : 10 * SS_BULK_ID_BLOCK), 0);
    ids_idx = lua_gettop(L);
  }
  tbl = lua_gettop(L) + 1;
  for (;;) {
    long long id;
    int typo;
    if (iter) {
      lua_pushvalue(L, 2);
      lua_call(L, 0, 1);
      if (lua_isnil(L, -1)) break;
    } else {
      if (row >= len) break;
      lua_geti(L, 2, row + 1);
    }
    row++;
    if ((typo = read_row(L, u->b, tbl, json, fields, &err)) < 0) goto fail;
    if (typo) {
      /* the row's own faults first, then the name that is no field */
      char what[32];
      if (ss_bulk_check(u->b, fields, &err)) goto fail;
      snprintf(what, sizeof what, "row %ld", row);
      if (ss_check_keys(L, tbl, ss_chunk_field_names, what, &err)) {
        char key[sizeof err.column];
        ss_strlcpy(key, err.column, sizeof key);
        ss_bulk_reject(u->b, key, "is not a field of a chunk", &err);
        goto fail;
      }
    }
    if (ss_bulk_row(u->b, fields, &id, &err)) goto fail;
    lua_settop(L, tbl - 1);
    if (o.return_ids) {
      ss_pushint64(L, id);
      lua_rawseti(L, ids_idx, row);
    }
  }
  if (ss_bulk_finish(u->b, &n, &err)) goto fail;
  give_back(u);
  lua_pushinteger(L, n);
  if (o.return_ids) lua_pushvalue(L, ids_idx);
  else lua_pushnil(L);
  /* the report: how many connections copied, and why fewer than asked */
  lua_createtable(L, 0, 3);
  lua_pushinteger(L, used);
  lua_setfield(L, -2, "connections");
  lua_pushinteger(L, (lua_Integer)parallel);
  lua_setfield(L, -2, "parallel");
  if (fewer) {
    lua_pushstring(L, fewer);
    lua_setfield(L, -2, "fallback");
  }
  return 3;
fail:
  give_back(u);
  ss_push_fail(L, &err);
  if ((row = ss_bulk_failed_row(u->b, &field)) > 0) {
    lua_pushinteger(L, row);
    lua_setfield(L, -2, "row");
    if (field) {
      lua_pushstring(L, field);
      lua_setfield(L, -2, "field");
    }
  }
  return 2;
}

static int chunks_create_bulk(lua_State *L) {
  static const char *const options[] = {"return_ids", "parallel", "on_step", NULL};
  ss_error err;
  ss_conn_handle *c;
  int owned;
  bulk_ud *u;
  ss_error_clear(&err);
  luaL_checktype(L, 1, LUA_TTABLE);
  if (!lua_isfunction(L, 2)) luaL_checktype(L, 2, LUA_TTABLE);
  if (!lua_isnoneornil(L, 3)) luaL_checktype(L, 3, LUA_TTABLE);
  lua_settop(L, 3);
  if (lua_istable(L, 3) && ss_check_keys(L, 3, options, "create_chunks_bulk's options", &err))
    return ss_push_fail(L, &err);
  u = ss_newuserdata(L, sizeof *u); /* at 4: frees the bulk whatever happens */
  memset(u, 0, sizeof *u);
  luaL_setmetatable(L, BULK_MT);
  lua_getfield(L, 1, "pg");
  if (!(c = ss_conn_for(L, 5, &owned, &err))) return ss_push_fail(L, &err);
  /* busy: the iterator may not use the connection a COPY may be under way on */
  return ss_conn_call(L, c, owned, bulk_body, u, 1, bulk_raised);
}

/* db.chunks:recover_bulk{ grace = seconds }: settles the prepared parts
 * of parallel bulks whose process died (ss_bulk_recover), run protected
 * on the call's connection: the arguments (1 self, 2 opts), the pool
 * handle or connection (3), the connection used (4). */
static int recover_body(lua_State *L) {
  double *grace = lua_touserdata(L, lua_upvalueindex(1));
  ss_conn_handle *c = lua_touserdata(L, 4);
  long committed, rolled_back, forgotten;
  ss_error err;
  ss_error_clear(&err);
  if (ss_bulk_recover(c->lease->conn, *grace, &committed, &rolled_back, &forgotten, &err)) return ss_push_fail(L, &err);
  lua_createtable(L, 0, 3);
  lua_pushinteger(L, committed);
  lua_setfield(L, -2, "committed");
  lua_pushinteger(L, rolled_back);
  lua_setfield(L, -2, "rolled_back");
  lua_pushinteger(L, forgotten);
  lua_setfield(L, -2, "forgotten");
  return 1;
}

static int chunks_recover_bulk(lua_State *L) {
  static const char *const options[] = {"grace", NULL};
  double grace = SS_BULK_RECOVER_GRACE; /* the body, which never yields, runs before this returns */
  ss_error err;
  ss_conn_handle *c;
  int owned;
  ss_error_clear(&err);
  luaL_checktype(L, 1, LUA_TTABLE);
  if (!lua_isnoneornil(L, 2)) luaL_checktype(L, 2, LUA_TTABLE);
  lua_settop(L, 2);
  if (lua_istable(L, 2) && (ss_check_keys(L, 2, options, "recover_bulk's options", &err) ||
                            ss_opt_number(L, 2, "grace", SS_BULK_RECOVER_GRACE, 0, 1e9, 0, &grace, &err)))
    return ss_push_fail(L, &err);
  lua_getfield(L, 1, "pg");
  if (!(c = ss_conn_for(L, 3, &owned, &err))) return ss_push_fail(L, &err);
  return ss_conn_call(L, c, owned, recover_body, &grace, 0, NULL);
}

void ss_open_chunks_bulk(lua_State *L) {
  luaL_newmetatable(L, BULK_MT);
  lua_pushcfunction(L, bulk_gc);
  lua_setfield(L, -2, "__gc");
  lua_pop(L, 1);
  lua_getfield(L, -1, "repositories");
  lua_getfield(L, -1, "chunks");
  lua_pushcfunction(L, chunks_create_bulk);
  lua_setfield(L, -2, "create_chunks_bulk");
  lua_pushcfunction(L, chunks_recover_bulk);
  lua_setfield(L, -2, "recover_bulk");
  lua_pop(L, 2);
}
