-- db.redis: Redis commands over a process-wide pool of hiredis connections
-- (csrc/core/redis.c through csrc/lua/redis_handle.c). call() is one
-- command, pipeline() many in one round trip.
local core = require "semstore.core"

local M = {}

local Redis = {}
Redis.__index = Redis

-- db.redis:call("SET", "k", "v") -> the reply, or nil, err
function Redis:call(...)
  return self.handle:call(...)
end

local Pipeline = {}
Pipeline.__index = Pipeline

-- p:call(command, ...): queued, sent with the others in one write
function Pipeline:call(...)
  local n = select("#", ...)
  if n == 0 then error("p:call() needs a command", 2) end
  local command = { ... }
  -- a nil argument would be a hole the C side cannot see
  for i = 1, n do
    if command[i] == nil then
      error(string.format("pipeline command %d: argument %d is nil", #self.commands + 1, i), 2)
    end
  end
  self.commands[#self.commands + 1] = command
end

-- db.redis:pipeline(function(p) p:call(...); ... end) -> the array of
-- replies, in order (an error reply is an error table in its place), or
-- nil, err when the connection failed. Nothing is sent if fn raises.
function Redis:pipeline(fn)
  if type(fn) ~= "function" then
    return nil, core.error { kind = "input", message = "pipeline() takes a function that queues commands with p:call" }
  end
  local p = setmetatable({ commands = {} }, Pipeline)
  fn(p)
  return self.handle:run_pipeline(p.commands)
end

-- The pool's statistics, as db.pg:stats() gives PostgreSQL's.
function Redis:stats() return self.handle:stats() end

function Redis:close() self.handle:close() end

function Redis:__tostring() return tostring(self.handle) end

function M.new(handle) return setmetatable({ handle = handle }, Redis) end

M.methods = Redis

return M
