-- The public surface is small and every piece of it is in the README.
require "semstore.compat" () -- Lua 5.4's library under LuaJIT too
local semstore = require "semstore"
local core = require "semstore.core"

local function readme()
  local f = assert(io.open("README.md"))
  local text = f:read "a"
  f:close()
  return text
end

describe("the public API", function()
  local text = readme()

  it("documents every function of the semstore module", function()
    for name, v in pairs(semstore) do
      if type(v) == "function" or name == "null" then
        assert.truthy(text:find("%f[%w_]semstore%." .. name .. "%f[^%w_]"), "README lacks semstore." .. name)
      end
    end
  end)

  it("documents every method of pools and connections", function()
    -- as a call, `db.pg:name(`, or named whole in backticks: a longer name
    -- that starts with this one (conn:released, conn:release) does not count
    for name in pairs(core.pool_methods) do
      assert.truthy(text:find("%f[%w_]db%.pg:" .. name .. "[(`]"), "README lacks db.pg:" .. name .. "(")
    end
    for name in pairs(core.conn_methods) do
      assert.truthy(text:find("%f[%w_]conn:" .. name .. "[(`]"), "README lacks conn:" .. name .. "(")
    end
  end)

  it("documents every method of the repositories", function()
    for repo, methods in pairs(core.repositories) do
      for name in pairs(methods) do
        local call = "db." .. repo .. ":" .. name
        assert.truthy(text:find(call .. "(", 1, true) or text:find(call .. "{", 1, true), "README lacks " .. call)
      end
    end
  end)

  it("documents every function of the migration runner and of semstore.config", function()
    for name, v in pairs(require "semstore.migrate") do
      if type(v) == "function" then
        assert.truthy(text:find("migrate." .. name .. "(", 1, true), "README lacks migrate." .. name)
      end
    end
    for name, v in pairs(semstore.config) do
      if type(v) == "function" then
        assert.truthy(text:find("semstore.config." .. name .. "(", 1, true), "README lacks semstore.config." .. name)
      end
    end
  end)

  it("documents every method of db.qdrant", function()
    for name, v in pairs(require("semstore.qdrant").methods) do
      if type(v) == "function" and not name:find "^_" then
        assert.truthy(text:find("`" .. name .. "[`(]") or text:find(":" .. name .. "(", 1, true),
          "README lacks db.qdrant:" .. name)
      end
    end
  end)

  it("documents every method of db.redis", function()
    for name, v in pairs(require("semstore.redis").methods) do
      if type(v) == "function" and not name:find "^_" then
        assert.truthy(text:find("db.redis:" .. name .. "(", 1, true), "README lacks db.redis:" .. name)
      end
    end
  end)

  it("documents every method of db.cache", function()
    for name, v in pairs(require("semstore.cache").methods) do
      if type(v) == "function" and not name:find "^_" then
        assert.truthy(text:find("db.cache:" .. name .. "(", 1, true) or text:find("%f[%w_.]cache:" .. name .. "%("),
          "README lacks db.cache:" .. name)
      end
    end
  end)

  it("documents every command of bin/semstore", function()
    local cli = assert(io.open "lua/semstore/cli.lua"):read "a"
    for name in cli:match("local COMMANDS = (%b{})"):gmatch "\n%s+(%w+) =" do
      assert.truthy(text:find("`semstore " .. name, 1, true), "README lacks semstore " .. name)
    end
  end)

  it("documents every field of the pool's stats", function()
    local db = assert(semstore.connect { name = "api-doc", postgres = "postgresql://127.0.0.1:1/none" })
    -- in the API table's row of db.pg:stats(), not just anywhere
    local row = assert(text:match "\n(| `db%.pg:stats%(%)` |[^\n]*)", "README has no row for db.pg:stats()")
    for name in pairs(db.pg:stats()) do
      assert.truthy(row:find("`" .. name .. "`", 1, true), "README's db.pg:stats() row lacks the field " .. name)
    end
    db:close()
  end)
end)
