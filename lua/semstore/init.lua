-- semstore: one native data layer for PostgreSQL (and, in time, Redis and
-- Qdrant). The pools, statements and decoding live in C (semstore.core);
-- this file holds connect(), transactions and the public names.
local compat = require "semstore.compat"
compat() -- Lua 5.4's library, under LuaJIT too (semstore/compat.lua)
local core = require "semstore.core"
local config = require "semstore.config"
local qdrant = require "semstore.qdrant"
local redis = require "semstore.redis"
local cache = require "semstore.cache"

local semstore = {
  null = core.null,   -- SQL NULL; the same value as cjson.null
  bytea = core.bytea, -- semstore.bytea(s): bind s as bytea
  array = core.array, -- semstore.array{...}: bind a table as a PostgreSQL array
  json_integer = core.json_integer, -- semstore.json_integer("9007199254740993"): a bare JSON number
  json_encode = core.json_encode, -- JSON text as parameters get it: integers exact, floats that read back
  json_decode = core.json_decode, -- a Lua value, integers exact (LuaJIT: digits beyond 2^53)
  error = core.error,
  config = config,
  _VERSION = "semstore dev-1",
}

-- conn:transaction and db.pg:transaction live in C (csrc/lua/conn_handle.c):
-- nesting follows the server's own transaction status.

-- for row in db.pg:rows(sql, ...) do ... end: one row at a time (rows.c)
core.pool_methods.rows = core.rows
core.conn_methods.rows = core.rows

-- db.pg:pipeline(function(p) p:query(sql, ...) ... end) and
-- conn:pipeline(fn): fn queues statements (csrc/lua/pg_pipeline.c), which
-- go out together, after fn returned, in libpq's pipeline mode. Returns the
-- array of results (each as query() returns its rows), or nil, err naming
-- the failing statement (err.statement). If fn raises, nothing is sent, no
-- connection was borrowed, and the error goes on up; p ends either way.
local function pipeline(target, fn)
  if type(fn) ~= "function" then
    return nil, core.error { kind = "input", message = "pipeline() takes a function that queues statements with p:query" }
  end
  local p = core.pg_pipeline()
  local ok, err = pcall(fn, p)
  if not ok then
    p:discard()
    error(err, 0)
  end
  return core.pg_pipeline_run(target, p)
end
core.pool_methods.pipeline = pipeline
core.conn_methods.pipeline = pipeline

-- db.pg:notify(channel, payload): pg_notify, with both values bound.
function core.pool_methods.notify(pool, channel, payload)
  local ok, err = pool:query("SELECT pg_notify($1, $2)", channel, payload or "")
  if not ok then return nil, err end
  return true
end

-- db.pg:cancel(pid): asks the server to cancel what backend `pid` runs (a
-- statement another thread or coroutine waits on); true if it was signalled.
function core.pool_methods.cancel(pool, pid)
  if math.type(pid) ~= "integer" then
    return nil, core.error { kind = "input", message = "cancel() takes a backend pid (an integer)" }
  end
  local rows, err = pool:query("SELECT pg_cancel_backend($1::int4) AS ok", pid)
  if not rows then return nil, err end
  return rows[1].ok
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

-- semstore.embedders.local_hash{ dim = 256 }: the deterministic local embedder
semstore.embedders = require "semstore.embedders"
-- semstore.services.documents(db, opts): indexing, search and the re-index
-- queue over the three stores
semstore.services = require "semstore.services"
-- semstore.progress_bar(label, opts): a progress callback drawing on a terminal
semstore.progress_bar = require("semstore.progress").progress_bar
-- semstore.chunk_text(text, size, overlap): chunks of at most `size`
-- characters, cut on character boundaries, preferably after whitespace
semstore.chunk_text = core.chunk_text

semstore.hashtext = core.hashtext
semstore.partition_key = core.partition_key
semstore.quote_ident = core.quote_ident     -- a name for SQL text, quoted by libpq
semstore.quote_literal = core.quote_literal -- a string literal for SQL text, quoted by libpq

local DB = {}
DB.__index = DB

function DB:__tostring()
  return string.format("semstore.db(%s, %s, %s, %s)", self.name, self.target, self.redis_target, tostring(self.qdrant))
end

-- Lets go of this handle's pools, and closes its Qdrant client; the pools
-- close once nothing else refers to them.
function DB:close()
  self.pg:close()
  self.redis:close()
  if self.qdrant ~= qdrant.unconfigured then self.qdrant:close() end
end

-- An error with its text passed through redact once more: the report is
-- for printing, and a store's message may quote what it was given (the
-- sources redact already; this keeps a new message from leaking).
local function printable(err)
  if type(err) ~= "table" then return config.redact(tostring(err)) end
  local e = {}
  for k, v in pairs(err) do e[k] = type(v) == "string" and config.redact(v) or v end
  return core.error(e)
end

-- Times one check: { ok, status, ms, info, target } or { ok = false,
-- status, error, ms, target }. A check that raises (a server answering in
-- a shape nobody expects) is unhealthy too.
local function check(target, fn)
  local started = core.monotime()
  local ran, info, err = pcall(fn)
  if not ran then info, err = nil, info end
  local ms = (core.monotime() - started) * 1000
  if info == nil then return { ok = false, status = "unhealthy", error = printable(err), ms = ms, target = target } end
  return { ok = true, status = "healthy", ms = ms, info = info, target = target }
