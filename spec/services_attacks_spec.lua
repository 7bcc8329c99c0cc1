-- semstore.services.documents (lua/semstore/services.lua) under the attacks
-- of a bug hunt: races with rebuilds and deletes, raising callbacks, bad
-- embedders and options, cache keys. Each test failed before its fix.
require "semstore.compat" () -- Lua 5.4's library under LuaJIT too
local semstore = require "semstore"
local helpers = require "support.helpers"
local fixture = require "support.services_fixture"

describe("semstore.services.documents under attack", function()
  local fx = fixture.lazy(lazy_setup, lazy_teardown)

  local hooked_embedder = fixture.hooked_embedder

  it("index_collection refuses a document array with holes instead of silently dropping what follows the hole", function()
    local col = fx.new_collection()
    local docs = fx.corpus(3)
    local res, err = fx.svc:index_collection(col.id, { docs[1], nil, docs[3] })
    local stored = fx.count("SELECT count(*) AS n FROM documents WHERE collection_id = $1", col.id)
    -- either an input error, or every document given is stored
    assert.is_true((res == nil and err.kind == "input") or stored == 2,
      string.format("res.documents=%s total=%s, %d document(s) stored: document 3 was dropped without a word",
        res and res.documents, res and res.total, stored))
  end)

  it("search with a bad cache_ttl gives an input error, not nil, nil", function()
    local col = fx.new_collection()
    assert(fx.svc:index_collection(col.id, fx.corpus(2)))
    for _, ttl in ipairs { -1, 0, "soon" } do
      local res, err = fx.svc:search(col.id, "cats", { user_id = fx.owner.id, cache_ttl = ttl })
      assert.is_nil(res)
      assert.is_table(err, "search returned nil, nil for cache_ttl = " .. tostring(ttl))
      assert.are.equal("input", err.kind)
    end
  end)

  it("search with a cyclic filter returns an input error instead of raising a stack overflow", function()
    local col = fx.new_collection()
    assert(fx.svc:index_collection(col.id, fx.corpus(2)))
    local cyc = {}
    cyc.must = { cyc }
    local ok, res, err = pcall(fx.svc.search, fx.svc, col.id, "cats", { user_id = fx.owner.id, filter = cyc })
    assert.is_true(ok, "search raised: " .. tostring(res))
    assert.is_nil(res)
    assert.are.equal("input", err.kind)
  end)

  it("search's cache keeps apart filters whose strings contain ';' (no cache key collision)", function()
    local col = fx.new_collection()
    assert(fx.svc:index_collection(col.id, {
      { content = "tagged x: cats purr in the sun", metadata = { tag = "x" } },
      { content = "tagged y: cats purr in the sun", metadata = { tag = "y" } },
      { content = "tagged odd: cats purr in the sun", metadata = { tag = "x;n2;sy" } },
    }))
    local function search(any)
      return assert(fx.svc:search(col.id, "cats purr", { user_id = fx.owner.id, limit = 10,
        filter = { must = { { key = "metadata.tag", match = { any = any } } } } }))
    end
    assert.are.equal(2, #search { "x", "y" })
    local odd = search { "x;n2;sy" } -- only the third document has this tag
    assert.are.equal(1, #odd, "got the cached result of the filter any = {\"x\", \"y\"}")
  end)

  it("a zero-downtime rebuild whose progress callback raises clears qdrant_staging and drops its new collection", function()
    local col = fx.new_collection()
    assert(fx.svc:index_collection(col.id, fx.corpus(40)))
    assert.has_error(function()
      fx.svc:rebuild_vector_index(col.id, { zero_downtime = true, progress = function() error("progress broke") end })
    end, "progress broke")
    col = assert(fx.db.collections:get_by_uuid(col.id))
    assert.are.equal("error", col.status)
    -- writers would go on writing every document twice, into a collection no rebuild will swap in
    assert.are.equal(semstore.null, col.qdrant_staging)
    assert.is_false(fx.db.qdrant:collection_exists(col.vector_store_name .. "_v2"))
    assert.are.equal(0, fx.db.pg:stats().in_use)
  end)

  it("a document deleted while a queued index job embeds it leaves no points behind", function()
    local col = fx.new_collection()
    assert(fx.svc:index_collection(col.id, fx.corpus(4)))
    local doc = assert(fx.while_qdrant_down(function(down)
      return down:create_document(col.id, "deleted while the worker was embedding it")
    end))
    fx.make_due(col.id)
    local deleted = false
    local worker = assert(semstore.services.documents(fx.db, { embedder = hooked_embedder(function()
      if not deleted then
        deleted = true
        -- another process deletes the document now: PostgreSQL rows and Qdrant points (none yet)
        assert(fx.svc:delete_document(doc.id, col.id))
      end
    end) }))
    assert(worker:retry_pending { collection_id = col.id })
    assert.is_true(deleted)
    assert.are.equal(0, fx.count("SELECT count(*) AS n FROM reindex_jobs WHERE collection_id = $1", col.id))
    -- the worker's upsert came after the delete: points of a deleted document, that nothing will remove
    assert.are.equal(fx.chunks_of(col), fx.points(col))
  end)

  it("search results computed while a queued delete was pending are not served from the cache after the queue deletes the points", function()
    local col = fx.new_collection()
    local docs = {}
    for i = 1, 6 do docs[i] = { content = "cats purr and sleep in the sun, note " .. i, file_name = "c" .. i .. ".txt" } end
    assert(fx.svc:index_collection(col.id, docs))
    local q = "cats purr and sleep in the sun"
    local first = assert(fx.svc:search(col.id, q, { user_id = fx.owner.id, limit = 3 }))
    assert.are.equal(3, #first)
    assert(fx.while_qdrant_down(function(down) return down:delete_document(first[1].document_id, col.id) end))
    -- the deleted document's point still ranks in Qdrant and is dropped by _hydrate: 2 hits, cached
    assert.are.equal(2, #assert(fx.svc:search(col.id, q, { user_id = fx.owner.id, limit = 3 })))
    fx.make_due(col.id)
    assert.are.same({ done = 1, failed = 0, left = 0 }, assert(fx.svc:retry_pending { collection_id = col.id }))
    -- the point is gone: a fresh search gives 3 hits again
    local after = assert(fx.svc:search(col.id, q, { user_id = fx.owner.id, limit = 3 }))
    assert.are.equal(3, #after, "served the cached 2-hit result computed before the queued delete ran")
  end)

  it("a malformed sparse vector from the embedder is an embedder error from create_document, not a raised Lua error", function()
    local base = semstore.embedders.local_hash()
    local col = fx.new_collection()
    assert(fx.svc:index_collection(col.id, fx.corpus(2)))
    local bad = assert(semstore.services.documents(fx.db, { embedder = setmetatable({
      dim = base.dim,
      dense = function(_, texts) return base:dense(texts) end,
      sparse = function(_, texts) local out = {} for i = 1, #texts do out[i] = { 1, 2, 3 } end return out end,
    }, { __tostring = function() return "bad-sparse" end }) }))
    local ok, doc, err = pcall(bad.create_document, bad, col.id, "a document whose sparse vector has no indices")
    assert.is_true(ok, "create_document raised: " .. tostring(doc))
    assert.is_truthy(doc)
    assert.is_true(err) -- queued, with an embedder error as the job's last_error
  end)

  it("refuses a collection whose qdrant_collections holds something else, and an embedder of empty vectors", function()
    local col = fx.new_collection()
    assert(fx.db.collections:update(col.id, { qdrant_collections = { "some", "names" } }))
    local res, err = fx.svc:index_collection(col.id, fx.corpus(1))
    assert.is_nil(res)
    assert.are.equal("input", err.kind)
    assert.truthy(err.message:find("qdrant_collections does not hold semstore's Qdrant settings", 1, true), err.message)
    assert.are.equal(0, fx.count("SELECT count(*) AS n FROM documents WHERE collection_id = $1", col.id))
    local empty = assert(semstore.services.documents(fx.db, { embedder = function(texts)
      local out = {}
      for i = 1, #texts do out[i] = {} end
      return out
    end }))
    res, err = empty:create_document(fx.new_collection().id, "text")
    assert.is_nil(res)
    assert.are.equal("embedder", err.kind)
  end)

  it("index_collection honours (or refuses) its batch_size option", function()
    local col = fx.new_collection()
    local _, err = fx.svc:index_collection(col.id, {}, { batch_size = "sixteen" })
    assert.is_table(err, "batch_size = \"sixteen\" was accepted (and batch_size is never used)")
    assert.are.equal("input", err.kind)
  end)

  it("worker refuses a max_wait that is not a number with an input error", function()
    local ok, res, err = pcall(fx.svc.worker, fx.svc, { timeout = 0.2, max_wait = "30" })
    assert.is_true(ok, "worker raised: " .. tostring(res))
    assert.is_nil(res)
    assert.are.equal("input", err.kind)
    assert.are.equal(0, fx.db.pg:stats().in_use)
  end)

  if fixture.standin then
    it("documents whose Qdrant write failed during index_collection are queued, so retry_pending heals them", function()
      local col = fx.new_collection()
      assert(fx.svc:index_collection(col.id, fx.corpus(2)))
      local flaky = fx.no_retries()
      fx.faults("POST", { kind = "503", count = 50, path = "/points" })
      local res, err = assert(semstore.services.documents(flaky)):index_collection(col.id, fx.corpus(10))
      fx.faults("DELETE")
      flaky:close()
      assert.is_nil(res)
      assert.are.equal("qdrant", err.kind)
      local pending = fx.count("SELECT count(*) AS n FROM documents WHERE collection_id = $1 AND status = 'pending'", col.id)
      assert.is_true(pending > 0)
      fx.make_due(col.id)
      assert(fx.svc:retry_pending { collection_id = col.id })
      -- the queue is the durable record of failed Qdrant work: here there was none
      assert.are.equal(0, fx.count("SELECT count(*) AS n FROM documents WHERE collection_id = $1 AND status <> 'completed'", col.id),
        "documents left pending with no reindex job")
      assert.are.equal(fx.chunks_of(col), fx.points(col))
    end)

    it("runs one rebuild of a collection at a time; a failed zero-downtime rebuild leaves the live index serving", function()
      local col = fx.new_collection()
      assert(fx.svc:index_collection(col.id, fx.corpus(40)))
      local flaky = fx.no_retries()
      local a = assert(semstore.services.documents(flaky, { batch_size = 16 }))
      local b = assert(semstore.services.documents(fx.db, { batch_size = 16 }))
      local batches, conflict = 0, nil
      local res, err = a:rebuild_vector_index(col.id, { zero_downtime = true, progress = function()
        batches = batches + 1
        if batches == 1 then
          -- meanwhile another process tries to rebuild the same collection
          local r, e = b:rebuild_vector_index(col.id, { zero_downtime = true })
          assert.is_nil(r)
          conflict = e
          -- and then Qdrant refuses this rebuild's next write
          fx.faults("POST", { kind = "503", count = 1, path = "/points" })
        end
      end })
      fx.faults("DELETE")
      flaky:close()
      assert.are.equal("conflict", conflict.kind)
      assert.is_nil(res, "rebuild A did not fail")
      assert.are.equal("qdrant", err.kind)
      col = assert(fx.db.collections:get_by_uuid(col.id))
      assert.are.equal("degraded", col.status)
      assert.are.equal(1, col.qdrant_collections.generation)
      assert.are.equal(semstore.null, col.qdrant_staging)
      assert.is_false(fx.db.qdrant:collection_exists(col.vector_store_name .. "_v2"))
      local hits, serr = fx.svc:search(col.id, "rockets and orbit", { user_id = fx.owner.id, limit = 3, cache_ttl = 0.001 })
      assert.truthy(hits, serr and serr.message)
      assert.are.equal(3, #hits)
      -- the lock went with the rebuild: the next one runs
      assert(b:rebuild_vector_index(col.id, { zero_downtime = true }))
      assert.are.equal(0, fx.db.pg:stats().in_use)
    end)
    it("documents indexed during a zero-downtime rebuild by a run that began before it are in the new index", function()
      local col = fx.new_collection()
      assert(fx.svc:index_collection(col.id, fx.corpus(40)))
      local dir = helpers.tmpdir()
      -- a long index_collection: it loads the collection row, then its feed is slow
      helpers.write_file(dir .. "/index.lua", [[
        local semstore = require "semstore"
        local svc = assert(semstore.services.documents(db))
        local sent = 0
        local res, err = svc:index_collection(arg[1], function()
          if sent == 0 then
            io.stdout:write("started\n")
            io.stdout:flush()
            os.execute("sleep 2.5")
          end
          sent = sent + 1
          if sent > 3 then return nil end
          return { content = "late document " .. sent .. " about rockets and orbit", file_name = "late" .. sent .. ".txt" }
        end)
        print(res and ("indexed " .. res.documents) or ("failed " .. tostring(err and err.message)))
      ]])
      local proc = assert(io.popen(fx.semstore_run_command(dir .. "/index.lua", col.id) .. " 2>&1"))
      assert.are.equal("started", proc:read "l")
      -- the rebuild copies the 40 documents' chunks at once, then its alias swap takes 6 s; the
      -- other run's documents arrive meanwhile, and go only to the alias's (old) collection
      fx.faults("POST", { kind = "stall", count = 1, path = "/aliases", stall_ms = 6000 })
      assert(fx.svc:rebuild_vector_index(col.id, { zero_downtime = true }))
      local out = proc:read "a"
      proc:close()
      helpers.rmdir(dir)
      assert.truthy(out:find("indexed 3", 1, true), out)
      assert.are.equal(43, fx.count("SELECT count(*) AS n FROM documents WHERE collection_id = $1", col.id))
      assert.are.equal(0, fx.count("SELECT count(*) AS n FROM chunks WHERE collection_id = $1 AND embedding_vector_id IS NULL", col.id))
      assert.are.equal(fx.chunks_of(col), fx.points(col), "the late documents' points went to the collection the swap dropped")
    end)
  end
end)
