-- What a hunt found (each test failed before its fix) in the JSON writer and reader, the
-- json_integer box, `semstore run` and the REPL under Lua 5.4 and LuaJIT.
-- Each test states what the README promises; it runs under both VMs:
--   LUA_CPATH='build/?.so;;' lua5.4 /usr/bin/busted spec/json_script_repl_attacks_spec.lua
--   LUA_CPATH='build-luajit/?.so;;' luajit /usr/bin/busted spec/json_script_repl_attacks_spec.lua
-- (no `//`, `<close>` or bit operators here: LuaJIT must parse it).
require "semstore.compat" ()
local semstore = require "semstore"
local helpers = require "support.helpers"

describe("under attack: json_decode refuses text that is not JSON", function()
  -- parse_number takes any run of "0123456789.eE+-" (and, through strchr,
  -- a zero byte) and never checks where strtoll/strtod stopped
  for _, text in ipairs { "-", "e", ".", "+1", "01", "1.2.3", "1-2", "--1", "1e", ".5", "5.", "\0", "[1\0]", "[-]" } do
    it(string.format("json_decode(%q) is nil, err", text), function()
      local v, err = semstore.json_decode(text)
      assert.is_nil(v, string.format("%q decoded to %s", text, tostring(v)))
      assert.are.equal("input", err and err.kind)
    end)
  end
end)

describe("under attack: json_encode of a json_integer box", function()
  local mt = getmetatable(semstore.json_integer "1")

  -- the writer trusts box[1] ("checked by core.json_integer"), but a box
  -- is a plain table with a reachable metatable
  it("does not write a forged box's text into the JSON as is", function()
    local text = semstore.json_encode { a = setmetatable({ '1,"admin":true' }, mt) }
    assert.are_not.equal('{"a":1,"admin":true}', text)
    assert.is_nil(text)
  end)

  it("does not write invalid JSON for a box without digits", function()
    local text = semstore.json_encode { a = setmetatable({}, mt) }
    assert.are_not.equal('{"a":}', text)
    assert.is_nil(text)
  end)

  -- json_integer takes -2^63..2^64-1 "so a jsonb read and written back
  -- stays the same jsonb", but the reader makes 2^63..2^64-1 a float even
  -- with big_integers = "json_integer"
  for _, digits in ipairs { "9223372036854775808", "18446744073709551615" } do
    it("round-trips " .. digits .. " through json_decode{big_integers = \"json_integer\"} and json_encode", function()
      local v = assert(semstore.json_decode("[" .. digits .. "]", { big_integers = "json_integer" }))
      assert.are.equal("[" .. digits .. "]", semstore.json_encode(v))
    end)
  end
end)

describe("under attack: a json_integer box inside semstore.array", function()
  local db
  setup(function() db = helpers.connect() end)
  teardown(function() db:close() end)

  -- encode_array (convert.c) takes the box for a nested table: {{5}}
  it("binds as an element, not as a further dimension", function()
    local rows, err = db.pg:query("SELECT array_ndims($1::int8[]) AS d, $1::int8[]::text AS t",
      semstore.array { semstore.json_integer "9007199254740993", semstore.json_integer "5" })
    if rows then
      assert.are.equal(1, rows[1].d, "bound as " .. tostring(rows[1].t))
    else
      assert.are.equal("input", err.kind) -- refusing it would do too
    end
  end)
end)

describe("under attack: semstore run", function()
  -- README: scripts run by `semstore run` get Lua 5.4's library; under
  -- LuaJIT a chunk the script loads (load, dofile) runs in LuaJIT's bare
  -- globals instead, where table.unpack is nil
  it("gives a chunk the script loads with load() Lua 5.4's library", function()
    local dir = helpers.tmpdir()
    local script = dir .. "/s.lua"
    helpers.write_file(script, 'print("got", load("return table.unpack({5, 6})")())\n')
    local code, out, err = helpers.cli({ "run", script }, { env = { DATABASE_URL = helpers.url } })
    helpers.rmdir(dir)
    assert.are.equal(0, code, out .. err)
    assert.truthy(out:find("got\t5\t6", 1, true), out .. err)
  end)

  it("gives a file the script runs with dofile() Lua 5.4's library", function()
    local dir = helpers.tmpdir()
    local script, helper = dir .. "/s.lua", dir .. "/h.lua"
    helpers.write_file(helper, "return math.type(1), table.unpack({7, 8})\n")
    helpers.write_file(script, string.format("print(\"got\", dofile(%q))\n", helper))
    local code, out, err = helpers.cli({ "run", script }, { env = { DATABASE_URL = helpers.url } })
    helpers.rmdir(dir)
    assert.are.equal(0, code, out .. err)
    assert.truthy(out:find("got\tinteger\t7\t8", 1, true), out .. err)
  end)
end)

