#include "repo_statements.h"

#include <stddef.h>
#include <string.h>

#include "repo_rules.h"

/* A parameter the caller gives, required (NULL refused) or optional. */
#define REQ(name, kind) {name, kind, 1, 0, NULL}
#define OPT(name, kind) {name, kind, 0, 0, NULL}
#define ENUM(name, choices, required) {name, SS_V_ENUM, required, 0, choices}
/* Parameters the engine fills in itself. */
#define PARTITION(of) {"partition_key", SS_V_PARTITION, 0, of, NULL}
#define NEW_UUID {"id", SS_V_NEW_UUID, 0, 0, NULL}
#define CURRENT {"status", SS_V_CURRENT, 0, 0, NULL}
#define CHUNK_FIELD(name, kind, required) {#name, kind, required, 0, NULL},

/* The hash never leaves the repository. */
#define USER_COLUMNS "id, username, email, full_name, is_active, is_superuser, created_at, updated_at, last_login"

/* Who may read a collection: its owner, anyone when it is public, and
 * whoever holds a grant on it ($1 is the user). */
#define VISIBLE_TO_USER                                                                             \
  "c.owner_id = $1 OR c.is_public OR EXISTS (SELECT 1 FROM collection_permissions p "              \
  "WHERE p.collection_id = c.id AND p.user_id = $1)"

#define COLLECTION_OWNER "SELECT owner_id AS v FROM collections WHERE id = $1"

