-- 10,000 single-row INSERTs, four ways, on the same server in one run:
-- semstore's db.pg:pipeline (one pipeline; all rows one implicit
-- transaction), the same pipeline with a sync point after every row (each
-- row its own transaction, as with the others), conn:query once per row,
-- and LuaSQL (Debian's lua-sql-postgres) once per row. The table is
-- emptied before each contender's turn; the turns go in a shuffled order,
-- round after round, and each one's median round counts (min-max after
-- it). bench/run.sh runs it pinned to one core, the server to the other.
--   DATABASE_URL=... lua5.4 bench/pg_pipeline_bench.lua [rows] [rounds]
local semstore = require "semstore"
local luasql = require("luasql.postgres").postgres()

local url = assert(os.getenv "DATABASE_URL", "set DATABASE_URL")
local N = tonumber(arg[1]) or 10000
local rounds = tonumber(arg[2]) or 9
local now = require("semstore.core").monotime

local db = assert(semstore.connect { name = "bench", postgres = url, pool = { size = 2, max_overflow = 0 } })
local lconn = assert(luasql:connect(url))
assert(db.pg:exec [[
  drop table if exists bench_pipeline;
  create table bench_pipeline (id int4 primary key, name text, score float8)]])

local INSERT = "insert into bench_pipeline (id, name, score) values ($1, $2, $3)"
local names = {}
for i = 1, N do names[i] = "name-" .. i end

local conn = assert(db.pg:acquire())
local contenders = {
  { name = "pipeline", fn = function()
    local r = assert(db.pg:pipeline(function(p)
      for i = 1, N do p:query(INSERT, i, names[i], i / 7) end
    end))
    assert(#r == N)
  end },
  { name = "pipeline, sync per row", fn = function()
    assert(db.pg:pipeline(function(p)
      for i = 1, N do
        p:query(INSERT, i, names[i], i / 7)
        p:sync()
      end
    end))
  end },
  { name = "conn:query per row", fn = function()
    for i = 1, N do assert(conn:query(INSERT, i, names[i], i / 7)) end
  end },
  { name = "LuaSQL per row", fn = function()
    for i = 1, N do
      assert(lconn:execute(("insert into bench_pipeline (id, name, score) values (%d, '%s', %.17g)")
        :format(i, lconn:escape(names[i]), i / 7)))
    end
  end },
}

local rates = {}
for _, c in ipairs(contenders) do -- warm up: prepared statements, caches
  assert(conn:exec "truncate bench_pipeline")
  c.fn()
  rates[c.name] = {}
end
for _ = 1, rounds do
  local order = {}
  for i, c in ipairs(contenders) do order[i] = c end
  for i = #order, 2, -1 do
    local j = math.random(i)
    order[i], order[j] = order[j], order[i]
  end
  for _, c in ipairs(order) do
    assert(conn:exec "truncate bench_pipeline")
    local t0 = now()
    c.fn()
    table.insert(rates[c.name], N / (now() - t0))
  end
end

local med, spread = {}, {}
for name, r in pairs(rates) do
  table.sort(r)
  med[name] = r[(#r + 1) // 2]
  spread[name] = ("%.0f-%.0f"):format(r[1], r[#r])
end
print(("median of %d rounds (min-max), %d single-row INSERTs each, same server, same run"):format(rounds, N))
print "| contender | rows/s | vs LuaSQL | vs conn:query |"
print "|---|---|---|---|"
for _, c in ipairs(contenders) do
  print(("| %s | %.0f (%s) | %.2fx | %.2fx |"):format(c.name, med[c.name], spread[c.name],
    med[c.name] / med["LuaSQL per row"], med[c.name] / med["conn:query per row"]))
end

conn:release()
assert(db.pg:exec "drop table bench_pipeline")
lconn:close()
db:close()
