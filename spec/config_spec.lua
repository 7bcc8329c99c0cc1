-- Settings from options and the environment; redaction of passwords.
require "semstore.compat" () -- Lua 5.4's library under LuaJIT too
local semstore = require "semstore"
local config = semstore.config

local function env(t) return function(name) return t[name] end end

describe("config", function()
  it("takes DATABASE_URL first, SQLAlchemy driver suffixes included", function()
    assert.are.equal("postgresql://u:p@h:5/d", config.postgres_from_env(env {
      DATABASE_URL = "postgresql+asyncpg://u:p@h:5/d", POSTGRES_HOST = "ignored" }))
  end)

  it("builds a conninfo from POSTGRES_* with quoting", function()
    local c = config.postgres_from_env(env { POSTGRES_HOST = "db", POSTGRES_PORT = "5433",
      POSTGRES_USER = "dev", POSTGRES_PASSWORD = "it's a secret", POSTGRES_DB = "app" })
    for _, part in ipairs { "host=db", "port=5433", "user=dev", "dbname=app", [[password='it\'s a secret']] } do
      assert.truthy(c:find(part, 1, true), part)
    end
  end)

  it("leaves everything to libpq when nothing is set", function()
    assert.are.equal("", config.postgres_from_env(env {}))
  end)

  it("reads pool settings, options winning over the environment", function()
    local p = assert(config.pool_from_env({ size = 7 }, env { DB_POOL_SIZE = "2", DB_MAX_OVERFLOW = "4",
      DB_POOL_TIMEOUT = "1.5", DB_POOL_RECYCLE = "60", DB_POOL_PRE_PING = "false", DB_QUERY_TIMEOUT = "9" }))
    assert.are.same({ size = 7, max_overflow = 4, timeout = 1.5, recycle = 60, pre_ping = false, statement_timeout = 9 },
      { size = p.size, max_overflow = p.max_overflow, timeout = p.timeout, recycle = p.recycle,
        pre_ping = p.pre_ping, statement_timeout = p.statement_timeout })
    local d = assert(config.pool_from_env(nil, env {}))
    assert.are.same({ 5, 10, 30, 3600, true, 30 }, { d.size, d.max_overflow, d.timeout, d.recycle, d.pre_ping, d.statement_timeout })
  end)

  it("takes its defaults from the core's one definition of them (core.defaults)", function()
    local defaults = require("semstore.core").defaults
    local d = assert(config.pool_from_env(nil, env {}))
    for _, key in ipairs { "size", "max_overflow", "timeout", "recycle", "statement_timeout", "pre_ping" } do
      assert.are.equal(defaults[key], d[key], key)
    end
    assert.are.same({ 600, 1, 10, 10, 60, 256, "semstore" }, { defaults.idle_timeout, defaults.ping_after_idle,
      defaults.connect_timeout, defaults.lock_timeout, defaults.idle_in_transaction_timeout,
      defaults.statement_cache_size, defaults.application_name })
    -- the Qdrant and Redis clients' own, which the worker's --timeout never loosens
    assert.are.same({ 30, 5, 6, 120, 5, 30 }, { defaults.qdrant.timeout, defaults.qdrant.connect_timeout,
      defaults.qdrant.max_retries, defaults.qdrant.retry_timeout, defaults.redis.connect_timeout,
      defaults.redis.command_timeout })
  end)

  it("rejects malformed variables with an input error naming them", function()
    local p, err = config.pool_from_env(nil, env { DB_POOL_SIZE = "five" })
    assert.is_nil(p)
    assert.are.equal("input", err.kind)
    assert.truthy(err.message:find "DB_POOL_SIZE")
    p, err = config.pool_from_env(nil, env { DB_POOL_PRE_PING = "maybe" })
    assert.is_nil(p)
    assert.truthy(err.message:find "DB_POOL_PRE_PING")
  end)

  it("rejects bad pool options at connect", function()
    local db, err = semstore.connect { name = "bad-size", postgres = "", pool = { size = 0 } }
    assert.is_nil(db)
    assert.are.equal("input", err.kind)
    db, err = semstore.connect { name = "bad-type", postgres = "", pool = { timeout = "soon" } }
    assert.is_nil(db)
    assert.are.equal("input", err.kind)
    db, err = semstore.connect "postgresql://x"
    assert.is_nil(db)
    assert.are.equal("input", err.kind)
  end)

  it("refuses connect and pool options it does not know, naming them", function()
    local url = require("support.helpers").url
    local cases = {
      { { name = "typo-top", postgress = url }, "'postgress'" },
      { { name = "typo-pool", postgres = url, pool = { size = 1, sise = 3 } }, "'sise'" },
      { { name = "typo-pool-env", postgres = url, pool = { DB_POOL_SIZE = 3 } }, "'DB_POOL_SIZE'" },
      { { url }, "not a string" },
      { { name = "key-pool", postgres = url, pool = { 5 } }, "not a string" },
      { { name = "key-bool", postgres = url, [true] = 1 }, "not a string" },
      { { name = "pool-type", postgres = url, pool = 5 }, "pool" },
    }
    for _, c in ipairs(cases) do
      local db, err = semstore.connect(c[1])
      if db then db:close() end
      assert.is_nil(db, c[2])
      assert.are.equal("input", err.kind, c[2])
      assert.truthy(err.message:find(c[2], 1, true), err.message)
    end
    local p, err = config.pool_from_env({ idle_timout = 5 }, env {})
    assert.is_nil(p)
    assert.are.equal("input", err.kind)
    assert.are.equal("idle_timout", err.column)
    assert.truthy(err.message:find("'idle_timout'", 1, true), err.message)
  end)

  it("accepts every documented connect and pool option", function()
    local db = assert(semstore.connect { name = "every-option-" .. os.time(), postgres = require("support.helpers").url,
      null = "nil",
      pool = { size = 1, max_overflow = 1, timeout = 5, recycle = 60, idle_timeout = 60, pre_ping = true,
        ping_after_idle = 1, statement_timeout = 5, lock_timeout = 5, idle_in_transaction_timeout = 5,
        application_name = "every-option", connect_timeout = 5, statement_cache_size = 8 } })
    assert.are.equal(1, db.pg:query("SELECT 1 AS n")[1].n)
    db:close()
  end)

  it("passes every libpq keyword of a postgres table, and refuses any other by name", function()
    local keywords = require("semstore.core").conninfo_keywords()
    local set = {}
    for _, k in ipairs(keywords) do
      assert.are.equal("string", type(k))
      assert.is_nil(set[k], "listed twice: " .. k)
      set[k] = true
    end
    for _, k in ipairs { "host", "hostaddr", "port", "user", "password", "dbname", "sslmode", "channel_binding",
      "ssl_min_protocol_version", "sslcrl", "sslcrldir", "sslsni", "keepalives", "tcp_user_timeout", "gssencmode",
      "target_session_attrs", "application_name", "options", "service", "passfile", "requirepeer" } do
      assert.is_true(set[k], k)
    end
    local c = assert(config.conninfo { host = "h", port = 5432, user = "u", password = "p w", database = "d",
      channel_binding = "prefer", ssl_min_protocol_version = "TLSv1.2", sslcrl = "/nonexistent", keepalives_idle = 30,
      application_name = "it's mine" })
    for _, part in ipairs { "host=h", "port=5432", "user=u", "password='p w'", "dbname=d", "channel_binding=prefer",
      "ssl_min_protocol_version=TLSv1.2", "sslcrl=/nonexistent", "keepalives_idle=30", [[application_name='it\'s mine']] } do
      assert.truthy(c:find(part, 1, true), part .. " in " .. c)
    end
    local _, err = config.conninfo { host = "h", hots = "x" }
    assert.are.equal("input", err.kind)
    assert.truthy(err.message:find("'hots'", 1, true), err.message)
    assert.are.equal("hots", err.column)
    _, err = config.conninfo { dbname = "a", database = "b" }
    assert.are.equal("input", err.kind)
    assert.truthy(err.message:find("database", 1, true), err.message)
    local db
    db, err = semstore.connect { name = "typo-keyword", postgres = { host = "127.0.0.1", hots = "x" } }
    assert.is_nil(db)
    assert.truthy(err.message:find("'hots'", 1, true), err.message)
  end)

  it("connects with libpq keywords beyond the common ones", function()
    local user, password, host, port, dbname =
      require("support.helpers").url:match "^postgresql://([^:]+):([^@]+)@([^:]+):(%d+)/([^?]+)$"
    assert(dbname, "the test URL has every part")
    local db = assert(semstore.connect { name = "keywords-" .. os.time(), postgres = { host = host, port = port,
      user = user, password = password, database = dbname, channel_binding = "disable", sslmode = "disable",
      ssl_min_protocol_version = "TLSv1.2", keepalives = 1, tcp_user_timeout = 10000, target_session_attrs = "read-write" } })
    local rows = assert(db.pg:query "SELECT current_database() AS d, current_user AS u")
    assert.are.same({ dbname, user }, { rows[1].d, rows[1].u })
    assert.truthy(db.target:find("channel_binding=disable", 1, true), db.target)
    assert.truthy(db.target:find("password=***", 1, true), db.target)
    assert.falsy(db.target:find("password=" .. password, 1, true), db.target)
    db:close()
    -- libpq itself reads the value: one it refuses comes back from it
    db = assert(semstore.connect { name = "keywords-bad-" .. os.time(), pool = { size = 1, timeout = 2 },
      postgres = { host = host, port = port, user = user, channel_binding = "bogus" } })
    local res, err = db.pg:query "SELECT 1"
    assert.is_nil(res)
    assert.are.equal("connection", err.kind)
    assert.truthy(err.message:find("channel_binding", 1, true), err.message)
    db:close()
  end)

  it("redacts passwords in URLs, conninfo strings and messages", function()
    local cases = {
      { "postgresql://dev:s3cret@127.0.0.1:5432/app", "postgresql://dev:***@127.0.0.1:5432/app" },
      { "host=h password=s3cret user=u", "host=h password=*** user=u" },
      { [[password='s3 cr\'et' dbname=d]], "password=*** dbname=d" },
      { "postgresql://h/db?password=s3cret&sslmode=disable", "postgresql://h/db?password=***&sslmode=disable" },
      { "postgresql://dev@h/db", "postgresql://dev@h/db" },
      { 'missing "=" after "postgresql://a:s3cret@h" in connection info string', 'missing "=" after "postgresql://a:***@h" in connection info string' },
    }
    for _, c in ipairs(cases) do assert.are.equal(c[2], config.redact(c[1])) end
  end)

  it("redacts the literal after PASSWORD in SQL, and what a message quotes of it", function()
    assert.are.equal("ALTER ROLE x ENCRYPTED PASSWORD '***' LOGIN; SELECT 'password', password_hash FROM t",
      config.redact "ALTER ROLE x ENCRYPTED PASSWORD E'it''s\\'' LOGIN; SELECT 'password', password_hash FROM t")
    assert.are.equal([[unterminated dollar-quoted string at or near "'***'"]],
      config.redact([[unterminated dollar-quoted string at or near "$x$hunter2"]], "ALTER ROLE r PASSWORD $x$hunter2"))
  end)

  it("semstore.null is cjson.null", function()
    assert.are.equal(require("cjson").null, semstore.null)
  end)

  it("reads .env text: export, quotes, escapes, comments", function()
    local v = assert(config.parse_env(table.concat({
      "# a comment", "", "A=plain value  # trailing comment", "export B=2", "C='a \\n #literal'",
      [[D="line\nbreak \"quoted\" #kept"]], "E=", "F = spaced ", "G=a#b", "H='x' # note", "I=back\\slash", "J= # empty", "K=#x", "L=",
    }, "\n")))
    assert.are.same({ A = "plain value", B = "2", C = "a \\n #literal", D = 'line\nbreak "quoted" #kept',
      E = "", F = "spaced", G = "a#b", H = "x", I = "back\\slash", J = "", K = "#x", L = "" }, v)
  end)

  it("names the line of .env text it cannot read", function()
    for _, bad in ipairs { "just words", "1KEY=x", [[K="unclosed]], "K='unclosed", [[K="bad \q escape"]], "K='a' tail" } do
      local v, err = config.parse_env("OK=1\n" .. bad, "x.env")
      assert.is_nil(v, bad)
      assert.are.equal("input", err.kind)
      assert.are.equal("x.env:2: expected KEY=VALUE", err.message, bad)
    end
  end)

  it("lets the real environment win over a .env file", function()
    local dir = require("support.helpers").tmpdir()
    local f = assert(io.open(dir .. "/.env", "w"))
    f:write("HOME=/not/home\nSEMSTORE_SPEC_ONLY_IN_FILE=from-file\n")
    f:close()
    assert.is_false(config.load_env_file(dir .. "/absent.env"))
    local ok, err = config.load_env_file(dir)
    assert.is_nil(ok)
    assert.truthy(err.message:find("cannot read " .. dir, 1, true), err.message)
    assert(os.execute("mkdir " .. dir .. "/locked && touch " .. dir .. "/locked/.env && chmod 000 " .. dir .. "/locked/.env"))
    if io.open(dir .. "/locked/.env") == nil then -- root reads anything
      ok, err = config.load_env_file(dir .. "/locked/.env")
      assert.is_nil(ok)
      assert.truthy(err.message:find("Permission denied", 1, true), err.message)
    end
    assert.is_true(config.load_env_file(dir .. "/.env"))
    assert.are.equal(os.getenv "HOME", config.getenv "HOME")
    assert.are.equal("from-file", config.getenv "SEMSTORE_SPEC_ONLY_IN_FILE")
    assert.is_true(config.load_env_file(dir .. "/absent.env") == false)
    require("support.helpers").rmdir(dir)
  end)
end)
