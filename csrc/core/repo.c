#include "repo.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "hashtext.h"
#include "repo_rules.h"

int ss_repo_params(const ss_statement *st) {
  int n = 0;
  while (n < SS_MAX_PARAMS && st->params[n].name) n++;
  return n;
}

/* ---- checking values ---- */

/* Whether s is an int64 in canonical decimal (-?[1-9][0-9]* or 0, not
 * "-0": what LuaJIT gives for an int8 beyond 2^53, which a double cannot
 * hold); *out gets it. */
static int decimal_int64(const char *s, size_t len, int64_t *out) {
  int neg;
  uint64_t n;
  if (!ss_decimal_digits(s, len, &neg, &n) || (neg && n == 0) ||
      n > (neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX))
    return 0;
  *out = neg ? (int64_t)(0 - n) : (int64_t)n;
  return 1;
}

/* Whether v is an integer (an integral double counts, and a decimal
 * string as decimal_int64 reads it); *out gets it. */
static int as_integer(const ss_value *v, int64_t *out) {
  if (v->type == SS_VAL_INT) {
    *out = v->as.i;
    return 1;
  }
  if (v->type == SS_VAL_TEXT) return decimal_int64(v->as.str.s, v->as.str.len, out);
  /* -2^63 <= d < 2^63: what int64 holds exactly; NaN fails both */
  if (v->type == SS_VAL_DOUBLE && v->as.d >= -9223372036854775808.0 && v->as.d < 9223372036854775808.0 &&
      v->as.d == floor(v->as.d)) {
    *out = (int64_t)v->as.d;
    return 1;
  }
  return 0;
}

static int is_choice(const char *const *choices, const char *s, size_t len) {
  int k;
  for (k = 0; choices[k]; k++)
    if (strlen(choices[k]) == len && memcmp(choices[k], s, len) == 0) return 1;
  return 0;
}

int ss_repo_check_value(const ss_param_spec *p, ss_value *v, ss_error *err) {
  const char *s;
  size_t len;
  int64_t i;
  if (v->type == SS_VAL_NULL) {
    if (p->required) return ss_error_set(err, SS_ERR_INPUT, "%s is required", p->name);
    return 0;
  }
  switch (p->kind) {
  case SS_V_TEXT:
  case SS_V_UUID:
  case SS_V_ENUM:
  case SS_V_PASSWORD:
    if (v->type != SS_VAL_TEXT)
      return ss_error_set(err, SS_ERR_INPUT, "%s must be a string, not a %s", p->name, ss_value_type_name(v));
    s = v->as.str.s;
    len = v->as.str.len;
    if (p->kind == SS_V_UUID && !ss_is_uuid(s, len))
      return ss_error_set(err, SS_ERR_INPUT, "%s must be a UUID in canonical lowercase form", p->name);
    if (!ss_is_text(s, len))
      return ss_error_set(err, SS_ERR_INPUT, "%s must be UTF-8 text without zero bytes", p->name);
    if (p->kind == SS_V_ENUM && !is_choice(p->choices, s, len)) {
      char list[256] = "";
      int k;
      for (k = 0; p->choices[k]; k++)
        snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", k ? ", " : "", p->choices[k]);
      return ss_error_set(err, SS_ERR_INPUT, "%s must be one of %s", p->name, list);
    }
    if (p->kind == SS_V_PASSWORD && len == 0) return ss_error_set(err, SS_ERR_INPUT, "%s must not be empty", p->name);
    return 0;
  case SS_V_INT:
  case SS_V_COUNT:
  case SS_V_COUNT4:
  case SS_V_SIZE4:
  case SS_V_LIMIT: {
    int64_t lo = p->kind == SS_V_INT ? INT64_MIN : p->kind == SS_V_LIMIT || p->kind == SS_V_SIZE4 ? 1 : 0;
    int64_t hi = p->kind == SS_V_COUNT4 || p->kind == SS_V_SIZE4 ? INT32_MAX
                 : p->kind == SS_V_LIMIT                         ? SS_MAX_LIMIT
                                                                 : INT64_MAX;
    if (!as_integer(v, &i)) return ss_error_set(err, SS_ERR_INPUT, "%s must be an integer", p->name);
    if (i < lo || i > hi)
      return ss_error_set(err, SS_ERR_INPUT, "%s must be an integer from %lld to %lld", p->name, (long long)lo,
                          (long long)hi);
    *v = ss_int(i);
    return 0;
  }
  case SS_V_BOOL:
    if (v->type != SS_VAL_BOOL) return ss_error_set(err, SS_ERR_INPUT, "%s must be a boolean", p->name);
    return 0;
  case SS_V_JSON:
    if (v->type != SS_VAL_JSON)
      return ss_error_set(err, SS_ERR_INPUT, "%s must be JSON (a table), not a %s", p->name, ss_value_type_name(v));
    return 0;
  }
  return 0;
}

