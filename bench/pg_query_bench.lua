-- semstore against LuaSQL (Debian's lua-sql-postgres) on the same server in
-- one run: one-row round trips, and decoding a 10,000-row, 8-column result
-- read from a table. The contenders take turns in a shuffled order, round
-- after round, and the median round counts, so a noisy moment hurts all
-- alike. Not a test; bench/run.sh runs it pinned to one core, the server to
-- the other.
--   DATABASE_URL=... lua5.4 bench/pg_query_bench.lua [rounds]
local semstore = require "semstore"
local luasql = require("luasql.postgres").postgres()

local url = assert(os.getenv "DATABASE_URL", "set DATABASE_URL")
local rounds = tonumber(arg[1]) or 15

-- seconds on a clock that never jumps
local now = require("semstore.core").monotime

local db = assert(semstore.connect { name = "bench", postgres = url, pool = { size = 2, max_overflow = 0 } })
local lconn = assert(luasql:connect(url))

assert(db.pg:exec [[
  drop table if exists bench_rows;
  create table bench_rows (i4 int4, i8 int8, name text, score float8, active bool, created timestamptz, meta jsonb, note text);
  insert into bench_rows
    select g, g::int8 * 1000003, 'name-' || g, g / 7.0, g % 2 = 0, now() - g * interval '1 minute',
           jsonb_build_object('k', g, 'tags', jsonb_build_array('a', 'b')), repeat('x', 20)
    from generate_series(1, 10000) g;
  analyze bench_rows]])

-- Runs each contender `per_round` times per round, in turns; returns the
-- median rate of each in units per second.
local function race(contenders, per_round, units)
  local rates = {}
  for _, c in ipairs(contenders) do
    c.fn() -- warm up: prepared statements, caches
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
      local t0 = now()
      for _ = 1, per_round do c.fn() end
      table.insert(rates[c.name], per_round * units / (now() - t0))
    end
  end
  local out = {}
  for name, r in pairs(rates) do
    table.sort(r)
    out[name] = r[(#r + 1) // 2]
  end
  return out
end

local conn = assert(db.pg:acquire())
local rt = race({
  { name = "semstore pool:query", fn = function() assert(db.pg:query "select 1 as one") end },
  { name = "semstore conn:query", fn = function() assert(conn:query "select 1 as one") end },
  { name = "LuaSQL", fn = function()
    local cur = assert(lconn:execute "select 1 as one")
    cur:fetch({}, "a")
    cur:close()
  end },
}, 2000, 1)

local sql = "select i4, i8, name, score, active, created, meta, note from bench_rows"
local dec = race({
  { name = "semstore (typed)", fn = function() assert(#assert(conn:query(sql)) == 10000) end },
  { name = "LuaSQL (strings)", fn = function()
    local cur = assert(lconn:execute(sql))
    local rows, row = {}, cur:fetch({}, "a")
    while row do
      rows[#rows + 1] = row
      row = cur:fetch({}, "a")
    end
    cur:close()
    assert(#rows == 10000)
  end },
}, 3, 10000)
conn:release()

print(string.format("median of %d rounds, same server, same run", rounds))
print "| benchmark | semstore | LuaSQL | ratio |"
print "|---|---|---|---|"
print(string.format("| `select 1` round trips/s, pool:query (checkout included) | %.0f | %.0f | %.2fx |",
  rt["semstore pool:query"], rt.LuaSQL, rt["semstore pool:query"] / rt.LuaSQL))
print(string.format("| `select 1` round trips/s, conn:query | %.0f | %.0f | %.2fx |",
  rt["semstore conn:query"], rt.LuaSQL, rt["semstore conn:query"] / rt.LuaSQL))
print(string.format("| rows/s decoding 10,000 x 8 columns (semstore typed, LuaSQL strings) | %.0f | %.0f | %.2fx |",
  dec["semstore (typed)"], dec["LuaSQL (strings)"], dec["semstore (typed)"] / dec["LuaSQL (strings)"]))

assert(db.pg:exec "drop table bench_rows")
lconn:close()
db:close()