const ss_statement ss_statements[] = {
    /* ---- users ---- */
    {.repo = "users", .method = "create", .entity = "user", .returns = SS_RET_ROW,
     .sql = "INSERT INTO users (username, email, full_name, hashed_password) VALUES ($1, $2, $3, $4) "
            "RETURNING " USER_COLUMNS,
     .params = {REQ("username", SS_V_TEXT), REQ("email", SS_V_TEXT), OPT("full_name", SS_V_TEXT),
                REQ("password", SS_V_PASSWORD)}},
    {.repo = "users", .method = "get", .entity = "user", .returns = SS_RET_ROW,
     .sql = "SELECT " USER_COLUMNS " FROM users WHERE id = $1",
     .params = {REQ("id", SS_V_INT)}},
    {.repo = "users", .method = "get_by_username", .entity = "user", .returns = SS_RET_ROW,
     .sql = "SELECT " USER_COLUMNS " FROM users WHERE username = $1",
     .params = {REQ("username", SS_V_TEXT)}},
    {.repo = "users", .method = "update_last_login", .entity = "user", .returns = SS_RET_ROW,
     .sql = "UPDATE users SET last_login = now(), updated_at = now() WHERE id = $1 RETURNING " USER_COLUMNS,
     .params = {REQ("id", SS_V_INT)}},
    /* verify_password's lookup: an inactive user cannot log in */
    {.repo = "users", .method = "_password_hash", .entity = "user", .returns = SS_RET_ROWS,
     .sql = "SELECT hashed_password AS v FROM users WHERE username = $1 AND is_active",
     .params = {REQ("username", SS_V_TEXT)}},

    /* ---- collections ---- */
    {.repo = "collections", .method = "create", .entity = "collection", .returns = SS_RET_ROW,
     .sql = "INSERT INTO collections (id, vector_store_name, name, owner_id, embedding_model, description, "
            "quantization, chunk_size, chunk_overlap, is_public, meta, chunking_strategy, chunking_config) "
            "VALUES ($1::text, 'col_' || replace($1::text, '-', '_'), $2, $3, $4, $5, coalesce($6, 'float16'), "
            "coalesce($7, 1000), coalesce($8, 200), coalesce($9, false), $10, $11, $12) RETURNING *",
     .params = {NEW_UUID, REQ("name", SS_V_TEXT), REQ("owner_id", SS_V_INT),
                REQ("embedding_model", SS_V_TEXT), OPT("description", SS_V_TEXT),
                ENUM("quantization", ss_quantizations, 0), OPT("chunk_size", SS_V_SIZE4),
                OPT("chunk_overlap", SS_V_COUNT4), OPT("is_public", SS_V_BOOL),
                OPT("meta", SS_V_JSON), OPT("chunking_strategy", SS_V_TEXT),
                OPT("chunking_config", SS_V_JSON)}},
    {.repo = "collections", .method = "get_by_uuid", .entity = "collection", .returns = SS_RET_ROW,
     .sql = "SELECT * FROM collections WHERE id = $1",
     .params = {REQ("id", SS_V_UUID)}},
    {.repo = "collections", .method = "get_by_name", .entity = "collection", .returns = SS_RET_ROW,
     .sql = "SELECT * FROM collections WHERE name = $1",
     .params = {REQ("name", SS_V_TEXT)}},
    {.repo = "collections", .method = "get_by_uuid_with_permission_check", .entity = "collection",
     .returns = SS_RET_PERMITTED,
     .sql = "SELECT c.*, (c.owner_id = $2 OR c.is_public OR EXISTS (SELECT 1 FROM collection_permissions p "
            "WHERE p.collection_id = c.id AND p.user_id = $2)) AS permitted FROM collections c WHERE c.id = $1",
     .params = {REQ("id", SS_V_UUID), REQ("user_id", SS_V_INT)}},
    {.repo = "collections", .method = "list_for_user", .entity = "collection", .returns = SS_RET_PAGE,
     .sql = "SELECT c.* FROM collections c WHERE " VISIBLE_TO_USER
            " ORDER BY c.created_at DESC, c.id LIMIT coalesce($3, 50) OFFSET coalesce($2::int8, 0)",
     .count_sql = "SELECT count(*) AS v FROM collections c WHERE " VISIBLE_TO_USER, .count_params = 1,
     .params = {REQ("user_id", SS_V_INT), OPT("offset", SS_V_COUNT), OPT("limit", SS_V_LIMIT)}},
    {.repo = "collections", .method = "update_status", .entity = "collection", .returns = SS_RET_ROW,
     .check = SS_CHECK_TRANSITION, .pre_sql = "SELECT status::text AS v FROM collections WHERE id = $1",
     .check_param = 2, .allowed = ss_collection_transition_ok,
     .sql = "UPDATE collections SET status = $2::collection_status, status_message = $3, updated_at = now() "
            "WHERE id = $1 AND status = $4::collection_status RETURNING *",
     .params = {REQ("id", SS_V_UUID), ENUM("status", ss_collection_statuses, 1),
                OPT("message", SS_V_TEXT), CURRENT}},
    {.repo = "collections", .method = "update_stats", .entity = "collection", .returns = SS_RET_ROW,
     .sql = "UPDATE collections SET document_count = coalesce($2, document_count), "
            "vector_count = coalesce($3, vector_count), total_size_bytes = coalesce($4, total_size_bytes), "
            "chunks_total_count = coalesce($5, chunks_total_count), updated_at = now() WHERE id = $1 RETURNING *",
     .params = {REQ("id", SS_V_UUID), OPT("document_count", SS_V_COUNT4),
                OPT("vector_count", SS_V_COUNT), OPT("total_size_bytes", SS_V_COUNT),
                OPT("chunks_total_count", SS_V_COUNT)}},
    {.repo = "collections", .method = "rename", .entity = "collection", .returns = SS_RET_ROW,
     .check = SS_CHECK_OWNER, .pre_sql = COLLECTION_OWNER, .check_param = 3,
     .sql = "UPDATE collections SET name = $2, updated_at = now() WHERE id = $1 AND owner_id = $3 RETURNING *",
     .params = {REQ("id", SS_V_UUID), REQ("new_name", SS_V_TEXT), REQ("user_id", SS_V_INT)}},
    {.repo = "collections", .method = "delete", .entity = "collection", .returns = SS_RET_DONE,
     .check = SS_CHECK_OWNER, .pre_sql = COLLECTION_OWNER, .check_param = 2,
     .sql = "DELETE FROM collections WHERE id = $1 AND owner_id = $2 RETURNING id",
     .params = {REQ("id", SS_V_UUID), REQ("user_id", SS_V_INT)}},

    /* ---- documents ---- */
    /* The same content in the same collection is one document: a second
     * create returns the first, with created = false. */
    {.repo = "documents", .method = "create", .entity = "document", .returns = SS_RET_CREATED,
     .sql = "WITH ins AS (INSERT INTO documents (collection_id, file_path, file_name, file_size, mime_type, "
            "content_hash, source_id, meta) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) "
            "ON CONFLICT (collection_id, content_hash) DO NOTHING RETURNING *) "
            "SELECT ins.*, true AS created FROM ins UNION ALL "
            "SELECT d.*, false FROM documents d WHERE d.collection_id = $1 AND d.content_hash = $6 "
            "AND NOT EXISTS (SELECT 1 FROM ins)",
     .params = {REQ("collection_id", SS_V_UUID), REQ("file_path", SS_V_TEXT),
                REQ("file_name", SS_V_TEXT), REQ("file_size", SS_V_COUNT),
                OPT("mime_type", SS_V_TEXT), REQ("content_hash", SS_V_TEXT),
                OPT("source_id", SS_V_INT), OPT("meta", SS_V_JSON)}},
    {.repo = "documents", .method = "get", .entity = "document", .returns = SS_RET_ROW,
     .sql = "SELECT * FROM documents WHERE id = $1",
     .params = {REQ("id", SS_V_UUID)}},
    {.repo = "documents", .method = "list_by_collection", .entity = "document", .returns = SS_RET_ROWS,
     .sql = "SELECT * FROM documents WHERE collection_id = $1 "
            "AND ($2::document_status IS NULL OR status = $2::document_status) "
            "ORDER BY created_at, id LIMIT coalesce($4, 100) OFFSET coalesce($3::int8, 0)",
     .params = {REQ("collection_id", SS_V_UUID), ENUM("status", ss_document_statuses, 0),
                OPT("offset", SS_V_COUNT), OPT("limit", SS_V_LIMIT)}},
    {.repo = "documents", .method = "update_status", .entity = "document", .returns = SS_RET_ROW,
     .sql = "UPDATE documents SET status = $2::document_status, error_message = $3, updated_at = now() "
            "WHERE id = $1 RETURNING *",
     .params = {REQ("id", SS_V_UUID), ENUM("status", ss_document_statuses, 1),
                OPT("error_message", SS_V_TEXT)}},
    {.repo = "documents", .method = "delete", .entity = "document", .returns = SS_RET_DONE,
     .sql = "DELETE FROM documents WHERE id = $1 RETURNING id",
     .params = {REQ("id", SS_V_UUID)}},

    /* ---- operations ---- */
    {.repo = "operations", .method = "create", .entity = "operation", .returns = SS_RET_ROW,
     .sql = "INSERT INTO operations (uuid, collection_id, user_id, type, config, meta) "
            "VALUES ($1, $2, $3, $4::operation_type, $5, $6) RETURNING *",
     .params = {NEW_UUID, REQ("collection_id", SS_V_UUID), REQ("user_id", SS_V_INT),
                ENUM("type", ss_operation_types, 1), REQ("config", SS_V_JSON),
                OPT("meta", SS_V_JSON)}},
    {.repo = "operations", .method = "get_by_uuid", .entity = "operation", .returns = SS_RET_ROW,
     .sql = "SELECT * FROM operations WHERE uuid = $1",
     .params = {REQ("uuid", SS_V_UUID)}},
    {.repo = "operations", .method = "update_status", .entity = "operation", .returns = SS_RET_ROW,
     .check = SS_CHECK_TRANSITION, .pre_sql = "SELECT status::text AS v FROM operations WHERE uuid = $1",
     .check_param = 2, .allowed = ss_operation_transition_ok,
     .sql = "UPDATE operations SET status = $2::operation_status, error_message = coalesce($3, error_message), "
            "task_id = coalesce($4, task_id), "
            "started_at = CASE WHEN $2::operation_status = 'processing' THEN coalesce(started_at, now()) "
            "ELSE started_at END, "
            "completed_at = CASE WHEN $2::operation_status IN ('completed', 'failed', 'cancelled') THEN now() "
            "ELSE completed_at END "
            "WHERE uuid = $1 AND status = $5::operation_status RETURNING *",
     .params = {REQ("uuid", SS_V_UUID), ENUM("status", ss_operation_statuses, 1),
                OPT("error_message", SS_V_TEXT), OPT("task_id", SS_V_TEXT), CURRENT}},
    {.repo = "operations", .method = "list_for_collection", .entity = "operation", .returns = SS_RET_ROWS,
     .sql = "SELECT * FROM operations WHERE collection_id = $1 "
            "AND ($2::operation_status IS NULL OR status = $2::operation_status) "
            "ORDER BY created_at DESC, id DESC LIMIT coalesce($4, 100) OFFSET coalesce($3::int8, 0)",
     .params = {REQ("collection_id", SS_V_UUID), ENUM("status", ss_operation_statuses, 0),
                OPT("offset", SS_V_COUNT), OPT("limit", SS_V_LIMIT)}},
    {.repo = "operations", .method = "cancel", .entity = "operation", .returns = SS_RET_ROW,
     .check = SS_CHECK_TRANSITION, .pre_sql = "SELECT status::text AS v FROM operations WHERE uuid = $1",
     .to_state = "cancelled", .allowed = ss_operation_transition_ok,
     .sql = "UPDATE operations SET status = 'cancelled', completed_at = now() "
            "WHERE uuid = $1 AND status = $2::operation_status RETURNING *",
     .params = {REQ("uuid", SS_V_UUID), CURRENT}},

    /* ---- chunks: every statement names the partition, so it touches one ---- */
    {.repo = "chunks", .method = "create_chunk", .entity = "chunk", .returns = SS_RET_ROW,
     .sql = "INSERT INTO chunks (" SS_CHUNK_COLUMNS ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING *",
     .params = {SS_CHUNK_FIELDS(CHUNK_FIELD) PARTITION(1)}},
    {.repo = "chunks", .method = "get_chunk_by_id", .entity = "chunk", .returns = SS_RET_ROW,
     .sql = "SELECT * FROM chunks WHERE id = $1 AND collection_id = $2 AND partition_key = $3",
     .params = {REQ("id", SS_V_INT), REQ("collection_id", SS_V_UUID), PARTITION(2)}},
    {.repo = "chunks", .method = "get_chunks_by_document", .entity = "chunk", .returns = SS_RET_ROWS,
     .sql = "SELECT * FROM chunks WHERE document_id = $1 AND collection_id = $2 AND partition_key = $3 "
            "ORDER BY chunk_index, id LIMIT coalesce($4, 10000)",
     .params = {REQ("document_id", SS_V_UUID), REQ("collection_id", SS_V_UUID), PARTITION(2),
                OPT("limit", SS_V_LIMIT)}},
    /* keyset pagination: the next page starts after the last id seen */
    {.repo = "chunks", .method = "get_chunks_by_collection", .entity = "chunk", .returns = SS_RET_ROWS,
     .sql = "SELECT * FROM chunks WHERE collection_id = $1 AND partition_key = $2 AND id > coalesce($3::int8, 0) "
            "ORDER BY id LIMIT coalesce($4, 100)",
     .params = {REQ("collection_id", SS_V_UUID), PARTITION(1), OPT("after_id", SS_V_INT),
                OPT("limit", SS_V_LIMIT)}},
    {.repo = "chunks", .method = "delete_chunks_by_document", .entity = "chunk", .returns = SS_RET_AFFECTED,
     .sql = "DELETE FROM chunks WHERE document_id = $1 AND collection_id = $2 AND partition_key = $3",
     .params = {REQ("document_id", SS_V_UUID), REQ("collection_id", SS_V_UUID), PARTITION(2)}},
    {.repo = "chunks", .method = "delete_chunks_by_collection", .entity = "chunk", .returns = SS_RET_AFFECTED,
     .sql = "DELETE FROM chunks WHERE collection_id = $1 AND partition_key = $2",
     .params = {REQ("collection_id", SS_V_UUID), PARTITION(1)}},
    {.repo = "chunks", .method = "get_chunk_statistics", .entity = "chunk", .returns = SS_RET_ROW,
     .sql = "SELECT count(*) AS total_chunks, count(embedding_vector_id) AS embedded_chunks, "
            "count(*) - count(embedding_vector_id) AS pending_chunks, count(DISTINCT document_id) AS documents, "
            "coalesce(sum(token_count), 0)::int8 AS total_tokens, "
            "coalesce(sum(octet_length(content)), 0)::int8 AS total_bytes, "
            "avg(octet_length(content))::float8 AS avg_chunk_bytes, "
            "min(created_at) AS first_created_at, max(created_at) AS last_created_at "
            "FROM chunks WHERE collection_id = $1 AND partition_key = $2",
     .params = {REQ("collection_id", SS_V_UUID), PARTITION(1)}},
    {.repo = "chunks", .method = "get_chunks_without_embeddings", .entity = "chunk", .returns = SS_RET_ROWS,
     .sql = "SELECT * FROM chunks WHERE collection_id = $1 AND partition_key = $2 "
            "AND embedding_vector_id IS NULL ORDER BY id LIMIT coalesce($3, 1000)",
     .params = {REQ("collection_id", SS_V_UUID), PARTITION(1), OPT("limit", SS_V_LIMIT)}},

    {.repo = NULL}};

