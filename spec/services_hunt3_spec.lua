-- semstore.services.documents (lua/semstore/services.lua): the third bug
-- hunt over the workflows. Each test failed on the code it was written
-- against, for the reason its name gives.
require "semstore.compat" () -- Lua 5.4's library under LuaJIT too
local semstore = require "semstore"
local core = require "semstore.core"
local fixture = require "support.services_fixture"

describe("semstore.services.documents, third hunt", function()
  local fx = fixture.lazy(lazy_setup, lazy_teardown)

  local hooked_embedder = fixture.hooked_embedder

  it("index_collection marks the collection 'error', not 'degraded', when the embedder fails", function()
    local col = fx.new_collection()
    local svc = assert(semstore.services.documents(fx.db, { embedder = hooked_embedder(function(texts)
      if texts[1] ~= "semstore" then error("the model crashed") end
    end) }))
    local res, err = svc:index_collection(col.id, fx.corpus(3))
    -- its queued jobs would fail every later worker: not this test's subject
    assert(fx.db.pg:query("DELETE FROM reindex_jobs WHERE collection_id = $1", col.id))
    assert.is_nil(res)
    assert.are.equal("embedder", err.kind)
    -- README: `error` (a bad document, the embedder, PostgreSQL); `degraded` is for Qdrant failures
    assert.are.equal("error", assert(fx.db.collections:get_by_uuid(col.id)).status)
  end)

  it("worker{timeout} returns near its timeout instead of running every due job first", function()
    local col = fx.new_collection()
    fx.while_qdrant_down(function(down)
      for i = 1, 6 do assert(down:create_document(col.id, "a queued document, number " .. i)) end
    end)
    fx.make_due(col.id)
    -- each job takes 0.5 s (a slow embedder, or a slow Qdrant)
    local slow = assert(semstore.services.documents(fx.db, { embedder = hooked_embedder(function() core.sleep(0.5) end) }))
    local started = core.monotime()
    local total = assert(slow:worker { timeout = 0.5 })
    local took = core.monotime() - started
    fx.make_due(col.id)
    assert(fx.svc:retry_pending { collection_id = col.id })
    -- one job may be under way when the timeout passes; six in a row is 3 s
    assert.is_true(took < 1.6, string.format("worker{ timeout = 0.5 } returned after %.2f s, having run %d jobs",
      took, total.done + total.failed))
  end)

  if fixture.standin then
    it("retry_pending that heals a degraded collection leaves it 'ready', as a rerun would", function()
      local col = fx.new_collection()
      assert(fx.svc:index_collection(col.id, fx.corpus(2)))
      local flaky = fx.no_retries()
      fx.faults("POST", { kind = "503", count = 50, path = "/points" })
      local res = assert(semstore.services.documents(flaky)):index_collection(col.id, fx.corpus(10))
      fx.faults("DELETE")
      flaky:close()
      assert.is_nil(res)
      assert.are.equal("degraded", assert(fx.db.collections:get_by_uuid(col.id)).status)
      fx.make_due(col.id)
      assert(fx.svc:retry_pending { collection_id = col.id })
      -- everything is indexed again
      assert.are.equal(0, fx.jobs(col.id))
      assert.are.equal(fx.chunks_of(col), fx.points(col))
      assert.are.equal(0, fx.count("SELECT count(*) AS n FROM documents WHERE collection_id = $1 AND status <> 'completed'", col.id))
      assert.are.equal("ready", assert(fx.db.collections:get_by_uuid(col.id)).status,
        "the collection is still 'degraded' though the queue healed it")
    end)
  end
  it("hybrid search of a query with no sparse terms ('?', '!!!') answers (dense) instead of a Qdrant format error", function()
    local col = fx.new_collection()
    assert(fx.svc:index_collection(col.id, fx.corpus(4)))
    for _, q in ipairs { "?", "!!!" } do
      assert.are.equal(0, #fx.svc.embedder.sparse({ q })[1].indices) -- nothing for the sparse side
      local hits, err = fx.svc:search(col.id, q, { user_id = fx.owner.id, mode = "hybrid" })
      assert.is_table(hits, "hybrid search of " .. q .. ": " .. tostring(err and err.message))
      assert.is_true(#hits > 0)
    end
  end)

  it("create_document refuses a zero byte in the metadata with an input error, not a PostgreSQL error", function()
    local col = fx.new_collection()
    for _, meta in ipairs { { tag = "a\0b" }, { ["a\0b"] = 1 } } do
      local doc, err = fx.svc:create_document(col.id, "a document with odd metadata", meta)
      assert.is_nil(doc)
      assert.are.equal("input", err.kind, err.kind .. ": " .. err.message)
    end
    assert.are.equal(0, fx.db.pg:stats().in_use)
  end)
  -- fails under LuaJIT (luajit /usr/bin/busted, LUA_CPATH='build-luajit/?.so;;'), where
  -- tostring() of a number keeps 14 digits; passes under Lua 5.4
  it("search's cache keeps apart filters on integers that differ past their 14th digit (LuaJIT)", function()
    local col = fx.new_collection()
    assert(fx.svc:index_collection(col.id, {
      { content = "cats purr in the sun, account one", metadata = { account = 100000000000001 } },
      { content = "cats purr in the sun, account two", metadata = { account = 100000000000002 } },
    }))
    local function search(account)
      local hits = assert(fx.svc:search(col.id, "cats purr", { user_id = fx.owner.id,
        filter = { must = { { key = "metadata.account", match = { value = account } } } } }))
      local out = {}
      for i, h in ipairs(hits) do out[i] = h.content end
      return table.concat(out, " / ")
    end
    assert.are.equal("cats purr in the sun, account one", search(100000000000001))
    -- the second filter's key must not be the first's
    assert.are.equal("cats purr in the sun, account two", search(100000000000002))
  end)
  it("a misspelt upsert option is an input error, not every document queued and the collection degraded", function()
    local col = fx.new_collection()
    local svc, err = semstore.services.documents(fx.db, { upsert = { batchsize = 10 } })
    if svc then
      -- accepted: then the first write must say so, rather than queue the work forever
      local doc, queued = svc:create_document(col.id, "a document written with a misspelt upsert option")
      local last = fx.db.pg:query("SELECT last_error FROM reindex_jobs WHERE collection_id = $1", col.id)
      assert(fx.db.pg:query("DELETE FROM reindex_jobs WHERE collection_id = $1", col.id))
      assert.is_nil(doc, string.format("create_document gave a %s document, queued = %s; the job's last_error: %s",
        doc and doc.status, tostring(queued), last and last[1] and last[1].last_error))
      err = queued
    end
    assert.are.equal("input", err.kind)
    assert.truthy(err.message:find("batchsize", 1, true), err.message)
  end)
  if fixture.standin then
    it("a zero-downtime rebuild whose alias listing fails does not delete the live collection (row a generation behind)", function()
      local col = fx.new_collection()
      assert(fx.svc:index_collection(col.id, fx.corpus(40)))
      -- the state a rebuild killed between its alias swap and the row's update
      -- leaves (services_recovery_spec): the alias points to _v2, the row says 1
      assert(fx.svc:rebuild_vector_index(col.id, { zero_downtime = true }))
      local s = assert(fx.db.collections:get_by_uuid(col.id)).qdrant_collections
      assert.are.equal(2, s.generation)
      assert(fx.db.collections:update(col.id, { qdrant_collections = { generation = 1, dense = s.dense, sparse = s.sparse } }))
      assert(fx.svc:search(col.id, "cats purr", { user_id = fx.owner.id }))
      -- one failed GET /aliases (a 503 once, a client that does not retry)
      local flaky = fx.no_retries()
      fx.faults("POST", { kind = "503", count = 1, path = "/aliases", method = "GET" })
      local failures, n = {}, 0
      local svc = assert(semstore.services.documents(flaky, { batch_size = 8 }))
      local ok, res, err = pcall(svc.rebuild_vector_index, svc, col.id, { zero_downtime = true, progress = function()
        n = n + 1
        local hits, serr = fx.svc:search(col.id, "rockets burn fuel " .. n, { user_id = fx.owner.id })
        if not hits then failures[#failures + 1] = tostring(serr and serr.message) end
      end })
      fx.faults("DELETE")
      flaky:close()
      assert.is_true(ok, tostring(res))
      -- failing the rebuild is fine; searches failing during it (the live index deleted) is not
      assert.are.same({}, failures)
    end)
  end
  it("a service whose embedder has sparse() writes to a collection indexed dense-only, or refuses before writing", function()
    local col = fx.new_collection()
    local base = semstore.embedders.local_hash()
    local dense_only = assert(semstore.services.documents(fx.db, { embedder = function(texts) return base:dense(texts) end }))
    assert(dense_only:index_collection(col.id, fx.corpus(4)))
    local before = fx.count("SELECT count(*) AS n FROM documents WHERE collection_id = $1", col.id)
    -- fx.svc: local_hash, dense and sparse, of the same dimension
    local doc, queued = fx.svc:create_document(col.id, "written by a service with a sparse embedder")
    local last = fx.db.pg:query("SELECT last_error FROM reindex_jobs WHERE collection_id = $1", col.id)
    assert(fx.db.pg:query("DELETE FROM reindex_jobs WHERE collection_id = $1", col.id))
    if doc then
      assert.are.equal("completed", doc.status, string.format("the document is %s, queued = %s: %s", doc.status,
        tostring(queued), tostring(last and last[1] and last[1].last_error)))
    else
      -- refused, like an embedder of another dimension: before anything is written
      assert.are.equal("input", queued.kind)
      assert.are.equal(before, fx.count("SELECT count(*) AS n FROM documents WHERE collection_id = $1", col.id))
    end
  end)
  it("create_document of content already queued says the document is queued (never pending with queued == false)", function()
    local col = fx.new_collection()
    assert(fx.svc:index_collection(col.id, fx.corpus(2)))
    local first, q1 = fx.while_qdrant_down(function(down) return down:create_document(col.id, "written while Qdrant was down") end)
    assert.are.equal("pending", first.status)
    assert.is_true(q1)
    -- Qdrant is back; the same content again is the same document
    local again, q2 = fx.svc:create_document(col.id, "written while Qdrant was down")
    assert.are.equal(first.id, again.id)
    -- README: the document is completed, or pending and queued == true
    assert.is_true(again.status == "completed" or q2 == true,
      string.format("the document is %s and queued = %s", again.status, tostring(q2)))
  end)
  it("an embedder whose vectors are not of its dimension is an embedder error from index_collection, not an input error", function()
    local col = fx.new_collection()
    local base = semstore.embedders.local_hash()
    -- says 256 (base.dim), gives 255 numbers
    local liar = assert(semstore.services.documents(fx.db, { embedder = setmetatable({
      dim = base.dim,
      dense = function(_, texts)
        local v = base:dense(texts)
        for i = 1, #v do table.remove(v[i]) end
        return v
      end,
    }, { __tostring = function() return "liar" end }) }))
    local res, err = liar:index_collection(col.id, fx.corpus(2))
    local queued = fx.jobs(col.id)
    assert(fx.db.pg:query("DELETE FROM reindex_jobs WHERE collection_id = $1", col.id))
    assert.is_nil(res)
    -- the caller's arguments were fine: the embedder's output was not (and the queue retries it forever)
    assert.are.equal("embedder", err.kind, string.format("%s: %s (%d jobs queued)", err.kind, err.message, queued))
  end)
  it("create_document and retry_pending embed in batches of the service's batch_size, not a whole document at once", function()
    local col = fx.new_collection()
    local largest = 0
    local svc = assert(semstore.services.documents(fx.db, { batch_size = 16, embedder = hooked_embedder(function(texts)
      if #texts > largest then largest = #texts end
    end) }))
    -- about 60 chunks of 120 bytes
    local text = string.rep("Words that fill a long document, sentence after sentence. ", 120)
    local doc = assert(svc:create_document(col.id, text))
    assert.is_true(doc.chunk_count > 16)
    assert.is_true(largest <= 16, string.format("the embedder was given %d texts at once (batch_size = 16)", largest))
    -- the queue's path
    largest = 0
    fx.while_qdrant_down(function(down) return assert(down:create_document(col.id, text .. " Another one.")) end)
    fx.make_due(col.id)
    local r = assert(svc:retry_pending { collection_id = col.id })
    assert.are.equal(1, r.done)
    assert.is_true(largest <= 16, string.format("retry_pending gave the embedder %d texts at once (batch_size = 16)", largest))
  end)
  it("the first writer's Qdrant settings are not overwritten by a second writer with another embedder (a race)", function()
    local col = fx.new_collection()
    local a = fx.svc -- local_hash, 256 numbers
    local small = semstore.embedders.local_hash { dim = 32 }
    local raced, first = false, nil
    -- b reads the collection row (no settings yet), then asks its embedder for
    -- its dimension; meanwhile a writes the row's settings and indexes a document
    local b = assert(semstore.services.documents(fx.db, { embedder = setmetatable({
      dense = function(_, texts)
        if not raced then
          raced = true
          first = a:create_document(col.id, "the first writer's document")
        end
        return small:dense(texts)
      end,
      sparse = function(_, texts) return small:sparse(texts) end,
    }, { __tostring = function() return "small" end }) }))
    local doc, err = b:create_document(col.id, "the second writer's document")
    assert(fx.db.pg:query("DELETE FROM reindex_jobs WHERE collection_id = $1", col.id))
    assert.are.equal("completed", first.status) -- a's vectors, 256 numbers, are in Qdrant
    local settings = assert(fx.db.collections:get_by_uuid(col.id)).qdrant_collections
    -- b must be refused (its vectors do not fit what a made), and the row keep a's settings
    assert.are.equal(256, settings.dense.size,
      "the row now says " .. settings.dense.size .. " numbers while Qdrant's collection holds a's 256")
    assert.is_nil(doc)
    assert.are.equal("input", err.kind)
  end)
  it("a plain rebuild after a zero-downtime rebuild killed midway deletes the staging collection it left", function()
    local col = fx.new_collection()
    assert(fx.svc:index_collection(col.id, fx.corpus(40)))
    local code = fx.kill_rebuild_midway(col)
    assert.are_not.equal(0, code)
    local leftover = col.vector_store_name .. "_v2"
    assert.is_true(fx.db.qdrant:collection_exists(leftover))
    -- README: "the next rebuild deletes what it left"
    assert(fx.svc:rebuild_vector_index(col.id))
    assert.are.equal(fx.chunks_of(col), fx.points(col))
    assert.is_false(fx.db.qdrant:collection_exists(leftover), leftover .. " (a partial copy) is still in Qdrant")
  end)
  it("a job that failed more than 1024 times is still rescheduled with its error (no overflow in the backoff)", function()
    local col = fx.new_collection()
    fx.while_qdrant_down(function(down) assert(down:create_document(col.id, "a document Qdrant never takes")) end)
    -- a poison job, days old
    assert(fx.db.pg:query("UPDATE reindex_jobs SET attempts = 1100, last_error = 'old', next_attempt_at = now() WHERE collection_id = $1", col.id))
    local r = assert(fx.while_qdrant_down(function(down) return down:retry_pending { collection_id = col.id } end))
    assert.are.equal(1, r.failed)
    local job = assert(fx.db.pg:query("SELECT last_error FROM reindex_jobs WHERE collection_id = $1", col.id))[1]
    assert(fx.db.pg:query("DELETE FROM reindex_jobs WHERE collection_id = $1", col.id))
    -- 2 ^ 1099 seconds overflows double precision: the UPDATE fails and the attempt goes unrecorded
    assert.are_not.equal("old", job.last_error)
  end)
  it("documents() refuses cache_ttl = math.huge, as search does, rather than every search failing", function()
    local col = fx.new_collection()
    assert(fx.svc:index_collection(col.id, fx.corpus(2)))
    local svc, err = semstore.services.documents(fx.db, { cache_ttl = math.huge })
    if svc then
      local hits, serr = svc:search(col.id, "cats", { user_id = fx.owner.id })
      assert.is_table(hits, "the service took cache_ttl = inf, and its searches fail: " .. tostring(serr and serr.message))
    else
      assert.are.equal("input", err.kind)
    end
  end)
  it("documents() checks its upsert options' values too, as upsert would, before any write", function()
    for _, bad in ipairs { { batch_size = 0 }, { parallel = 1e9 }, { max_bytes = 0 / 0 }, { wait = "yes" } } do
      local svc, err = semstore.services.documents(fx.db, { upsert = bad })
      assert.is_nil(svc)
      assert.are.equal("input", err.kind)
      assert.truthy(err.message:find((next(bad)), 1, true), err.message)
    end
    assert(semstore.services.documents(fx.db, { upsert = { batch_size = 10, parallel = 2, wait = true } }))
  end)
end)
