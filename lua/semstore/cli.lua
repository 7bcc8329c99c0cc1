-- The `semstore` command. bin/semstore only calls cli.main(arg) and exits
-- with what it returns: 0 success, 1 failure, 2 a usage error.
local semstore = require "semstore"
local config = require "semstore.config"

local cli = {}

local HELP = {
  main = [[
usage: semstore COMMAND [ARGS] [OPTIONS]

commands:
  migrate up|down|status|new   schema migrations (semstore migrate --help)
  health                       check the servers semstore is configured for
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

Connects to PostgreSQL with the configured settings and runs a query.
Prints one line per server and exits 1 when any of them fails.
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
-- the pool); scripts get the pool the environment configures.
local function connect(pool)
  return semstore.connect { name = "semstore-cli", pool = pool }
end
local SMALL_POOL = { size = 1, max_overflow = 1 }

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
  local pos, opts = parse(args, {})
  if not pos then return self:usage(opts, "health") end
  if opts.help then
    self:out("%s", HELP.health)
    return 0
  end
  if #pos > 0 then return self:usage("health takes no arguments", "health") end
  local db, err = connect(SMALL_POOL)
  if not db then
    self:out("postgres   FAILED  %s", tostring(err))
    return 1
  end
  local report = db:health()
  db:close()
  for _, store in ipairs { "postgres", "redis", "qdrant" } do
    local h = report[store]
    if h and h.ok then
      self:out("%-10s ok      %.1f ms  %s (%s)", store, h.ms, h.info, h.target)
    elseif h then
      self:out("%-10s FAILED  %s (%s)", store, tostring(h.error), h.target)
    end
  end
  return report.ok and 0 or 1
end

-- `run` and `seed`: the script's globals fall back to the real ones, so
-- it can require modules and print as usual.
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
  local env = setmetatable({ db = db, arg = script_args }, { __index = _G })
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
  local pos, opts = parse(args, { port = "value", data = "value" })
  if not pos then return self:usage(opts, "dev-qdrant") end
  if opts.help then
    self:out("%s", HELP["dev-qdrant"])
    return 0
  end
  if #pos > 0 then return self:usage("dev-qdrant takes no arguments", "dev-qdrant") end
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

local COMMANDS = {
  ["dev-qdrant"] = Command.dev_qdrant,
  migrate = Command.migrate,
  health = Command.health,
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
