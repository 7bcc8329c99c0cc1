-- Ops hunt 3: failing specs for bugs in the operations commands (health,
-- wait, check, worker), db:health, the local embedder and chunk_text.
-- Each `it` is one bug; each fails on the code it was written against.
require "semstore.compat" () -- Lua 5.4's library under LuaJIT too
local semstore = require "semstore"
local helpers = require "support.helpers"
local monotime = require("semstore.core").monotime
local ops = require "support.ops_fixture"
local cli_within, run_within, script_within = ops.cli_within, ops.run_within, ops.script_within
local stalled_server, migrated, queued_job = ops.stalled_server, ops.migrated, ops.queued_job

describe("ops hunt 3: semstore wait", function()
  it("gives up after --timeout even when every attempt of a store stalls (wait --timeout 2 on three stalled stores)", function()
    local s = stalled_server()
    finally(s.stop)
    local addr = "127.0.0.1:" .. s.port
    local code, out, err, took = cli_within(30, { "wait", "--timeout", "2" }, {
      DATABASE_URL = "postgresql://app@" .. addr .. "/app", REDIS_URL = "redis://" .. addr .. "/0",
      QDRANT_URL = "http://" .. addr })
    assert.are.equal(1, code, out .. err)
    -- the help: "--timeout SECONDS  how long to wait in all"; each store's
    -- attempt takes the whole probe (2 s), one after the other: 6 s
    assert.is_true(took < 3.5, string.format("wait --timeout 2 took %.1f s", took))
  end)

  it("reports when each store answered, not when the slowest one of its round gave up", function()
    local s = stalled_server()
    finally(s.stop)
    local code, out, err = cli_within(30, { "wait", "--timeout", "2" }, { DATABASE_URL = helpers.url,
      REDIS_URL = "redis://127.0.0.1:" .. s.port .. "/0", QDRANT_URL = os.getenv "QDRANT_URL" })
    assert.are.equal(1, code, out .. err)
    -- PostgreSQL is asked first and answers in milliseconds; the line says
    -- "postgres answers after 2.0 s" (the time after Redis's probe ran out)
    local after = tonumber(out:match "postgres answers after ([%d.]+) s")
    assert.truthy(after, out)
    assert.is_true(after < 1, out)
  end)
end)

describe("ops hunt 3: semstore worker", function()
  it("stops after --timeout while a job waits on a Qdrant that never answers", function()
    local m = migrated()
    local s = stalled_server()
    finally(function()
      s.stop()
      m.close()
    end)
    -- a document written while Qdrant was down: its job is in the queue, due now
    local down = assert(semstore.connect { name = helpers.unique "down", postgres = m.url,
      qdrant = { url = "http://127.0.0.1:1", max_retries = 0 } })
    local _, queued = assert(assert(semstore.services.documents(down)):create_document(m.col.id, "hello stalled world",
      { file_name = "a.md" }))
    down:close()
    assert.is_true(queued)
    assert(m.db.pg:query "UPDATE reindex_jobs SET next_attempt_at = now()")
    local code, out, err, took = cli_within(9, { "worker", "--timeout", "2" },
      { DATABASE_URL = m.url, QDRANT_URL = "http://127.0.0.1:" .. s.port })
    assert.are_not.equal(124, code, string.format("worker --timeout 2 was still running after %.1f s\n%s%s", took, out, err))
    assert.is_true(took < 6, string.format("worker --timeout 2 took %.1f s", took))
  end)

  it("exits non-zero with --timeout when no round could read the queue (unmigrated database)", function()
    local name, url = helpers.fresh_database()
    finally(function() helpers.drop_database(name) end)
    local code, out, err = cli_within(9, { "worker", "--timeout", "1" }, { DATABASE_URL = url })
    assert.truthy(err:find('relation "reindex_jobs" does not exist', 1, true), err)
    -- it prints "0 done, 0 failed, 0 left" and exits 0: a deployment's
    -- worker pointed at the wrong database looks like an idle queue
    assert.are.equal(1, code, out .. err)
  end)
end)

describe("ops hunt 3: semstore check", function()
  it("finds Qdrant points of a collection that has no chunks in PostgreSQL", function()
    local m = migrated()
    local vsn = m.col.vector_store_name
    local qdb = helpers.connect(nil, { qdrant = os.getenv "QDRANT_URL" })
    local q = qdb.qdrant
    finally(function()
      q:delete_collection(vsn)
      qdb:close()
      m.close()
    end)
    assert(q:create_collection(vsn, { vectors = { dense = { size = 4, distance = "Cosine" } } }))
    assert(q:upsert(vsn, { { id = 1, vector = { dense = { 1, 0, 0, 0 } } }, { id = 2, vector = { dense = { 0, 1, 0, 0 } } } }))
    local code, out, err = cli_within(20, { "check" }, { DATABASE_URL = m.url, QDRANT_URL = os.getenv "QDRANT_URL" })
    -- 0 embedded chunks against 2 points: a mismatch the help promises to
    -- report ("each collection's embedded chunks against its Qdrant points");
    -- check says "no findings" and exits 0
    assert.are.equal(1, code, out .. err)
    assert.truthy(out:find("embedded chunks against Qdrant points%s+1\n"), out)
  end)

  it("gives up on a Qdrant that accepts connections and never answers within seconds, as health does", function()
    local m = migrated()
    local s = stalled_server()
    finally(function()
      s.stop()
      m.close()
    end)
    assert(m.db.chunks:create_chunk { collection_id = m.col.id, chunk_index = 1, content = "c", embedding_vector_id = "1" })
    local code, out, err, took = cli_within(9, { "check" }, { DATABASE_URL = m.url, QDRANT_URL = "http://127.0.0.1:" .. s.port })
    assert.are_not.equal(124, code, string.format("check was still running after %.1f s\n%s%s", took, out, err))
    assert.are.equal(1, code, out .. err)
    assert.truthy(out:find("could not count Qdrant's", 1, true), out)
  end)
end)

describe("ops hunt 3: db:health", function()
  it("does not report ok for a store name given as a string (it checks nothing)", function()
    local db = helpers.connect(nil, { redis = "redis://127.0.0.1:1/0" })
    finally(function() db:close() end)
    assert.is_false(db:health({ "redis" }).ok) -- Redis is down
    local ok, report = pcall(db.health, db, "redis")
    -- either refused, as an unknown store name is, or Redis checked
    if ok then
      assert.is_false(report.ok, "db:health(\"redis\") says ok while Redis is down: nothing was checked")
    end
  end)
end)

describe("ops hunt 3: health against a server on Qdrant's port that answers 200 with another shape", function()
  it("reports qdrant unhealthy instead of raising (a {\"result\": null} answer)", function()
    -- an HTTP server that answers every request 200 {"result":null,"status":"ok"}
    local qdrant_url, stop = ops.http_answering '{"result":null,"status":"ok"}'
    finally(function()
      stop()
    end)
    local code, out, err = cli_within(20, { "health" }, { DATABASE_URL = helpers.url, QDRANT_URL = qdrant_url })
    assert.falsy(err:find("stack traceback", 1, true), err)
    assert.are.equal(1, code, out .. err)
    assert.truthy(out:find("qdrant%s+unhealthy"), out)
  end)
end)

describe("ops hunt 3: db:health on a stalled PostgreSQL", function()
  it("returns within seconds when the pool's connection goes to a backend that stopped answering", function()
    local dir = helpers.tmpdir()
    local pidf = dir .. "/backend.pid"
    finally(function()
      local f = io.open(pidf)
      local pid = f and f:read "a":match "%d+"
      if f then f:close() end
      if pid then os.execute("kill -CONT " .. pid .. " 2>/dev/null") end
      helpers.rmdir(dir)
    end)
    -- the script stops its own pooled connection's backend (SIGCONT comes
    -- 20 s later whatever happens), then asks db:health()
    helpers.write_file(dir .. "/health.lua", string.format([[
      local semstore = require "semstore"
      local core = require "semstore.core"
      local db = assert(semstore.connect { name = "stopped", postgres = %q, pool = { size = 1, max_overflow = 0 } })
      local pid = assert(db.pg:query "SELECT pg_backend_pid() AS p")[1].p
      local f = assert(io.open(%q, "w")) f:write(pid) f:close()
      os.execute("kill -STOP " .. pid .. "; (sleep 20; kill -CONT " .. pid .. ") >/dev/null 2>&1 &")
      local t0 = core.monotime()
      local r = db:health()
      print(string.format("took %%.1f s, ok %%s, postgres %%s", core.monotime() - t0, tostring(r.ok), r.postgres.status))
    ]], helpers.url, pidf))
    local code, text, took = run_within(15, dir .. "/health.lua")
    assert.are_not.equal(124, code, string.format("db:health() was still waiting after %.1f s (its bound: 5 s, then 5 s for the cancel)\n%s", took, text))
    assert.truthy(text:find("ok false, postgres unhealthy", 1, true), text)
    -- the 5 s probe, then at most the 5 s a cancelled call waits for the server
    assert.is_true(tonumber(text:match "took ([%d.]+) s") < 11, text)
  end)
end)

