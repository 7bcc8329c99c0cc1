#include "chunks_bulk.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "hashtext.h"
#include "pg_copy.h"
#include "repo.h"

/* COPY data goes to libpq in pieces of this size. */
#define SEND_PIECE ((size_t)1 << 20)

struct ss_bulk {
  ss_pg *pg;
  ss_pg_tx tx;
  size_t budget;
  int with_id;
  long expected;
  int nparts;
  ss_buf *parts;      /* one COPY stream per partition, header included once it has rows */
  long *part_rows;
  size_t buffered;    /* bytes of encoded rows in the partitions' buffers */
  long long *ids;     /* ids taken from the sequence, not yet used */
  long ids_len, ids_next;
  int pending;        /* the partition whose COPY the server may still be busy with, or -1 */
  long pending_rows;
  long rows;          /* rows taken */
  int over;           /* failed, abandoned or finished: takes nothing more */
  long bad_row;       /* the row whose fault failed the bulk, or 0 */
  int bad_has_field;
  char bad_field[128];
};

ss_bulk *ss_bulk_new(ss_pg *pg, const ss_bulk_options *opts, ss_error *err) {
  ss_bulk *b;
  int nparts = ss_repo_partitions(pg, err);
  if (nparts < 0) return NULL;
  if (!(b = calloc(1, sizeof *b))) goto oom;
  b->pg = pg;
  b->budget = opts->budget ? opts->budget : SS_BULK_BUDGET;
  b->with_id = opts->return_ids;
  b->expected = opts->expected_rows;
  b->nparts = nparts;
  b->pending = -1;
  b->parts = calloc((size_t)nparts, sizeof *b->parts);
  b->part_rows = calloc((size_t)nparts, sizeof *b->part_rows);
  if (!b->parts || !b->part_rows) goto oom;
  return b;
oom:
  ss_bulk_free(b);
  ss_error_set(err, SS_ERR_MEMORY, "out of memory");
  return NULL;
}

void ss_bulk_free(ss_bulk *b) {
  int i;
  if (!b) return;
  for (i = 0; b->parts && i < b->nparts; i++) ss_buf_free(&b->parts[i]);
  free(b->parts);
  free(b->part_rows);
  free(b->ids);
  free(b);
}

/* ---- the COPY streams ---- */

/* Waits for the outcome of the COPY sent last, if any. */
static int copy_outcome(ss_bulk *b, ss_error *err) {
  long long copied;
  int part = b->pending;
  if (part < 0) return 0;
  b->pending = -1;
  if ((copied = ss_pg_copy_result(b->pg, err)) < 0) return -1;
  if (copied != b->pending_rows)
    return ss_error_set(err, SS_ERR_POSTGRES, "COPY into chunks_p%d took %lld rows of %ld", part, copied,
                        b->pending_rows);
  return 0;
}

void ss_bulk_abandon(ss_bulk *b) {
  ss_error ignored;
  /* the server must be done with the COPY sent last before the
   * transaction can be rolled back */
  if (b->pending >= 0) copy_outcome(b, &ignored);
  ss_pg_tx_end(b->pg, &b->tx, 0, &ignored);
  b->over = 1;
}

/* Copies one partition's stream into its leaf table and empties it. It
 * does not wait for the server to take the rows in: the next statement
 * (or copy_outcome) does, so the server works while the next rows come. */
static int flush_part(ss_bulk *b, int part, ss_error *err) {
  char sql[320];
  ss_buf *out = &b->parts[part];
  size_t off, encoded = out->len; /* what `buffered` counted, without the trailer */
  if (!b->tx.open && ss_pg_tx_begin(b->pg, &b->tx, NULL, err)) return -1;
  snprintf(sql, sizeof sql, "COPY chunks_p%d (%s" SS_CHUNK_COLUMNS ") FROM STDIN (FORMAT binary)", part,
           b->with_id ? "id, " : "");
  if (copy_outcome(b, err)) return -1;
  if (ss_copy_trailer(out)) return ss_error_set(err, SS_ERR_MEMORY, "out of memory");
  if (ss_pg_copy_begin(b->pg, sql, err)) return -1;
  for (off = 0; off < out->len; off += SEND_PIECE) {
    size_t n = out->len - off < SEND_PIECE ? out->len - off : SEND_PIECE;
    if (ss_pg_copy_send(b->pg, out->data + off, n, err)) {
      ss_error ignored;
      if (ss_pg_copy_done(b->pg, "semstore: sending failed", &ignored) == 0) ss_pg_copy_result(b->pg, &ignored);
      return -1;
    }
  }
  if (ss_pg_copy_done(b->pg, NULL, err)) return -1;
  b->pending = part;
  b->pending_rows = b->part_rows[part];
  b->buffered -= encoded;
  b->part_rows[part] = 0;
  /* its memory goes too, so what the partitions hold stays within about
   * twice the budget whatever order the rows come in */
  ss_buf_free(out);
  return 0;
}

/* Takes `count` ids from the chunks' sequence in one round trip. */
static int take_ids(ss_bulk *b, long count, ss_error *err) {
  char num[24];
  const char *values[1] = {num};
  PGresult *res;
  long i;
  long long *ids;
  /* the connection must be done with the COPY sent last before it runs a query */
  if (copy_outcome(b, err)) return -1;
  snprintf(num, sizeof num, "%ld", count);
  res = ss_pg_query(b->pg,
                    "SELECT nextval(pg_get_serial_sequence('chunks', 'id')) FROM generate_series(1, $1::int4)", 1,
                    NULL, values, NULL, NULL, err);
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
  return i > 0 ? 0 : ss_error_set(err, SS_ERR_POSTGRES, "the chunks' sequence gave no ids");
}

