-- db.redis against the throwaway redis-server that scripts/servers.sh
-- starts (REDIS_URL).
require "semstore.compat" () -- Lua 5.4's library under LuaJIT too
local semstore = require "semstore"
local config = require "semstore.config"
local helpers = require "support.helpers"

local URL = assert(os.getenv "REDIS_URL", "run the specs through scripts/test.sh, which sets REDIS_URL")
local db = helpers.connect(nil, { redis = URL })
local r = db.redis

local function key(prefix) return helpers.unique("spec:" .. (prefix or "k"), ":") end

describe("redis configuration", function()
  local function env(t) return function(k) return t[k] end end

  it("takes REDIS_URL, a URL, or a table of parts", function()
    assert.equal("redis://127.0.0.1:6379/0", config.redis(nil, env {}).url)
    assert.equal("redis://h:1/2", config.redis(nil, env { REDIS_URL = "redis://h:1/2" }).url)
    assert.equal("redis://x:9/0", config.redis("redis://x:9/0", env { REDIS_URL = "redis://h:1/2" }).url)
    assert.equal("redis://app:p%40ss%2F1@h:7000/3",
      config.redis({ host = "h", port = 7000, db = 3, user = "app", password = "p@ss/1" }, env {}).url)
    assert.equal("unix:///tmp/r.sock?db=2", config.redis({ path = "/tmp/r.sock", db = 2 }, env {}).url)
    assert.equal("unix:///tmp/a%3Fb%26c.sock", config.redis({ path = "/tmp/a?b&c.sock" }, env {}).url)
  end)

  it("refuses typos, mixed forms and bad URLs, never quoting a password", function()
    local ok, err = config.redis({ hots = "h" }, env {})
    assert.is_nil(ok)
    assert.matches("hots", err.message)
    ok, err = config.redis({ url = "redis://h", host = "h" }, env {})
    assert.is_nil(ok)
    ok, err = semstore.connect { postgres = helpers.url, redis = "rediss://h" }
    assert.is_nil(ok)
    assert.matches("TLS", err.message)
    ok, err = semstore.connect { postgres = helpers.url, redis = "redis://u:bad%zzsecret@h" }
    assert.is_nil(ok)
    assert.is_nil(err.message:find("secret", 1, true))
    ok, err = semstore.connect { postgres = helpers.url, redis = { url = URL, command_timeout = -1 } }
    assert.is_nil(ok)
    assert.matches("command_timeout", err.message)
  end)

  it("prints the target without its password", function()
    local pdb = helpers.connect(nil, { redis = "redis://app:hunter2-pw@127.0.0.1:1/0" })
    assert.is_nil(tostring(pdb):find("hunter2-pw", 1, true))
    local ok, err = pdb.redis:call("PING")
    assert.is_nil(ok)
    assert.equal("connection", err.kind)
    assert.is_nil(tostring(err):find("hunter2-pw", 1, true))
    pdb:close()
  end)
end)

