-- Pipelined Redis writes and reads (issue 11): SET then GET of N keys
-- "bench:<i>" with 10-byte values "v<9 digits>", in pipelines of PIPE
-- commands, from one process, against one server:
--   semstore     db.redis:pipeline(function(p) p:call("SET", k, v) ... end)
--   lua-redis    Debian's lua-redis (redis-lua, pure Lua over LuaSocket)
--                under lua5.1, with its own client:pipeline
--                (bench/redis_lua51_bench.lua, a process of its own)
--   ceiling      redis-benchmark -P PIPE -c 1 -n N -t set,get -q (C, one
--                connection, the same pipeline depth)
-- Keys and values are made before any clock starts; every reply of
-- semstore and lua-redis is checked (each SET "OK"/true, each GET its
-- value) inside the clock. The database is flushed, untimed, before each
-- writer. Each writer runs once a round, the first writer rotating; the
-- best round counts, and the spread over rounds is shown. Client CPU is
-- user+sys of the writing process over its timed span (redis-benchmark's
-- whole process, as a waited-for child); with REDIS_PID set, the server's
-- CPU over each writer's run is shown too.
--
-- Not a test; bench/run.sh runs it pinned to one core, redis-server to the
-- other.
--   REDIS_URL=redis://127.0.0.1:PORT/0 lua5.4 bench/redis_bench.lua [keys (200000)] [rounds (3)] [pipeline (1000)]
-- Progress goes to stderr, the Markdown table to stdout.
local semstore = require "semstore"

local N = math.tointeger(tonumber(arg[1] or "200000")) or error("keys: an integer")
local ROUNDS = math.tointeger(tonumber(arg[2] or "3")) or error("rounds: an integer")
local PIPE = math.tointeger(tonumber(arg[3] or "1000")) or error("pipeline: an integer")
local URL = assert(os.getenv "REDIS_URL", "REDIS_URL: the server's URL")
local REDIS_PID = os.getenv "REDIS_PID"
local LUA51 = os.getenv "LUA51" or "lua5.1"

local HOST, PORT, DB = URL:match "^redis://([^/:@]+):(%d+)/?(%d*)$"
assert(HOST, "REDIS_URL: redis://HOST:PORT/DB (no password) expected, the peers take host and port")
DB = DB ~= "" and DB or "0"

local now = require("semstore.core").monotime

local function log(fmt, ...)
  io.stderr:write(string.format(fmt, ...), "\n")
  io.stderr:flush()
end

