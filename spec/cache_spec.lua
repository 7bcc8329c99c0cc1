-- db.cache against the throwaway redis-server that scripts/servers.sh
-- starts (REDIS_URL).
require "semstore.compat" () -- Lua 5.4's library under LuaJIT too
local semstore = require "semstore"
local core = require "semstore.core"
local cache_module = require "semstore.cache"
local helpers = require "support.helpers"

local URL = assert(os.getenv "REDIS_URL", "run the specs through scripts/test.sh, which sets REDIS_URL")
local DOWN = "redis://app:hunter2-pw@127.0.0.1:1/0" -- nobody listens on port 1

-- valgrind slows this process (not redis-server): time bounds stretch
local SLOW = helpers.under_valgrind and 10 or 1

local tag = assert(io.open "/proc/sys/kernel/random/uuid"):read("l"):sub(1, 8)
local counter = 0
-- A prefix no other test (or run) uses.
local function fresh_prefix()
  counter = counter + 1
  return string.format("spec:%s:%d:", tag, counter)
end

-- A db whose cache has a fresh prefix; opts are more cache options.
local function cache_db(opts, extra)
  local c = { prefix = fresh_prefix() }
  for k, v in pairs(opts or {}) do c[k] = v end
  local e = { redis = URL, cache = c }
  for k, v in pairs(extra or {}) do e[k] = v end
  return helpers.connect(nil, e)
end

local db = cache_db()
local r = db.redis

local function lock_key(cache, key) return cache.prefix .. "\0lock:" .. key end

describe("cache values", function()
  local cache = db.cache

  it("round-trips JSON values exactly", function()
    local cases = {
      { "nested", { title = "x", tags = { "a", "b" }, meta = { n = 1, ok = true, f = 0.5 } } },
      -- under LuaJIT as the exact decimal strings a row gives
      { "int8 above 2^53", { id = helpers.int8 "9007199254740993", neg = helpers.int8 "-9223372036854775808" } },
      { "semstore.null", { deleted_at = semstore.null, list = { 1, semstore.null, 3 } } },
      { "NUL bytes", { s = "a\0b\0" } },
      { "a bare string with NUL", "x\0y" },
      { "empty table", {} },
      { "a number", 42 },
      { "false", false },
      { "null alone", semstore.null },
    }
    for _, case in ipairs(cases) do
      local key = "v:" .. case[1]
      assert.is_true(cache:set(key, case[2], 60), case[1])
      local got = cache:get(key)
      assert.same(case[2], got, case[1])
    end
    local row = cache:get "v:int8 above 2^53"
    assert.equal(helpers.lua54 and "integer" or nil, math.type(row.id))
    assert.equal(helpers.int8 "9007199254740993", row.id)
    assert.equal(semstore.null, cache:get("v:semstore.null").deleted_at)
  end)

  it("sets the TTL and lets entries expire", function()
    assert.is_true(cache:set("ttl", { 1 }, 300))
    local pttl = r:call("PTTL", cache.prefix .. "ttl")
    assert.is_true(pttl > 299000 and pttl <= 300000, tostring(pttl))
    assert.is_true(cache:set("short", "x", 0.3 * SLOW))
    assert.equal("x", cache:get "short")
    helpers.sleep(0.5 * SLOW)
    assert.is_nil(cache:get "short")
    assert.equal(0, r:call("EXISTS", cache.prefix .. "short"))
  end)

  it("gets many in one MGET, in order, nil for misses", function()
    local function mget_calls()
      local info = r:call("INFO", "commandstats")
      return tonumber(info:match "cmdstat_mget:calls=(%d+)" or 0)
    end
    assert(cache:set("m1", { 1 }, 60))
    assert(cache:set("m3", "three", 60))
    local before, stats = mget_calls(), cache:stats()
    local got = cache:get_many { "m1", "m2", "m3", "m4" }
    assert.equal(before + 1, mget_calls())
    assert.same({ 1 }, got[1])
    assert.is_nil(got[2])
    assert.equal("three", got[3])
    assert.is_nil(got[4])
    assert.equal(stats.hits + 2, cache:stats().hits)
    assert.equal(stats.misses + 2, cache:stats().misses)
    assert.same({}, cache:get_many {})
  end)

  it("deletes keys and counts what existed", function()
    assert(cache:set("d1", 1, 60))
    assert(cache:set("d2", 2, 60))
    assert.equal(2, cache:delete("d1", "d2", "d3"))
    assert.is_nil(cache:get "d1")
    assert.is_nil(cache:get "d2")
    assert.equal(0, cache:delete "d1")
    assert.equal(0, cache:delete())
  end)

  it("treats an entry that is not JSON as a miss and an error", function()
    assert(r:call("SET", cache.prefix .. "raw", "not json"))
    local errors = cache:stats().errors
    assert.is_nil(cache:get "raw")
    assert.equal(errors + 1, cache:stats().errors)
    assert.matches("raw does not hold JSON", cache:stats().last_error)
  end)

  it("returns the caller's mistakes as input errors, writing nothing", function()
    local function refused(ok, err)
      assert.is_nil(ok)
      assert.equal("input", err.kind)
    end
    refused(cache:get(42))
    refused(cache:get_many "k")
    refused(cache:get_many { "a", 2 })
    refused(cache:set(42, 1, 60))
    for _, ttl in ipairs { 0, -1, "60", 0 / 0, math.huge, 2 ^ 60, false } do refused(cache:set("bad", 1, ttl)) end
    refused(cache:set("bad", 1))
    for _, value in ipairs { print, 0 / 0, math.huge, { f = print } } do refused(cache:set("bad", value, 60)) end
    refused(cache:set("bad", nil, 60))
    refused(cache:delete("ok", {}))
    refused(cache:delete_matching(nil))
    refused(cache:remember(1, 60, function() return 1 end))
    refused(cache:remember("bad", 0, function() return 1 end))
    refused(cache:remember("bad", 60, "not a function"))
    refused(cache:set_logger "print")
    assert.equal(0, r:call("EXISTS", cache.prefix .. "bad"))
  end)

  it("works under connect{ null = \"nil\" }", function()
    local ndb = cache_db(nil, { null = "nil" })
    assert.is_nil(ndb.cache:get "missing")
    assert.is_true(ndb.cache:set("k", { a = semstore.null }, 60))
    assert.same({ a = semstore.null }, ndb.cache:get "k")
    assert.equal(0, ndb.cache:stats().errors)
    ndb:close()
  end)
end)

