-- Built without blocking writers: CREATE INDEX CONCURRENTLY cannot run in
-- a transaction, so this migration says transaction = false. semstore's
-- advisory lock is session-level and stays held while it commits.
return {
  transaction = false,
  up = function(db)
    assert(db.pg:exec "CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_collection_tags_tag ON collection_tags (tag)")
  end,
  down = function(db)
    assert(db.pg:exec "DROP INDEX CONCURRENTLY IF EXISTS ix_collection_tags_tag")
  end,
}
