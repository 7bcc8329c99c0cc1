-- The `semstore` command. bin/semstore only calls cli.main(arg) and exits
-- with what it returns: 0 success, 1 failure, 2 a usage error.
local compat = require "semstore.compat"
compat() -- Lua 5.4's library, under LuaJIT too (semstore/compat.lua)
local semstore = require "semstore"
local config = require "semstore.config"
local core = require "semstore.core"
local qdrant = require "semstore.qdrant"

local cli = {}

local HELP = {
  main = [[
usage: semstore COMMAND [ARGS] [OPTIONS]

commands:
  migrate up|down|status|new   schema migrations (semstore migrate --help)
  health                       check the servers semstore is configured for
  wait [--timeout 300]         wait until every configured server answers
  check                        look for broken references and missing vectors
  partitions                   rows and size of each chunk partition, and skew
  recover [--grace 60]         settle what parallel bulk loads that died left prepared
  worker [--timeout N] [--once]  drain the re-index queue, then wait for jobs
  repl                         Lua with semstore loaded and db connected
  run SCRIPT.lua [ARGS]        run a script with a connected db and its arg
  seed FILE.lua [ARGS]         the same, for seeding scripts
  dev-qdrant [--port N]        run the Qdrant stand-in in the foreground

Settings come from the environment and from ./.env, which never overrides a
variable that is already set: DATABASE_URL or POSTGRES_HOST, POSTGRES_PORT,
POSTGRES_USER, POSTGRES_PASSWORD, POSTGRES_DB; DB_POOL_SIZE and the other
DB_POOL_* settings. `semstore COMMAND --help` describes each command.
Exit codes: 0 success, 1 failure, 2 usage error.
]],
  migrate = [[
usage: semstore migrate up [TARGET] [--dir DIR] [--dry-run]
       semstore migrate down [STEPS|all] [--dir DIR] [--dry-run]
       semstore migrate status [--dir DIR]
       semstore migrate new NAME [--dir DIR]

  up       applies pending migrations: semstore's own schema first, then the
           ones in DIR, up to TARGET when given (a version such as 0003, a
           file name without .lua, or semstore/NNNN for a built-in one)
  down     reverts the STEPS most recently applied migrations (default 1;
           "all" reverts everything, the built-in schema included)
  status   lists applied and pending migrations with their dates; exits 1
           when a migration was changed after it was applied, its file is
           gone, or a pending one is older than an applied one
  new      writes a stub migration NNNN_NAME.lua into DIR

  --dir DIR    the application's migrations (default ./migrations when it exists)
  --dry-run    runs inside a transaction, prints each statement, rolls back
]],
  health = [[
usage: semstore health

Runs a query on PostgreSQL, sends Redis a PING and, when Qdrant is
configured, lists its collections. Prints a table: each store, healthy or
unhealthy, the milliseconds it took, its address (without password) and
what it answered or the error. Exits 1 when any store is unhealthy.
]],
  wait = [[
usage: semstore wait [--timeout 300]

Waits until PostgreSQL, Redis and (when configured) Qdrant all answer, for
a deployment's pre-start step. Asks again with exponential backoff (0.1 s,
doubling up to 5 s), prints a line when a store first answers and, every
few seconds, the ones it still waits for. Exits 0 when all have answered,
1 after the timeout, naming the stores that never answered and their last
error.

  --timeout SECONDS   how long to wait in all (default 300; 0 asks once)
]],
  check = [[
usage: semstore check

Checks the data for what the constraints should have prevented or what a
failed job left behind, one line per check with the number of findings and
up to 10 examples each:
  documents without a collection
  chunks whose partition_key is not chunk_partition_key(collection_id)
  chunks pointing at a missing document
  duplicate content hashes within a collection
  chunks without embeddings (embedding_vector_id NULL), per collection
  each collection's embedded chunks against its Qdrant points (skipped,
  not a finding, when Qdrant is not configured)
PostgreSQL is read in one read-only snapshot. Exits 1 when anything is
found, 0 when the data is clean.
]],
  partitions = [[
usage: semstore partitions

Lists each partition of chunks (chunks_p0 ...) with its row count and total
size (table, indexes and TOAST), then the total rows, the mean, minimum and
maximum per partition, the skew (max / mean), the coefficient of variation
(standard deviation / mean) and the number of empty partitions. Counting
reads every row. Exits 1 only when the database cannot be read.
]],
  recover = [[
usage: semstore recover [--grace 60]

Settles the prepared transactions that parallel bulk loads
(create_chunks_bulk{parallel = N}) leave when their process dies between
PREPARE TRANSACTION and the last COMMIT PREPARED. They hold locks until
settled. Each one older than --grace seconds (60 by default: younger ones
may still be committed by a process that is alive) is committed when its
bulk's decision row says commit, and rolled back otherwise, so every bulk
ends with all its rows or none. Decision rows with no part left are
deleted. Each pool's first connection does the same with a 60 s grace.
Prints what it did; exits 1 when the database cannot be read or a part
cannot be settled (a role that did not prepare it and is no superuser).
]],
  run = [[
usage: semstore run SCRIPT.lua [ARGS...]

Runs SCRIPT.lua with two globals: db, connected as semstore.connect() is
(see `semstore --help` for the settings), and arg, the script's arguments
(arg[0] is the script). The arguments are also the chunk's `...`. The
command fails (exit 1) when the script raises an error or returns nil, err.
]],
  ["dev-qdrant"] = [[
usage: semstore dev-qdrant [--port 6333] [--data DIR]

Runs the Qdrant stand-in (tools/qdrant-standin, a Node.js program) in the
foreground on 127.0.0.1 and prints the URL it listens on; Ctrl-C stops it.
It answers Qdrant's REST API from memory with exact search, for development
and tests without a real Qdrant. Needs node and the stand-in's npm packages
(scripts/install-deps.sh installs both).

  --port N     the port (default 6333; 0 picks a free one)
  --data DIR   where snapshots are written (default: a temporary folder)
]],
  worker = [[
usage: semstore worker [--timeout N] [--once]

Drains the re-index queue (reindex_jobs): documents written while Qdrant
could not be reached, and their deletions. Then waits, in LISTEN, until a
job arrives or the next one falls due, and drains again. Several workers
may run at once: each job goes to one of them (FOR UPDATE SKIP LOCKED).
Prints one line per round that ran jobs. Uses the local embedder.

  --timeout N  stop after N seconds (default: run until stopped)
  --once       drain what is due now and stop; exits 1 when a job failed
]],
  repl = [[
usage: semstore repl

Lua with semstore loaded and db connected (from the environment and ./.env).
A line that is an expression prints its values: rows as an aligned table,
other tables as JSON-like text, semstore.null as null, errors with their
kind and SQLSTATE. An unfinished statement reads on (prompt >>). With
lua-readline installed, lines are edited with readline and kept in
~/.semstore_history. Commands:
  :help           the repositories and their methods
  :sql TEXT       run SQL and print the rows
  :timing on|off  print how long each call took
  :quit           leave (so does Ctrl-D)
Ctrl-C stops the line that runs and cancels the SQL statement it waits on.
]],
  seed = [[
usage: semstore seed FILE.lua [ARGS...]

Runs a seeding script exactly as `semstore run` runs a script: with a
connected db and arg. Exits 1 when it raises an error or returns nil, err.
]],
}

