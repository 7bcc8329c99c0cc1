-- /search through nginx (issue 13): examples/openresty/nginx.conf with one
-- worker process, its handlers in worker threads (ngx.run_worker_thread on
-- an 8-thread pool) against the same handlers called in the request phase
-- (/search_blocking), measured with wrk for a fixed time each:
--   uncached  every request a new query (wrk's script counts), so each one
--             embeds, asks Qdrant (hybrid), hydrates from PostgreSQL and
--             writes the cache and search_logs
--   cached    one query over and over: a Redis hit after the first, plus
--             the permission check and the search_logs insert in PostgreSQL
--   pg_sleep  SELECT pg_sleep(0.01): a data layer that waits rather than
--             computes (a slow query, a distant server)
-- and /ping (no thread, no semstore) as the worker's ceiling. pgmoon (a
-- cosocket PostgreSQL driver, which would not block) is no Debian package:
-- that row is skipped and says so.
--
-- Not a test; `bash bench/run.sh openresty` builds build-luajit, starts the
-- throwaway servers and runs it:
--   DATABASE_URL=... REDIS_URL=... QDRANT_URL=... lua5.4 bench/openresty.lua [seconds (5)] [connections (20)] [documents (400)] [rounds (3)]
-- It migrates the database when needed and seeds a collection of its own.
-- Progress goes to stderr, the Markdown table to stdout.
local semstore = require "semstore"
local migrate = require "semstore.migrate"

local SECONDS = tonumber(arg[1] or "5") or error("seconds: a number")
local CONNECTIONS = math.tointeger(tonumber(arg[2] or "20")) or error("connections: an integer")
local DOCUMENTS = math.tointeger(tonumber(arg[3] or "400")) or error("documents: an integer")
local ROUNDS = math.tointeger(tonumber(arg[4] or "3")) or error("rounds: an integer")
local THREADS = 2 -- wrk's

local root = assert(io.popen "pwd"):read "l"
local launch = dofile(root .. "/examples/openresty/launch.lua")

local function log(fmt, ...)
  io.stderr:write(string.format(fmt, ...), "\n")
  io.stderr:flush()
end

local sh = launch.read_command

local ok, why = launch.available()
if not ok then
  log("openresty bench: skipped, %s", why)
  os.exit(0)
end
assert(io.open(root .. "/build-luajit/semstore/core.so"), "build-luajit/semstore/core.so: cmake -S . -B build-luajit -DSEMSTORE_LUA=luajit && cmake --build build-luajit")
assert(sh "command -v wrk" ~= "", "wrk is not installed (apt-get install wrk)")

-- the data: a public collection of DOCUMENTS short notes on four topics
local db = assert(semstore.connect { name = "bench-openresty" })
assert(migrate.up(db))
local tag = tostring(os.time())
local user = assert(db.users:create { username = "bench-" .. tag, email = "bench-" .. tag .. "@example.org", password = "pw" })
local col = assert(db.collections:create { name = "bench-openresty-" .. tag, owner_id = user.id, embedding_model = "local-hash",
  chunk_size = 400, chunk_overlap = 40, is_public = true })
local svc = assert(semstore.services.documents(db))
local topics = { "cats purr and sleep in the sun", "the database keeps rows in pages on disk",
  "bread needs flour water salt and yeast", "rockets burn fuel to reach orbit" }
local docs = {}
for i = 1, DOCUMENTS do
  local t = topics[i % 4 + 1]
  docs[i] = { content = string.format("Note %d. %s. More about %s, item %d.", i, t, t, i), file_name = "note" .. i .. ".txt" }
end
log("seeding %d documents", DOCUMENTS)
local report = assert(svc:index_collection(col.id, docs))
log("indexed %d documents, %d chunks", report.documents, report.chunks)

-- nginx, in a folder of its own
local dir = sh("mktemp -d /tmp/semstore-bench-openresty.XXXXXX"):gsub("%s+$", "")
local port = launch.free_port()
local nginx = assert(launch.start { dir = dir, port = port, root = root })

local function stop()
  launch.stop(dir)
  os.execute("rm -rf '" .. dir .. "'")
end

-- a wrk script: every request a new query, numbered per wrk thread
local script = dir .. "/uncached.lua"
local f = assert(io.open(script, "w"))
f:write [[
local n, counter = 0, 0
function setup(thread)
  n = n + 1
  thread:set("tid", n)
end
function init() counter = 0 end
function request()
  counter = counter + 1
  return wrk.format("GET", wrk.path .. "&q=notes%20about%20item%20" .. counter .. "%20thread%20" .. tid)
end
]]
f:close()

