-- The process-wide pool against a real server: limits, waiting, faults, leaks.
require "semstore.compat" () -- Lua 5.4's library under LuaJIT too
local semstore = require "semstore"
local helpers = require "support.helpers"

local function pids(db, n)
  local conns, out = {}, {}
  for i = 1, n do
    conns[i] = assert(db.pg:acquire())
    out[i] = conns[i]:backend_pid()
  end
  for i = 1, n do conns[i]:release() end
  return out
end

describe("pool", function()
  it("never opens more than size + overflow across 10,000 acquire/release cycles", function()
    local db = helpers.connect { size = 3, max_overflow = 2, timeout = 5 }
    local held = {}
    math.randomseed(42)
    local cycles = helpers.under_valgrind and 2000 or 10000
    -- a random walk over 0-5 borrowed connections that mostly stays within
    -- `size`: each step past it opens an overflow connection (a full login)
    for _ = 1, cycles do
      local r = math.random()
      local grow = #held == 0 or (#held < 3 and r < 0.55) or (#held < 5 and r < 0.1)
      if grow then
        held[#held + 1] = assert(db.pg:acquire())
      else
        table.remove(held, math.random(#held)):release()
      end
      assert(db.pg:stats().size <= 5)
    end
    for _, c in ipairs(held) do c:release() end
    local s = db.pg:stats()
    assert.are.equal(5, s.peak)
    assert.are.equal(5, s.max)
    assert.is_true(s.acquired >= cycles / 2 - 5)
    assert.is_true(s.opened < cycles / 20, "opened " .. s.opened)
    assert.are.equal(0, s.in_use)
    assert.are.equal(3, s.idle, "overflow connections close when returned")
    db:close()
  end)

  it("an exhausted pool times out after the configured timeout with kind 'pool'", function()
    local db = helpers.connect { size = 1, max_overflow = 1, timeout = 0.3 }
    local a, b = assert(db.pg:acquire()), assert(db.pg:acquire())
    local cpu = os.clock()
    local conn, err = db.pg:acquire()
    assert.is_nil(conn)
    assert.are.equal("pool", err.kind)
    assert.truthy(err.message:find "exhausted")
    local rows, qerr = db.pg:query "select 1"
    assert.is_nil(rows)
    assert.are.equal("pool", qerr.kind)
    local s = db.pg:stats()
    assert.are.equal(2, s.timeouts)
    assert.is_true(s.wait_ms >= 2 * 290 and s.wait_ms < 2 * 3000, "waited " .. s.wait_ms .. " ms")
    assert.is_true(os.clock() - cpu < 0.3, "waiting must block, not spin")
    a:release()
    b:release()
    assert(db.pg:query "select 1")
    db:close()
  end)

  it("connect() with no options reads DATABASE_URL and the DB_POOL_* settings", function()
    assert(os.getenv "DATABASE_URL", "scripts/servers.sh exports DATABASE_URL")
    local db = assert(semstore.connect())
    assert.are.equal("default", db.pg:name())
    assert.are.equal(1, assert(db.pg:query "select 1 as one")[1].one)
    -- size + overflow, from DB_POOL_SIZE and DB_MAX_OVERFLOW or the defaults
    local cfg = assert(semstore.config.pool_from_env())
    local max = cfg.size + cfg.max_overflow
    assert.are.equal(max, db.pg:stats().max)
    -- and the pool lends that many connections, each a server process of its own
    local conns, pids, n = {}, {}, 0
    for i = 1, max do
      conns[i] = assert(db.pg:acquire())
      local pid = conns[i]:backend_pid()
      if not pids[pid] then pids[pid], n = true, n + 1 end
    end
    assert.are.equal(max, n)
    assert.are.equal(max, db.pg:stats().size)
    for _, conn in ipairs(conns) do conn:release() end
    db:close()
    -- with DB_POOL_* set, it lends that many and no more
    local p = io.popen([[DB_POOL_SIZE=2 DB_MAX_OVERFLOW=1 DB_POOL_TIMEOUT=0.2 ]] .. helpers.lua_bin .. [[ -e 'local s = require "semstore"; ]] ..
      [[local db = assert(s.connect()); local held, n = {}, 0; while true do local c, err = db.pg:acquire(); ]] ..
      [[if not c then io.write(n, " ", err.kind, " ", db.pg:stats().max, " ", db.pg:stats().size) break end; ]] ..
      [[n = n + 1; held[n] = c end; for _, c in ipairs(held) do c:release() end' 2>&1]])
    local out = p:read "a"
    p:close()
    assert.are.equal("3 pool 3 3", out)
  end)

  it("connects from POSTGRES_* or, with nothing set, libpq's PG* variables", function()
    local user, pass, host, port, dbname = helpers.url:match "^postgresql://([^:]+):([^@]+)@([^:]+):(%d+)/(.+)$"
    local probe = helpers.lua_bin .. [[ -e 'local s = require "semstore"; local db = assert(s.connect()); ]] ..
      [[io.write(assert(db.pg:query "select current_user as u, current_database() as d")[1].d)']]
    local function run(vars)
      local p = io.popen("env -u DATABASE_URL " .. vars .. " " .. probe .. " 2>&1")
      local out = p:read "a"
      p:close()
      return out
    end
    assert.are.equal(dbname, run(string.format("POSTGRES_HOST=%s POSTGRES_PORT=%s POSTGRES_USER=%s POSTGRES_PASSWORD=%s POSTGRES_DB=%s",
      host, port, user, pass, dbname)))
    assert.are.equal(dbname, run(string.format("PGHOST=%s PGPORT=%s PGUSER=%s PGPASSWORD=%s PGDATABASE=%s",
      host, port, user, pass, dbname)))
  end)

  it("pools are process-wide by name: a second connect shares the first one's pool", function()
    local one = helpers.connect()
    local two = assert(semstore.connect { name = one.name, postgres = helpers.url })
    local conn = assert(one.pg:acquire())
    assert.are.equal(1, two.pg:stats().in_use)
    conn:release()
    assert.are.equal(0, two.pg:stats().in_use)
    one:close()
    assert(two.pg:query "select 1") -- still open through the second handle
    two:close()
  end)

  it("a forgotten connection comes back after collectgarbage()", function()
    local db = helpers.connect { size = 1, max_overflow = 0, timeout = 1 }
    collectgarbage "stop" -- so that nothing collects it before we look
    do
      local forgotten = assert(db.pg:acquire())
      assert(forgotten:query "select 1")
    end
    assert.are.equal(1, db.pg:stats().in_use)
    collectgarbage "restart"
    collectgarbage()
    collectgarbage()
    local s = db.pg:stats()
    assert.are.equal(0, s.in_use)
    assert.are.equal(1, s.reclaimed)
    assert(db.pg:query "select 1") -- the only connection is usable again
    db:close()
  end)

  it("a connection forgotten inside a transaction comes back rolled back", function()
    local db = helpers.connect { size = 1, max_overflow = 0, timeout = 1 }
    assert(db.pg:exec "drop table if exists gc_probe; create table gc_probe (a int)")
    do
      local c = assert(db.pg:acquire())
      assert(c:exec "begin; insert into gc_probe values (1)")
    end
    collectgarbage()
    collectgarbage()
    assert.are.equal(0, assert(db.pg:query "select count(*)::int as n from gc_probe")[1].n)
    assert(db.pg:exec "drop table gc_probe")
    db:close()
  end)

  it("survives pg_terminate_backend on every pooled backend", function()
    local db = helpers.connect { size = 3, max_overflow = 0, timeout = 5 }
    local admin = helpers.connect { size = 1, max_overflow = 0, timeout = 5 }
    local victims = pids(db, 3)
    for _, pid in ipairs(victims) do
      assert.is_true(assert(admin.pg:query("select pg_terminate_backend($1, 5000) as ok", pid))[1].ok)
    end
    local rows = assert(db.pg:query "select pg_backend_pid() as pid")
    for _, pid in ipairs(victims) do assert.are_not.equal(pid, rows[1].pid) end
    assert.is_true(db.pg:stats().evicted >= 1)
    -- and every one of the three is usable again
    local after = pids(db, 3)
    assert.are.equal(3, #after)
    assert.is_true(db.pg:stats().size <= 3)
    admin:close()
    db:close()
  end)

  it("survives a full server restart", function()
    local restart = os.getenv "SEMSTORE_TEST_RESTART_PG"
    assert(restart, "SEMSTORE_TEST_RESTART_PG is not set (scripts/servers.sh sets it)")
    local db = helpers.connect { size = 2, max_overflow = 0, timeout = 10 }
    local before = pids(db, 2)
    assert.is_true(os.execute(restart .. " >/dev/null 2>&1"))
    local rows = assert(db.pg:query "select pg_backend_pid() as pid")
    assert.are_not.equal(before[1], rows[1].pid)
    assert.are_not.equal(before[2], rows[1].pid)
    local conns = { assert(db.pg:acquire()), assert(db.pg:acquire()) }
    for _, c in ipairs(conns) do assert(c:query "select 1") c:release() end
    db:close()
  end)

  it("a connection that breaks while borrowed is evicted on release", function()
    local db = helpers.connect { size = 1, max_overflow = 0, timeout = 5 }
    local conn = assert(db.pg:acquire())
    local rows, err = conn:query "select pg_terminate_backend(pg_backend_pid())"
    assert.is_nil(rows)
    assert.are.equal("connection", err.kind)
    conn:release()
    assert.are.equal(1, db.pg:stats().evicted)
    assert.are.equal(0, db.pg:stats().size)
    assert(db.pg:query "select 1")
    db:close()
  end)

  it("recycles connections past their lifetime, never one in use", function()
    local db = helpers.connect { size = 1, max_overflow = 0, timeout = 5, recycle = 0.2 }
    local conn = assert(db.pg:acquire())
    local pid = conn:backend_pid()
    assert(conn:query "select pg_sleep(0.3)")
    assert.are.equal(pid, conn:backend_pid()) -- still ours while borrowed
    conn:release()
    local again = assert(db.pg:acquire())
    assert.are_not.equal(pid, again:backend_pid())
    again:release()
    db:close()
  end)

  it("closes connections idle longer than idle_timeout", function()
    local db = helpers.connect { size = 2, max_overflow = 0, timeout = 5, idle_timeout = 0.3 }
    local first = pids(db, 1)[1]
    assert.are.equal(first, pids(db, 1)[1])
    helpers.sleep(0.5)
    assert.are_not.equal(first, pids(db, 1)[1])
    assert.are.equal(1, db.pg:stats().size)
    db:close()
  end)

  it("each connection carries the session settings", function()
    local db = helpers.connect({ size = 1, statement_timeout = 7, lock_timeout = 3, idle_in_transaction_timeout = 40,
      application_name = "spec-app" })
    local r = assert(db.pg:query [[select current_setting('statement_timeout') as st, current_setting('lock_timeout') as lt,
      current_setting('idle_in_transaction_session_timeout') as it, current_setting('application_name') as app]])[1]
    assert.are.same({ st = "7s", lt = "3s", it = "40s", app = "spec-app" }, r)
    db:close()
  end)

  it("prepares a statement once per connection and re-prepares after DISCARD ALL", function()
    local db = helpers.connect { size = 1, max_overflow = 0 }
    for i = 1, 5 do assert(db.pg:query("select $1::int + 1 as n", i)) end
    local n = assert(db.pg:query [[select count(*)::int as n from pg_prepared_statements where statement like 'select $1::int + 1%']])[1].n
    assert.are.equal(1, n)
    assert(db.pg:exec "discard all")
    assert.are.equal(3, assert(db.pg:query("select $1::int + 1 as n", 2))[1].n)
    db:close()
  end)
end)

describe("pool states", function()
  -- every slot idle past idle_timeout (or recycle) and no overflow: the
  -- expired ones must make room, not hold their slots forever
  for _, opt in ipairs { "idle_timeout", "recycle" } do
    it("recovers when every slot expired (" .. opt .. ")", function()
      local db = helpers.connect { size = 2, max_overflow = 0, timeout = 1, [opt] = 0.2 }
      local a, b = assert(db.pg:acquire()), assert(db.pg:acquire())
      a:release()
      b:release()
      helpers.sleep(0.4)
      for _ = 1, 3 do assert.are.equal(1, assert(db.pg:query "select 1 as n")[1].n) end
      local c, d = assert(db.pg:acquire()), assert(db.pg:acquire())
      c:release()
      d:release()
      local s = db.pg:stats()
      assert.are.equal(0, s.timeouts)
      assert.is_true(s.size <= 2)
      db:close()
    end)
  end

  it("replaces every connection when all of them were terminated", function()
    local db = helpers.connect { size = 3, max_overflow = 0, timeout = 2, ping_after_idle = 100 }
    local before = pids(db, 3)
    local admin = helpers.connect { size = 1, max_overflow = 0 }
    for _, pid in ipairs(before) do assert(admin.pg:query("select pg_terminate_backend($1)", pid)) end
    helpers.sleep(0.2)
    local after = pids(db, 3)
    for _, pid in ipairs(after) do
      for _, old in ipairs(before) do assert.are_not.equal(old, pid) end
    end
    assert.are.equal(0, db.pg:stats().timeouts)
    admin:close()
    db:close()
  end)
end)

describe("pool options", function()
  it("refuses numbers C cannot hold: infinity, NaN, negatives, fractions of a count", function()
    for _, pool in ipairs {
      { timeout = math.huge }, { timeout = 0 / 0 }, { timeout = -1 }, { size = -1 }, { size = 0 }, { size = 1.5 },
      { max_overflow = -1 }, { statement_cache_size = -5 }, { statement_cache_size = 0 / 0 },
      { statement_timeout = math.huge }, { recycle = 0 / 0 }, { idle_timeout = -math.huge }, { size = 1e300 },
    } do
      local db, err = semstore.connect { name = "bad-options", postgres = helpers.url, pool = pool }
      local k = next(pool)
      assert.is_nil(db, k)
      assert.are.equal("input", err.kind)
      assert.truthy(err.message:find(k, 1, true), err.message)
    end
  end)

  it("acquire{ timeout } waits at most that long for a free connection (the pool's timeout bounds it too)", function()
    local db = helpers.connect { size = 1, max_overflow = 0, timeout = 5 }
    local held = assert(db.pg:acquire())
    local t0 = require("semstore.core").monotime()
    local conn, err = db.pg:acquire { timeout = 0.3 }
    local took = require("semstore.core").monotime() - t0
    assert.is_nil(conn)
    assert.are.equal("pool", err.kind)
    assert.truthy(err.message:find("0.3 s", 1, true), err.message)
    assert.is_true(took >= 0.25 and took < 2, "waited " .. took .. " s")
    for _, bad in ipairs { { timeout = -1 }, { timeout = 0 / 0 }, { timeout = "1" }, { timout = 1 } } do
      local c, e = db.pg:acquire(bad)
      assert.is_nil(c)
      assert.are.equal("input", e.kind)
    end
    assert.has_error(function() db.pg:acquire(5) end)
    held:release()
    local again = assert(db.pg:acquire { timeout = 0.3 })
    again:release()
    db:close()
  end)
end)