end

local HEALTH_STORES = { "postgres", "redis", "qdrant" }
local IS_HEALTH_STORE = {}
for _, store in ipairs(HEALTH_STORES) do IS_HEALTH_STORE[store] = true end

-- db:health(stores, { timeout = 5 }) -> { ok =, postgres = {...}, redis = {...}, qdrant = {...} }:
-- one round trip to each store (Qdrant only when it is configured); each
-- entry has ok, status ("healthy" or "unhealthy"), ms, target (printable:
-- no password) and info or error. `stores`, a list of names, checks only
-- those (`semstore wait` asks one at a time). Each check is one attempt:
-- PostgreSQL's waits at most `timeout` seconds for a free connection and
-- for its query (then cancelled, and given up 5 s later if the server does
-- not even answer that; opening a connection is the pool's connect_timeout),
-- Qdrant's at most `timeout` seconds, no retries, Redis's its client's
-- command_timeout: a stalled server is unhealthy, not a hang.
function DB:health(stores, opts)
  -- a list of names: a string, a set ({ redis = true }) or an empty list
  -- would check nothing and say ok
  if stores ~= nil and (type(stores) ~= "table" or #stores == 0 or next(stores, #stores) ~= nil) then
    error("health takes a non-empty list of store names ({ \"redis\" })", 2)
  end
  local ok, err = core.check_keys(opts or {}, { "timeout" }, "health's options")
  if not ok then error(err.message, 2) end
  local timeout = opts and opts.timeout or 5
  if type(timeout) ~= "number" or not (timeout > 0 and timeout < math.huge) then
    error("health's timeout must be a positive number of seconds", 2)
  end
  -- a day at most: what the clients' limits take
  timeout = math.min(timeout, 86400)
  local wanted = {}
  for _, store in ipairs(stores or HEALTH_STORES) do
    if not IS_HEALTH_STORE[store] then
      error("health: no store named " .. tostring(store) .. " (postgres, redis or qdrant)", 2)
    end
    wanted[store] = true
  end
  local report = { ok = true }
  if wanted.postgres then
    report.postgres = check(self.target, function()
      -- a busy pool is not waited on longer than the check's own time
      local conn, cerr = self.pg:acquire { timeout = timeout }
      if not conn then return nil, cerr end
      return compat.closing(conn, function()
        conn:settimeout(timeout)
        local rows, qerr = conn:query "SELECT current_setting('server_version') AS version, current_database() AS db"
        if not rows then return nil, qerr end
        return string.format("PostgreSQL %s, database %s", rows[1].version, rows[1].db)
      end)
    end)
  end
  if wanted.redis then report.redis = check(self.redis_target, function() return self.redis:call "PING" end) end
  if wanted.qdrant and self.qdrant ~= qdrant.unconfigured then
    report.qdrant = check(self.qdrant:url(), function()
      local names, qerr = self.qdrant:list_collections { max_retries = 0, timeout = timeout, connect_timeout = timeout }
      if not names then return nil, qerr end
      return string.format("%d collections", #names)
    end)
  end
  for _, store in ipairs(HEALTH_STORES) do
    if report[store] and not report[store].ok then report.ok = false end
  end
  return report
end

-- What connect knows; anything else is refused, so a typo never falls back
-- to DATABASE_URL or a default in silence.
local CONNECT_OPTIONS = { "name", "postgres", "pool", "null", "qdrant", "redis", "cache" }

-- semstore.connect{ name =, postgres = URL | conninfo | table, pool = {...},
-- qdrant = URL | table, redis = URL | table }
-- Missing settings come from the environment (DATABASE_URL, POSTGRES_*,
-- DB_POOL_*, DB_QUERY_TIMEOUT, QDRANT_URL, QDRANT_HOST, QDRANT_API_KEY,
-- REDIS_URL). No server is contacted until it is used. Pools are process-wide and keyed by name:
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
  local qdrant_opts
  qdrant_opts, err = config.qdrant(opts.qdrant)
  if qdrant_opts == nil then return nil, err end
  local redis_opts
  redis_opts, err = config.redis(opts.redis)
  if not redis_opts then return nil, err end
  local name = opts.name or "default"
  pool_opts.name, pool_opts.conninfo, pool_opts.null = name, conninfo, opts.null
  local pg
  pg, err = core.pool_open(pool_opts)
  if not pg then return nil, err end
  local db = semstore.repositories(pg)
  db.name, db.pg, db.target = name, pg, conninfo ~= "" and config.redact(conninfo) or "libpq defaults"
  redis_opts.name, redis_opts.null = name, opts.null
  local redis_handle
  redis_handle, err = core.redis_open(redis_opts)
  if not redis_handle then
    pg:close()
    return nil, err
  end
  -- printed from what the parser read, so nothing of the password shows
  -- however the URL spelt it
  db.redis, db.redis_target = redis.new(redis_handle), redis_handle:target()
  db.cache, err = cache.new(db.redis, opts.cache)
  if not db.cache then
    pg:close()
    redis_handle:close()
    return nil, err
  end
  db.qdrant = qdrant.unconfigured
  if qdrant_opts then
    local handle
    handle, err = core.qdrant_open(qdrant_opts)
    if not handle then
      pg:close()
      redis_handle:close()
      return nil, err
    end
    db.qdrant = qdrant.new(handle)
  end
  return setmetatable(db, DB)
end

return semstore