describe("cache prefixes", function()
  it("keeps two caches apart", function()
    local a, b = cache_db(), cache_db()
    assert(a.cache:set("same", "a", 60))
    assert(b.cache:set("same", "b", 60))
    assert.equal("a", a.cache:get "same")
    assert.equal("b", b.cache:get "same")
    assert.equal(1, a.cache:delete "same")
    assert.equal("b", b.cache:get "same")
    assert.equal(1, r:call("EXISTS", b.cache.prefix .. "same"))
    a:close()
    b:close()
  end)

  it("comes from the options, else PROJECT_NAME and STAGE, else semstore:", function()
    local function env(t) return function(k) return t[k] end end
    assert.equal("semstore:", cache_module.default_prefix(env {}))
    assert.equal("shop:dev:", cache_module.default_prefix(env { PROJECT_NAME = "shop" }))
    assert.equal("shop:prod:", cache_module.default_prefix(env { PROJECT_NAME = "shop", STAGE = "prod" }))
    assert.equal("shop:staging:", cache_module.default_prefix(env { PROJECT_NAME = "shop", ENVIRONMENT = "staging" }))
    local pdb = helpers.connect(nil, { redis = URL, cache = { prefix = "app:dev:" } })
    assert.equal("app:dev:", pdb.cache.prefix)
    pdb:close()
  end)

  it("refuses unknown or unusable options", function()
    for _, bad in ipairs { { prefx = "x" }, { prefix = 1 }, { logger = "stderr" }, { lock_timeout = 0 }, "x" } do
      local ok, err = semstore.connect { postgres = helpers.url, redis = URL, cache = bad }
      assert.is_nil(ok)
      assert.equal("input", err.kind)
    end
  end)

  it("deletes exactly the matching keys under the prefix, in batches", function()
    local cdb = cache_db()
    local cache, p = cdb.cache, cdb.cache.prefix
    local other = fresh_prefix()
    local N = helpers.under_valgrind and 5000 or 50000
    for first = 1, N, 5000 do
      assert(r:pipeline(function(pl)
        for i = first, first + 4999 do pl:call("SET", p .. "doc:" .. i, "1") end
      end))
    end
    assert(r:pipeline(function(pl)
      for i = 1, 100 do
        pl:call("SET", p .. "user:" .. i, "1")   -- same prefix, other pattern
        pl:call("SET", other .. "doc:" .. i, "1") -- same pattern, other prefix
      end
      pl:call("SET", p .. "xdoc:1", "1")
    end))
    local unlinks = tonumber(r:call("INFO", "commandstats"):match "cmdstat_unlink:calls=(%d+)" or 0)
    assert.equal(N, cache:delete_matching "doc:*")
    local batches = tonumber(r:call("INFO", "commandstats"):match "cmdstat_unlink:calls=(%d+)") - unlinks
    assert.is_true(batches > 1, "one UNLINK for all the keys")
    assert.equal(0, r:call("EXISTS", p .. "doc:1", p .. "doc:" .. math.floor(N / 2), p .. "doc:" .. N))
    local left = 0
    for _, pat in ipairs { p .. "user:*", other .. "doc:*", p .. "xdoc:*" } do
      local cursor = "0"
      repeat
        local reply = r:call("SCAN", cursor, "MATCH", pat, "COUNT", 1000)
        cursor, left = reply[1], left + #reply[2]
      until cursor == "0"
    end
    assert.equal(201, left)
    assert.equal(0, cache:delete_matching "doc:*")
    cdb:close()
  end)

  it("matches a prefix's glob characters literally", function()
    local cdb = helpers.connect(nil, { redis = URL, cache = { prefix = fresh_prefix() .. "[a]*:" } })
    local near = cdb.cache.prefix:gsub("%[a%]%*", "a")
    assert(r:call("SET", near .. "k", "1"))
    assert(cdb.cache:set("k", 1, 60))
    assert.equal(1, cdb.cache:delete_matching "*")
    assert.equal(1, r:call("EXISTS", near .. "k"))
    r:call("DEL", near .. "k")
    cdb:close()
  end)
end)

