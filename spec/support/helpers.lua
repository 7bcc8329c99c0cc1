-- What the specs share: the throwaway servers' addresses (scripts/servers.sh
-- exports them) and fresh pools with names of their own.
require "semstore.compat" () -- Lua 5.4's library under LuaJIT too
local semstore = require "semstore"

local helpers = {}

helpers.url = assert(os.getenv "SEMSTORE_TEST_DATABASE_URL" or os.getenv "DATABASE_URL",
  "run the specs through scripts/test.sh, which starts PostgreSQL and sets SEMSTORE_TEST_DATABASE_URL")
helpers.superuser_url = os.getenv "SEMSTORE_TEST_PG_SUPERUSER_URL"
helpers.under_valgrind = os.getenv "SEMSTORE_UNDER_VALGRIND" == "1"

-- busted loads this module afresh for every spec file, so the counter
-- starts over: a random tag per load keeps pool and database names unique.
local counter = 0
local tag
do
  local f = assert(io.open "/proc/sys/kernel/random/uuid")
  tag = f:read("l"):sub(1, 8)
  f:close()
end

-- A pool of its own for one spec: names never repeat, so no state leaks
-- from one test into the next.
function helpers.connect(pool, extra)
  counter = counter + 1
  local opts = { name = "spec-" .. tag .. "-" .. counter, postgres = helpers.url, pool = pool or { size = 3, max_overflow = 2, timeout = 5 } }
  for k, v in pairs(extra or {}) do opts[k] = v end
  return assert(semstore.connect(opts))
end

-- A name no other spec or run uses: prefix, this load's tag and a counter,
-- joined by sep (collections, keys, channels).
function helpers.unique(prefix, sep)
  counter = counter + 1
  return table.concat({ prefix, tag, counter }, sep)
end

-- Asserts the pool lent out nothing that was not given back.
function helpers.assert_all_returned(db)
  local s = db.pg:stats()
  assert(s.in_use == 0, "connections still in use: " .. s.in_use)
  assert(s.waiting == 0, "acquirers still waiting: " .. s.waiting)
end

-- The checkout the specs run from (scripts/test.sh runs busted there).
do
  local p = assert(io.popen "pwd")
  helpers.root = p:read "l"
  p:close()
end

-- The VM the specs run under, and what a subprocess runs under too, so a
-- CLI spec tests the CLI under the same VM: lua_bin is the interpreter
-- ("luajit" or "lua5.4"), build_dir the folder with semstore/core.so for
-- it (the one in the running LUA_CPATH, else build-luajit or build),
-- cpath the LUA_CPATH a subprocess gets. lua54 and luajit name the
-- condition of a spec that only makes sense under one of them.
helpers.luajit = jit ~= nil
helpers.lua54 = _VERSION == "Lua 5.4"
helpers.lua_bin = helpers.luajit and "luajit" or "lua5.4"
do
  local dir
  for entry in package.cpath:gmatch "[^;]+" do
    local d = entry:match "^(.-)/%?%.so$"
    local f = d and io.open(d .. "/semstore/core.so")
    if f then f:close() dir = d break end
  end
  dir = dir or (helpers.luajit and "build-luajit" or "build")
  if dir:sub(1, 1) ~= "/" then dir = helpers.root .. "/" .. dir end
  helpers.build_dir = dir
end
helpers.cpath = helpers.build_dir .. "/?.so;;"

-- What a row gives for the int8 written in decimal `s`: an integer under
-- 5.4; under LuaJIT a number within ±2^53 and beyond it the exact decimal
-- string (a double would round it).
function helpers.int8(s)
  local n = assert(tonumber(s))
  if helpers.luajit and (n > 2 ^ 53 or n < -2 ^ 53 or ("%.0f"):format(n) ~= s) then return s end
  return n
end

-- A single-quoted shell word.
function helpers.shell_quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

local function admin()
  return semstore.connect { name = "spec-admin", postgres = assert(helpers.superuser_url), pool = { size = 1, max_overflow = 0 } }
end

-- A new empty database owned by the test role, for specs that change the
-- schema; returns its name and URL.
function helpers.fresh_database()
  counter = counter + 1
  local name = string.format("spec_%s_%d", tag, counter)
  local db = assert(admin())
  assert(db.pg:exec("DROP DATABASE IF EXISTS " .. semstore.quote_ident(name) .. " WITH (FORCE)"))
  assert(db.pg:exec("CREATE DATABASE " .. semstore.quote_ident(name) .. " OWNER semstore"))
  return name, (helpers.url:gsub("/[^/?]*$", "/" .. name))
end

function helpers.drop_database(name)
  local db = assert(admin())
  assert(db.pg:exec("DROP DATABASE IF EXISTS " .. semstore.quote_ident(name) .. " WITH (FORCE)"))
end

-- A fresh database with a pool on it and an empty folder, for one test;
-- remove_scratch checks the pool lent nothing out and removes all three.
function helpers.scratch(pool)
  local s = {}
  s.name, s.url = helpers.fresh_database()
  s.db = helpers.connect(pool, { postgres = s.url })
  s.dir = helpers.tmpdir()
  return s
end

