-- db.cache: JSON values in Redis under one key prefix, over db.redis.
-- A cache is an optimisation, so a Redis that cannot be reached must not
-- break the caller's main work: such a call behaves as a miss (get gives
-- nil, set and delete false), is counted in stats() and reported once per
-- outage through the logger, and never raises. A caller's own mistake (a key
-- that is not a string, a bad TTL, a value with no JSON form) is still an
-- `input` error returned as nil, err, since hiding it would hide a bug.
local compat = require "semstore.compat"
compat() -- Lua 5.4's library, under LuaJIT too (semstore/compat.lua)
local core = require "semstore.core"
local config = require "semstore.config"

local M = {}

local OPTIONS = { "prefix", "logger", "lock_timeout", "lock_ttl" }

-- remember()'s waiters poll with a backoff from POLL_FIRST to POLL_MAX
-- seconds: short enough to see a value soon after it lands, long enough not
-- to flood Redis while a slow computation runs.
local POLL_FIRST, POLL_MAX = 0.01, 0.1

-- delete_matching's SCAN batch size: each batch is one UNLINK.
local SCAN_COUNT = 1000
-- keys in one MGET or UNLINK: below table.unpack's limit (about 1M values
-- under 5.4, 8000 under LuaJIT)
local MAX_KEYS = 5000

-- One atomic step of remember(): the value if there is one, else the lock
-- if nobody holds it. Atomic, so a value set and a lock released between a
-- GET and a SET NX can never make a second caller compute it again.
-- Returns { 1, value } (a hit), { 2 } (the lock is ours) or { 3 } (held).
local GET_OR_LOCK = [[
local v = redis.call('GET', KEYS[1])
if v then return { 1, v } end
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then return { 2 } end
return { 3 }
]]

-- Deletes the lock only while it still holds our token: a lock that expired
-- and was taken by another caller is theirs, never ours to release.
local RELEASE = [[
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
]]

local input_error = require("semstore.options").input_error

-- Seconds become integer milliseconds for PX, exact up to 2^53.
local MAX_SECONDS = 2 ^ 53 / 1000

local function positive(v)
  return type(v) == "number" and v > 0 and v < MAX_SECONDS
end

-- Milliseconds for PX, at least 1 so a tiny TTL still expires rather than
-- being refused by Redis.
local function ms(seconds)
  return math.max(1, math.ceil(seconds * 1000))
end

local function default_logger(message)
  io.stderr:write("semstore cache: ", message, "\n")
end

-- PROJECT_NAME:STAGE: when the environment names the project (STAGE, else
-- ENVIRONMENT, else "dev"), so two projects or stages sharing one Redis
-- never read each other's entries; otherwise "semstore:".
function M.default_prefix(getenv)
  getenv = getenv or config.getenv
  local project = getenv "PROJECT_NAME"
  if project == nil or project == "" then return "semstore:" end
  local stage = getenv "STAGE"
  if stage == nil or stage == "" then stage = getenv "ENVIRONMENT" end
  if stage == nil or stage == "" then stage = "dev" end
  return project .. ":" .. stage .. ":"
end

-- The prefix as a SCAN MATCH pattern: its glob characters stand for
-- themselves.
local function glob_escape(s)
  return (s:gsub("[%*%?%[%]\\]", "\\%0"))
end

-- A token no other remember() holds, in this process or another: a random
-- id per cache, and a counter.
local function random_id()
  local f = io.open("/dev/urandom", "rb")
  if f then
    local bytes = f:read(8)
    f:close()
    if bytes and #bytes == 8 then return (bytes:gsub(".", function(c) return string.format("%02x", c:byte()) end)) end
  end
  return string.format("%x%x", math.random(0, 0x7fffffff), math.random(0, 0x7fffffff))
end

local Cache = {}
Cache.__index = Cache

function Cache:__tostring()
  return string.format("semstore.cache(%q)", self.prefix)
end

-- A Redis failure: counted, kept as text without a password, and reported
-- through the logger on the first failure after a success.
function Cache:_failed(err)
  self.counts.errors = self.counts.errors + 1
  self.counts.last_error = config.redact(tostring(err))
  if not self.failing then
    self.failing = true
    self.logger("Redis failed, the cache acts as empty until it answers: " .. self.counts.last_error)
  end
end

