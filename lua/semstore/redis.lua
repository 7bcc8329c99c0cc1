-- db.redis: Redis commands over a process-wide pool of hiredis connections
-- (csrc/core/redis.c through csrc/lua/redis_handle.c). call() is one
-- command, pipeline() many in one round trip.
local compat = require "semstore.compat"
compat() -- Lua 5.4's library, under LuaJIT too (semstore/compat.lua)
local core = require "semstore.core"

local M = {}

local Redis = {}
Redis.__index = Redis

-- db.redis:call("SET", "k", "v") -> the reply, or nil, err
function Redis:call(...)
  return self.handle:call(...)
end

-- A pipeline: p:call(...) formats each command in C as it is queued (the
-- builder, csrc/lua/redis_handle.c); a refused command or argument fails
-- the whole pipeline, with nothing sent.

-- db.redis:pipeline(function(p) p:call(...); ... end) -> the array of
-- replies, in order (an error reply is an error table in its place), or
-- nil, err when the connection failed. Nothing is sent if fn raises.
function Redis:pipeline(fn)
  if type(fn) ~= "function" then
    return nil, core.error { kind = "input", message = "pipeline() takes a function that queues commands with p:call" }
  end
  local p = self.handle:builder()
  fn(p)
  return self.handle:run(p)
end

local Transaction = {}
Transaction.__index = Transaction

-- t:call(...) runs at once on the transaction's connection: after WATCH,
-- before MULTI (the reads a transaction decides on)
function Transaction:call(...) return self.conn:call(...) end

-- t:queue(...) queues a command for MULTI ... EXEC
function Transaction:queue(...) self.queued:call(...) end

local TRANSACTION_OPTIONS = { "watch" }

local function is_error(v) return type(v) == "table" and rawget(v, "kind") ~= nil end