/* A password (checked: no zero byte) as a C string for crypt, which reads
 * up to a zero byte that the caller's bytes need not have; NULL when
 * memory runs out. Give it back with password_free, which wipes it. */
static char *password_copy(const ss_value *v, ss_error *err) {
  char *pw = malloc(v->as.str.len + 1);
  if (!pw) {
    ss_error_set(err, SS_ERR_MEMORY, "out of memory handling a password");
    return NULL;
  }
  memcpy(pw, v->as.str.s, v->as.str.len);
  pw[v->as.str.len] = '\0';
  return pw;
}

static void password_free(char *pw) {
  memset(pw, 0, strlen(pw));
  free(pw);
}

int ss_repo_check(ss_repo_call *call, const ss_statement *st, const ss_value *values, ss_error *err) {
  int k;
  call->st = st;
  call->n = ss_repo_params(st);
  call->stream = 0;
  for (k = 0; k < call->n; k++) {
    const ss_param_spec *p = &st->params[k];
    ss_value *v = &call->values[k];
    switch (p->kind) {
    case SS_V_NEW_UUID:
      if (ss_uuid_v4(call->new_uuid))
        return ss_error_set(err, SS_ERR_INPUT, "the system gave no randomness for a UUID");
      *v = ss_text(call->new_uuid, 36);
      break;
    case SS_V_PARTITION:
    case SS_V_CURRENT:
      *v = ss_null(); /* filled in on the connection */
      break;
    default:
      *v = values[k];
      if (ss_repo_check_value(p, v, err)) return -1;
      if (p->kind == SS_V_PASSWORD && v->type == SS_VAL_TEXT) {
        char *pw = password_copy(v, err);
        int status = pw ? ss_password_hash(pw, call->hash, err) : -1;
        if (pw) password_free(pw);
        if (status) return -1;
        *v = ss_text(call->hash, strlen(call->hash));
      }
    }
  }
  return 0;
}

/* ---- running statements ---- */

/* Runs sql with the n values as text parameters, whole or (stream) as a
 * single-row stream; NULL with err set. */
static PGresult *run_sql(ss_pg *pg, const char *sql, const ss_value *values, int n, int stream, ss_error *err) {
  char nums[SS_MAX_PARAMS][SS_VALUE_NUM_SIZE];
  const char *texts[SS_MAX_PARAMS];
  int k;
  for (k = 0; k < n && k < SS_MAX_PARAMS; k++) texts[k] = ss_value_param(&values[k], nums[k]);
  return stream ? ss_pg_stream_start(pg, sql, k, NULL, texts, NULL, NULL, err)
                : ss_pg_query(pg, sql, k, NULL, texts, NULL, NULL, err);
}

static PGresult *query(ss_pg *pg, const char *sql, const ss_value *values, int n, ss_error *err) {
  return run_sql(pg, sql, values, n, 0, err);
}

