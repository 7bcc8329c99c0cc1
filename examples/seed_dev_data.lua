-- The development data: `semstore seed examples/seed_dev_data.lua [N]`
-- (the README's main job runs it). Two users, a public handbook and a
-- private set of engineering notes, N documents (default 300) written from
-- templates, chunked, embedded by the local embedder and indexed in Qdrant,
-- with a progress bar on a terminal. Idempotent: users and collections are
-- found by name, and documents already there (by content hash) are skipped.
-- `db` comes from the command; run alone, it connects from the environment.
local semstore = require "semstore"
local db = db or assert(semstore.connect {})
local args = arg or {}

local n = math.tointeger(tonumber(args[1] or "300"))
if not n or n < 1 then return nil, "usage: semstore seed examples/seed_dev_data.lua [N]" end

local function user(name)
  local u = db.users:get_by_username(name)
  if u then return u end
  return assert(db.users:create { username = name, email = name .. "@example.org", full_name = name:gsub("^%l", string.upper),
    password = "dev password of " .. name })
end

local function collection(fields)
  local c, err = db.collections:get_by_name(fields.name)
  if c then return c end
  assert(err.kind == "not_found", err)
  return assert(db.collections:create(fields))
end

local alice, bob = user "alice", user "bob"
local handbook = collection { name = "handbook", owner_id = alice.id, embedding_model = "local-hash-256",
  description = "How the company works", is_public = true, chunk_size = 400, chunk_overlap = 60 }
local notes = collection { name = "engineering-notes", owner_id = bob.id, embedding_model = "local-hash-256",
  description = "Bob's private notes", chunk_size = 300, chunk_overlap = 40 }

-- Articles: a subject, what to do, and a varying closing line.
local SUBJECTS = {
  { "Resetting your password", "Open Settings, choose Security, and follow the link we email you. The link works for one hour." },
  { "Booking time off", "Ask your manager in the leave planner at least two weeks ahead; public holidays are already counted." },
  { "Expense reports", "Photograph each receipt, attach it to the report, and submit before the fifth of the next month." },
  { "Laptop replacement", "Laptops are replaced every three years; open a ticket with IT and back up your files first." },
  { "Onboarding week", "New colleagues meet their buddy on Monday, set up accounts on Tuesday and ship a small change by Friday." },
  { "Security incidents", "Report a lost badge or a phishing mail at once to security; do not forward the suspicious message." },
  { "Office kitchen", "Label your food, run the dishwasher when it is full, and empty the fridge every Friday afternoon." },
  { "Travel policy", "Book trains for trips under four hours; flights need approval, and hotels follow the city's rate card." },
  { "Database backups", "Nightly base backups run at two, WAL is archived continuously, and a restore is tested every week." },
  { "Incident postmortems", "Write the timeline, the impact and the causes within five days; the review never blames a person." },
}
local CLOSINGS = {
  "Questions go to the people team.", "The policy was last reviewed this quarter.", "See the wiki for the forms.",
  "Managers can grant exceptions.", "This applies to every office.", "Contractors follow the same rules.",
}
local NOTES = {
  "PostgreSQL partitions chunks by a hash of the collection id, so one collection lives in one partition.",
  "Qdrant's hybrid queries fuse a dense and a sparse prefetch with reciprocal rank fusion.",
  "Redis caches search results per collection generation, so a change invalidates them at once.",
  "The re-index queue is drained with FOR UPDATE SKIP LOCKED, so two workers never share a job.",
  "Binary COPY into the leaf partitions is the fastest way to load chunks.",
}

local function articles(count)
  local docs = {}
  for i = 1, count do
    local s = SUBJECTS[(i - 1) % #SUBJECTS + 1]
    docs[i] = {
      content = string.format("%s, part %d. %s %s", s[1], math.floor((i - 1) / #SUBJECTS) + 1, s[2], CLOSINGS[i % #CLOSINGS + 1]),
      file_name = string.format("handbook/%03d-%s.md", i, s[1]:lower():gsub("%W+", "-")),
      metadata = { section = s[1], part = math.floor((i - 1) / #SUBJECTS) + 1 },
    }
  end
  return docs
end

local function engineering(count)
  local docs = {}
  for i = 1, count do
    docs[i] = { content = string.format("Note %d: %s", i, NOTES[(i - 1) % #NOTES + 1]), file_name = string.format("notes/%03d.txt", i) }
  end
  return docs
end

local svc = assert(semstore.services.documents(db))
for _, job in ipairs { { handbook, articles(n) }, { notes, engineering(math.max(1, math.floor(n / 10))) } } do
  local col, docs = job[1], job[2]
  local bar, done = semstore.progress_bar(string.format("%-18s", col.name))
  local report = assert(svc:index_collection(col.id, docs, { progress = bar, user_id = col.owner_id }))
  done()
  print(string.format("%-18s %4d new documents, %4d already there, %5d chunks, %5d vectors", col.name,
    report.documents, report.skipped, report.chunks, report.vectors))
end
