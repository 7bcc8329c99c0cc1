#include "repo_statements.h"

#include <stddef.h>

#include "repo_rules.h"

/* Where a parameter comes from: the Lua argument n itself, or field `name`
 * of the table that is argument n; required or optional (nil/null). */
#define ARG(n, name, kind) {name, kind, n, 0, 1, 0, NULL}
#define OPT(n, name, kind) {name, kind, n, 0, 0, 0, NULL}
#define FIELD(n, name, kind) {name, kind, n, 1, 1, 0, NULL}
#define OFIELD(n, name, kind) {name, kind, n, 1, 0, 0, NULL}
#define ENUM_ARG(n, name, choices) {name, SS_V_ENUM, n, 0, 1, 0, choices}
#define ENUM_FIELD(n, name, choices, required) {name, SS_V_ENUM, n, 1, required, 0, choices}
#define PARTITION(of) {"partition_key", SS_V_PARTITION, 0, 0, 0, of, NULL}
#define NEW_UUID {"id", SS_V_NEW_UUID, 0, 0, 0, 0, NULL}
#define CURRENT {"status", SS_V_CURRENT, 0, 0, 0, 0, NULL}

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
     .params = {FIELD(1, "username", SS_V_TEXT), FIELD(1, "email", SS_V_TEXT), OFIELD(1, "full_name", SS_V_TEXT),
                FIELD(1, "password", SS_V_PASSWORD)}},
    {.repo = "users", .method = "get", .entity = "user", .returns = SS_RET_ROW,
     .sql = "SELECT " USER_COLUMNS " FROM users WHERE id = $1",
     .params = {ARG(1, "id", SS_V_INT)}},
    {.repo = "users", .method = "get_by_username", .entity = "user", .returns = SS_RET_ROW,
     .sql = "SELECT " USER_COLUMNS " FROM users WHERE username = $1",
     .params = {ARG(1, "username", SS_V_TEXT)}},
    {.repo = "users", .method = "update_last_login", .entity = "user", .returns = SS_RET_ROW,
     .sql = "UPDATE users SET last_login = now(), updated_at = now() WHERE id = $1 RETURNING " USER_COLUMNS,
     .params = {ARG(1, "id", SS_V_INT)}},
    /* verify_password's lookup: an inactive user cannot log in */
    {.repo = "users", .method = "_password_hash", .entity = "user", .returns = SS_RET_ROWS,
     .sql = "SELECT hashed_password AS v FROM users WHERE username = $1 AND is_active",
     .params = {ARG(1, "username", SS_V_TEXT)}},

    /* ---- collections ---- */
    {.repo = "collections", .method = "create", .entity = "collection", .returns = SS_RET_ROW,
     .sql = "INSERT INTO collections (id, vector_store_name, name, owner_id, embedding_model, description, "
            "quantization, chunk_size, chunk_overlap, is_public, meta, chunking_strategy, chunking_config) "
            "VALUES ($1::text, 'col_' || replace($1::text, '-', '_'), $2, $3, $4, $5, coalesce($6, 'float16'), "
            "coalesce($7, 1000), coalesce($8, 200), coalesce($9, false), $10, $11, $12) RETURNING *",
     .params = {NEW_UUID, FIELD(1, "name", SS_V_TEXT), FIELD(1, "owner_id", SS_V_INT),
                FIELD(1, "embedding_model", SS_V_TEXT), OFIELD(1, "description", SS_V_TEXT),
                ENUM_FIELD(1, "quantization", ss_quantizations, 0), OFIELD(1, "chunk_size", SS_V_SIZE4),
                OFIELD(1, "chunk_overlap", SS_V_COUNT4), OFIELD(1, "is_public", SS_V_BOOL),
                OFIELD(1, "meta", SS_V_JSON), OFIELD(1, "chunking_strategy", SS_V_TEXT),
                OFIELD(1, "chunking_config", SS_V_JSON)}},
    {.repo = "collections", .method = "get_by_uuid", .entity = "collection", .returns = SS_RET_ROW,
     .sql = "SELECT * FROM collections WHERE id = $1",
     .params = {ARG(1, "id", SS_V_UUID)}},
    {.repo = "collections", .method = "get_by_name", .entity = "collection", .returns = SS_RET_ROW,
     .sql = "SELECT * FROM collections WHERE name = $1",
     .params = {ARG(1, "name", SS_V_TEXT)}},
    {.repo = "collections", .method = "get_by_uuid_with_permission_check", .entity = "collection",
     .returns = SS_RET_PERMITTED,
     .sql = "SELECT c.*, (c.owner_id = $2 OR c.is_public OR EXISTS (SELECT 1 FROM collection_permissions p "
            "WHERE p.collection_id = c.id AND p.user_id = $2)) AS permitted FROM collections c WHERE c.id = $1",
     .params = {ARG(1, "id", SS_V_UUID), ARG(2, "user_id", SS_V_INT)}},
    {.repo = "collections", .method = "list_for_user", .entity = "collection", .returns = SS_RET_PAGE,
     .sql = "SELECT c.* FROM collections c WHERE " VISIBLE_TO_USER
            " ORDER BY c.created_at DESC, c.id LIMIT coalesce($3, 50) OFFSET coalesce($2::int8, 0)",
     .count_sql = "SELECT count(*) AS v FROM collections c WHERE " VISIBLE_TO_USER, .count_params = 1,
     .params = {ARG(1, "user_id", SS_V_INT), OFIELD(2, "offset", SS_V_COUNT), OFIELD(2, "limit", SS_V_LIMIT)}},
    {.repo = "collections", .method = "update_status", .entity = "collection", .returns = SS_RET_ROW,
     .check = SS_CHECK_TRANSITION, .pre_sql = "SELECT status::text AS v FROM collections WHERE id = $1",
     .check_param = 2, .allowed = ss_collection_transition_ok,
     .sql = "UPDATE collections SET status = $2::collection_status, status_message = $3, updated_at = now() "
            "WHERE id = $1 AND status = $4::collection_status RETURNING *",
     .params = {ARG(1, "id", SS_V_UUID), ENUM_ARG(2, "status", ss_collection_statuses),
                OPT(3, "message", SS_V_TEXT), CURRENT}},
    {.repo = "collections", .method = "update_stats", .entity = "collection", .returns = SS_RET_ROW,
     .sql = "UPDATE collections SET document_count = coalesce($2, document_count), "
            "vector_count = coalesce($3, vector_count), total_size_bytes = coalesce($4, total_size_bytes), "
            "chunks_total_count = coalesce($5, chunks_total_count), updated_at = now() WHERE id = $1 RETURNING *",
     .params = {ARG(1, "id", SS_V_UUID), OFIELD(2, "document_count", SS_V_COUNT4),
                OFIELD(2, "vector_count", SS_V_COUNT), OFIELD(2, "total_size_bytes", SS_V_COUNT),
                OFIELD(2, "chunks_total_count", SS_V_COUNT)}},
    {.repo = "collections", .method = "rename", .entity = "collection", .returns = SS_RET_ROW,
     .check = SS_CHECK_OWNER, .pre_sql = COLLECTION_OWNER, .check_param = 3,
     .sql = "UPDATE collections SET name = $2, updated_at = now() WHERE id = $1 AND owner_id = $3 RETURNING *",
     .params = {ARG(1, "id", SS_V_UUID), ARG(2, "new_name", SS_V_TEXT), ARG(3, "user_id", SS_V_INT)}},
    {.repo = "collections", .method = "delete", .entity = "collection", .returns = SS_RET_DONE,
     .check = SS_CHECK_OWNER, .pre_sql = COLLECTION_OWNER, .check_param = 2,
     .sql = "DELETE FROM collections WHERE id = $1 AND owner_id = $2 RETURNING id",
     .params = {ARG(1, "id", SS_V_UUID), ARG(2, "user_id", SS_V_INT)}},

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
     .params = {FIELD(1, "collection_id", SS_V_UUID), FIELD(1, "file_path", SS_V_TEXT),
                FIELD(1, "file_name", SS_V_TEXT), FIELD(1, "file_size", SS_V_COUNT),
                OFIELD(1, "mime_type", SS_V_TEXT), FIELD(1, "content_hash", SS_V_TEXT),
                OFIELD(1, "source_id", SS_V_INT), OFIELD(1, "meta", SS_V_JSON)}},
    {.repo = "documents", .method = "get", .entity = "document", .returns = SS_RET_ROW,
     .sql = "SELECT * FROM documents WHERE id = $1",
     .params = {ARG(1, "id", SS_V_UUID)}},
    {.repo = "documents", .method = "list_by_collection", .entity = "document", .returns = SS_RET_ROWS,
     .sql = "SELECT * FROM documents WHERE collection_id = $1 "
            "AND ($2::document_status IS NULL OR status = $2::document_status) "
            "ORDER BY created_at, id LIMIT coalesce($4, 100) OFFSET coalesce($3::int8, 0)",
     .params = {ARG(1, "collection_id", SS_V_UUID), ENUM_FIELD(2, "status", ss_document_statuses, 0),
                OFIELD(2, "offset", SS_V_COUNT), OFIELD(2, "limit", SS_V_LIMIT)}},
    {.repo = "documents", .method = "update_status", .entity = "document", .returns = SS_RET_ROW,
     .sql = "UPDATE documents SET status = $2::document_status, error_message = $3, updated_at = now() "
            "WHERE id = $1 RETURNING *",
     .params = {ARG(1, "id", SS_V_UUID), ENUM_ARG(2, "status", ss_document_statuses),
                OPT(3, "error_message", SS_V_TEXT)}},
    {.repo = "documents", .method = "delete", .entity = "document", .returns = SS_RET_DONE,
     .sql = "DELETE FROM documents WHERE id = $1 RETURNING id",
     .params = {ARG(1, "id", SS_V_UUID)}},

    /* ---- operations ---- */
    {.repo = "operations", .method = "create", .entity = "operation", .returns = SS_RET_ROW,
     .sql = "INSERT INTO operations (uuid, collection_id, user_id, type, config, meta) "
            "VALUES ($1, $2, $3, $4::operation_type, $5, $6) RETURNING *",
     .params = {NEW_UUID, FIELD(1, "collection_id", SS_V_UUID), FIELD(1, "user_id", SS_V_INT),
                ENUM_FIELD(1, "type", ss_operation_types, 1), FIELD(1, "config", SS_V_JSON),
                OFIELD(1, "meta", SS_V_JSON)}},
    {.repo = "operations", .method = "get_by_uuid", .entity = "operation", .returns = SS_RET_ROW,
     .sql = "SELECT * FROM operations WHERE uuid = $1",
     .params = {ARG(1, "uuid", SS_V_UUID)}},
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
     .params = {ARG(1, "uuid", SS_V_UUID), ENUM_ARG(2, "status", ss_operation_statuses),
                OFIELD(3, "error_message", SS_V_TEXT), OFIELD(3, "task_id", SS_V_TEXT), CURRENT}},
    {.repo = "operations", .method = "list_for_collection", .entity = "operation", .returns = SS_RET_ROWS,
     .sql = "SELECT * FROM operations WHERE collection_id = $1 "
            "AND ($2::operation_status IS NULL OR status = $2::operation_status) "
            "ORDER BY created_at DESC, id DESC LIMIT coalesce($4, 100) OFFSET coalesce($3::int8, 0)",
     .params = {ARG(1, "collection_id", SS_V_UUID), ENUM_FIELD(2, "status", ss_operation_statuses, 0),
                OFIELD(2, "offset", SS_V_COUNT), OFIELD(2, "limit", SS_V_LIMIT)}},
    {.repo = "operations", .method = "cancel", .entity = "operation", .returns = SS_RET_ROW,
     .check = SS_CHECK_TRANSITION, .pre_sql = "SELECT status::text AS v FROM operations WHERE uuid = $1",
     .to_state = "cancelled", .allowed = ss_operation_transition_ok,
     .sql = "UPDATE operations SET status = 'cancelled', completed_at = now() "
            "WHERE uuid = $1 AND status = $2::operation_status RETURNING *",
     .params = {ARG(1, "uuid", SS_V_UUID), CURRENT}},

    /* ---- chunks: every statement names the partition, so it touches one ---- */
    {.repo = "chunks", .method = "create_chunk", .entity = "chunk", .returns = SS_RET_ROW,
     .sql = "INSERT INTO chunks (collection_id, partition_key, document_id, chunk_index, content, start_offset, "
            "end_offset, token_count, embedding_vector_id, metadata) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING *",
     .params = {FIELD(1, "collection_id", SS_V_UUID), PARTITION(1), OFIELD(1, "document_id", SS_V_UUID),
                FIELD(1, "chunk_index", SS_V_COUNT4), FIELD(1, "content", SS_V_TEXT),
                OFIELD(1, "start_offset", SS_V_COUNT4), OFIELD(1, "end_offset", SS_V_COUNT4),
                OFIELD(1, "token_count", SS_V_COUNT4), OFIELD(1, "embedding_vector_id", SS_V_TEXT),
                OFIELD(1, "metadata", SS_V_JSON)}},
    {.repo = "chunks", .method = "get_chunk_by_id", .entity = "chunk", .returns = SS_RET_ROW,
     .sql = "SELECT * FROM chunks WHERE id = $1 AND collection_id = $2 AND partition_key = $3",
     .params = {ARG(1, "id", SS_V_INT), ARG(2, "collection_id", SS_V_UUID), PARTITION(2)}},
    {.repo = "chunks", .method = "get_chunks_by_document", .entity = "chunk", .returns = SS_RET_ROWS,
     .sql = "SELECT * FROM chunks WHERE document_id = $1 AND collection_id = $2 AND partition_key = $3 "
            "ORDER BY chunk_index, id LIMIT coalesce($4, 10000)",
     .params = {ARG(1, "document_id", SS_V_UUID), ARG(2, "collection_id", SS_V_UUID), PARTITION(2),
                OPT(3, "limit", SS_V_LIMIT)}},
    /* keyset pagination: the next page starts after the last id seen */
    {.repo = "chunks", .method = "get_chunks_by_collection", .entity = "chunk", .returns = SS_RET_ROWS,
     .sql = "SELECT * FROM chunks WHERE collection_id = $1 AND partition_key = $2 AND id > coalesce($3::int8, 0) "
            "ORDER BY id LIMIT coalesce($4, 100)",
     .params = {ARG(1, "collection_id", SS_V_UUID), PARTITION(1), OFIELD(2, "after_id", SS_V_INT),
                OFIELD(2, "limit", SS_V_LIMIT)}},
    {.repo = "chunks", .method = "delete_chunks_by_document", .entity = "chunk", .returns = SS_RET_AFFECTED,
     .sql = "DELETE FROM chunks WHERE document_id = $1 AND collection_id = $2 AND partition_key = $3",
     .params = {ARG(1, "document_id", SS_V_UUID), ARG(2, "collection_id", SS_V_UUID), PARTITION(2)}},
    {.repo = "chunks", .method = "delete_chunks_by_collection", .entity = "chunk", .returns = SS_RET_AFFECTED,
     .sql = "DELETE FROM chunks WHERE collection_id = $1 AND partition_key = $2",
     .params = {ARG(1, "collection_id", SS_V_UUID), PARTITION(1)}},
    {.repo = "chunks", .method = "get_chunk_statistics", .entity = "chunk", .returns = SS_RET_ROW,
     .sql = "SELECT count(*) AS total_chunks, count(embedding_vector_id) AS embedded_chunks, "
            "count(*) - count(embedding_vector_id) AS pending_chunks, count(DISTINCT document_id) AS documents, "
            "coalesce(sum(token_count), 0)::int8 AS total_tokens, "
            "coalesce(sum(octet_length(content)), 0)::int8 AS total_bytes, "
            "avg(octet_length(content))::float8 AS avg_chunk_bytes, "
            "min(created_at) AS first_created_at, max(created_at) AS last_created_at "
            "FROM chunks WHERE collection_id = $1 AND partition_key = $2",
     .params = {ARG(1, "collection_id", SS_V_UUID), PARTITION(1)}},
    {.repo = "chunks", .method = "get_chunks_without_embeddings", .entity = "chunk", .returns = SS_RET_ROWS,
     .sql = "SELECT * FROM chunks WHERE collection_id = $1 AND partition_key = $2 "
            "AND embedding_vector_id IS NULL ORDER BY id LIMIT coalesce($3, 1000)",
     .params = {ARG(1, "collection_id", SS_V_UUID), PARTITION(1), OPT(2, "limit", SS_V_LIMIT)}},

    {.repo = NULL}};

