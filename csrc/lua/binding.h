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
#include "value.h"

#define SS_ERROR_MT "semstore.error"
#define SS_POOL_MT "semstore.pool"
#define SS_CONN_MT "semstore.conn"
#define SS_BYTEA_MT "semstore.bytea"
#define SS_ARRAY_MT "semstore.array"
#define SS_JSON_INTEGER_MT "semstore.json_integer"
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
/* Reads the Lua value at idx as a C value for the engines, pushing
 * nothing: nil and semstore.null are NULL, integers and floats stay apart,
 * strings point into the Lua string (which must stay on the stack while
 * *out is used), tables are encoded into `json` as JSON text when as_json
 * (and *out points into it), and anything else (a table where no JSON is
 * taken, a function) is SS_VAL_OTHER naming its type, for the engine's
 * error. 0, or -1 with err set when a table has no JSON form. */
int ss_to_value(lua_State *L, int idx, int as_json, ss_buf *json, ss_value *out, ss_error *err);
/* Pushes a result as an array of rows (column name -> value) whose
 * metatable gives `columns` and `affected`. *slot holds the first result
 * from pg; when streaming, further rows come from pg (ss_pg_stream_next).
 * *slot always holds the result being decoded, so its owner can free it;
 * the caller PQclear()s what *slot holds after. With null_nil, NULL
 * columns are left out of their row. Returns LUA_OK with the rows pushed,
 * or with *failed set and nothing pushed when the stream failed midway
 * (err set); or the status of an error raised while decoding, the error on
 * top, for the caller to raise once it gave back what it holds. */
int ss_push_result(lua_State *L, PGresult **slot, ss_pg *pg, int streaming, int null_nil, ss_error *err,
                   int *failed);
/* How a column is decoded: chosen once per result from its type OID. */
typedef struct {
  unsigned char kind, elem; /* elem: the element decoder of an array */
  char delim;               /* between an array's elements: ',' but for box (';'); 0 means ',' */
} ss_column;
/* Pushes the names of res's columns (one value each) and fills dec (one
 * entry each); 0, or -1 with nothing pushed and an input error when two
 * columns share a name (a row keyed by name would silently keep one). */
int ss_columns(lua_State *L, const PGresult *res, ss_column *dec, ss_error *err);
/* Pushes row r of res as a table keyed by the names at stack indices
 * names .. names + ncols - 1. scratch has room for any array element (it
 * is grown here); with null_nil NULL columns are left out. */
void ss_push_row(lua_State *L, const PGresult *res, int r, int ncols, int names, const ss_column *dec,
                 ss_buf *scratch, int null_nil);
/* Settles the columns whose types the decoder does not know by OID: arrays
 * decode as arrays of text, the rest as text. With may_ask, the catalog is
 * asked (on pg, which must then be idle) about types the connection has
 * not seen yet; without, those are text. 0, or -1 with err set. */
int ss_resolve_columns(ss_pg *pg, const PGresult *res, ss_column *dec, int may_ask, ss_error *err);
/* Reads the optional number field `key` of the table at idx (absent: dflt):
 * finite, from lo to hi, and an integer when asked; anything else is an
 * input error naming the option. */
int ss_opt_number(lua_State *L, int idx, const char *key, double dflt, double lo, double hi, int integer, double *out,
                  ss_error *err);
/* Pushes a scratch buffer owned by a userdata (freed by its __gc). */
ss_buf *ss_push_scratch(lua_State *L);
void ss_open_convert(lua_State *L);

/* A Lua handle (semstore.conn) on a lease of the pool (ss_pool_lease,
 * whose conn is the ss_pg). `res` is held here while it is decoded, so an
 * error raised meanwhile cannot leak it. */
typedef struct {
  ss_pool *pool;
  ss_pool_lease *lease;
  PGresult *res;
  int borrowed_for_call; /* taken by pool:query itself: no leak warning */
  /* a repository call (a bulk insert, say) is using it and runs Lua code
   * meanwhile: that code may not query or release it */
  int busy;
  /* the rows() or copy_to() iteration reading from it (0: none): other
   * calls are refused until the loop ends; release() ends it. Each gets a
   * new number, so a loop that was ended cannot read a later one's rows. */
  unsigned stream, streams;
} ss_conn_handle;

/* json_decode.c: pushes the Lua value of JSON text; -1 (nothing pushed)
 * if the text is not valid JSON. */
int ss_push_json(lua_State *L, const char *s, size_t len);

/* convert.c: whether s is an integer's canonical decimal digits from -2^63
 * to 2^64-1, what semstore.json_integer holds; and the digits of the
 * json_integer at idx, pushed, or NULL (something pushed all the same)
 * when what it holds is not such digits */
int ss_is_json_integer(const char *s, size_t n);
const char *ss_json_integer_digits(lua_State *L, int idx, size_t *len);

/* core.json_encode and core.json_decode (json_encode.c, json_decode.c) */
int ss_lua_json_encode(lua_State *L);
int ss_lua_json_decode(lua_State *L);

/* json_encode.c: appends the JSON text of the value at idx to b; 0, or -1
 * with err set (an input error for what has no JSON form). */
int ss_encode_json(lua_State *L, int idx, ss_buf *b, ss_error *err);

