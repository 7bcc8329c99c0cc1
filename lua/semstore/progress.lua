-- semstore.progress_bar(label, opts): a progress callback for
-- index_collection and rebuild_vector_index that draws one line on a
-- terminal (stderr by default) and stays silent when output goes to a file
-- or a pipe, so logs never fill with carriage returns.
local compat = require "semstore.compat"
compat() -- Lua 5.4's library, under LuaJIT too (semstore/compat.lua)
local core = require "semstore.core"
local options = require "semstore.options"

local M = {}

local WIDTH = 30

-- Whether the stream is a terminal. Only stdout and stderr can be asked
-- (a Lua file has no descriptor to give); any other stream counts as a file.
local function is_terminal(stream)
  local fd = stream == io.stdout and 1 or stream == io.stderr and 2
  return fd and core.isatty(fd) or false
end

-- A count for printing: a finite number >= 0, else 0.
local function count(v)
  if type(v) ~= "number" or v ~= v or v < 0 or v == math.huge then return 0 end
  return math.floor(v)
end

-- progress_bar(label, { stream = io.stderr, force = false }) -> draw(report), done()
-- report fields used: documents, skipped, total (documents given, when
-- known), chunks and vectors.
function M.progress_bar(label, opts)
  if type(label) ~= "string" then return options.input_error "progress_bar's label must be a string" end
  local err
  opts, err = options.check(opts, { "stream", "force" }, "progress_bar's options")
  if not opts then return nil, err end
  if opts.stream ~= nil and io.type(opts.stream) ~= "file" then
    return options.input_error "progress_bar's stream must be an open file (io.stderr, io.stdout)"
  end
  if opts.force ~= nil and type(opts.force) ~= "boolean" then
    return options.input_error "progress_bar's force must be true or false"
  end
  local stream = opts.stream or io.stderr
  local on = opts.force == true or is_terminal(stream)
  local drawn = false
  local function draw(r)
    if not on or type(r) ~= "table" then return end
    local seen, total = count(r.documents) + count(r.skipped), count(r.total)
    local bar
    if total > 0 then
      local filled = math.floor(WIDTH * math.min(seen, total) / total)
      bar = string.format("[%s%s] %.0f/%.0f documents", ("#"):rep(filled), ("."):rep(WIDTH - filled), seen, total)
    else
      bar = string.format("%.0f documents", seen)
    end
    stream:write(string.format("\r%s %s, %.0f chunks, %.0f vectors ", label, bar, count(r.chunks), count(r.vectors)))
    stream:flush()
    drawn = true
  end
  local function done()
    if drawn then stream:write "\n" end
    drawn = false
  end
  return draw, done
end

return M
