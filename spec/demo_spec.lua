-- The README's first command, twice in a row against the same servers:
-- the second run finds everything seeded and indexed already.
require "semstore.compat" () -- Lua 5.4's library under LuaJIT too
local helpers = require "support.helpers"

describe("scripts/demo.sh", function()
  it("runs twice in a row on the servers DATABASE_URL, REDIS_URL and QDRANT_URL name", function()
    local name, url = helpers.fresh_database()
    local outputs = {}
    for round = 1, 2 do
      local out = os.tmpname()
      local ok = os.execute(string.format("cd %s && DATABASE_URL=%s bash scripts/demo.sh >%s 2>&1",
        helpers.shell_quote(helpers.root), helpers.shell_quote(url), out))
      outputs[round] = helpers.read_file(out)
      os.remove(out)
      assert.is_true(ok == true, outputs[round])
      assert.truthy(outputs[round]:find("using the servers DATABASE_URL, REDIS_URL and QDRANT_URL name", 1, true))
      assert.truthy(outputs[round]:find("alice searching bob's private notes: access_denied", 1, true), outputs[round])
      assert.truthy(outputs[round]:find("how do I reset my password%s+hybrid"), outputs[round])
    end
    helpers.drop_database(name)
    assert.truthy(outputs[1]:find("handbook%s+300 new documents,%s+0 already there"), outputs[1])
    assert.truthy(outputs[2]:find("handbook%s+0 new documents,%s+300 already there"), outputs[2])
  end)
end)
