-- db.qdrant: Qdrant's REST API, collections, points, queries, aliases and
-- snapshots. Requests, batching, parallel upserts and retries run in the C
-- core (csrc/core/qdrant.c, through csrc/lua/qdrant_handle.c); this file
-- checks options, shapes request bodies and reads answers.
local compat = require "semstore.compat"
compat() -- Lua 5.4's library, under LuaJIT too (semstore/compat.lua)
local core = require "semstore.core"
local config = require "semstore.config"
local options = require "semstore.options"

local M = {}

local Qdrant = {}
Qdrant.__index = Qdrant

local input_error, check = options.input_error, options.check

local LIMIT_OPTIONS = { "timeout", "connect_timeout", "max_retries", "retry_timeout" }

local function with(list, ...)
  local out = { table.unpack(list) }
  for _, v in ipairs { ... } do out[#out + 1] = v end
  return out
end

-- A collection or alias name as one path segment: percent-encoded, so a
-- name can never reach another endpoint.
local function segment(name, what)
  if type(name) ~= "string" or name == "" then
    return input_error("%s must be a non-empty string", what or "the collection name")
  end
  return config.percent_encode(name)
end


-- The limits among opts, for one call.
local function limits(opts)
  local l = {}
  for _, k in ipairs(LIMIT_OPTIONS) do l[k] = opts[k] end
  return l
end

-- The error for an answer in a shape Qdrant never gives (another server on
-- its port): an error, never a raise in the caller.
local function not_qdrant(request, what)
  return nil, core.error { kind = "qdrant", message = request .. " answered without " .. what .. ": not Qdrant?" }
end

-- Sends one request; the answer's `result`, or nil, err.
function Qdrant:_call(method, path, body, opts)
  local answer, err = self.handle:request(method, path, body, opts)
  if not answer then return nil, err end
  if type(answer) == "table" and answer.result ~= nil then return answer.result end
  return answer
end

local DISTANCES = { cosine = "Cosine", dot = "Dot", euclid = "Euclid", euclidean = "Euclid", manhattan = "Manhattan" }
local VECTOR_OPTIONS = { "size", "distance", "on_disk", "hnsw", "quantization", "datatype", "multivector" }

-- { size =, distance =, on_disk = } in Qdrant's words (hnsw_config, ...).
local function vector_params(v, what)
  local ok, err = check(v, VECTOR_OPTIONS, what)
  if not ok then return nil, err end
  if math.type(v.size) ~= "integer" or v.size < 1 then
    return input_error("%s.size must be a positive integer", what)
  end
  local distance = v.distance or "Cosine"
  distance = type(distance) == "string" and DISTANCES[distance:lower()]
  if not distance then
    return input_error("%s.distance must be Cosine, Dot, Euclid or Manhattan, not %s", what, tostring(v.distance))
  end
  return {
    size = v.size, distance = distance, on_disk = v.on_disk, hnsw_config = v.hnsw,
    quantization_config = v.quantization, datatype = v.datatype, multivector_config = v.multivector,
  }
end

-- vectors = { size =, distance = } (one unnamed vector) or { name = {...}, ... }
local function vectors_config(vectors)
  if type(vectors) ~= "table" then return input_error("vectors must be a table: { size =, distance = } or named ones") end
  -- one unnamed vector has a size; a vector may also be named "size"
  if type(vectors.size) ~= "table" and vectors.size ~= nil then return vector_params(vectors, "vectors") end
  local out, n = {}, 0
  for name, v in pairs(vectors) do
    if type(name) ~= "string" then return input_error("vectors: a vector's name must be a string") end
    local p, err = vector_params(v, "vectors." .. name)
    if not p then return nil, err end
    out[name], n = p, n + 1
  end
  if n == 0 then return input_error("vectors is empty: give { size =, distance = } or named vectors") end
  return out
end

local SPARSE_OPTIONS = { "modifier", "index" }

local function sparse_config(sparse)
  if type(sparse) ~= "table" then return input_error("sparse_vectors must be a table of named sparse vectors") end
  local out = {}
  for name, v in pairs(sparse) do
    if type(name) ~= "string" then return input_error("sparse_vectors: a vector's name must be a string") end
    local ok, err = check(v, SPARSE_OPTIONS, "sparse_vectors." .. name)
    if not ok then return nil, err end
    if v.modifier ~= nil and v.modifier ~= "idf" and v.modifier ~= "none" then
      return input_error("sparse_vectors.%s.modifier must be \"idf\" or \"none\"", name)
    end
    out[name] = { modifier = v.modifier, index = v.index }
  end
  return out
end

local COLLECTION_OPTIONS = with(LIMIT_OPTIONS, "vectors", "sparse_vectors", "hnsw", "optimizers", "quantization",
  "wal", "shard_number", "replication_factor", "write_consistency_factor", "on_disk_payload", "sharding_method")

-- The sizes upsert checks vectors against: { [""] = size } for one
-- unnamed vector, { name = size or "sparse" } for named ones.
local function dims_of(params)
  local dims = {}
  local vectors = params and params.vectors
  if type(vectors) == "table" and type(vectors.size) == "number" then
    dims[""] = vectors.size
  elseif type(vectors) == "table" then
    for name, v in pairs(vectors) do dims[name] = v.size end
  end
  if params and type(params.sparse_vectors) == "table" then
    for name in pairs(params.sparse_vectors) do dims[name] = "sparse" end
  end
  return dims
end

function Qdrant:create_collection(name, opts)
  local path, err = segment(name)
  if not path then return nil, err end
  opts, err = check(opts, COLLECTION_OPTIONS, "create_collection's options")
  if not opts then return nil, err end
  if opts.vectors == nil and opts.sparse_vectors == nil then
    return input_error("create_collection needs vectors (and/or sparse_vectors)")
  end
  local body = {
    hnsw_config = opts.hnsw, optimizers_config = opts.optimizers, quantization_config = opts.quantization,
    wal_config = opts.wal, shard_number = opts.shard_number, replication_factor = opts.replication_factor,
    write_consistency_factor = opts.write_consistency_factor, on_disk_payload = opts.on_disk_payload,
    sharding_method = opts.sharding_method,
  }
  if opts.vectors ~= nil then
    body.vectors, err = vectors_config(opts.vectors)
    if not body.vectors then return nil, err end
  end
  if opts.sparse_vectors ~= nil then
    body.sparse_vectors, err = sparse_config(opts.sparse_vectors)
    if not body.sparse_vectors then return nil, err end
  end
  self.dims[name] = nil
  return self:_call("PUT", "/collections/" .. path, body, limits(opts))
end

local UPDATE_OPTIONS = with(LIMIT_OPTIONS, "optimizers", "hnsw", "vectors", "sparse_vectors", "quantization", "params")

function Qdrant:update_collection(name, opts)
  local path, err = segment(name)
  if not path then return nil, err end
  opts, err = check(opts, UPDATE_OPTIONS, "update_collection's options")
  if not opts then return nil, err end
  return self:_call("PATCH", "/collections/" .. path, {
    optimizers_config = opts.optimizers, hnsw_config = opts.hnsw, vectors = opts.vectors,
    sparse_vectors = opts.sparse_vectors, quantization_config = opts.quantization, params = opts.params,
  }, limits(opts))
end

function Qdrant:collection_exists(name)
  local path, err = segment(name)
  if not path then return nil, err end
  local result
  result, err = self:_call("GET", "/collections/" .. path .. "/exists")
  if not result then return nil, err end
  return result.exists == true
end

function Qdrant:delete_collection(name)
  local path, err = segment(name)
  if not path then return nil, err end
  self.dims[name] = nil
  return self:_call("DELETE", "/collections/" .. path)
end

-- opts: the limits for this call (timeout, connect_timeout, max_retries,
-- retry_timeout).
function Qdrant:list_collections(opts)
  local err
  opts, err = check(opts, LIMIT_OPTIONS, "list_collections' options")
  if not opts then return nil, err end
  local result
  result, err = self:_call("GET", "/collections", nil, opts)
  if not result then return nil, err end
  if type(result) ~= "table" or type(result.collections) ~= "table" then
    return not_qdrant("GET /collections", "a list of collections")
  end
  local names = {}
  for i, c in ipairs(result.collections) do
    if type(c) ~= "table" or type(c.name) ~= "string" then return not_qdrant("GET /collections", "collection names") end
    names[i] = c.name
  end
  table.sort(names)
  return names
end

-- Qdrant's collection info: status, optimizer_status, points_count,
-- indexed_vectors_count, segments_count, config, payload_schema.
function Qdrant:get_collection(name, opts)
  local path, err = segment(name)
  if not path then return nil, err end
  opts, err = check(opts, LIMIT_OPTIONS, "get_collection's options")
  if not opts then return nil, err end
  local info
  info, err = self:_call("GET", "/collections/" .. path, nil, opts)
  if not info then return nil, err end
  if type(info.config) == "table" then self.dims[name] = dims_of(info.config.params) end
  return info
end

local FIELD_TYPES = { keyword = true, integer = true, float = true, bool = true, datetime = true, text = true,
  uuid = true, geo = true }

function Qdrant:create_payload_index(name, field, schema)
  local path, err = segment(name)
  if not path then return nil, err end
  if type(field) ~= "string" or field == "" then return input_error("the payload field must be a non-empty string") end
  if type(schema) == "string" and not FIELD_TYPES[schema] then
    return input_error("the index type must be keyword, integer, float, bool, datetime, text, uuid or geo, not %s", schema)
  elseif type(schema) ~= "string" and type(schema) ~= "table" then
    return input_error("the index type must be a name (keyword, integer, ...) or Qdrant's params table")
  end
  return self:_call("PUT", "/collections/" .. path .. "/index?wait=true", { field_name = field, field_schema = schema })
end

-- actions: { create = { alias =, collection = } }, { delete = { alias = } },
-- { rename = { from =, to = } }, or Qdrant's own create_alias, ... forms.
local ALIAS_ACTIONS = {
  create = { { "alias", "collection" }, function(a) return { create_alias = { alias_name = a.alias, collection_name = a.collection } } end },
  delete = { { "alias" }, function(a) return { delete_alias = { alias_name = a.alias } } end },
  rename = { { "from", "to" }, function(a) return { rename_alias = { old_alias_name = a.from, new_alias_name = a.to } } end },
}

function Qdrant:update_aliases(actions)
  if type(actions) ~= "table" or #actions == 0 then return input_error("update_aliases takes an array of actions") end
  local out = {}
  for i, a in ipairs(actions) do
    if type(a) ~= "table" then return input_error("alias action %d must be a table", i) end
    if a.create_alias or a.delete_alias or a.rename_alias then
      out[i] = a
    else
      local verb, args = next(a)
      local action = ALIAS_ACTIONS[verb]
      if not action or next(a, verb) ~= nil then
        return input_error("alias action %d must be one of create, delete or rename", i)
      end
      local ok, err = check(args, action[1], "alias action " .. i .. " (" .. verb .. ")")
      if not ok then return nil, err end
      for _, field in ipairs(action[1]) do
        if type(args[field]) ~= "string" or args[field] == "" then
          return input_error("alias action %d (%s) needs %s, a name", i, verb, field)
        end
      end
      out[i] = action[2](args)
    end
  end
  -- an alias may now name another collection, of other sizes
  self.dims = {}
  return self:_call("POST", "/collections/aliases", { actions = out })
end

-- An array of { alias =, collection = }.
function Qdrant:list_aliases()
  local result, err = self:_call("GET", "/aliases")
  if not result then return nil, err end
  local out = {}
  for i, a in ipairs(result.aliases or {}) do out[i] = { alias = a.alias_name, collection = a.collection_name } end
  return out
end

local UPSERT_OPTIONS = with(LIMIT_OPTIONS, "batch_size", "max_bytes", "parallel", "wait")

-- The vector sizes of a collection, from get_collection, kept per name;
-- the second result says whether they came from what was kept.
function Qdrant:_dims(name, opts)
  if self.dims[name] then return self.dims[name], true end
  local info, err = self:get_collection(name, limits(opts))
  if not info then return nil, err end
  return self.dims[name] or {}, false
end

-- points: an array, or an iterator function returning one point a call
-- (nil at the end). Returns { points, batches, retries, seconds }; when a
-- batch finally fails, nil and the error, whose `report` lists failed_ids.
local function upsert_options(opts)
  local err
  opts, err = check(opts, UPSERT_OPTIONS, "upsert's options")
  if not opts then return nil, err end
  if opts.wait ~= nil and type(opts.wait) ~= "boolean" then return input_error("wait must be true or false") end
  return opts
end

-- q:check_upsert_options(opts) -> true | nil, err: what upsert would say of
-- opts (names and values), without a request.
function Qdrant:check_upsert_options(opts)
  local ok, err = upsert_options(opts)
  if not ok then return nil, err end
  return self.handle:check_upsert_options(opts)
end

function Qdrant:upsert(name, points, opts)
  local path, err = segment(name)
  if not path then return nil, err end
  opts, err = upsert_options(opts)
  if not opts then return nil, err end
  if type(points) ~= "table" and type(points) ~= "function" then
    return input_error("points must be an array of points or an iterator function")
  end
  local dims, kept
  dims, kept = self:_dims(name, opts)
  if not dims then return nil, kept end
  local target = "/collections/" .. path .. "/points?wait=" .. tostring(opts.wait ~= false)
  local report
  report, err = self.handle:upsert(target, points, opts, dims)
  if report then return report end
  -- Sizes kept from before may be stale: another client recreated the
  -- collection. Forget them, so the next call reads them afresh; an array
  -- refused for its vectors is tried once more with the new sizes.
  if err.kind == "input" and err.point and err.message:find("collection", 1, true) or err.status == 400 then
    self.dims[name] = nil
    if kept and type(points) == "table" and err.kind == "input" then
      local fresh
      fresh, err = self:_dims(name, opts)
      if not fresh then return nil, err end
      return self.handle:upsert(target, points, opts, fresh)
    end
  end
  return nil, err
end

-- Qdrant's advice for a large load: indexing off while loading, restored
-- after, then wait until the collection is green again.
function Qdrant:bulk_load(name, points, opts)
  local err
  opts, err = check(opts, with(UPSERT_OPTIONS, "index_timeout"), "bulk_load's options")
  if not opts then return nil, err end
  local index_timeout = opts.index_timeout or 600
  if type(index_timeout) ~= "number" or not (index_timeout >= 0) then
    return input_error("index_timeout must be a number of seconds")
  end
  local upsert_opts = {}
  for k, v in pairs(opts) do if k ~= "index_timeout" then upsert_opts[k] = v end end
  local info
  info, err = self:get_collection(name, limits(opts))
  if not info then return nil, err end
  local threshold = info.config and info.config.optimizer_config and info.config.optimizer_config.indexing_threshold
  -- null means Qdrant's default (10,000 kB); sent back as null, it would
  -- mean "unchanged" and leave indexing off
  if threshold == core.null then threshold = nil end
  local ok
  ok, err = self:update_collection(name, { optimizers = { indexing_threshold = 0 } })
  if not ok then return nil, err end
  local ran, report, upsert_err = pcall(self.upsert, self, name, points, upsert_opts)
  -- restored whatever happened, a raise included: a failed load must not
  -- leave indexing off
  ok, err = self:update_collection(name, { optimizers = { indexing_threshold = threshold or 10000 } })
  if not ran then error(report, 0) end
  if not report then return nil, upsert_err end
  if not ok then return nil, err end
  ok, err = self:wait_for_indexing(name, index_timeout)
  if not ok then return nil, err end
  return report
end

-- Until the collection's status is green; nil and a "timeout" error after
-- timeout_s seconds (default 60).
function Qdrant:wait_for_indexing(name, timeout_s)
  timeout_s = timeout_s or 60
  if type(timeout_s) ~= "number" or not (timeout_s >= 0) then return input_error("the timeout must be a number of seconds") end
  local deadline, pause = core.monotime() + timeout_s, 0.05
  while true do
    local info, err = self:get_collection(name)
    if not info then return nil, err end
    if info.status == "green" then return true end
    local left = deadline - core.monotime()
    if left <= 0 then
      return nil, core.error { kind = "timeout",
        message = string.format("collection %s is still %s after %g s", name, tostring(info.status), timeout_s) }
    end
    core.sleep(math.min(pause, left))
    pause = math.min(pause * 2, 1)
  end
end

local QUERY_OPTIONS = with(LIMIT_OPTIONS, "query", "using", "limit", "offset", "filter", "score_threshold",
  "with_payload", "with_vector", "prefetch", "fusion", "params", "lookup_from")

local FUSIONS = { rrf = true, dbsf = true }

local function query_body(q, i)
  local what = i and string.format("query %d", i) or "the query"
  if type(q) ~= "table" then return input_error("%s must be a table { query =, limit =, ... }", what) end
  local ok, err = check(q, QUERY_OPTIONS, what)
  if not ok then return nil, err end
  if q.fusion ~= nil and not FUSIONS[q.fusion] then return input_error("%s: fusion must be \"rrf\" or \"dbsf\"", what) end
  if q.fusion ~= nil and q.query ~= nil then return input_error("%s gives both query and fusion", what) end
  if q.limit ~= nil and (math.type(q.limit) ~= "integer" or q.limit < 1) then
    return input_error("%s: limit must be a positive integer", what)
  end
  local with_payload = q.with_payload
  if with_payload == nil then with_payload = true end
  return {
    query = q.fusion and { fusion = q.fusion } or q.query, using = q.using, limit = q.limit, offset = q.offset,
    filter = q.filter, score_threshold = q.score_threshold, with_payload = with_payload,
    with_vector = q.with_vector or false, prefetch = q.prefetch, params = q.params, lookup_from = q.lookup_from,
  }
end

-- An array of { id, score, payload, vector }.
function Qdrant:query(name, q)
  local path, err = segment(name)
  if not path then return nil, err end
  local body
  body, err = query_body(q)
  if not body then return nil, err end
  local result
  result, err = self:_call("POST", "/collections/" .. path .. "/points/query", body, limits(q))
  if not result then return nil, err end
  return result.points
end

-- One round trip for several queries: an array of arrays of hits.
function Qdrant:query_batch(name, queries)
  local path, err = segment(name)
  if not path then return nil, err end
  if type(queries) ~= "table" or #queries == 0 then return input_error("query_batch takes an array of queries") end
  local searches = {}
  for i, q in ipairs(queries) do
    searches[i], err = query_body(q, i)
    if not searches[i] then return nil, err end
  end
  local result
  result, err = self:_call("POST", "/collections/" .. path .. "/points/query/batch", { searches = searches })
  if not result then return nil, err end
  local out = {}
  for i, r in ipairs(result) do out[i] = r.points end
  return out
end

-- A point id as Qdrant reads it: the digits of an id beyond 2^53 (how
-- LuaJIT gets them back) as a bare JSON number, since a string id must be
-- a UUID.
local function json_id(id)
  if type(id) == "string" and id:match "^%d+$" and #id <= 20 then
    local ok, n = pcall(core.json_integer, id)
    if ok then return n end
  end
  return id
end

-- ids (an array) or a filter (a table with must, should, must_not or
-- min_should) as Qdrant's points selector.
local function selector(ids_or_filter)
  if type(ids_or_filter) ~= "table" then return input_error("give an array of point ids or a filter table") end
  if #ids_or_filter > 0 then
    local ids = {}
    for i, id in ipairs(ids_or_filter) do ids[i] = json_id(id) end
    return { points = ids }
  end
  for k in pairs(ids_or_filter) do
    if k ~= "must" and k ~= "should" and k ~= "must_not" and k ~= "min_should" then
      return input_error("%s is neither an array of ids nor a filter (must, should, must_not, min_should)", tostring(k))
    end
  end
  if next(ids_or_filter) == nil then return input_error("an empty table selects nothing: give ids or a filter") end
  return { filter = ids_or_filter }
end

function Qdrant:delete_points(name, ids_or_filter)
  local path, err = segment(name)
  if not path then return nil, err end
  local body
  body, err = selector(ids_or_filter)
  if not body then return nil, err end
  return self:_call("POST", "/collections/" .. path .. "/points/delete?wait=true", body)
end

function Qdrant:set_payload(name, payload, ids_or_filter)
  local path, err = segment(name)
  if not path then return nil, err end
  if type(payload) ~= "table" then return input_error("the payload must be a table of fields") end
  local body
  body, err = selector(ids_or_filter)
  if not body then return nil, err end
  body.payload = payload
  return self:_call("POST", "/collections/" .. path .. "/points/payload?wait=true", body)
end

-- The exact number of points (matching the filter, when given).
function Qdrant:count(name, filter)
  local path, err = segment(name)
  if not path then return nil, err end
  local result
  result, err = self:_call("POST", "/collections/" .. path .. "/points/count", { filter = filter, exact = true })
  if not result then return nil, err end
  if type(result) ~= "table" or math.type(result.count) ~= "integer" then return not_qdrant("POST points/count", "a count") end
  return result.count
end

local SCROLL_OPTIONS = with(LIMIT_OPTIONS, "filter", "with_payload", "with_vector", "batch")

-- for point in db.qdrant:scroll(name, opts) do ... end: every point, a page
-- of `batch` at a time. A failure midway raises the error, so a loop never
-- ends early in silence.
function Qdrant:scroll(name, opts)
  local path, err = segment(name)
  if not path then return nil, err end
  opts, err = check(opts, SCROLL_OPTIONS, "scroll's options")
  if not opts then return nil, err end
  local batch = opts.batch or 256
  if math.type(batch) ~= "integer" or batch < 1 then return input_error("batch must be a positive integer") end
  local with_payload = opts.with_payload
  if with_payload == nil then with_payload = true end
  local page, i, offset, done = {}, 0, nil, false
  return function()
    i = i + 1
    while page[i] == nil do
      if done then return nil end
      local result, e = self:_call("POST", "/collections/" .. path .. "/points/scroll", {
        filter = opts.filter, limit = batch, offset = offset, with_payload = with_payload,
        with_vector = opts.with_vector or false,
      }, limits(opts))
      if not result then error(e, 2) end
      page, i = result.points or {}, 1
      offset = result.next_page_offset
      done = offset == nil or offset == core.null
      if not done then offset = json_id(offset) end
    end
    return page[i]
  end
end

function Qdrant:create_snapshot(name)
  local path, err = segment(name)
  if not path then return nil, err end
  return self:_call("POST", "/collections/" .. path .. "/snapshots?wait=true")
end

function Qdrant:list_snapshots(name)
  local path, err = segment(name)
  if not path then return nil, err end
  return self:_call("GET", "/collections/" .. path .. "/snapshots")
end

-- location: a URL Qdrant can read (file:///... on its own disk, http://...).
function Qdrant:recover_snapshot(name, location)
  local path, err = segment(name)
  if not path then return nil, err end
  if type(location) ~= "string" or location == "" then return input_error("the snapshot location must be a URL") end
  self.dims[name] = nil
  return self:_call("PUT", "/collections/" .. path .. "/snapshots/recover?wait=true", { location = location })
end

function Qdrant:url() return self.handle:url() end

function Qdrant:close() self.handle:close() end

function Qdrant:__tostring() return tostring(self.handle) end

-- Wraps a core client.
function M.new(handle)
  return setmetatable({ handle = handle, dims = {} }, Qdrant)
end

-- What db.qdrant is when no Qdrant is configured: every method returns the
-- same clear input error.
local unconfigured = setmetatable({}, {
  __index = function(_, method)
    if Qdrant[method] == nil then return nil end
    return function()
      return input_error("Qdrant is not configured: pass connect{ qdrant = URL } or set QDRANT_URL (or QDRANT_HOST)")
    end
  end,
  __tostring = function() return "semstore.qdrant(not configured)" end,
})
M.unconfigured = unconfigured
M.methods = Qdrant

return M
