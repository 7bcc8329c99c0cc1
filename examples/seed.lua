-- A seeding script for `semstore seed examples/seed.lua [N]`: one user, one
-- collection with N chunks (default 1000) and a tag, all in one transaction.
-- `db` and `arg` come from the command.
local count = math.tointeger(tonumber(arg[1] or "1000"))
if not count or count < 1 then return nil, "usage: semstore seed examples/seed.lua [N]" end

local summary = assert(db.pg:transaction(function(tx)
  local user = assert(tx:query([[
    INSERT INTO users (username, email, hashed_password) VALUES ($1, $2, $3)
    ON CONFLICT (username) DO UPDATE SET updated_at = now() RETURNING id]],
    "demo", "demo@example.org", "not a real hash: db.users arrives with the repositories"))[1]
  local collection = assert(tx:query([[
    INSERT INTO collections (name, owner_id, vector_store_name, embedding_model)
    VALUES ($1, $2, $3, $4) RETURNING id]], "demo-" .. os.time(), user.id, "col_demo_" .. os.time(), "bge-small"))[1]
  assert(tx:query("INSERT INTO collection_tags VALUES ($1, $2)", collection.id, "example"))
  -- one statement for all chunks: the server computes each chunk's
  -- partition key with the function the schema's CHECK uses
  assert(tx:query([[
    INSERT INTO chunks (collection_id, partition_key, chunk_index, content, metadata)
    SELECT $1::text, chunk_partition_key($1::text), i, 'chunk ' || i, jsonb_build_object('i', i)
    FROM generate_series(0, $2::int - 1) AS i]], collection.id, count))
  return assert(tx:query([[
    SELECT count(*) AS chunks, min(tableoid::regclass::text) AS partition
    FROM chunks WHERE collection_id = $1::text AND partition_key = chunk_partition_key($1::text)]], collection.id))[1]
end))
print(string.format("seeded %d chunks, all in %s", summary.chunks, summary.partition))