/* collections:update binds the id and then each column given: all of them
 * must fit a statement's parameters (checked again where they are filled). */
#define COLLECTION_UPDATABLE_COUNT 13
_Static_assert(COLLECTION_UPDATABLE_COUNT + 1 <= SS_MAX_PARAMS, "collections:update needs more parameters");
const ss_param_spec ss_collection_updatable[COLLECTION_UPDATABLE_COUNT + 1] = {
    OFIELD(2, "name", SS_V_TEXT),
    OFIELD(2, "description", SS_V_TEXT),
    OFIELD(2, "embedding_model", SS_V_TEXT),
    ENUM_FIELD(2, "quantization", ss_quantizations, 0),
    OFIELD(2, "chunk_size", SS_V_SIZE4),
    OFIELD(2, "chunk_overlap", SS_V_COUNT4),
    OFIELD(2, "chunking_strategy", SS_V_TEXT),
    OFIELD(2, "chunking_config", SS_V_JSON),
    OFIELD(2, "is_public", SS_V_BOOL),
    OFIELD(2, "meta", SS_V_JSON),
    OFIELD(2, "status_message", SS_V_TEXT),
    OFIELD(2, "qdrant_collections", SS_V_JSON),
    OFIELD(2, "qdrant_staging", SS_V_JSON),
    {NULL, 0, 0, 0, 0, 0, NULL}};
