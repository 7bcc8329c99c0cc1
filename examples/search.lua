-- Dense and hybrid search over the seeded handbook, printed as a table:
-- `semstore run examples/search.lua` after examples/seed_dev_data.lua.
local semstore = require "semstore"
local db = db or assert(semstore.connect {})

local svc = assert(semstore.services.documents(db))
local handbook = assert(db.collections:get_by_name "handbook")
local reader = assert(db.users:get_by_username "bob") -- the handbook is public

local function cell(s, width)
  s = tostring(s):gsub("%s+", " ")
  if utf8.len(s) and utf8.len(s) > width then s = s:sub(1, utf8.offset(s, width - 2) - 1) .. "..." end
  return s .. (" "):rep(width - (utf8.len(s) or #s))
end

print(cell("query", 30) .. " " .. cell("mode", 6) .. " # " .. cell("score", 7) .. " " .. cell("file", 34) .. " text")
print(("-"):rep(120))
for _, q in ipairs { "how do I reset my password", "booking trains and hotels for a trip", "restore tested weekly" } do
  for _, mode in ipairs { "dense", "hybrid" } do
    local hits = assert(svc:search(handbook.id, q, { user_id = reader.id, limit = 3, mode = mode }))
    for i, h in ipairs(hits) do
      print(cell(i == 1 and q or "", 30) .. " " .. cell(i == 1 and mode or "", 6) .. " " .. i .. " " ..
        string.format("%7.4f", h.score) .. " " .. cell(h.file_name, 34) .. " " .. cell(h.content, 40))
    end
  end
end
-- another user's private collection is refused
local notes = assert(db.collections:get_by_name "engineering-notes")
local _, err = svc:search(notes.id, "partitions", { user_id = assert(db.users:get_by_username "alice").id })
print(string.format("\nalice searching bob's private notes: %s", err.kind))
assert(err.kind == "access_denied")
