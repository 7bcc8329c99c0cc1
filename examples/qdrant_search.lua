-- db.qdrant on its own: a collection with a dense and a sparse vector, a
-- batched upsert, a filtered dense query and a hybrid query fused by RRF.
-- Run it with QDRANT_URL set (scripts/demo.sh starts the Qdrant stand-in):
--   lua5.4 examples/qdrant_search.lua
local semstore = require "semstore"

local db = assert(semstore.connect { name = "qdrant-example" })
local q = db.qdrant
local name = "example_docs"

if q:collection_exists(name) then assert(q:delete_collection(name)) end
assert(q:create_collection(name, {
  vectors = { dense = { size = 4, distance = "Cosine" } },
  sparse_vectors = { words = { modifier = "idf" } },
}))
assert(q:create_payload_index(name, "topic", "keyword"))

-- Toy vectors: a real application gets them from an embedding model.
local docs = {
  { "postgres tuning guide", "databases", { 0.9, 0.1, 0.0, 0.1 }, { 1, 2 } },
  { "qdrant hybrid search", "search", { 0.1, 0.9, 0.2, 0.0 }, { 3, 4 } },
  { "redis cache patterns", "databases", { 0.7, 0.2, 0.1, 0.3 }, { 5, 1 } },
  { "dense and sparse vectors", "search", { 0.2, 0.8, 0.4, 0.1 }, { 4, 6 } },
}
local points = {}
for i, d in ipairs(docs) do
  points[i] = { id = i, payload = { title = d[1], topic = d[2] },
    vector = { dense = d[3], words = { indices = d[4], values = { 1.0, 0.5 } } } }
end
local report = assert(q:upsert(name, points, { batch_size = 2, parallel = 2 }))
print(string.format("upserted %d points in %d batches (%d retries, %.3f s)", report.points, report.batches,
  report.retries, report.seconds))

print("dense, topic = databases:")
local hits = assert(q:query(name, { query = { 1, 0, 0, 0 }, using = "dense", limit = 2,
  filter = { must = { { key = "topic", match = { value = "databases" } } } } }))
for _, h in ipairs(hits) do print(string.format("  %d  %.4f  %s", h.id, h.score, h.payload.title)) end

print("hybrid (dense + sparse, RRF):")
hits = assert(q:query(name, { fusion = "rrf", limit = 3, prefetch = {
  { query = { 0.1, 1, 0.3, 0 }, using = "dense", limit = 10 },
  { query = { indices = { 4 }, values = { 1.0 } }, using = "words", limit = 10 },
} }))
for _, h in ipairs(hits) do print(string.format("  %d  %.4f  %s", h.id, h.score, h.payload.title)) end

print("points:", q:count(name), "collection status:", assert(q:get_collection(name)).status)
assert(q:delete_collection(name))
db:close()