/* ---- rows ---- */

/* Ends the bulk over a fault of the next row: err's message gets the row
 * in front, and the row and field are kept for ss_bulk_failed_row. */
static int row_failed(ss_bulk *b, const char *field, ss_error *err) {
  char why[sizeof err->message];
  ss_strlcpy(why, err->message, sizeof why);
  b->bad_row = b->rows + 1;
  b->bad_has_field = field != NULL;
  ss_strlcpy(b->bad_field, field, sizeof b->bad_field);
  ss_error_set(err, SS_ERR_INPUT, "row %ld: %s", b->bad_row, why);
  ss_bulk_abandon(b);
  return -1;
}

static int is_over(ss_error *err) {
  return ss_error_set(err, SS_ERR_INPUT, "this bulk is over (it failed, or was finished)");
}

int ss_bulk_check(ss_bulk *b, ss_value *fields, ss_error *err) {
  int f;
  if (b->over) return is_over(err);
  for (f = 0; f < SS_CHUNK_NFIELDS; f++)
    if (ss_repo_check_value(&ss_chunk_fields[f], &fields[f], err)) return row_failed(b, ss_chunk_fields[f].name, err);
  return 0;
}

int ss_bulk_reject(ss_bulk *b, const char *field, const char *why, ss_error *err) {
  if (b->over) return is_over(err);
  ss_error_set(err, SS_ERR_INPUT, "%s%s%s", field ? field : "", field ? " " : "", why);
  return row_failed(b, field, err);
}

/* One checked field in COPY's binary form. */
static int encode_field(ss_buf *out, const ss_param_spec *p, const ss_value *v) {
  switch (v->type) {
  case SS_VAL_NULL:
    return ss_copy_null(out);
  case SS_VAL_INT:
    return p->kind == SS_V_COUNT4 || p->kind == SS_V_SIZE4 ? ss_copy_int4(out, (int32_t)v->as.i)
                                                           : ss_copy_int8(out, v->as.i);
  case SS_VAL_TEXT:
    return ss_copy_text(out, v->as.str.s, v->as.str.len);
  case SS_VAL_JSON:
    return ss_copy_jsonb(out, v->as.str.s, v->as.str.len);
  default:
    return -1; /* no chunk field takes another kind: the check refused it */
  }
}

int ss_bulk_row(ss_bulk *b, ss_value *fields, long long *id, ss_error *err) {
  const ss_value *coll = &fields[SS_CHUNK_collection_id];
  ss_buf *out;
  size_t mark;
  int part, f;
  *id = 0;
  if (ss_bulk_check(b, fields, err)) return -1;
  if (b->with_id) {
    if (b->ids_next == b->ids_len) {
      long left = b->expected - b->rows;
      if (take_ids(b, left > 0 ? (left < 10 * SS_BULK_ID_BLOCK ? left : 10 * SS_BULK_ID_BLOCK) : SS_BULK_ID_BLOCK, err))
        goto fail;
    }
    *id = b->ids[b->ids_next++];
  }
  part = ss_partition_key(coll->as.str.s, coll->as.str.len, b->nparts);
  out = &b->parts[part];
  mark = out->len;
  if (out->len == 0 && ss_copy_header(out)) goto oom;
  if (ss_copy_row(out, SS_CHUNK_NFIELDS + 1 + b->with_id)) goto oom;
  if (b->with_id && ss_copy_int8(out, *id)) goto oom;
  for (f = 0; f < SS_CHUNK_NFIELDS; f++)
    if (encode_field(out, &ss_chunk_fields[f], &fields[f])) goto oom;
  if (ss_copy_int4(out, part)) goto oom;
  b->rows++;
  b->part_rows[part]++;
  b->buffered += out->len - mark;
  while (b->buffered > b->budget) {
    int i, big = 0;
    for (i = 1; i < b->nparts; i++)
      if (b->parts[i].len > b->parts[big].len) big = i;
    if (flush_part(b, big, err)) goto fail;
  }
  return 0;
oom:
  out->len = mark;
  ss_error_set(err, SS_ERR_MEMORY, "out of memory encoding row %ld", b->rows + 1);
fail:
  ss_bulk_abandon(b);
  return -1;
}

int ss_bulk_finish(ss_bulk *b, long *rows, ss_error *err) {
  int i;
  *rows = 0;
  if (b->over) return is_over(err);
  for (i = 0; i < b->nparts; i++)
    if (b->part_rows[i] && flush_part(b, i, err)) goto fail;
  if (copy_outcome(b, err) || ss_pg_tx_end(b->pg, &b->tx, 1, err)) goto fail;
  *rows = b->rows;
  b->over = 1; /* nothing more to take, nothing to abandon */
  return 0;
fail:
  ss_bulk_abandon(b);
  return -1;
}

long ss_bulk_failed_row(const ss_bulk *b, const char **field) {
  *field = b->bad_row && b->bad_has_field ? b->bad_field : NULL;
  return b->bad_row;
}
