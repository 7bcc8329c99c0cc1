-- semstore.progress_bar(label, opts): a progress callback for
-- index_collection and rebuild_vector_index that draws one line on a
-- terminal (stderr by default) and stays silent when output goes to a file
-- or a pipe, so logs never fill with carriage returns.
local M = {}

local WIDTH = 30

-- Whether the stream is a terminal: Lua cannot ask isatty, but a shell
-- started by os.execute inherits the process's descriptors.
local function is_terminal(stream)
  local fd = stream == io.stdout and 1 or 2
  return os.execute(string.format("[ -t %d ]", fd)) == true
end

-- progress_bar(label, { stream = io.stderr, force = false }) -> fn(report), done()
-- report fields used: documents, skipped, total (documents given, when
-- known), chunks and vectors.
function M.progress_bar(label, opts)
  opts = opts or {}
  local stream = opts.stream or io.stderr
  local on = opts.force or is_terminal(stream)
  local drawn = false
  local function draw(r)
    if not on then return end
    local seen = (r.documents or 0) + (r.skipped or 0)
    local bar
    if r.total and r.total > 0 then
      local filled = math.floor(WIDTH * math.min(seen, r.total) / r.total)
      bar = string.format("[%s%s] %d/%d documents", ("#"):rep(filled), ("."):rep(WIDTH - filled), seen, r.total)
    else
      bar = string.format("%d documents", seen)
    end
    stream:write(string.format("\r%s %s, %d chunks, %d vectors ", label, bar, r.chunks or 0, r.vectors or 0))
    stream:flush()
    drawn = true
  end
  local function done()
    if drawn then stream:write "\n" end
  end
  return draw, done
end

return M
