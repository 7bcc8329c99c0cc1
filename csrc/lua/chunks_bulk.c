/* db.chunks:create_chunks_bulk(rows, opts): chunks from a Lua array or an
 * iterator, validated and encoded in C into one binary COPY stream per
 * partition, and copied straight into the leaf tables chunks_pNN inside one
 * transaction (a savepoint when the caller's connection is already in one).
 *
 * Rows are read once. Encoded rows wait in per-partition buffers; when they
 * add up to BULK_BUDGET the largest buffer is copied, so memory stays
 * bounded however many rows an iterator yields, and a bulk that fits the
 * budget sends nothing before every row has been checked. A bad row found
 * later rolls the transaction back: all rows or none either way. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "binding.h"
#include "hashtext.h"
#include "pg_copy.h"
#include "repo_rules.h"

#define BULK_MT "semstore.chunks_bulk"
#define BULK_BUDGET (8u << 20)
#define SEND_PIECE (1u << 20)
#define ID_BLOCK 10000

/* The fields a chunk table may have, in COPY column order after id and
 * partition_key. */
enum { F_COLLECTION, F_DOCUMENT, F_INDEX, F_CONTENT, F_START, F_END, F_TOKENS, F_VECTOR, F_METADATA, NFIELDS };
static const char *const field_names[NFIELDS + 1] = {"collection_id", "document_id", "chunk_index", "content",
                                                     "start_offset", "end_offset", "token_count",
                                                     "embedding_vector_id", "metadata", NULL};

typedef struct {
  ss_repo_tx tx; /* first, so abandon_copy finds the bulk from it */
  int with_id;
  int nparts;
  ss_buf *parts;      /* one COPY stream per partition, header included once it has rows */
  long *part_rows;
  size_t buffered;
  ss_buf json;        /* metadata of the row being encoded */
  long long *ids;     /* ids taken from the sequence, not yet used */
  long ids_len, ids_next;
  int pending;        /* the partition whose COPY the server may still be busy with, or -1 */
  long pending_rows;
} bulk;

static int bulk_gc(lua_State *L) {
  bulk *b = luaL_checkudata(L, 1, BULK_MT);
  int i;
  for (i = 0; b->parts && i < b->nparts; i++) ss_buf_free(&b->parts[i]);
  free(b->parts);
  free(b->part_rows);
  free(b->ids);
  ss_buf_free(&b->json);
  memset(b, 0, sizeof *b);
  return 0;
}

/* The failure of one row: an input error naming the row and the field. */
typedef struct {
  long row;
  const char *field;
} bad_row;

static int row_error(ss_error *err, bad_row *bad, long row, int field, const char *what) {
  bad->row = row;
  bad->field = field_names[field];
  return ss_error_set(err, SS_ERR_INPUT, "row %ld: %s %s", row, field_names[field], what);
}

/* A string field: NULL *s for nil/semstore.null. */
static int get_string(lua_State *L, const char **s, size_t *len) {
  *s = NULL;
  *len = 0;
  if (ss_is_null(L, -1)) return 0;
  if (lua_type(L, -1) != LUA_TSTRING) return -1;
  *s = lua_tolstring(L, -1, len);
  return 0;
}

/* An int4 field >= 0; *present is 0 for nil/semstore.null. */
static int get_count(lua_State *L, int *present, int32_t *v) {
  int isnum;
  lua_Integer i;
  *present = 0;
  if (ss_is_null(L, -1)) return 0;
  if (lua_type(L, -1) != LUA_TNUMBER) return -1;
  i = lua_tointegerx(L, -1, &isnum);
  if (!isnum || i < 0 || i > INT32_MAX) return -1;
  *present = 1;
  *v = (int32_t)i;
  return 0;
}

/* Checks the chunk table on top of the stack and appends it to its
 * partition's stream. On failure the stream is as it was. */
