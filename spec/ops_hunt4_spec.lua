-- Ops hunt 4: failing specs for bugs in what ops hunt 3's fixes touched
-- (db:health's timeout, semstore wait, chunk_text). Each `it` is one bug;
-- each fails on the code it was written against.
require "semstore.compat" () -- Lua 5.4's library under LuaJIT too
local semstore = require "semstore"
local helpers = require "support.helpers"
local monotime = require("semstore.core").monotime
local ops = require "support.ops_fixture"
local cli_within, run_within, script_within = ops.cli_within, ops.run_within, ops.script_within
local stalled_server, migrated, queued_job = ops.stalled_server, ops.migrated, ops.queued_job

describe("ops hunt 4: db:health's timeout", function()
  it("bounds PostgreSQL's connection attempt by the pool's connect_timeout (a fresh pool, a server that never answers)", function()
    local s = stalled_server()
    finally(s.stop)
    -- README: "opening a new connection is bounded by the pool's
    -- connect_timeout" (2 s here, libpq's least)
    local code, out = script_within(9, string.format([[
      local semstore = require "semstore"
      local core = require "semstore.core"
      local db = assert(semstore.connect { name = "stalled-pg", postgres = "postgresql://app@127.0.0.1:%d/app",
        pool = { connect_timeout = 2 } })
      local t0 = core.monotime()
      local r = db:health({ "postgres" }, { timeout = 1 })
      print(string.format("took %%.1f s, postgres %%s", core.monotime() - t0, r.postgres.status))
    ]], s.port))
    assert.are_not.equal(124, code, "db:health({'postgres'}, {timeout = 1}) was still waiting after 9 s\n" .. out)
    assert.truthy(out:find("postgres unhealthy", 1, true), out)
    assert.is_true(tonumber(out:match "took ([%d.]+) s") < 6, out)
  end)

  it("bounds the pool's ping of an idle connection whose backend stopped answering", function()
    -- ops hunt 3's spec asks right after a query; a health endpoint asks a
    -- connection idle for seconds, which acquire pings first (pre_ping,
    -- ping_after_idle 1 s) under the pool's own 10 s limit and the 5 s a
    -- cancel gets: 15 s for a timeout of 1, where the doc promises at most
    -- the timeout and 5 s
    local dir = helpers.tmpdir()
    local pidf = dir .. "/backend.pid"
    finally(function()
      local f = io.open(pidf)
      local pid = f and f:read "a":match "%d+"
      if f then f:close() end
      if pid then os.execute("kill -CONT " .. pid .. " 2>/dev/null") end
      helpers.rmdir(dir)
    end)
    local code, out = script_within(9, string.format([[
      local semstore = require "semstore"
      local core = require "semstore.core"
      local db = assert(semstore.connect { name = "idle-stopped", postgres = %q, pool = { size = 1, max_overflow = 0 } })
      local pid = assert(db.pg:query "SELECT pg_backend_pid() AS p")[1].p
      local f = assert(io.open(%q, "w")) f:write(pid) f:close()
      core.sleep(1.5)
      os.execute("kill -STOP " .. pid .. "; (sleep 20; kill -CONT " .. pid .. ") >/dev/null 2>&1 &")
      local t0 = core.monotime()
      local r = db:health({ "postgres" }, { timeout = 1 })
      print(string.format("took %%.1f s, postgres %%s", core.monotime() - t0, r.postgres.status))
    ]], helpers.url, pidf))
    assert.are_not.equal(124, code, "db:health({'postgres'}, {timeout = 1}) was still waiting after 9 s\n" .. out)
    assert.is_true(tonumber(out:match "took ([%d.]+) s") < 7, out)
  end)

  it("does not wait the pool's whole acquire timeout when every connection is lent out", function()
    -- a health endpoint of a busy service: the pool's one connection is in
    -- use; the check waits for a free one for the pool's timeout (6 s here,
    -- 30 s by default), not the 1 s it was given
    local db = helpers.connect({ size = 1, max_overflow = 0, timeout = 6 })
    local conn = assert(db.pg:acquire())
    finally(function()
      conn:release()
      db:close()
    end)
    local t0 = monotime()
    local r = db:health({ "postgres" }, { timeout = 1 })
    local took = monotime() - t0
    assert.is_false(r.ok)
    assert.is_true(took < 2.5, string.format("db:health({'postgres'}, {timeout = 1}) took %.1f s: %s", took,
      tostring(r.postgres.error)))
  end)
end)

