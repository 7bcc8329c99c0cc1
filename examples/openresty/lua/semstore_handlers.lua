-- The data-layer side of examples/openresty: the functions nginx runs in a
-- worker thread, `ngx.run_worker_thread("semstore_pool", "semstore_handlers",
-- name, ...)` (semstore_http.lua makes those calls).
--
-- libpq, hiredis and libcurl block the thread that calls them. Called in
-- the request phase they stall every request of the nginx worker; here each
-- call runs on a thread of the `thread_pool`, in a Lua VM of its own that
-- nginx keeps and reuses, and the event loop goes on meanwhile.
--
-- What runs here: a plain LuaJIT state (package.path and package.cpath
-- copied from the worker's), with no `ngx` API to speak of and no
-- cosockets. This module is required once per VM; each VM connects with
-- the same pool name, so all of them share the process-wide pools (one
-- PostgreSQL pool, one Redis pool) of semstore's C core. Only strings,
-- numbers, booleans, nil and tables cross back to the request, so every
-- function returns an HTTP status, the JSON body as a string (encoded here
-- by semstore.json_encode: lua-cjson 2.1 prints numbers with 14 digits and
-- would mangle an id of 15 or 16 digits) and, optionally, a table of
-- response headers. A function never raises: what goes wrong becomes a
-- JSON error with a status.
--
-- Under LuaJIT an int8 beyond +-2^53 comes out of semstore as its exact
-- decimal string (a number inside that range), so such ids reach the JSON
-- as strings of digits, never rounded.
local semstore = require "semstore"

local M = {}

-- The pools' name: every VM of this process (worker threads and the
-- request-phase VM of the /..._blocking locations) joins the same pools.
local POOL_NAME = "openresty"
-- One connection per thread of the two thread pools (threads=8 each in
-- nginx.conf), and a few more for the request-phase locations.
local POOL = { size = 16, max_overflow = 4, timeout = 10 }
-- A request waits on Qdrant for seconds, not the client's defaults (30 s an
-- attempt, 120 s with retries), which suit batch jobs: a stalled Qdrant
-- would hold a thread per search for two minutes.
local QDRANT_LIMITS = { timeout = 5, connect_timeout = 2, max_retries = 2, retry_timeout = 10 }
-- how long GET /collections/:id keeps a collection in Redis
local COLLECTION_TTL = 30
-- /slow sleeps at most this long
local MAX_SLOW = 10

local db, svc, open_err

-- The db and the documents service of this VM, made on first use.
local function open()
  if db then return db, svc end
  local qdrant = os.getenv "QDRANT_URL"
  if qdrant then
    qdrant = { url = qdrant, api_key = os.getenv "QDRANT_API_KEY" }
    for k, v in pairs(QDRANT_LIMITS) do qdrant[k] = v end
  end
  local d, err = semstore.connect { name = POOL_NAME, pool = POOL, qdrant = qdrant }
  if not d then return nil, err end
  local s
  s, err = semstore.services.documents(d)
  if not s then
    d:close()
    return nil, err
  end
  db, svc = d, s
  return db, svc
end

-- an error's kind as an HTTP status: a store that fails is a bad gateway
-- or unavailable, never this server's internal error
local STATUS = {
  input = 400, not_found = 404, access_denied = 403, conflict = 409,
  pool = 503, connection = 503, timeout = 504, qdrant = 502, redis = 502,
}

local function encode(value)
  local text, err = semstore.json_encode(value)
  if not text then
    return semstore.json_encode { error = { kind = "internal", message = "could not encode the response: " .. tostring(err and err.message or err) } }
  end
  return text
end

local function reply(status, value, headers)
  return status, encode(value), headers
end

-- nil, err (a semstore error table, or anything raised) as a JSON error.
local function fail(err, status)
  local kind, message = "internal", tostring(err)
  if type(err) == "table" then
    kind, message = tostring(err.kind or "internal"), tostring(err.message or "error")
  end
  return reply(status or STATUS[kind] or 500, { error = { kind = kind, message = message, code = type(err) == "table" and err.code or nil } })
end

-- fn(db, svc, ...) under pcall, after open(): a raise is a 500, never a
-- failed run_worker_thread with an empty message (a raised table has no text).
local function guarded(fn)
  return function(...)
    local d, s = open()
    if not d then return fail(s, 503) end
    local res = { pcall(fn, d, s, ...) }
    if not res[1] then return fail(res[2], 500) end
    return res[2], res[3], res[4]
  end
end

