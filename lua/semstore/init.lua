-- semstore: one native data layer for PostgreSQL (and, in time, Redis and
-- Qdrant). The pools, statements and decoding live in C (semstore.core);
-- this file holds connect(), transactions and the public names.
local core = require "semstore.core"
local config = require "semstore.config"

local semstore = {
  null = core.null,   -- SQL NULL; the same value as cjson.null
  bytea = core.bytea, -- semstore.bytea(s): bind s as bytea
  array = core.array, -- semstore.array{...}: bind a table as a PostgreSQL array
  error = core.error,
  config = config,
  _VERSION = "semstore dev-1",
}

local ISOLATION = { ["read committed"] = true, ["repeatable read"] = true, serializable = true }

-- Transaction depth per connection: 0 means none open, deeper levels are savepoints.
local depth = setmetatable({}, { __mode = "k" })

local function callback_error(e)
  if type(e) == "table" and getmetatable(e) == getmetatable(core.error {}) then return e end
  return core.error { kind = "callback", message = tostring(e) }
end

local function begin_sql(level, opts)
  if level > 0 then return "SAVEPOINT semstore_sp_" .. level end
  local sql = "BEGIN"
  if opts and opts.isolation then
    local iso = tostring(opts.isolation):lower():gsub("_", " ")
    if not ISOLATION[iso] then return nil, core.error { kind = "input", message = "unknown isolation level: " .. tostring(opts.isolation) } end
    sql = sql .. " ISOLATION LEVEL " .. iso:upper()
  end
  if opts and opts.read_only then sql = sql .. " READ ONLY" end
  return sql
end

-- Runs fn(conn) inside BEGIN/COMMIT, or inside a savepoint when a
-- transaction is already open on conn. fn may raise or return nil, err:
-- either way everything it did is rolled back and nil, err returned.
-- Otherwise its results come back (true when it returned nothing).
local function transaction(conn, fn, opts)
  assert(type(fn) == "function", "transaction() needs a function")
  local level = depth[conn] or 0
  local sql, err = begin_sql(level, opts)
  if not sql then return nil, err end
  local ok
  ok, err = conn:exec(sql)
  if not ok then return nil, err end
  depth[conn] = level + 1
  local res = table.pack(pcall(fn, conn))
  depth[conn] = level
  local failed = not res[1] and callback_error(res[2]) or (res[2] == nil and res[3] ~= nil and res[3]) or nil
  if not failed and conn:transaction_status() == "failed_transaction" then
    failed = core.error { kind = "postgres", code = "25P02",
      message = "a statement failed inside the transaction, which was rolled back" }
  end
  local sp = "semstore_sp_" .. level
  if failed then
    conn:exec(level == 0 and "ROLLBACK" or ("ROLLBACK TO SAVEPOINT " .. sp .. "; RELEASE SAVEPOINT " .. sp))
    return nil, failed
  end
  ok, err = conn:exec(level == 0 and "COMMIT" or ("RELEASE SAVEPOINT " .. sp))
  if not ok then
    if level == 0 then conn:exec "ROLLBACK" end
    return nil, err
  end
  if res.n < 2 or res[2] == nil then return true end
  return table.unpack(res, 2, res.n)
end

core.conn_methods.transaction = transaction

-- pool:transaction(fn, opts): borrows one connection for the whole transaction.
function core.pool_methods.transaction(pool, fn, opts)
  local conn, err = pool:acquire()
  if not conn then return nil, err end
  local res = table.pack(pcall(transaction, conn, fn, opts))
  conn:release()
  if not res[1] then error(res[2], 0) end
  return table.unpack(res, 2, res.n)
end

-- The repositories (db.users, db.collections, db.documents, db.chunks,
-- db.operations): their methods are C functions from core.repositories, and
-- each repository runs on `pg`, the pool, or a connection for one inside a
-- transaction (semstore.repositories(conn)).
local REPOSITORY_NAMES = { "users", "collections", "documents", "chunks", "operations" }
local repository_mt = {}
for _, name in ipairs(REPOSITORY_NAMES) do
  repository_mt[name] = {
    __index = core.repositories[name],
    __tostring = function(self) return "semstore." .. name .. "(" .. tostring(self.pg) .. ")" end,
  }
end

-- The repositories over `pg`, a pool handle or a borrowed connection.
function semstore.repositories(pg)
  local repos = {}
  for _, name in ipairs(REPOSITORY_NAMES) do repos[name] = setmetatable({ pg = pg }, repository_mt[name]) end
  return repos
end

semstore.hashtext = core.hashtext
semstore.partition_key = core.partition_key
semstore.quote_ident = core.quote_ident     -- a name for SQL text, quoted by libpq
semstore.quote_literal = core.quote_literal -- a string literal for SQL text, quoted by libpq

local DB = {}
DB.__index = DB

function DB:__tostring()
  return string.format("semstore.db(%s, %s)", self.name, self.target)
end

-- Lets go of this handle's pools; they close once nothing else refers to them.
function DB:close()
  self.pg:close()
end

-- What connect knows; anything else is refused, so a typo never falls back
-- to DATABASE_URL or a default in silence.
local CONNECT_OPTIONS = { "name", "postgres", "pool", "null" }

-- semstore.connect{ name =, postgres = URL | conninfo | table, pool = {...} }
-- Missing settings come from the environment (DATABASE_URL, POSTGRES_*,
-- DB_POOL_*, DB_QUERY_TIMEOUT). Pools are process-wide and keyed by name:
-- a second connect with the same name shares the first one's pool.
function semstore.connect(opts)
  opts = opts or {}
  if type(opts) ~= "table" then return nil, core.error { kind = "input", message = "connect() takes a table of options" } end
  local ok, err = core.check_keys(opts, CONNECT_OPTIONS, "connect's options")
  if not ok then return nil, err end
  local conninfo
  if opts.postgres ~= nil then
    conninfo, err = config.conninfo(opts.postgres)
  else
    conninfo, err = config.postgres_from_env()
  end
  if not conninfo then return nil, err end
  local pool_opts
  pool_opts, err = config.pool_from_env(opts.pool)
  if not pool_opts then return nil, err end
  local name = opts.name or "default"
  pool_opts.name, pool_opts.conninfo, pool_opts.null = name, conninfo, opts.null
  local pg
  pg, err = core.pool_open(pool_opts)
  if not pg then return nil, err end
  local db = semstore.repositories(pg)
  db.name, db.pg, db.target = name, pg, conninfo ~= "" and config.redact(conninfo) or "libpq defaults"
  return setmetatable(db, DB)
end

return semstore
