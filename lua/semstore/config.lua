-- Connection settings from options and the environment, and the redaction
-- of passwords for anything that gets printed.
local compat = require "semstore.compat"
compat() -- Lua 5.4's library, under LuaJIT too (semstore/compat.lua)
local core = require "semstore.core"

local config = {}

-- Values read from a .env file. They only fill in what the real environment
-- lacks: a variable that is set, even to "", always wins (as with
-- docker-compose and python-dotenv). Lua cannot set environment variables,
-- so libpq's own PG* variables are only ever read from the real environment.
local file_env = {}

function config.getenv(name)
  local v = os.getenv(name)
  if v ~= nil then return v end
  return file_env[name]
end

local function input_error(fmt, ...)
  return nil, core.error { kind = "input", message = string.format(fmt, ...) }
end

-- key=value conninfo quoting: single quotes, with \ and ' escaped
local function quote(v)
  v = tostring(v)
  if v ~= "" and not v:find "[%s'\\]" then return v end
  return "'" .. v:gsub("\\", "\\\\"):gsub("'", "\\'") .. "'"
end

-- Every keyword this libpq knows, in its order, and what a table may name:
-- those and `database`, the other name of dbname.
local CONNINFO_KEYS = core.conninfo_keywords()
local TABLE_KEYS = { "database", table.unpack(CONNINFO_KEYS) }