-- A positive integer argument, written as plain decimal digits (not
-- "1.0000000000000001", "1e3" or "0x10", which tonumber would round or
-- read): a number within 2^53, and beyond it the digits themselves, as
-- semstore takes and gives an int8 under LuaJIT.
local function integer_arg(v, what)
  if v == nil then return nil end
  if type(v) ~= "string" or not v:match "^[1-9]%d*$" or #v > 19 or (#v == 19 and v > "9223372036854775807") then
    return nil, semstore.error { kind = "input", message = what .. " must be a positive integer (decimal digits)" }
  end
  local n = tonumber(v)
  if n < 2 ^ 53 then return n end
  return v
end

-- GET /health: one round trip to each store; 503 when one is unhealthy.
M.health = guarded(function(d)
  local report = d:health()
  return reply(report.ok and 200 or 503, report)
end)

-- GET /search?collection=UUID&q=TEXT&mode=dense|hybrid&limit=N&user_id=N:
-- { hits = [ { chunk_id, document_id, file_name, content, score } ] }.
-- user_id stands for the caller an application would authenticate.
M.search = guarded(function(_, s, args)
  if type(args) ~= "table" then args = {} end
  local limit, err = integer_arg(args.limit, "limit")
  if err then return fail(err) end
  local user_id
  user_id, err = integer_arg(args.user_id, "user_id")
  if err then return fail(err) end
  if not user_id then return fail(semstore.error { kind = "input", message = "user_id is required (whose read permission is checked)" }) end
  if type(args.collection) ~= "string" then return fail(semstore.error { kind = "input", message = "collection is required" }) end
  if type(args.q) ~= "string" then return fail(semstore.error { kind = "input", message = "q is required" }) end
  local hits
  hits, err = s:search(args.collection, args.q, { mode = args.mode or "dense", limit = limit, user_id = user_id })
  if not hits then return fail(err) end
  return reply(200, { hits = semstore.array(hits) })
end)

-- POST /documents with { collection =, content =, metadata = }: creates the
-- document, its chunks and its points; 201 with { document =, queued = }
-- (queued: Qdrant failed and the indexing waits in the re-index queue).
M.create_document = guarded(function(d, s, body)
  if type(body) ~= "string" or body == "" then return fail(semstore.error { kind = "input", message = "a JSON body is required" }) end
  -- big_integers: a metadata number beyond 2^53 stays a number, digits and
  -- all, on its way to the jsonb column (LuaJIT's numbers cannot hold it)
  local req, err = semstore.json_decode(body, { big_integers = "json_integer" })
  if req == nil then return fail(err or semstore.error { kind = "input", message = "the body is not JSON" }) end
  if type(req) ~= "table" or type(req.collection) ~= "string" then
    return fail(semstore.error { kind = "input", message = "the body must be { collection =, content =, metadata = }" })
  end
  local metadata = req.metadata
  if metadata == semstore.null then metadata = nil end
  local doc, queued = s:create_document(req.collection, req.content, metadata)
  if not doc then return fail(queued) end
  -- the collection's counters moved: its cached copy goes
  d.cache:delete("collection:" .. req.collection)
  return reply(201, { document = doc, queued = queued })
end)

-- GET /collections/:id: from Redis when cached (X-Cache: hit), else from
-- PostgreSQL and then cached for COLLECTION_TTL seconds (X-Cache: miss).
-- A Redis outage is a miss: remember() falls back to PostgreSQL.
M.collection = guarded(function(d, _, id)
  if type(id) ~= "string" or id == "" then return fail(semstore.error { kind = "input", message = "a collection id is required" }) end
  local computed, failure = false, nil
  local col, err = d.cache:remember("collection:" .. id, COLLECTION_TTL, function()
    computed = true
    local c, e = d.collections:get_by_uuid(id)
    failure = e
    return c
  end)
  if col == nil then return fail(failure or err) end
  return reply(200, { collection = col }, { ["X-Cache"] = computed and "miss" or "hit" })
end)

-- GET /slow?seconds=S: SELECT pg_sleep(S), a stand-in for a slow query.
M.slow = guarded(function(d, _, seconds)
  local n = seconds == nil and 1 or tonumber(seconds)
  if not n or n ~= n or n < 0 or n > MAX_SLOW then return fail(semstore.error { kind = "input", message = "seconds must be between 0 and " .. MAX_SLOW }) end
  local rows, err = d.pg:query("SELECT pg_sleep($1::float8), $1::float8 AS slept", n)
  if not rows then return fail(err) end
  return reply(200, { slept = rows[1].slept })
end)

return M
