-- Schema migrations as Lua files. A migration is `NNNN_name.lua` (any
-- number of digits, so timestamps work) returning
--   { up = function(db) ... end, down = function(db) ... end, transaction = true }
-- The library's own schema (lua/semstore/migrations, source "semstore") is
-- applied first, then the application's folder (source "app").
--
-- Every run holds one connection for its whole length, and that connection
-- holds a session-level advisory lock: a second runner waits, then finds
-- nothing to do, and a `transaction = false` migration that commits as it
-- goes never lets the lock go early.
local compat = require "semstore.compat"
compat() -- Lua 5.4's library, under LuaJIT too (semstore/compat.lua)
local core = require "semstore.core"
local lfs = require "lfs"

local migrate = {}

-- "semstore" read as a big-endian int64: the advisory lock every runner takes
local LOCK_ID = 0x73656d73746f7265

local TABLE_SQL = [[
CREATE TABLE IF NOT EXISTS %s (
  source text NOT NULL,
  version text NOT NULL,
  name text NOT NULL,
  checksum text NOT NULL,
  applied_at timestamptz NOT NULL DEFAULT clock_timestamp(),
  execution_ms bigint NOT NULL,
  PRIMARY KEY (source, version)
)]]

local ERROR_MT = getmetatable(core.error {})

local FIELDS = { up = "function", down = "function", transaction = "boolean" }

local function fail(kind, fmt, ...)
  return nil, core.error { kind = kind, message = string.format(fmt, ...) }
end

-- How a migration is named in reports and targets: built-in ones carry
-- their source, so "semstore/0001_..." never clashes with an app's "0001_...".
local function migration_id(source, version, name)
  return (source == "semstore" and "semstore/" or "") .. version .. "_" .. name
end

local function builtin_dir()
  local here = debug.getinfo(1, "S").source:sub(2)
  return (here:match "^(.*)/[^/]*$" or ".") .. "/migrations"
end

local function read_file(path)
  local f, err = io.open(path, "rb")
  if not f then return fail("input", "cannot read %s", err) end
  local text = f:read "a"
  f:close()
  return text
end

-- The migrations of one folder, by version. Files that do not end in .lua
-- are ignored; a .lua file with another name is an error, since skipping it
-- would silently skip a migration.
local function scan(dir, source)
  local attr = lfs.attributes(dir)
  if not attr or attr.mode ~= "directory" then return fail("input", "no migrations folder at %s", dir) end
  local list, seen = {}, {}
  for file in lfs.dir(dir) do
    if file:match "%.lua$" and not file:match "^%." then
      local version, name = file:match "^(%d+)_([%w_%-]+)%.lua$"
      if not version or #version > 18 then
        return fail("input", "%s/%s: a migration's file is named NNNN_name.lua", dir, file)
      end
      local number = math.tointeger(tonumber(version))
      if seen[number] then
        return fail("input", "%s: %s and %s have the same version", dir, seen[number], file)
      end
      seen[number] = file
      list[#list + 1] = {
        source = source, version = version, number = number, name = name, path = dir .. "/" .. file,
        id = migration_id(source, version, name),
      }
    end
  end
  table.sort(list, function(a, b) return a.number < b.number end)
  return list
end

