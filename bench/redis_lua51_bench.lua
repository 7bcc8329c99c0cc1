-- The lua-redis peer of bench/redis_bench.lua: Debian's lua-redis
-- (redis-lua 2.0.5, pure Lua over LuaSocket, packaged for Lua 5.1-5.3), run
-- under lua5.1. Pipelined SET then GET of N keys "bench:<i>" with 10-byte
-- values "v<9 digits>", in pipelines of PIPE commands with its own
-- client:pipeline(function(p) ... end). Keys and values are made before the
-- clock starts, as bench/redis_bench.lua makes semstore's. Replies are
-- checked (every SET true, every GET its value) after each pipeline, inside
-- the clock, as semstore's are.
-- Prints one line for the parent to read:
--   set_ops=... get_ops=... set_s=... get_s=... cpu_s=...
-- cpu_s is this process's CPU (user+sys, os.clock) over the timed span.
--   lua5.1 bench/redis_lua51_bench.lua HOST PORT [DB (0)] [N (200000)] [PIPE (1000)]
local redis = require "redis"
local socket = require "socket"

local HOST = assert(arg[1], "host")
local PORT = assert(tonumber(arg[2]), "port")
local DB = tonumber(arg[3] or "0")
local N = tonumber(arg[4] or "200000")
local PIPE = tonumber(arg[5] or "1000")

local client = redis.connect(HOST, PORT)
if DB ~= 0 then client:select(DB) end

local keys, vals = {}, {}
for i = 1, N do
  keys[i] = "bench:" .. i
  vals[i] = string.format("v%09d", i)
end
collectgarbage()

local now = socket.gettime

local c0 = os.clock()
local t0 = now()
for first = 1, N, PIPE do
  local last = math.min(first + PIPE - 1, N)
  local replies = client:pipeline(function(p)
    for i = first, last do p:set(keys[i], vals[i]) end
  end)
  assert(#replies == last - first + 1, "lua-redis: a SET pipeline lost replies")
  for k = 1, #replies do
    if replies[k] ~= true then error("lua-redis: SET " .. keys[first + k - 1] .. " answered " .. tostring(replies[k])) end
  end
end
local t1 = now()
for first = 1, N, PIPE do
  local last = math.min(first + PIPE - 1, N)
  local replies = client:pipeline(function(p)
    for i = first, last do p:get(keys[i]) end
  end)
  assert(#replies == last - first + 1, "lua-redis: a GET pipeline lost replies")
  for k = 1, #replies do
    if replies[k] ~= vals[first + k - 1] then
      error("lua-redis: GET " .. keys[first + k - 1] .. " answered " .. tostring(replies[k]))
    end
  end
end
local t2 = now()
local cpu = os.clock() - c0

print(string.format("set_ops=%.0f get_ops=%.0f set_s=%.6f get_s=%.6f cpu_s=%.3f", N / (t1 - t0), N / (t2 - t1),
  t1 - t0, t2 - t1, cpu))
client:quit()
