-- `semstore repl` and semstore.show under attack: raising metamethods,
-- Ctrl-C at the prompt, in Lua code and in SQL, piped input, the history
-- file's mode and place, odd values. Each test failed before its fix. The
-- REPL is driven through a pseudo-terminal (util-linux `script`) with its
-- keystrokes spaced in time, HOME set to a temp folder.
require "semstore.compat" () -- Lua 5.4's library under LuaJIT too
local semstore = require "semstore"
local show = require "semstore.show"
local helpers = require "support.helpers"
local fixture = require "support.repl_fixture"

describe("semstore repl under attack", function()
  local fx = fixture.lazy(lazy_setup, lazy_teardown)
  local session, env_prefix = fx.session, fx.env_prefix

  -- what the REPL printed for `line`: the text between its echo and the
  -- next prompt
  local function answer(screen, line)
    local at = select(2, screen:find("semstore> " .. line .. "\n", 1, true))
    assert(at, screen)
    local stop = screen:find("semstore> ", at + 1, true) or #screen + 1
    return screen:sub(at + 1, stop - 1)
  end

  it("keeps the session when showing a value raises (a __tostring, __index or __pairs that errors)", function()
    -- report() runs show.value outside the line's xpcall: the error leaves
    -- repl.run, and the session ends with exit 1 and the later lines unread
    local screen, ok = session {
      'setmetatable({}, {__tostring = function() error("in tostring") end})',
      'error(setmetatable({}, {__tostring = function() error("in tostring") end}))',
      'setmetatable({}, {__index = function() error("in index") end})',
      'setmetatable({a = 1}, {__pairs = function() error("in pairs") end})',
      "40 + 2",
    }
    assert.is_true(ok, screen)
    assert.truthy(screen:find("semstore> 40 + 2\n42\n", 1, true), screen)
  end)

  it("tells a raised table from a returned one", function()
    local screen = session { "error({code = 7})", "({code = 7})", "error({})" }
    local raised, returned = answer(screen, "error({code = 7})"), answer(screen, "({code = 7})")
    assert.are_not.equal(returned, raised)
    assert.truthy(answer(screen, "error({})"):find("error", 1, true), screen)
  end)

  it("survives Ctrl-C at the prompt: the line is dropped and the session goes on", function()
    -- lua.c's SIGINT hook is armed for the whole script: the first Ctrl-C
    -- raises 'interrupted!' out of repl.run once readline returns
    local screen, ok = session { { 1, "1 + 1\n" }, { 0.5, "\003" }, { 0.5, "40 + 2\n" }, { 0.5, "\004" } }
    assert.is_true(ok, screen)
    assert.is_nil(screen:find("interrupted!", 1, true), screen)
    assert.truthy(screen:find("\n42\n", 1, true), screen)
  end)

  it("survives a second Ctrl-C and keeps the session's history", function()
    -- after one interrupt lua.c has put SIGINT back to its default: the
    -- second Ctrl-C kills the process, history unsaved, db not closed
    local h = helpers.tmpdir()
    local screen, ok, code = session({ { 1, "while true do end\n" }, { 1, "\003" }, { 0.5, "hunt_marker_ctrl_c = 1\n" },
      { 0.5, "\003" }, { 0.5, "\004" } }, h)
    local f = io.open(h .. "/.semstore_history", "rb")
    local history = f and f:read "a" or ""
    if f then f:close() end
    helpers.rmdir(h)
    assert.is_true(ok, "exit " .. tostring(code) .. "\n" .. screen)
    assert.truthy(history:find("hunt_marker_ctrl_c", 1, true), history)
  end)

  it("cancels a running statement on Ctrl-C instead of waiting for it", function()
    -- Ctrl-C only arms lua.c's hook: the query runs its full 6 s, and only
    -- then does 'interrupted!' come; :timing shows how long the line took
    local screen = session { ":timing on", { 1, ":sql select pg_sleep(6)\n" }, { 1, "\003" }, { 8, "\004" } }
    local text = answer(screen, ":sql select pg_sleep(6)")
    local ms = tonumber(text:match "%((%d+%.%d) ms%)")
    assert(ms, screen)
    assert.is_true(ms < 3000, text)
  end)

  it("does not use readline (echo, history) when input is not a terminal", function()
    -- repl.lua's line_reader says 'when lua-readline is installed and input
    -- is a terminal' but never checks the terminal
    local h = helpers.tmpdir()
    local input, out = h .. "/input", os.tmpname()
    helpers.write_file(input, "hunt_piped = 20\nhunt_piped + 22\n")
    local ok = os.execute(string.format("( %s %s bin/semstore repl ) <%s >%s 2>&1", env_prefix(h), helpers.lua_bin,
      helpers.shell_quote(input), out))
    local screen = helpers.read_file(out)
    os.remove(out)
    local f = io.open(h .. "/.semstore_history", "rb")
    local history = f and f:read "a" or ""
    if f then f:close() end
    helpers.rmdir(h)
    assert.is_true(ok == true, screen)
    assert.truthy(screen:find("42", 1, true), screen)
    assert.is_nil(screen:find("hunt_piped", 1, true), "input echoed back:\n" .. screen)
    assert.is_nil(history:find("hunt_piped", 1, true), "piped lines in the history:\n" .. history)
  end)

  it("keeps the history, where passwords get typed, readable by its owner only", function()
    local h = helpers.tmpdir()
    session({ 'db.users:create { username = "grace", email = "g@example.org", password = "hunter2" }' }, h)
    local p = assert(io.popen("stat -c %a " .. helpers.shell_quote(h .. "/.semstore_history")))
    local mode = p:read "l"
    p:close()
    helpers.rmdir(h)
    assert.are.equal("600", mode)
  end)

  it("writes no history to the shared /tmp when HOME is unset", function()
    local marker = helpers.unique("hunt_home_unset", "_")
    local existed = io.open("/tmp/.semstore_history", "rb")
    if existed then existed:close() end
    session({ marker .. " = 1" }, false)
    local f = io.open("/tmp/.semstore_history", "rb")
    local shared = f and f:read "a" or ""
    if f then f:close() end
    if not existed then os.remove "/tmp/.semstore_history" end
    assert.is_nil(shared:find(marker, 1, true), "the line went to /tmp/.semstore_history")
  end)

  it(":sql of an UPDATE says how many rows it changed, not an empty table of (0 rows)", function()
    local screen = session { ":sql update users set is_active = is_active" }
    local text = answer(screen, ":sql update users set is_active = is_active")
    assert.is_nil(text:find("(0 rows)", 1, true), text)
    local users = fx.scratch.db.pg:query("SELECT count(*) AS n FROM users")[1].n
    assert.truthy(text:find(string.format("(%d row%s affected)", users, users == 1 and "" or "s"), 1, true), text)
  end)
end)

