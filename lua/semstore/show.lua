-- How values are shown to people: the REPL's printer and the command's
-- tables. Rows come out as an aligned table, other tables as JSON-like
-- text, semstore.null as null, errors with their kind and SQLSTATE.
local compat = require "semstore.compat"
compat() -- Lua 5.4's library, under LuaJIT too (semstore/compat.lua)
local core = require "semstore.core"

local M = {}

local MAX_DEPTH = 8
local MAX_CELL = 60
-- values written at most, for one value shown: a table that holds the same
-- subtables many times over would otherwise print millions of them
local MAX_ITEMS = 10000

-- Terminal columns (wide characters 2, combining marks 0: wcwidth in C).
local width = core.display_width

-- s cut to n columns, with an ellipsis when it was wider.
local function cut(s, n)
  if width(s) <= n then return s end
  if not utf8.len(s) then return s:sub(1, n - 1) .. "…" end
  local used, stop = 0, 0
  for at, c in utf8.codes(s) do
    local w = width(utf8.char(c))
    if used + w > n - 1 then break end
    used, stop = used + w, at + #utf8.char(c) - 1
  end
  return s:sub(1, stop) .. "…"
end

-- M.columns(rows, right, rule) -> lines: rows (arrays of cells) aligned in
-- columns two spaces apart; the columns listed in `right` align right; with
-- `rule`, a line of dashes under the first row (the header).
function M.columns(rows, right, rule)
  local widths = {}
  for _, row in ipairs(rows) do
    for i, cell in ipairs(row) do widths[i] = math.max(widths[i] or 0, width(tostring(cell))) end
  end
  local align = {}
  for _, i in ipairs(right or {}) do align[i] = true end
  local lines = {}
  for r, row in ipairs(rows) do
    local cells = {}
    for i, cell in ipairs(row) do
      cell = tostring(cell)
      local pad = string.rep(" ", widths[i] - width(cell))
      if align[i] then cell = pad .. cell elseif i < #row then cell = cell .. pad end
      cells[i] = cell
    end
    lines[#lines + 1] = table.concat(cells, "  ")
    if rule and r == 1 then
      local dashes = {}
      for i = 1, #widths do dashes[i] = string.rep("-", widths[i]) end
      lines[#lines + 1] = table.concat(dashes, "  ")
    end
  end
  return lines
end

-- Fields are read raw throughout: a metamethod that raises must not stop
-- a value from being shown.
local function is_error(v)
  return type(v) == "table" and getmetatable(v) ~= nil and type(rawget(v, "kind")) == "string"
    and rawget(v, "message") ~= nil
end

-- A query's result: its columns and affected count come from its metatable.
local function result_info(v)
  local mt = getmetatable(v)
  local index = type(mt) == "table" and rawget(mt, "__index")
  if type(index) == "table" and type(rawget(index, "columns")) == "table" then
    return rawget(index, "columns"), rawget(index, "affected")
  end
end

-- A string as Lua would read it back: quoted, control bytes escaped.
local function quote(s)
  return '"' .. s:gsub('[%c"\\]', function(c)
    local named = { ["\n"] = "\\n", ["\t"] = "\\t", ["\r"] = "\\r", ['"'] = '\\"', ["\\"] = "\\\\" }
    return named[c] or string.format("\\%03d", c:byte())
  end) .. '"'
end

local function sorted_keys(t)
  local keys = {}
  for k in next, t do keys[#keys + 1] = k end
  table.sort(keys, function(a, b)
    if type(a) == type(b) and (type(a) == "number" or type(a) == "string") then return a < b end
    return type(a) < type(b)
  end)
  return keys
end

-- An array: keys 1..n and nothing else (n may be 0 only for a table with
-- no keys at all).
local function array_length(t)
  local n = 0
  for k in next, t do
    if math.type(k) ~= "integer" or k < 1 then return nil end
    if k > n then n = k end
  end
  for i = 1, n do if rawget(t, i) == nil then return nil end end
  return n
end

-- A float as the shortest of %.14g and %.17g that reads back as itself,
-- with ".0" when it looks like an integer.
local function float_text(v)
  if v ~= v then return "nan" end
  if v == math.huge then return "inf" elseif v == -math.huge then return "-inf" end
  local text = string.format("%.14g", v)
  if tonumber(text) ~= v then text = string.format("%.17g", v) end
  if not text:find "[.eni]" then text = text .. ".0" end
  return text
end

local function error_text(e)
  local parts = { "error (", rawget(e, "kind") }
  local code = rawget(e, "code")
  if code ~= nil and code ~= core.null then parts[#parts + 1] = ", SQLSTATE " .. tostring(code) end
  parts[#parts + 1] = "): "
  parts[#parts + 1] = tostring(rawget(e, "message"))
  return table.concat(parts)
end

-- JSON-like text of v; `seen` holds the tables on the way down (a cycle
-- shows as <cycle>), a table deeper than MAX_DEPTH shows as {...}, and
-- after budget.left values the rest as "…".
local function inline(v, seen, depth, budget)
  budget.left = budget.left - 1
  if budget.left < 0 then return "…" end
  local t = type(v)
  if v == core.null then return "null" end
  if t == "string" then return quote(v) end
  if math.type(v) == "float" then return float_text(v) end
  -- every digit: LuaJIT's tostring prints 123456789012345 as 1.2345678901235e+14
  if math.type(v) == "integer" then return string.format("%d", v) end
  if t ~= "table" then return tostring(v) end
  if is_error(v) then return error_text(v) end
  if seen[v] then return "<cycle>" end
  if depth > MAX_DEPTH then return "{...}" end
  -- an object that prints itself: its __tostring, unless it is a plain
  -- table of fields that merely has one
  local mt = getmetatable(v)
  if type(mt) == "table" and rawget(mt, "__tostring") then
    local index = rawget(mt, "__index")
    if index == nil or type(index) == "function" or next(v) == nil then return tostring(v) end
  end
  seen[v] = true
  local parts = {}
  local n = array_length(v)
  if n and n > 0 then
    for i = 1, n do parts[i] = inline(rawget(v, i), seen, depth + 1, budget) end
    seen[v] = nil
    return "[" .. table.concat(parts, ", ") .. "]"
  end
  for _, k in ipairs(sorted_keys(v)) do
    local key = type(k) == "string" and k:match "^[%a_][%w_]*$" and k or "[" .. inline(k, seen, depth + 1, budget) .. "]"
    parts[#parts + 1] = key .. ": " .. inline(rawget(v, k), seen, depth + 1, budget)
  end
  seen[v] = nil
  return "{" .. table.concat(parts, ", ") .. "}"
end

local function new_budget() return { left = MAX_ITEMS } end

-- A cell of a row table: strings bare, everything else as inline text, cut
-- to MAX_CELL columns.
local function cell(v)
  if v == nil then return "" end
  if type(v) == "string" then return cut(v:gsub("%c", " "), MAX_CELL) end
  return cut(inline(v, {}, 1, new_budget()), MAX_CELL)
end

-- The column names of rows: a query's own `columns`, else the keys of an
-- array of records (tables of scalars and small tables), id first, then
-- in name order; nil when v is not rows.
local function row_columns(v)
  if type(v) ~= "table" or is_error(v) then return nil end
  local columns = result_info(v)
  if columns then return columns end
  -- a plain table of rows with a `columns` array beside them
  columns = rawget(v, "columns")
  if type(columns) == "table" and array_length(columns) then
    for k in next, v do
      if k ~= "columns" and (math.type(k) ~= "integer" or k < 1) then return nil end
    end
    return columns
  end
  local n = array_length(v)
  if not n or n == 0 then return nil end
  local names, seen = {}, {}
  for i = 1, n do
    local row = rawget(v, i)
    if type(row) ~= "table" or is_error(row) or array_length(row) ~= nil and next(row) ~= nil then return nil end
    for k in next, row do
      if type(k) ~= "string" then return nil end
      if not seen[k] then
        seen[k] = true
        names[#names + 1] = k
      end
    end
  end
  table.sort(names, function(a, b)
    if a == "id" or b == "id" then return a == "id" and b ~= "id" end
    return a < b
  end)
  return names
end

-- A record: a table of two or more named scalar fields (a row), shown one
-- field a line.
local function record_text(v)
  if type(v) ~= "table" or is_error(v) or getmetatable(v) ~= nil then return nil end
  local keys = sorted_keys(v)
  if #keys < 2 then return nil end
  local lines = {}
  for i, k in ipairs(keys) do
    local field = rawget(v, k)
    if type(k) ~= "string" or (type(field) == "table" and field ~= core.null) then return nil end
    lines[i] = { k, cell(field) }
  end
  return table.concat(M.columns(lines), "\n")
end

-- M.value(v) -> text: v as a person should read it.
function M.value(v)
  local record = record_text(v)
  if record then return record end
  local columns = row_columns(v)
  if not columns then return inline(v, {}, 1, new_budget()) end
  if #columns == 0 then
    -- a statement that returns no rows (an UPDATE, DDL): what it changed
    local _, count = result_info(v)
    return count and string.format("(%d row%s affected)", count, count == 1 and "" or "s") or "OK"
  end
  local rows = { {} }
  for i, name in ipairs(columns) do rows[1][i] = name end
  local n = rawlen(v)
  for r = 1, n do
    local line = {}
    for i, name in ipairs(columns) do line[i] = cell(rawget(rawget(v, r), name)) end
    rows[r + 1] = line
  end
  local lines = M.columns(rows, nil, true)
  lines[#lines + 1] = string.format("(%d row%s)", n, n == 1 and "" or "s")
  return table.concat(lines, "\n")
end

return M