-- db.redis:transaction(function(t) ... end, { watch = { keys } }): on one
-- connection, WATCH the keys, run fn (t:call for reads, t:queue for the
-- writes), then send MULTI, the queued commands and EXEC in one write.
-- Returns EXEC's array of replies; nil and a "conflict" error when a
-- watched key changed meanwhile (nothing ran: try again); nil and the
-- first refused command's error when Redis refused to queue one (nothing
-- ran either). If fn raises, nothing is sent, the connection is not reused,
-- and the error goes on up.
function Redis:transaction(fn, opts)
  if type(fn) ~= "function" then
    return nil, core.error { kind = "input", message = "transaction() takes a function" }
  end
  opts = opts or {}
  local ok, err = core.check_keys(opts, TRANSACTION_OPTIONS, "transaction's options")
  if not ok then return nil, err end
  local watch = opts.watch or {}
  if type(watch) ~= "table" then return nil, core.error { kind = "input", message = "watch must be an array of keys" } end
  local conn
  conn, err = self.handle:acquire()
  if not conn then return nil, err end
  -- released on every way out: a raise, or a coroutine closed meanwhile;
  -- a WATCH or MULTI left open makes the pool close it
  return compat.closing(conn, function()
    if #watch > 0 then
      local w, werr = conn:call("WATCH", table.unpack(watch))
      if not w then return nil, werr end
    end
    local queued = conn:builder()
    queued:call "MULTI"
    local t = setmetatable({ conn = conn, queued = queued }, Transaction)
    fn(t)
    if queued:count() == 1 then
      if #watch > 0 then conn:call "UNWATCH" end
      return {}
    end
    queued:call "EXEC"
    local replies, rerr = conn:run(queued)
    if not replies then return nil, rerr end
    local exec = replies[#replies]
    if exec == core.null then
      return nil, core.error { kind = "conflict",
        message = "a watched key changed: the transaction did not run (WATCH); try again" }
    end
    if is_error(exec) then
      for i = 2, #replies - 1 do
        if is_error(replies[i]) then return nil, replies[i] end
      end
      return nil, exec
    end
    return exec
  end)
end

local SUBSCRIBE_OPTIONS = { "timeout", "patterns" }

local function strings(list, what)
  if type(list) ~= "table" then return nil, what .. " must be an array of names" end
  for i, v in ipairs(list) do
    if type(v) ~= "string" then return nil, string.format("%s[%d] must be a string", what, i) end
  end
  return true
end

-- Messages for channels (and patterns) on a connection of their own.
--   db.redis:subscribe(channels, fn, opts): fn(message) for each message,
--   until fn returns false (then true), or opts.timeout seconds pass with
--   no message (then nil and a "timeout" error), or the connection fails.
--   for message in db.redis:subscribe(channels, opts) do ... end: the loop
--   ends after opts.timeout seconds with no message; a failure raises.
-- A message is { kind = "message", channel =, data = } or, for
-- opts.patterns, { kind = "pmessage", pattern =, channel =, data = }. The
-- subscriptions are confirmed before subscribe returns or calls fn, so a
-- message published after that is delivered. Without opts.timeout it
-- waits for ever.
function Redis:subscribe(channels, fn, opts)
  if type(fn) == "table" and opts == nil then fn, opts = nil, fn end
  opts = opts or {}
  local ok, err = core.check_keys(opts, SUBSCRIBE_OPTIONS, "subscribe's options")
  if not ok then return nil, err end
  local patterns = opts.patterns or {}
  local why
  ok, why = strings(channels, "channels")
  if ok then ok, why = strings(patterns, "patterns") end
  if ok and #channels + #patterns == 0 then ok, why = false, "subscribe needs channels or patterns" end
  local timeout = opts.timeout
  if ok and timeout ~= nil and (type(timeout) ~= "number" or not (timeout >= 0)) then
    ok, why = false, "timeout must be a number of seconds"
  end
  if fn ~= nil and type(fn) ~= "function" then ok, why = false, "subscribe's second argument is a function or the options" end
  if not ok then return nil, core.error { kind = "input", message = why } end
  local sub
  sub, err = self.handle:subscriber()
  if not sub then return nil, err end
  local function fail(e)
    sub:close()
    return nil, e
  end
  -- the confirmations get a wait of their own: a tiny message timeout
  -- must not fail the subscription itself
  local confirm_timeout = math.max(timeout or 30, 5)
  if #channels > 0 then
    ok, err = sub:send("SUBSCRIBE", table.unpack(channels))
    if not ok then return fail(err) end
  end
  if #patterns > 0 then
    ok, err = sub:send("PSUBSCRIBE", table.unpack(patterns))
    if not ok then return fail(err) end
  end
  -- each channel and pattern is confirmed by a message of its own
  local confirmed, deadline = 0, core.monotime() + confirm_timeout
  while confirmed < #channels + #patterns do
    local m
    m, err = sub:next(math.max(0, deadline - core.monotime()))
    if m == nil then return fail(err) end
    if m == false then
      return fail(core.error { kind = "timeout", message = "Redis did not confirm the subscriptions in time" })
    end
    if m[1] == "subscribe" or m[1] == "psubscribe" then confirmed = confirmed + 1 end
  end
  -- the next message, nil when the time ran out, or nil, err
  local function next_message()
    while true do
      local m, e = sub:next(timeout)
      if m == nil then return nil, e end
      if m == false then return nil end
      if m[1] == "message" then return { kind = "message", channel = m[2], data = m[3] } end
      if m[1] == "pmessage" then return { kind = "pmessage", pattern = m[2], channel = m[3], data = m[4] } end
    end
  end
  if fn == nil then
    -- the subscriber is the loop's closing value: it closes when the loop
    -- ends, by break or error too; it closes itself when the messages end
    -- (a loop under LuaJIT has no closing value)
    return function()
      local m, e = next_message()
      if not m then sub:close() end
      if e then error(e, 2) end
      return m
    end, sub, nil, sub
  end
  -- closed on every way out: fn raising, or a coroutine closed meanwhile
  return compat.closing(sub, function()
    while true do
      local m, e = next_message()
      if e then return nil, e end
      if not m then
        return nil, core.error { kind = "timeout", message = string.format("no message in %g s", timeout) }
      end
      if fn(m) == false then return true end
    end
  end)
end

-- The pool's statistics, as db.pg:stats() gives PostgreSQL's.
function Redis:stats() return self.handle:stats() end

function Redis:close() self.handle:close() end

function Redis:__tostring() return tostring(self.handle) end

function M.new(handle) return setmetatable({ handle = handle }, Redis) end

M.methods = Redis

return M