int ss_repo_partitions(ss_pg *pg, ss_error *err) {
  PGresult *res;
  int n = ss_pg_partitions(pg);
  if (n > 0) return n;
  if (!(res = ss_pg_query(pg, "SELECT chunk_partition_count()", 0, NULL, NULL, NULL, NULL, err))) return -1;
  n = PQntuples(res) == 1 ? atoi(PQgetvalue(res, 0, 0)) : 0;
  PQclear(res);
  if (n < 1) return ss_error_set(err, SS_ERR_POSTGRES, "chunk_partition_count() returned %d", n);
  /* fixed when the schema was migrated */
  ss_pg_set_partitions(pg, n);
  return n;
}

static int not_found(const ss_repo_call *call, ss_error *err) {
  char key[128];
  return ss_error_set(err, SS_ERR_NOT_FOUND, "%s %s not found", call->st->entity,
                      ss_value_format(&call->values[0], key, sizeof key));
}

/* The check made before the statement: pre_sql reads one value of
 * parameter 1's row. 0 when the statement may run; -1 with err set. */
static int pre_check(ss_repo_call *call, ss_pg *pg, ss_error *err) {
  const ss_statement *st = call->st;
  char key[128], other[128];
  const char *v;
  int k, status = 0;
  PGresult *res = query(pg, st->pre_sql, call->values, 1, err);
  if (!res) return -1;
  if (PQntuples(res) == 0) {
    PQclear(res);
    return not_found(call, err);
  }
  v = PQgetisnull(res, 0, 0) ? NULL : PQgetvalue(res, 0, 0);
  ss_value_format(&call->values[0], key, sizeof key);
  if (st->check == SS_CHECK_OWNER) {
    ss_value_format(&call->values[st->check_param - 1], other, sizeof other);
    if (!v || strcmp(v, other) != 0)
      status = ss_error_set(err, SS_ERR_ACCESS_DENIED, "user %s does not own %s %s", other, st->entity, key);
  } else if (st->check == SS_CHECK_TRANSITION) {
    const char *to =
        st->to_state ? st->to_state : ss_value_format(&call->values[st->check_param - 1], other, sizeof other);
    if (!v || !st->allowed(v, to)) {
      status = ss_error_set(err, SS_ERR_INVALID_TRANSITION, "%s %s cannot go from %s to %s", st->entity, key,
                            v ? v : "null", to);
    } else {
      /* the statement applies only to the status just checked */
      ss_strlcpy(call->current, v, sizeof call->current);
      for (k = 0; k < call->n; k++)
        if (st->params[k].kind == SS_V_CURRENT) call->values[k] = ss_text(call->current, strlen(call->current));
    }
  }
  PQclear(res);
  return status;
}

static long long affected_of(const PGresult *res) {
  const char *n = PQcmdTuples((PGresult *)res);
  return *n ? strtoll(n, NULL, 10) : PQntuples(res);
}

/* The boolean column `name` of the first row. */
static int first_row_flag(const PGresult *res, const char *name) {
  int c = PQfnumber(res, name);
  return c >= 0 && !PQgetisnull(res, 0, c) && PQgetvalue(res, 0, c)[0] == 't';
}

/* The engine's own statements in a pipeline report a failure as the
 * statement's own error, as they did when each ran alone: without the
 * pipeline's "statement N: ". */
static void unnumber(ss_error *err) {
  const char *colon = strncmp(err->message, "statement ", 10) == 0 ? strstr(err->message, ": ") : NULL;
  if (colon) memmove(err->message, colon + 2, strlen(colon + 2) + 1);
}

/* Queues sql with the n values as text parameters. */
static int queue(ss_pg_pipeline *pl, const char *sql, const ss_value *values, int n, ss_error *err) {
  char nums[SS_MAX_PARAMS][SS_VALUE_NUM_SIZE];
  const char *texts[SS_MAX_PARAMS];
  int k;
  for (k = 0; k < n && k < SS_MAX_PARAMS; k++) texts[k] = ss_value_param(&values[k], nums[k]);
  return ss_pg_pipeline_add(pl, sql, k, NULL, texts, NULL, NULL, err);
}

