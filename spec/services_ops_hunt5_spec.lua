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
  it("after a plain rebuild killed midway, the queue does not mark the collection 'ready' with chunks left without vectors", function()
    local col = fx.new_collection()
    assert(fx.svc:index_collection(col.id, fx.corpus(12)))
    local code = fx.run_script([[
      local semstore = require "semstore"
      local svc = assert(semstore.services.documents(db, { batch_size = 4 }))
      local batches = 0
      svc:rebuild_vector_index(arg[1], { progress = function()
        batches = batches + 1
        if batches == 1 then os.execute("kill -9 " .. io.open("/proc/self/stat"):read("n")) end
      end })
    ]], { col.id })
    assert.are_not.equal(0, code)
    local missing = fx.count("SELECT count(*) AS n FROM chunks WHERE collection_id = $1 AND embedding_vector_id IS NULL", col.id)
    assert.is_true(missing > 0, "the rebuild was killed after it finished")
    -- a later job of the collection's, run by the queue
    local doc = assert(fx.db.pg:query("SELECT id FROM documents WHERE collection_id = $1 LIMIT 1", col.id))[1]
    assert(fx.db.pg:query([[INSERT INTO reindex_jobs (action, collection_id, document_id, next_attempt_at)
      VALUES ('index', $1, $2, now())]], col.id, doc.id))
    assert(fx.svc:retry_pending { collection_id = col.id })
    local status = assert(fx.db.collections:get_by_uuid(col.id)).status
    missing = fx.count("SELECT count(*) AS n FROM chunks WHERE collection_id = $1 AND embedding_vector_id IS NULL", col.id)
    -- ready means searchable: either every chunk has its vector again, or the status says otherwise
    assert.is_false(status == "ready" and missing > 0,
      string.format("status %s with %d of %d chunks without a vector, %d points in Qdrant", status, missing,
        fx.chunks_of(col), fx.points(col)))
  end)
end)

describe("fifth hunt: semstore worker --timeout", function()
  it("never loosens PostgreSQL's connect_timeout (core.defaults.connect_timeout, 10 s) for a long --timeout", function()
    -- cli.worker sets pool.connect_timeout = max(2, ceil(timeout)) with no
    -- min against the default: a worker run with --timeout 3600 waits up to
    -- an hour for a PostgreSQL that accepts and never answers
    local core = require "semstore.core"
    local cli = require "semstore.cli"
    local real = semstore.connect
    local seen
    semstore.connect = function(opts)
      seen = opts.pool or {}
      return nil, "stopped by the spec"
    end
    local sink = function(t) return { write = function(_, ...) for _, x in ipairs { ... } do t[#t + 1] = x end end, flush = function() end } end
    local out, err = {}, {}
    local ok, code = pcall(cli.main, { "worker", "--timeout", "3600" }, sink(out), sink(err))
    semstore.connect = real
    assert(ok, code)
    assert.truthy(seen, "worker did not connect: " .. table.concat(err))
    assert.is_true(seen.connect_timeout == nil or seen.connect_timeout <= core.defaults.connect_timeout,
      "a connect may take " .. tostring(seen.connect_timeout) .. " s")
  end)
end)

describe("fifth hunt: semstore worker --timeout of weeks", function()
  it("a --timeout of 35 days starts the worker rather than failing on a connect_timeout the user never gave", function()
    -- the same line as above: pool.connect_timeout = ceil(timeout), which the
    -- pool refuses beyond 2147483 s
    local helpers = require "support.helpers"
    local code, out, err = helpers.cli({ "worker", "--once", "--timeout", "3000000" },
      { env = { DATABASE_URL = helpers.url } })
    assert.falsy(err:find("connect_timeout", 1, true), tostring(code) .. out .. err)
  end)
end)

describe("fifth hunt: db:health's timeout", function()
  it("a long timeout db:health accepts does not make a healthy PostgreSQL 'unhealthy' with acquire's option error", function()
    local helpers = require "support.helpers"
    local db = helpers.connect()
    -- health accepts any finite positive timeout (and bounds Qdrant's to a
    -- day itself), but hands PostgreSQL's to db.pg:acquire{ timeout }, which
    -- refuses more than 1e9 s
    local ok, r = pcall(db.health, db, { "postgres" }, { timeout = 2e9 })
    db:close()
    assert(ok, r)
    assert.is_true(r.postgres.ok, "postgres: " .. tostring(r.postgres.error))
  end)
end)
