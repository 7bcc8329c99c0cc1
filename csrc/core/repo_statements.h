/* The repositories as data: each method of db.users, db.collections,
 * db.documents, db.chunks and db.operations is one row of ss_statements,
 * naming its SQL, its parameters and how each is checked, the check made
 * before it runs, and the shape of what it returns. One engine runs every
 * row (repo.c); only the methods that are more than a statement (the chunk
 * bulk insert in chunks_bulk.c, embedding updates, password checks, field
 * updates in repo.c) have code of their own. Which argument of a Lua call
 * fills which parameter is the binding's business (csrc/lua/repositories.c),
 * not the table's. */
#ifndef SEMSTORE_REPO_STATEMENTS_H
#define SEMSTORE_REPO_STATEMENTS_H

typedef enum {
  SS_V_TEXT,      /* UTF-8 text without zero bytes */
  SS_V_UUID,      /* canonical lowercase UUID */
  SS_V_INT,       /* any 64-bit integer */
  SS_V_COUNT,     /* integer >= 0 (a bigint column) */
  SS_V_COUNT4,    /* integer 0..2147483647 (an integer column) */
  SS_V_SIZE4,     /* integer 1..2147483647 */
  SS_V_LIMIT,     /* integer 1..SS_MAX_LIMIT */
  SS_V_BOOL,
  SS_V_JSON,      /* JSON text */
  SS_V_ENUM,      /* one of `choices` */
  SS_V_PASSWORD,  /* text, bound as its libxcrypt hash */
  SS_V_NEW_UUID,  /* not read: a fresh version 4 UUID */
  SS_V_PARTITION, /* not read: the partition key of parameter `of` */
  SS_V_CURRENT    /* not read: the value the pre-check read (guards against races) */
} ss_param_kind;

#define SS_MAX_LIMIT 10000
#define SS_MAX_PARAMS 14

typedef struct {
  const char *name;   /* the name in errors, and the field a caller fills it from */
  unsigned char kind; /* ss_param_kind */
  unsigned char required; /* NULL is refused */
  unsigned char of;   /* SS_V_PARTITION: the 1-based parameter holding the collection id */
  const char *const *choices; /* SS_V_ENUM */
} ss_param_spec;

typedef enum {
  SS_RET_ROW,      /* the first row, or a not_found error */
  SS_RET_ROWS,     /* every row */
  SS_RET_AFFECTED, /* the number of rows changed */
  SS_RET_DONE,     /* success, or a not_found error when no row changed */
  SS_RET_CREATED,  /* the row and whether it was created (its boolean column `created`) */
  SS_RET_PAGE,     /* every row, and the count that count_sql gives */
  SS_RET_PERMITTED /* the row when its boolean column `permitted` is true, else access_denied */
} ss_return_shape;

typedef enum {
  SS_CHECK_NONE,
  /* pre_sql reads the owner of parameter 1's row: it must equal parameter `check_param` */
  SS_CHECK_OWNER,
  /* pre_sql reads the status of parameter 1's row: moving it to parameter
   * `check_param` (or to `to_state`) must be allowed by `allowed` */
  SS_CHECK_TRANSITION
} ss_check_kind;

typedef struct {
  const char *repo, *method, *sql;
  ss_param_spec params[SS_MAX_PARAMS];
  unsigned char returns;
  const char *count_sql;        /* SS_RET_PAGE: run with the first count_params parameters */
  unsigned char count_params;
  unsigned char check;          /* ss_check_kind */
  const char *pre_sql;          /* run with parameter 1, gives one row of one column */
  unsigned char check_param;
  const char *to_state;
  int (*allowed)(const char *from, const char *to);
  /* what "not_found" says, e.g. "collection" */
  const char *entity;
} ss_statement;

/* Ends with a row whose repo is NULL. */
extern const ss_statement ss_statements[];

/* The row of repo.method, or NULL. */
const ss_statement *ss_statement_find(const char *repo, const char *method);

/* A chunk's fields, in one place: what create_chunk takes, what a bulk
 * row holds (chunks_bulk.c), and with partition_key after them, the
 * column list of create_chunk's INSERT and of the bulk's COPY. X(name,
 * kind, required) for each. */
#define SS_CHUNK_FIELDS(X)                                                                          \
  X(collection_id, SS_V_UUID, 1)                                                                    \
  X(document_id, SS_V_UUID, 0)                                                                      \
  X(chunk_index, SS_V_COUNT4, 1)                                                                    \
  X(content, SS_V_TEXT, 1)                                                                          \
  X(start_offset, SS_V_COUNT4, 0)                                                                   \
  X(end_offset, SS_V_COUNT4, 0)                                                                     \
  X(token_count, SS_V_COUNT4, 0)                                                                    \
  X(embedding_vector_id, SS_V_TEXT, 0)                                                              \
  X(metadata, SS_V_JSON, 0)
#define SS_CHUNK_COLUMN_(name, kind, required) #name ", "
/* "collection_id, document_id, ..., metadata, partition_key" */
#define SS_CHUNK_COLUMNS SS_CHUNK_FIELDS(SS_CHUNK_COLUMN_) "partition_key"
#define SS_CHUNK_INDEX_(name, kind, required) SS_CHUNK_##name,
enum { SS_CHUNK_FIELDS(SS_CHUNK_INDEX_) SS_CHUNK_NFIELDS };
/* The fields as specs, in that order, ending with a NULL name; and their
 * names alone, ending with NULL. */
extern const ss_param_spec ss_chunk_fields[SS_CHUNK_NFIELDS + 1];
extern const char *const ss_chunk_field_names[SS_CHUNK_NFIELDS + 1];

/* The columns db.collections:update(id, fields) may set, and their kinds;
 * ends with a NULL name. */
extern const ss_param_spec ss_collection_updatable[];

#endif
