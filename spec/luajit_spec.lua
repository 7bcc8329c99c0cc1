-- The LuaJIT contract (README "LuaJIT and OpenResty"), from what a hunt
-- for LuaJIT-build bugs found: each test asserts Lua 5.4's behaviour under
-- 5.4 and the LuaJIT contract under LuaJIT, so one file runs under both
--   LUA_CPATH='build/?.so;;' lua5.4 /usr/bin/busted spec/luajit_spec.lua
--   LUA_CPATH='build-luajit/?.so;;' luajit /usr/bin/busted spec/luajit_spec.lua
-- (no `//`, `<close>` or bit operators here: LuaJIT must parse it).
local semstore = require "semstore"
local compat = require "semstore.compat"
local show = require "semstore.show"
local helpers = require "support.helpers"

local JIT = _VERSION == "Lua 5.1"
local QDRANT = os.getenv "QDRANT_URL"
local REDIS = os.getenv "REDIS_URL"

describe("LuaJIT contract: semstore.show", function()
  local db
  setup(function() db = helpers.connect() end)
  teardown(function() db:close() end)

  -- under LuaJIT tostring() is "%.14g": 123456789012345 -> 1.2345678901235e+14
  it("shows an int8 of 15 or 16 digits (a number under LuaJIT) with all its digits", function()
    local rows = assert(db.pg:query [[SELECT 123456789012345::int8 AS a, 9007199254740992::int8 AS b,
      -9007199254740992::int8 AS c, 100000000000000::int8 AS d]])
    local text = show.value(rows)
    for _, digits in ipairs { "123456789012345", "9007199254740992", "-9007199254740992", "100000000000000" } do
      assert.truthy(text:find(digits, 1, true), "missing " .. digits .. " in:\n" .. text)
    end
    assert.are.equal("[123456789012345, 9007199254740992]", show.value { rows[1].a, rows[1].b })
  end)
end)

describe("LuaJIT contract: jsonb integers written back", function()
  local db
  setup(function() db = helpers.connect() end)
  teardown(function() db:close() end)

  -- a jsonb read and given back as a parameter is the same jsonb: under
  -- LuaJIT its integers beyond 2^53 are their digits as strings, which
  -- semstore.json_integer writes back as bare numbers
  it("gives back a jsonb with integers beyond 2^53 unchanged", function()
    local text = '{"a": 9007199254740993, "b": [-9223372036854775808, 1], "c": {"d": 9223372036854775807}}'
    local j = assert(db.pg:query("SELECT $1::jsonb AS j", text))[1].j
    if JIT then
      assert.are.equal("9007199254740993", j.a)
      assert.are.equal("-9223372036854775808", j.b[1])
      assert.are.equal(1, j.b[2])
      j.a, j.b[1], j.c.d = semstore.json_integer(j.a), semstore.json_integer(j.b[1]), semstore.json_integer(j.c.d)
    else
      assert.are.equal(9007199254740993, j.a)
    end
    local back = assert(db.pg:query("SELECT $1::jsonb = $2::jsonb AS same, $1::jsonb::text AS t", j, text))[1]
    assert.is_true(back.same, "written back as " .. tostring(back.t))
  end)

  it("writes semstore.json_integer as a bare number, and refuses what is not an integer's digits", function()
    local row = assert(db.pg:query("SELECT $1::jsonb AS j", { n = semstore.json_integer "18446744073709551615" }))[1]
    assert.truthy(row.j.n) -- a JSON number beyond int8: a float in both VMs
    local t = assert(db.pg:query("SELECT $1::jsonb::text AS t", { semstore.json_integer "-9223372036854775808" }))[1].t
    assert.are.equal("[-9223372036854775808]", t)
    for _, bad in ipairs { "", "-", "1.5", "1e3", "01", " 1", "18446744073709551616", "-9223372036854775809", "0x10" } do
      assert.has_error(function() semstore.json_integer(bad) end)
    end
    assert.has_error(function() semstore.json_integer {} end)
  end)
end)

