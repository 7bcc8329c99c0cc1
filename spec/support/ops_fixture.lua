-- What the operations specs share: the command and scripts run under a
-- time limit, servers that stall or answer in the wrong shape, a migrated
-- database of their own.
require "semstore.compat" () -- Lua 5.4's library under LuaJIT too
local semstore = require "semstore"
local helpers = require "support.helpers"
local monotime = require("semstore.core").monotime

local ops = {}

-- like helpers.cli, under `timeout SECONDS`: the exit code (124 when it was
-- stopped), stdout, stderr, and the seconds it took
function ops.cli_within(seconds, args, env)
  local out, err = os.tmpname(), os.tmpname()
  local sets = {}
  for k, v in pairs(env or {}) do sets[#sets + 1] = k .. "=" .. helpers.shell_quote(v) end
  local words = {}
  for i, a in ipairs(args) do words[i] = helpers.shell_quote(a) end
  local cmd = string.format("cd %s && env %s LUA_PATH=%s LUA_CPATH=%s timeout %d %s bin/semstore %s >%s 2>%s",
    helpers.shell_quote(helpers.root), table.concat(sets, " "),
    helpers.shell_quote(helpers.root .. "/lua/?.lua;" .. helpers.root .. "/lua/?/init.lua;;"),
    helpers.shell_quote(helpers.cpath), seconds, helpers.lua_bin, table.concat(words, " "), out, err)
  local started = monotime()
  local _, _, code = os.execute(cmd)
  local took = monotime() - started
  local stdout, stderr = helpers.read_file(out), helpers.read_file(err)
  os.remove(out)
  os.remove(err)
  return code, stdout, stderr, took
end

-- Runs a Lua script file under `timeout SECONDS`: the exit code (124 when
-- it was stopped), what it printed, and the seconds it took.
function ops.run_within(seconds, script)
  local out = os.tmpname()
  local started = monotime()
  local _, _, code = os.execute(string.format("cd %s && LUA_PATH=%s LUA_CPATH=%s timeout %d %s %s >%s 2>&1",
    helpers.shell_quote(helpers.root), helpers.shell_quote(helpers.root .. "/lua/?.lua;" .. helpers.root .. "/lua/?/init.lua;;"),
    helpers.shell_quote(helpers.cpath), seconds, helpers.lua_bin, script, out))
  local took = monotime() - started
  local text = helpers.read_file(out)
  os.remove(out)
  return code, text, took
end

-- The same for a script's text.
function ops.script_within(seconds, text)
  local dir = helpers.tmpdir()
  helpers.write_file(dir .. "/script.lua", text)
  local code, output, took = ops.run_within(seconds, dir .. "/script.lua")
  helpers.rmdir(dir)
  return code, output, took
end

-- A server that accepts connections and never answers: a redis-server of
-- the spec's own, stopped with SIGSTOP (the kernel still completes the
-- handshakes). Any client (libpq, hiredis, libcurl) connects and waits.
function ops.stalled_server()
  local dir = helpers.tmpdir()
  local port = helpers.free_port()
  assert(os.execute(string.format(
    "redis-server --port %d --bind 127.0.0.1 --save '' --appendonly no --dir %s --daemonize yes --pidfile %s/redis.pid >/dev/null 2>&1",
    port, helpers.shell_quote(dir), helpers.shell_quote(dir))))
  local pid
  for _ = 1, 50 do
    local f = io.open(dir .. "/redis.pid")
    pid = f and f:read "a":match "%d+"
    if f then f:close() end
    if pid then break end
    helpers.sleep(0.1)
  end
  assert(pid, "redis-server did not start")
  assert(os.execute("kill -STOP " .. pid))
  local s = { port = port }
  function s.stop()
    os.execute("kill -CONT " .. pid .. " 2>/dev/null; kill " .. pid .. " 2>/dev/null")
    helpers.rmdir(dir)
  end
  return s
end

-- An HTTP server on a free port that answers every request 200 with the
-- JSON `body` (what sits on Qdrant's port is not always Qdrant): its URL,
-- and a function that stops it.
function ops.http_answering(body)
  local dir = helpers.tmpdir()
  local port = helpers.free_port()
  helpers.write_file(dir .. "/server.js", string.format([[
    require('http').createServer((q, s) => { s.setHeader('content-type', 'application/json');
      s.end(%q) }).listen(%d, '127.0.0.1')]], body, port))
  assert(os.execute(string.format("node %s >/dev/null 2>&1 & echo $! > %s", dir .. "/server.js", dir .. "/pid")))
  for _ = 1, 50 do
    if os.execute(string.format("curl -s -o /dev/null http://127.0.0.1:%d/", port)) then break end
    helpers.sleep(0.1)
  end
  return "http://127.0.0.1:" .. port, function()
    os.execute("kill " .. helpers.read_file(dir .. "/pid"):match "%d+" .. " 2>/dev/null")
    helpers.rmdir(dir)
  end
end

-- A fresh database with the built-in schema, a user and a collection.
function ops.migrated()
  local name, url = helpers.fresh_database()
  local code, out, err = helpers.cli({ "migrate", "up" }, { env = { DATABASE_URL = url } })
  assert(code == 0, out .. err)
  local db = helpers.connect(nil, { postgres = url })
  local user = assert(db.users:create { username = helpers.unique "ops", email = helpers.unique "ops" .. "@example.org",
    password = "pw" })
  local col = assert(db.collections:create { name = helpers.unique "opscol", owner_id = user.id, embedding_model = "local" })
  return { name = name, url = url, db = db, col = col,
    close = function()
      db:close()
      helpers.drop_database(name)
    end }
end

-- A document written while Qdrant was down: its index job is queued, due now.
function ops.queued_job(m)
  local down = assert(semstore.connect { name = helpers.unique "down", postgres = m.url,
    qdrant = { url = "http://127.0.0.1:1", max_retries = 0 } })
  local _, queued = assert(assert(semstore.services.documents(down)):create_document(m.col.id, "hello queued world",
    { file_name = "a.md" }))
  down:close()
  assert(queued)
  assert(m.db.pg:query "UPDATE reindex_jobs SET next_attempt_at = now()")
end

return ops