static int encode_row(lua_State *L, bulk *b, long row, long long id, int with_id, ss_error *err, bad_row *bad) {
  int tbl = lua_gettop(L), f, part, present, known = 0;
  const char *s;
  size_t len;
  int32_t n;
  ss_buf *out;
  size_t mark;
  if (lua_type(L, tbl) != LUA_TTABLE) {
    bad->row = row;
    bad->field = NULL;
    return ss_error_set(err, SS_ERR_INPUT, "row %ld: a chunk must be a table, not a %s", row, luaL_typename(L, tbl));
  }
  lua_getfield(L, tbl, "collection_id");
  if (get_string(L, &s, &len) || !s || !ss_is_uuid(s, len)) {
    lua_settop(L, tbl);
    return row_error(err, bad, row, F_COLLECTION, "must be a UUID in canonical lowercase form");
  }
  part = ss_partition_key(s, len, b->nparts);
  out = &b->parts[part];
  mark = out->len;
  if (out->len == 0 && ss_copy_header(out)) goto oom;
  if (ss_copy_row(out, NFIELDS + 1 + with_id)) goto oom;
  if (with_id && ss_copy_int8(out, id)) goto oom;
  if (ss_copy_text(out, s, len) || ss_copy_int4(out, part)) goto oom;
  known++;
  for (f = F_DOCUMENT; f < NFIELDS; f++) {
    lua_settop(L, tbl);
    lua_getfield(L, tbl, field_names[f]);
    if (!lua_isnil(L, -1)) known++;
    switch (f) {
    case F_DOCUMENT:
    case F_VECTOR:
    case F_CONTENT:
      if (get_string(L, &s, &len)) goto bad_type;
      if (!s) {
        if (f == F_CONTENT) {
          row_error(err, bad, row, f, "is required");
          goto fail;
        }
        if (ss_copy_null(out)) goto oom;
        break;
      }
      if (f == F_DOCUMENT ? !ss_is_uuid(s, len) : !ss_is_text(s, len)) {
        row_error(err, bad, row, f,
                  f == F_DOCUMENT ? "must be a UUID in canonical lowercase form"
                                  : "must be UTF-8 text without zero bytes");
        goto fail;
      }
      if (ss_copy_text(out, s, len)) goto oom;
      break;
    case F_INDEX:
    case F_START:
    case F_END:
    case F_TOKENS:
      if (get_count(L, &present, &n)) {
        row_error(err, bad, row, f, "must be an integer from 0 to 2147483647");
        goto fail;
      }
      if (!present && f == F_INDEX) {
        row_error(err, bad, row, f, "is required");
        goto fail;
      }
      if (present ? ss_copy_int4(out, n) : ss_copy_null(out)) goto oom;
      break;
    case F_METADATA:
      if (ss_is_null(L, -1)) {
        if (ss_copy_null(out)) goto oom;
      } else if (lua_type(L, -1) != LUA_TTABLE) {
        goto bad_type;
      } else {
        b->json.len = 0;
        if (ss_encode_json(L, -1, &b->json, err)) {
          char why[sizeof err->message];
          ss_strlcpy(why, err->message, sizeof why);
          row_error(err, bad, row, f, why);
          goto fail;
        }
        if (ss_copy_jsonb(out, b->json.data, b->json.len)) goto oom;
      }
      break;
    }
  }
  lua_settop(L, tbl);
  /* a field this table has that no column takes is a typo, not data to drop */
  {
    int total = 0;
    lua_pushnil(L);
    while (lua_next(L, tbl)) {
      total++;
      lua_pop(L, 1);
    }
    /* rare: find the key to name it. Fewer raw keys than fields read
     * means some came through __index, which is no typo. */
    if (total != known) {
      char what[32];
      snprintf(what, sizeof what, "row %ld", row);
      if (ss_check_keys(L, tbl, field_names, what, err)) {
        bad->row = row;
        bad->field = err->column;
        goto fail;
      }
    }
  }
  b->part_rows[part]++;
  b->buffered += out->len - mark;
  return 0;
bad_type:
  row_error(err, bad, row, f, f == F_METADATA ? "must be a table" : "must be a string");
  goto fail;
oom:
  bad->row = 0;
  ss_error_set(err, SS_ERR_MEMORY, "out of memory encoding row %ld", row);
fail:
  out->len = mark;
  lua_settop(L, tbl);
  return -1;
}

/* Waits for the outcome of the COPY sent last, if any. */
static int copy_outcome(ss_pg *pg, bulk *b, ss_error *err) {
  long long copied;
  int part = b->pending;
  if (part < 0) return 0;
  b->pending = -1;
  if ((copied = ss_pg_copy_result(pg, err)) < 0) return -1;
  if (copied != b->pending_rows)
    return ss_error_set(err, SS_ERR_POSTGRES, "COPY into chunks_p%d took %lld rows of %ld", part, copied,
                        b->pending_rows);
  return 0;
}

