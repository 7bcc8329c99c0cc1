-- Upserting points into Qdrant: semstore's db.qdrant:upsert (batches of 256,
-- 4 in flight) against (a) Qdrant's official JS client
-- @qdrant/js-client-rest under node (batches of 256, 4 requests in flight
-- from a promise pool, bench/qdrant_js_upsert.mjs) and (b) lua-cjson with
-- LuaSocket's socket.http (one batch of 256 at a time), all sending the same
-- points to the same sink: a server on loopback that answers Qdrant's
-- success body without reading the points (the Qdrant stand-in's --sink
-- mode), so the clients' work is what is measured.
--
-- The points (N of 512-dimension vectors, values with six decimals in
-- [-1,1), and payloads { source = "bench", n = i, tag = "t" .. i % 10 }) are
-- generated once, deterministically, into a JSON file that every writer
-- reads; no writer's clock includes loading them. Each writer runs once a
-- round, the starting writer rotating from round to round; the best round
-- counts, and the spread over rounds is shown. Request bytes are the JSON
-- bodies sent: (b) counts its own, (a) re-encodes its batches after its
-- clock stops, and semstore's are counted once, untimed, by a counting sink
-- (`qdrant_js_upsert.mjs count-sink`). Client CPU is user+sys of the writing
-- process over the timed span (/proc/self/stat here, process.cpuUsage() in
-- node); semstore's user CPU alone bounds its encoding rate from below;
-- with SINK_PID set, the sink's CPU over the same span is shown too.
--
-- Not a test; bench/run.sh runs it pinned to one core, the sink to the other.
--   QDRANT_URL=http://127.0.0.1:PORT lua5.4 bench/qdrant_bench.lua [points (100000)] [rounds (3)]
-- QDRANT_BENCH_POINTS names the points file (default .run/qdrant_points_N.json).
-- Progress goes to stderr, the Markdown table to stdout.

local semstore = require "semstore"
local cjson = require "cjson"
local http = require "socket.http"
local ltn12 = require "ltn12"

local N = math.tointeger(tonumber(arg[1] or "100000")) or error("points: an integer")
local ROUNDS = math.tointeger(tonumber(arg[2] or "3")) or error("rounds: an integer")
local BATCH, PARALLEL = 256, 4
local COLLECTION = "bench_upsert"
local URL = assert(os.getenv "QDRANT_URL", "QDRANT_URL: the sink's URL")
local SINK_PID = os.getenv "SINK_PID"
local FILE = os.getenv "QDRANT_BENCH_POINTS" or (".run/qdrant_points_" .. N .. ".json")
local JS = "bench/qdrant_js_upsert.mjs"

local function log(fmt, ...)
  io.stderr:write(string.format(fmt, ...), "\n")
  io.stderr:flush()
end

local now = require("semstore.core").monotime

