-- Health: `semstore run examples/health.lua` (or `semstore health`).
local semstore = require "semstore"
local db = db or assert(semstore.connect {})

local report = db:health()
for _, store in ipairs { "postgres", "redis", "qdrant" } do
  local h = report[store]
  if h then
    print(string.format("%-9s %-9s %6.1f ms  %s", store, h.ok and "healthy" or "unhealthy", h.ms,
      h.ok and tostring(h.info) or tostring(h.error)))
  end
end
assert(report.ok, "a store is unhealthy")