const ss_param_spec ss_chunk_fields[SS_CHUNK_NFIELDS + 1] = {SS_CHUNK_FIELDS(CHUNK_FIELD){NULL, 0, 0, 0, NULL}};
#define CHUNK_NAME(name, kind, required) #name,
const char *const ss_chunk_field_names[SS_CHUNK_NFIELDS + 1] = {SS_CHUNK_FIELDS(CHUNK_NAME) NULL};
/* create_chunk's VALUES lists $1 .. $10: the fields and the key */
_Static_assert(SS_CHUNK_NFIELDS + 1 == 10, "create_chunk's VALUES must list every chunk field and the key");

const ss_statement *ss_statement_find(const char *repo, const char *method) {
  int k;
  for (k = 0; ss_statements[k].repo; k++)
    if (strcmp(ss_statements[k].repo, repo) == 0 && strcmp(ss_statements[k].method, method) == 0)
      return &ss_statements[k];
  return NULL;
}

/* collections:update binds the id and then each column given: all of them
 * must fit a statement's parameters (checked again where they are filled). */
#define COLLECTION_UPDATABLE_COUNT 13
_Static_assert(COLLECTION_UPDATABLE_COUNT + 1 <= SS_MAX_PARAMS, "collections:update needs more parameters");
const ss_param_spec ss_collection_updatable[COLLECTION_UPDATABLE_COUNT + 1] = {
    OPT("name", SS_V_TEXT),
    OPT("description", SS_V_TEXT),
    OPT("embedding_model", SS_V_TEXT),
    ENUM("quantization", ss_quantizations, 0),
    OPT("chunk_size", SS_V_SIZE4),
    OPT("chunk_overlap", SS_V_COUNT4),
    OPT("chunking_strategy", SS_V_TEXT),
    OPT("chunking_config", SS_V_JSON),
    OPT("is_public", SS_V_BOOL),
    OPT("meta", SS_V_JSON),
    OPT("status_message", SS_V_TEXT),
    OPT("qdrant_collections", SS_V_JSON),
    OPT("qdrant_staging", SS_V_JSON),
    {NULL, 0, 0, 0, NULL}};