/* SS_RET_PAGE: count_sql and the page's statement in one pipeline (one
 * round trip, one implicit transaction on an idle connection); the page
 * comes whole, not as a stream (it is at most SS_MAX_LIMIT rows). */
static int run_page(ss_repo_call *call, ss_pg *pg, ss_repo_result *out, ss_error *err) {
  const ss_statement *st = call->st;
  ss_pg_pipeline *pl = ss_pg_pipeline_new();
  PGresult **count, **rows;
  int status = -1;
  if (!pl) return ss_error_set(err, SS_ERR_MEMORY, "out of memory");
  if (queue(pl, st->count_sql, call->values, st->count_params, err) || queue(pl, st->sql, call->values, call->n, err))
    goto done;
  if (ss_pg_pipeline_run(pg, pl, err)) {
    unnumber(err);
    goto done;
  }
  count = ss_pg_pipeline_slot(pl, 0);
  rows = ss_pg_pipeline_slot(pl, 1);
  out->total = PQntuples(*count) ? strtoll(PQgetvalue(*count, 0, 0), NULL, 10) : 0;
  out->rows = *rows;
  *rows = NULL; /* taken over */
  out->affected = affected_of(out->rows);
  status = 0;
done:
  ss_pg_pipeline_free(pl);
  return status;
}

int ss_repo_run(ss_repo_call *call, ss_pg *pg, ss_repo_result *out, ss_error *err) {
  const ss_statement *st = call->st;
  PGresult *res;
  int k, attempt;
  /* only rows nothing is checked on can be handed on before they all came */
  int stream = call->stream && st->check == SS_CHECK_NONE && st->returns == SS_RET_ROWS;
  memset(out, 0, sizeof *out);
  for (k = 0; k < call->n; k++) {
    const ss_value *id;
    int parts;
    if (st->params[k].kind != SS_V_PARTITION) continue;
    if ((parts = ss_repo_partitions(pg, err)) < 0) return -1;
    id = &call->values[st->params[k].of - 1];
    call->values[k] = ss_int(ss_partition_key(id->as.str.s, id->as.str.len, parts));
  }
  if (st->returns == SS_RET_PAGE) {
    if (st->check != SS_CHECK_NONE && pre_check(call, pg, err)) return -1;
    return run_page(call, pg, out, err);
  }
  for (attempt = 0;; attempt++) {
    if (st->check != SS_CHECK_NONE && pre_check(call, pg, err)) return -1;
    if (!(res = run_sql(pg, st->sql, call->values, call->n, stream, err))) return -1;
    /* No row, though there should be one: the row the check saw changed
     * before the statement ran, or the document that made create's INSERT
     * do nothing was committed after the statement's snapshot was taken.
     * A new statement (and check) sees what changed. */
    if ((st->check != SS_CHECK_NONE || st->returns == SS_RET_CREATED) && PQntuples(res) == 0) {
      PQclear(res);
      if (attempt < 3) continue;
      ss_error_set(err, SS_ERR_POSTGRES, "the %s kept changing while this call ran; try again", st->entity);
      ss_strlcpy(err->code, "40001", sizeof err->code); /* serialization_failure: a retry may succeed */
      return -1;
    }
    break;
  }
  out->rows = res;
  if (stream) {
    out->stream = pg;
    return 0;
  }
  out->affected = affected_of(res);
  switch (st->returns) {
  case SS_RET_AFFECTED:
  case SS_RET_DONE:
    ss_repo_result_clear(out);
    return st->returns == SS_RET_DONE && out->affected == 0 ? not_found(call, err) : 0;
  case SS_RET_ROWS:
  case SS_RET_PAGE:
    return 0;
  default:
    break;
  }
  /* one row: ROW, PERMITTED, CREATED */
  if (PQntuples(res) == 0) {
    ss_repo_result_clear(out);
    return not_found(call, err);
  }
  if (st->returns == SS_RET_PERMITTED && !first_row_flag(res, "permitted")) {
    char user[128], key[128];
    ss_repo_result_clear(out);
    return ss_error_set(err, SS_ERR_ACCESS_DENIED, "user %s may not use %s %s",
                        ss_value_format(&call->values[1], user, sizeof user), st->entity,
                        ss_value_format(&call->values[0], key, sizeof key));
  }
  if (st->returns == SS_RET_CREATED) out->created = first_row_flag(res, "created");
  return 0;
}

