-- Draining the re-index queue: `semstore run examples/drain_queue.lua`
-- after examples/index_collection.lua. A document written while Qdrant
-- cannot be reached stays in PostgreSQL with a job in reindex_jobs;
-- retry_pending() (or `semstore worker`) indexes it once Qdrant answers.
local semstore = require "semstore"
local db = db or assert(semstore.connect {})

local col = assert(db.collections:get_by_name "recipes")
-- a second handle whose Qdrant is down (nothing listens on port 1)
local down = assert(semstore.connect { name = "qdrant-down", qdrant = { url = "http://127.0.0.1:1", max_retries = 0 } })
-- a text no run wrote before: the server's random() (LuaJIT's math.random
-- starts from the same seed in every process)
local note = assert(db.pg:query "SELECT md5(random()::text) AS t")[1].t:sub(1, 12)
local doc, queued = assert(assert(semstore.services.documents(down)):create_document(col.id,
  string.format("Omelette: beat eggs with salt, cook gently in butter, fold. Note %d-%s.", os.time(), note), { file_name = "omelette.md" }))
down:close()
print(string.format("document %s: %s, queued = %s", doc.id, doc.status, tostring(queued)))

-- the job backs off after its failure; a real worker waits for it, the
-- example makes it due now
assert(db.pg:query("UPDATE reindex_jobs SET next_attempt_at = now() WHERE document_id = $1", doc.id))
local svc = assert(semstore.services.documents(db))
local r = assert(svc:retry_pending())
print(string.format("retry_pending: %d done, %d failed, %d left", r.done, r.failed, r.left))
print("document is now " .. assert(db.documents:get(doc.id)).status)
assert(r.done >= 1)
