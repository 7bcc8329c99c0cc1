-- Documents, and their chunks in a table LIST-partitioned on partition_key.
--
-- The key is abs(hashtext(collection_id)::int8) % CHUNK_PARTITION_COUNT
-- (100 unless that variable says otherwise when this migration first runs;
-- the count is then fixed in chunk_partition_count()). PostgreSQL cannot
-- compute it for the writer: a BEFORE trigger runs after rows are routed,
-- and a generated column cannot be a partition key. So writers compute it
-- (semstore does in C), and a CHECK against chunk_partition_key() keeps any
-- writer from storing a chunk under the wrong key. int8 before abs():
-- abs() of the int4 -2147483648 is out of range.
--
-- No row triggers on chunks: they would be cloned to every partition and
-- force COPY to insert row by row.
local config = require "semstore.config"

local function partition_count()
  local raw = config.getenv "CHUNK_PARTITION_COUNT"
  if raw == nil or raw == "" then return 100 end
  local n = math.tointeger(tonumber(raw))
  if not n or n < 1 or n > 1000 then
    error("CHUNK_PARTITION_COUNT must be an integer from 1 to 1000, not " .. raw, 0)
  end
  return n
end

return {
  up = function(db)
    local n = partition_count()
    assert(db.pg:exec [[
      CREATE TABLE documents (
        id uuid_text PRIMARY KEY DEFAULT uuid_generate_v4()::text,
        collection_id uuid_text NOT NULL REFERENCES collections (id) ON DELETE CASCADE,
        source_id bigint REFERENCES collection_sources (id),
        file_path text NOT NULL,
        file_name text NOT NULL,
        file_size bigint NOT NULL CHECK (file_size >= 0),
        mime_type text,
        content_hash text NOT NULL,
        status document_status NOT NULL DEFAULT 'pending',
        error_message text,
        chunk_count integer NOT NULL DEFAULT 0,
        meta jsonb,
        chunking_started_at timestamptz,
        chunking_completed_at timestamptz,
        created_at timestamptz NOT NULL DEFAULT now(),
        updated_at timestamptz NOT NULL DEFAULT now()
      );
      CREATE INDEX ix_documents_collection_id ON documents (collection_id);
      CREATE INDEX ix_documents_source_id ON documents (source_id);
      CREATE INDEX ix_documents_content_hash ON documents (content_hash);
      CREATE INDEX ix_documents_status ON documents (status);
      CREATE UNIQUE INDEX ix_documents_collection_content_hash ON documents (collection_id, content_hash);
      CREATE INDEX ix_documents_collection_id_chunking_completed_at
        ON documents (collection_id, chunking_completed_at);
      CREATE INDEX ix_documents_file_name_trgm ON documents USING gin (file_name gin_trgm_ops);
    ]])
    local sql = { string.format([[
      CREATE FUNCTION chunk_partition_count() RETURNS integer
        LANGUAGE sql IMMUTABLE PARALLEL SAFE
        RETURN %d;
      CREATE FUNCTION chunk_partition_key(collection_id text) RETURNS integer
        LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
        RETURN (abs(hashtext(collection_id)::int8) %% %d)::integer;

      CREATE TABLE chunks (
        id bigserial,
        collection_id uuid_text NOT NULL REFERENCES collections (id) ON DELETE CASCADE,
        partition_key integer NOT NULL,
        document_id uuid_text REFERENCES documents (id) ON DELETE CASCADE,
        chunk_index integer NOT NULL,
        content text NOT NULL,
        start_offset integer,
        end_offset integer,
        token_count integer,
        embedding_vector_id text,
        metadata jsonb,
        created_at timestamptz NOT NULL DEFAULT now(),
        updated_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (id, collection_id, partition_key),
        CONSTRAINT chunks_partition_key_matches CHECK (partition_key = chunk_partition_key(collection_id))
      ) PARTITION BY LIST (partition_key);
      CREATE INDEX idx_chunks_part_collection ON chunks (collection_id);
      CREATE INDEX idx_chunks_part_document ON chunks (document_id);
      CREATE INDEX idx_chunks_part_chunk_index ON chunks (collection_id, chunk_index);
    ]], n, n) }
    for p = 0, n - 1 do
      sql[#sql + 1] = string.format("CREATE TABLE chunks_p%d PARTITION OF chunks FOR VALUES IN (%d);", p, p)
    end
    assert(db.pg:exec(table.concat(sql, "\n")))
  end,
  down = function(db)
    assert(db.pg:exec [[
      DROP TABLE chunks;
      DROP FUNCTION chunk_partition_key(text);
      DROP FUNCTION chunk_partition_count();
      DROP TABLE documents;
    ]])
  end,
}