/* After a raise or a failure: the server must be done with the COPY sent
 * last before the transaction can be rolled back. */
static void abandon_copy(ss_repo_tx *tx) {
  bulk *b = (bulk *)(void *)tx;
  ss_error ignored;
  if (b->pending >= 0) copy_outcome(tx->pg, b, &ignored);
}

/* Copies one partition's stream into its leaf table and empties it. It
 * does not wait for the server to take the rows in: the next call (or
 * copy_outcome) does, so the server works while the next rows are encoded. */
static int flush_part(ss_pg *pg, bulk *b, int part, int with_id, ss_error *err) {
  char sql[256];
  ss_buf *out = &b->parts[part];
  size_t off;
  snprintf(sql, sizeof sql,
           "COPY chunks_p%d (%scollection_id, partition_key, document_id, chunk_index, content, start_offset, "
           "end_offset, token_count, embedding_vector_id, metadata) FROM STDIN (FORMAT binary)",
           part, with_id ? "id, " : "");
  size_t encoded = out->len; /* what `buffered` counted, without the trailer */
  if (copy_outcome(pg, b, err)) return -1;
  if (ss_copy_trailer(out)) return ss_error_set(err, SS_ERR_MEMORY, "out of memory");
  if (ss_pg_copy_begin(pg, sql, err)) return -1;
  for (off = 0; off < out->len; off += SEND_PIECE) {
    size_t n = out->len - off < SEND_PIECE ? out->len - off : SEND_PIECE;
    if (ss_pg_copy_send(pg, out->data + off, n, err)) {
      ss_error ignored;
      if (ss_pg_copy_done(pg, "semstore: sending failed", &ignored) == 0) ss_pg_copy_result(pg, &ignored);
      return -1;
    }
  }
  if (ss_pg_copy_done(pg, NULL, err)) return -1;
  b->pending = part;
  b->pending_rows = b->part_rows[part];
  b->buffered -= encoded;
  out->len = 0;
  b->part_rows[part] = 0;
  /* its memory goes too, so what the partitions hold stays within about
   * twice the budget whatever order the rows come in */
  ss_buf_free(out);
  return 0;
}

/* Takes `count` ids from the chunks' sequence in one round trip. */
static int take_ids(ss_pg *pg, bulk *b, long count, ss_error *err) {
  char num[24];
  const char *values[1] = {num};
  PGresult *res;
  long i;
  long long *ids;
  /* the connection must be done with the COPY sent last before it runs a query */
  if (copy_outcome(pg, b, err)) return -1;
  snprintf(num, sizeof num, "%ld", count);
  res = ss_pg_query(pg,
                    "SELECT nextval(pg_get_serial_sequence('chunks', 'id')) FROM generate_series(1, $1::int4)",
                    1, NULL, values, NULL, NULL, err);
  if (!res) return -1;
  if (!(ids = realloc(b->ids, sizeof *ids * (size_t)count))) {
    PQclear(res);
    return ss_error_set(err, SS_ERR_MEMORY, "out of memory");
  }
  b->ids = ids;
  for (i = 0; i < count && i < PQntuples(res); i++) ids[i] = strtoll(PQgetvalue(res, i, 0), NULL, 10);
  b->ids_len = i;
  b->ids_next = 0;
  PQclear(res);
  return 0;
}

/* The bulk itself, run protected by ss_repo_protected: the arguments of
 * create_chunks_bulk (1 self, 2 rows, 3 opts), the bulk state (4), the
 * pool handle or connection (5) and the connection used (6). A raise
 * (the iterator's, a metamethod's, out of memory) goes through
 * abandon_copy and the rollback there. */
