-- `semstore repl`: Lua with semstore loaded and db connected. Each line is
-- run as an expression when it is one (its values printed by
-- semstore.show), else as a statement; an unfinished statement reads on.
-- Lines starting with ':' are the REPL's own commands.
local compat = require "semstore.compat"
compat() -- Lua 5.4's library, under LuaJIT too (semstore/compat.lua)
local core = require "semstore.core"
local show = require "semstore.show"

local M = {}

local HISTORY_NAME = ".semstore_history"
local INTERRUPTED = "interrupted!"
-- How a line is tried as an expression first. Under LuaJIT `return f()` is
-- a tail call whose frame is gone when f raises, so error("boom") would be
-- charged to the REPL's own code: the values pass through a function
-- instead (on a line of its own, after a comment the line may end in).
local EXPRESSION = jit and { "return (function(...) return ... end)(", "\n)" } or { "return ", "" }

local HELP = [[
commands:
  :help           this list
  :sql TEXT       run SQL and print the rows
  :timing on|off  print how long each call took
  :quit           leave (so does Ctrl-D)
Ctrl-C stops the line that runs (and cancels its SQL statement).
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

local function shell_quote(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

-- The history file: ~/.semstore_history, made readable by its owner only
-- (passwords get typed); nil when there is no HOME to keep it in.
local function history_file(getenv)
  local home = getenv "HOME"
  if not home or home == "" then return nil end
  local path = home .. "/" .. HISTORY_NAME
  os.execute(string.format("umask 077 && touch %s 2>/dev/null && chmod 600 %s 2>/dev/null", shell_quote(path),
    shell_quote(path)))
  return path
end

local function is_interrupt(err) return type(err) == "string" and err:find(INTERRUPTED, 1, true) ~= nil end

-- A line reader: readline's (editing, and history in ~/.semstore_history)
-- when lua-readline is installed and input is a terminal; else plain
-- lines. Returns read(prompt) -> line, false (a Ctrl-C: no line) or nil
-- (the end), and close().
function M.line_reader(opts)
  opts = opts or {}
  local getenv = opts.getenv or os.getenv
  local ok, readline = false, nil
  if opts.readline ~= false and (opts.readline or core.isatty(0)) then
    ok, readline = pcall(require, "readline")
  end
  if ok and type(readline) == "table" and readline.readline then
    local history = opts.history or history_file(getenv)
    if not history and opts.warn then opts.warn "HOME is not set: no history is kept" end
    readline.set_options { histfile = history or "", completion = false, keeplines = 1000 }
    return function(prompt) return readline.readline(prompt) end,
      function() if history then readline.save_history() end end
  end
  local input, output = opts.input or io.stdin, opts.output or io.stdout
  return function(prompt)
    output:write(prompt)
    output:flush()
    local line, err = input:read "l"
    -- a read cut short by Ctrl-C is no line, not the end
    if line == nil and err then return false end
    return line
  end, function() end
end

-- A value's text; one that cannot be shown (a metamethod that raises) is
-- described rather than ending the session.
local function text_of(v)
  local ok, text = pcall(show.value, v)
  if ok then return text end
  return string.format("<%s that cannot be shown: %s>", type(v), tostring(text))
end

-- M.run{ db =, read = fn(prompt), write = fn(text), env = {...}, interrupts = true }:
-- the loop, until read gives nil or :quit.
function M.run(opts)
  local write = opts.write
  -- globals fall back to the real ones (under LuaJIT through 5.4's library)
  local env = setmetatable(opts.env or {}, { __index = compat.env })
  env.db = env.db or opts.db
  local timing = false
  local pending

  -- prints what a chunk returned, each value on a line of its own, or
  -- what it raised
  local function report(res, ms)
    if not res[1] then
      local err = res[2]
      if type(err) == "table" then
        local text = text_of(err)
        -- a raised table that is not one of semstore's errors
        if not text:find("^error %(") then text = "error: " .. text end
        write(text)
      else
        write(tostring(err))
      end
    else
      for i = 2, res.n do write(text_of(res[i])) end
    end
    if timing then write(string.format("(%.1f ms)", ms)) end
  end

  -- Under LuaJIT a Ctrl-C's hook runs at the next instruction of
  -- interpreted Lua code: the session runs with the JIT compiler off (its
  -- traces run no hooks: `while true do end`, in the line or in anything
  -- it loads or calls), and a Lua frame of its own runs one inside xpcall
  -- after a line that ends in a call into C (`return db.pg:query(...)`, a
  -- tail call).
  local function interruptible(fn)
    if not jit then return fn end
    return function(...)
      local r = table.pack(fn(...))
      return table.unpack(r, 1, r.n)
    end
  end

  local function call(fn, ...)
    local started = core.monotime()
    local res = table.pack(xpcall(interruptible(fn), function(e)
      if type(e) == "table" then return e end
      -- the traceback of the line's own code, not of the REPL around it
      local trace = debug.traceback(tostring(e), 2)
      -- (cut at xpcall, or at the LuaJIT wrapper's frame in this file)
      return (trace:gsub("\n%s*%[C%]: in function 'xpcall'.*$", ""):gsub("\n[^\n]*semstore/repl%.lua:.*$", ""))
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

  -- one line: false when it was :quit
  local function step(line)
    if not pending and line:match "^%s*:" then
      local name, rest = line:match "^%s*:(%a*)%s*(.-)%s*$"
      if name == "quit" or name == "q" or name == "exit" then return false end
      local command = commands[name]
      if command then command(rest) else write("unknown command :" .. name .. " (:help lists them)") end
      return true
    end
    local source = pending and (pending .. "\n" .. line) or line
    -- an expression first, so `1 + 1` prints 2; then a statement
    local fn, err = load(EXPRESSION[1] .. source .. EXPRESSION[2], "=repl", "t", env)
    if not fn then fn, err = load(source, "=repl", "t", env) end
    -- "near <eof>" (LuaJIT: "near '<eof>'")
    if not fn and err:match "<eof>'?$" then
      pending = source -- unfinished: read on
    else
      pending = nil
      if fn then call(fn) elseif source:match "%S" then write(err) end
    end
    return true
  end

  local jit_was_on = jit and jit.status()
  if jit then jit.off() end
  if opts.interrupts then core.catch_interrupts(true) end
  local ok, err = pcall(function()
    while true do
      -- a Ctrl-C that lands outside the line's own code (between lines)
      -- is caught here: the session goes on
      if opts.interrupts then core.catch_interrupts "prompt" end
      local got, line = pcall(opts.read, pending and ">> " or "semstore> ")
      if opts.interrupts then core.catch_interrupts(true) end
      if not got and not is_interrupt(line) then error(line, 0) end
      if got and line == nil then break end
      if not got or line == false then
        pending = nil -- Ctrl-C at the prompt drops what was typed
      else
        local stepped, more = pcall(step, line)
        if not stepped then
          if not is_interrupt(more) then error(more, 0) end
          write(INTERRUPTED)
        elseif not more then
          break
        end
      end
    end
  end)
  if opts.interrupts then core.catch_interrupts(false) end
  if jit_was_on then jit.on() end
  if not ok then error(err, 0) end
end

return M
