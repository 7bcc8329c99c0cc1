-- Less work per chunk row, the table a bulk load writes most (issue 14).
--
-- Dropped, as redundant:
-- - the uuid_text domain on chunks.collection_id and chunks.document_id:
--   each is a foreign key to a uuid_text primary key, so it can only hold
--   a value that passed the domain's regular expression when its parent row
--   was written; the domain ran that expression again on every chunk, twice.
--   The columns become plain text, binary-coercible from the domain, so no
--   row is rewritten; PostgreSQL still rebuilds the indexes that hold them
--   (the primary key and two more), under an exclusive lock on chunks: on a
--   large table, run it when no one writes.
-- - idx_chunks_part_collection (collection_id): the index on
--   (collection_id, chunk_index) leads with the same column and serves
--   every lookup by collection; the lone index was one more to update per
--   row.
--
-- Kept, each worth its price (README "Bulk chunk inserts" measures them):
-- - chunks_partition_key_matches, the partition-key CHECK: without it a
--   writer could store a chunk under the wrong key, where reads by
--   collection would never find it; the schema's integrity promise.
-- - the two foreign keys: a chunk of a deleted collection or document
--   would be an orphan that search hydrates; ON DELETE CASCADE is how a
--   delete reaches the chunks.
-- - the primary key (id, collection_id, partition_key), the index on
--   (collection_id, chunk_index) and the one on document_id: lookups by id,
--   a collection's chunks in order, and a document's (the cascade's own
--   lookup on delete).
return {
  up = function(db)
    assert(db.pg:exec [[
      ALTER TABLE chunks ALTER COLUMN collection_id TYPE text, ALTER COLUMN document_id TYPE text;
      DROP INDEX idx_chunks_part_collection;
    ]])
  end,
  down = function(db)
    assert(db.pg:exec [[
      CREATE INDEX idx_chunks_part_collection ON chunks (collection_id);
      ALTER TABLE chunks ALTER COLUMN collection_id TYPE uuid_text, ALTER COLUMN document_id TYPE uuid_text;
    ]])
  end,
}