describe("ops hunt 4: db:health with a long timeout", function()
  it("does not report a healthy Qdrant unhealthy for a timeout it accepted (timeout = 100000)", function()
    local db = helpers.connect(nil, { qdrant = os.getenv "QDRANT_URL" })
    finally(function() db:close() end)
    assert.is_true(db:health({ "qdrant" }).ok)
    -- health accepts any positive finite timeout (a bad one raises), then
    -- passes it to list_collections, whose limit is 86400 s: Qdrant comes
    -- out "unhealthy" with an input error about options nobody gave
    local ok, r = pcall(db.health, db, { "qdrant" }, { timeout = 100000 })
    if ok then
      assert.is_true(r.ok, "qdrant: " .. tostring(r.qdrant.error))
    end
  end)
end)

describe("ops hunt 4: semstore wait", function()
  it("keeps a stalled PostgreSQL's attempt within --timeout (wait --timeout 1)", function()
    local s = stalled_server()
    finally(s.stop)
    -- Redis and Qdrant answer at once; PostgreSQL's probe is 0.5 s
    -- (probe_seconds), but the pool gets connect_timeout = 1 (an integer
    -- of at least 1) and libpq waits at least 2 s: --timeout 1 takes 2 s
    local code, out, err, took = cli_within(20, { "wait", "--timeout", "1" }, {
      DATABASE_URL = "postgresql://app@127.0.0.1:" .. s.port .. "/app", REDIS_URL = os.getenv "REDIS_URL",
      QDRANT_URL = os.getenv "QDRANT_URL" })
    assert.are.equal(1, code, out .. err)
    -- libpq takes a connect_timeout of 1 as 2 s, its least: the one overrun left
    assert.is_true(took < 2.8, string.format("wait --timeout 1 took %.1f s\n%s%s", took, out, err))
  end)
end)

describe("ops hunt 4: chunk_text with no overlap", function()
  it("does not repeat text in the next chunk when the overlap is 0", function()
    -- size 10: the cut looks 2 characters (a fifth) back for a space, sees
    -- "h" and "i", and cuts at the size: "abcdefg hi". The next start's
    -- word search looks one character further (the space before "hi") and
    -- starts at "hi": "hi" is in both chunks although the overlap is 0.
    -- tests/c/test_chunking.c expects overlap 0 to give contiguous chunks
    -- (c[i].start == c[i - 1].end); had the cut looked as far, it would
    -- have fallen after the space and the chunks would not overlap.
    local chunks = semstore.chunk_text("abcdefg hijklmnop", 10, 0)
    local parts = {}
    for i, c in ipairs(chunks) do parts[i] = string.format("%d-%d %q", c.start_offset, c.end_offset, c.content) end
    for i = 2, #chunks do
      assert.are.equal(chunks[i - 1].end_offset, chunks[i].start_offset, "overlap 0: " .. table.concat(parts, ", "))
    end
  end)
end)

describe("ops hunt 4: semstore worker --timeout", function()
  it("stops after --timeout when PostgreSQL accepts connections and never answers", function()
    local s = stalled_server()
    finally(s.stop)
    -- help: "--timeout N  stop after N seconds"; the pool connects under
    -- its connect_timeout (10 s), which --timeout does not bound
    local code, out, err, took = cli_within(8, { "worker", "--timeout", "2" },
      { DATABASE_URL = "postgresql://app@127.0.0.1:" .. s.port .. "/app" })
    assert.are_not.equal(124, code, string.format("worker --timeout 2 was still running after %.1f s\n%s%s", took, out, err))
    assert.are.equal(1, code, out .. err)
    assert.is_true(took < 5, string.format("worker --timeout 2 took %.1f s", took))
  end)

  it("stops after --timeout while a job's cache invalidation waits on a Redis that never answers", function()
    local m = migrated()
    local s = stalled_server()
    finally(function()
      s.stop()
      m.close()
    end)
    queued_job(m)
    -- the job indexes the document, then cache:delete("doc:...") waits on
    -- Redis for its command_timeout (30 s): --timeout bounds Qdrant only
    local code, out, err, took = cli_within(9, { "worker", "--timeout", "2" },
      { DATABASE_URL = m.url, QDRANT_URL = os.getenv "QDRANT_URL", REDIS_URL = "redis://127.0.0.1:" .. s.port .. "/0" })
    assert.are_not.equal(124, code, string.format("worker --timeout 2 was still running after %.1f s\n%s%s", took, out, err))
    assert.is_true(took < 6, string.format("worker --timeout 2 took %.1f s", took))
  end)
end)