void ss_repo_result_clear(ss_repo_result *r) {
  if (r->stream && r->rows && PQresultStatus(r->rows) == PGRES_SINGLE_TUPLE) ss_pg_stream_abandon(r->stream);
  PQclear(r->rows);
  r->rows = NULL;
  r->stream = NULL;
}

/* ---- collections:update ---- */

int ss_repo_collection_update(ss_repo_update *u, const char *const *names, int n, ss_error *err) {
  static const ss_param_spec id = {"id", SS_V_UUID, 1, 0, NULL};
  int j, k, count = 1;
  memset(&u->st, 0, sizeof u->st);
  u->st.repo = "collections";
  u->st.method = "update";
  u->st.entity = "collection";
  u->st.returns = SS_RET_ROW;
  u->st.params[0] = id;
  for (j = 0; j < n; j++) {
    int known = 0;
    for (k = 0; ss_collection_updatable[k].name && !known; k++)
      known = strcmp(ss_collection_updatable[k].name, names[j]) == 0;
    if (!known) {
      ss_error_set(err, SS_ERR_INPUT, "unknown field '%s' in the fields collections:update can set", names[j]);
      ss_strlcpy(err->column, names[j], sizeof err->column);
      return -1;
    }
    for (k = 0; k < j; k++)
      if (strcmp(names[k], names[j]) == 0)
        return ss_error_set(err, SS_ERR_INPUT, "collections:update: field '%s' given twice", names[j]);
  }
  ss_strlcpy(u->sql, "UPDATE collections SET ", sizeof u->sql);
  /* in the table's order, so the same fields make the same statement */
  for (k = 0; ss_collection_updatable[k].name; k++) {
    const ss_param_spec *p = &ss_collection_updatable[k];
    int given = 0;
    for (j = 0; j < n && !given; j++) given = strcmp(names[j], p->name) == 0;
    if (!given) continue;
    /* the id and every updatable column must fit st.params */
    if (count >= SS_MAX_PARAMS)
      return ss_error_set(err, SS_ERR_INPUT, "collections:update: more columns than SS_MAX_PARAMS");
    u->st.params[count] = *p;
    snprintf(u->sql + strlen(u->sql), sizeof u->sql - strlen(u->sql), "%s = $%d, ", p->name, count + 1);
    count++;
  }
  if (count == 1) return ss_error_set(err, SS_ERR_INPUT, "collections:update needs at least one field");
  snprintf(u->sql + strlen(u->sql), sizeof u->sql - strlen(u->sql), "updated_at = now() WHERE id = $1 RETURNING *");
  u->st.sql = u->sql;
  return 0;
}

/* ---- update_chunk_embeddings ---- */

static const ss_param_spec embedding_fields[3] = {{"chunk_id", SS_V_INT, 1, 0, NULL},
                                                  {"collection_id", SS_V_UUID, 1, 0, NULL},
                                                  {"vector_id", SS_V_TEXT, 1, 0, NULL}};

typedef struct {
  const char *collection;
  size_t len;
  int64_t id;
  long item;
} chunk_key;

static int by_chunk(const void *a, const void *b) {
  const chunk_key *x = a, *y = b;
  int c = x->len != y->len ? (x->len < y->len ? -1 : 1) : memcmp(x->collection, y->collection, x->len);
  if (c) return c;
  if (x->id != y->id) return x->id < y->id ? -1 : 1;
  return x->item < y->item ? -1 : x->item > y->item;
}

