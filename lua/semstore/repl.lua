-- `semstore repl`: Lua with semstore loaded and db connected. Each line is
-- run as an expression when it is one (its values printed by
-- semstore.show), else as a statement; an unfinished statement reads on.
-- Lines starting with ':' are the REPL's own commands.
local core = require "semstore.core"
local show = require "semstore.show"

local M = {}

local HISTORY = "~/.semstore_history"

local HELP = [[
commands:
  :help           this list
  :sql TEXT       run SQL and print the rows
  :timing on|off  print how long each call took
  :quit           leave (so does Ctrl-D)
globals: db (connected), semstore]]

-- The repositories' methods, for :help.
local function repository_help()
  local lines = { "repositories:" }
  for _, name in ipairs { "users", "collections", "documents", "chunks", "operations" } do
    local methods = {}
    for method in pairs(core.repositories[name]) do
      if not method:match "^_" then methods[#methods + 1] = method end
    end
    table.sort(methods)
    lines[#lines + 1] = string.format("  db.%s: %s", name, table.concat(methods, ", "))
  end
  lines[#lines + 1] = "also: db.pg (query, exec, rows, transaction, acquire, stats), db.redis, db.cache, db.qdrant, db:health()"
  return table.concat(lines, "\n")
end

-- A line reader: readline's, with history in ~/.semstore_history, when
-- lua-readline is installed and input is a terminal; else plain lines.
-- Returns read(prompt) -> line or nil, and close().
function M.line_reader(opts)
  opts = opts or {}
  local ok, readline = false, nil
  if opts.readline ~= false then ok, readline = pcall(require, "readline") end
  if ok and type(readline) == "table" and readline.readline then
    readline.set_options { histfile = opts.history or HISTORY, completion = false, keeplines = 1000 }
    return function(prompt) return readline.readline(prompt) end, function() readline.save_history() end
  end
  local input, output = opts.input or io.stdin, opts.output or io.stdout
  return function(prompt)
    output:write(prompt)
    output:flush()
    return input:read "l"
  end, function() end
end

-- M.run{ db =, read = fn(prompt), write = fn(text), env = {...} }: the
-- loop, until read gives nil or :quit.
function M.run(opts)
  local write = opts.write
  local env = setmetatable(opts.env or {}, { __index = _G })
  env.db = env.db or opts.db
  local timing = false
  local pending

  -- prints what a chunk returned: each value on a line of its own
  local function report(res, ms)
    if not res[1] then
      local err = res[2]
      write(type(err) == "table" and show.value(err) or tostring(err))
    else
      for i = 2, res.n do write(show.value(res[i])) end
    end
    if timing then write(string.format("(%.1f ms)", ms)) end
  end

  local function call(fn, ...)
    local started = core.monotime()
    local res = table.pack(xpcall(fn, function(e)
      if type(e) == "table" then return e end
      -- the traceback of the line's own code, not of the REPL around it
      local trace = debug.traceback(tostring(e), 2)
      return (trace:gsub("\n%s*%[C%]: in function 'xpcall'.*$", ""))
    end, ...))
    report(res, (core.monotime() - started) * 1000)
  end

  local commands = {
    help = function() write(HELP .. "\n" .. repository_help()) end,
    sql = function(text)
      if text == "" then return write("usage: :sql TEXT") end
      call(function() return env.db.pg:query(text) end)
    end,
    timing = function(arg)
      if arg == "on" then timing = true elseif arg == "off" then timing = false
      else return write("usage: :timing on|off") end
      write("timing " .. arg)
    end,
  }

  while true do
    local line = opts.read(pending and ">> " or "semstore> ")
    if line == nil then break end
    if not pending and line:match "^%s*:" then
      local name, rest = line:match "^%s*:(%a*)%s*(.-)%s*$"
      if name == "quit" or name == "q" or name == "exit" then break end
      local command = commands[name]
      if command then command(rest) else write("unknown command :" .. name .. " (:help lists them)") end
    else
      local source = pending and (pending .. "\n" .. line) or line
      -- an expression first, so `1 + 1` prints 2; then a statement
      local fn, err = load("return " .. source, "=repl", "t", env)
      if not fn then fn, err = load(source, "=repl", "t", env) end
      if not fn and err:match "<eof>$" then
        pending = source -- unfinished: read on
      else
        pending = nil
        if fn then call(fn) elseif source:match "%S" then write(err) end
      end
    end
  end
end

return M