describe("LuaJIT contract: loops left early", function()
  local db
  before_each(function()
    db = helpers.connect { size = 1, max_overflow = 0, timeout = 1 }
    -- deterministic: the connection must come back when the loop is left,
    -- not when the collector happens to find the cursor
    collectgarbage "stop"
  end)
  after_each(function()
    collectgarbage "restart"
    collectgarbage()
    db:close()
  end)

  -- LuaJIT's generic for has no closing value: a loop left early is
  -- closed by hand through the loop's second value, which works the same
  -- under 5.4 (README "What differs under LuaJIT")
  it("a conn:rows() loop left by break, then closed, leaves the connection usable", function()
    local conn = assert(db.pg:acquire())
    local next_row, cursor = assert(conn:rows "SELECT generate_series(1, 100000) AS n")
    for row in next_row, cursor, nil, cursor do
      if row.n == 2 then break end
    end
    cursor:close()
    local ok, res = pcall(conn.query, conn, "SELECT 1 AS x")
    assert.is_true(ok, tostring(res))
    assert.are.equal(1, res[1].x)
    conn:release()
  end)

  it("a conn:copy_to() loop left by break, then closed, leaves the connection usable", function()
    local conn = assert(db.pg:acquire())
    local next_piece, closer = assert(conn:copy_to "COPY (SELECT generate_series(1, 100000)) TO STDOUT")
    for _ in next_piece, closer, nil, closer do break end
    closer:close()
    local ok, res = pcall(conn.query, conn, "SELECT 1 AS x")
    assert.is_true(ok, tostring(res))
    conn:release()
  end)

  it("a db.pg:rows() loop left by break, then closed, gives its connection back to the pool", function()
    local next_row, cursor = assert(db.pg:rows "SELECT generate_series(1, 100000) AS n")
    for row in next_row, cursor, nil, cursor do
      if row.n == 2 then break end
    end
    cursor:close()
    assert.are.equal(0, db.pg:stats().in_use)
    local rows, err = db.pg:query "SELECT 1 AS x"
    assert.is_nil(err and err.message)
    assert.are.equal(1, rows[1].x)
  end)

  it("under Lua 5.4 the loop's closing value does it without the close()", function()
    if JIT then return pending "LuaJIT has no closing value: the test above is how" end
    for row in db.pg:rows "SELECT generate_series(1, 100000) AS n" do
      if row.n == 2 then break end
    end
    assert.are.equal(0, db.pg:stats().in_use)
  end)
end)

describe("LuaJIT contract: db.redis:subscribe as a loop", function()
  local db
  setup(function() db = helpers.connect(nil, { redis = assert(REDIS) }) end)
  teardown(function() db:close() end)

  it("unsubscribes when the loop ends (here by its timeout)", function()
    collectgarbage "stop"
    local channel = helpers.unique("hunt", "-")
    for _ in assert(db.redis:subscribe({ channel }, { timeout = 0.2 })) do end
    local numsub = assert(db.redis:call("PUBSUB", "NUMSUB", channel))
    collectgarbage "restart"
    assert.are.equal(0, numsub[2])
  end)
end)

describe("LuaJIT contract: compat.closing as <close>", function()
  it("gives __close the error that left the function, as <close> does", function()
    local seen = {}
    local resource = setmetatable({}, { __close = function(_, e) seen.called, seen.err = true, e end })
    local ok, err = pcall(compat.closing, resource, function() error("boom", 0) end)
    assert.is_false(ok)
    assert.are.equal("boom", err)
    assert.is_true(seen.called)
    assert.are.equal("boom", seen.err)
  end)

  it("takes nil or false for the resource, as <close> does", function()
    assert.are.equal(1, compat.closing(nil, function() return 1 end))
    assert.are.equal(2, compat.closing(false, function() return 2 end))
  end)
end)

describe("LuaJIT contract: Qdrant point ids beyond 2^53 given back", function()
  -- exactly representable as doubles, so the stand-in (JavaScript numbers)
  -- keeps them exact too; under LuaJIT they come back as decimal strings
  local A, B = 9007199254740994, 9007199254740996
  local db, q, name
  setup(function()
    db = helpers.connect(nil, { qdrant = assert(QDRANT) })
    q = db.qdrant
  end)
  teardown(function() db:close() end)
  before_each(function()
    name = helpers.unique("hunt", "_")
    assert(q:create_collection(name, { vectors = { size = 2, distance = "Dot" } }))
    assert(q:upsert(name, { { id = A, vector = { 1, 0 } }, { id = B, vector = { 0.5, 0 } }, { id = 7, vector = { 0.2, 0 } } }))
  end)
  after_each(function() q:delete_collection(name) end)

  local function hit_ids()
    local hits = assert(q:query(name, { query = { 1, 0 }, limit = 10 }))
    if JIT then
      assert.are.equal("9007199254740994", hits[1].id)
    else
      assert.are.equal(A, hits[1].id)
    end
    return hits[1].id, hits[2].id
  end

  it("deletes points by the ids a query returned", function()
    local a = hit_ids()
    local ok, err = q:delete_points(name, { a })
    assert.is_nil(err and err.message)
    assert.truthy(ok)
    assert.are.equal(2, assert(q:count(name)))
  end)

  it("sets a payload by the ids a query returned", function()
    local _, b = hit_ids()
    local ok, err = q:set_payload(name, { tag = "x" }, { b })
    assert.is_nil(err and err.message)
    assert.truthy(ok)
  end)

  it("scrolls past a page that ends before an id beyond 2^53", function()
    local seen = {}
    local ok, err = pcall(function()
      for p in q:scroll(name, { batch = 1 }) do seen[#seen + 1] = tostring(p.id) end
    end)
    assert.is_true(ok, tostring(err))
    assert.are.same({ "7", "9007199254740994", "9007199254740996" }, seen)
  end)
end)
