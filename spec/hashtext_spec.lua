-- semstore.hashtext and semstore.partition_key, computed in C, against the
-- server's own hashtext() and chunk_partition_key() arithmetic.
require "semstore.compat" () -- Lua 5.4's library under LuaJIT too
local semstore = require "semstore"
local helpers = require "support.helpers"

-- PostgreSQL 15's hashtext of a few strings
local KNOWN = {
  [""] = -1477818771, a = 1075015857, abc = -785388649, ["hello world"] = 1021725223,
  ["550e8400-e29b-41d4-a716-446655440000"] = 428265705,
  -- the one value whose abs() overflows an int4 (found by running the
  -- hash's final mix backwards)
  ["4FBvFnCdU3R"] = -2147483648,
}

-- How many random strings of each byte length 0..MAX_LEN: ~3,000 in all,
-- two per length (one ASCII, one multi-byte) under valgrind.
local MAX_LEN = 600
local PER_LENGTH = helpers.under_valgrind and 2 or 5
local BATCH = 500

-- A random valid UTF-8 character of `bytes` bytes (no zero byte, no
-- surrogate), so PostgreSQL text can hold it.
local function random_char(bytes)
  if bytes == 1 then return string.char(math.random(1, 127)) end
  if bytes == 2 then return utf8.char(math.random(0x80, 0x7ff)) end
  if bytes == 3 then
    local cp = math.random(0x800, 0xffff - 0x800)
    if cp >= 0xd800 then cp = cp + 0x800 end
    return utf8.char(cp)
  end
  return utf8.char(math.random(0x10000, 0x10ffff))
end

-- Random strings of exactly `len` bytes, cut cheaply from two long random
-- texts (ASCII; characters of every width) at character boundaries, an
-- ASCII tail making up the length when the cut falls inside a character.
local pools = {}
local function pool(multibyte)
  if not pools[multibyte] then
    local parts, starts, n = {}, {}, 0
    while n < 4 * MAX_LEN do
      local c = random_char(multibyte and math.random(1, 4) or 1)
      parts[#parts + 1] = c
      starts[#starts + 1] = n + 1
      n = n + #c
    end
    pools[multibyte] = { text = table.concat(parts), starts = starts }
  end
  return pools[multibyte]
end

local function random_string(len, multibyte)
  local p = pool(multibyte)
  local from = p.starts[math.random(1, math.floor(#p.starts / 2))]
  local s = p.text:sub(from, from + len - 1)
  -- drop a character cut short at the end, then pad with ASCII
  local last = #s
  while last > 0 and s:byte(last) >= 0x80 and s:byte(last) < 0xc0 do last = last - 1 end
  if last > 0 and s:byte(last) >= 0xc0 then
    local width = s:byte(last) >= 0xf0 and 4 or s:byte(last) >= 0xe0 and 3 or 2
    if #s - last + 1 < width then s = s:sub(1, last - 1) end
  end
  s = s .. string.rep(string.char(math.random(32, 126)), len - #s)
  assert(#s == len and utf8.len(s), "a random string")
  return s
end

local function random_uuid()
  local hex = {}
  for i = 1, 32 do hex[i] = string.format("%x", math.random(0, 15)) end
  local h = table.concat(hex)
  return h:sub(1, 8) .. "-" .. h:sub(9, 12) .. "-4" .. h:sub(14, 16) .. "-" .. h:sub(17, 20) .. "-" .. h:sub(21, 32)
end

describe("hashtext", function()
  local db, seed

  setup(function()
    db = helpers.connect()
    seed = os.time()
    math.randomseed(seed)
  end)

  teardown(function()
    helpers.assert_all_returned(db)
    db:close()
  end)

  -- The server's hashtext of every string of `list`, in order, a batch at a time.
  local function server_hashes(list, sql)
    local out = {}
    for first = 1, #list, BATCH do
      local batch = table.move(list, first, math.min(first + BATCH - 1, #list), 1, {})
      local rows = assert(db.pg:query(sql or [[SELECT i, hashtext(x) AS h
        FROM unnest($1::text[]) WITH ORDINALITY AS u(x, i) ORDER BY i]], semstore.array(batch)))
      assert.are.equal(#batch, #rows)
      for _, r in ipairs(rows) do out[first + r.i - 1] = r end
    end
    return out
  end

  it("gives the known values", function()
    for s, h in pairs(KNOWN) do
      assert.are.equal(h, semstore.hashtext(s), s)
      assert.are.equal("integer", math.type(semstore.hashtext(s)))
    end
  end)

  it("agrees with the server on the known values", function()
    for s, h in pairs(KNOWN) do
      assert.are.equal(h, assert(db.pg:query("SELECT hashtext($1) AS h", s))[1].h, s)
    end
  end)

  it("agrees with the server on random ASCII and UTF-8 strings of every length from 0 to " .. MAX_LEN, function()
    local list = {}
    for len = 0, MAX_LEN do
      for k = 1, PER_LENGTH do list[#list + 1] = random_string(len, k % 2 == 0) end
    end
    -- bytes the array literal must escape, and bytes at either end of the ranges
    for _, s in ipairs { '"', "\\", "{}", ",", " lead and trail ", "NULL", "\127", "\1", "\u{80}", "\u{7ff}",
      "\u{800}", "\u{d7ff}", "\u{e000}", "\u{ffff}", "\u{10000}", "\u{10ffff}", string.rep("\u{10ffff}", 150) } do
      list[#list + 1] = s
    end
    local server = server_hashes(list)
    local bad = 0
    for i, s in ipairs(list) do
      local mine = semstore.hashtext(s)
      if mine ~= server[i].h then
        bad = bad + 1
        if bad <= 5 then
          print(string.format("seed %d: hashtext of %d bytes %q: %d here, %d on the server", seed, #s, s, mine, server[i].h))
        end
      end
    end
    assert.are.equal(0, bad, "strings hashed differently (seed " .. seed .. ")")
  end)

  it("computes partition_key as abs(hashtext(x)::int8) % n, as the server does", function()
    local list = {}
    for i = 1, helpers.under_valgrind and 200 or 1000 do list[i] = random_uuid() end
    for s in pairs(KNOWN) do list[#list + 1] = s end
    local server = server_hashes(list, [[SELECT i, (abs(hashtext(x)::int8) % 100)::int AS k100,
        (abs(hashtext(x)::int8) % 7)::int AS k7, (abs(hashtext(x)::int8) % 1000)::int AS k1000
      FROM unnest($1::text[]) WITH ORDINALITY AS u(x, i) ORDER BY i]])
    local bad = 0
    for i, s in ipairs(list) do
      local r = server[i]
      local ok = semstore.partition_key(s) == r.k100 and semstore.partition_key(s, 100) == r.k100
        and semstore.partition_key(s, 7) == r.k7 and semstore.partition_key(s, 1000) == r.k1000
        and semstore.partition_key(s, 1) == 0
      if not ok then
        bad = bad + 1
        if bad <= 5 then print(string.format("partition_key(%q): %d/%d/%d here, %d/%d/%d on the server", s,
          semstore.partition_key(s), semstore.partition_key(s, 7), semstore.partition_key(s, 1000), r.k100, r.k7, r.k1000)) end
      end
    end
    assert.are.equal(0, bad)
    -- hashtext = -2147483648: abs() on the int8, never negative
    assert.are.equal(48, semstore.partition_key "4FBvFnCdU3R")
    assert.are.equal(648, semstore.partition_key("4FBvFnCdU3R", 1000))
    assert.are.equal(1, semstore.partition_key("4FBvFnCdU3R", 2147483647))
    assert.are.equal(1, assert(db.pg:query("SELECT (abs(hashtext('4FBvFnCdU3R')::int8) % 2147483647)::int AS k"))[1].k)
  end)

  it("raises on bad arguments", function()
    assert.has_error(function() semstore.hashtext() end)
    assert.has_error(function() semstore.hashtext(nil) end)
    assert.has_error(function() semstore.hashtext {} end)
    assert.has_error(function() semstore.hashtext(true) end)
    assert.has_error(function() semstore.partition_key() end)
    assert.has_error(function() semstore.partition_key {} end)
    assert.has_error(function() semstore.partition_key("abc", 0) end)
    assert.has_error(function() semstore.partition_key("abc", -1) end)
    assert.has_error(function() semstore.partition_key("abc", 1.5) end)
    assert.has_error(function() semstore.partition_key("abc", "many") end)
    assert.has_error(function() semstore.partition_key("abc", 2147483648) end)
    assert.has_error(function() semstore.partition_key("abc", math.mininteger) end)
    -- nil means the default
    assert.are.equal(49, semstore.partition_key("abc", nil))
  end)
end)
