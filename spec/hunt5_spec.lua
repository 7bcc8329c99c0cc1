-- semstore.services.documents and db.pg:acquire: the fifth bug hunt, over
-- the code the fourth hunt's fixes changed. Each test failed on the code it
-- was written against, for the reason its name gives.
require "semstore.compat" () -- Lua 5.4's library under LuaJIT too
local semstore = require "semstore"
local fixture = require "support.services_fixture"

describe("fifth hunt", function()
  local fx = fixture.lazy(lazy_setup, lazy_teardown)

  it("a queued job finished while a plain rebuild runs does not mark the collection 'ready' mid-rebuild", function()
    local col = fx.new_collection()
    assert(fx.svc:index_collection(col.id, fx.corpus(8)))
    local doc = assert(fx.db.pg:query("SELECT id FROM documents WHERE collection_id = $1 LIMIT 1", col.id))[1]
    -- a job the queue holds for one document (a write that failed earlier)
    assert(fx.db.pg:query([[INSERT INTO reindex_jobs (action, collection_id, document_id, next_attempt_at)
      VALUES ('index', $1, $2, now())]], col.id, doc.id))
    local seen, ran
    local rebuilder = assert(semstore.services.documents(fx.db, { batch_size = 4, embedder = fixture.hooked_embedder(function()
      if ran then return end
      local status = assert(fx.db.collections:get_by_uuid(col.id)).status
      if status ~= "processing" then return end
      ran = true
      -- a worker drains the queue while the rebuild is midway
      assert(fx.svc:retry_pending { collection_id = col.id })
      seen = assert(fx.db.collections:get_by_uuid(col.id)).status
    end) }))
    assert(rebuilder:rebuild_vector_index(col.id))
    assert.is_true(ran)
    -- the plain rebuild had nulled every vector id and emptied Qdrant: the
    -- collection is not ready while it runs
    assert.are.equal("processing", seen)
  end)
end)
