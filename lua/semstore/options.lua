-- Checking what callers pass: the Lua modules' one way to refuse an option
-- table with a typo in it, and to make an `input` error.
local compat = require "semstore.compat"
compat() -- Lua 5.4's library, under LuaJIT too (semstore/compat.lua)
local core = require "semstore.core"

local M = {}

-- nil, an input error whose message is string.format(fmt, ...)
function M.input_error(fmt, ...)
  return nil, core.error { kind = "input", message = string.format(fmt, ...) }
end

-- opts (or {} for nil) when it is a table whose keys are all in `names`;
-- otherwise nil, an input error naming the key (`what` names the table).
function M.check(opts, names, what)
  if opts == nil then return {} end
  if type(opts) ~= "table" then return M.input_error("%s must be a table", what) end
  local ok, err = core.check_keys(opts, names, what)
  if not ok then return nil, err end
  return opts
end

return M
