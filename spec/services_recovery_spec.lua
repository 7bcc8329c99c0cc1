-- semstore.services.documents (lua/semstore/services.lua) through kill -9
-- mid-rebuild, a worker's dropped connection, pools of one connection, a
-- writer without Redis, and a search before any vector: the second bug
-- hunt's findings, each test failing before its fix.
require "semstore.compat" () -- Lua 5.4's library under LuaJIT too
local semstore = require "semstore"
local helpers = require "support.helpers"
local fixture = require "support.services_fixture"

describe("semstore.services.documents through crashes, dead connections and small pools", function()
  local fx = fixture.lazy(lazy_setup, lazy_teardown)

  it("worker does not spin when its LISTEN connection dies: it waits instead of looping without a pause", function()
    local w = assert(semstore.services.documents(fx.db))
    local rounds, killed = 0, false
    w.retry_pending = function(self, ...)
      rounds = rounds + 1
      if not killed then
        killed = true
        -- the server ends the worker's LISTEN session (a restart, a failover, idle_session_timeout)
        assert(fx.db.pg:query([[SELECT pg_terminate_backend(pid) FROM pg_stat_activity
          WHERE datname = current_database() AND query ILIKE 'LISTEN%' AND pid <> pg_backend_pid()]]))
      end
      return getmetatable(self).retry_pending(self, ...)
    end
    local total = assert(w:worker { timeout = 2, max_wait = 30 })
    assert.are.equal(0, total.failed)
    -- nothing is queued: a worker that waits runs a round or two in 2 s
    assert.is_true(rounds <= 5, "the worker ran " .. rounds .. " rounds in 2 s: it spins on a dead connection")
  end)

  it("a zero-downtime rebuild killed with kill -9 leaves no stale staging that breaks later writes", function()
    local col = fx.new_collection()
    assert(fx.svc:index_collection(col.id, fx.corpus(40)))
    local code = fx.kill_rebuild_midway(col)
    assert.are_not.equal(0, code)
    -- Qdrant restarts empty: the README says writers heal it from the row
    for _, name in ipairs(assert(fx.db.qdrant:list_collections())) do
      if name:find(col.vector_store_name, 1, true) == 1 then assert(fx.db.qdrant:delete_collection(name)) end
    end
    local fresh = assert(semstore.services.documents(fx.db)) -- a new process
    local doc, queued = assert(fresh:create_document(col.id, "written after the rebuild died and Qdrant restarted"))
    local job = assert(fx.db.pg:query("SELECT last_error FROM reindex_jobs WHERE document_id = $1", doc.id))[1]
    assert.is_false(queued, "the write went to the queue: " .. tostring(job and job.last_error))
    fx.make_due(col.id)
    local r = assert(fresh:retry_pending { collection_id = col.id })
    assert.are.equal(0, r.failed)
  end)

  it("a zero-downtime rebuild after one killed right after its alias swap keeps the live collection serving", function()
    local col = fx.new_collection()
    assert(fx.svc:index_collection(col.id, fx.corpus(40)))
    -- the process dies (kill -9) between the alias swap and the row's update
    local code = fx.run_script([[
      local semstore = require "semstore"
      local svc = assert(semstore.services.documents(db, { batch_size = 8 }))
      local update = db.collections.update
      db.collections.update = function(self, id, fields)
        if fields.qdrant_collections and fields.qdrant_staging == semstore.null then
          os.execute("kill -9 " .. io.open("/proc/self/stat"):read("n"))
        end
        return update(self, id, fields)
      end
      svc:rebuild_vector_index(arg[1], { zero_downtime = true })
    ]], { col.id })
    assert.are_not.equal(0, code)
    -- searches work now: the alias points to the filled _v2
    assert(fx.svc:search(col.id, "cats purr", { user_id = fx.owner.id }))
    -- and they must keep working during the next zero-downtime rebuild
    local failures, n = {}, 0
    local s2 = assert(semstore.services.documents(fx.db, { batch_size = 8 }))
    assert(s2:rebuild_vector_index(col.id, { zero_downtime = true, progress = function()
      n = n + 1
      local hits, err = fx.svc:search(col.id, "rockets burn fuel " .. n, { user_id = fx.owner.id })
      if not hits then failures[#failures + 1] = tostring(err) end
    end }))
    assert.is_true(n > 0)
    assert.are.same({}, failures)
    assert.are.equal(fx.chunks_of(col), assert(fx.db.qdrant:count(col.vector_store_name)))
  end)
  it("rebuild_vector_index on a pool of one connection says it needs two, rather than waiting on the one it holds", function()
    local col = fx.new_collection()
    assert(fx.svc:index_collection(col.id, fx.corpus(4)))
    local small = helpers.connect({ size = 1, max_overflow = 0, timeout = 2 }, { postgres = fx.url })
    local s1 = assert(semstore.services.documents(small))
    local report, err = s1:rebuild_vector_index(col.id)
    helpers.assert_all_returned(small)
    small:close()
    assert.is_nil(report)
    assert.are.equal("input", err.kind)
    assert.truthy(err.message:find("needs another: the pool allows 1", 1, true), err.message)
  end)

  it("worker drains the queue on a pool of one connection (DB_POOL_SIZE=1)", function()
    local col = fx.new_collection()
    assert(fx.svc:index_collection(col.id, fx.corpus(2)))
    local doc, queued = assert(fx.while_qdrant_down(function(down)
      return down:create_document(col.id, "queued while Qdrant was down")
    end))
    assert.is_true(queued)
    fx.make_due(col.id)
    local small = helpers.connect({ size = 1, max_overflow = 0, timeout = 1 }, { postgres = fx.url })
    local errors = {}
    local total = assert(assert(semstore.services.documents(small)):worker { timeout = 2.5, on_batch = function(r)
      if r.error then errors[#errors + 1] = tostring(r.error) end
    end })
    helpers.assert_all_returned(small)
    small:close()
    assert.are.same({}, errors)
    assert.are.equal(1, total.done)
    assert.are.equal("completed", assert(fx.db.documents:get(doc.id)).status)
  end)

  it("a write whose search-generation bump failed (Redis unreachable from the writer) is seen by the next search", function()
    local col = fx.new_collection()
    assert(fx.svc:index_collection(col.id, { { content = "cats purr in the sun" } }))
    -- cached: the only document is about cats
    local before = assert(fx.svc:search(col.id, "zebra stripes", { user_id = fx.owner.id }))
    assert.are.equal(1, #before)
    -- another process writes while its Redis connection is down
    local w = helpers.connect(nil, { postgres = fx.url, redis = { url = "redis://127.0.0.1:1/0" } })
    w.cache:set_logger(function() end)
    local doc = assert(assert(semstore.services.documents(w)):create_document(col.id, "zebra stripes are black and white"))
    w:close()
    assert.are.equal("completed", doc.status)
    local after = assert(fx.svc:search(col.id, "zebra stripes", { user_id = fx.owner.id }))
    assert.are.equal(2, #after, "the search served the answer cached before the write")
  end)

  it("search on a collection with no vectors yet gives no hits rather than a Qdrant 404", function()
    local col = fx.new_collection()
    local hits, err = fx.svc:search(col.id, "anything at all", { user_id = fx.owner.id })
    assert.is_nil(err)
    assert.are.same({}, hits)
  end)
end)