describe("redis replies", function()
  it("turns every reply type into a Lua value", function()
    local k = key()
    assert.equal("OK", r:call("SET", k, "v"))                 -- status
    assert.equal("v", r:call("GET", k))                       -- bulk
    assert.equal(1, r:call("EXISTS", k))                      -- integer
    assert.equal(math.type(r:call("INCR", key())), "integer")
    assert.equal(semstore.null, r:call("GET", key "missing")) -- nil
    assert(r:call("RPUSH", k .. ":l", "a", "b"))
    assert.same({ "a", "b" }, r:call("LRANGE", k .. ":l", 0, -1)) -- array
    local nested = r:call("EVAL", "return {1, {2, 'x'}, redis.status_reply('S')}", 0)
    assert.same({ 1, { 2, "x" }, "S" }, nested)
    local ok, err = r:call("NOSUCHCOMMAND")                   -- error reply
    assert.is_nil(ok)
    assert.equal("redis", err.kind)
    assert.matches("unknown command", err.message)
    ok, err = r:call("INCR", k)
    assert.matches("not an integer", err.message)
  end)

  it("is binary-safe both ways, and never splices arguments into a command", function()
    local k, v = key(), "a\0b\r\n*1\r\n$8\r\nFLUSHALL\r\n\255"
    assert(r:call("SET", k, v))
    assert.equal(v, r:call("GET", k))
    assert.equal(1, r:call("EXISTS", k))
  end)

  it("writes numbers as exact text and refuses other types", function()
    local k = key()
    -- under LuaJIT an int8 beyond 2^53 is the exact decimal string
    assert(r:call("SET", k, helpers.int8 "9007199254740993"))
    assert.equal("9007199254740993", r:call("GET", k))
    assert(r:call("SET", k, math.floor(2 ^ 53)))
    assert.equal("9007199254740992", r:call("GET", k))
    assert(r:call("SET", k, 0.1))
    assert.equal("0.1", r:call("GET", k))
    assert(r:call("ZADD", k .. ":z", math.huge, "top"))
    assert.equal("inf", r:call("ZSCORE", k .. ":z", "top"))
    for _, bad in ipairs { true, {}, print, 0 / 0 } do
      local ok, err = r:call("SET", k, bad)
      assert.is_nil(ok)
      assert.equal("input", err.kind)
      assert.matches("argument 3", err.message)
    end
    local ok, err = r:call("SET", k, nil)
    assert.equal("input", err.kind)
  end)

  it("gives nil for a nil reply under null = \"nil\", semstore.null inside arrays", function()
    local ndb = helpers.connect(nil, { redis = URL, null = "nil" })
    local k = key()
    assert(ndb.redis:call("SET", k, "1"))
    assert.is_nil(ndb.redis:call("GET", key "missing"))
    assert.same({ "1", semstore.null }, ndb.redis:call("MGET", k, key "missing"))
    ndb:close()
  end)
end)

