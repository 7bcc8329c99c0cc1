-- The `semstore` command when a server stalls: it answers within its own
-- time rather than the Qdrant client's retry budget.
require "semstore.compat" () -- Lua 5.4's library under LuaJIT too
local semstore = require "semstore"
local helpers = require "support.helpers"

local standin = os.getenv "SEMSTORE_QDRANT_STANDIN" == "1"

describe("the semstore command when a server stalls", function()
  -- like helpers.cli, under `timeout SECONDS`: the exit code (124 when it
  -- was stopped), stdout, and the seconds it took
  local function cli_within(seconds, args)
    local out = os.tmpname()
    local words = {}
    for i, a in ipairs(args) do words[i] = helpers.shell_quote(a) end
    local cmd = string.format("cd %s && LUA_PATH=%s LUA_CPATH=%s timeout %d %s bin/semstore %s >%s 2>&1",
      helpers.shell_quote(helpers.root), helpers.shell_quote(helpers.root .. "/lua/?.lua;" .. helpers.root .. "/lua/?/init.lua;;"),
      helpers.shell_quote(helpers.cpath), seconds, helpers.lua_bin, table.concat(words, " "), out)
    local started = os.time()
    local _, _, code = os.execute(cmd)
    local text = helpers.read_file(out)
    os.remove(out)
    return code, text, os.time() - started
  end

  it("health answers within seconds when Qdrant accepts connections and never answers (a stall)", function()
    if not standin then return pending("needs the Qdrant stand-in's fault injection") end
    local db = helpers.connect()
    finally(function()
      db.qdrant.handle:request("DELETE", "/__standin/faults")
      db:close()
    end)
    assert(db.qdrant.handle:request("POST", "/__standin/faults",
      { kind = "stall", stall_ms = 60000, count = 1000, path = "/collections" }))
    local code, out, took = cli_within(40, { "health" })
    assert.are_not.equal(124, code, "semstore health was still running after 40 s")
    assert.are.equal(1, code, out)
    assert.truthy(out:find("qdrant%s+unhealthy"), out)
    assert.is_true(took < 30, "health took " .. took .. " s")
  end)
end)
