-- semstore.services.documents (lua/semstore/services.lua): the fourth bug
-- hunt over the workflows, after the third hunt's fixes. Each test failed
-- on the code it was written against, for the reason its name gives.
require "semstore.compat" () -- Lua 5.4's library under LuaJIT too
local semstore = require "semstore"
local core = require "semstore.core"
local fixture = require "support.services_fixture"

describe("semstore.services.documents, fourth hunt", function()
  local fx = fixture.lazy(lazy_setup, lazy_teardown)

  it("a sparse embedder's NaN value is an embedder error and leaves the collection 'error', not a Qdrant failure queued for ever", function()
    local col = fx.new_collection()
    local base = semstore.embedders.local_hash()
    local bad = assert(semstore.services.documents(fx.db, { embedder = setmetatable({
      dim = base.dim,
      dense = function(_, texts) return base:dense(texts) end,
      sparse = function(_, texts)
        local out = {}
        for i = 1, #texts do out[i] = { indices = { 1, 2 }, values = { 0 / 0, 1 } } end
        return out
      end,
    }, { __tostring = function() return "nan-sparse" end }) }))
    local res, err = bad:index_collection(col.id, fx.corpus(2))
    local status = assert(fx.db.collections:get_by_uuid(col.id)).status
    local queued = fx.jobs(col.id)
    assert(fx.db.pg:query("DELETE FROM reindex_jobs WHERE collection_id = $1", col.id))
    assert.is_nil(res)
    -- Qdrant was never asked: the embedder's output is what is wrong, and a
    -- queue that retries it fails for ever
    assert.are.equal("embedder", err.kind, string.format("%s (store %s): %s; collection %s, %d jobs queued",
      err.kind, tostring(err.store), err.message, status, queued))
    assert.are.equal("error", status)
  end)

  it("a create_document refused for its content does not fix the new collection's Qdrant settings to its embedder", function()
    local col = fx.new_collection()
    local small = assert(semstore.services.documents(fx.db, { embedder = semstore.embedders.local_hash { dim = 32 } }))
    local doc, err = small:create_document(col.id, "a zero byte \0 here")
    assert.is_nil(doc)
    assert.are.equal("input", err.kind)
    -- nothing was written, nothing indexed: another embedder may still index the collection
    local doc2, err2 = fx.svc:create_document(col.id, "a proper document, by the 256-number embedder")
    assert.is_table(doc2, "refused: " .. tostring(err2 and err2.message))
    assert.are.equal("completed", doc2.status)
  end)

  if fixture.standin then
    it("a plain rebuild empties the live collection even when the row is a generation behind its alias", function()
      local col = fx.new_collection()
      assert(fx.svc:index_collection(col.id, fx.corpus(10)))
      -- the state a rebuild killed between its alias swap and the row's update
      -- leaves (services_recovery_spec): the alias points to _v2, the row says 1
      assert(fx.svc:rebuild_vector_index(col.id, { zero_downtime = true }))
      local s = assert(fx.db.collections:get_by_uuid(col.id)).qdrant_collections
      assert(fx.db.collections:update(col.id, { qdrant_collections = { generation = 1, dense = s.dense, sparse = s.sparse } }))
      -- a point whose chunk PostgreSQL no longer has (a lost delete, say)
      local v = fx.svc.embedder.dense({ "stray" })[1]
      assert(fx.db.qdrant:upsert(col.vector_store_name, { { id = 999999, vector = { dense = v },
        payload = { collection_id = col.id, document_id = "gone" } } }))
      assert(fx.svc:rebuild_vector_index(col.id))
      -- README: "Without zero_downtime it empties the collection first"
      assert.are.equal(fx.chunks_of(col), fx.points(col), "the stray point survived the rebuild")
    end)
  end
  it("after an index_collection killed with kill -9, the queue that finishes its documents leaves the collection 'ready', not 'processing'", function()
    local col = fx.new_collection()
    local code = fx.run_script([[
      local semstore = require "semstore"
      local svc = assert(semstore.services.documents(db, { batch_size = 4 }))
      local calls = 0
      svc:index_collection(arg[1], { { content = string.rep("Words of a long document, sentence after sentence. ", 40) } },
        { progress = function()
          calls = calls + 1
          if calls == 2 then os.execute("kill -9 " .. io.open("/proc/self/stat"):read("n")) end
        end })
    ]], { col.id })
    assert.are_not.equal(0, code)
    assert.are.equal(1, fx.jobs(col.id))
    -- the 300 s lease, as if it had passed
    fx.make_due(col.id)
    local r = assert(fx.svc:retry_pending { collection_id = col.id })
    assert.are.equal(1, r.done)
    assert.are.equal(0, fx.count("SELECT count(*) AS n FROM documents WHERE collection_id = $1 AND status <> 'completed'", col.id))
    assert.are.equal(fx.chunks_of(col), fx.points(col))
    -- README: the queue "heals the collection as a rerun would, and so it does after a run that was killed"
    local status = assert(fx.db.collections:get_by_uuid(col.id)).status
    assert.are.equal("ready", status, "the collection stays '" .. status .. "' for ever")
  end)
  it("a failed zero-downtime rebuild does not leave a queued document's chunks marked embedded, so a rerun completes it with no points", function()
    local col = fx.new_collection()
    assert(fx.svc:index_collection(col.id, fx.corpus(4)))
    local doc, queued = fx.while_qdrant_down(function(down)
      return down:create_document(col.id, "written while Qdrant was down: the queue owes it its points")
    end)
    assert.is_true(queued)
    -- the rebuild copies every chunk to its staging collection, then fails (its progress callback raises)
    assert.has_error(function()
      fx.svc:rebuild_vector_index(col.id, { zero_downtime = true, progress = function() error("stop") end })
    end, "stop")
    -- a rerun of index_collection, which README says heals the collection as the queue would
    assert(fx.svc:index_collection(col.id, {}))
    fx.make_due(col.id)
    assert(fx.svc:retry_pending { collection_id = col.id })
    local mine = assert(fx.db.qdrant:count(col.vector_store_name,
      { must = { { key = "document_id", match = { value = doc.id } } } }))
    assert.are.equal(assert(fx.db.documents:get(doc.id)).status, "completed")
    assert.are.equal(fx.chunks_of(col), fx.points(col), string.format(
      "the document is completed with %d points in the live collection: its chunks' vectors were only in the dropped staging collection", mine))
  end)
  it("after a plain rebuild that failed midway, a rerun of index_collection does not call the half-empty collection 'ready'", function()
    local col = fx.new_collection()
    assert(fx.svc:index_collection(col.id, fx.corpus(40)))
    local svc = assert(semstore.services.documents(fx.db, { batch_size = 4 }))
    local batches = 0
    -- the collection is emptied, then the rebuild dies after two batches
    assert.has_error(function()
      svc:rebuild_vector_index(col.id, { progress = function()
        batches = batches + 1
        if batches == 2 then error("stop") end
      end })
    end, "stop")
    assert.are.equal("error", assert(fx.db.collections:get_by_uuid(col.id)).status)
    -- the README's way to finish an interrupted run: run it again
    assert(fx.svc:index_collection(col.id, {}))
    local status = assert(fx.db.collections:get_by_uuid(col.id)).status
    local points, chunks = fx.points(col), fx.chunks_of(col)
    assert.is_false(status == "ready" and points < chunks, string.format(
      "the collection is '%s' with %d points for %d chunks: every chunk still counts as embedded", status, points, chunks))
  end)
  it("index_collection with an embedder of another dimension is refused without marking the healthy collection 'error'", function()
    local col = fx.new_collection()
    assert(fx.svc:index_collection(col.id, fx.corpus(4)))
    local small = assert(semstore.services.documents(fx.db, { embedder = semstore.embedders.local_hash { dim = 32 } }))
    local res, err = small:index_collection(col.id, fx.corpus(6))
    assert.is_nil(res)
    assert.are.equal("input", err.kind)
    -- README: "An embedder whose dimension differs from the row's is refused before anything is written"
    local after = assert(fx.db.collections:get_by_uuid(col.id))
    assert.are.equal("ready", after.status, "the collection, whose 4 documents are all searchable, is now '"
      .. after.status .. "': " .. tostring(after.status_message))
  end)
  it("rebuild_vector_index{ zero_downtime = 'true' } (a string, from a config) is refused, not run as a rebuild that empties the live index", function()
    local col = fx.new_collection()
    assert(fx.svc:index_collection(col.id, fx.corpus(40)))
    local svc = assert(semstore.services.documents(fx.db, { batch_size = 8 }))
    local empty = 0
    local res, err = svc:rebuild_vector_index(col.id, { zero_downtime = "true", progress = function()
      local hits = fx.svc:search(col.id, "rockets burn fuel " .. empty, { user_id = fx.owner.id, limit = 20 })
      if not hits or #hits < 20 then empty = empty + 1 end
    end })
    if res then
      assert.is_true(res.zero_downtime, string.format(
        "zero_downtime = 'true' ran a plain rebuild: %d searches during it saw a partial index", empty))
    else
      assert.are.equal("input", err.kind)
    end
  end)
  it("index_collection whose progress callback raises releases its documents' jobs, as a returned failure does, not after the 300 s lease", function()
    local col = fx.new_collection()
    -- raises right after the first transaction committed 6 documents, before they are embedded
    assert.has_error(function()
      fx.svc:index_collection(col.id, fx.corpus(6), { progress = function() error("the caller's callback broke") end })
    end, "the caller's callback broke")
    assert.are.equal(0, fx.db.pg:stats().in_use)
    local pending = fx.count("SELECT count(*) AS n FROM documents WHERE collection_id = $1 AND status = 'pending'", col.id)
    assert.are.equal(6, pending)
    local soon = fx.count([[SELECT count(*) AS n FROM reindex_jobs WHERE collection_id = $1
      AND next_attempt_at <= now() + interval '5 seconds']], col.id)
    fx.make_due(col.id)
    assert(fx.svc:retry_pending { collection_id = col.id })
    -- README: what the caller's code raises "goes on up after the same bookkeeping"
    assert.are.equal(pending, soon, "the pending documents wait out the 300 s lease before the queue indexes them")
  end)
  it("a worker whose rounds fail (a read-only standby) while a job is due backs off instead of spinning", function()
    local helpers = require "support.helpers"
    local col = fx.new_collection()
    fx.while_qdrant_down(function(down) assert(down:create_document(col.id, "queued while Qdrant was down")) end)
    fx.make_due(col.id)
    -- every session read-only, as on a hot standby: the claim's UPDATE fails, the wait's SELECT works
    local ro = helpers.connect(nil, { postgres = fx.url .. "?options=-c%20default_transaction_read_only%3Don" })
    local w = assert(semstore.services.documents(ro))
    local total = w:worker { timeout = 1 }
    ro:close()
    assert(fx.db.pg:query("DELETE FROM reindex_jobs WHERE collection_id = $1", col.id))
    assert.is_true(total.errors > 0)
    -- backing off from 0.1 s, a second holds a handful of rounds
    assert.is_true(total.rounds <= 20, string.format("the worker read the queue %d times in 1 s (%d failed: %s)",
      total.rounds, total.errors, tostring(total.error and total.error.message)))
  end)
  it("an index_collection that succeeds after a concurrent call failed leaves the collection 'ready', not stuck in 'error'", function()
    local col = fx.new_collection()
    local other
    -- while A runs, B (another process, say) is refused for a bad document
    local report = assert(fx.svc:index_collection(col.id, fx.corpus(8), { documents_per_transaction = 4, progress = function()
      if not other then other = { fx.svc:index_collection(col.id, { { content = 5 } }) } end
    end }))
    assert.is_nil(other[1])
    assert.are.equal(8, report.documents)
    assert.are.equal(fx.chunks_of(col), fx.points(col))
    -- A's own ending moves error -> ready, which the repository refuses, and _operation ignores it
    local after = assert(fx.db.collections:get_by_uuid(col.id))
    assert.are.equal("ready", after.status, string.format("A indexed everything, and the collection is '%s': %s",
      after.status, tostring(after.status_message)))
  end)
  it("a plain rebuild after a zero-downtime rebuild killed before it noted its staging collection deletes that collection", function()
    local col = fx.new_collection()
    assert(fx.svc:index_collection(col.id, fx.corpus(8)))
    -- the process dies (kill -9) after creating _v2, before the row's qdrant_staging names it
    local code = fx.run_script([[
      local semstore = require "semstore"
      local svc = assert(semstore.services.documents(db))
      local update = db.collections.update
      db.collections.update = function(self, id, fields)
        if type(fields.qdrant_staging) == "table" then os.execute("kill -9 " .. io.open("/proc/self/stat"):read("n")) end
        return update(self, id, fields)
      end
      svc:rebuild_vector_index(arg[1], { zero_downtime = true })
    ]], { col.id })
    assert.are_not.equal(0, code)
    local leftover = col.vector_store_name .. "_v2"
    assert.is_true(fx.db.qdrant:collection_exists(leftover))
    -- README: after a rebuild killed midway, "the next rebuild, with zero_downtime or without, deletes what it left"
    assert(fx.svc:rebuild_vector_index(col.id))
    assert.are.equal(fx.chunks_of(col), fx.points(col))
    assert.is_false(fx.db.qdrant:collection_exists(leftover), leftover .. " stays in Qdrant, a collection nothing uses")
  end)
  it("documents() refuses a cache_ttl the cache cannot take (1e13 s, past 2^53 ms), rather than every search failing", function()
    local col = fx.new_collection()
    assert(fx.svc:index_collection(col.id, fx.corpus(2)))
    local svc, err = semstore.services.documents(fx.db, { cache_ttl = 1e13 })
    if svc then
      local hits, serr = svc:search(col.id, "cats", { user_id = fx.owner.id })
      assert.is_table(hits, "the service took cache_ttl = 1e13, and its searches fail: " .. tostring(serr and serr.message))
    else
      assert.are.equal("input", err.kind)
    end
    -- and search's own option, which it checks the same way
    local hits, serr = fx.svc:search(col.id, "cats", { user_id = fx.owner.id, cache_ttl = 1e13 })
    assert.is_true(hits ~= nil or serr.message:find("cache_ttl", 1, true) ~= nil, tostring(serr and serr.message))
  end)
  it("worker{ max_wait = 2e9 } is refused, or waits in LISTEN, rather than every wait failing into ever longer deaf sleeps", function()
    local helpers = require "support.helpers"
    local col = fx.new_collection()
    -- another process queues a job in a second, and notifies (so a worker that waits properly wakes)
    local dir = helpers.tmpdir()
    helpers.write_file(dir .. "/queue.lua", [[
      require("semstore.core").sleep(0.3)
      assert(db.pg:query("INSERT INTO reindex_jobs (action, collection_id, document_id) VALUES ('delete', $1, $2)",
        arg[1], "00000000-0000-4000-8000-000000000001"))
      assert(db.pg:query("SELECT pg_notify('semstore_reindex', $1)", arg[1]))
    ]])
    os.execute(fx.semstore_run_command(dir .. "/queue.lua", col.id) .. " >/dev/null 2>&1 &")
    local w = assert(semstore.services.documents(fx.db))
    local reported
    -- on_batch hears of the job done (a worker that waited), or of a failed wait
    local ok, res, err = pcall(w.worker, w, { timeout = 2e9, max_wait = 2e9, on_batch = function(r)
      reported = r
      error("stop")
    end })
    -- the job, whoever ran it
    for _ = 1, 30 do
      if fx.jobs(col.id) > 0 then break end
      core.sleep(0.1)
    end
    assert(fx.db.pg:query("DELETE FROM reindex_jobs WHERE collection_id = $1", col.id))
    helpers.rmdir(dir)
    if ok and res == nil then
      assert.are.equal("input", err.kind) -- refused up front: fine
    else
      -- each failed wait is followed by core.sleep(backoff), doubling up to max_wait: a worker deaf for hours
      assert.is_nil(reported and reported.error, "the worker's wait failed: "
        .. tostring(reported and reported.error and reported.error.message))
    end
  end)
  it("an embedder whose dim field is wrong is refused without fixing the new collection's settings to that dim", function()
    local col = fx.new_collection()
    local base = semstore.embedders.local_hash()
    -- says 384, gives local_hash's 256 numbers
    local wrong = assert(semstore.services.documents(fx.db, { embedder = setmetatable({
      dim = 384,
      dense = function(_, texts) return base:dense(texts) end,
      sparse = function(_, texts) return base:sparse(texts) end,
    }, { __tostring = function() return "wrong-dim" end }) }))
    local doc, queued = wrong:create_document(col.id, "written by an embedder with a wrong dim")
    assert(fx.db.pg:query("DELETE FROM reindex_jobs WHERE collection_id = $1", col.id))
    assert.is_true(doc == nil or queued == true) -- its vectors never fit: refused, or at best queued
    -- no vector was ever written; the right embedder (256 numbers, as the wrong one's vectors) must still be able to index
    local res, err = fx.svc:index_collection(col.id, fx.corpus(2))
    assert.is_table(res, "refused: " .. tostring(err and err.message))
  end)
end)
