-- An application's own migration, applied after semstore's schema:
-- free-form tags on collections.
return {
  up = function(db)
    assert(db.pg:exec [[
      CREATE TABLE collection_tags (
        collection_id uuid_text NOT NULL REFERENCES collections (id) ON DELETE CASCADE,
        tag text NOT NULL,
        PRIMARY KEY (collection_id, tag)
      )
    ]])
  end,
  down = function(db)
    assert(db.pg:exec "DROP TABLE collection_tags")
  end,
}