-- The migrations on disk, built-in ones first, each with its file's text.
local function collect(opts)
  local all, dirs = {}, {}
  if opts.builtin ~= false then dirs[#dirs + 1] = { builtin_dir(), "semstore" } end
  if opts.dir then dirs[#dirs + 1] = { opts.dir, "app" } end
  for _, d in ipairs(dirs) do
    local list, err = scan(d[1], d[2])
    if not list then return nil, err end
    for _, m in ipairs(list) do
      m.text, err = read_file(m.path)
      if not m.text then return nil, err end
      all[#all + 1] = m
    end
  end
  return all
end

-- Runs the file and checks what it returns, before anything is applied:
-- a typo such as `transactions = false` must not go unnoticed.
local function definition(m)
  local chunk, err = load(m.text, "@" .. m.path, "t", compat.env)
  if not chunk then return fail("input", "%s", err) end
  local ok, def = pcall(chunk)
  if not ok then return fail("input", "%s: %s", m.path, tostring(def)) end
  if type(def) ~= "table" or type(def.up) ~= "function" then
    return fail("input", "%s must return a table with an up function", m.path)
  end
  for k, v in pairs(def) do
    if not FIELDS[k] then
      return fail("input", "%s: unknown field %s (a migration has up, down and transaction)", m.path, tostring(k))
    end
    if type(v) ~= FIELDS[k] then return fail("input", "%s: %s must be a %s", m.path, k, FIELDS[k]) end
  end
  m.def = def
  return def
end

-- Matches the files with schema_migrations. Each entry is "applied",
-- "pending", "changed" (its file differs from the one applied), "missing"
-- (applied, but its file is gone) or "unchecked" (applied from a source
-- this run does not read: the built-in schema with builtin = false, or
-- the application's migrations when no dir is given); a pending migration
-- older than an applied one of its source is also marked out_of_order.
local function plan(conn, opts)
  local files, err = collect(opts)
  if not files then return nil, err end
  local read = { semstore = opts.builtin ~= false, app = opts.dir ~= nil }
  local rows
  rows, err = conn:query(string.format([[
    SELECT source, version, name, checksum, applied_at, execution_ms
    FROM %s ORDER BY applied_at, source, version]], opts.table))
  if not rows then return nil, err end
  local applied, newest = {}, {}
  for i, row in ipairs(rows) do
    row.order = i
    applied[row.source .. "/" .. row.version] = row
    local n = math.tointeger(tonumber(row.version))
    if n and (newest[row.source] or -1) < n then newest[row.source] = n end
  end
  local entries, problems = {}, {}
  for _, m in ipairs(files) do
    m.checksum = core.sha256(m.text)
    local row = applied[m.source .. "/" .. m.version]
    if row then
      applied[m.source .. "/" .. m.version] = nil
      m.applied_at, m.execution_ms, m.order = row.applied_at, row.execution_ms, row.order
      m.state = row.checksum == m.checksum and "applied" or "changed"
      if m.state == "changed" then
        problems[#problems + 1] = string.format("%s (%s) was changed after it was applied", m.id, m.path)
      end
    else
      m.state = "pending"
      if m.number < (newest[m.source] or -1) then
        m.out_of_order = true
        problems[#problems + 1] = string.format("%s is older than a migration already applied", m.id)
      end
    end
    entries[#entries + 1] = m
  end
  for _, row in ipairs(rows) do
    if applied[row.source .. "/" .. row.version] then
      local id = migration_id(row.source, row.version, row.name)
      local state = read[row.source] and "missing" or "unchecked"
      entries[#entries + 1] = { source = row.source, version = row.version, name = row.name, id = id,
        state = state, applied_at = row.applied_at, execution_ms = row.execution_ms, order = row.order }
      if state == "missing" then problems[#problems + 1] = string.format("%s was applied but its file is gone", id) end
    end
  end
  return entries, problems
end

-- The connection a migration sees as db.pg: it is the run's connection,
-- and it remembers statements, for --dry-run and for naming the one that
-- failed. on_statement is for showing them, so it sees them with their
-- passwords redacted.
local function recording_conn(conn, on_statement)
  local r, seen = {}, {}
  local function record(sql, res, err)
    if on_statement then on_statement(core.redact(sql)) end
    if not res then seen.failed = { sql = sql, err = err } end
    return res, err
  end
  function r.exec(_, sql) return record(sql, conn:exec(sql)) end
  function r.query(_, sql, ...) return record(sql, conn:query(sql, ...)) end
  function r.transaction(_, fn, o) return conn:transaction(function() return fn(r) end, o) end
  function r.backend_pid() return conn:backend_pid() end
  function r.transaction_status() return conn:transaction_status() end
  -- acquire() and the like would reach past the migration's transaction
  return setmetatable(r, { __index = function(_, name)
    error(string.format("db.pg:%s is not available in a migration: db.pg is the migration's own connection "
      .. "(query, exec, transaction, backend_pid, transaction_status)", tostring(name)), 2)
  end }), seen
end

local function shorten(sql)
  sql = sql:gsub("^%s+", ""):gsub("%s+$", "")
  if #sql > 300 then sql = sql:sub(1, 300) .. " ..." end
  return sql
end

-- The error of a failed migration keeps the server's fields (code,
-- constraint, ...) and names the file, and the statement when a statement
-- failed: the last one that did, when the error is that statement's own or
-- the transaction's "a statement failed" (25P02). No password shows: not in
-- the statement, nor where the server's message (a syntax error's "at or
-- near") or the migration's own error quotes the failed statement.
local function migration_error(m, direction, err, rec)
  local e, statement = {}, nil
  local last = rec.failed
  if last and type(err) == "table" and (err == last.err or err.code == "25P02") then
    err, statement = last.err, last.sql
  end
  if getmetatable(err) == ERROR_MT then
    for k, v in pairs(err) do e[k] = v end
  else
    e.kind, e.message = "callback", tostring(err)
  end
  for _, k in ipairs { "message", "detail", "hint" } do
    if type(e[k]) == "string" then e[k] = core.redact(e[k], last and last.sql) end
  end
  e.migration, e.file, e.statement = m.id, m.path, statement and core.redact(statement)
  e.message = string.format("migration %s (%s) failed in %s: %s%s", m.id, m.path, direction,
    tostring(e.message), e.statement and ("\nstatement: " .. shorten(e.statement)) or "")
  return core.error(e)
end

-- Runs one step of one migration and records it, in one transaction
-- unless the migration says transaction = false.
local function run_one(conn, m, direction, opts)
  local pg, rec = recording_conn(conn, opts.on_statement)
  -- the repositories run on the migration's connection too, inside its
  -- transaction (their statements are not passed to on_statement)
  local db = setmetatable(require("semstore").repositories(conn), { __index = opts.db })
  db.pg = pg
  local started = core.monotime()
  local function body()
    local ok, res, err = pcall(m.def[direction], db)
    if not ok then return nil, res == nil and "the migration raised an error without a message" or res end
    if res == nil and err ~= nil then return nil, err end
    -- a statement failed and the migration went on; outside a transaction
    -- that is the migration's own business, inside one nothing more can run
    if rec.failed and conn:transaction_status() == "failed_transaction" then return nil, rec.failed.err end
    local ms = math.floor((core.monotime() - started) * 1000 + 0.5)
    if direction == "up" then
      res, err = conn:query(string.format([[INSERT INTO %s (source, version, name, checksum, execution_ms)
        VALUES ($1, $2, $3, $4, $5)]], opts.table), m.source, m.version, m.name, m.checksum, ms)
    else
      res, err = conn:query(string.format("DELETE FROM %s WHERE source = $1 AND version = $2", opts.table), m.source, m.version)
    end
    if not res then return nil, err end
    return ms
  end
  local ms, err
  if m.def.transaction == false then
    ms, err = body()
  else
    ms, err = conn:transaction(body)
  end
  if not ms then return nil, migration_error(m, direction, err, rec) end
  return ms
end

local function log(opts, fmt, ...)
  if opts.log then opts.log(string.format(fmt, ...)) end
end

-- schema_migrations lives in the schema first on the search path when a
-- run starts; naming it in full keeps a migration that changes search_path
-- from losing it.
local function table_name(conn)
  local rows, err = conn:query "SELECT current_schema() AS s"
  if not rows then return nil, err end
  if rows[1].s == core.null then return fail("input", "the search path names no schema for schema_migrations") end
  local schema
  schema, err = core.quote_ident(rows[1].s)
  if not schema then return nil, err end
  return schema .. ".schema_migrations"
end

local DRY_RUN = {}

-- Borrows one connection for the run, takes the lock, makes sure the
-- table exists, runs fn(conn, run) and always gives all of it back. A dry
-- run does all of it in one transaction that is rolled back.
local function with_lock(db, opts, fn)
  if type(db) ~= "table" or not db.pg then return fail("input", "migrate needs a db from semstore.connect()") end
  local conn, err = db.pg:acquire()
  if not conn then return nil, err end
  local run = setmetatable({ db = db }, { __index = opts })
  local function body()
    local ok, e = conn:exec(string.format(TABLE_SQL, run.table))
    if not ok then return nil, e end
    return fn(conn, run)
  end
  local res = table.pack(pcall(function()
    -- a migration may run for a long time; the pool's timeouts are for queries
    local ok, e = conn:exec "SET statement_timeout = 0; SET lock_timeout = 0; SET idle_in_transaction_session_timeout = 0"
    if not ok then return nil, e end
    run.table, e = table_name(conn)
    if not run.table then return nil, e end
    local got
    got, e = conn:query("SELECT pg_try_advisory_lock($1) AS ok", LOCK_ID)
    if not got then return nil, e end
    if not got[1].ok then
      local holder = conn:query([[
        SELECT a.pid, a.application_name AS app FROM pg_locks l JOIN pg_stat_activity a USING (pid)
        WHERE l.locktype = 'advisory' AND l.granted AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
          AND l.classid = ($1::int8 >> 32)::oid AND l.objid = ($1::int8 & 4294967295)::oid AND l.objsubid = 1]], LOCK_ID)
      local who = holder and holder[1] and string.format(" (server process %d, %s)", holder[1].pid, holder[1].app) or ""
      log(opts, "waiting for another migration run to finish%s", who)
      got, e = conn:query("SELECT pg_advisory_lock($1)", LOCK_ID)
      if not got then return nil, e end
    end
    if not opts.dry_run then return body() end
    local report, partial
    ok, e = conn:transaction(function()
      local r, e2, p = body()
      report, partial = r, p
      if not r then return nil, e2 end
      return nil, DRY_RUN
    end)
    if e ~= DRY_RUN then return nil, e, partial end
    log(opts, "dry run: rolled back")
    return report
  end))
  -- a `transaction = false` migration may have failed with a transaction open
  local status = conn:transaction_status()
  if status == "in_transaction" or status == "failed_transaction" then
    conn:exec "ROLLBACK"
    status = conn:transaction_status()
  end
  local unlocked = status == "idle" and conn:query("SELECT pg_advisory_unlock($1) AS ok", LOCK_ID)
  if unlocked and unlocked[1].ok then
    conn:exec "RESET ALL"
  elseif status ~= "unknown" then
    -- the lock must not go back to the pool with the connection: ending
    -- the session lets it go, and the pool drops the broken connection
    conn:query "SELECT pg_terminate_backend(pg_backend_pid())"
  end
  conn:release()
  if not res[1] then error(res[2], 0) end
  return table.unpack(res, 2, res.n)
end

local function refuse(problems)
  return fail("migration", "refusing to migrate:\n  %s", table.concat(problems, "\n  "))
end

-- Finds where `up TARGET` stops: a version ("0003"), a whole name
-- ("0003_add_tags"), or a built-in one prefixed with "semstore/".
local function target_index(entries, target)
  local source, rest = "app", tostring(target)
  if rest:match "^semstore/" then source, rest = "semstore", rest:sub(10) end
  local number = math.tointeger(tonumber(rest:match "^(%d+)"))
  for i, m in ipairs(entries) do
    if m.source == source and (rest == m.version .. "_" .. m.name or (rest:match "^%d+$" and m.number == number)) then
      return i
    end
  end
  return fail("input", "no migration %s", tostring(target))
end

-- Runs steps (migrations, each with its direction). In a dry run, which
-- with_lock wraps in a transaction, it stops before a `transaction = false`
-- migration: that one cannot run inside a transaction.
local function execute(conn, steps, direction, opts)
  local report = { [direction == "up" and "applied" or "reverted"] = {}, dry_run = opts.dry_run or false }
  local list = report.applied or report.reverted
  for _, m in ipairs(steps) do
    if opts.dry_run and m.def.transaction == false then
      report.stopped_before = m.id
      log(opts, "%s runs outside a transaction (transaction = false): a dry run stops before it", m.id)
      break
    end
    log(opts, "%s %s", direction == "up" and "applying" or "reverting", m.id)
    local ms, err = run_one(conn, m, direction, opts)
    if not ms then return nil, err, report end
    list[#list + 1] = { id = m.id, ms = ms }
    log(opts, "%s %s (%d ms)", direction == "up" and "applied" or "reverted", m.id, ms)
  end
  return report
end

local function options(opts)
  opts = opts or {}
  if type(opts) ~= "table" then error("migrate options must be a table", 3) end
  return opts
end

-- migrate.up(db, {dir =, target =, dry_run =, builtin =, log =, on_statement =})
-- Applies the pending migrations in order. Returns a report
-- { applied = {{id =, ms =}, ...}, dry_run = } or nil, err (and the report
-- of what was applied before the failure).
function migrate.up(db, opts)
  opts = options(opts)
  return with_lock(db, opts, function(conn, run)
    local entries, problems = plan(conn, run)
    if not entries then return nil, problems end
    if #problems > 0 then return refuse(problems) end
    local last = #entries
    if opts.target ~= nil then
      local err
      last, err = target_index(entries, opts.target)
      if not last then return nil, err end
    end
    local steps = {}
    for i = 1, last do
      local m = entries[i]
      if m.state == "pending" then
        local def, err = definition(m)
        if not def then return nil, err end
        steps[#steps + 1] = m
      end
    end
    if #steps == 0 then log(opts, "nothing to apply") end
    return execute(conn, steps, "up", run)
  end)
end

-- migrate.down(db, {steps = 1 | "all", dir =, dry_run =, ...}): reverts the
-- most recently applied migrations, newest first.
function migrate.down(db, opts)
  opts = options(opts)
  local count = opts.steps or 1
  if count ~= "all" and (math.type(count) ~= "integer" or count < 1) then
    return fail("input", "steps must be a positive integer or \"all\", not %s", tostring(count))
  end
  return with_lock(db, opts, function(conn, run)
    local entries, problems = plan(conn, run)
    if not entries then return nil, problems end
    local applied = {}
    for _, m in ipairs(entries) do
      if m.state ~= "pending" then applied[#applied + 1] = m end
    end
    table.sort(applied, function(a, b) return a.order > b.order end)
    local steps = {}
    for i = 1, count == "all" and #applied or math.min(count, #applied) do
      local m = applied[i]
      if m.state == "missing" then return fail("migration", "cannot revert %s: its file is gone", m.id) end
      if m.state == "unchecked" then
        return fail("migration", "cannot revert %s: its folder is not part of this run (%s)", m.id,
          m.source == "semstore" and "builtin = false" or "no dir given")
      end
      if m.state == "changed" then
        return fail("migration", "cannot revert %s: %s was changed after it was applied", m.id, m.path)
      end
      local def, err = definition(m)
      if not def then return nil, err end
      if not def.down then return fail("migration", "cannot revert %s: it has no down function", m.id) end
      steps[#steps + 1] = m
    end
    if #steps == 0 then log(opts, "nothing to revert") end
    return execute(conn, steps, "down", run)
  end)
end

-- migrate.status(db, {dir =, builtin =}): every migration with its state
-- (applied, pending, changed, missing, unchecked), applied_at and execution_ms, and a
-- list of problems that would make `up` refuse to run.
function migrate.status(db, opts)
  opts = options(opts)
  if type(db) ~= "table" or not db.pg then return fail("input", "migrate needs a db from semstore.connect()") end
  local files, err = collect(opts)
  if not files then return nil, err end
  local conn
  conn, err = db.pg:acquire()
  if not conn then return nil, err end
  local ok, entries, problems = pcall(function()
    local name, e = table_name(conn)
    if not name then return nil, e end
    local exists
    exists, e = conn:query("SELECT to_regclass($1) IS NOT NULL AS yes", name)
    if not exists then return nil, e end
    if exists[1].yes then return plan(conn, setmetatable({ table = name }, { __index = opts })) end
    for _, m in ipairs(files) do m.state = "pending" end
    return files, {}
  end)
  conn:release()
  if not ok then error(entries, 0) end
  return entries, problems
end

-- migrate.new(dir, name): writes a stub migration numbered after the
-- newest one in dir (4 digits, or a UTC timestamp when dir uses those) and
-- returns its path. The folder is created when missing.
function migrate.new(dir, name)
  if type(dir) ~= "string" or dir == "" then return fail("input", "new needs a folder") end
  if type(name) ~= "string" or not name:match "%w" then return fail("input", "new needs a name") end
  local slug = name:lower():gsub("[^%w]+", "_"):gsub("^_+", ""):gsub("_+$", "")
  local attr = lfs.attributes(dir)
  if not attr then
    local ok, err = lfs.mkdir(dir)
    if not ok then return fail("input", "cannot create %s: %s", dir, err) end
  elseif attr.mode ~= "directory" then
    return fail("input", "%s is not a folder", dir)
  end
  local list, err = scan(dir, "app")
  if not list then return nil, err end
  local newest = list[#list]
  local version
  if newest and #newest.version >= 12 then
    version = os.date("!%Y%m%d%H%M%S")
    if tonumber(version) <= newest.number then version = string.format("%d", newest.number + 1) end
  else
    version = string.format("%04d", newest and newest.number + 1 or 1)
  end
  local path = string.format("%s/%s_%s.lua", dir, version, slug)
  if lfs.attributes(path) then return fail("input", "%s already exists", path) end
  local f
  f, err = io.open(path, "wb")
  if not f then return fail("input", "cannot write %s", err) end
  f:write(string.format([[
-- %s: %s
-- db.pg is this migration's own connection; statements bound with
-- db.pg:query(sql, ...) or run as a script with db.pg:exec(sql).
return {
  up = function(db)
    assert(db.pg:exec [=[
      SELECT 1
    ]=])
  end,
  down = function(db)
    assert(db.pg:exec [=[
      SELECT 1
    ]=])
  end,
  -- add `transaction = false` for statements such as CREATE INDEX CONCURRENTLY
}
]], version .. "_" .. slug, name))
  f:close()
  return path
end

return migrate