describe("redis pipelines", function()
  it("sends 10,000 commands in one round trip, replies in order", function()
    local k = key()
    local replies = assert(r:pipeline(function(p)
      for i = 1, 10000 do p:call("RPUSH", k, i) end
    end))
    assert.equal(10000, #replies)
    for i = 1, 10000 do assert.equal(i, replies[i]) end
    assert.equal(10000, r:call("LLEN", k))
  end)

  it("puts an error reply in its place, and refuses bad commands before sending", function()
    local k = key()
    local replies = assert(r:pipeline(function(p)
      p:call("SET", k, "x")
      p:call("INCR", k)
      p:call("GET", k)
    end))
    assert.equal("OK", replies[1])
    assert.equal("redis", replies[2].kind)
    assert.equal("x", replies[3])
    local ok, err = r:pipeline(function(p) p:call("SET", key(), true) end)
    assert.is_nil(ok)
    assert.equal("input", err.kind)
    ok, err = r:pipeline(function(p) p:call("GET", k); p:call("SET", k, nil, "x") end)
    assert.is_nil(ok)
    assert.equal("input", err.kind)
    assert.matches("command 2's argument 3 is a nil", err.message)
    ok, err = r:pipeline(function(p) p:call("SET", k, "x", nil) end)
    assert.matches("argument 4 is a nil", err.message)
    assert.has_error(function() r:pipeline(function() error("boom") end) end, "boom")
    assert.same({}, assert(r:pipeline(function() end)))
    ok, err = r:pipeline("SET")
    assert.equal("input", err.kind)
  end)
end)

describe("redis pool", function()
  it("stays bounded under 10,000 calls, with PostgreSQL's statistics", function()
    local pdb = helpers.connect(nil, { redis = { url = URL, size = 2, max_overflow = 1 } })
    for _ = 1, 10000 do assert(pdb.redis:call("PING")) end
    local s = pdb.redis:stats()
    assert.equal(1, s.opened)
    assert.equal(0, s.in_use)
    assert.equal(10000, s.acquired)
    assert.equal(3, s.max)
    for _, field in ipairs { "size", "idle", "waiting", "timeouts", "evicted", "peak", "wait_ms", "name" } do
      assert.is_not_nil(s[field], field)
    end
    pdb:close()
  end)

  it("runs AUTH with an ACL user and SELECT on connect", function()
    assert(r:call("ACL", "SETUSER", "semstore_spec", "on", ">spec-pass", "~*", "+@all"))
    local host_port = assert(URL:match "^redis://([^/@]+)/")
    local adb = helpers.connect(nil, { redis = "redis://semstore_spec:spec-pass@" .. host_port .. "/4" })
    assert.equal("semstore_spec", adb.redis:call("ACL", "WHOAMI"))
    local k = key()
    assert(adb.redis:call("SET", k, "in 4"))
    assert.equal(0, r:call("EXISTS", k))
    adb:close()
    local bad = helpers.connect(nil, { redis = "redis://semstore_spec:wrong-pass-x@" .. host_port .. "/0" })
    local ok, err = bad.redis:call("PING")
    assert.is_nil(ok)
    assert.equal("redis", err.kind)
    assert.matches("AUTH", err.message)
    assert.is_nil(tostring(err):find("wrong-pass-x", 1, true))
    bad:close()
    assert(r:call("ACL", "DELUSER", "semstore_spec"))
    -- a user named with an empty password: AUTH still names it (a nopass user)
    assert(r:call("ACL", "SETUSER", "semstore_np", "on", "nopass", "~*", "+@all"))
    local npdb = helpers.connect(nil, { redis = "redis://semstore_np:@" .. host_port .. "/0" })
    assert.equal("semstore_np", npdb.redis:call("ACL", "WHOAMI"))
    npdb:close()
    assert(r:call("ACL", "DELUSER", "semstore_np"))
  end)

  it("does not hand a changed session to the next caller", function()
    local pdb = helpers.connect(nil, { redis = { url = URL, size = 1, max_overflow = 0 } })
    local k = key()
    assert(pdb.redis:call("SET", k, "db0"))
    assert(pdb.redis:call("SELECT", 7))
    assert.equal("db0", pdb.redis:call("GET", k))
    pdb:close()
  end)

  it("fails one call at most when the connection was killed, then recovers", function()
    local pdb = helpers.connect(nil, { redis = { url = URL, size = 1, max_overflow = 0 } })
    local id = assert(pdb.redis:call("CLIENT", "ID"))
    r:call("CLIENT", "KILL", "ID", id)
    local failures = 0
    for _ = 1, 3 do
      if not pdb.redis:call("PING") then failures = failures + 1 end
    end
    assert.is_true(failures <= 1)
    assert.equal("PONG", pdb.redis:call("PING"))
    assert.equal(2, pdb.redis:stats().opened)
    pdb:close()
  end)
end)

describe("redis transactions", function()
  it("runs MULTI/EXEC on one connection, with the reads after WATCH", function()
    local k = key()
    assert(r:call("SET", k, 10))
    local replies = assert(r:transaction(function(t)
      local v = assert(t:call("GET", k))
      t:queue("SET", k, tonumber(v) + 5)
      t:queue("INCR", k)
    end, { watch = { k } }))
    assert.same({ "OK", 16 }, replies)
    assert.equal("16", r:call("GET", k))
    assert.equal(0, r:stats().in_use)
  end)

  it("detects a conflict on a watched key, and runs nothing", function()
    local k = key()
    assert(r:call("SET", k, 1))
    local other = helpers.connect(nil, { redis = URL })
    local ok, err = r:transaction(function(t)
      local v = t:call("GET", k)
      assert(other.redis:call("SET", k, 100))   -- another client writes meanwhile
      t:queue("SET", k, tonumber(v) + 1)
      t:queue("SET", k .. ":side", "x")
    end, { watch = { k } })
    assert.is_nil(ok)
    assert.equal("conflict", err.kind)
    assert.equal("100", r:call("GET", k))
    assert.equal(0, r:call("EXISTS", k .. ":side"))
    other:close()
  end)

  it("reports a refused command and runs nothing; a raise sends nothing", function()
    local k = key()
    local ok, err = r:transaction(function(t)
      t:queue("SET", k, "a")
      t:queue("SET", k)               -- wrong arity: refused when queued
    end)
    assert.is_nil(ok)
    assert.equal("redis", err.kind)
    assert.matches("wrong number of arguments", err.message)
    assert.equal(0, r:call("EXISTS", k))
    assert.has_error(function()
      r:transaction(function(t) t:queue("SET", k, "b"); error("boom", 0) end, { watch = { k } })
    end, "boom")
    assert.equal(0, r:call("EXISTS", k))
    assert.equal(0, r:stats().in_use)
    assert.same({}, assert(r:transaction(function() end, { watch = { k } })))
    ok, err = r:transaction(function() end, { wacth = { k } })
    assert.matches("wacth", err.message)
  end)

  it("hands the next caller a connection with no WATCH or MULTI left open", function()
    local pdb = helpers.connect(nil, { redis = { url = URL, size = 1, max_overflow = 0 } })
    local k = key()
    assert(pdb.redis:transaction(function(t) t:queue("SET", k, 1) end, { watch = { k } }))
    -- EXEC ended the WATCH: the same connection is kept
    assert.equal(1, pdb.redis:stats().opened)
    pcall(pdb.redis.transaction, pdb.redis, function() error("x") end, { watch = { k } })
    -- a WATCH left open: that connection is closed, not handed on
    assert(pdb.redis:call("PING"))
    assert.equal(2, pdb.redis:stats().opened)
    pdb:close()
  end)
end)

describe("redis pub/sub", function()
  it("delivers messages to an iterator, patterns included, and closes after the loop", function()
    local ch = key "ch"
    local iter, _, _, closing = assert(r:subscribe({ ch }, { timeout = 0.3, patterns = { ch .. ".*" } }))
    assert.equal(1, r:call("PUBLISH", ch, "hello\0bin"))
    assert.equal(1, r:call("PUBLISH", ch .. ".x", "n1"))
    local got = {}
    for m in iter, nil, nil, closing do got[#got + 1] = m end
    assert.same({ kind = "message", channel = ch, data = "hello\0bin" }, got[1])
    assert.same({ kind = "pmessage", pattern = ch .. ".*", channel = ch .. ".x", data = "n1" }, got[2])
    assert.equal(2, #got)
    assert.matches("closed", tostring(closing))
    -- the subscriber was its own connection: the pool lent nothing
    assert.equal(0, r:stats().in_use)
  end)

  it("calls fn for each message until it returns false, or times out", function()
    local ch = key "ch"
    -- published from another process while this one waits
    os.execute(string.format("(sleep 0.3; redis-cli -u %s PUBLISH %s one >/dev/null; redis-cli -u %s PUBLISH %s two >/dev/null) &",
      helpers.shell_quote(URL), ch, helpers.shell_quote(URL), ch))
    local got = {}
    assert.is_true(r:subscribe({ ch }, function(m)
      got[#got + 1] = m.data
      return #got < 2
    end, { timeout = 5 }))
    assert.same({ "one", "two" }, got)
    local ok, err = r:subscribe({ ch }, function() end, { timeout = 0.2 })
    assert.is_nil(ok)
    assert.equal("timeout", err.kind)
    -- fn raising: the error goes on up, and the subscriber is closed
    os.execute(string.format("(sleep 0.3; redis-cli -u %s PUBLISH %s three >/dev/null) &", helpers.shell_quote(URL), ch))
    assert.has_error(function() r:subscribe({ ch }, function() error("stop", 0) end, { timeout = 5 }) end, "stop")
    local subscribers
    for _ = 1, 50 do -- the server notices the closed connection at once, or nearly
      subscribers = r:call("PUBSUB", "NUMSUB", ch)[2]
      if subscribers == 0 then break end
      require("semstore.core").sleep(0.02)
    end
    assert.equal(0, subscribers)
    ok, err = r:subscribe({}, function() end)
    assert.equal("input", err.kind)
    ok, err = r:subscribe({ ch }, function() end, { timout = 1 })
    assert.matches("timout", err.message)
  end)
end)

describe("db:health()", function()
  it("reports each store, with no password, and ok only when all answer", function()
    local report = db:health()
    assert.is_true(report.ok)
    assert.is_true(report.postgres.ok)
    assert.equal("healthy", report.postgres.status)
    assert.is_true(report.redis.ok)
    assert.equal("healthy", report.redis.status)
    assert.equal("PONG", report.redis.info)
    assert.is_number(report.redis.ms)
    local bad = helpers.connect(nil, { redis = "redis://app:health-pw@127.0.0.1:1/0" })
    report = bad:health()
    assert.is_false(report.ok)
    assert.is_true(report.postgres.ok)
    assert.is_false(report.redis.ok)
    assert.equal("unhealthy", report.redis.status)
    assert.equal("connection", report.redis.error.kind)
    assert.is_nil(report.redis.target:find("health-pw", 1, true))
    assert.is_nil(tostring(report.redis.error):find("health-pw", 1, true))
    bad:close()
  end)

  it("checks only the stores it is given, and refuses a name it does not know", function()
    local bad = helpers.connect(nil, { redis = "redis://127.0.0.1:1/0" })
    local report = bad:health { "postgres" }
    assert.is_true(report.ok, "redis was not asked")
    assert.equal("healthy", report.postgres.status)
    assert.is_nil(report.redis)
    assert.is_nil(report.qdrant)
    report = bad:health { "redis" }
    assert.is_false(report.ok)
    assert.is_nil(report.postgres)
    assert.equal("unhealthy", report.redis.status)
    local ok, err = pcall(bad.health, bad, { "mysql" })
    assert.is_false(ok)
    assert.matches("health: no store named mysql (postgres, redis or qdrant)", err, 1, true)
    bad:close()
  end)
end)

describe("a redis-server restart", function()
  local restart = os.getenv "SEMSTORE_TEST_RESTART_REDIS"

  it("costs one failed call at most, and the cache never raises", function()
    assert(restart, "scripts/servers.sh sets SEMSTORE_TEST_RESTART_REDIS")
    local pdb = helpers.connect(nil, { redis = { url = URL, size = 3 } })
    -- three idle connections in the pool, all about to die
    assert(pdb.redis:pipeline(function(p) p:call("PING") end))
    local held = {}
    for i = 1, 3 do held[i] = assert(pdb.redis.handle:acquire()) end
    for i = 1, 3 do held[i]:release() end
    assert.equal(3, pdb.redis:stats().idle)
    assert.is_true(pdb.cache:set("r", { a = 1 }, 60))
    assert.is_true(os.execute(restart))
    local failures = 0
    for _ = 1, 5 do
      local ok, err = pdb.redis:call("PING")
      if not ok then
        failures = failures + 1
        assert.equal("connection", err.kind)
      end
    end
    assert.is_true(failures <= 1, failures .. " failed calls")
    -- the server came back empty (no persistence): a miss, never a raise
    assert.is_nil(pdb.cache:get("r"))
    assert.is_true(pdb.cache:set("r", { a = 2 }, 60))
    assert.same({ a = 2 }, pdb.cache:get("r"))
    assert.is_true(pdb:health().redis.ok)
    pdb:close()
  end)
end)

describe("redis sessions and printed targets (found by review)", function()
  it("prints no password, however the URL spells it", function()
    for _, url in ipairs { "redis://hunter2-x@127.0.0.1:1/0", "redis://:hun#ter2-x@127.0.0.1:1/0",
      "redis://app:hun'ter2-x@127.0.0.1:1/0", "redis://app:p%40ss-hunter2-x@127.0.0.1:1/0" } do
      local pdb = helpers.connect(nil, { redis = url })
      assert.is_nil(tostring(pdb):find("hunter2-x", 1, true), url)
      assert.is_nil(tostring(pdb):find("ter2-x", 1, true), url)
      assert.is_nil(pdb:health().redis.target:find("ter2", 1, true), url)
      pdb:close()
    end
  end)

  it("refuses URLs it would misread", function()
    for _, url in ipairs { "redis://[::1]junk:6379/0", "redis://127.0.0.1:6379/0?db=3", "redis://127.0.0.1:6379:99/0" } do
      local ok, err = semstore.connect { postgres = helpers.url, redis = url }
      assert.is_nil(ok, url)
      assert.equal("input", err.kind)
    end
  end)

  it("does not hand on a WATCH that an EXEC outside MULTI left, nor a QUIT connection", function()
    local pdb = helpers.connect(nil, { redis = { url = URL, size = 1, max_overflow = 0 } })
    local k = key()
    local replies = assert(pdb.redis:pipeline(function(p) p:call("WATCH", k); p:call("EXEC") end))
    assert.equal("redis", replies[2].kind)            -- EXEC without MULTI
    assert(r:call("SET", k, "changed"))
    assert.same({ "OK" }, assert(pdb.redis:transaction(function(t) t:queue("SET", k .. ":2", 1) end)))
    assert.equal("OK", pdb.redis:call("QUIT"))
    assert.equal("PONG", pdb.redis:call("PING"))
    pdb:close()
  end)

  it("refuses commands whose replies would come out of step, sending nothing", function()
    local k = key()
    for _, cmd in ipairs { { "SUBSCRIBE", "x" }, { "PSUBSCRIBE", "x*" }, { "MONITOR" }, { "CLIENT", "REPLY", "OFF" } } do
      local ok, err = r:call(table.unpack(cmd))
      assert.is_nil(ok)
      assert.equal("input", err.kind)
      ok, err = r:pipeline(function(p) p:call("SET", k, "queued"); p:call(table.unpack(cmd)) end)
      assert.is_nil(ok)
      assert.equal("input", err.kind)
    end
    assert.equal(0, r:call("EXISTS", k))
    assert.equal("PONG", r:call("PING"))
  end)

  -- coroutine.close is 5.4's; under LuaJIT an abandoned coroutine leaves the connection to the collector
  ;(helpers.lua54 and it or pending)("gives the connection back when a coroutine inside a transaction or subscribe is closed (Lua 5.4 only: coroutine.close)", function()
    local pdb = helpers.connect(nil, { redis = { url = URL, size = 1, max_overflow = 0, timeout = 0.5 } })
    local co = coroutine.create(function()
      pdb.redis:transaction(function() coroutine.yield() end)
    end)
    assert(coroutine.resume(co))
    assert.equal(1, pdb.redis:stats().in_use)
    assert(coroutine.close(co))
    assert.equal(0, pdb.redis:stats().in_use)
    local ch = key "ch"
    co = coroutine.create(function()
      pdb.redis:subscribe({ ch }, function() coroutine.yield() end, { timeout = 5 })
    end)
    os.execute(string.format("(sleep 0.2; redis-cli -u %s PUBLISH %s x >/dev/null) &", helpers.shell_quote(URL), ch))
    assert(coroutine.resume(co))
    assert.equal("suspended", coroutine.status(co))
    assert(coroutine.close(co))
    local n
    for _ = 1, 50 do
      n = r:call("PUBSUB", "NUMSUB", ch)[2]
      if n == 0 then break end
      require("semstore.core").sleep(0.02)
    end
    assert.equal(0, n)
    -- a timeout of 0 waits for no message, but the subscription itself is made
    local ok, err = pdb.redis:subscribe({ ch }, function() end, { timeout = 0 })
    assert.is_nil(ok)
    assert.equal("timeout", err.kind)
    assert.matches("no message", err.message)
    pdb:close()
  end)

  if helpers.luajit then
    it("under LuaJIT gives the connection back when a coroutine inside a transaction is abandoned and collected", function()
      local pdb = helpers.connect(nil, { redis = { url = URL, size = 1, max_overflow = 0, timeout = 0.5 } })
      local co = coroutine.create(function()
        pdb.redis:transaction(function() coroutine.yield() end)
      end)
      assert(coroutine.resume(co))
      assert.equal(1, pdb.redis:stats().in_use)
      co = nil
      collectgarbage()
      collectgarbage()
      assert.equal(0, pdb.redis:stats().in_use)
      assert.equal("PONG", pdb.redis:call("PING"))
      pdb:close()
    end)
  end
end)