-- utime, stime, cutime, cstime of a process (/proc/PID/stat, 1/100 s ticks)
local function proc_times(pid)
  local f = io.open("/proc/" .. pid .. "/stat")
  if not f then return nil end
  local s = f:read "a"
  f:close()
  local fields = {}
  for w in s:match("%) (.*)$"):gmatch "%S+" do fields[#fields + 1] = w end
  -- fields 14-17; `fields` starts at field 3
  return tonumber(fields[12]) / 100, tonumber(fields[13]) / 100, tonumber(fields[14]) / 100, tonumber(fields[15]) / 100
end
local function self_cpu()
  local u, s = proc_times "self"
  return u + s
end
local function children_cpu()
  local _, _, cu, cs = proc_times "self"
  return cu + cs
end
local function server_cpu()
  if not REDIS_PID then return nil end
  local u, s = proc_times(REDIS_PID)
  return u and u + s
end

-- ------------------------------------------------------------- the keys

local keys, vals = {}, {}
for i = 1, N do
  keys[i] = "bench:" .. i
  vals[i] = string.format("v%09d", i)
  assert(#vals[i] == 10)
end

local db = assert(semstore.connect { redis = URL })
local r = db.redis

local function flush()
  assert(r:call("FLUSHDB"))
  collectgarbage()
end

-- ------------------------------------------------------------- the writers

local function run_semstore()
  local c0 = self_cpu()
  local t0 = now()
  for first = 1, N, PIPE do
    local last = math.min(first + PIPE - 1, N)
    local replies = assert(r:pipeline(function(p)
      for i = first, last do p:call("SET", keys[i], vals[i]) end
    end))
    assert(#replies == last - first + 1, "semstore: a SET pipeline lost replies")
    for k = 1, #replies do
      if replies[k] ~= "OK" then error("semstore: SET " .. keys[first + k - 1] .. " answered " .. tostring(replies[k])) end
    end
  end
  local t1 = now()
  for first = 1, N, PIPE do
    local last = math.min(first + PIPE - 1, N)
    local replies = assert(r:pipeline(function(p)
      for i = first, last do p:call("GET", keys[i]) end
    end))
    assert(#replies == last - first + 1, "semstore: a GET pipeline lost replies")
    for k = 1, #replies do
      if replies[k] ~= vals[first + k - 1] then
        error("semstore: GET " .. keys[first + k - 1] .. " answered " .. tostring(replies[k]))
      end
    end
  end
  local t2 = now()
  return { set_s = t1 - t0, get_s = t2 - t1, cpu = self_cpu() - c0 }
end

local function run_lua_redis()
  local cmd = string.format("env -u LUA_PATH -u LUA_CPATH %s bench/redis_lua51_bench.lua %s %s %s %d %d", LUA51, HOST,
    PORT, DB, N, PIPE)
  local p = assert(io.popen(cmd))
  local out = p:read "a"
  local ok = p:close()
  local set_s, get_s, cpu = out:match "set_s=([%d.]+) get_s=([%d.]+) cpu_s=([%d.]+)"
  assert(ok and set_s, "the lua-redis writer failed: " .. out)
  return { set_s = tonumber(set_s), get_s = tonumber(get_s), cpu = tonumber(cpu) }
end

local function run_redis_benchmark(extra)
  local cmd = string.format("redis-benchmark -h %s -p %s --dbnum %s -P %d -c 1 -n %d -t set,get -q%s", HOST, PORT, DB,
    PIPE, N, extra)
  local c0 = children_cpu()
  local p = assert(io.popen(cmd))
  local out = p:read "a"
  local ok = p:close()
  local cpu = children_cpu() - c0
  -- -q prints progress lines ending in \r, then "SET: 2631579.00 requests per second, ..."
  local set = out:match "SET: ([%d.]+) requests per second"
  local get = out:match "GET: ([%d.]+) requests per second"
  assert(ok and set and get, "redis-benchmark failed: " .. out)
  return { set_s = N / tonumber(set), get_s = N / tonumber(get), cpu = cpu }
end

local WRITERS = {
  { key = "semstore", name = "semstore `db.redis:pipeline` (lua5.4)", run = run_semstore },
  { key = "lua_redis", name = "lua-redis 2.0.5 `client:pipeline` (lua5.1, LuaSocket)", run = run_lua_redis },
  { key = "ceiling", name = "`redis-benchmark -P " .. PIPE .. " -c 1 -n " .. N .. " -t set,get` (C, the ceiling)",
    run = function() return run_redis_benchmark "" end },
  -- the same, but over the benchmark's key space and value size: without -r
  -- redis-benchmark sets one key, "key:__rand_int__", N times over (3-byte
  -- values), so the server never grows its dictionary
  { key = "ceiling_r", name = "the same with `-r " .. N .. " -d 10` (random keys out of " .. N .. ", 10-byte values)",
    run = function() return run_redis_benchmark(" -r " .. N .. " -d 10") end },
}
-- REDIS_BENCH_ONLY=semstore runs semstore alone (for perf), with no table
local ONLY = os.getenv "REDIS_BENCH_ONLY"

-- warm up: the pool's connection, both processes' memory
flush()
run_semstore()

if ONLY then
  for i = #WRITERS, 1, -1 do if WRITERS[i].key ~= ONLY then table.remove(WRITERS, i) end end
  assert(#WRITERS == 1, "REDIS_BENCH_ONLY: semstore, lua_redis, ceiling or ceiling_r")
end

local results = {}
for _, w in ipairs(WRITERS) do results[w.key] = {} end
for round = 1, ROUNDS do
  for k = 0, #WRITERS - 1 do
    local w = WRITERS[(round - 1 + k) % #WRITERS + 1]
    flush()
    local s0 = server_cpu()
    local res = w.run()
    local s1 = server_cpu()
    res.server_cpu = s0 and s1 and s1 - s0
    res.set_ops = N / res.set_s
    res.get_ops = N / res.get_s
    res.ops = 2 * N / (res.set_s + res.get_s)
    local list = results[w.key]
    list[#list + 1] = res
    log("round %d %-9s SET %9.0f ops/s  GET %9.0f ops/s  both %9.0f ops/s  client CPU %5.2f s%s", round, w.key,
      res.set_ops, res.get_ops, res.ops, res.cpu,
      res.server_cpu and string.format("  server CPU %5.2f s", res.server_cpu) or "")
  end
end
flush()
if ONLY then
  db:close()
  return
end

-- ------------------------------------------------------------- the table

local function best(list, field)
  local b = list[1]
  for _, x in ipairs(list) do if x[field] > b[field] then b = x end end
  return b
end
local function range(list, field)
  local lo, hi = math.huge, -math.huge
  for _, x in ipairs(list) do lo, hi = math.min(lo, x[field]), math.max(hi, x[field]) end
  return lo, hi
end
local function cell(list, field)
  local lo, hi = range(list, field)
  return string.format("%.0f (%.0f-%.0f)", best(list, field)[field], lo, hi)
end

local s = results.semstore
print(string.format(
  "best of %d rounds (spread in parentheses), %d keys, 10-byte values, pipelines of %d, same server, same run (`bash bench/run.sh redis %d %d %d`)",
  ROUNDS, N, PIPE, N, ROUNDS, PIPE))
print "| writer | SET ops/s | GET ops/s | SET+GET ops/s | client CPU s | server CPU s | semstore vs writer (SET, GET, both) |"
print "|---|---|---|---|---|---|---|"
for _, w in ipairs(WRITERS) do
  local list = results[w.key]
  local b = best(list, "ops")
  local ratio = "-"
  if w.key ~= "semstore" then
    ratio = string.format("%.2fx, %.2fx, %.2fx", best(s, "set_ops").set_ops / best(list, "set_ops").set_ops,
      best(s, "get_ops").get_ops / best(list, "get_ops").get_ops, best(s, "ops").ops / b.ops)
  end
  print(string.format("| %s | %s | %s | %s | %.2f | %s | %s |", w.name, cell(list, "set_ops"), cell(list, "get_ops"),
    cell(list, "ops"), b.cpu, b.server_cpu and string.format("%.2f", b.server_cpu) or "-", ratio))
end
local vs_peer = best(s, "ops").ops / best(results.lua_redis, "ops").ops
local vs_ceiling = best(s, "ops").ops / best(results.ceiling, "ops").ops
local vs_ceiling_r = best(s, "ops").ops / best(results.ceiling_r, "ops").ops
print(string.format(
  "\naims (SET+GET): semstore >= 5x lua-redis: %.2fx (%s); semstore >= 0.5x redis-benchmark: %.2fx (%s), %.2fx of it with -r %d -d 10",
  vs_peer, vs_peer >= 5 and "met" or "not met", vs_ceiling, vs_ceiling >= 0.5 and "met" or "not met", vs_ceiling_r, N))
db:close()