describe("under attack: the REPL", function()
  local home
  setup(function() home = helpers.tmpdir() end)
  teardown(function() helpers.rmdir(home) end)

  -- types `steps` ({ delay, text } pairs, text as printf %b reads it) into
  -- `semstore repl` through a pseudo-terminal; the screen and whether it
  -- exited 0
  local function session(steps, limit)
    local out = os.tmpname()
    local feed = {}
    for _, s in ipairs(steps) do
      feed[#feed + 1] = string.format("sleep %s; printf %%b %s", s[1], helpers.shell_quote(s[2]))
    end
    feed[#feed + 1] = "sleep 1"
    local cmd = string.format(
      "( %s ) | ( cd %s && HOME=%s DATABASE_URL=%s LUA_PATH=%s LUA_CPATH=%s SHELL=/bin/sh timeout %d script -qec %s /dev/null ) >%s 2>&1",
      table.concat(feed, "; "), helpers.shell_quote(helpers.root), helpers.shell_quote(home),
      helpers.shell_quote(helpers.url),
      helpers.shell_quote(helpers.root .. "/lua/?.lua;" .. helpers.root .. "/lua/?/init.lua;;"),
      helpers.shell_quote(helpers.cpath), limit or 20, helpers.shell_quote("exec " .. helpers.lua_bin .. " bin/semstore repl"), out)
    local ok = os.execute(cmd)
    local screen = helpers.read_file(out)
    os.remove(out)
    return (screen:gsub("\r", ""):gsub("\27%[[%d;?]*%a", "")), ok == true
  end

  -- README: "Errors raised by the line show their message and the line's
  -- own traceback". Under LuaJIT `return error("boom")` is a tail call, so
  -- level 1 is the REPL's wrapper: "lua/semstore/repl.lua:128: boom", and
  -- a C function's argument error names 'fn'
  it("places an error raised by the line in the line, not in repl.lua", function()
    local screen = session { { 0.5, 'error("boom")\n' }, { 0.5, "string.rep()\n" }, { 0.5, "\004" } }
    assert.truthy(screen:find("repl:1: boom", 1, true), screen)
    assert.is_nil(screen:find("semstore/repl.lua", 1, true), screen)
    assert.is_nil(screen:find("to 'fn'", 1, true), screen)
  end)

  -- README: "Ctrl-C stops the line that runs, every time". Under LuaJIT
  -- only the line's own prototypes are kept out of the JIT compiler, so a
  -- loop in a chunk the line load()s is compiled and never sees the hook:
  -- the session hangs until killed
  it("stops a loop in a chunk the line loads on Ctrl-C", function()
    local screen, ok = session({ { 0.5, 'f = load("local i = 0 while true do i = i + 1 end")\n' }, { 0.3, "f()\n" },
      { 1.5, "\003" }, { 1, 'print("hunt_" .. "alive")\n' }, { 0.5, "\004" } }, 15)
    assert.truthy(screen:find("interrupted!", 1, true), screen)
    assert.truthy(screen:find("hunt_alive", 1, true), screen)
    assert.is_true(ok, screen)
  end)

  -- Under Lua 5.4 the Ctrl-C hook is set on the main thread only, so a
  -- loop running in a coroutine never sees it (LuaJIT's hooks are global
  -- and stop it)
  it("stops a loop inside a coroutine on Ctrl-C", function()
    local screen, ok = session({ { 0.5, "coroutine.wrap(function() while true do end end)()\n" }, { 1.5, "\003" },
      { 1, 'print("hunt_" .. "alive")\n' }, { 0.5, "\004" } }, 15)
    assert.truthy(screen:find("interrupted!", 1, true), screen)
    assert.truthy(screen:find("hunt_alive", 1, true), screen)
    assert.is_true(ok, screen)
  end)
end)
