-- Bulk loading: `semstore run examples/bulk_load.lua [N]` loads N chunks
-- (default 20,000) spread over four collections with
-- create_chunks_bulk{ parallel = 2 }: two pooled connections copy the
-- partitions at once, and a two-phase commit keeps it all or nothing. Then
-- it shows what a failure in one part does (nothing is left), and what
-- recovery finds (`semstore recover` does the same from the shell).
local semstore = require "semstore"
local db = db or assert(semstore.connect {})

local count = math.tointeger(tonumber(arg and arg[1] or "20000"))
if not count or count < 1 then return nil, "usage: semstore run examples/bulk_load.lua [N]" end

local user = db.users:get_by_username "bulk-demo"
  or assert(db.users:create { username = "bulk-demo", email = "bulk@example.org", password = "bulk demo password" })
local tag = assert(db.pg:query "SELECT md5(random()::text) AS t")[1].t:sub(1, 12)
local collections = {}
for i = 1, 4 do
  collections[i] = assert(db.collections:create { name = "bulk-" .. tag .. "-" .. i, owner_id = user.id,
    embedding_model = "bge-small" }).id
end

-- rows come from an iterator: nothing but the bulk's buffers lives in memory
local function rows(n, poison)
  local i = 0
  return function()
    i = i + 1
    if i > n then return nil end
    return { collection_id = collections[i % #collections + 1], chunk_index = i,
             content = "chunk " .. i .. " " .. string.rep("text ", 40), metadata = { i = i },
             document_id = i == poison and "00000000-0000-4000-8000-000000000000" or nil }
  end
end

local n, _, report = assert(db.chunks:create_chunks_bulk(rows(count), { parallel = 2 }))
print(string.format("loaded %d chunks on %d connections%s", n, report.connections,
  report.fallback and (" (one connection: " .. report.fallback .. ")") or ""))

-- a row the server refuses (a document that does not exist: the foreign
-- key) in one part: every part rolls back
local before = assert(db.pg:query("SELECT count(*) AS n FROM chunks WHERE collection_id = ANY($1)",
  semstore.array(collections)))[1].n
local ok, err = db.chunks:create_chunks_bulk(rows(count, count - 1), { parallel = 2 })
local after = assert(db.pg:query("SELECT count(*) AS n FROM chunks WHERE collection_id = ANY($1)",
  semstore.array(collections)))[1].n
print(string.format("a bad row in one part: %s (%s %s); chunks before %d, after %d", tostring(ok), err.kind,
  err.code, before, after))

local settled = assert(db.chunks:recover_bulk())
print(string.format("recovery: committed %d, rolled back %d", settled.committed, settled.rolled_back))
