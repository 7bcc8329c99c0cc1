-- The built-in semantic-search schema, migrated into a database of its own.
require "semstore.compat" () -- Lua 5.4's library under LuaJIT too
local semstore = require "semstore"
local migrate = require "semstore.migrate"
local helpers = require "support.helpers"

-- PostgreSQL's hashtext of a few strings (verified on PostgreSQL 15), and
-- so abs(hashtext) % 100, the partition each lands in
local KNOWN = {
  [""] = -1477818771, a = 1075015857, abc = -785388649, ["hello world"] = 1021725223,
  ["550e8400-e29b-41d4-a716-446655440000"] = 428265705,
}

describe("the built-in schema", function()
  local name, url, db, owner, collection

  setup(function()
    name, url = helpers.fresh_database()
    db = helpers.connect(nil, { postgres = url })
    assert(migrate.up(db))
    owner = assert(db.pg:query([[INSERT INTO users (username, email, hashed_password)
      VALUES ('ada', 'ada@example.org', 'x') RETURNING id]]))[1].id
    collection = assert(db.pg:query([[INSERT INTO collections (name, owner_id, vector_store_name, embedding_model)
      VALUES ('docs', $1, 'col_docs', 'bge-small') RETURNING id, status]], owner))[1]
  end)

  teardown(function()
    helpers.assert_all_returned(db)
    db:close()
    helpers.drop_database(name)
  end)

  it("has every table of the data model and its extensions", function()
    for _, t in ipairs { "users", "api_keys", "collections", "collection_permissions", "collection_sources",
      "documents", "chunks", "operations", "search_logs" } do
      assert.is_true(db.pg:query("SELECT to_regclass($1) IS NOT NULL AS yes", t)[1].yes, t)
    end
    local ext = assert(db.pg:query "SELECT extname FROM pg_extension WHERE extname IN ('uuid-ossp', 'pg_trgm') ORDER BY 1")
    assert.are.same({ "pg_trgm", "uuid-ossp" }, { ext[1].extname, ext[2].extname })
    assert.truthy(collection.id:match "^%x+%-%x+%-4%x+%-%x+%-%x+$", "a v4 UUID by default")
    assert.are.equal("pending", collection.status)
  end)

  it("splits chunks into 100 LIST partitions chunks_p0 .. chunks_p99", function()
    local rows = assert(db.pg:query [[
      SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) AS bound
      FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
      WHERE i.inhparent = 'chunks'::regclass ORDER BY c.relname]])
    assert.are.equal(100, #rows)
    local seen = {}
    for _, r in ipairs(rows) do
      local n = assert(tonumber(r.relname:match "^chunks_p(%d+)$"), r.relname)
      assert.are.equal(string.format("FOR VALUES IN (%d)", n), r.bound)
      seen[n] = true
    end
    for n = 0, 99 do assert.is_true(seen[n], "chunks_p" .. n) end
    assert.are.equal("LIST", db.pg:query("SELECT CASE partstrat WHEN 'l' THEN 'LIST' END AS s FROM pg_partitioned_table WHERE partrelid = 'chunks'::regclass")[1].s)
    assert.are.equal(100, db.pg:query("SELECT chunk_partition_count() AS n")[1].n)
    local pk = assert(db.pg:query "SELECT pg_get_constraintdef(oid) AS def FROM pg_constraint WHERE conrelid = 'chunks'::regclass AND contype = 'p'")
    assert.are.equal("PRIMARY KEY (id, collection_id, partition_key)", pk[1].def)
    local idx = assert(db.pg:query "SELECT indexdef FROM pg_indexes WHERE tablename = 'chunks' ORDER BY indexname")
    local defs = {}
    for i, r in ipairs(idx) do defs[i] = r.indexdef:match "USING btree (.*)$" end
    table.sort(defs)
    -- no index on collection_id alone: (collection_id, chunk_index) leads with it (0006)
    assert.are.same({ "(collection_id, chunk_index)", "(document_id)", "(id, collection_id, partition_key)" }, defs)
    assert.are.equal(0, db.pg:query("SELECT count(*) AS n FROM pg_trigger WHERE tgrelid = 'chunks'::regclass AND NOT tgisinternal")[1].n)
  end)

  it("computes the key as abs(hashtext(collection_id)::int8) % 100", function()
    for s, h in pairs(KNOWN) do
      local r = assert(db.pg:query("SELECT hashtext($1) AS h, chunk_partition_key($1) AS k", s))[1]
      assert.are.equal(h, r.h)
      assert.are.equal(math.abs(h) % 100, r.k, s)
    end
    -- abs() of the int4 -2147483648 is out of range: the cast must come first
    local def = db.pg:query("SELECT pg_get_functiondef('chunk_partition_key(text)'::regprocedure) AS d")[1].d
    assert.truthy(def:find("abs((hashtext(collection_id))::bigint)", 1, true), def)
    assert.are.equal(48, db.pg:query("SELECT (abs((-2147483648)::int4::int8) % 100)::int AS k")[1].k)
  end)

  it("stores a chunk in the partition its key names and rejects a wrong key", function()
    local key = db.pg:query("SELECT chunk_partition_key($1) AS k", collection.id)[1].k
    local row = assert(db.pg:query([[INSERT INTO chunks (collection_id, partition_key, chunk_index, content)
      VALUES ($1, $2, 0, 'hello') RETURNING tableoid::regclass::text AS leaf, id]], collection.id, key))[1]
    assert.are.equal("chunks_p" .. key, row.leaf)
    assert.are.equal("integer", math.type(row.id))
    local wrong = (key + 1) % 100
    local res, err = db.pg:query([[INSERT INTO chunks (collection_id, partition_key, chunk_index, content)
      VALUES ($1, $2, 1, 'misplaced')]], collection.id, wrong)
    assert.is_nil(res)
    assert.are.equal("23514", err.code)
    assert.are.equal("chunks_partition_key_matches", err.constraint)
    res, err = db.pg:query(string.format([[INSERT INTO chunks_p%d (collection_id, partition_key, chunk_index, content)
      VALUES ($1, $2, 1, 'wrong leaf')]], wrong), collection.id, key)
    assert.is_nil(res)
    assert.are.equal("23514", err.code)
    assert.truthy(err.message:find("partition constraint", 1, true))
    assert.are.equal(1, db.pg:query("SELECT count(*) AS n FROM chunks WHERE collection_id = $1", collection.id)[1].n)
  end)

  it("scans exactly one partition when a query gives collection_id and partition_key", function()
    local key = db.pg:query("SELECT chunk_partition_key($1) AS k", collection.id)[1].k
    local plan = assert(db.pg:query([[EXPLAIN SELECT * FROM chunks
      WHERE collection_id = $1 AND partition_key = chunk_partition_key($1)]], collection.id))
    local scanned, leaves = {}, {}
    for _, line in ipairs(plan) do
      for leaf in line["QUERY PLAN"]:gmatch "on (chunks_p%d+)" do
        if not scanned[leaf] then leaves[#leaves + 1], scanned[leaf] = leaf, true end
      end
    end
    assert.are.same({ "chunks_p" .. key }, leaves)
    local all = assert(db.pg:query("EXPLAIN SELECT * FROM chunks WHERE collection_id = $1", collection.id))
    local every = {}
    for _, line in ipairs(all) do
      local leaf = line["QUERY PLAN"]:match "on (chunks_p%d+)"
      if leaf then every[leaf] = true end
    end
    local n = 0
    for _ in pairs(every) do n = n + 1 end
    assert.are.equal(100, n, "without the key every partition is scanned")
  end)

  it("keeps chunks' ids canonical with plain text columns: the foreign keys refuse what the domain did (0006)", function()
    local types = assert(db.pg:query [[SELECT a.attname, format_type(a.atttypid, a.atttypmod) AS t FROM pg_attribute a
      WHERE a.attrelid = 'chunks'::regclass AND a.attname IN ('collection_id', 'document_id') ORDER BY 1]])
    assert.are.same({ "text", "text" }, { types[1].t, types[2].t })
    local key = db.pg:query("SELECT chunk_partition_key($1) AS k", collection.id)[1].k
    for _, bad in ipairs { collection.id:upper(), collection.id .. " ", "not-a-uuid" } do
      local _, err = db.pg:query([[INSERT INTO chunks (collection_id, partition_key, chunk_index, content)
        VALUES ($1, chunk_partition_key($1), 0, 'x')]], bad)
      assert.are.equal("23503", err and err.code, bad)
    end
    local _, err = db.pg:query([[INSERT INTO chunks (collection_id, partition_key, document_id, chunk_index, content)
      VALUES ($1, $2, $3, 0, 'x')]], collection.id, key, "550E8400-E29B-41D4-A716-446655440000")
    assert.are.equal("23503", err and err.code)
    -- and the partition-key CHECK stays
    _, err = db.pg:query("INSERT INTO chunks (collection_id, partition_key, chunk_index, content) VALUES ($1, $2, 0, 'x')",
      collection.id, (key + 1) % 100)
    assert.are.equal("chunks_partition_key_matches", err and err.constraint)
  end)

  it("keeps ids canonical, grants to a user or an API key, and one content hash per collection", function()
    local _, err = db.pg:query([[INSERT INTO collections (id, name, owner_id, vector_store_name, embedding_model)
      VALUES ('550E8400-E29B-41D4-A716-446655440000', 'upper', $1, 'col_upper', 'm')]], owner)
    assert.are.equal("23514", err.code, "uuid_text takes the lowercase form only")
    local key = assert(db.pg:query("INSERT INTO api_keys (user_id, name, key_hash) VALUES ($1, 'ci', 'h1') RETURNING id", owner))[1].id
    _, err = db.pg:query("INSERT INTO collection_permissions (collection_id, user_id, api_key_id, permission) VALUES ($1, $2, $3, 'read')",
      collection.id, owner, key)
    assert.are.equal("check_user_or_api_key", err.constraint)
    _, err = db.pg:query("INSERT INTO collection_permissions (collection_id, permission) VALUES ($1, 'read')", collection.id)
    assert.are.equal("check_user_or_api_key", err.constraint)
    assert(db.pg:query("INSERT INTO collection_permissions (collection_id, api_key_id, permission) VALUES ($1, $2, 'write')", collection.id, key))
    _, err = db.pg:query("INSERT INTO collection_permissions (collection_id, permission, user_id) VALUES ($1, 'bogus', $2)", collection.id, owner)
    assert.are.equal("22P02", err.code, "permission is an enum")
    local doc = [[INSERT INTO documents (collection_id, file_path, file_name, file_size, content_hash)
      VALUES ($1, '/a.txt', 'a.txt', 10, 'sha-1') RETURNING id, status]]
    local d = assert(db.pg:query(doc, collection.id))[1]
    assert.are.equal("pending", d.status)
    _, err = db.pg:query(doc, collection.id)
    assert.are.equal("23505", err.code)
    assert.are.equal("ix_documents_collection_content_hash", err.constraint)
  end)

  it("cascades a deleted collection to its documents, chunks, grants and operations", function()
    local c = assert(db.pg:query([[INSERT INTO collections (name, owner_id, vector_store_name, embedding_model)
      VALUES ('doomed', $1, 'col_doomed', 'm') RETURNING id]], owner))[1].id
    local d = assert(db.pg:query([[INSERT INTO documents (collection_id, file_path, file_name, file_size, content_hash)
      VALUES ($1, '/b', 'b', 1, 'h') RETURNING id]], c))[1].id
    assert(db.pg:query([[INSERT INTO chunks (collection_id, partition_key, document_id, chunk_index, content, metadata)
      VALUES ($1::text, chunk_partition_key($1::text), $2, 0, 'x', $3)]], c, d, { page = 1 }))
    assert(db.pg:query("INSERT INTO operations (collection_id, user_id, type, config) VALUES ($1, $2, 'index', $3)", c, owner, { batch = 8 }))
    assert(db.pg:query("INSERT INTO search_logs (collection_id, user_id, query) VALUES ($1, $2, 'q')", c, owner))
    assert(db.pg:query("DELETE FROM collections WHERE id = $1", c))
    for _, t in ipairs { "documents", "chunks", "operations" } do
      assert.are.equal(0, db.pg:query("SELECT count(*) AS n FROM " .. semstore.quote_ident(t) .. " WHERE collection_id = $1", c)[1].n, t)
    end
    local log = assert(db.pg:query "SELECT collection_id FROM search_logs WHERE query = 'q'")[1]
    assert.are.equal(semstore.null, log.collection_id, "a search log outlives its collection")
  end)
end)