local function seconds_of(v, unit)
  local n = tonumber(v)
  if unit == "us" then return n / 1e6 elseif unit == "ms" then return n / 1e3 elseif unit == "m" then return n * 60 end
  return n
end

local function wrk(path, with_script, seconds)
  local cmd = string.format("wrk -t%d -c%d -d%gs --latency %s '%s%s' 2>&1", THREADS, CONNECTIONS, seconds,
    with_script and ("-s " .. script) or "", nginx.url, path)
  local out = sh(cmd)
  local res = {
    rps = tonumber(out:match "Requests/sec:%s*([%d%.]+)"),
    requests = tonumber(out:match "(%d+) requests in"),
    non2xx = tonumber(out:match "Non%-2xx or 3xx responses:%s*(%d+)") or 0,
    errors = out:match "Socket errors:[^\n]*",
  }
  local v, unit = out:match "\n%s*50%%%s*([%d%.]+)(%a+)"
  if v then res.p50 = seconds_of(v, unit) end
  v, unit = out:match "\n%s*99%%%s*([%d%.]+)(%a+)"
  if v then res.p99 = seconds_of(v, unit) end
  assert(res.rps, "wrk: " .. out)
  return res
end

local base = string.format("?collection=%s&mode=hybrid&limit=5&user_id=%d", col.id, user.id)
-- pairs of rows: the same handler in worker threads and in the request phase
local runs = {
  { name = "/ping (no thread, no semstore)", path = "/ping" },
  { name = "/search, uncached: worker threads", path = "/search" .. base, script = true, key = "unc", threads = true },
  { name = "/search, uncached: request phase", path = "/search_blocking" .. base, script = true, key = "unc" },
  { name = "/search, cached: worker threads", path = "/search" .. base .. "&q=cats%20purr", key = "cached", threads = true },
  { name = "/search, cached: request phase", path = "/search_blocking" .. base .. "&q=cats%20purr", key = "cached" },
  { name = "pg_sleep(0.01): worker threads", path = "/slow?seconds=0.01", key = "sleep", threads = true },
  { name = "pg_sleep(0.01): request phase", path = "/slow_blocking?seconds=0.01", key = "sleep" },
}
local okrun, err = pcall(function()
  for _, r in ipairs(runs) do
    log("warm-up: %s, 1 s", r.name)
    wrk(r.path, r.script, 1)
    r.all = {}
  end
  -- each round runs every row once, the first row rotating; the best round counts
  for round = 1, ROUNDS do
    for k = 0, #runs - 1 do
      local r = runs[(k + round - 1) % #runs + 1]
      log("round %d/%d: %s, %g s", round, ROUNDS, r.name, SECONDS)
      local res = wrk(r.path, r.script, SECONDS)
      r.all[#r.all + 1] = res
      if not r.res or res.rps > r.res.rps then r.res = res end
    end
  end
end)
stop()
if not okrun then error(err, 0) end

print(string.format("\nnginx 1.22 + lua-nginx-module 0.10.23 (LuaJIT), 1 worker process, thread pools of 8 threads (Qdrant calls, the rest); "
  .. "wrk -t%d -c%d, %g s a run, best of %d rounds; %d documents, hybrid search, limit 5\n", THREADS, CONNECTIONS, SECONDS,
  ROUNDS, DOCUMENTS))
print "| location | requests/s (best) | rounds' range | p50 | p99 | non-2xx |"
print "|---|---:|---:|---:|---:|---:|"
local rps = {}
for _, r in ipairs(runs) do
  local x, lo, hi, bad = r.res, math.huge, 0, 0
  for _, a in ipairs(r.all) do
    lo, hi, bad = math.min(lo, a.rps), math.max(hi, a.rps), bad + a.non2xx
  end
  print(string.format("| %s | %.0f | %.0f-%.0f | %.1f ms | %.1f ms | %d%s |", r.name, x.rps, lo, hi, (x.p50 or 0) * 1000,
    (x.p99 or 0) * 1000, bad, x.errors and (" (" .. x.errors .. ")") or ""))
  if r.key then
    rps[r.key] = rps[r.key] or {}
    rps[r.key][r.threads and "threads" or "blocking"] = x.rps
  end
end
print "| pgmoon (cosockets, non-blocking) | skipped: pgmoon is not packaged in Debian | | | | |"
print(string.format("\nworker threads / request phase (requests/s): search uncached %.2fx, search cached %.2fx, pg_sleep(0.01) %.2fx",
  rps.unc.threads / rps.unc.blocking, rps.cached.threads / rps.cached.blocking, rps.sleep.threads / rps.sleep.blocking))
