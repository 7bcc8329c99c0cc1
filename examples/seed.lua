-- A seeding script for `semstore seed examples/seed.lua [N]`: one user, one
-- collection with a tag, a document and N chunks (default 1000), all in one
-- transaction through the repositories. `db` and `arg` come from the command.
local semstore = require "semstore"

local count = math.tointeger(tonumber(arg[1] or "1000"))
if not count or count < 1 then return nil, "usage: semstore seed examples/seed.lua [N]" end

local summary = assert(db.pg:transaction(function(tx)
  -- the repositories on the transaction's connection: all or nothing
  local repo = semstore.repositories(tx)
  local user = repo.users:get_by_username "demo"
    or assert(repo.users:create { username = "demo", email = "demo@example.org", password = "demo password" })
  -- a name no other run took: the server's random() (LuaJIT's math.random
  -- starts from the same seed in every process)
  local tag = assert(tx:query "SELECT md5(random()::text) AS t")[1].t:sub(1, 12)
  local collection = assert(repo.collections:create {
    name = "demo-" .. os.time() .. "-" .. tag, owner_id = user.id, embedding_model = "bge-small" })
  assert(tx:query("INSERT INTO collection_tags VALUES ($1, $2)", collection.id, "example"))
  local doc = assert(repo.documents:create {
    collection_id = collection.id, file_path = "/demo/a.txt", file_name = "a.txt", file_size = 12 * count,
    content_hash = "demo-" .. collection.id })
  -- chunks stream from an iterator into the collection's partition over COPY
  local i = -1
  assert(repo.chunks:create_chunks_bulk(function()
    i = i + 1
    if i == count then return nil end
    return { collection_id = collection.id, document_id = doc.id, chunk_index = i,
             content = "chunk " .. i, metadata = { i = i } }
  end))
  local stats = assert(repo.chunks:get_chunk_statistics(collection.id))
  local leaf = assert(tx:query("SELECT DISTINCT tableoid::regclass::text AS leaf FROM chunks WHERE collection_id = $1",
    collection.id))
  return { chunks = stats.total_chunks, partition = leaf[1].leaf, partitions = #leaf }
end))
assert(summary.partitions == 1)
print(string.format("seeded %d chunks, all in %s", summary.chunks, summary.partition))