describe("ops hunt 3: db:health on a stalled Qdrant", function()
  it("returns within seconds with the client's default settings (a probe is one attempt, not the retry budget)", function()
    local s = stalled_server()
    local dir = helpers.tmpdir()
    finally(function()
      s.stop()
      helpers.rmdir(dir)
    end)
    helpers.write_file(dir .. "/health.lua", string.format([[
      local semstore = require "semstore"
      local core = require "semstore.core"
      local db = assert(semstore.connect { name = "stalled-qdrant", postgres = %q, qdrant = "http://127.0.0.1:%d" })
      local t0 = core.monotime()
      local r = db:health()
      print(string.format("took %%.1f s, ok %%s, qdrant %%s", core.monotime() - t0, tostring(r.ok), r.qdrant.status))
    ]], helpers.url, s.port))
    local code, text, took = run_within(9, dir .. "/health.lua")
    assert.are_not.equal(124, code, string.format("db:health() was still waiting after %.1f s\n%s", took, text))
    assert.truthy(text:find("ok false, qdrant unhealthy", 1, true), text)
  end)
end)

describe("ops hunt 3: the local embedder", function()
  it("does not drop texts after a hole in silence (one vector per text, or an error)", function()
    local emb = semstore.embedders.local_hash { dim = 8 }
    local texts = { "first text" }
    texts[3] = "third text" -- texts[2] is nil
    local ok, v = pcall(emb.dense, emb, texts)
    if ok then
      assert.are.equal(3, #v, "dense returned " .. #v .. " vector(s) for a table with texts at 1 and 3")
    end
    local ok2, s = pcall(emb.sparse, emb, texts)
    if ok2 then
      assert.are.equal(3, #s, "sparse returned " .. #s .. " vector(s) for a table with texts at 1 and 3")
    end
  end)
end)

describe("ops hunt 3: chunk_text", function()
  it("keeps every chunk within size characters when the text has stray UTF-8 continuation bytes", function()
    -- the README: "chunks of at most `size` characters (UTF-8 code points;
    -- an invalid byte counts as one)". 100 bytes 0x80 with no lead byte
    -- (Latin-1 text, binary) are 100 invalid bytes: ten chunks of 10.
    local text = string.rep(string.char(0x80), 100)
    local chunks = semstore.chunk_text(text, 10, 0)
    for i, c in ipairs(chunks) do
      assert.is_true(#c.content <= 10, string.format("chunk %d is %d invalid bytes for a size of 10 characters", i, #c.content))
    end
    assert.are.equal(10, #chunks)
    -- the same after a valid character: "é" and then stray continuation bytes
    chunks = semstore.chunk_text("\195\169" .. string.rep(string.char(0x80), 30), 10, 0)
    assert.is_true(#chunks[1].content <= 2 + 9, #chunks[1].content .. " bytes in the first chunk")
  end)
end)

describe("ops hunt 3: chunk_text's overlap", function()
  it("still overlaps when the overlap reaches back past the start of a chunk its cut made shorter", function()
    -- size 10: the first chunk is cut after the space, "aaaaaaaa " (9
    -- characters). Overlap 8 starts the next chunk 8 characters back;
    -- overlap 9 reaches the chunk's own start, and then the next chunk
    -- starts where this one ends: no overlap at all.
    local eight = semstore.chunk_text("aaaaaaaa bbbbbbbbbb", 10, 8)
    assert.is_true(eight[2].start_offset < eight[1].end_offset) -- overlap 8 overlaps
    local nine = semstore.chunk_text("aaaaaaaa bbbbbbbbbb", 10, 9)
    assert.is_true(nine[2].start_offset < nine[1].end_offset,
      string.format("overlap 9: chunk 2 starts at %d, where chunk 1 ends (%d)", nine[2].start_offset, nine[1].end_offset))
  end)
end)