int ss_repo_embeddings_check(ss_value *items, long n, ss_error *err) {
  long i, bad = n, twice = n;
  int f;
  ss_error first;
  chunk_key *keys;
  ss_error_clear(&first);
  for (i = 0; i < n && bad == n; i++)
    for (f = 0; f < 3; f++)
      if (ss_repo_check_value(&embedding_fields[f], &items[3 * i + f], &first)) {
        bad = i;
        break;
      }
  /* a chunk named twice before the first bad item: the later naming is reported */
  if (bad > 1) {
    if (!(keys = malloc(sizeof *keys * (size_t)bad))) return ss_error_set(err, SS_ERR_MEMORY, "out of memory");
    for (i = 0; i < bad; i++) {
      keys[i].id = items[3 * i].as.i;
      keys[i].collection = items[3 * i + 1].as.str.s;
      keys[i].len = items[3 * i + 1].as.str.len;
      keys[i].item = i;
    }
    qsort(keys, (size_t)bad, sizeof *keys, by_chunk);
    for (i = 1; i < bad; i++)
      if (keys[i].id == keys[i - 1].id && keys[i].len == keys[i - 1].len &&
          memcmp(keys[i].collection, keys[i - 1].collection, keys[i].len) == 0 && keys[i].item < twice)
        twice = keys[i].item;
    free(keys);
  }
  if (twice < n) {
    const ss_value *c = &items[3 * twice + 1];
    return ss_error_set(err, SS_ERR_INPUT, "item %ld: chunk %lld of collection %.*s appears twice", twice + 1,
                        (long long)items[3 * twice].as.i, (int)c->as.str.len, c->as.str.s);
  }
  if (bad < n) return ss_error_set(err, SS_ERR_INPUT, "item %ld: %s", bad + 1, first.message);
  return 0;
}

/* Queues the partition's UPDATE over three array literals of its items
 * (arrays: scratch buffers, reused; the pipeline copies what it queues). */
static int update_partition(ss_pg_pipeline *pl, int part, const ss_value *items, const long *order, long count,
                            ss_buf arrays[3], ss_error *err) {
  char sql[320];
  ss_value params[3];
  long k;
  int f;
  for (f = 0; f < 3; f++) {
    arrays[f].len = 0;
    if (ss_buf_putc(&arrays[f], '{')) goto oom;
  }
  for (k = 0; k < count; k++) {
    const ss_value *it = &items[3 * order[k]];
    char num[SS_VALUE_NUM_SIZE];
    const char *sep = k ? "," : "";
    int len = snprintf(num, sizeof num, "%lld", (long long)it[0].as.i);
    if (ss_buf_append(&arrays[0], sep, strlen(sep)) || ss_buf_append(&arrays[0], num, (size_t)len)) goto oom;
    for (f = 1; f < 3; f++)
      if (ss_buf_append(&arrays[f], sep, strlen(sep)) || ss_array_quote(&arrays[f], it[f].as.str.s, it[f].as.str.len))
        goto oom;
  }
  for (f = 0; f < 3; f++) {
    if (ss_buf_append(&arrays[f], "}", 2)) goto oom; /* with the zero byte libpq reads up to */
    params[f] = ss_array(arrays[f].data, arrays[f].len - 1);
  }
  snprintf(sql, sizeof sql,
           "UPDATE chunks_p%d AS c SET embedding_vector_id = u.vector_id, updated_at = now() "
           "FROM unnest($1::int8[], $2::text[], $3::text[]) AS u(id, collection_id, vector_id) "
           "WHERE c.id = u.id AND c.collection_id = u.collection_id",
           part);
  return queue(pl, sql, params, 3, err);
oom:
  return ss_error_set(err, SS_ERR_MEMORY, "out of memory building the embedding update");
}

