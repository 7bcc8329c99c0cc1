-- What the specs share: the throwaway servers' addresses (scripts/servers.sh
-- exports them) and fresh pools with names of their own.
local semstore = require "semstore"

local helpers = {}

helpers.url = assert(os.getenv "SEMSTORE_TEST_DATABASE_URL" or os.getenv "DATABASE_URL",
  "run the specs through scripts/test.sh, which starts PostgreSQL and sets SEMSTORE_TEST_DATABASE_URL")
helpers.superuser_url = os.getenv "SEMSTORE_TEST_PG_SUPERUSER_URL"
helpers.under_valgrind = os.getenv "SEMSTORE_UNDER_VALGRIND" == "1"

local counter = 0

-- A pool of its own for one spec: names never repeat, so no state leaks
-- from one test into the next.
function helpers.connect(pool, extra)
  counter = counter + 1
  local opts = { name = "spec-" .. counter, postgres = helpers.url, pool = pool or { size = 3, max_overflow = 2, timeout = 5 } }
  for k, v in pairs(extra or {}) do opts[k] = v end
  return assert(semstore.connect(opts))
end

-- Asserts the pool lent out nothing that was not given back.
function helpers.assert_all_returned(db)
  local s = db.pg:stats()
  assert(s.in_use == 0, "connections still in use: " .. s.in_use)
  assert(s.waiting == 0, "acquirers still waiting: " .. s.waiting)
end

function helpers.sleep(seconds)
  assert(os.execute(string.format("sleep %.3f", seconds)))
end

return helpers
