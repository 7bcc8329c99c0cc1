-- The extensions and enumerated types of the semantic-search schema.
-- uuid-ossp gives the UUID defaults, pg_trgm the trigram indexes. UUID ids
-- are text, as in the seed design, held by the uuid_text domain to the
-- canonical lowercase form: the chunk partition key hashes that text, so
-- one id must have exactly one spelling.
return {
  up = function(db)
    assert(db.pg:exec [[
      CREATE EXTENSION IF NOT EXISTS "uuid-ossp";
      CREATE EXTENSION IF NOT EXISTS pg_trgm;
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
      DROP EXTENSION pg_trgm;
      DROP EXTENSION "uuid-ossp";
    ]])
  end,
}
