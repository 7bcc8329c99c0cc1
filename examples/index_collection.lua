-- Indexing a collection: `semstore run examples/index_collection.lua`.
-- Makes a collection, indexes a few documents (chunked by the collection's
-- chunk_size and chunk_overlap, embedded, upserted to Qdrant), then shows
-- the operation and the collection's counters.
local semstore = require "semstore"
local db = db or assert(semstore.connect {})

local owner = db.users:get_by_username "indexer"
  or assert(db.users:create { username = "indexer", email = "indexer@example.org", password = "indexer password" })
local col = db.collections:get_by_name "recipes"
  or assert(db.collections:create { name = "recipes", owner_id = owner.id, embedding_model = "local-hash-256",
    chunk_size = 200, chunk_overlap = 30 })

local svc = assert(semstore.services.documents(db, { embedder = semstore.embedders.local_hash { dim = 256 } }))
local bar, done = semstore.progress_bar "recipes"
local report = assert(svc:index_collection(col.id, {
  { content = "Bread: mix flour, water, salt and yeast; knead, let it rise twice, bake at 230 degrees.", file_name = "bread.md" },
  { content = "Pancakes: whisk flour, milk and eggs; rest the batter, fry thin in butter.", file_name = "pancakes.md" },
  { content = "Soup: sweat onions, add stock and vegetables, simmer, blend until smooth.", file_name = "soup.md",
    metadata = { vegetarian = true } },
}, { progress = bar }))
done()
local op = assert(db.operations:get_by_uuid(report.operation))
col = assert(db.collections:get_by_uuid(col.id))
print(string.format("operation %s: %s; %d new, %d skipped, %d chunks, %d vectors", op.uuid, op.status,
  report.documents, report.skipped, report.chunks, report.vectors))
print(string.format("collection %s: %s, %d documents, %d vectors", col.name, col.status, col.document_count, col.vector_count))
assert(op.status == "completed" and col.status == "ready")