-- A URL (postgres:// or postgresql://, also SQLAlchemy's postgresql+driver://),
-- a key=value string, or a table of libpq keywords (database = dbname). A
-- key libpq does not know is an input error naming it, not dropped.
function config.conninfo(spec)
  if spec == nil then return "" end
  if type(spec) == "string" then
    return (spec:gsub("^postgresql%+[%w_]+://", "postgresql://"))
  end
  if type(spec) ~= "table" then return input_error("postgres must be a URL, a conninfo string or a table") end
  local ok, err = core.check_keys(spec, TABLE_KEYS, "libpq's connection keywords")
  if not ok then return nil, err end
  if spec.dbname ~= nil and spec.database ~= nil then
    return input_error("postgres names both dbname and database, which are the same keyword")
  end
  local parts = {}
  for _, key in ipairs(CONNINFO_KEYS) do
    local v = spec[key]
    if key == "dbname" and v == nil then v = spec.database end
    if v ~= nil then parts[#parts + 1] = key .. "=" .. quote(v) end
  end
  return table.concat(parts, " ")
end

local function env_number(getenv, name, default)
  local raw = getenv(name)
  if raw == nil or raw == "" then return default end
  local n = tonumber(raw)
  if not n or n < 0 then return input_error("%s must be a non-negative number, not %q", name, raw) end
  return n
end

local TRUTH = { ["1"] = true, ["true"] = true, yes = true, on = true,
  ["0"] = false, ["false"] = false, no = false, off = false }

local function env_bool(getenv, name, default)
  local raw = getenv(name)
  if raw == nil or raw == "" then return default end
  local v = TRUTH[raw:lower()]
  if v == nil then return input_error("%s must be true or false, not %q", name, raw) end
  return v
end

-- The seed's variables: DATABASE_URL, or POSTGRES_HOST/PORT/USER/PASSWORD/DB;
-- otherwise "" leaves it to libpq (PG* variables, service files).
function config.postgres_from_env(getenv)
  getenv = getenv or config.getenv
  local url = getenv "DATABASE_URL"
  if url and url ~= "" then return config.conninfo(url) end
  local t, any = {}, false
  for key, var in pairs { host = "POSTGRES_HOST", port = "POSTGRES_PORT", user = "POSTGRES_USER",
    password = "POSTGRES_PASSWORD", dbname = "POSTGRES_DB" } do
    local v = getenv(var)
    if v and v ~= "" then t[key], any = v, true end
  end
  return any and config.conninfo(t) or ""
end

-- What opts.pool may hold: core.pool_open's settings, the name and the
-- conninfo aside (connect gives those).
local POOL_OPTIONS = { "size", "max_overflow", "timeout", "recycle", "statement_timeout", "pre_ping",
  "idle_timeout", "ping_after_idle", "connect_timeout", "lock_timeout", "idle_in_transaction_timeout",
  "statement_cache_size", "application_name", "reset", "recover_grace" }

-- Pool settings: explicit options win over DB_POOL_* variables, which win
-- over the defaults (core.defaults, defined once in the C core: 5 + 10
-- overflow, 30 s wait, 3600 s lifetime, pre-ping). An option it does not
-- know is an input error: a typo must not fall back to a default in silence.
function config.pool_from_env(opts, getenv)
  getenv = getenv or config.getenv
  opts = opts or {}
  if type(opts) ~= "table" then return input_error("the pool options must be a table, not a %s", type(opts)) end
  local ok, err = core.check_keys(opts, POOL_OPTIONS, "the pool options")
  if not ok then return nil, err end
  local out = {}
  local numbers = {
    { "size", "DB_POOL_SIZE" }, { "max_overflow", "DB_MAX_OVERFLOW" },
    { "timeout", "DB_POOL_TIMEOUT" }, { "recycle", "DB_POOL_RECYCLE" },
    { "statement_timeout", "DB_QUERY_TIMEOUT" },
  }
  for _, n in ipairs(numbers) do
    if opts[n[1]] ~= nil then
      out[n[1]] = opts[n[1]]
    else
      out[n[1]], err = env_number(getenv, n[2], core.defaults[n[1]])
      if err then return nil, err end
    end
  end
  -- seconds, or off (false): whether and after how long the pool's first
  -- connection settles what dead parallel bulks left prepared
  if opts.recover_grace ~= nil then
    out.recover_grace = opts.recover_grace
  elseif getenv "DB_POOL_RECOVER_GRACE" == "off" then
    out.recover_grace = false
  else
    out.recover_grace, err = env_number(getenv, "DB_POOL_RECOVER_GRACE", core.defaults.recover_grace)
    if err then return nil, err end
  end
  if opts.pre_ping ~= nil then
    out.pre_ping = opts.pre_ping
  else
    out.pre_ping, err = env_bool(getenv, "DB_POOL_PRE_PING", core.defaults.pre_ping)
    if err then return nil, err end
  end
  for _, key in ipairs(POOL_OPTIONS) do
    if out[key] == nil then out[key] = opts[key] end
  end
  return out
end

-- What opts.qdrant may hold, when it is a table.
local QDRANT_OPTIONS = { "url", "host", "port", "https", "api_key", "timeout", "connect_timeout", "max_retries",
  "retry_timeout" }

local function nonempty(v)
  if v ~= nil and v ~= "" then return v end
end

-- The Qdrant client's settings (for core.qdrant_open), or false when no
-- Qdrant is configured. spec: a URL, a table of QDRANT_OPTIONS, or nil for
-- the environment: QDRANT_URL, or QDRANT_HOST and QDRANT_PORT (6333), and
-- QDRANT_API_KEY. With an API key and no URL, https is used, as the seed
-- does (a key sent in the clear is a key given away).
function config.qdrant(spec, getenv)
  getenv = getenv or config.getenv
  if type(spec) == "string" then spec = { url = spec } end
  if spec ~= nil and type(spec) ~= "table" then
    return input_error("qdrant must be a URL or a table, not a %s", type(spec))
  end
  local given = spec ~= nil
  spec = spec or {}
  local ok, err = core.check_keys(spec, QDRANT_OPTIONS, "the qdrant options")
  if not ok then return nil, err end
  local out = {}
  for _, k in ipairs(QDRANT_OPTIONS) do out[k] = spec[k] end
  for _, k in ipairs { "url", "host", "api_key" } do
    if out[k] ~= nil and type(out[k]) ~= "string" then return input_error("the qdrant option %s must be a string", k) end
  end
  out.api_key = out.api_key or nonempty(getenv "QDRANT_API_KEY")
  if out.url == nil and out.host == nil then
    out.url = nonempty(getenv "QDRANT_URL")
    if out.url == nil then
      out.host, out.port = nonempty(getenv "QDRANT_HOST"), out.port or nonempty(getenv "QDRANT_PORT")
      if out.host == nil and not given then return false end
    end
  end
  if out.url == nil then
    local port = tonumber(out.port or 6333)
    if math.type(port) ~= "integer" or port < 1 or port > 65535 then
      return input_error("the Qdrant port must be from 1 to 65535, not %s", tostring(out.port))
    end
    local https = out.https
    if https == nil then https = out.api_key ~= nil end
    out.url = string.format("%s://%s:%d", https and "https" or "http", out.host or "localhost", port)
  elseif out.host ~= nil or out.port ~= nil then
    return input_error("the qdrant options give both url and host/port")
  end
  out.host, out.port, out.https = nil, nil, nil
  return out
end

-- What opts.redis may hold, when it is a table.
local REDIS_OPTIONS = { "url", "host", "port", "db", "user", "password", "path", "connect_timeout",
  "command_timeout", "size", "max_overflow", "timeout", "recycle", "idle_timeout", "pre_ping", "ping_after_idle" }

-- v with every byte the Lua pattern `unsafe` matches percent-encoded
-- (default: all but RFC 3986's unreserved characters), for URL parts.
function config.percent_encode(v, unsafe)
  return (tostring(v):gsub(unsafe or "[^%w%-%._~]", function(c) return string.format("%%%02X", c:byte()) end))
end
local percent = config.percent_encode

-- The Redis pool's settings (for core.redis_open). spec: a URL
-- (redis://[user:password@]host:port/db or unix:///path.sock?db=N), a
-- table of REDIS_OPTIONS (host, port, db, user, password or path make the
-- URL when url is not given), or nil for REDIS_URL, else
-- redis://127.0.0.1:6379/0.
function config.redis(spec, getenv)
  getenv = getenv or config.getenv
  if type(spec) == "string" then spec = { url = spec } end
  if spec ~= nil and type(spec) ~= "table" then
    return input_error("redis must be a URL or a table, not a %s", type(spec))
  end
  spec = spec or {}
  local ok, err = core.check_keys(spec, REDIS_OPTIONS, "the redis options")
  if not ok then return nil, err end
  local out = {}
  for _, k in ipairs(REDIS_OPTIONS) do out[k] = spec[k] end
  local parts = out.host or out.port or out.db or out.user or out.password or out.path
  if out.url and parts then return input_error("the redis options give both url and its parts") end
  if not out.url and parts then
    for _, k in ipairs { "host", "user", "password", "path" } do
      if out[k] ~= nil and type(out[k]) ~= "string" then return input_error("the redis option %s must be a string", k) end
    end
    local auth = ""
    if out.password then auth = (out.user and percent(out.user) or "") .. ":" .. percent(out.password) .. "@" end
    if out.path then
      local q = {}
      if out.db then q[#q + 1] = "db=" .. tostring(out.db) end
      if out.user then q[#q + 1] = "user=" .. percent(out.user) end
      if out.password then q[#q + 1] = "password=" .. percent(out.password) end
      -- the parser percent-decodes the path: what would end it is escaped
      local path = percent(out.path, "[%%?&#]")
      out.url = "unix://" .. path .. (#q > 0 and "?" .. table.concat(q, "&") or "")
    else
      out.url = string.format("redis://%s%s:%s/%s", auth, out.host or "127.0.0.1", tostring(out.port or 6379),
        tostring(out.db or 0))
    end
  end
  out.url = out.url or nonempty(getenv "REDIS_URL") or "redis://127.0.0.1:6379/0"
  if type(out.url) ~= "string" then return input_error("the redis url must be a string") end
  for _, k in ipairs { "host", "port", "db", "user", "password", "path" } do out[k] = nil end
  return out
end

local ESCAPES = { n = "\n", r = "\r", t = "\t", ['"'] = '"', ["\\"] = "\\", ["$"] = "$" }

-- One line of a .env file: KEY=VALUE, optionally after `export `; VALUE
-- is bare (trimmed, a " #" starts a comment), 'literal' or "with \n escapes".
local function parse_env_line(line)
  local key, rest = line:match "^%s*export%s+([%a_][%w_]*)%s*=(.-)%s*$"
  if not key then key, rest = line:match "^%s*([%a_][%w_]*)%s*=(.-)%s*$" end
  if not key then return nil end
  -- `KEY= # note` is empty; `KEY=#x` is "#x"
  if rest:match "^%s+#" then return key, "" end
  rest = rest:gsub("^%s+", "")
  local q = rest:sub(1, 1)
  if q == "'" then
    local v, tail = rest:match "^'([^']*)'(.*)$"
    if v and (tail == "" or tail:match "^%s+#") then return key, v end
    return nil
  elseif q == '"' then
    local out, i = {}, 2
    while i <= #rest do
      local c = rest:sub(i, i)
      if c == "\\" then
        local e = ESCAPES[rest:sub(i + 1, i + 1)]
        if not e then return nil end
        out[#out + 1], i = e, i + 2
      elseif c == '"' then
        local tail = rest:sub(i + 1)
        if tail == "" or tail:match "^%s+#" then return key, table.concat(out) end
        return nil
      else
        out[#out + 1], i = c, i + 1
      end
    end
    return nil
  end
  return key, (rest:gsub("%s+#.*$", ""))
end

-- Parses the text of a .env file into a table; a line it cannot read is an
-- error naming the line, so a typo never silently drops a setting.
function config.parse_env(text, source)
  local values, n = {}, 0
  for line in (text .. "\n"):gmatch "([^\n]*)\n" do
    n = n + 1
    line = line:gsub("\r$", "")
    if not line:match "^%s*$" and not line:match "^%s*#" then
      local key, value = parse_env_line(line)
      if not key then return input_error("%s:%d: expected KEY=VALUE", source or ".env", n) end
      values[key] = value
    end
  end
  return values
end

-- Reads a .env file (default ./.env) for config.getenv. Returns true, or
-- false when there is no such file, or nil, err when it cannot be read.
function config.load_env_file(path)
  path = path or ".env"
  local f, msg, errno = io.open(path, "rb")
  if not f then
    if errno == 2 then return false end -- ENOENT
    return input_error("cannot read %s", msg)
  end
  local text
  text, msg = f:read "a"
  f:close()
  if not text then return input_error("cannot read %s: %s", path, tostring(msg)) end
  local values, err = config.parse_env(text, path)
  if not values then return nil, err end
  file_env = values
  return true
end

config.redact = core.redact

return config
