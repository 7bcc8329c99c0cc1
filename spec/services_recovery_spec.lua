-- semstore.services.documents (lua/semstore/services.lua) through kill -9
-- mid-rebuild, a worker's dropped connection, pools of one connection, a
-- writer without Redis, and a search before any vector: the second bug
-- hunt's findings, each test failing before its fix.
local semstore = require "semstore"
local migrate = require "semstore.migrate"
local helpers = require "support.helpers"

local standin = os.getenv "SEMSTORE_QDRANT_STANDIN" == "1"

describe("semstore.services.documents through crashes, dead connections and small pools", function()
  local db_name, url, db, svc, owner

  local function faults(method, body)
    return assert(db.qdrant.handle:request(method, "/__standin/faults", body))
  end

  local function new_collection(fields)
    local f = { name = helpers.unique("hunt2", "-"), owner_id = owner.id, embedding_model = "local-hash",
      chunk_size = 120, chunk_overlap = 20 }
    for k, v in pairs(fields or {}) do f[k] = v end
    return assert(db.collections:create(f))
  end

  local function count(sql, ...) return assert(db.pg:query(sql, ...))[1].n end
  local function chunks_of(col) return count("SELECT count(*) AS n FROM chunks WHERE collection_id = $1", col.id) end
  local function make_due(collection_id)
    assert(db.pg:query("UPDATE reindex_jobs SET next_attempt_at = now() WHERE collection_id = $1", collection_id))
  end

  local function corpus(n)
    local topics = { "cats purr and sleep in the sun", "the database keeps rows in pages on disk",
      "bread needs flour water salt and yeast", "rockets burn fuel to reach orbit" }
    local docs = {}
    for i = 1, n do
      docs[i] = { content = string.format("Note %d. %s. More about %s, item %d.", i, topics[i % 4 + 1], topics[i % 4 + 1], i),
                  file_name = "note" .. i .. ".txt", metadata = { topic = i % 4 + 1 } }
    end
    return docs
  end

  -- runs `body` (Lua source) through `semstore run` against this spec's
  -- database, with arg[1] = collection id; returns the exit code, out, err
  local function run_script(body, col_id, env)
    local dir = helpers.tmpdir()
    helpers.write_file(dir .. "/script.lua", body)
    local e = { DATABASE_URL = url }
    for k, v in pairs(env or {}) do e[k] = v end
    local code, out, err = helpers.cli({ "run", dir .. "/script.lua", col_id }, { env = e })
    helpers.rmdir(dir)
    return code, out, err
  end

  lazy_setup(function()
    db_name, url = helpers.fresh_database()
    db = helpers.connect(nil, { postgres = url })
    assert(migrate.up(db))
    owner = assert(db.users:create { username = "owner", email = "owner@example.org", password = "pw" })
    svc = assert(semstore.services.documents(db, { batch_size = 16 }))
  end)

  lazy_teardown(function()
    if standin then db.qdrant.handle:request("DELETE", "/__standin/faults") end
    helpers.assert_all_returned(db)
    db:close()
    helpers.drop_database(db_name)
  end)

  it("worker does not spin when its LISTEN connection dies: it waits instead of looping without a pause", function()
    local w = assert(semstore.services.documents(db))
    local rounds, killed = 0, false
    w.retry_pending = function(self, ...)
      rounds = rounds + 1
      if not killed then
        killed = true
        -- the server ends the worker's LISTEN session (a restart, a failover, idle_session_timeout)
        assert(db.pg:query([[SELECT pg_terminate_backend(pid) FROM pg_stat_activity
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
    local col = new_collection()
    assert(svc:index_collection(col.id, corpus(40)))
    local code = run_script([[
      local semstore = require "semstore"
      local svc = assert(semstore.services.documents(db, { batch_size = 4 }))
      local batches = 0
      svc:rebuild_vector_index(arg[1], { zero_downtime = true, progress = function()
        batches = batches + 1
        if batches == 3 then os.execute("kill -9 " .. io.open("/proc/self/stat"):read("n")) end
      end })
    ]], col.id)
    assert.are_not.equal(0, code)
    -- Qdrant restarts empty: the README says writers heal it from the row
    for _, name in ipairs(assert(db.qdrant:list_collections())) do
      if name:find(col.vector_store_name, 1, true) == 1 then assert(db.qdrant:delete_collection(name)) end
    end
    local fresh = assert(semstore.services.documents(db)) -- a new process
    local doc, queued = assert(fresh:create_document(col.id, "written after the rebuild died and Qdrant restarted"))
    local job = assert(db.pg:query("SELECT last_error FROM reindex_jobs WHERE document_id = $1", doc.id))[1]
    assert.is_false(queued, "the write went to the queue: " .. tostring(job and job.last_error))
    make_due(col.id)
    local r = assert(fresh:retry_pending { collection_id = col.id })
    assert.are.equal(0, r.failed)
  end)

  it("a zero-downtime rebuild after one killed right after its alias swap keeps the live collection serving", function()
    local col = new_collection()
    assert(svc:index_collection(col.id, corpus(40)))
    -- the process dies (kill -9) between the alias swap and the row's update
    local code = run_script([[
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
    ]], col.id)
    assert.are_not.equal(0, code)
    -- searches work now: the alias points to the filled _v2
    assert(svc:search(col.id, "cats purr", { user_id = owner.id }))
    -- and they must keep working during the next zero-downtime rebuild
    local failures, n = {}, 0
    local s2 = assert(semstore.services.documents(db, { batch_size = 8 }))
    assert(s2:rebuild_vector_index(col.id, { zero_downtime = true, progress = function()
      n = n + 1
      local hits, err = svc:search(col.id, "rockets burn fuel " .. n, { user_id = owner.id })
      if not hits then failures[#failures + 1] = tostring(err) end
    end }))
    assert.is_true(n > 0)
    assert.are.same({}, failures)
    assert.are.equal(chunks_of(col), assert(db.qdrant:count(col.vector_store_name)))
  end)
  it("rebuild_vector_index on a pool of one connection says it needs two, rather than waiting on the one it holds", function()
    local col = new_collection()
    assert(svc:index_collection(col.id, corpus(4)))
    local small = helpers.connect({ size = 1, max_overflow = 0, timeout = 2 }, { postgres = url })
    local s1 = assert(semstore.services.documents(small))
    local report, err = s1:rebuild_vector_index(col.id)
    helpers.assert_all_returned(small)
    small:close()
    assert.is_nil(report)
    assert.are.equal("input", err.kind)
    assert.truthy(err.message:find("needs another: the pool allows 1", 1, true), err.message)
  end)

  it("worker drains the queue on a pool of one connection (DB_POOL_SIZE=1)", function()
    local col = new_collection()
    assert(svc:index_collection(col.id, corpus(2)))
    local down = helpers.connect(nil, { postgres = url, qdrant = { url = "http://127.0.0.1:1", max_retries = 0, connect_timeout = 1 } })
    local doc, queued = assert(assert(semstore.services.documents(down)):create_document(col.id, "queued while Qdrant was down"))
    down:close()
    assert.is_true(queued)
    make_due(col.id)
    local small = helpers.connect({ size = 1, max_overflow = 0, timeout = 1 }, { postgres = url })
    local errors = {}
    local total = assert(assert(semstore.services.documents(small)):worker { timeout = 2.5, on_batch = function(r)
      if r.error then errors[#errors + 1] = tostring(r.error) end
    end })
    helpers.assert_all_returned(small)
    small:close()
    assert.are.same({}, errors)
    assert.are.equal(1, total.done)
    assert.are.equal("completed", assert(db.documents:get(doc.id)).status)
  end)

  it("a write whose search-generation bump failed (Redis unreachable from the writer) is seen by the next search", function()
    local col = new_collection()
    assert(svc:index_collection(col.id, { { content = "cats purr in the sun" } }))
    -- cached: the only document is about cats
    local before = assert(svc:search(col.id, "zebra stripes", { user_id = owner.id }))
    assert.are.equal(1, #before)
    -- another process writes while its Redis connection is down
    local w = helpers.connect(nil, { postgres = url, redis = { url = "redis://127.0.0.1:1/0" } })
    w.cache:set_logger(function() end)
    local doc = assert(assert(semstore.services.documents(w)):create_document(col.id, "zebra stripes are black and white"))
    w:close()
    assert.are.equal("completed", doc.status)
    local after = assert(svc:search(col.id, "zebra stripes", { user_id = owner.id }))
    assert.are.equal(2, #after, "the search served the answer cached before the write")
  end)

  it("search on a collection with no vectors yet gives no hits rather than a Qdrant 404", function()
    local col = new_collection()
    local hits, err = svc:search(col.id, "anything at all", { user_id = owner.id })
    assert.is_nil(err)
    assert.are.same({}, hits)
  end)
end)
