-- semstore.services.documents end to end: PostgreSQL, Redis and Qdrant (the
-- stand-in, or a real Qdrant when QDRANT_URL is set).
require "semstore.compat" () -- Lua 5.4's library under LuaJIT too
local semstore = require "semstore"
local helpers = require "support.helpers"
local fixture = require "support.services_fixture"

describe("semstore.services.documents", function()
  local fx = fixture.lazy(lazy_setup, lazy_teardown)

  it("indexes a collection through its whole lifecycle, and skips what is there on a second run", function()
    local col = fx.new_collection()
    local seen = {}
    local docs = fx.corpus(40)
    local report = assert(fx.svc:index_collection(col.id, docs, { progress = function(p) seen[#seen + 1] = p.vectors end }))
    assert.are.equal(40, report.documents)
    assert.are.equal(0, report.skipped)
    assert.is_true(report.chunks >= 40)
    assert.are.equal(report.chunks, report.vectors)
    assert.is_true(#seen >= 2, "progress was reported as it went")
    local op = assert(fx.db.operations:get_by_uuid(report.operation))
    assert.are.equal("completed", op.status)
    assert.truthy(op.started_at ~= semstore.null and op.completed_at ~= semstore.null)
    local c = assert(fx.db.collections:get_by_uuid(col.id))
    assert.are.equal("ready", c.status)
    assert.are.equal(40, c.document_count)
    assert.are.equal(report.chunks, c.vector_count)
    assert.are.equal(report.chunks, c.chunks_total_count)
    assert.are.equal(report.chunks, fx.points(c))
    assert.are.equal(0, fx.count("SELECT count(*) AS n FROM documents WHERE collection_id = $1 AND status <> 'completed'", col.id))
    assert.are.equal(0, fx.count("SELECT count(*) AS n FROM chunks WHERE collection_id = $1 AND embedding_vector_id IS NULL", col.id))
    -- chunks follow the collection's chunk_size, on character boundaries
    local long = assert(fx.db.pg:query("SELECT max(char_length(content)) AS n FROM chunks WHERE collection_id = $1", col.id))[1].n
    assert.is_true(long <= 120)
    -- again: everything is there already, by content hash
    local again = assert(fx.svc:index_collection(col.id, fx.corpus(40)))
    assert.are.equal(0, again.documents)
    assert.are.equal(40, again.skipped)
    assert.are.equal(report.chunks, fx.chunks_of(col))
    assert.are.equal(report.chunks, fx.points(c))
  end)

  it("chunks UTF-8 text without cutting a character, and takes documents from an iterator", function()
    local col = fx.new_collection { chunk_size = 10, chunk_overlap = 3 }
    local text = ("żółć gęślą jaźń 日本語のテキスト "):rep(6)
    local sent = 0
    local report = assert(fx.svc:index_collection(col.id, function()
      sent = sent + 1
      if sent > 3 then return nil end
      return { content = text .. sent, file_name = "u" .. sent .. ".txt" }
    end))
    assert.are.equal(3, report.documents)
    for row in fx.db.pg:rows("SELECT content FROM chunks WHERE collection_id = $1", col.id) do
      assert.truthy(utf8.len(row.content), "a chunk cut inside a character")
      assert.is_true(utf8.len(row.content) <= 10)
    end
  end)

  it("refuses bad documents and options with input errors, and marks the operation failed", function()
    local col = fx.new_collection()
    local res, err = fx.svc:index_collection(col.id, { { content = 42 } })
    assert.is_nil(res)
    assert.are.equal("input", err.kind)
    assert.truthy(err.message:find("document 1: content must be a string", 1, true), err.message)
    assert.are.equal("failed", assert(fx.db.operations:get_by_uuid(err.operation)).status)
    assert.are.equal("error", assert(fx.db.collections:get_by_uuid(col.id)).status)
    res, err = fx.svc:index_collection(col.id, { { content = "x", file_nme = "typo" } })
    assert.truthy(err.message:find("file_nme", 1, true), err.message)
    res, err = fx.svc:index_collection(col.id, {}, { progres = print })
    assert.are.equal("input", err.kind)
    res, err = fx.svc:index_collection(col.id, "not documents")
    assert.are.equal("input", err.kind)
    res, err = fx.svc:search(col.id, "", { user_id = fx.owner.id })
    assert.are.equal("input", err.kind)
    res, err = fx.svc:search(col.id, "x", { user_id = fx.owner.id, mode = "sparse" })
    assert.are.equal("input", err.kind)
    res, err = fx.svc:search(col.id, "x", {})
    assert.are.equal("input", err.kind)
    res, err = fx.svc:search(col.id, "x", { user_id = "01" })
    assert.are.equal("input", err.kind)
    res, err = semstore.services.documents(fx.db, { embeder = 1 })
    assert.are.equal("input", err.kind)
    res, err = fx.svc:create_document("00000000-0000-4000-8000-000000000000", "x")
    assert.are.equal("not_found", err.kind)
    -- an embedder that gives the wrong number of vectors
    local bad = assert(semstore.services.documents(fx.db, { embedder = function(texts) return { { 1, 0 } } end }))
    res, err = bad:index_collection(fx.new_collection().id, fx.corpus(3))
    assert.is_nil(res)
    assert.are.equal("embedder", err.kind)
  end)

  it("writes PostgreSQL first: with Qdrant down the document stays and is queued, then retry_pending indexes it", function()
    local col = fx.new_collection()
    assert(fx.svc:index_collection(col.id, fx.corpus(4)))
    local doc, queued = fx.while_qdrant_down(function(down)
      return down:create_document(col.id, "Qdrant was down when this arrived", { file_name = "late.txt" })
    end)
    assert.truthy(doc, queued)
    assert.is_true(queued)
    assert.are.equal("pending", doc.status)
    assert.are.equal(1, fx.jobs(col.id))
    local job = assert(fx.db.pg:query("SELECT * FROM reindex_jobs WHERE collection_id = $1", col.id))[1]
    assert.are.equal("index", job.action)
    assert.are.equal(doc.id, job.document_id)
    assert.truthy(job.last_error:find("127.0.0.1:1", 1, true) or job.last_error ~= "", job.last_error)
    -- not due yet: the job backs off
    local r = assert(fx.svc:retry_pending { collection_id = col.id })
    assert.are.same({ done = 0, failed = 0, left = 1 }, r)
    fx.make_due(col.id)
    r = assert(fx.svc:retry_pending { collection_id = col.id })
    assert.are.same({ done = 1, failed = 0, left = 0 }, r)
    assert.are.equal("completed", assert(fx.db.documents:get(doc.id)).status)
    local hits = assert(fx.svc:search(col.id, "Qdrant was down when this arrived", { user_id = fx.owner.id, limit = 1 }))
    assert.are.equal(doc.id, hits[1].document_id)
    assert.are.equal("late.txt", hits[1].file_name)
  end)

  it("keeps the job when the process is killed (kill -9) right after create_document returns", function()
    local col = fx.new_collection()
    local script = helpers.tmpdir() .. "/create.lua"
    helpers.write_file(script, [[
      local semstore = require "semstore"
      local svc = assert(semstore.services.documents(db))
      local doc = assert(svc:create_document(arg[1], "written just before a kill -9", { file_name = "killed.txt" }))
      io.stdout:write(doc.id, "\n"):flush()
      local pid = io.open("/proc/self/stat"):read("n")
      os.execute("kill -9 " .. pid)
    ]])
    local code, out, err = helpers.cli({ "run", script, col.id }, { env = { DATABASE_URL = fx.url, QDRANT_URL = "http://127.0.0.1:1" } })
    helpers.rmdir(script:match "^(.*)/")
    assert.are_not.equal(0, code, err)
    local doc_id = out:match "^(%S+)"
    assert.truthy(doc_id, out .. err)
    assert.are.equal(1, fx.count("SELECT count(*) AS n FROM reindex_jobs WHERE document_id = $1", doc_id))
    fx.make_due(col.id)
    assert.are.same({ done = 1, failed = 0, left = 0 }, assert(fx.svc:retry_pending { collection_id = col.id }))
    assert.are.equal(1, fx.points(col))
  end)

  it("re-creates a Qdrant collection that went missing, from the collection row's settings", function()
    local col = fx.new_collection()
    assert(fx.svc:index_collection(col.id, fx.corpus(3)))
    col = assert(fx.db.collections:get_by_uuid(col.id))
    assert.are.equal(256, col.qdrant_collections.dense.size)
    assert.is_true(col.qdrant_collections.sparse)
    assert(fx.db.qdrant:delete_collection(col.vector_store_name .. "_v" .. col.qdrant_collections.generation))
    local fresh = assert(semstore.services.documents(fx.db)) -- a new process knows nothing
    local doc, queued = assert(fresh:create_document(col.id, "after Qdrant lost everything"))
    assert.is_false(queued)
    assert.are.equal("completed", doc.status)
    assert.are.equal(1, fx.points(col))
    local info = assert(fx.db.qdrant:get_collection(col.vector_store_name))
    assert.truthy(info.config.params.sparse_vectors.text)
  end)

  it("rebuilds the index from PostgreSQL after Qdrant's data is lost, with the same results", function()
    local col = fx.new_collection()
    assert(fx.svc:index_collection(col.id, fx.corpus(30)))
    local before = assert(fx.svc:search(col.id, "flour and yeast", { user_id = fx.owner.id, limit = 5 }))
    col = assert(fx.db.collections:get_by_uuid(col.id))
    assert(fx.db.qdrant:delete_collection(col.vector_store_name .. "_v1"))
    local report = assert(fx.svc:rebuild_vector_index(col.id))
    assert.are.equal(fx.chunks_of(col), report.vectors)
    assert.are.equal(fx.chunks_of(col), fx.points(col))
    local after = assert(fx.svc:search(col.id, "flour and yeast", { user_id = fx.owner.id, limit = 5 }))
    assert.are.same(fx.chunk_ids(before), fx.chunk_ids(after))
    assert.are.equal("completed", assert(fx.db.operations:get_by_uuid(report.operation)).status)
    assert.are.equal("ready", assert(fx.db.collections:get_by_uuid(col.id)).status)
  end)

  it("rebuilds with zero downtime: searches answer from the old index until the alias swaps", function()
    local col = fx.new_collection()
    assert(fx.svc:index_collection(col.id, fx.corpus(40)))
    local expected = fx.chunk_ids(assert(fx.svc:search(col.id, "rockets and orbit", { user_id = fx.owner.id, limit = 3, cache_ttl = 0.001 })))
    local searched = 0
    local report = assert(fx.svc:rebuild_vector_index(col.id, { zero_downtime = true, progress = function()
      -- a search that does not go through the cache, mid-rebuild
      local hits = assert(fx.svc:_hydrate(col, assert(fx.db.qdrant:query(col.vector_store_name,
        { query = fx.svc.embedder.dense({ "rockets and orbit" })[1], using = "dense", limit = 3 }))))
      assert.are.same(expected, fx.chunk_ids(hits))
      searched = searched + 1
    end }))
    assert.is_true(searched >= 2)
    col = assert(fx.db.collections:get_by_uuid(col.id))
    assert.are.equal(2, col.qdrant_collections.generation)
    assert.are.equal(semstore.null, col.qdrant_staging)
    local aliases = assert(fx.db.qdrant:list_aliases())
    local target
    for _, a in ipairs(aliases) do if a.alias == col.vector_store_name then target = a.collection end end
    assert.are.equal(col.vector_store_name .. "_v2", target)
    assert.is_false(fx.db.qdrant:collection_exists(col.vector_store_name .. "_v1"))
    assert.are.equal(report.vectors, fx.points(col))
  end)

  it("finishes an interrupted index_collection with no duplicate chunks or points", function()
    local col = fx.new_collection()
    local docs = fx.corpus(30)
    local n = 0
    assert.has_error(function()
      fx.svc:index_collection(col.id, function()
        n = n + 1
        if n == 25 then error("the feed broke") end
        return docs[n]
      end, { documents_per_transaction = 10 })
    end, "the feed broke")
    assert.are.equal("error", assert(fx.db.collections:get_by_uuid(col.id)).status)
    assert.are.equal(20, fx.count("SELECT count(*) AS n FROM documents WHERE collection_id = $1", col.id))
    -- and a process killed mid-run
    local script = helpers.tmpdir() .. "/index.lua"
    helpers.write_file(script, [[
      local semstore = require "semstore"
      local svc = assert(semstore.services.documents(db, { batch_size = 4 }))
      local docs = {}
      for i = 31, 60 do docs[#docs + 1] = { content = "killed run document " .. i .. (" filler words"):rep(20) } end
      local batches = 0
      svc:index_collection(arg[1], docs, { documents_per_transaction = 5, progress = function()
        batches = batches + 1
        if batches == 6 then os.execute("kill -9 " .. io.open("/proc/self/stat"):read("n")) end
      end })
    ]])
    local code = helpers.cli({ "run", script, col.id }, { env = { DATABASE_URL = fx.url } })
    helpers.rmdir(script:match "^(.*)/")
    assert.are_not.equal(0, code)
    local all = fx.corpus(30)
    for i = 31, 60 do all[#all + 1] = { content = "killed run document " .. i .. (" filler words"):rep(20) } end
    local report = assert(fx.svc:index_collection(col.id, all))
    assert.are.equal(60, fx.count("SELECT count(*) AS n FROM documents WHERE collection_id = $1", col.id))
    assert.are.equal(0, fx.count([[SELECT count(*) AS n FROM (SELECT document_id, chunk_index FROM chunks WHERE collection_id = $1
      GROUP BY 1, 2 HAVING count(*) > 1) d]], col.id))
    assert.are.equal(fx.chunks_of(col), fx.points(col))
    assert.are.equal(0, fx.count("SELECT count(*) AS n FROM documents WHERE collection_id = $1 AND status <> 'completed'", col.id))
    assert.are.equal("ready", assert(fx.db.collections:get_by_uuid(col.id)).status)
    assert.is_true(report.skipped >= 20)
  end)

  it("gives each job to one worker when two drain the queue at once", function()
    local col = fx.new_collection()
    assert(fx.svc:index_collection(col.id, fx.corpus(2)))
    fx.while_qdrant_down(function(down)
      for i = 1, 24 do assert(down:create_document(col.id, "queued document " .. i)) end
    end)
    assert.are.equal(24, fx.jobs(col.id))
    fx.make_due(col.id)
    local dir = helpers.tmpdir()
    helpers.write_file(dir .. "/worker.lua", [[
      local semstore = require "semstore"
      local svc = assert(semstore.services.documents(db))
      local run = svc._run_job
      local out = assert(io.open(arg[1], "w"))
      svc._run_job = function(self, job)
        out:write(job.id, "\n")
        out:flush()
        return run(self, job)
      end
      local r = assert(svc:retry_pending { collection_id = arg[2] })
      out:close()
    ]])
    local cmd = {}
    for w = 1, 2 do
      cmd[w] = fx.semstore_run_command(dir .. "/worker.lua", dir .. "/taken" .. w, col.id)
    end
    assert(os.execute("(" .. cmd[1] .. ") & (" .. cmd[2] .. ") & wait"))
    local taken, total = {}, 0
    for w = 1, 2 do
      for id in helpers.read_file(dir .. "/taken" .. w):gmatch "%d+" do
        assert.is_nil(taken[id], "job " .. id .. " was taken twice")
        taken[id] = w
        total = total + 1
      end
    end
    helpers.rmdir(dir)
    assert.are.equal(24, total)
    assert.are.equal(0, fx.jobs(col.id))
    assert.are.equal(fx.chunks_of(col), fx.points(col))
  end)

  it("wakes a waiting worker through LISTEN/NOTIFY when a job arrives", function()
    local col = fx.new_collection()
    assert(fx.svc:index_collection(col.id, fx.corpus(1)))
    local dir = helpers.tmpdir()
    -- without a notification this worker would sleep until its timeout
    helpers.write_file(dir .. "/worker.lua", [[
      local semstore = require "semstore"
      local svc = assert(semstore.services.documents(db))
      local total = assert(svc:worker { timeout = 6, max_wait = 60 })
      print("done " .. total.done)
    ]])
    local worker = assert(io.popen(fx.semstore_run_command(dir .. "/worker.lua") .. " 2>&1"))
    helpers.sleep(helpers.under_valgrind and 2 or 0.7)
    local doc, queued = assert(fx.while_qdrant_down(function(down) return down:create_document(col.id, "wake the worker") end))
    assert.is_true(queued)
    local out = worker:read "a"
    worker:close()
    helpers.rmdir(dir)
    local done = tonumber(out:match "done (%d+)")
    assert.truthy(done and done >= 1, out)
    assert.are.equal("completed", assert(fx.db.documents:get(doc.id)).status)
    assert.are.equal(0, fx.jobs(col.id))
  end)

  it("drains the queue from the command: semstore worker --once", function()
    local col = fx.new_collection()
    assert(fx.svc:index_collection(col.id, fx.corpus(1)))
    assert(fx.while_qdrant_down(function(down) return down:create_document(col.id, "for the worker command") end))
    fx.make_due(col.id)
    -- only this job: the failures earlier specs left behind would count too
    assert(fx.db.pg:query("DELETE FROM reindex_jobs WHERE collection_id <> $1", col.id))
    local code, out, err = helpers.cli({ "worker", "--once" }, { env = { DATABASE_URL = fx.url } })
    assert.are.equal(0, code, out .. err)
    assert.truthy(out:find("1 done, 0 failed, 0 left", 1, true), out)
    assert.are.equal(fx.chunks_of(col), fx.points(col))
    code, out, err = helpers.cli({ "worker", "--timeout", "soon" }, { env = { DATABASE_URL = fx.url } })
    assert.are.equal(2, code, err)
  end)

  it("deletes a document from all three stores, queueing the Qdrant part when Qdrant is down", function()
    local col = fx.new_collection()
    assert(fx.svc:index_collection(col.id, fx.corpus(4)))
    local doc = assert(fx.svc:create_document(col.id, "to be deleted soon"))
    fx.db.cache:set("doc:" .. doc.id, { id = doc.id }, 60)
    assert(fx.svc:delete_document(doc.id, col.id))
    assert.is_nil(fx.db.cache:get("doc:" .. doc.id))
    local _, err = fx.db.documents:get(doc.id)
    assert.are.equal("not_found", err.kind)
    assert.are.equal(fx.chunks_of(col), fx.points(col))
    local doc2 = assert(fx.svc:create_document(col.id, "deleted while Qdrant is down"))
    assert(fx.while_qdrant_down(function(down) return down:delete_document(doc2.id, col.id) end))
    assert.are.equal(1, fx.count("SELECT count(*) AS n FROM reindex_jobs WHERE action = 'delete' AND document_id = $1", doc2.id))
    assert.are.equal(fx.chunks_of(col) + 1, fx.points(col))
    fx.make_due(col.id)
    assert.are.same({ done = 1, failed = 0, left = 0 }, assert(fx.svc:retry_pending { collection_id = col.id }))
    assert.are.equal(fx.chunks_of(col), fx.points(col))
    _, err = fx.svc:delete_document(doc2.id, col.id)
    assert.are.equal("not_found", err.kind)
  end)

  it("searches with permissions, logs each search, and caches results until the collection changes", function()
    local col = fx.new_collection { is_public = false }
    assert(fx.svc:index_collection(col.id, fx.corpus(12)))
    local res, err = fx.svc:search(col.id, "cats", { user_id = fx.other.id })
    assert.is_nil(res)
    assert.are.equal("access_denied", err.kind)
    local hits = assert(fx.svc:search(col.id, "cats purr in the sun", { user_id = fx.owner.id, limit = 3 }))
    assert.are.equal(3, #hits)
    for _, h in ipairs(hits) do
      assert.truthy(h.content:find("cats", 1, true), h.content)
      assert.truthy(h.file_name:match "^note%d+%.txt$")
      assert.is_true(math.type(h.chunk_id) == "integer" and type(h.score) == "number" and #h.document_id == 36)
    end
    local log = assert(fx.db.pg:query("SELECT * FROM search_logs WHERE collection_id = $1 ORDER BY id", col.id))
    assert.are.equal(1, #log)
    assert.are.equal(3, log[1].result_count)
    assert.are.equal("dense", log[1].search_type)
    assert.is_true(log[1].latency_ms > 0)
    local stats = fx.db.cache:stats()
    assert.are.same(hits, assert(fx.svc:search(col.id, "cats purr in the sun", { user_id = fx.owner.id, limit = 3 })))
    assert.is_true(fx.db.cache:stats().hits > stats.hits, "the second search came from the cache")
    assert.are.equal(2, #assert(fx.db.pg:query("SELECT * FROM search_logs WHERE collection_id = $1", col.id)))
    -- a filter on the documents' metadata
    local filtered = assert(fx.svc:search(col.id, "cats purr in the sun", { user_id = fx.owner.id, limit = 5,
      filter = { must = { { key = "metadata.topic", match = { value = 3 } } } } }))
    assert.is_true(#filtered > 0)
    for _, h in ipairs(filtered) do assert.truthy(h.content:find("bread", 1, true), h.content) end
    -- a new document shows at once: the change invalidated the cached result
    local doc = assert(fx.svc:create_document(col.id, "cats purr in the sun all day long", { file_name = "new.txt" }))
    hits = assert(fx.svc:search(col.id, "cats purr in the sun", { user_id = fx.owner.id, limit = 3 }))
    assert.are.equal(doc.id, hits[1].document_id)
    -- shared with a grant: the other user may read
    assert(fx.db.pg:query("INSERT INTO collection_permissions (collection_id, user_id, permission) VALUES ($1, $2, 'read')",
      col.id, fx.other.id))
    assert(fx.svc:search(col.id, "cats", { user_id = fx.other.id }))
    -- the id as a decimal string (what LuaJIT gives beyond 2^53) is the same user
    assert.are.same(hits, assert(fx.svc:search(col.id, "cats purr in the sun",
      { user_id = string.format("%d", fx.owner.id), limit = 3 })))
  end)

  it("scores hybrid search at least as well as dense on a labelled set, and wins where exact terms matter", function()
    local col = fx.new_collection { chunk_size = 400 }
    -- each relevant document names a rare code; the distractors share the
    -- query's common words, which is what the dense trigrams weigh
    local docs, labels = {}, {}
    local codes = { "XQ7Z", "KV92", "PL0T", "ZR4W", "MN8B", "TT5J" }
    for i, code in ipairs(codes) do
      docs[#docs + 1] = { content = string.format("Incident %s was resolved by rotating the key.", code), file_name = "rel" .. i }
      labels[i] = "rel" .. i
      for j = 1, 3 do
        docs[#docs + 1] = { content = string.format(
          "The error report about the failing service shows error code errors in the error report %d-%d, service failing again.", i, j),
          file_name = "noise" .. i .. "-" .. j }
      end
    end
    assert(fx.svc:index_collection(col.id, docs))
    local function recall(mode)
      local found, wins = 0, {}
      for i, code in ipairs(codes) do
        local hits = assert(fx.svc:search(col.id, "error report for failing service code " .. code,
          { user_id = fx.owner.id, limit = 5, mode = mode }))
        for _, h in ipairs(hits) do
          if h.file_name == labels[i] then
            found = found + 1
            wins[i] = true
          end
        end
      end
      return found / #codes, wins
    end
    local dense, dense_hits = recall "dense"
    local hybrid, hybrid_hits = recall "hybrid"
    assert.is_true(hybrid >= dense, string.format("hybrid recall@5 %.2f < dense %.2f", hybrid, dense))
    local won = false
    for i = 1, #codes do if hybrid_hits[i] and not dense_hits[i] then won = true end end
    assert.is_true(won, string.format("no query where hybrid wins (dense %.2f, hybrid %.2f)", dense, hybrid))
    local log = assert(fx.db.pg:query("SELECT count(*) AS n FROM search_logs WHERE collection_id = $1 AND search_type = 'hybrid'", col.id))
    assert.are.equal(#codes, log[1].n)
  end)

  it("accepts a plain function as the embedder (dense only)", function()
    local emb = semstore.embedders.local_hash { dim = 32 }
    local plain = assert(semstore.services.documents(fx.db, { embedder = function(texts) return emb:dense(texts) end }))
    local col = fx.new_collection()
    assert(plain:index_collection(col.id, fx.corpus(5)))
    col = assert(fx.db.collections:get_by_uuid(col.id))
    assert.are.equal(32, col.qdrant_collections.dense.size)
    assert.is_false(col.qdrant_collections.sparse)
    assert.are.equal(5, #assert(plain:search(col.id, "cats", { user_id = fx.owner.id, limit = 5 })))
    local _, err = plain:search(col.id, "cats", { user_id = fx.owner.id, mode = "hybrid" })
    assert.are.equal("input", err.kind)
    -- another embedder's vectors do not fit the collection
    _, err = fx.svc:create_document(col.id, "a 256-number vector")
    assert.are.equal("input", err.kind)
    assert.truthy(err.message:find("32", 1, true), err.message)
  end)

  if fixture.standin then
    it("marks the collection degraded when Qdrant fails mid-index, and the queue or a rerun heals it", function()
      local col = fx.new_collection()
      assert(fx.svc:index_collection(col.id, fx.corpus(2)))
      local flaky = helpers.connect(nil, { postgres = fx.url, qdrant = { url = os.getenv "QDRANT_URL", max_retries = 0 } })
      local function admin(method, path, body) return assert(flaky.qdrant.handle:request(method, "/__standin/" .. path, body)) end
      admin("POST", "faults", { kind = "503", count = 50, path = "/points" })
      local res, err = assert(semstore.services.documents(flaky)):index_collection(col.id, fx.corpus(10))
      admin("DELETE", "faults")
      flaky:close()
      assert.is_nil(res)
      assert.are.equal("qdrant", err.kind)
      assert.are.equal("degraded", assert(fx.db.collections:get_by_uuid(col.id)).status)
      assert.are.equal("failed", assert(fx.db.operations:get_by_uuid(err.operation)).status)
      assert(fx.svc:index_collection(col.id, fx.corpus(10)))
      assert.are.equal(fx.chunks_of(col), fx.points(col))
      assert.are.equal("ready", assert(fx.db.collections:get_by_uuid(col.id)).status)
    end)
  end
end)