-- A fresh database with the built-in schema, for the bulk specs: a pool
-- on it (db), a superuser's (admin), one owner and `collections`
-- collections (their ids in order). close() checks nothing was left lent
-- out and drops it all.
function helpers.chunk_schema(collections)
  local migrate = require "semstore.migrate"
  local f = { collections = {} }
  f.name, f.url = helpers.fresh_database()
  f.db = helpers.connect({ size = 3, max_overflow = 2, timeout = 10 }, { postgres = f.url })
  f.admin = helpers.connect({ size = 1, max_overflow = 0, timeout = 10 }, { postgres = assert(helpers.superuser_url) })
  assert(migrate.up(f.db))
  f.owner = assert(f.db.pg:query [[INSERT INTO users (username, email, hashed_password)
    VALUES ('ada', 'ada@example.org', 'x') RETURNING id]])[1].id
  for i = 1, collections do
    f.collections[i] = assert(f.db.pg:query([[INSERT INTO collections (name, owner_id, vector_store_name, embedding_model)
      VALUES ($1, $2, $1, 'bge-small') RETURNING id]], "c" .. i, f.owner))[1].id
  end
  -- chunks rows (with a WHERE clause and its parameters), the bulks'
  -- prepared parts, and the commit decisions left (rollback decisions
  -- stay a day by design)
  function f.count(where, ...)
    return assert(f.db.pg:query("SELECT count(*)::int AS n FROM chunks " .. (where or ""), ...))[1].n
  end
  function f.prepared()
    return assert(f.admin.pg:query([[SELECT count(*)::int AS n FROM pg_prepared_xacts
      WHERE database = $1 AND gid LIKE 'semstore:bulk:%']], f.name))[1].n
  end
  function f.decisions()
    return assert(f.db.pg:query "SELECT count(*)::int AS n FROM semstore_bulk_decisions WHERE outcome = 'commit'")[1].n
  end
  -- the client backends on the database, as "pid pid ..."
  function f.backends()
    local got = assert(f.admin.pg:query([[SELECT pid FROM pg_stat_activity
      WHERE datname = $1 AND backend_type = 'client backend' ORDER BY pid]], f.name))
    local pids = {}
    for i, r in ipairs(got) do pids[i] = tostring(r.pid) end
    return table.concat(pids, " ")
  end
  -- chunk i (in collection i mod n; `size` bytes of content when given),
  -- and n of them
  function f.chunk(i, size)
    return { collection_id = f.collections[i % #f.collections + 1], chunk_index = i,
      content = size and string.rep(string.char(65 + i % 26), size) or ("chunk " .. i) }
  end
  function f.rows_of(n, size)
    local rows = {}
    for i = 1, n do rows[i] = f.chunk(i, size) end
    return rows
  end
  function f.close()
    helpers.assert_all_returned(f.db)
    f.db:close()
    f.admin:close()
    helpers.drop_database(f.name)
  end
  return f
end

function helpers.remove_scratch(s)
  helpers.assert_all_returned(s.db)
  s.db:close()
  helpers.drop_database(s.name)
  helpers.rmdir(s.dir)
end

function helpers.tmpdir()
  local p = assert(io.popen "mktemp -d /tmp/semstore-spec.XXXXXX")
  local dir = p:read "l"
  p:close()
  return dir
end

function helpers.rmdir(dir)
  assert(dir:match "^/tmp/semstore%-spec%.")
  os.execute("rm -rf " .. helpers.shell_quote(dir))
end

function helpers.write_file(path, text)
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
end

function helpers.read_file(path)
  local f = assert(io.open(path, "rb"))
  local text = f:read "a"
  f:close()
  return text
end

-- The schema of a database as pg_dump prints it, without schema_migrations.
function helpers.schema_dump(url)
  local p = assert(io.popen("pg_dump --schema-only --no-owner --exclude-table=schema_migrations "
    .. helpers.shell_quote(url) .. " 2>&1"))
  local text = p:read "a"
  assert(p:close(), text)
  -- pg_dump 15.14+ fences its output with a random \restrict key
  return (text:gsub("\n\\u?n?restrict [^\n]*", ""))
end

-- Runs bin/semstore in a shell: args is a list of words, opts.env extra
-- variables (false unsets one), opts.cwd the working directory. Returns
-- the exit code, stdout and stderr.
function helpers.cli(args, opts)
  opts = opts or {}
  local out, err = os.tmpname(), os.tmpname()
  -- env takes its -u options before any NAME=VALUE: after one, the rest
  -- is the command
  local env, sets = { "env" }, {}
  for k, v in pairs(opts.env or {}) do
    if v == false then env[#env + 1] = "-u " .. k else sets[#sets + 1] = k .. "=" .. helpers.shell_quote(v) end
  end
  table.move(sets, 1, #sets, #env + 1, env)
  local words = {}
  for i, a in ipairs(args) do words[i] = helpers.shell_quote(a) end
  local cmd = string.format("cd %s && %s LUA_PATH=%s LUA_CPATH=%s %s %s/bin/semstore %s >%s 2>%s",
    helpers.shell_quote(opts.cwd or helpers.root), table.concat(env, " "),
    helpers.shell_quote(helpers.root .. "/lua/?.lua;" .. helpers.root .. "/lua/?/init.lua;;"),
    helpers.shell_quote(helpers.cpath), helpers.lua_bin, helpers.root, table.concat(words, " "), out, err)
  local _, _, code = os.execute(cmd)
  local stdout, stderr = helpers.read_file(out), helpers.read_file(err)
  os.remove(out)
  os.remove(err)
  return code, stdout, stderr
end

-- A TCP port nothing listens on, for a server a spec starts: the one
-- finder, examples/openresty/launch.lua's (the example runs without the specs).
function helpers.free_port()
  return dofile(helpers.root .. "/examples/openresty/launch.lua").free_port()
end

function helpers.sleep(seconds)
  assert(os.execute(string.format("sleep %.3f", seconds)))
end

return helpers