describe("cache without Redis", function()
  it("acts as a miss, counts, warns once, never raises or shows the password", function()
    local messages = {}
    local ddb = helpers.connect(nil, {
      redis = { url = DOWN, connect_timeout = 0.5 },
      cache = { prefix = fresh_prefix(), logger = function(m) messages[#messages + 1] = m end },
    })
    local cache = ddb.cache
    assert.is_nil(cache:get "k")
    assert.is_false(cache:set("k", { 1 }, 60))
    assert.same({}, cache:get_many { "a", "b" })
    assert.is_false(cache:delete "k")
    assert.is_false(cache:delete_matching "*")
    local calls = 0
    assert.equal(7, cache:remember("k", 60, function()
      calls = calls + 1
      return 7
    end))
    assert.equal(1, calls)
    local s = cache:stats()
    assert.equal(6, s.errors)
    assert.equal(0, s.hits)
    assert.equal(0, s.sets)
    assert.equal(1, #messages)
    assert.is_nil(s.last_error:find("hunter2-pw", 1, true))
    assert.is_nil(messages[1]:find("hunter2-pw", 1, true))
    assert.matches("connection", s.last_error)
    ddb:close()
  end)

  it("writes one line to stderr by default", function()
    local ddb = helpers.connect(nil, { redis = { url = DOWN, connect_timeout = 0.5 }, cache = { prefix = fresh_prefix() } })
    local lines, stderr = {}, io.stderr
    io.stderr = { write = function(_, ...) lines[#lines + 1] = table.concat { ... } end }
    local ok, err = pcall(function()
      ddb.cache:get "a"
      ddb.cache:get "b"
    end)
    io.stderr = stderr
    assert(ok, err)
    assert.equal(1, #lines)
    assert.matches("^semstore cache: .*\n$", lines[1])
    ddb:close()
  end)

  it("uses the logger set_logger gives", function()
    local ddb = helpers.connect(nil, { redis = { url = DOWN, connect_timeout = 0.5 }, cache = { prefix = fresh_prefix() } })
    local n = 0
    assert.is_true(ddb.cache:set_logger(function() n = n + 1 end))
    ddb.cache:get "a"
    assert.equal(1, n)
    ddb:close()
  end)

  it("keeps working after Redis drops every connection, failing one call at most", function()
    local messages = {}
    local cdb = cache_db { logger = function(m) messages[#messages + 1] = m end }
    local cache = cdb.cache
    assert(cache:set("k", "v", 60))
    -- what a restart does to clients: every connection but this one dropped
    assert(r:call("CLIENT", "KILL", "TYPE", "normal"))
    local failures = 0
    for _ = 1, 3 do
      if cache:get "k" ~= "v" then failures = failures + 1 end
    end
    assert.is_true(failures <= 1)
    assert.equal(failures, cache:stats().errors)
    assert.equal(failures, #messages)
    assert.is_true(cache:set("k2", "v2", 60))
    assert.equal("v2", cache:get "k2")
    cdb:close()
  end)
end)

describe("cache remember", function()
  it("computes on a miss, then serves the cached value", function()
    local cdb = cache_db()
    local calls = 0
    local function compute()
      calls = calls + 1
      return { n = 9007199254740993, at = semstore.null }
    end
    local v = cdb.cache:remember("r", 60, compute)
    assert.same({ n = 9007199254740993, at = semstore.null }, v)
    assert.same(v, cdb.cache:remember("r", 60, compute))
    assert.equal(1, calls)
    local pttl = r:call("PTTL", cdb.cache.prefix .. "r")
    assert.is_true(pttl > 59000 and pttl <= 60000)
    assert.equal(0, r:call("EXISTS", lock_key(cdb.cache, "r")))
    local s = cdb.cache:stats()
    assert.equal(1, s.hits)
    assert.equal(1, s.misses)
    assert.equal(1, s.sets)
    cdb:close()
  end)

  it("does not cache a computed nil", function()
    local cdb = cache_db()
    local calls = 0
    local function compute() calls = calls + 1 end
    assert.is_nil(cdb.cache:remember("nil", 60, compute))
    assert.is_nil(cdb.cache:remember("nil", 60, compute))
    assert.equal(2, calls)
    assert.equal(0, r:call("EXISTS", cdb.cache.prefix .. "nil", lock_key(cdb.cache, "nil")))
    cdb:close()
  end)

  it("returns an input error for a value with no JSON form, and releases the lock", function()
    local cdb = cache_db()
    local ok, err = cdb.cache:remember("f", 60, function() return { f = print } end)
    assert.is_nil(ok)
    assert.equal("input", err.kind)
    assert.equal(0, r:call("EXISTS", cdb.cache.prefix .. "f", lock_key(cdb.cache, "f")))
    cdb:close()
  end)

  it("releases the lock when the computation raises, then computes at once", function()
    local cdb = cache_db { lock_timeout = 3 }
    assert.has_error(function()
      cdb.cache:remember("boom", 60, function() error("compute failed") end)
    end, "compute failed")
    assert.equal(0, r:call("EXISTS", lock_key(cdb.cache, "boom")))
    local t0 = core.monotime()
    assert.equal(1, cdb.cache:remember("boom", 60, function() return 1 end))
    assert.is_true(core.monotime() - t0 < 0.5 * SLOW)
    local raised = select(2, pcall(cdb.cache.remember, cdb.cache, "t", 60, function() error({ code = 7 }) end))
    assert.same({ code = 7 }, raised) -- re-raised as it was
    cdb:close()
  end)

  it("computes itself when another holds the lock past lock_timeout", function()
    local cdb = cache_db { lock_timeout = 0.3 }
    local lock = lock_key(cdb.cache, "held")
    assert(r:call("SET", lock, "someone-else", "PX", 10000))
    local t0 = core.monotime()
    assert.equal("mine", cdb.cache:remember("held", 60, function() return "mine" end))
    local waited = core.monotime() - t0
    assert.is_true(waited >= 0.3 and waited < 1.5 * SLOW, tostring(waited))
    assert.equal("someone-else", r:call("GET", lock))
    assert.equal("mine", cdb.cache:get "held")
    cdb:close()
  end)

  it("takes over a lock that expired without a value", function()
    local cdb = cache_db { lock_timeout = 5 }
    assert(r:call("SET", lock_key(cdb.cache, "gone"), "someone-else", "PX", 200))
    local t0 = core.monotime()
    assert.equal(2, cdb.cache:remember("gone", 60, function() return 2 end))
    local waited = core.monotime() - t0
    assert.is_true(waited >= 0.15 and waited < 1 * SLOW, tostring(waited))
    assert.equal(0, r:call("EXISTS", lock_key(cdb.cache, "gone")))
    cdb:close()
  end)

  it("never releases a lock another caller took after ours expired", function()
    local cdb = cache_db()
    local lock = lock_key(cdb.cache, "late")
    assert.equal(3, cdb.cache:remember("late", 60, function()
      -- as if our lock expired during a slow computation and another took it
      assert(r:call("SET", lock, "another-token", "PX", 10000))
      return 3
    end))
    assert.equal("another-token", r:call("GET", lock))
    r:call("DEL", lock)
    cdb:close()
  end)

  it("computes once when several processes miss at the same time", function()
    local prefix, N = fresh_prefix(), 6
    local counter_key = prefix .. "computed"
    -- every process starts its remember at the same moment (CLOCK_MONOTONIC
    -- is system-wide), so all of them miss while the first computes
    local start_at = core.monotime() + 1
    local script = string.format([[
local semstore = require "semstore"
local core = require "semstore.core"
local db = assert(semstore.connect { postgres = %q, redis = %q, cache = { prefix = %q, lock_timeout = 5 } })
core.sleep(math.max(0, %.6f - core.monotime()))
local v = db.cache:remember("hot", 60, function()
  core.sleep(0.3)
  db.redis:call("INCR", %q)
  return { by = tostring(io.open("/proc/self/stat"):read("n")), big = 9007199254740993 }
end)
io.write(core.json_encode(v))
db:close()
]], helpers.url, URL, prefix, start_at, counter_key)
    local procs = {}
    for i = 1, N do
      procs[i] = assert(io.popen(helpers.lua_bin .. " -e " .. helpers.shell_quote(script)))
    end
    local values = {}
    for i = 1, N do
      values[i] = procs[i]:read "a"
      assert(procs[i]:close())
    end
    assert.equal(1, tonumber(r:call("GET", counter_key)))
    local first = assert(core.json_decode(values[1]))
    for i = 1, N do
      assert.same(first, core.json_decode(values[i]))
    end
    assert.equal(9007199254740993, first.big)
    r:call("DEL", counter_key)
  end)
end)

describe("db.cache, found by review", function()
  local URL = os.getenv "REDIS_URL"

  it("keeps remember's locks out of delete_matching('*')", function()
    local c = helpers.connect(nil, { redis = URL, cache = { prefix = "review:" .. os.time() .. ":" } })
    local lock = c.cache.lock_prefix .. "held"
    assert(c.redis:call("SET", lock, "token", "PX", 10000))
    assert(c.cache:set("a", 1, 60))
    assert.equal(1, c.cache:delete_matching("*"))
    assert.equal(1, c.redis:call("EXISTS", lock))
    c.redis:call("DEL", lock)
    c:close()
  end)

  it("never raises once its Redis handle is closed, and reads many keys in parts", function()
    local c = helpers.connect(nil, { redis = URL, cache = { prefix = "review2:" .. os.time() .. ":", logger = function() end } })
    local keys = {}
    for i = 1, 25000 do keys[i] = "k" .. i end
    assert(c.cache:set("k3", "three", 60))
    local got = c.cache:get_many(keys)
    assert.equal("three", got[3])
    assert.is_nil(got[25000])
    -- LuaJIT passes a call fewer than 8000 arguments
    assert.equal(1, c.cache:delete(table.unpack(keys, 1, helpers.luajit and 7000 or 20000)))
    c.redis:close()
    assert.is_nil(c.cache:get("k1"))
    assert.is_false(c.cache:set("k1", 1, 60))
    assert.equal(42, c.cache:remember("k1", 60, function() return 42 end))
    assert.is_true(c.cache:stats().errors >= 3)
    c:close()
  end)
end)