/* conn_handle.c */
ss_conn_handle *ss_conn_new(lua_State *L, ss_pool *pool, int borrowed_for_call);
/* Runs a statement on c and pushes the result, or nil and err; returns the
 * number of values pushed. The SQL is at sql_idx and its nparams
 * parameters follow it; `simple` runs several statements without
 * parameters. A connection borrowed_for_call that holds none yet is
 * acquired after the parameters are encoded and released before returning;
 * one that holds a connection (ss_conn_for) keeps it. */
int ss_conn_run(lua_State *L, ss_conn_handle *c, int sql_idx, int nparams, int simple);
void ss_conn_release(ss_conn_handle *c);
/* The connection a call runs on, for the pool or conn userdata at idx:
 * pushes an ss_conn_handle holding a connection, or returns NULL with err set
 * (the acquire failed; one value is pushed all the same). For a pool it
 * is one borrowed for this call, and *owned is set: pass it on to
 * ss_conn_call, which gives it back. A connection busy with another call
 * raises. */
ss_conn_handle *ss_conn_for(lua_State *L, int idx, int *owned, ss_error *err);
/* The one way C code runs Lua-reachable work while it holds a connection:
 * body (a C function with ud as its upvalue) runs protected on the values
 * on the stack, with c marked busy when asked (so the Lua code body calls
 * cannot use it). Whatever happens, c is given back when `owned` (it was
 * borrowed for this call): a raise runs on_raise(ud) (may be NULL) first
 * and is raised on; otherwise body's results are returned. */
int ss_conn_call(lua_State *L, ss_conn_handle *c, int owned, lua_CFunction body, void *ud, int busy,
                 void (*on_raise)(void *ud));
void ss_open_conn(lua_State *L);
/* conn:transaction(fn, opts), on (conn, fn, opts) at 1..3: BEGIN, or a
 * savepoint inside an open transaction (ss_pg_tx); fn(conn) runs
 * protected; a raise or nil, err rolls back and comes back as nil, err. */
int ss_run_transaction(lua_State *L);
/* Starts an iteration reading from c; returns its number. */
unsigned ss_conn_start_stream(ss_conn_handle *c);
/* Ends the iteration still reading from c, if any. */
void ss_conn_end_stream(ss_conn_handle *c);
/* Pushes the to-be-closed value returned as a generic for's fourth: leaving
 * the loop ends iteration number `stream` on the conn userdata at idx. */
void ss_push_stream_closer(lua_State *L, int idx, unsigned stream);
/* Whether *out holds a finite number of seconds 0..1e9 read from idx;
 * otherwise an input error naming `what`. */
int ss_check_seconds(lua_State *L, int idx, const char *what, double *out, ss_error *err);

/* pool_handle.c */
void ss_open_pool(lua_State *L);
/* The pool of the handle at idx; raises when it is not one, or closed. */
ss_pool *ss_check_pool(lua_State *L, int idx);

/* pg_pipeline.c: core.pg_pipeline (a builder of statements, p:query and
 * p:sync) and core.pg_pipeline_run(pool or conn, p) */
void ss_open_pg_pipeline(lua_State *L);

/* rows.c: core.rows, the rows(sql, ...) method of pools and connections */
void ss_open_rows(lua_State *L);

/* config.c: core.check_keys, core.conninfo_keywords, core.defaults */
void ss_open_config(lua_State *L);

/* quote.c: core.quote_ident, core.quote_literal */
void ss_open_quote(lua_State *L);

/* chunks_bulk.c: core.repositories.chunks.create_chunks_bulk, over the
 * bulk engine (csrc/core/chunks_bulk.c) */
void ss_open_chunks_bulk(lua_State *L);

/* repositories.c: the methods of core.repositories, one per row of
 * ss_statements, over the repository engine (csrc/core/repo.c) */
void ss_open_repositories(lua_State *L);
/* pool_handle.c: the pool options of the table at idx (size,
 * max_overflow, timeout, recycle, idle_timeout, pre_ping, ping_after_idle)
 * over cfg's values; and a pool's statistics as a table, for every pool
 * handle (PostgreSQL's, Redis's). */
int ss_read_pool_config(lua_State *L, int idx, ss_pool_config *cfg, ss_error *err);
void ss_push_pool_stats(lua_State *L, ss_pool *p);
/* chunking.c: core.chunk_text */
void ss_open_chunking(lua_State *L);
/* digest.c: core.sha256 */
void ss_open_digest(lua_State *L);
/* terminal.c: core.display_width, core.isatty, core.catch_interrupts */
void ss_open_terminal(lua_State *L);
/* embed.c: core.embed_dense and core.embed_sparse (the local embedder) */
void ss_open_embed(lua_State *L);
/* redis_handle.c: core.redis_open and the semstore.redis methods */
void ss_open_redis(lua_State *L);
/* qdrant_handle.c: core.qdrant_open and the semstore.qdrant methods */
void ss_open_qdrant(lua_State *L);
/* An input error naming the first key of the table at idx that is not in
 * names (NULL-terminated), the key also in err->column; 0 when there is
 * none. */
int ss_check_keys(lua_State *L, int idx, const char *const *names, const char *what, ss_error *err);

#endif