-- db.redis:call, with a failure turned into _failed; nil when it failed,
-- semstore.null for a nil reply (whatever connect's `null` mode). An error
-- reply is a failure too: the cache's own commands are well formed, so one
-- means Redis refused (out of memory, a read-only replica, an ACL).
function Cache:_call(...)
  -- a raise too (the handle closed under the cache) is a failure, never
  -- the caller's problem
  local ran, reply, err = pcall(self.redis.call, self.redis, ...)
  if not ran then reply, err = nil, core.error { kind = "connection", message = tostring(reply) } end
  if err ~= nil then
    self:_failed(err)
    return nil
  end
  self.failing = false
  if reply == nil then return core.null end
  return reply
end

-- A stored value's Lua form; a value the cache did not write (not JSON)
-- counts as an error and reads as a miss.
function Cache:_decode(key, raw)
  local v, err = core.json_decode(raw)
  if v == nil then
    self.counts.errors = self.counts.errors + 1
    self.counts.last_error = string.format("%s does not hold JSON: %s", key, tostring(err))
  end
  return v
end

local function check_key(key, what)
  if type(key) ~= "string" then return input_error("%s takes a string key, not a %s", what, type(key)) end
  return true
end

-- The JSON text of a value, or nil, err for one that has none (nil, a
-- function, NaN, a cycle); nil is refused because it is what get gives on a
-- miss, so it could never be read back as itself.
local function encode(value, what)
  if value == nil then return input_error("%s: nil cannot be cached (use delete)", what) end
  return core.json_encode(value)
end

local function check_ttl(ttl, what)
  if not positive(ttl) then
    return input_error("%s takes a TTL in seconds, a positive number below 2^53 ms, not %s", what, tostring(ttl))
  end
  return true
end

-- cache:get(key) -> the value, or nil on a miss (or when Redis is down)
function Cache:get(key)
  local ok, err = check_key(key, "get")
  if not ok then return nil, err end
  local raw = self:_call("GET", self.prefix .. key)
  if raw == nil then return nil end
  if raw == core.null then
    self.counts.misses = self.counts.misses + 1
    return nil
  end
  local v = self:_decode(key, raw)
  if v ~= nil then self.counts.hits = self.counts.hits + 1 end
  return v
end

-- cache:get_many{ k1, k2, ... } -> a table whose [i] is keys[i]'s value, nil
-- for a miss; one MGET. All misses ({}) when Redis is down.
function Cache:get_many(keys)
  if type(keys) ~= "table" then return input_error("get_many takes an array of keys, not a %s", type(keys)) end
  local n = #keys
  if n == 0 then return {} end
  local full = {}
  for i = 1, n do
    local ok, err = check_key(keys[i], "get_many")
    if not ok then return nil, err end
    full[i] = self.prefix .. keys[i]
  end
  -- one MGET, or one per MAX_KEYS keys: table.unpack has its limits
  local raws, values = {}, {}
  for first = 1, n, MAX_KEYS do
    local last = math.min(n, first + MAX_KEYS - 1)
    local part = self:_call("MGET", table.unpack(full, first, last))
    if part == nil then return values end
    table.move(part, 1, last - first + 1, first, raws)
  end
  for i = 1, n do
    local raw = raws[i]
    if raw ~= core.null then values[i] = self:_decode(keys[i], raw) end
    if values[i] ~= nil then
      self.counts.hits = self.counts.hits + 1
    else
      self.counts.misses = self.counts.misses + 1
    end
  end
  return values
end

-- cache:set(key, value, ttl) -> true, or false when Redis is down
function Cache:set(key, value, ttl)
  local ok, err = check_key(key, "set")
  if not ok then return nil, err end
  ok, err = check_ttl(ttl, "set")
  if not ok then return nil, err end
  local text
  text, err = encode(value, "set")
  if not text then return nil, err end
  return self:_set(key, text, ttl)
end

function Cache:_set(key, text, ttl)
  if not self:_call("SET", self.prefix .. key, text, "PX", ms(ttl)) then return false end
  self.counts.sets = self.counts.sets + 1
  return true
end

-- cache:delete(key, ...) -> how many existed, or false when Redis is down
function Cache:delete(...)
  local n = select("#", ...)
  if n == 0 then return 0 end
  local full = {}
  for i = 1, n do
    local key = select(i, ...)
    local ok, err = check_key(key, "delete")
    if not ok then return nil, err end
    full[i] = self.prefix .. key
  end
  local removed = 0
  for first = 1, n, MAX_KEYS do
    local part = self:_call("UNLINK", table.unpack(full, first, math.min(n, first + MAX_KEYS - 1)))
    if part == nil then return false end
    removed = removed + part
  end
  self.counts.deletes = self.counts.deletes + removed
  return removed
end

-- cache:delete_matching(pattern) -> how many keys under the prefix matching
-- the glob pattern were removed, or false when Redis failed part way (what
-- was removed by then stays removed). SCAN, never KEYS, so Redis is never
-- blocked; each batch is one UNLINK.
function Cache:delete_matching(pattern)
  if type(pattern) ~= "string" then
    return input_error("delete_matching takes a glob pattern (a string), not a %s", type(pattern))
  end
  local match, cursor, removed = glob_escape(self.prefix) .. pattern, "0", 0
  -- SCAN ends when the cursor comes back to 0; every step is one bounded call
  repeat
    local reply = self:_call("SCAN", cursor, "MATCH", match, "COUNT", SCAN_COUNT)
    if reply == nil then return false end
    cursor = reply[1]
    local keys = reply[2]
    -- remember's locks share the prefix: a pattern that does not name them
    -- (with its NUL byte) must not free them, or two callers would compute
    if not pattern:find("\0", 1, true) then
      local kept = {}
      for _, k in ipairs(keys) do
        if k:sub(1, #self.lock_prefix) ~= self.lock_prefix then kept[#kept + 1] = k end
      end
      keys = kept
    end
    if #keys > 0 then
      local n = self:_call("UNLINK", table.unpack(keys))
      if n == nil then return false end
      removed = removed + n
      self.counts.deletes = self.counts.deletes + n
    end
  until cursor == "0"
  return removed
end

-- Runs fn under the lock `lock` (token `token`), caches what it returns
-- unless nil, and always releases the lock, re-raising what fn raised.
function Cache:_compute_locked(key, ttl, fn, lock, token)
  local ok, value = pcall(fn)
  local text, err
  if ok and value ~= nil then
    text, err = core.json_encode(value)
    if text then self:_set(key, text, ttl) end
  end
  -- released after the set, so a waiter that sees the lock gone finds the value
  self:_call("EVAL", RELEASE, 1, lock, token)
  if not ok then error(value, 0) end
  if err then return nil, err end
  return value
end

-- cache:remember(key, ttl, fn) -> the cached value, or fn()'s, cached for
-- ttl seconds. One caller computes while the others that miss at the same
-- time wait for its value (up to lock_timeout seconds, then compute
-- themselves). A nil from fn is returned but not cached. When Redis is
-- down, fn is simply called.
function Cache:remember(key, ttl, fn)
  local ok, err = check_key(key, "remember")
  if not ok then return nil, err end
  ok, err = check_ttl(ttl, "remember")
  if not ok then return nil, err end
  if type(fn) ~= "function" then return input_error("remember takes a function to compute the value") end
  self.tokens = self.tokens + 1
  local full, lock, token = self.prefix .. key, self.lock_prefix .. key, self.id .. ":" .. self.tokens
  local deadline, pause, missed = core.monotime() + self.lock_timeout, POLL_FIRST, false
  while true do
    local reply = self:_call("EVAL", GET_OR_LOCK, 2, full, lock, token, ms(self.lock_ttl))
    if reply == nil then return (fn()) end
    if reply[1] == 1 then
      local v = self:_decode(key, reply[2])
      if v ~= nil then
        self.counts.hits = self.counts.hits + 1
        return v
      end
    end
    if not missed then
      self.counts.misses, missed = self.counts.misses + 1, true
    end
    if reply[1] == 2 then return self:_compute_locked(key, ttl, fn, lock, token) end
    local left = deadline - core.monotime()
    if reply[1] == 1 or left <= 0 then
      -- an unreadable entry, or a holder past lock_timeout: compute without
      -- the lock rather than fail, and let the value replace what is there
      local value = fn()
      if value == nil then return nil end
      local text
      text, err = core.json_encode(value)
      if not text then return nil, err end
      self:_set(key, text, ttl)
      return value
    end
    core.sleep(math.min(pause, left))
    pause = math.min(pause * 2, POLL_MAX)
  end
end

-- cache:stats() -> { hits, misses, errors, sets, deletes, last_error }
function Cache:stats()
  local c = self.counts
  return { hits = c.hits, misses = c.misses, errors = c.errors, sets = c.sets, deletes = c.deletes,
    last_error = c.last_error }
end

-- cache:set_logger(fn) -> true; fn(message) is told of a Redis failure,
-- once per outage
function Cache:set_logger(fn)
  if type(fn) ~= "function" then return input_error("set_logger takes a function, not a %s", type(fn)) end
  self.logger = fn
  return true
end

-- A cache over `redis` (a db.redis) with connect's `cache` options, or nil,
-- err for options it does not know or cannot use.
function M.new(redis, opts)
  opts = opts or {}
  if type(opts) ~= "table" then return input_error("the cache options must be a table, not a %s", type(opts)) end
  local ok, err = core.check_keys(opts, OPTIONS, "the cache options")
  if not ok then return nil, err end
  if opts.prefix ~= nil and type(opts.prefix) ~= "string" then return input_error("the cache prefix must be a string") end
  if opts.logger ~= nil and type(opts.logger) ~= "function" then return input_error("the cache logger must be a function") end
  for _, name in ipairs { "lock_timeout", "lock_ttl" } do
    if opts[name] ~= nil and not positive(opts[name]) then
      return input_error("the cache option %s must be a positive number of seconds", name)
    end
  end
  local prefix = opts.prefix or M.default_prefix()
  return setmetatable({
    redis = redis,
    prefix = prefix,
    -- a NUL byte keeps lock names apart from every key a caller can write
    -- in text, and out of delete_matching's reach unless the pattern says so
    lock_prefix = prefix .. "\0lock:",
    logger = opts.logger or default_logger,
    lock_timeout = opts.lock_timeout or 5,
    lock_ttl = opts.lock_ttl or 10,
    id = random_id(),
    tokens = 0,
    failing = false,
    counts = { hits = 0, misses = 0, errors = 0, sets = 0, deletes = 0 },
  }, Cache)
end

M.methods = Cache

return M
