-- A first look at semstore: connect from the environment, run queries with
-- bound parameters, see the types come back, use a transaction, read the pool's stats.
--   DATABASE_URL=postgresql://user:pass@127.0.0.1:5432/db lua5.4 examples/quickstart.lua
-- (or luajit: LuaJIT's numbers are doubles, so there an int8 beyond 2^53
-- goes in and comes back as its exact decimal string)
local semstore = require "semstore"
local cjson = require "cjson"

local db = assert(semstore.connect { name = "quickstart" })
print("connected:", tostring(db))

-- values are always bound as parameters, never spliced into the SQL
local row = assert(db.pg:query([[
  select $1::int8 as big, $2::text as greeting, 0.1::float8 as f, 12.50::numeric as price, true as ok,
         now() as at, '{"tags":["a","b"],"none":null}'::jsonb as doc, array[1, null, 3] as list,
         null::text as missing]],
  jit and "4611686018427387905" or 4611686018427387905, "héllo, 世界"))[1]
for _, col in ipairs { "big", "greeting", "f", "price", "ok", "at", "doc", "list", "missing" } do
  local v = row[col]
  print(string.format("  %-9s %-8s %s", col, v == semstore.null and "null" or math.type(v) or type(v),
    v == semstore.null and "null" or type(v) == "table" and cjson.encode(v) or tostring(v)))
end

assert(db.pg:exec [[
  drop table if exists quickstart_notes;
  create table quickstart_notes (id bigserial primary key, body text not null unique, meta jsonb)]])

-- a transaction: everything or nothing; nested calls become savepoints
local id = assert(db.pg:transaction(function(tx)
  local r = assert(tx:query("insert into quickstart_notes (body, meta) values ($1, $2) returning id",
    "first note", { source = "quickstart" }))
  local ok, err = tx:transaction(function(inner)
    return inner:query("insert into quickstart_notes (body) values ($1)", "first note") -- duplicate
  end)
  print("inner savepoint rolled back:", ok, err and err.code, err and err.constraint)
  return r[1].id
end))
print("committed note", id)

-- a failure rolls the whole transaction back and comes back as nil, err
local ok, err = db.pg:transaction(function(tx)
  assert(tx:query("insert into quickstart_notes (body) values ($1)", "second note"))
  error("something went wrong")
end)
print("rolled back:", ok, tostring(err))
print("notes stored:", assert(db.pg:query "select count(*) as n from quickstart_notes")[1].n)

-- an injection attempt is only ever a value
local evil = "x'); drop table quickstart_notes; --"
assert(db.pg:query("insert into quickstart_notes (body) values ($1)", evil))
print("stored literally:", assert(db.pg:query("select body from quickstart_notes where body = $1", evil))[1].body)

-- a connection of your own, returned however the function ends (under
-- Lua 5.4 alone, `local conn <close> = assert(db.pg:acquire())` does it)
local conn = assert(db.pg:acquire())
require("semstore.compat").closing(conn, function()
  print("backend pid:", conn:backend_pid(), "status:", conn:transaction_status())
end)

assert(db.pg:exec "drop table quickstart_notes")
local s = db.pg:stats()
print(string.format("pool %s: size=%d idle=%d in_use=%d waiting=%d acquired=%d timeouts=%d evicted=%d wait_ms=%.1f",
  s.name, s.size, s.idle, s.in_use, s.waiting, s.acquired, s.timeouts, s.evicted, s.wait_ms))
db:close()
