-- Rebuilding the vector index after Qdrant lost its data:
-- `semstore run examples/rebuild_index.lua` after examples/index_collection.lua.
-- PostgreSQL is the source of truth, so every vector can be made again.
local semstore = require "semstore"
local db = db or assert(semstore.connect {})

local svc = assert(semstore.services.documents(db))
local col = assert(db.collections:get_by_name "recipes")
local owner = assert(db.users:get_by_username "indexer")
local before = assert(svc:search(col.id, "flour and yeast", { user_id = owner.id, limit = 1 }))

-- lose Qdrant's data: the alias's collection goes
local generation = col.qdrant_collections.generation
assert(db.qdrant:delete_collection(col.vector_store_name .. "_v" .. generation))
local _, err = db.qdrant:count(col.vector_store_name)
print("Qdrant after the loss: " .. tostring(err))

-- zero_downtime builds into a new collection and swaps the alias when done
local report = assert(svc:rebuild_vector_index(col.id, { zero_downtime = true }))
local after = assert(svc:search(col.id, "flour and yeast", { user_id = owner.id, limit = 1 }))
print(string.format("rebuilt %d vectors; points now %d; best hit before %s, after %s", report.vectors,
  assert(db.qdrant:count(col.vector_store_name)), before[1].file_name, after[1].file_name))
assert(before[1].chunk_id == after[1].chunk_id)