-- user and sys seconds of a process, from /proc/PID/stat (clock ticks of 1/100 s)
local function proc_times(pid)
  local f = io.open("/proc/" .. pid .. "/stat")
  if not f then return nil end
  local s = f:read "a"
  f:close()
  local rest = s:match "%) (.*)$"
  local fields = {}
  for w in rest:gmatch "%S+" do fields[#fields + 1] = w end
  -- utime and stime are fields 14 and 15; `rest` starts at field 3
  return tonumber(fields[12]) / 100, tonumber(fields[13]) / 100
end
local function proc_cpu(pid)
  local u, s = proc_times(pid)
  return u and u + s
end

local function shell_quote(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

-- ------------------------------------------------------------- the points

local f = io.open(FILE)
if f then
  f:close()
else
  log("generating %d points into %s", N, FILE)
  assert(os.execute("node " .. JS .. " gen " .. shell_quote(FILE) .. " " .. N), "generating the points failed")
end

log("loading %s", FILE)
local points
do
  local t0 = now()
  f = assert(io.open(FILE, "rb"))
  local text = f:read "a"
  f:close()
  points = cjson.decode(text)
  text = nil -- luacheck: ignore
  assert(#points == N, "the points file holds " .. #points .. " points, not " .. N)
  -- cjson reads every number as a float: ids and n back to integers
  for i = 1, N do
    local p = points[i]
    p.id = math.tointeger(p.id)
    p.payload.n = math.tointeger(p.payload.n)
    assert(p.id == i and #p.vector == 512)
  end
  collectgarbage()
  log("loaded %d points in %.1f s", N, now() - t0)
end

-- ------------------------------------------------------------- the writers

local q = assert(semstore.connect { qdrant = URL }).qdrant
do
  -- the sink keeps collections (upsert asks for the vector size once)
  local ok, err = q:create_collection(COLLECTION, { vectors = { size = 512, distance = "Cosine" } })
  if not ok and not tostring(err):find "already exists" then error(err) end
end

local function run_semstore(qc)
  local u0, s0 = proc_times "self"
  local t0 = now()
  local rep = assert(qc:upsert(COLLECTION, points, { batch_size = BATCH, parallel = PARALLEL }))
  local secs = now() - t0
  local u1, s1 = proc_times "self"
  assert(rep.points == N and rep.retries == 0, "semstore wrote " .. tostring(rep.points) .. " points")
  assert(math.abs(rep.seconds - secs) < 0.05 + secs / 10, "the report's seconds and the clock disagree")
  return { seconds = secs, cpu = (u1 - u0) + (s1 - s0), user = u1 - u0, sys = s1 - s0, batches = rep.batches }
end

local put_url = URL .. "/collections/" .. COLLECTION .. "/points?wait=true"
local function run_luasocket()
  local c0, t0 = proc_cpu "self", now()
  local bytes, batches = 0, 0
  for first = 1, N, BATCH do
    local batch = table.move(points, first, math.min(first + BATCH - 1, N), 1, {})
    local body = cjson.encode { points = batch }
    local out = {}
    local ok, code = http.request {
      url = put_url, method = "PUT",
      headers = { ["content-type"] = "application/json", ["content-length"] = #body },
      source = ltn12.source.string(body), sink = ltn12.sink.table(out),
    }
    if not ok or code ~= 200 then error("LuaSocket upsert: " .. tostring(code)) end
    local answer = cjson.decode(table.concat(out))
    assert(answer.status == "ok" and answer.result.status == "completed")
    bytes, batches = bytes + #body, batches + 1
  end
  return { seconds = now() - t0, cpu = proc_cpu "self" - c0, bytes = bytes, batches = batches }
end

local function run_js()
  local cmd = string.format("node %s upsert %s %s %s %d %d", JS, shell_quote(URL), COLLECTION, shell_quote(FILE), BATCH,
    PARALLEL)
  local p = assert(io.popen(cmd))
  local line = p:read "l"
  local ok = p:close()
  assert(ok and line, "the JS writer failed")
  local r = cjson.decode(line)
  assert(r.points == N, "the JS writer wrote " .. tostring(r.points) .. " points")
  return { seconds = r.seconds, cpu = r.cpu, bytes = math.tointeger(r.bytes), batches = math.tointeger(r.batches) }
end

-- semstore's request bytes, once, untimed, from a sink that counts them
local semstore_bytes
do
  local p = assert(io.popen("node " .. JS .. " count-sink & echo $!; wait"))
  local pid = p:read "l"
  local line = p:read "l"
  local url = assert(line and line:match "(http://%S+)", "the counting sink did not start")
  local qc = assert(semstore.connect { qdrant = url }).qdrant
  run_semstore(qc)
  local out = {}
  local _, code = http.request { url = url .. "/__bytes", sink = ltn12.sink.table(out) }
  assert(code == 200)
  local counted = cjson.decode(table.concat(out))
  semstore_bytes = math.tointeger(counted.bytes)
  qc:close()
  os.execute("kill " .. pid)
  p:close()
  log("semstore sent %d requests, %d bytes of JSON (counted)", counted.requests, semstore_bytes)
end

local WRITERS = {
  { key = "semstore", name = "semstore `q:upsert` (256 a batch, 4 in flight)", run = function() return run_semstore(q) end },
  { key = "js", name = "(a) @qdrant/js-client-rest, node 20 (256 a batch, 4 in flight)", run = run_js },
  { key = "luasocket", name = "(b) lua-cjson + LuaSocket `http.request` (256 a batch, one at a time)", run = run_luasocket },
}

local results = {}
for _, w in ipairs(WRITERS) do results[w.key] = {} end
for round = 1, ROUNDS do
  for k = 0, #WRITERS - 1 do
    local w = WRITERS[(round - 1 + k) % #WRITERS + 1]
    collectgarbage()
    local s0 = SINK_PID and proc_cpu(SINK_PID)
    local r = w.run()
    local s1 = SINK_PID and proc_cpu(SINK_PID)
    r.bytes = r.bytes or semstore_bytes
    r.sink_cpu = s0 and s1 and s1 - s0
    local list = results[w.key]
    list[#list + 1] = r
    log("round %d %-9s %6.2f s  %8.0f points/s  %7.1f MB/s (%d bytes, %d requests)  client CPU %5.2f s%s%s", round,
      w.key, r.seconds, N / r.seconds, r.bytes / r.seconds / 1e6, r.bytes, r.batches, r.cpu,
      r.user and string.format(" (user %.2f, sys %.2f)", r.user, r.sys) or "",
      r.sink_cpu and string.format("  sink CPU %5.2f s (%.0f%%)", r.sink_cpu, 100 * r.sink_cpu / r.seconds) or "")
  end
end

-- ------------------------------------------------------------- the table

local function best(list)
  local b = list[1]
  for _, r in ipairs(list) do if r.seconds < b.seconds then b = r end end
  return b
end
local function range(list, f)
  local lo, hi = math.huge, -math.huge
  for _, r in ipairs(list) do
    local v = f(r)
    lo, hi = math.min(lo, v), math.max(hi, v)
  end
  return lo, hi
end

local s = best(results.semstore)
print(string.format("best of %d rounds, %d points x 512 dims, same points, same sink, same run (`bash bench/run.sh qdrant %d %d`)",
  ROUNDS, N, N, ROUNDS))
print "| writer | points/s | spread (points/s) | MB/s of JSON sent | client CPU s | sink CPU s | semstore vs writer |"
print "|---|---|---|---|---|---|---|"
for _, w in ipairs(WRITERS) do
  local list = results[w.key]
  local b = best(list)
  local lo, hi = range(list, function(r) return N / r.seconds end)
  local clo, chi = range(list, function(r) return r.cpu end)
  local ratio = w.key == "semstore" and "-" or string.format("%.2fx", b.seconds / s.seconds)
  print(string.format("| %s | %.0f | %.0f-%.0f | %.1f | %.2f (%.2f-%.2f) | %s | %s |", w.name, N / b.seconds, lo, hi,
    b.bytes / b.seconds / 1e6, b.cpu, clo, chi, b.sink_cpu and string.format("%.2f", b.sink_cpu) or "-", ratio))
end
print(string.format(
  "| semstore: MB of JSON per second of client user CPU (encoding, plus curl's user-side work; sys %.2f s left out) | - | - | %.1f | %.2f user | - | - |",
  s.sys, s.bytes / s.user / 1e6, s.user))
