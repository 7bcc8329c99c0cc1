-- semstore against LuaSQL (Debian's lua-sql-postgres) on the same server in
-- one run: one-row round trips, and decoding a 10,000-row, 8-column result
-- read from a table. Prints rows/s and the ratios; not a test.
--   DATABASE_URL=... lua5.4 bench/pg_query_bench.lua [runs]
local semstore = require "semstore"
local luasql = require("luasql.postgres").postgres()

local url = assert(os.getenv "DATABASE_URL", "set DATABASE_URL")
local runs = tonumber(arg[1]) or 50
local trips = 5000

local function now()
  local p = io.popen "date +%s.%N"
  local t = tonumber(p:read "*a")
  p:close()
  return t
end

local db = assert(semstore.connect { name = "bench", postgres = url, pool = { size = 1, max_overflow = 0 } })
local lconn = assert(luasql:connect(url))

assert(db.pg:exec [[
  drop table if exists bench_rows;
  create table bench_rows (i4 int4, i8 int8, name text, score float8, active bool, created timestamptz, meta jsonb, note text);
  insert into bench_rows
    select g, g::int8 * 1000003, 'name-' || g, g / 7.0, g % 2 = 0, now() - g * interval '1 minute',
           jsonb_build_object('k', g, 'tags', jsonb_build_array('a', 'b')), repeat('x', 20)
    from generate_series(1, 10000) g;
  analyze bench_rows]])

local function measure(n, fn)
  fn() -- warm up: prepared statements, caches
  local t0 = now()
  for _ = 1, n do fn() end
  local dt = now() - t0
  return dt
end

local results = {}
local function report(name, count, dt)
  results[name] = count / dt
  print(string.format("  %-34s %12.0f /s", name, count / dt))
end

print(string.format("round trips: select 1, %d each", trips))
report("semstore pool:query", trips, measure(trips, function() assert(db.pg:query "select 1 as one") end))
local conn = assert(db.pg:acquire())
report("semstore conn:query", trips, measure(trips, function() assert(conn:query "select 1 as one") end))
report("LuaSQL execute+fetch", trips, measure(trips, function()
  local cur = assert(lconn:execute "select 1 as one")
  cur:fetch({}, "a")
  cur:close()
end))

print(string.format("decoding 10,000 rows x 8 columns, %d runs", runs))
local sql = "select i4, i8, name, score, active, created, meta, note from bench_rows"
report("semstore (typed)", 10000 * runs, measure(runs, function()
  local rows = assert(conn:query(sql))
  assert(#rows == 10000)
end))
report("LuaSQL (strings)", 10000 * runs, measure(runs, function()
  local cur = assert(lconn:execute(sql))
  local rows, row = {}, cur:fetch({}, "a")
  while row do
    rows[#rows + 1] = row
    row = cur:fetch({}, "a")
  end
  cur:close()
  assert(#rows == 10000)
end))
conn:release()

print "ratios (semstore / LuaSQL)"
print(string.format("  round trips (pool:query)  %.2fx", results["semstore pool:query"] / results["LuaSQL execute+fetch"]))
print(string.format("  round trips (conn:query)  %.2fx", results["semstore conn:query"] / results["LuaSQL execute+fetch"]))
print(string.format("  decoding rows/s           %.2fx", results["semstore (typed)"] / results["LuaSQL (strings)"]))

assert(db.pg:exec "drop table bench_rows")
lconn:close()
db:close()