int ss_repo_update_embeddings(ss_pg *pg, ss_value *items, long n, long long *updated, ss_error *err) {
  ss_buf arrays[3];
  ss_pg_tx tx;
  ss_pg_pipeline *pl = NULL;
  long *order = NULL, *start = NULL, i;
  size_t k;
  int parts, p, f, status = -1, own_tx;
  *updated = 0;
  if (ss_repo_embeddings_check(items, n, err)) return -1;
  if (n == 0) return 0;
  if ((parts = ss_repo_partitions(pg, err)) < 0) return -1;
  for (f = 0; f < 3; f++) ss_buf_init(&arrays[f]);
  /* the items by partition, in input order within each: a counting sort */
  order = malloc(sizeof *order * (size_t)n);
  start = calloc((size_t)parts + 1, sizeof *start);
  pl = ss_pg_pipeline_new();
  if (!order || !start || !pl) {
    ss_error_set(err, SS_ERR_MEMORY, "out of memory");
    goto done;
  }
  for (i = 0; i < n; i++) start[ss_partition_key(items[3 * i + 1].as.str.s, items[3 * i + 1].as.str.len, parts) + 1]++;
  for (p = 0; p < parts; p++) start[p + 1] += start[p];
  for (i = 0; i < n; i++) {
    p = ss_partition_key(items[3 * i + 1].as.str.s, items[3 * i + 1].as.str.len, parts);
    order[start[p]++] = i;
  }
  /* start[p] is now where partition p + 1 begins */
  for (p = 0; p < parts; p++) {
    long from = p ? start[p - 1] : 0;
    if (start[p] == from) continue;
    if (update_partition(pl, p, items, order + from, start[p] - from, arrays, err)) goto done;
  }
  /* All or nothing: on an idle connection the pipeline's one group is one
   * implicit transaction; inside an open one a savepoint keeps a failure
   * to this call (ss_pg_tx_begin refuses a failed transaction). */
  own_tx = ss_pg_transaction_status(pg) != PQTRANS_IDLE;
  if (own_tx && ss_pg_tx_begin(pg, &tx, NULL, err)) goto done;
  if (ss_pg_pipeline_run(pg, pl, err)) {
    unnumber(err);
    if (own_tx) ss_pg_tx_end(pg, &tx, 0, err);
    goto done;
  }
  for (k = 0; k < ss_pg_pipeline_count(pl); k++) *updated += affected_of(*ss_pg_pipeline_slot(pl, k));
  status = own_tx ? ss_pg_tx_end(pg, &tx, 1, err) : 0;
done:
  for (f = 0; f < 3; f++) ss_buf_free(&arrays[f]);
  ss_pg_pipeline_free(pl);
  free(order);
  free(start);
  if (status) *updated = 0;
  return status;
}

/* ---- verify_password ---- */

int ss_repo_login_check(ss_repo_login *l, const ss_value *username, const ss_value *password, ss_error *err) {
  static const ss_param_spec password_spec = {"password", SS_V_TEXT, 1, 0, NULL};
  ss_value pw = *password;
  l->hash[0] = '\0';
  if (ss_repo_check_value(&password_spec, &pw, err)) return -1;
  return ss_repo_check(&l->lookup, ss_statement_find("users", "_password_hash"), username, err);
}

int ss_repo_login_lookup(ss_repo_login *l, ss_pg *pg, ss_error *err) {
  ss_repo_result r;
  if (ss_repo_run(&l->lookup, pg, &r, err)) return -1;
  if (PQntuples(r.rows) == 1 && !PQgetisnull(r.rows, 0, 0))
    ss_strlcpy(l->hash, PQgetvalue(r.rows, 0, 0), sizeof l->hash);
  ss_repo_result_clear(&r);
  return 0;
}

int ss_repo_login_verify(const ss_repo_login *l, const ss_value *password, ss_error *err) {
  char *pw = password_copy(password, err);
  int ok;
  if (!pw) return -1;
  ok = ss_password_verify(pw, *l->hash ? l->hash : NULL);
  password_free(pw);
  return ok;
}
