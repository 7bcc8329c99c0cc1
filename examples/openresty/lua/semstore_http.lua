-- The request side of examples/openresty: runs in nginx's request phase
-- (content_by_lua), hands the work to semstore_handlers.lua on a thread of
-- the thread_pool, and writes what comes back. Nothing here calls semstore.
--
--   require("semstore_http").run("search", args)           -- in a worker thread
--   require("semstore_http").run_blocking("search", args)  -- in the request phase: for comparison only
local cjson = require "cjson.safe"

local M = {}

-- nginx.conf's thread pools: the calls that wait on Qdrant have threads of
-- their own, so a stalled Qdrant holds those and never the ones that
-- PostgreSQL- and Redis-only requests run on
local THREAD_POOL, QDRANT_THREAD_POOL = "semstore_pool", "semstore_qdrant_pool"
local ON_QDRANT = { search = true, create_document = true }
local HANDLERS = "semstore_handlers"

local function respond(status, body, headers)
  ngx.status = status
  ngx.header["Content-Type"] = "application/json"
  if type(headers) == "table" then
    for k, v in pairs(headers) do ngx.header[k] = v end
  end
  ngx.print(body)
  ngx.print("\n")
end

-- fn_name(...) of semstore_handlers on a worker thread; the request's
-- coroutine waits (yields) and the worker serves other requests meanwhile.
-- ok is false when the thread could not run it at all: no free Lua VM
-- (lua_worker_thread_vm_pool_size), a full queue, or the module failing to load.
function M.run(fn_name, ...)
  local pool = ON_QDRANT[fn_name] and QDRANT_THREAD_POOL or THREAD_POOL
  local ok, status, body, headers = ngx.run_worker_thread(pool, HANDLERS, fn_name, ...)
  if not ok then
    ngx.log(ngx.ERR, "semstore worker thread: ", tostring(status))
    return respond(503, cjson.encode { error = { kind = "unavailable", message = tostring(status) } })
  end
  return respond(status, body, headers)
end

-- The same call made in the request phase: the worker's event loop waits
-- for PostgreSQL, Redis and Qdrant, and so does every other request of the
-- worker. Here only so the spec and the benchmark can show the difference.
function M.run_blocking(fn_name, ...)
  local handlers = require(HANDLERS)
  return respond(handlers[fn_name](...))
end

-- The request's arguments that the handlers read, as plain strings (a
-- repeated argument's first value; a bare `?flag` is left out).
function M.args(names)
  local args, out = ngx.req.get_uri_args(), {}
  for _, name in ipairs(names) do
    local v = args[name]
    if type(v) == "table" then v = v[1] end
    if type(v) == "string" then out[name] = v end
  end
  return out
end

-- The request body as a string (nil when there is none), read from the
-- temporary file nginx spilled it to when it was larger than client_body_buffer_size.
function M.body()
  ngx.req.read_body()
  local body = ngx.req.get_body_data()
  if body then return body end
  local path = ngx.req.get_body_file()
  if not path then return nil end
  local f = io.open(path, "rb")
  if not f then return nil end
  body = f:read "*a"
  f:close()
  return body
end

return M
