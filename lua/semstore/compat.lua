-- What lets one source run under Lua 5.4 and LuaJIT 2.1 (OpenResty's).
-- Each module of semstore starts with `require "semstore.compat" ()`:
-- under 5.4 that does nothing; under LuaJIT it gives the module Lua 5.4's
-- library (table.pack and unpack, math.type, utf8, os.execute's three
-- results, __pairs, xpcall with arguments) from Debian's lua-compat53,
-- as the module's environment, leaving the global one alone (an OpenResty
-- worker's globals are not ours to change).
--
-- The syntax that LuaJIT cannot read stays out of the modules: `<close>`
-- becomes M.closing below, and integer division is math.floor(a / b).
local M = {}

if _VERSION == "Lua 5.1" then
  local env = require "compat53.module"
  M.env = env -- what code that semstore loads runs in (migrations)

  -- A chunk run in an environment of its own (a test runner's, a
  -- sandbox's) keeps it, and gets 5.4's library written into it wherever
  -- it names the global one (a name it defines itself stays its own).
  setmetatable(M, { __call = function()
    local outer = getfenv(2)
    if outer == _G then
      setfenv(2, env) -- not a tail call: level 2 is the caller
    else
      for k, v in pairs(env) do
        if outer[k] == _G[k] then outer[k] = v end
      end
    end
  end })

  -- fn(...) with `resource` closed on every way out, a raise included
  -- (its __close, as `local x <close> = resource` would call it). Under
  -- LuaJIT a coroutine abandoned half way leaves it to the garbage
  -- collector, which gives a connection back to its pool.
  function M.closing(resource, fn, ...)
    local res = env.table.pack(pcall(fn, ...))
    -- nil and false close nothing, as with <close>; __close gets the error
    if resource then getmetatable(resource).__close(resource, not res[1] and res[2] or nil) end
    if not res[1] then error(res[2], 0) end
    return env.table.unpack(res, 2, res.n)
  end
else
  setmetatable(M, { __call = function() end })
  M.env = _G

  -- the same with Lua 5.4's own to-be-closed variable, which a coroutine
  -- closed half way also honours (LuaJIT must not see this syntax: load)
  M.closing = assert(load([[
    local resource, fn = ...
    local held <close> = resource
    return fn(select(3, ...))
  ]], "=semstore.compat"))
end

return M