describe("semstore.show.value under attack", function()
  it("shows a plain table with a `columns` field as a table, not as an empty result", function()
    -- e.g. a document's jsonb metadata for a CSV file
    local text = show.value { columns = { "a", "b" }, title = "sheet.csv" }
    assert.truthy(text:find("sheet.csv", 1, true), text)
  end)

  it("shows an unconfigured db.qdrant by its __tostring, not as {}", function()
    local qdrant = require "semstore.qdrant"
    assert.are.equal("semstore.qdrant(not configured)", show.value(qdrant.unconfigured))
  end)

  it("aligns columns holding wide (CJK) and combining characters", function()
    local lines = {}
    for line in (show.value { columns = { "a", "b" }, { a = "日本語", b = "x" }, { a = "e\204\129e", b = "y" },
                                { a = "abcdef", b = "z" } } .. "\n"):gmatch "(.-)\n" do lines[#lines + 1] = line end
    -- the b column starts at the same display column on every line: 8
    local function display_col(line, ch)
      local before = line:sub(1, line:find(ch, 1, true) - 1)
      local w = 0
      for _, c in utf8.codes(before) do
        if c >= 0x300 and c <= 0x36f then w = w + 0 elseif c >= 0x2e80 and c <= 0x9fff then w = w + 2 else w = w + 1 end
      end
      return w
    end
    assert.are.equal(8, display_col(lines[3], "x"), lines[3])
    assert.are.equal(8, display_col(lines[4], "y"), lines[4])
    assert.are.equal(8, display_col(lines[5], "z"), lines[5])
  end)

  it("bounds the text of a small table that shares its subtables", function()
    -- seen holds only the path down: 7 tables of 10 references each print
    -- 10^6 leaves (4 MB, seconds); 8 such levels hang the REPL for minutes
    local x = {}
    for _ = 1, 6 do x = { x, x, x, x, x, x, x, x, x, x } end
    local text = show.value(x)
    assert.is_true(#text < 100000, #text .. " characters")
  end)

  it("tells apart floats that differ (0.1 + 0.2 is not 0.3)", function()
    assert.are_not.equal(show.value(0.3), show.value(0.1 + 0.2))
    assert.are_not.equal(show.value(2.0 ^ 53), show.value(2.0 ^ 53 + 2))
  end)

  it("still shows a real query result with columns as rows", function()
    -- a guard for the `columns` fix above: this one passes now
    local rows = { columns = { "id" }, { id = 1 } }
    assert.are.equal("id\n--\n1\n(1 row)", show.value(rows))
    assert.are.equal("null", show.value(semstore.null))
  end)
end)
