-- The cache: `semstore run examples/cache.lua`. JSON values in Redis under
-- one prefix, a stampede guard in remember(), and nothing breaks when Redis
-- is down (a miss).
local semstore = require "semstore"
local db = db or assert(semstore.connect {})

local calls = 0
local function expensive()
  calls = calls + 1
  return { answer = 42, computed_at = os.time() }
end
local key = "example:answer:" .. os.time()
local first = db.cache:remember(key, 30, expensive)
local second = db.cache:remember(key, 30, expensive)
print(string.format("remember: %d, %d; computed %d time(s)", first.answer, second.answer, calls))
assert(calls == 1)
-- an id beyond 2^53: LuaJIT's numbers are doubles, so there it is the exact decimal string a row gives
db.cache:set("doc:example", { title = "cached document", id = jit and "9007199254740993" or 9007199254740993 }, 60)
print("get: " .. db.cache:get("doc:example").title .. ", id " .. db.cache:get("doc:example").id)
print("delete: " .. db.cache:delete("doc:example", key))
local s = db.cache:stats()
print(string.format("stats: %d hits, %d misses, %d sets, %d errors", s.hits, s.misses, s.sets, s.errors))
