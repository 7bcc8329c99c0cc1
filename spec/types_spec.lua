-- Every PostgreSQL type the decoder knows, both ways, against the real server.
require "semstore.compat" () -- Lua 5.4's library under LuaJIT too
local semstore = require "semstore"
local helpers = require "support.helpers"
local null = semstore.null

describe("types", function()
  local db
  setup(function() db = helpers.connect() end)
  teardown(function() helpers.assert_all_returned(db); db:close() end)

  local function one(sql, ...)
    local rows = assert(db.pg:query(sql, ...))
    return rows[1].v
  end

  describe("decoding by type", function()
    local cases = {
      { "int2", "select 32767::int2 as v", 32767 },
      { "int4 min", "select (-2147483648)::int4 as v", -2147483648 },
      -- beyond 2^53, under LuaJIT: the exact decimal string
      { "int8 2^62+1", "select 4611686018427387905::int8 as v", helpers.int8 "4611686018427387905" },
      { "int8 2^53+1", "select 9007199254740993::int8 as v", helpers.int8 "9007199254740993" },
      { "int8 2^53", "select 9007199254740992::int8 as v", helpers.int8 "9007199254740992" },
      { "int8 -2^53", "select (-9007199254740992)::int8 as v", helpers.int8 "-9007199254740992" },
      { "int8 max", "select 9223372036854775807::int8 as v", helpers.int8 "9223372036854775807" },
      { "int8 min", "select (-9223372036854775808)::int8 as v", helpers.int8 "-9223372036854775808" },
      { "float8", "select 0.1::float8 as v", 0.1 },
      { "float4", "select 1.5::float4 as v", 1.5 },
      { "float8 huge", "select 1e308::float8 as v", 1e308 },
      { "float8 infinity", "select '-Infinity'::float8 as v", -math.huge },
      { "numeric stays exact", "select 12345678901234567890.123456789::numeric as v", "12345678901234567890.123456789" },
      { "bool true", "select true as v", true },
      { "bool false", "select false as v", false },
      { "text", "select 'héllo 世界 🚀'::text as v", "héllo 世界 🚀" },
      { "varchar", "select 'abc'::varchar(5) as v", "abc" },
      { "uuid", "select '550e8400-e29b-41d4-a716-446655440000'::uuid as v", "550e8400-e29b-41d4-a716-446655440000" },
      { "date", "select '2024-02-29'::date as v", "2024-02-29" },
      { "timestamp", "select '2024-02-29 12:34:56.789'::timestamp as v", "2024-02-29T12:34:56.789" },
      { "timestamptz", "select '2024-02-29 12:34:56.789+00'::timestamptz at time zone 'UTC' as v", "2024-02-29T12:34:56.789" },
      { "NULL", "select null::int as v", null },
    }
    for _, c in ipairs(cases) do
      it(c[1], function()
        local v = one(c[2])
        assert.are.equal(c[3], v)
        assert.are.equal(math.type(c[3]), math.type(v))
      end)
    end

    it("timestamptz as ISO 8601 with its offset", function()
      local v = one("select '2024-02-29 12:34:56+00'::timestamptz as v")
      assert.truthy(v:match "^2024%-02%-29T%d%d:34:56[+-]%d%d")
    end)

    it("NaN", function()
      local v = one "select 'NaN'::float8 as v"
      assert.is_true(v ~= v)
    end)

    it("json and jsonb as tables, with null as semstore.null", function()
      local v = one [[select '{"a":[1,2,3],"b":"x","c":null,"d":{"e":true}}'::jsonb as v]]
      assert.are.same({ 1, 2, 3 }, v.a)
      assert.are.equal("x", v.b)
      assert.are.equal(null, v.c)
      assert.is_true(v.d.e)
      assert.are.equal("hello", one [[select '"hello"'::json as v]])
    end)

    it("json decoding: escapes, surrogate pairs, exact integers, floats, empty containers, depth", function()
      local v = one [=[select '{"s":"a\"b\\c\n\u00e9\ud83d\ude80/","i":9007199254740993,"neg":-42,"f":1.5,"e":1e3,
        "big":123456789012345678901234567890,"empty_o":{},"empty_a":[],"t":true,"f2":false,"n":null,
        "nested":[[1,[2,[3]]],{"k":{"k":"v"}}]}'::json as v]=]
      assert.are.equal('a"b\\c\né🚀/', v.s)
      assert.are.equal(helpers.int8 "9007199254740993", v.i)
      assert.are.equal(helpers.lua54 and "integer" or nil, math.type(v.i))
      assert.are.equal(-42, v.neg)
      assert.are.equal("float", math.type(v.f))
      assert.are.equal(1000.0, v.e)
      assert.are.equal("float", math.type(v.big))
      assert.are.same({}, v.empty_o)
      assert.are.same({}, v.empty_a)
      assert.is_true(v.t)
      assert.is_false(v.f2)
      assert.are.equal(null, v.n)
      assert.are.same({ { 1, { 2, { 3 } } }, { k = { k = "v" } } }, v.nested)
      local deep = one("select $1::jsonb as v", string.rep("[", 200) .. "7" .. string.rep("]", 200))
      for _ = 1, 200 do deep = deep[1] end
      assert.are.equal(7, deep)
      local wide = {}
      for i = 1, 5000 do wide[i] = i end
      assert.are.same(wide, one("select $1::jsonb as v", wide))
    end)

    it("bytea with every byte value, zero bytes included", function()
      local all = {}
      for i = 0, 255 do all[#all + 1] = string.char(i) end
      all = table.concat(all)
      assert.are.equal(all, one("select $1::bytea as v", semstore.bytea(all)))
      assert.are.equal("a\0b", one [[select '\x610062'::bytea as v]])
    end)

    it("one-dimensional arrays, with NULL inside", function()
      assert.are.same({ 1, null, 3 }, one "select '{1,NULL,3}'::int[] as v")
      assert.are.same({ helpers.int8 "4611686018427387905" }, one "select array[4611686018427387905::int8] as v")
      assert.are.same({ true, false, null }, one "select array[true, false, null] as v")
      assert.are.same({ 1.5, -2 }, one "select array[1.5, -2]::float8[] as v")
      assert.are.same({ "1.10", "2" }, one "select array[1.10, 2]::numeric[] as v")
      assert.are.same({ 'a "b"', "c,d", "{e}", "back\\slash", "NULL", null, "", "ü" },
        one [[select array['a "b"', 'c,d', '{e}', 'back\slash', 'NULL', null, '', 'ü'] as v]])
      assert.are.same({ "2024-01-02T03:04:05" }, one "select array['2024-01-02 03:04:05'::timestamp] as v")
      assert.are.same({ { a = 1 }, null }, one [[select array['{"a":1}'::jsonb, null] as v]])
      assert.are.same({ "\0\1" }, one [[select array['\x0001'::bytea] as v]])
      assert.are.same({}, one "select '{}'::int[] as v")
    end)

    it("multi-dimensional arrays and explicit lower bounds", function()
      assert.are.same({ { 1, 2 }, { 3, 4 } }, one "select '{{1,2},{3,4}}'::int[] as v")
      assert.are.same({ 7, 8 }, one "select '[0:1]={7,8}'::int[] as v")
    end)

    it("unknown types come back as their text", function()
      -- none of these types' OIDs (600, 3614, 869, 1186) is in decoder_for's
      -- list in csrc/lua/convert.c: they take its default case
      assert.are.equal("(1,2)", one "select point(1,2) as v")
      assert.are.equal("'a' 'b'", one "select 'b a'::tsvector as v")
      assert.are.equal("192.168.0.1/24", one "select '192.168.0.1/24'::inet as v")
      assert.are.equal("1 day", one "select interval '1 day' as v")
      -- types made here have OIDs that no list of known types can hold
      local conn = assert(db.pg:acquire())
      assert(conn:exec "begin; create type spec_mood as enum ('sad', 'happy'); create type spec_pair as (a int, b text)")
      local rows, err = conn:query [[select 'happy'::spec_mood as mood, row(1, 'x y')::spec_pair as pair,
        pg_typeof('happy'::spec_mood)::oid::int8 as mood_oid, pg_typeof(row(1, 'x')::spec_pair)::oid::int8 as pair_oid]]
      assert(conn:exec "rollback")
      conn:release()
      assert(rows, err)
      assert.is_true(rows[1].mood_oid >= 16384 and rows[1].pair_oid >= 16384, "user types' OIDs start at 16384")
      assert.are.equal("happy", rows[1].mood)
      assert.are.equal('(1,"x y")', rows[1].pair)
    end)
  end)

  describe("encoding parameters", function()
    it("integers stay exact to 64 bits", function()
      -- under LuaJIT as the exact decimal strings a row gives
      local n = helpers.int8 "4611686018427387905"
      assert.are.equal(n, one("select $1::int8 as v", n))
      local min = helpers.int8 "-9223372036854775808"
      assert.are.equal(min, one("select $1::int8 as v", min))
    end)

    it("floats round-trip exactly", function()
      for _, f in ipairs { 0.1, 1 / 3, 1e-300, 2 ^ 53 + 0.0, -1.5e200 } do
        assert.are.equal(f, one("select $1::float8 as v", f))
      end
      assert.are.equal(math.huge, one("select $1::float8 as v", math.huge))
    end)

    it("booleans, nil and semstore.null", function()
      assert.is_true(one("select $1::bool as v", true))
      assert.are.equal(null, one("select $1::int as v", nil))
      assert.are.equal(null, one("select $1::int as v", null))
      local rows = assert(db.pg:query("select $1::text as a, $2::int as b", nil, 5))
      assert.are.equal(null, rows[1].a)
      assert.are.equal(5, rows[1].b)
    end)

    it("tables as json, arrays when wrapped", function()
      local v = one("select $1::jsonb as v", { name = "x", tags = { "a", "b" }, none = null })
      assert.are.same({ name = "x", tags = { "a", "b" }, none = null }, v)
      assert.are.same({ 1, null, 3 }, one("select $1::int[] as v", semstore.array { 1, null, 3 }))
      assert.are.same({ 1, null, 3 }, one("select $1::int[] as v", semstore.array({ 1, nil, 3, n = 3 })))
      assert.are.same({ 'q"uote', "back\\", "", "x,y}" },
        one("select $1::text[] as v", semstore.array { 'q"uote', "back\\", "", "x,y}" }))
      assert.are.same({ { 1, 2 }, { 3, 4 } }, one("select $1::int[] as v", semstore.array { { 1, 2 }, { 3, 4 } }))
      assert.are.equal(2, one("select array_length($1::text[], 1) as v", semstore.array { "a", "b" }))
    end)

    it("tables as JSON keep integers exact and floats exact", function()
      local doc = { id = helpers.int8 "4611686018427387905", n = 123456789012345, f = 1 / 3, tiny = 5e-324, neg = -0.5,
        s = 'q"uote\\ \n\t\1 é', list = { 1, "two", { three = 3 } }, none = null, yes = true }
      local back = one("select $1::jsonb as v", doc)
      assert.are.same(doc, back)
      -- under LuaJIT the id is a string, and a JSON string
      assert.are.equal(helpers.lua54 and "integer" or nil, math.type(back.id))
      assert.are.equal(1 / 3, back.f)
      -- and the server sees the same numbers
      assert.are.equal("4611686018427387905", one("select ($1::jsonb ->> 'id') as v", doc))
    end)

    it("tables as JSON: empty, forced arrays, number keys", function()
      assert.are.same({}, one("select $1::jsonb as v", {}))
      assert.are.equal("object", one("select jsonb_typeof($1::jsonb) as v", {}))
      assert.are.equal("array", one("select jsonb_typeof($1::jsonb -> 'a') as v", { a = semstore.array {} }))
      assert.are.same({ a = { 1, null, 3 } }, one("select $1::jsonb as v", { a = semstore.array({ 1, nil, 3, n = 3 }) }))
      assert.are.same({ ["1"] = "a", ["3"] = "c" }, one("select $1::jsonb as v", { [1] = "a", [3] = "c" }))
      assert.are.same({ ["1"] = "a", x = "b" }, one("select $1::jsonb as v", { "a", x = "b" }))
    end)

    it("tables with no JSON form are input errors", function()
      local cyclic = {}
      cyclic.self = cyclic
      for _, bad in ipairs { { f = print }, { x = 0 / 0 }, { x = math.huge }, cyclic, { [true] = 1 } } do
        local rows, err = db.pg:query("select $1::jsonb as v", bad)
        assert.is_nil(rows)
        assert.are.equal("input", err.kind)
        assert.truthy(err.message:find "parameter 1")
      end
    end)

    it("unicode text survives", function()
      local s = "日本語 — ñ — 🚀 — \u{10FFFF}"
      assert.are.equal(s, one("select $1::text as v", s))
    end)

    it("an SQL injection attempt through a parameter is stored literally", function()
      assert(db.pg:exec [[drop table if exists injection_probe, injection_sentinel;
        create table injection_probe (s text); create table injection_sentinel (s text);
        insert into injection_sentinel values ('still here')]])
      local function rows_of(table_name)
        local rows = assert(db.pg:query("select s from " .. table_name .. " order by s"))
        local out = {}
        for i, r in ipairs(rows) do out[i] = r.s end
        return out
      end
      -- spliced into the statement, this would drop the table it goes into
      local evil = "'); drop table injection_probe; --"
      assert(db.pg:query("insert into injection_probe values ($1)", evil))
      assert.are.same({ evil }, rows_of "injection_probe")
      -- payloads aimed at another table, closing a quote the ways SQL, an
      -- E'' string, dollar quoting and an array or JSON literal would
      local payloads = { "x'); drop table injection_sentinel; --", "x\\'); drop table injection_sentinel; --",
        "$$); drop table injection_sentinel; --", 'x"}\'); drop table injection_sentinel; --',
        'x"}); drop table injection_sentinel; --' }
      for _, p in ipairs(payloads) do
        assert.are.equal(p, one("select $1::text as v", p))
        assert(db.pg:query("insert into injection_probe values ($1)", p))
        assert.are.same({ p, "a,b", '"' }, one("select $1::text[] as v", semstore.array { p, "a,b", '"' }))
        assert(db.pg:query("insert into injection_probe select unnest($1::text[])", semstore.array { p }))
        assert.are.same({ k = p, [p] = { p } }, one("select $1::jsonb as v", { k = p, [p] = semstore.array { p } }))
        assert(db.pg:query("insert into injection_probe select $1::jsonb ->> 'k'", { k = p }))
        assert.are.same({ "still here" }, rows_of "injection_sentinel")
      end
      local want = { evil }
      for _, p in ipairs(payloads) do
        for _ = 1, 3 do want[#want + 1] = p end
      end
      table.sort(want)
      assert.are.same(want, rows_of "injection_probe")
      assert(db.pg:exec "drop table injection_probe, injection_sentinel")
    end)

    it("refuses what it cannot bind, naming the parameter", function()
      local rows, err = db.pg:query("select $1::text as v", "a\0b")
      assert.is_nil(rows)
      assert.are.equal("input", err.kind)
      assert.truthy(err.message:find "parameter 1")
      rows, err = db.pg:query("select $1 as a, $2 as b", 1, print)
      assert.is_nil(rows)
      assert.are.equal("input", err.kind)
      assert.truthy(err.message:find "parameter 2")
      rows, err = db.pg:query("select $1::jsonb as v", { [{}] = 1 })
      assert.is_nil(rows)
      assert.are.equal("input", err.kind)
      rows, err = db.pg:query("select $1::int[] as v", semstore.array { print })
      assert.are.equal("input", err.kind)
    end)

    it("round-trips through a table with every type", function()
      local conn = assert(db.pg:acquire())
      -- a temporary table lives as long as the borrow: the pool drops it on release
      assert(conn:exec [[
        create temp table every_type (i2 int2, i4 int4, i8 int8, f4 float4, f8 float8, n numeric, b bool,
          t text, j jsonb, by bytea, ts timestamptz, arr int8[], u uuid)]])
      local row = { i2 = -5, i4 = 123456, i8 = helpers.int8 "4611686018427387905", f4 = 0.5, f8 = 1 / 3, n = "3.14159265358979323846",
        b = false, t = "x\ty'\"z", j = { k = { 1, 2 } }, by = "\0\255", arr = { 1, null, 2 ^ 40 },
        u = "00000000-0000-4000-8000-000000000000" }
      assert(conn:query([[insert into every_type values ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,'2020-01-01T00:00:00Z',$11,$12)]],
        row.i2, row.i4, row.i8, row.f4, row.f8, row.n, row.b, row.t, row.j, semstore.bytea(row.by),
        semstore.array(row.arr), row.u))
      local got = assert(conn:query "select * from every_type")[1]
      conn:release()
      for k, v in pairs(row) do assert.are.same(v, got[k], k) end
      assert.truthy(got.ts:match "^%d%d%d%d%-%d%d%-%d%dT")
    end)
  end)

  describe("results", function()
    it("carry columns and affected outside the array part", function()
      local rows = assert(db.pg:query "select 1 as a, 2 as b union all select 3, 4")
      assert.are.same({ "a", "b" }, rows.columns)
      assert.are.equal(2, rows.affected)
      assert.are.equal(2, #rows)
      local n = 0
      for _ in pairs(rows) do n = n + 1 end
      assert.are.equal(2, n)
      local cjson = require "cjson"
      assert.are.same({ { a = 1, b = 2 }, { a = 3, b = 4 } }, cjson.decode(cjson.encode(rows)))
    end)

    it("report rows affected by commands", function()
      local conn = assert(db.pg:acquire())
      assert(conn:exec "create temp table affected_probe (a int)")
      local r = assert(conn:query "insert into affected_probe select generate_series(1, 7)")
      assert.are.equal(7, r.affected)
      assert.are.equal(0, #r)
      r = assert(conn:query("update affected_probe set a = a + 1 where a > $1", 4))
      assert.are.equal(3, r.affected)
      conn:release()
    end)

    it("stream in: 100,000 rows arrive whole and in order", function()
      local rows = assert(db.pg:query("select g as n, md5(g::text) as h from generate_series(1, $1::int) g", 100000))
      assert.are.equal(100000, #rows)
      assert.are.equal(100000, rows.affected)
      for i = 1, #rows, 997 do assert.are.equal(i, rows[i].n) end
      assert.are.equal(100000, rows[100000].n)
    end)

    it("a failure midway through the rows gives nil, err and leaves the connection usable", function()
      local conn = assert(db.pg:acquire())
      local rows, err = conn:query("select 10 / (5000 - g) as v from generate_series(1, 10000) g")
      assert.is_nil(rows)
      assert.are.equal("22012", err.code)
      assert.are.equal("idle", conn:transaction_status())
      assert.are.equal(2, assert(conn:query "select 2 as v")[1].v)
      conn:release()
    end)

    it("an empty result still names its columns", function()
      local rows = assert(db.pg:query "select 1 as a, 'x' as b where false")
      assert.are.equal(0, #rows)
      assert.are.same({ "a", "b" }, rows.columns)
      assert.are.equal(0, rows.affected)
    end)

    it("rows survive a JSON round trip with NULLs", function()
      local cjson = require "cjson"
      local rows = assert(db.pg:query "select 1 as a, null::text as b")
      local back = cjson.decode(cjson.encode(rows))
      assert.are.same({ { a = 1, b = null } }, back)
      assert.are.equal(null, back[1].b)
    end)
  end)
end)

describe("semstore.array limits", function()
  local db
  setup(function() db = helpers.connect() end)
  teardown(function()
    helpers.assert_all_returned(db)
    db:close()
  end)

  it("refuses a table that contains itself, with an input error", function()
    local t = { 1 }
    t[2] = t
    local rows, err = db.pg:query("select $1::int[] as v", semstore.array(t))
    assert.is_nil(rows)
    assert.are.equal("input", err.kind)
    assert.truthy(err.message:find "parameter 1")
    local u = {}
    u[1] = u
    rows, err = db.pg:query("select $1::int[] as v", semstore.array(u))
    assert.is_nil(rows)
    assert.are.equal("input", err.kind)
  end)

  it("takes six dimensions, PostgreSQL's limit, and refuses a seventh", function()
    local function nest(d) if d == 0 then return 7 end return { nest(d - 1) } end
    local v = assert(db.pg:query("select $1::int[] as v", semstore.array(nest(6))))[1].v
    assert.are.same(nest(6), v)
    local rows, err = db.pg:query("select $1::int[] as v", semstore.array(nest(7)))
    assert.is_nil(rows)
    assert.are.equal("input", err.kind)
  end)

  it("refuses an absurd length in t.n at once", function()
    local rows, err = db.pg:query("select $1::int[] as v", semstore.array { n = math.floor(2 ^ 40) })
    assert.is_nil(rows)
    assert.are.equal("input", err.kind)
    rows, err = db.pg:query("select $1::int[] as v", semstore.array { n = -1 })
    assert.is_nil(rows)
    assert.are.equal("input", err.kind)
  end)
end)

describe("NULL as nil", function()
  it("connect{ null = 'nil' } leaves NULL columns out; arrays and JSON keep semstore.null", function()
    local db = helpers.connect(nil, { null = "nil" })
    local r = assert(db.pg:query "select 1 as a, null::text as b, array[1, null]::int[] as c, '{\"k\": null}'::jsonb as j")[1]
    assert.are.equal(1, r.a)
    assert.is_nil(r.b)
    assert.are.equal(null, r.c[2])
    assert.are.equal(null, r.j.k)
    local rows = assert(db.pg:query "select null::int as x")
    assert.are.same({ "x" }, rows.columns)
    db:close()
    local bad, err = semstore.connect { name = "null-typo", postgres = helpers.url, null = "none" }
    assert.is_nil(bad)
    assert.are.equal("input", err.kind)
  end)
end)