static int bulk_body(lua_State *L) {
  bulk *b = lua_touserdata(L, lua_upvalueindex(1));
  ss_pg *pg = b->tx.pg;
  ss_error err;
  bad_row bad = {0, NULL};
  int iter = lua_isfunction(L, 2), with_id = b->with_id, i, ids_idx = 0;
  long row = 0;
  lua_Integer len = iter ? 0 : ss_array_length(L, 2);
  ss_error_clear(&err);
  if ((b->nparts = ss_chunk_partitions(L, 1, pg, &err)) < 0) return ss_push_fail(L, &err);
  b->parts = calloc((size_t)b->nparts, sizeof *b->parts);
  b->part_rows = calloc((size_t)b->nparts, sizeof *b->part_rows);
  if (!b->parts || !b->part_rows) {
    ss_error_set(&err, SS_ERR_MEMORY, "out of memory");
    return ss_push_fail(L, &err);
  }
  if (with_id) {
    /* rows.n is the caller's word, not yet checked: presize modestly */
    lua_createtable(L, iter ? 0 : (int)(len < ID_BLOCK * 10 ? len : ID_BLOCK * 10), 0);
    ids_idx = lua_gettop(L);
  }
  for (;;) {
    long long id = 0;
    if (iter) {
      lua_pushvalue(L, 2);
      lua_call(L, 0, 1);
      if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        break;
      }
    } else {
      if (row >= len) break;
      lua_geti(L, 2, row + 1);
    }
    row++;
    if (with_id) {
      if (b->ids_next == b->ids_len &&
          take_ids(pg, b, iter ? ID_BLOCK : (len - row + 1 < ID_BLOCK * 10 ? len - row + 1 : ID_BLOCK * 10), &err))
        goto fail;
      id = b->ids[b->ids_next++];
    }
    if (encode_row(L, b, row, id, with_id, &err, &bad)) goto fail;
    lua_pop(L, 1);
    if (with_id) {
      lua_pushinteger(L, id);
      lua_rawseti(L, ids_idx, row);
    }
    while (b->buffered > BULK_BUDGET) {
      int big = 0;
      if (!b->tx.tx.open && ss_pg_tx_begin(pg, &b->tx.tx, NULL, &err)) goto fail;
      for (i = 1; i < b->nparts; i++)
        if (b->parts[i].len > b->parts[big].len) big = i;
      if (flush_part(pg, b, big, with_id, &err)) goto fail;
    }
  }
  if (row > 0) {
    if (!b->tx.tx.open && ss_pg_tx_begin(pg, &b->tx.tx, NULL, &err)) goto fail;
    for (i = 0; i < b->nparts; i++)
      if (b->part_rows[i] && flush_part(pg, b, i, with_id, &err)) goto fail;
    if (copy_outcome(pg, b, &err) || ss_pg_tx_end(pg, &b->tx.tx, 1, &err)) goto fail;
  }
  lua_pushinteger(L, row);
  if (!with_id) return 1;
  lua_pushvalue(L, ids_idx);
  return 2;
fail:
  abandon_copy(&b->tx);
  ss_pg_tx_end(pg, &b->tx.tx, 0, &err);
  ss_push_fail(L, &err);
  if (bad.row > 0) {
    lua_pushinteger(L, bad.row);
    lua_setfield(L, -2, "row");
    if (bad.field) {
      lua_pushstring(L, bad.field);
      lua_setfield(L, -2, "field");
    }
  }
  return 2;
}

static int chunks_create_bulk(lua_State *L) {
  static const char *const options[] = {"return_ids", NULL};
  ss_error err;
  ss_conn *c;
  int owned;
  bulk *b;
  ss_error_clear(&err);
  luaL_checktype(L, 1, LUA_TTABLE);
  if (!lua_isfunction(L, 2)) luaL_checktype(L, 2, LUA_TTABLE);
  if (!lua_isnoneornil(L, 3)) luaL_checktype(L, 3, LUA_TTABLE);
  lua_settop(L, 3);
  if (lua_istable(L, 3) && ss_check_keys(L, 3, options, "create_chunks_bulk's options", &err))
    return ss_push_fail(L, &err);
  b = ss_newuserdata(L, sizeof *b); /* at 4: freed by its __gc whatever happens */
  memset(b, 0, sizeof *b);
  b->pending = -1;
  b->tx.abandon = abandon_copy;
  luaL_setmetatable(L, BULK_MT);
  if (lua_istable(L, 3)) {
    lua_getfield(L, 3, "return_ids");
    b->with_id = lua_toboolean(L, -1);
    lua_pop(L, 1);
  }
  lua_getfield(L, 1, "pg");
  if (!(c = ss_conn_for(L, 5, &owned, &err))) return ss_push_fail(L, &err);
  b->tx.pg = c->item->conn; /* the connection stays at 6, anchored */
  return ss_repo_protected(L, c, owned, bulk_body, &b->tx);
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
  lua_pop(L, 2);
}
