-- semstore.services.documents (lua/semstore/services.lua) under a second
-- bug hunt: what the first one (spec/services_attacks_spec.lua) missed.
-- Each test fails on the code as it was when the hunt ran.
local semstore = require "semstore"
local migrate = require "semstore.migrate"
local helpers = require "support.helpers"

local standin = os.getenv "SEMSTORE_QDRANT_STANDIN" == "1"

describe("semstore.services.documents, second hunt", function()
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
    assert.is_false(queued, "the write went to the queue: " .. tostring(
      assert(db.pg:query("SELECT last_error FROM reindex_jobs WHERE document_id = $1", doc.id))[1] and
      db.pg:query("SELECT last_error FROM reindex_jobs WHERE document_id = $1", doc.id)[1].last_error))
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
end)
