-- The extensions and enumerated types of the semantic-search schema.
-- uuid-ossp gives the UUID defaults, pg_trgm the trigram indexes. UUID ids
-- are text, as in the seed design, held by the uuid_text domain to the
-- canonical lowercase form: the chunk partition key hashes that text, so
-- one id must have exactly one spelling.
--
-- semstore_extensions lists the extensions this migration installed, so
-- that down drops those and leaves alone any that were there before.
local EXTENSIONS = { "uuid-ossp", "pg_trgm" }

return {
  up = function(db)
    assert(db.pg:exec [[
      CREATE TABLE semstore_extensions (name text PRIMARY KEY);
      COMMENT ON TABLE semstore_extensions IS 'extensions installed by semstore''s first migration, dropped by its down step';
    ]])
    for _, name in ipairs(EXTENSIONS) do
      local present = assert(db.pg:query("SELECT count(*) AS n FROM pg_extension WHERE extname = $1", name))[1].n
      if present == 0 then
        assert(db.pg:exec(assert(db.pg:query("SELECT format('CREATE EXTENSION %I', $1::text) AS sql", name))[1].sql))
        assert(db.pg:query("INSERT INTO semstore_extensions VALUES ($1)", name))
      end
    end
    assert(db.pg:exec [[
      CREATE DOMAIN uuid_text AS text
        CHECK (VALUE ~ '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$');
      CREATE TYPE collection_status AS ENUM ('pending', 'ready', 'processing', 'error', 'degraded');
      CREATE TYPE document_status AS ENUM ('pending', 'processing', 'completed', 'failed', 'deleted');
      CREATE TYPE operation_type AS ENUM ('index', 'append', 'reindex', 'remove_source', 'delete');
      CREATE TYPE operation_status AS ENUM ('pending', 'processing', 'completed', 'failed', 'cancelled');
      CREATE TYPE permission_type AS ENUM ('read', 'write', 'admin');
    ]])
  end,
  down = function(db)
    assert(db.pg:exec [[
      DROP TYPE permission_type;
      DROP TYPE operation_status;
      DROP TYPE operation_type;
      DROP TYPE document_status;
      DROP TYPE collection_status;
      DROP DOMAIN uuid_text;
    ]])
    for _, row in ipairs(assert(db.pg:query "SELECT format('DROP EXTENSION %I', name) AS sql FROM semstore_extensions")) do
      assert(db.pg:exec(row.sql))
    end
    assert(db.pg:exec "DROP TABLE semstore_extensions")
  end,
}