-- Splits args into positional values and options; `spec` maps each known
-- option to true (a flag) or "value".
local function parse(args, spec)
  local pos, opts, i = {}, {}, 1
  while i <= #args do
    local a = args[i]
    if a == "--help" or a == "-h" then
      opts.help = true
    elseif a:match "^%-%-" then
      local name, value = a:match "^%-%-([%w%-]+)=(.*)$"
      name = name or a:sub(3)
      local kind = spec[name]
      if not kind then return nil, "unknown option " .. a end
      if kind == "value" then
        if not value then
          i = i + 1
          value = args[i]
          if value == nil then return nil, "--" .. name .. " needs a value" end
        end
        opts[name] = value
      else
        if value then return nil, "--" .. name .. " takes no value" end
        opts[name] = true
      end
    else
      pos[#pos + 1] = a
    end
    i = i + 1
  end
  return pos, opts
end

local function is_dir(path)
  local attr = require("lfs").attributes(path)
  return attr and attr.mode == "directory"
end

-- migrate and health need one connection (two when a migration also uses
-- the pool); scripts get the pool the environment configures. `extra`
-- adds connect options (wait's short timeouts).
local function connect(pool, extra)
  local opts = { name = "semstore-cli", pool = pool }
  for k, v in pairs(extra or {}) do opts[k] = v end
  return semstore.connect(opts)
end
local SMALL_POOL = { size = 1, max_overflow = 1 }
local STORES = { "postgres", "redis", "qdrant" }

-- How long one attempt of `wait` at one of `stores` stores may take: a
-- round that asks each in turn fits a short --timeout (servers that drop
-- packets must not hold it for the default 5-10 s each); --timeout 0 is
-- one attempt of 1 s each.
local function probe_seconds(timeout, stores)
  if timeout == 0 then return 1 end
  return math.max(0.5, math.min(5, timeout / stores))
end

-- A --timeout value: seconds, 0 or more and finite; nil when it is not.
local function seconds(text)
  local n = tonumber(text)
  if not n or n < 0 or n == math.huge then return nil end
  return n
end

-- The Qdrant and Redis settings from the environment with every time limit
-- at most `bound` seconds, never looser than what the environment or the
-- clients' own defaults give: qdrant (false when not configured), redis;
-- or nil, err.
local function clients_within(bound)
  local qdrant_opts, err = config.qdrant()
  if qdrant_opts == nil then return nil, err end
  local redis_opts
  redis_opts, err = config.redis()
  if not redis_opts then return nil, err end
  local defaults = core.defaults
  if qdrant_opts then
    for _, k in ipairs { "timeout", "connect_timeout", "retry_timeout" } do
      qdrant_opts[k] = math.min(qdrant_opts[k] or defaults.qdrant[k], bound)
    end
  end
  for _, k in ipairs { "connect_timeout", "command_timeout" } do
    redis_opts[k] = math.min(redis_opts[k] or defaults.redis[k], bound)
  end
  return qdrant_opts, redis_opts
end

-- A db for probing the servers: each check is one attempt of at most
-- `probe` seconds (Qdrant's client would otherwise retry for minutes on a
-- server that accepts and never answers). `check` counts Qdrant's points
-- through it too.
local function connect_probe(probe)
  local qdrant_opts, redis_opts = clients_within(probe)
  if qdrant_opts == nil then return nil, redis_opts end
  if qdrant_opts then qdrant_opts.max_retries = 0 end
  return connect({ size = 1, max_overflow = 1, connect_timeout = probe }, { redis = redis_opts, qdrant = qdrant_opts or nil })
end

-- A message on one line, for a table cell (libpq's errors have a hint on
-- a second line).
local function one_line(s) return (tostring(s):gsub("%s*\n%s*", " ")) end

-- A statement as written in a migration, without its common indentation.
local function dedent(sql)
  sql = sql:gsub("^%s*\n", ""):gsub("%s+$", "")
  local indent
  for lead in sql:gmatch "[^\n]*" do
    local ws = lead:match "^(%s*)%S"
    if ws and (not indent or #ws < #indent) then indent = ws end
  end
  if indent and #indent > 0 then sql = ("\n" .. sql):gsub("\n" .. indent, "\n"):sub(2) end
  return sql
end

local Command = {}
Command.__index = Command

function Command:out(fmt, ...) self.stdout:write(string.format(fmt, ...), "\n") end
function Command:err(fmt, ...) self.stderr:write(string.format(fmt, ...), "\n") end

function Command:usage(message, topic)
  self:err("semstore: %s", message)
  self:err("%s", (HELP[topic] or HELP.main):match "^[^\n]*")
  self:err("(semstore %s--help for more)", topic and topic ~= "main" and topic .. " " or "")
  return 2
end

function Command:failed(err)
  self:err("semstore: %s", tostring(err))
  return 1
end

-- Prints rows (rows[1] the header) as aligned columns; `right` lists the
-- columns (numbers) aligned right. The last column is never padded.
function Command:columns(rows, right)
  for _, line in ipairs(require("semstore.show").columns(rows, right)) do self:out("%s", line) end
end

-- Parses a command that takes no positional arguments: nil when it goes
-- on, else the exit code (help printed, or a usage error).
function Command:options(topic, args, spec)
  local pos, opts = parse(args, spec or {})
  if not pos then return nil, self:usage(opts, topic) end
  if opts.help then
    self:out("%s", HELP[topic])
    return nil, 0
  end
  if #pos > 0 then return nil, self:usage(topic .. " takes no arguments", topic) end
  return opts
end

function Command:migrate(args)
  local pos, opts = parse(args, { dir = "value", ["dry-run"] = true })
  if not pos then return self:usage(opts, "migrate") end
  if opts.help then
    self:out("%s", HELP.migrate)
    return 0
  end
  local action = table.remove(pos, 1)
  local migrate = require "semstore.migrate"
  local dir = opts.dir
  if not dir and is_dir "migrations" then dir = "migrations" end
  if action == "new" then
    if #pos ~= 1 then return self:usage("migrate new takes a NAME", "migrate") end
    local path, err = migrate.new(dir or "migrations", pos[1])
    if not path then return self:failed(err) end
    self:out("wrote %s", path)
    return 0
  end
  local m_opts = {
    dir = dir, dry_run = opts["dry-run"],
    log = function(line) self:out("%s", line) end,
    on_statement = opts["dry-run"] and function(sql) self:out("%s", dedent(sql)) end,
  }
  if action == "up" then
    if #pos > 1 then return self:usage("migrate up takes at most one TARGET", "migrate") end
    m_opts.target = pos[1]
  elseif action == "down" then
    if #pos > 1 then return self:usage("migrate down takes at most one STEPS", "migrate") end
    local steps = pos[1] or "1"
    m_opts.steps = steps == "all" and "all" or math.tointeger(tonumber(steps))
    if not m_opts.steps or (steps ~= "all" and m_opts.steps < 1) then
      return self:usage("STEPS is a positive number or all, not " .. steps, "migrate")
    end
  elseif action == "status" then
    if #pos > 0 or opts["dry-run"] then return self:usage("migrate status takes only --dir", "migrate") end
  else
    return self:usage(action and ("unknown migrate action " .. action) or "migrate needs an action", "migrate")
  end
  local db, err = connect(SMALL_POOL)
  if not db then return self:failed(err) end
  local ok, res, problems = pcall(migrate[action], db, m_opts)
  db:close()
  if not ok then return self:failed(res) end
  if not res then return self:failed(problems) end
  if action ~= "status" then return 0 end
  for _, m in ipairs(res) do
    local when = m.applied_at and string.format("%s  %d ms", m.applied_at, m.execution_ms) or ""
    local state = m.out_of_order and "pending, out of order" or m.state
    self:out("%-10s %-45s %s", state, m.id, when)
  end
  for _, p in ipairs(problems) do self:err("problem: %s", p) end
  return #problems > 0 and 1 or 0
end

function Command:health(args)
  local opts, status = self:options("health", args)
  if not opts then return status end
  local db, err = connect_probe(5)
  if not db then return self:failed(err) end
  local report = db:health(nil, { timeout = 5 })
  db:close()
  local rows = { { "store", "status", "ms", "target", "detail" } }
  for _, store in ipairs(STORES) do
    local h = report[store]
    if h then
      rows[#rows + 1] = { store, h.status, string.format("%.1f", h.ms), h.target, one_line(h.ok and h.info or h.error) }
    end
  end
  self:columns(rows, { 3 })
  return report.ok and 0 or 1
end

function Command:wait(args)
  local opts, status = self:options("wait", args, { timeout = "value" })
  if not opts then return status end
  local timeout = seconds(opts.timeout or "300")
  if not timeout then
    return self:usage("--timeout takes a number of seconds, 0 or more, not " .. opts.timeout, "wait")
  end
  local qdrant_opts, err = config.qdrant()
  if qdrant_opts == nil then return self:failed(err) end
  local pending = { "postgres", "redis" }
  if qdrant_opts then pending[3] = "qdrant" end
  -- the loop below retries, so each attempt is one request
  local probe = probe_seconds(timeout, #pending)
  local db
  db, err = connect_probe(probe)
  if not db then return self:failed(err) end
  local started = core.monotime()
  local deadline, delay, last_note, last_error, first = started + timeout, 0.1, nil, {}, true
  while true do
    local still = {}
    -- one store at a time, each timed on its own; after the first round
    -- none is asked once the deadline has passed
    for _, store in ipairs(pending) do
      if not first and core.monotime() >= deadline then
        still[#still + 1] = store
      else
        local h = db:health({ store }, { timeout = probe })[store]
        if h.ok then
          self:out("%s answers after %.1f s: %s (%s)", store, core.monotime() - started, h.info, h.target)
        else
          still[#still + 1], last_error[store] = store, h.error
        end
      end
    end
    first = false
    pending = still
    local now = core.monotime()
    if #pending == 0 or now >= deadline then break end
    if not last_note or now - last_note >= 5 then
      self:out("waiting for %s (%.0f s of %g)", table.concat(pending, ", "), now - started, timeout)
      last_note = now
    end
    self.stdout:flush()
    core.sleep(math.min(delay, deadline - now))
    delay = math.min(delay * 2, 5)
  end
  db:close()
  if #pending == 0 then return 0 end
  self:err("semstore: gave up after %.1f s; no answer from %s", core.monotime() - started, table.concat(pending, ", "))
  for _, store in ipairs(pending) do self:err("  %s: %s", store, one_line(last_error[store])) end
  return 1
end

-- The checks `semstore check` runs whose findings are rows: each query
-- gives every finding as (sort_key, example). It runs as a materialized CTE
-- so that it is planned as the full scan it is (hash joins, sequential
-- scans): under the LIMIT the planner picks index-ordered nested loops,
-- which read a 100-million-row chunks table one index probe at a time.
local ROW_CHECKS = {
  { "documents without a collection", [[
    SELECT d.id AS sort_key, d.id AS example
    FROM documents d LEFT JOIN collections c ON c.id = d.collection_id
    WHERE c.id IS NULL]] },
  { "chunks under the wrong partition key", [[
    SELECT id AS sort_key, format('chunk %s: partition_key %s, collection %s expects %s', id, partition_key,
                                  collection_id, chunk_partition_key(collection_id)) AS example
    FROM chunks
    WHERE partition_key <> chunk_partition_key(collection_id)]] },
  { "chunks of a missing document", [[
    SELECT c.id AS sort_key, format('chunk %s: document %s', c.id, c.document_id) AS example
    FROM chunks c
    WHERE c.document_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM documents d WHERE d.id = c.document_id)]] },
  { "duplicate content hashes", [[
    SELECT collection_id || ' ' || content_hash AS sort_key,
           format('collection %s, hash %s: %s documents (%s)', collection_id, content_hash, count(*),
                  array_to_string((array_agg(id ORDER BY id))[1:10], ', ')) AS example
    FROM documents
    GROUP BY collection_id, content_hash HAVING count(*) > 1]] },
}

-- Up to 10 examples of a check's findings, each with n, the number of all
-- of them (count(*) OVER () counts before the LIMIT).
local function examples_sql(findings)
  return "WITH found AS MATERIALIZED (" .. findings ..
    ")\n    SELECT example, count(*) OVER () AS n FROM found ORDER BY sort_key LIMIT 10"
end

-- Per collection, in one pass over chunks: the chunks without a vector and
-- those with one (what Qdrant should hold).
local CHUNK_COUNTS = [[
  SELECT coalesce(k.collection_id, col.id) AS collection_id,
         coalesce(col.name, '(no collection row) ' || k.collection_id) AS name,
         col.vector_store_name, coalesce(k.missing, 0) AS missing, coalesce(k.embedded, 0) AS embedded
  FROM (SELECT collection_id, count(*) FILTER (WHERE embedding_vector_id IS NULL) AS missing,
               count(embedding_vector_id) AS embedded
        FROM chunks GROUP BY collection_id) k
  FULL JOIN collections col ON col.id = k.collection_id
  ORDER BY 2]]

-- Each collection's embedded chunks against the points of its Qdrant
-- collection (every collection: points with no embedded chunk are stale),
-- the mismatches, as examples. A failure other than a missing collection
-- ends the comparison: an unreachable Qdrant would otherwise cost each
-- collection its own attempt.
local function qdrant_mismatches(db, counts)
  local found = {}
  for _, c in ipairs(counts) do
    if c.embedded > 0 or c.vector_store_name ~= semstore.null then
      if c.vector_store_name == semstore.null then
        found[#found + 1] = string.format("%s: %d embedded chunks and no collection row to find them in Qdrant", c.name, c.embedded)
      else
        local points, err = db.qdrant:count(c.vector_store_name)
        if points == nil and type(err) == "table" and err.status == 404 then
          if c.embedded > 0 then
            found[#found + 1] = string.format("%s: %d embedded chunks, Qdrant collection %s is missing", c.name,
              c.embedded, c.vector_store_name)
          end
        elseif points == nil then
          found[#found + 1] = string.format("%s: could not count Qdrant's %s, comparison stopped: %s", c.name,
            c.vector_store_name, one_line(err))
          break
        elseif points ~= c.embedded then
          found[#found + 1] = string.format("%s: %d embedded chunks, %d points in Qdrant's %s", c.name, c.embedded, points, c.vector_store_name)
        end
      end
    end
  end
  return found
end

function Command:check(args)
  local opts, status = self:options("check", args)
  if not opts then return status end
  -- Qdrant's counts are one attempt of at most 5 s each: a stalled Qdrant
  -- is a finding, not a hang
  local db, err = connect_probe(5)
  if not db then return self:failed(err) end
  -- one snapshot, so the checks see the same data
  local results, counts = {}, nil
  local ok
  ok, err = db.pg:transaction(function(tx)
    for i, c in ipairs(ROW_CHECKS) do
      local rows, e = tx:query(examples_sql(c[2]))
      if not rows then return nil, e end
      results[i] = rows
    end
    local e
    counts, e = tx:query(CHUNK_COUNTS)
    if not counts then return nil, e end
  end, { isolation = "repeatable read", read_only = true })
  if not ok then
    db:close()
    return self:failed(err)
  end
  local findings = 0
  local function report(name, n, examples, more)
    self:out("%-40s %d", name, n)
    for i = 1, math.min(#examples, 10) do self:out("    %s", examples[i]) end
    if more and more > 0 then self:out("    ... and %d more", more) end
    findings = findings + n
  end
  for i, c in ipairs(ROW_CHECKS) do
    local rows, examples = results[i], {}
    for j, row in ipairs(rows) do examples[j] = row.example end
    local n = rows[1] and rows[1].n or 0
    report(c[1], n, examples, n - #examples)
  end
  local missing, examples = 0, {}
  for _, c in ipairs(counts) do
    if c.missing > 0 then
      missing = missing + c.missing
      examples[#examples + 1] = string.format("%s: %d", c.name, c.missing)
    end
  end
  report("chunks without embeddings", missing, examples, #examples - 10)
  if db.qdrant == qdrant.unconfigured then
    self:out("%-40s skipped: Qdrant is not configured", "embedded chunks against Qdrant points")
  else
    local found = qdrant_mismatches(db, counts)
    report("embedded chunks against Qdrant points", #found, found, #found - 10)
  end
  db:close()
  if findings == 0 then
    self:out("no findings")
    return 0
  end
  self:out("%d findings", findings)
  return 1
end

-- Every partition of chunks, from pg_inherits so that empty ones show,
-- numbered as their names (chunks_p0 ... chunks_p99) are, with its rows
-- counted in one pass over chunks.
local PARTITIONS = [[
  SELECT c.relname AS name, coalesce(k.n, 0) AS n_rows,
         pg_size_pretty(pg_total_relation_size(c.oid)) AS size
  FROM pg_inherits i
  JOIN pg_class c ON c.oid = i.inhrelid
  LEFT JOIN (SELECT tableoid, count(*) AS n FROM chunks GROUP BY tableoid) k ON k.tableoid = c.oid
  WHERE i.inhparent = 'chunks'::regclass
  ORDER BY substring(c.relname FROM '[0-9]+$')::int NULLS LAST, c.relname]]

function Command:recover(args)
  local opts, status = self:options("recover", args, { grace = "value" })
  if not opts then return status end
  local grace = seconds(opts.grace or "60")
  if not grace then return self:usage("--grace takes a number of seconds, 0 or more, not " .. opts.grace, "recover") end
  -- the pool's own first-connection recovery (with its grace) stays off:
  -- --grace decides
  local pool = { recover_grace = false }
  for k, v in pairs(SMALL_POOL) do pool[k] = v end
  local db, err = connect(pool)
  if not db then return self:failed(err) end
  local r
  r, err = db.chunks:recover_bulk { grace = grace }
  db:close()
  if not r then return self:failed(err) end
  self:out("committed %d, rolled back %d prepared bulk parts; forgot %d decisions", r.committed, r.rolled_back,
    r.forgotten)
  return 0
end

function Command:partitions(args)
  local opts, status = self:options("partitions", args)
  if not opts then return status end
  local db, err = connect(SMALL_POOL)
  if not db then return self:failed(err) end
  local rows
  rows, err = db.pg:query(PARTITIONS)
  db:close()
  if not rows then return self:failed(err) end
  if #rows == 0 then
    self:out("chunks has no partitions")
    return 0
  end
  local table_rows = { { "partition", "rows", "size" } }
  local total, min, max, empty = 0, math.huge, 0, 0
  for _, p in ipairs(rows) do
    table_rows[#table_rows + 1] = { p.name, p.n_rows, p.size }
    total, min, max = total + p.n_rows, math.min(min, p.n_rows), math.max(max, p.n_rows)
    if p.n_rows == 0 then empty = empty + 1 end
  end
  self:columns(table_rows, { 2, 3 })
  local mean = total / #rows
  local var = 0
  for _, p in ipairs(rows) do var = var + (p.n_rows - mean) ^ 2 end
  local sd = math.sqrt(var / #rows)
  self:out("")
  self:out("partitions      %d (%d empty)", #rows, empty)
  self:out("rows            %d in all; per partition mean %.1f, min %d, max %d", total, mean, min, max)
  -- both are ratios to the mean: with no rows at all there is no skew
  if total > 0 then
    self:out("skew            %.2f (max / mean)", max / mean)
    self:out("variation       %.2f (standard deviation / mean)", sd / mean)
  else
    self:out("skew            - (no rows)")
    self:out("variation       - (no rows)")
  end
  return 0
end

-- `run` and `seed`: the script's globals fall back to the real ones, so
-- it can require modules and print as usual (under LuaJIT through Lua
-- 5.4's library, as semstore's own modules and migrations see it).
function Command:script(topic, args)
  local split = 1
  while args[split] and args[split]:match "^%-" do split = split + 1 end
  local own, script_args = { table.unpack(args, 1, split - 1) }, { table.unpack(args, split + 1) }
  local pos, opts = parse(own, {})
  if not pos then return self:usage(opts, topic) end
  if opts.help then
    self:out("%s", HELP[topic])
    return 0
  end
  local path = args[split]
  if not path then return self:usage(topic .. " needs a script", topic) end
  script_args[0] = path
  local db, err = connect()
  if not db then return self:failed(err) end
  local env = setmetatable({ db = db, arg = script_args }, { __index = compat.env })
  local chunk
  chunk, err = loadfile(path, "t", env)
  if not chunk then
    db:close()
    return self:failed(err)
  end
  local res = table.pack(xpcall(chunk, debug.traceback, table.unpack(script_args)))
  db:close()
  if not res[1] then return self:failed(res[2]) end
  if res[2] == nil and res[3] ~= nil then return self:failed(res[3]) end
  return 0
end

-- The stand-in's folder, found from this file's own path
-- (lua/semstore/cli.lua -> tools/qdrant-standin).
local function standin_dir()
  local source = debug.getinfo(1, "S").source
  local here = source:sub(1, 1) == "@" and source:sub(2):match "^(.*)/[^/]*$" or "."
  return here .. "/../../tools/qdrant-standin"
end

local function shell_quote(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

function Command:dev_qdrant(args)
  local opts, status = self:options("dev-qdrant", args, { port = "value", data = "value" })
  if not opts then return status end
  local port = opts.port or "6333"
  local n = math.tointeger(tonumber(port))
  if not n or n < 0 or n > 65535 then return self:usage("--port takes a port number, not " .. port, "dev-qdrant") end
  local dir = standin_dir()
  local server = dir .. "/server.js"
  if not io.open(server) then return self:failed("the Qdrant stand-in is missing: no " .. server) end
  if not os.execute "command -v node >/dev/null 2>&1" then
    return self:failed("node is not installed: the Qdrant stand-in needs Node.js (scripts/install-deps.sh installs it)")
  end
  local ajv = io.open(dir .. "/node_modules/ajv/package.json")
  if not ajv then
    return self:failed("the Qdrant stand-in's npm packages are missing: no " .. dir ..
      "/node_modules (run scripts/install-deps.sh, or npm ci in that folder)")
  end
  ajv:close()
  local cmd = { "exec node", shell_quote(server), "--host 127.0.0.1 --port", tostring(n) }
  if opts.data then cmd[#cmd + 1] = "--data " .. shell_quote(opts.data) end
  -- the stand-in prints its URL itself, on stdout, once it listens
  self.stdout:flush()
  local ok, how, code = os.execute(table.concat(cmd, " "))
  if ok then return 0 end
  -- stopped by Ctrl-C or a kill: a normal end for a foreground server
  if how == "signal" then return 0 end
  return code == 2 and 2 or 1
end

function Command:worker(args)
  local opts, status = self:options("worker", args, { timeout = "value", once = true })
  if not opts then return status end
  local timeout = opts.timeout and seconds(opts.timeout)
  if opts.timeout and not timeout then
    return self:usage("--timeout takes a number of seconds, 0 or more, not " .. opts.timeout, "worker")
  end
  -- a job begun just before the end gives up on a stalled server within
  -- the timeout (at least 1 s; PostgreSQL's connect at least libpq's 2 s),
  -- rather than after a client's whole retry budget or its defaults
  local bound = timeout and math.max(1, timeout) or math.huge
  local qdrant_opts, redis_opts = clients_within(bound)
  if qdrant_opts == nil then return self:failed(redis_opts) end
  local pool
  if timeout then pool = { connect_timeout = math.max(2, math.min(core.defaults.connect_timeout, math.ceil(bound))) } end
  local db, err = connect(pool, { qdrant = qdrant_opts or nil, redis = redis_opts })
  if not db then return self:failed(err) end
  local svc
  svc, err = semstore.services.documents(db)
  local report
  if svc and opts.once then
    report, err = svc:retry_pending { timeout = timeout }
  elseif svc then
    report, err = svc:worker { timeout = timeout, on_batch = function(r)
      if r.error then
        self:err("semstore worker: %s", tostring(r.error))
      else
        self:out("%s  %d done, %d failed, %d left", os.date "!%Y-%m-%dT%H:%M:%SZ", r.done, r.failed, r.left)
      end
    end }
  end
  db:close()
  if not report then return self:failed(err) end
  self:out("%d done, %d failed, %d left", report.done, report.failed, report.left)
  -- a worker that never could read the queue failed
  if report.rounds and report.errors == report.rounds then return self:failed(report.error) end
  return opts.once and report.failed > 0 and 1 or 0
end

function Command:repl(args)
  local opts, status = self:options("repl", args)
  if not opts then return status end
  local db, err = connect()
  if not db then return self:failed(err) end
  local repl = require "semstore.repl"
  local read, close = repl.line_reader { warn = function(text) self:err("semstore repl: %s", text) end }
  local ok, rerr = pcall(repl.run, { db = db, read = read, env = { semstore = semstore }, interrupts = true,
    write = function(text) self:out("%s", text) end })
  close()
  db:close()
  if not ok then return self:failed(rerr) end
  return 0
end

local COMMANDS = {
  repl = Command.repl,
  worker = Command.worker,
  ["dev-qdrant"] = Command.dev_qdrant,
  migrate = Command.migrate,
  health = Command.health,
  wait = Command.wait,
  check = Command.check,
  partitions = Command.partitions,
  recover = Command.recover,
  run = function(self, args) return self:script("run", args) end,
  seed = function(self, args) return self:script("seed", args) end,
}

-- cli.main(args, stdout, stderr) -> exit code
function cli.main(args, stdout, stderr)
  local self = setmetatable({ stdout = stdout or io.stdout, stderr = stderr or io.stderr }, Command)
  local name = args[1]
  if name == nil then return self:usage("which command?") end
  if name == "--help" or name == "-h" or name == "help" then
    self:out("%s", HELP.main)
    return 0
  end
  local command = COMMANDS[name]
  if not command then return self:usage("unknown command " .. name) end
  local ok, err = config.load_env_file ".env"
  if ok == nil then return self:failed(err) end
  return command(self, { table.unpack(args, 2) })
end

return cli
