-- bash bench/run.sh workflows [DOCUMENTS] [ROUNDS]: what the workflows over
-- the three stores take on the throwaway servers (PostgreSQL, Redis, the
-- Qdrant stand-in), with the local embedder (dim 256, dense and sparse):
-- index_collection of DOCUMENTS (1000) documents of about 2 KB (chunk_size
-- 500, overlap 50), 200 dense and 200 hybrid searches uncached then cached,
-- and a zero-downtime rebuild, each round on a collection of its own; the
-- median of ROUNDS (3) and the spread. No peer runs the same workflow here
-- (the Python stack it replaces cannot be installed), so it prints rates.
require "semstore.compat" () -- Lua 5.4's library under LuaJIT too
local semstore = require "semstore"
local core = require "semstore.core"
local migrate = require "semstore.migrate"

local N, ROUNDS = tonumber(arg[1]) or 1000, tonumber(arg[2]) or 3
local db = assert(semstore.connect { postgres = os.getenv "DATABASE_URL" })
assert(migrate.up(db))
local user = assert(db.users:create { username = "bench-" .. os.time(), email = "bench-" .. os.time() .. "@example.org",
  password = "pw" })
local svc = assert(semstore.services.documents(db))

local words = { "cats", "purr", "database", "rows", "pages", "disk", "bread", "flour", "yeast", "rockets", "orbit",
  "fuel", "search", "vector", "index", "query" }
-- an LCG exact in doubles, so both VMs make the same documents
local seed = 7
local function random(n)
  seed = (seed * 16807) % 2147483647
  return seed % n + 1
end
local docs = {}
for i = 1, N do
  local t = {}
  for j = 1, 300 do t[j] = words[random(#words)] end
  docs[i] = { content = "doc " .. i .. " " .. table.concat(t, " "), file_name = "d" .. i .. ".txt" }
end

local function percentile(sorted, p) return sorted[math.max(1, math.ceil(#sorted * p))] end

local function searches(col, mode)
  local out = {}
  for pass = 1, 2 do
    local lat = {}
    for i = 1, 200 do
      local s = core.monotime()
      assert(svc:search(col.id, "rockets orbit fuel " .. i, { user_id = user.id, mode = mode, limit = 10 }))
      lat[i] = (core.monotime() - s) * 1000
    end
    table.sort(lat)
    out[pass] = lat
  end
  return out[1], out[2]
end

local results = {}
local function note(name, value)
  results[name] = results[name] or {}
  table.insert(results[name], value)
end
for round = 1, ROUNDS do
  local col = assert(db.collections:create { name = "bench-" .. os.time() .. "-" .. round, owner_id = user.id,
    embedding_model = "local-hash", chunk_size = 500, chunk_overlap = 50 })
  local t0 = core.monotime()
  local r = assert(svc:index_collection(col.id, docs))
  local dt = core.monotime() - t0
  note("index_collection, documents/s", r.documents / dt)
  note("index_collection, chunks/s", r.chunks / dt)
  for _, mode in ipairs { "dense", "hybrid" } do
    local cold, warm = searches(col, mode)
    note(mode .. " search uncached, p50 ms", percentile(cold, 0.5))
    note(mode .. " search uncached, p95 ms", percentile(cold, 0.95))
    note(mode .. " search cached, p50 ms", percentile(warm, 0.5))
  end
  local t1 = core.monotime()
  local rb = assert(svc:rebuild_vector_index(col.id, { zero_downtime = true }))
  note("zero-downtime rebuild, vectors/s", rb.vectors / (core.monotime() - t1))
end
print(string.format("%d documents, %d rounds: median (min-max)", N, ROUNDS))
local names = {}
for name in pairs(results) do names[#names + 1] = name end
table.sort(names)
for _, name in ipairs(names) do
  local v = results[name]
  table.sort(v)
  print(string.format("%-40s %10.2f  (%.2f-%.2f)", name, v[math.ceil(#v / 2)], v[1], v[#v]))
end
db:close()
