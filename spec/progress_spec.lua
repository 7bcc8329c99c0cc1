-- semstore.progress_bar (lua/semstore/progress.lua).
require "semstore.compat" () -- Lua 5.4's library under LuaJIT too
local semstore = require "semstore"
local helpers = require "support.helpers"

describe("semstore.progress_bar", function()
  it("stays silent on a stream that is a file, even when stderr is a terminal", function()
    local dir = helpers.tmpdir()
    local log = dir .. "/progress.log"
    helpers.write_file(dir .. "/draw.lua", string.format([[
      local semstore = require "semstore"
      local f = assert(io.open(%q, "w"))
      local draw, done = semstore.progress_bar("indexing", { stream = f })
      draw { documents = 1, total = 2, chunks = 1, vectors = 1 }
      done()
      f:close()
    ]], log))
    -- `script` runs the command on a pseudo-terminal: stdout and stderr are a tty
    local cmd = string.format("cd %s && LUA_PATH=%s LUA_CPATH=%s script -qec %s /dev/null </dev/null >/dev/null 2>&1",
      helpers.shell_quote(helpers.root),
      helpers.shell_quote(helpers.root .. "/lua/?.lua;" .. helpers.root .. "/lua/?/init.lua;;"),
      helpers.shell_quote(helpers.cpath),
      helpers.shell_quote(helpers.lua_bin .. " " .. dir .. "/draw.lua"))
    assert(os.execute(cmd))
    local text = helpers.read_file(log)
    helpers.rmdir(dir)
    assert.are.equal("", text, "a log file got the terminal's progress line")
  end)

  it("refuses an option it does not know (a typo) instead of ignoring it", function()
    local draw, err = semstore.progress_bar("indexing", { froce = true })
    assert.is_nil(draw)
    assert.are.equal("input", err and err.kind)
  end)
end)