describe("ops hunt 4: health against a server on Qdrant's port that is not Qdrant", function()
  it("reports qdrant unhealthy when GET /collections answers 200 {\"status\":\"ok\"} (no result, no collections)", function()
    -- an HTTP server that answers every request 200 {"status":"ok"}, as
    -- many a health endpoint does
    local qdrant_url, stop = ops.http_answering '{"status":"ok"}'
    finally(function()
      stop()
    end)
    -- list_collections' new shape check lets an answer without
    -- `collections` through as "0 collections": health says healthy, exit 0
    local code, out, err = cli_within(20, { "health" }, { DATABASE_URL = helpers.url, QDRANT_URL = qdrant_url })
    assert.are.equal(1, code, out .. err)
    assert.truthy(out:find("qdrant%s+unhealthy"), out)
  end)
end)

describe("ops hunt 4: db:health's store list", function()
  it("does not report ok for stores given as a set ({ redis = true }): it checks nothing", function()
    local db = helpers.connect(nil, { redis = "redis://127.0.0.1:1/0" })
    finally(function() db:close() end)
    assert.is_false(db:health({ "redis" }).ok) -- Redis is down
    -- ops hunt 3 refused a string; a table without an array part gets
    -- through: ipairs sees no store, nothing is checked, and ok is true
    local ok, report = pcall(db.health, db, { redis = true })
    if ok then
      assert.is_false(report.ok, "db:health({ redis = true }) says ok while Redis is down: nothing was checked")
    end
  end)
end)

describe("ops hunt 4: check against a server on Qdrant's port that answers 200 with another shape", function()
  it("reports the count it could not make instead of raising (a {\"result\": null} answer)", function()
    local m = migrated()
    -- ops hunt 3's server: every request answered 200 {"result":null,"status":"ok"}
    local qdrant_url, stop = ops.http_answering '{"result":null,"status":"ok"}'
    finally(function()
      stop()
      m.close()
    end)
    -- health was made to say "unhealthy" for this server; check's
    -- Qdrant:count indexes the null result: "attempt to index a userdata
    -- value (local 'result')" and a stack traceback
    local code, out, err = cli_within(20, { "check" }, { DATABASE_URL = m.url, QDRANT_URL = qdrant_url })
    assert.falsy(err:find("stack traceback", 1, true), err)
    assert.are.equal(1, code, out .. err)
    assert.truthy(out:find("could not count Qdrant's", 1, true), out)
  end)
end)

describe("ops hunt 4: semstore worker --timeout and Qdrant's own limits", function()
  it("never loosens the Qdrant client's defaults (30 s a request, 120 s of retries) for a long --timeout", function()
    -- cli.worker sets timeout = min(opts.timeout or bound, bound): the
    -- environment gives no timeout, so a worker run with --timeout 3600
    -- waits up to an hour on one request of a stalled Qdrant (the default
    -- is 30 s), and --timeout 86401 cannot start at all
    local cli = require "semstore.cli"
    local real = semstore.connect
    local seen
    semstore.connect = function(opts)
      seen = opts.qdrant
      return nil, "stopped by the spec"
    end
    local out, err = {}, {}
    local sink = function(t) return { write = function(_, ...) for _, s in ipairs { ... } do t[#t + 1] = s end end, flush = function() end } end
    local ok, code = pcall(cli.main, { "worker", "--timeout", "3600" }, sink(out), sink(err))
    semstore.connect = real
    assert(ok, code)
    assert.truthy(seen, "worker did not pass Qdrant settings: " .. table.concat(err))
    -- and a run of a day and a second is refused by Qdrant's option check
    local code2, out2, err2 = cli_within(8, { "worker", "--once", "--timeout", "86401" },
      { DATABASE_URL = helpers.url, QDRANT_URL = os.getenv "QDRANT_URL" })
    assert.is_true(seen.timeout == nil or seen.timeout <= 30, "a request may take " .. tostring(seen.timeout) .. " s")
    assert.is_true(seen.retry_timeout == nil or seen.retry_timeout <= 120,
      "retries may take " .. tostring(seen.retry_timeout) .. " s")
    assert.falsy(err2:find("must be a number from 0.001 to 86400", 1, true), tostring(code2) .. out2 .. err2)
  end)
end)
