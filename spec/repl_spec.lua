-- `semstore repl`, driven through a pseudo-terminal (util-linux `script`)
-- the way a person types into it.
require "semstore.compat" () -- Lua 5.4's library under LuaJIT too
local repl = require "semstore.repl"
local helpers = require "support.helpers"
local fixture = require "support.repl_fixture"

describe("semstore repl", function()
  local fx = fixture.lazy(lazy_setup, lazy_teardown)

  local function session(lines)
    local screen, ok = fx.session(lines)
    assert.is_true(ok, screen)
    return screen
  end

  it("prints what a person asks for: rows as tables, errors with kind and SQLSTATE", function()
    local screen = session {
      "db.collections:list_for_user(1)",
      ":sql select 1 as n, null::text as missing",
      ":sql select 1/0",
      "db.users:get(424242)",
      "for i = 1,",
      "  2 do print('line ' .. i) end",
      "{ a = { 1, semstore.null } }",
      ":timing on",
      "db.users:get_by_username 'ada'",
      ":help",
      ":nope",
      ":quit",
    }
    -- list_for_user's collections as a table with its header, not table: 0x...
    assert.truthy(screen:find("\nid%s+name%s+description"), screen)
    assert.truthy(screen:find("papers", 1, true), screen)
    assert.truthy(screen:find("(1 row)", 1, true), screen)
    assert.is_nil(screen:find("table: 0x", 1, true), screen)
    assert.truthy(screen:find("n  missing\n-  -------\n1  null\n(1 row)", 1, true), screen)
    assert.truthy(screen:find("error (postgres, SQLSTATE 22012): division by zero", 1, true), screen)
    assert.truthy(screen:find("nil\nerror (not_found): user 424242 not found", 1, true), screen)
    assert.truthy(screen:find(">>", 1, true), "the unfinished for loop read on")
    assert.truthy(screen:find("line 1\nline 2", 1, true), screen)
    assert.truthy(screen:find("{a: [1, null]}", 1, true), screen)
    assert.truthy(screen:find("username%s+ada\n%(%d+%.%d ms%)"), screen)
    assert.truthy(screen:find("db.collections: create, delete, get_by_name", 1, true), screen)
    assert.truthy(screen:find("unknown command :nope", 1, true), screen)
  end)

  it("keeps the lines in ~/.semstore_history for the next session", function()
    session { "1 + 41" } -- and Ctrl-D (the end of the input) to leave
    local history = helpers.read_file(fx.home .. "/.semstore_history")
    assert.truthy(history:find("1 + 41", 1, true), history)
    -- the up arrow brings back the last session's line
    local screen = session { "\27[A" }
    assert.truthy(screen:find("semstore> 1 + 41\n42\n", 1, true), screen)
  end)

  it("reads plain lines when readline is not there", function()
    local input = assert(io.open(fx.home .. "/plain", "w+"))
    input:write "x = 20\nx + 22\n"
    input:seek "set"
    local output = assert(io.tmpfile())
    local read, close = repl.line_reader { readline = false, input = input, output = output }
    local said = {}
    repl.run { db = fx.scratch.db, read = read, write = function(t) said[#said + 1] = t end }
    close()
    input:close()
    output:seek "set"
    assert.are.equal("semstore> semstore> semstore> ", output:read "a")
    assert.are.same({ "42" }, said)
  end)
end)
