/* What the binding's files share: the userdata types, the error table, and
 * the Lua <-> PostgreSQL value conversion. */
#ifndef SEMSTORE_BINDING_H
#define SEMSTORE_BINDING_H

#include <libpq-fe.h>

#include "buf.h"
#include "compat.h"
#include "error.h"
#include "pg.h"
#include "pool.h"

#define SS_ERROR_MT "semstore.error"
#define SS_POOL_MT "semstore.pool"
#define SS_CONN_MT "semstore.conn"
#define SS_BYTEA_MT "semstore.bytea"
#define SS_ARRAY_MT "semstore.array"
#define SS_SCRATCH_MT "semstore.scratch"

/* semstore.c: creates the metatable `mt` with __gc, __close (when given)
 * and __tostring, and an __index table of methods that is also stored in
 * the module table (on top of the stack) as `field`, for the Lua layer to
 * extend. */
void ss_register_type(lua_State *L, const char *mt, const luaL_Reg *methods, lua_CFunction gc,
                      lua_CFunction close, lua_CFunction tostring, const char *field);

/* errors.c: pushes nil and the error table; returns 2 (for `return`). */
int ss_push_fail(lua_State *L, const ss_error *err);
void ss_push_error(lua_State *L, const ss_error *err);
void ss_open_errors(lua_State *L);

/* convert.c */
typedef struct {
  int n;
  const char **values;
  int *lengths, *formats;
  Oid *types;
} ss_params;
/* Encodes the n Lua values from stack index `first` as statement
 * parameters. Pushes the storage that anchors them (one value). 0, or -1
 * with err set (an input error naming the parameter). */
int ss_encode_params(lua_State *L, int first, int n, ss_params *out, ss_error *err);
/* Whether the value at idx is SQL NULL: nil (or absent) or semstore.null. */
int ss_is_null(lua_State *L, int idx);
/* Whether the value at idx has the metatable registered as `name`. */
int ss_has_metatable(lua_State *L, int idx, const char *name);
/* The length of the array table at idx: its field n when that is an
 * integer (so it may hold nils, as table.pack makes them), else #t. Raw
 * access: no metamethod runs. */
lua_Integer ss_array_length(lua_State *L, int idx);
/* Pushes a result as an array of rows (column name -> value) whose
 * metatable gives `columns` and `affected`. *slot holds the first result;
 * with pg, further rows are streamed from it (ss_pg_stream_next). *slot
 * always holds the result being decoded, so its owner can free it if an
 * error is raised meanwhile; the caller PQclear()s what *slot holds after.
 * 0, or -1 with err set (nothing pushed) when the stream failed midway. */
int ss_push_result(lua_State *L, PGresult **slot, ss_pg *pg, ss_error *err);
void ss_open_convert(lua_State *L);

/* A borrowed connection as seen from Lua. `res` is held here while it is
 * decoded, so an error raised meanwhile cannot leak it. */
typedef struct {
  ss_pool *pool;
  ss_pool_item *item;
  PGresult *res;
  int borrowed_for_call; /* taken by pool:query itself: no leak warning */
  /* a repository call (a bulk insert, say) is using it and runs Lua code
   * meanwhile: that code may not query or release it */
  int busy;
} ss_conn;

/* json_decode.c: pushes the Lua value of JSON text; -1 (nothing pushed)
 * if the text is not valid JSON. */
int ss_push_json(lua_State *L, const char *s, size_t len);

/* json_encode.c: appends the JSON text of the value at idx to b; 0, or -1
 * with err set (an input error for what has no JSON form). */
int ss_encode_json(lua_State *L, int idx, ss_buf *b, ss_error *err);

/* conn_handle.c */
ss_conn *ss_conn_new(lua_State *L, ss_pool *pool, int borrowed_for_call);
/* Runs a statement on c and pushes the result, or nil and err; returns the
 * number of values pushed. The SQL is at sql_idx and its nparams
 * parameters follow it; `simple` runs several statements without
 * parameters. A connection borrowed_for_call that holds none yet is
 * acquired after the parameters are encoded and released before returning;
 * one that holds a connection (ss_conn_for) keeps it. */
int ss_conn_run(lua_State *L, ss_conn *c, int sql_idx, int nparams, int simple);
void ss_conn_release(ss_conn *c);
/* The connection a repository call runs on, for the pool or conn userdata
 * at idx: pushes an ss_conn holding a connection (for a pool, one borrowed
 * for this call), or returns NULL with err set (the acquire failed; one
 * value is pushed all the same). Give it back with ss_conn_finish. */
ss_conn *ss_conn_for(lua_State *L, int idx, ss_error *err);
void ss_conn_finish(ss_conn *c);
void ss_open_conn(lua_State *L);

/* pool_handle.c */
void ss_open_pool(lua_State *L);
/* The pool of the handle at idx; raises when it is not one, or closed. */
ss_pool *ss_check_pool(lua_State *L, int idx);

/* config.c: core.check_keys, core.conninfo_keywords */
void ss_open_config(lua_State *L);

/* quote.c: core.quote_ident, core.quote_literal */
void ss_open_quote(lua_State *L);

/* chunks_bulk.c: core.repositories.chunks.create_chunks_bulk */
void ss_open_chunks_bulk(lua_State *L);

/* repositories.c: the methods of core.repositories, from ss_statements */
void ss_open_repositories(lua_State *L);
/* The number of chunk partitions, asked of the server once per repository
 * (the table at index self keeps it as `partitions`); -1 with err set. */
int ss_chunk_partitions(lua_State *L, int self, ss_pg *pg, ss_error *err);
/* A repository method's own transaction on one connection: BEGIN, or a
 * savepoint when the connection is already in one. */
typedef struct ss_repo_tx {
  ss_pg *pg;
  int open, nested;
  /* finishes what must end before a rollback (a COPY under way); may be NULL */
  void (*abandon)(struct ss_repo_tx *tx);
} ss_repo_tx;
int ss_repo_begin(ss_repo_tx *tx, ss_error *err);
/* Commits, or rolls back and returns -1 (err untouched by the rollback);
 * nothing when no transaction is open. */
int ss_repo_end(ss_repo_tx *tx, int commit, ss_error *err);
/* Runs body (a C function with tx as its upvalue) on the values on the
 * stack, protected, with the connection c marked busy so the Lua code body
 * runs cannot query or release it. If anything raises, tx is abandoned and
 * rolled back, c given back, and the error raised on; otherwise c is given
 * back and body's results returned. */
int ss_repo_protected(lua_State *L, ss_conn *c, lua_CFunction body, ss_repo_tx *tx);
/* An input error naming the first key of the table at idx that is not in
 * names (NULL-terminated), the key also in err->column; 0 when there is
 * none. */
int ss_check_keys(lua_State *L, int idx, const char *const *names, const char *what, ss_error *err);

#endif
