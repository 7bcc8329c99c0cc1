-- semstore.services.documents(db, opts): the workflows over the three
-- stores, in Lua over the repositories. PostgreSQL is the source of truth:
-- it is written first, and Qdrant and Redis follow it. Work on Qdrant that
-- fails goes to the durable queue reindex_jobs (migration 0005), written in
-- the same transaction as the document, and retry_pending() drains it.
--
-- Qdrant names: the collection row's vector_store_name is an alias of the
-- physical collection vector_store_name.."_v"..generation, so a rebuild can
-- fill a new one and swap the alias at once. The settings (generation,
-- vector size, distance, sparse) live in the row's qdrant_collections, so
-- a Qdrant that lost its data is re-created from them by any writer.
local compat = require "semstore.compat"
compat() -- Lua 5.4's library, under LuaJIT too (semstore/compat.lua)
local core = require "semstore.core"
local embedders = require "semstore.embedders"
local options = require "semstore.options"

local M = {}

local Documents = {}
Documents.__index = Documents

local QUEUE_CHANNEL = "semstore_reindex"
-- A claimed job is left alone this long: longer than a Qdrant call's whole
-- retry budget (120 s by default), so a live worker keeps its job, and a
-- dead one's job comes back.
local LEASE_SECONDS = 300
local BACKOFF_MAX = 300
-- the worker's first wait after it lost its server, doubling to max_wait
local BACKOFF_FIRST = 0.1
-- the longest one wait for a notification may be (a day)
local MAX_WAIT = 86400
-- the cache keeps values at most 2^53 ms
local MAX_TTL = 2 ^ 53 / 1000
-- get_chunks_by_document's limit: a document has at most this many chunks.
local MAX_CHUNKS_PER_DOCUMENT = 10000
local DENSE, SPARSE = "dense", "text"
-- the first key of rebuild_vector_index's advisory locks ("sere")
local REBUILD_LOCK = 0x73657265

local input_error, check_options = options.input_error, options.check

-- The repositories on a transaction's connection; semstore is required at
-- call time, since it requires this module while it loads.
local function repositories(pg) return require("semstore").repositories(pg) end

local function positive_integer(v, what, default)
  if v == nil then return default end
  if math.type(v) ~= "integer" or v < 1 then return input_error("%s must be a positive integer", what) end
  return v
end

local function message_of(err)
  if type(err) == "table" and err.message then return tostring(err.message) end
  return tostring(err)
end

-- A failure in Qdrant is tagged err.store = "qdrant": an operation that
-- failed there leaves its collection `degraded` (PostgreSQL holds the
-- documents, the queue or a rerun heals it), any other failure `error`.
local function qdrant_failure(err)
  -- the client's refusal of what it was given is not Qdrant failing
  if type(err) == "table" and err.kind ~= "input" then err.store = "qdrant" end
  return nil, err
end

local function failed_status(err)
  return type(err) == "table" and err.store == "qdrant" and "degraded" or "error"
end

-- ---- embedding --------------------------------------------------------

-- The embedder as { dense = fn(texts), sparse = fn(texts) or nil, dim }.
local function wrap_embedder(e)
  if e == nil then e = embedders.local_hash() end
  if type(e) == "function" then return { dense = e, name = "function" } end
  local mt = getmetatable(e)
  local callable = mt and type(mt.__call) == "function"
  if type(e) ~= "table" or (type(e.dense) ~= "function" and not callable) then
    return input_error("embedder must be a function(texts) -> vectors, or an object with dense(texts)")
  end
  if type(e.dense) ~= "function" then return { dense = function(texts) return e(texts) end, name = tostring(e) } end
  return {
    dense = function(texts) return e:dense(texts) end,
    sparse = type(e.sparse) == "function" and function(texts) return e:sparse(texts) end or nil,
    dim = math.type(e.dim) == "integer" and e.dim or nil,
    name = tostring(e),
  }
end

-- Whether every v[1..size] is a finite number.
local function finite_numbers(v, size)
  for j = 1, size do
    local x = v[j]
    if type(x) ~= "number" or x ~= x or x == math.huge or x == -math.huge then return false end
  end
  return true
end

-- Calls fn(texts) and checks it gave one table per text, of `size` finite
-- numbers each when size is given. What the embedder raises, or a vector
-- that does not fit, becomes an `embedder` error rather than going up
-- through the workflow's bookkeeping (or to a queue that retries it for ever).
local function embed_with(fn, texts, what, size)
  local ok, vectors = pcall(fn, texts)
  if not ok then return nil, core.error { kind = "embedder", message = what .. " embedder failed: " .. message_of(vectors) } end
  if type(vectors) ~= "table" or #vectors ~= #texts then
    return nil, core.error { kind = "embedder", message = string.format("the %s embedder returned %s for %d texts",
      what, type(vectors) == "table" and (#vectors .. " vectors") or type(vectors), #texts) }
  end
  for i = 1, #texts do
    local v = vectors[i]
    if type(v) ~= "table" then
      return nil, core.error { kind = "embedder", message = string.format("the %s embedder's vector %d is a %s", what, i, type(v)) }
    end
    if size and (#v ~= size or not finite_numbers(v, size)) then
      return nil, core.error { kind = "embedder", message = string.format(
        "the %s embedder's vector %d is not %d finite numbers (it has %d entries)", what, i, size, #v) }
    end
    if what == "sparse" and (type(v.indices) ~= "table" or type(v.values) ~= "table" or #v.indices ~= #v.values
                             or not finite_numbers(v.values, #v.values)) then
      return nil, core.error { kind = "embedder",
        message = string.format("the sparse embedder's vector %d is not { indices =, values = } of one length, "
          .. "its values finite numbers", i) }
    end
  end
  return vectors
end

-- The dense vectors' size, from one probe text (once per service): an
-- embedder's own `dim` is checked against it before any settings are
-- written from it.
function Documents:_dim()
  if not self.embedder.probed then
    local v, err = embed_with(self.embedder.dense, { "semstore" }, "dense")
    if not v then return nil, err end
    if #v[1] < 1 then return nil, core.error { kind = "embedder", message = "the dense embedder gave an empty vector" } end
    if self.embedder.dim and self.embedder.dim ~= #v[1] then
      return nil, core.error { kind = "embedder", message = string.format(
        "the embedder says dim = %d but gives vectors of %d numbers", self.embedder.dim, #v[1]) }
    end
    self.embedder.dim, self.embedder.probed = #v[1], true
  end
  return self.embedder.dim
end

-- ---- the Qdrant collection ---------------------------------------------

-- The row's Qdrant settings, made from the embedder the first time.
function Documents:_settings(col)
  local s = col.qdrant_collections
  local dim, err = self:_dim()
  if not dim then return nil, err end
  if s ~= nil and s ~= core.null then
    if type(s) ~= "table" or math.type(s.generation) ~= "integer" or type(s.dense) ~= "table"
      or math.type(s.dense.size) ~= "integer" or type(s.dense.distance) ~= "string" then
      return input_error("collection %s's qdrant_collections does not hold semstore's Qdrant settings "
        .. "({ generation =, dense = { size =, distance = }, sparse = })", col.name)
    end
    if s.dense.size ~= dim then
      return input_error("collection %s was indexed with vectors of %d numbers; this embedder gives %d",
        col.name, s.dense.size, dim)
    end
    if s.sparse and not self.embedder.sparse then
      return input_error("collection %s has sparse vectors: its embedder needs sparse(texts)", col.name)
    end
    return s
  end
  s = { generation = 1, dense = { size = dim, distance = "Cosine" }, sparse = self.embedder.sparse ~= nil }
  -- only while the row has none: another writer may have made them since
  -- the row was read, and its vectors are what Qdrant holds
  local rows
  rows, err = self.db.pg:query([[UPDATE collections SET qdrant_collections = $2::jsonb, updated_at = now()
    WHERE id = $1 AND qdrant_collections IS NULL RETURNING id]], col.id, s)
  if not rows then return nil, err end
  if #rows == 0 then
    local fresh
    fresh, err = self.db.collections:get_by_uuid(col.id)
    if not fresh then return nil, err end
    if fresh.qdrant_collections == nil or fresh.qdrant_collections == core.null then
      return input_error("collection %s's qdrant_collections was cleared while it was being set", col.name)
    end
    col.qdrant_collections = fresh.qdrant_collections
    return self:_settings(col)
  end
  col.qdrant_collections = s
  return s
end

local function physical(col, generation) return col.vector_store_name .. "_v" .. generation end

local function create_physical(q, name, s)
  local spec = { vectors = { [DENSE] = { size = s.dense.size, distance = s.dense.distance } } }
  if s.sparse then spec.sparse_vectors = { [SPARSE] = { modifier = "idf" } } end
  local ok, err = q:create_collection(name, spec)
  -- another writer made it meanwhile
  if not ok and not (err.kind == "qdrant" and (err.status == 409 or err.status == 400) and q:get_collection(name)) then
    return nil, err
  end
  q:create_payload_index(name, "document_id", "keyword")
  return true
end

-- Makes sure the alias and its collection exist in Qdrant (a Qdrant that
-- restarted empty heals itself); returns the settings.
function Documents:_ensure_qdrant(col)
  local s, err = self:_settings(col)
  if not s then return nil, err end
  if self.ensured[col.id] then return s end
  local q = self.db.qdrant
  local info
  info, err = q:get_collection(col.vector_store_name)
  if not info then
    if err.kind ~= "qdrant" or err.status ~= 404 then return qdrant_failure(err) end
    local name = physical(col, s.generation)
    if not q:get_collection(name) then
      local ok
      ok, err = create_physical(q, name, s)
      if not ok then return qdrant_failure(err) end
    end
    local ok
    ok, err = q:update_aliases { { create = { alias = col.vector_store_name, collection = name } } }
    if not ok and not q:get_collection(col.vector_store_name) then return qdrant_failure(err) end
  end
  self.ensured[col.id] = true
  return s
end

-- Forgets what _ensure_qdrant learnt, after a Qdrant failure.
function Documents:_unsure(col) self.ensured[col.id] = nil end

-- The Qdrant collections a write goes to: the alias, and the collection a
-- zero-downtime rebuild is filling. Read afresh for each write, after the
-- chunks were committed: a rebuild that started earlier reads those chunks
-- itself, and one that starts later is seen here, so no chunk misses the
-- new collection.
function Documents:_write_targets(col)
  -- a staging collection counts only while its rebuild runs, that is holds
  -- its advisory lock: one left by a rebuild that died is forgotten (and
  -- the next rebuild deletes it)
  local rows, err = self.db.pg:query([[SELECT qdrant_staging,
      qdrant_staging IS NOT NULL AND pg_try_advisory_lock($2::int4, hashtext($1))
        AND pg_advisory_unlock($2::int4, hashtext($1)) AS stale
    FROM collections WHERE id = $1]], col.id, REBUILD_LOCK)
  if not rows then return nil, err end
  local staging = rows[1] and rows[1].qdrant_staging
  if rows[1] and rows[1].stale then
    local ok
    ok, err = self.db.pg:query("UPDATE collections SET qdrant_staging = NULL WHERE id = $1 AND qdrant_staging = $2",
      col.id, staging)
    if not ok then return nil, err end
    staging = core.null
  end
  col.qdrant_staging = staging
  local t = { col.vector_store_name }
  if type(staging) == "table" and staging.name then t[2] = staging.name end
  return t
end

-- Embeds chunks and writes them as points (id = the chunk's id, so a retry
-- overwrites rather than duplicates), then records their vector ids.
-- `docs` maps document ids to { file_name, meta }; `targets` (the alias and
-- any staging collection, read afresh when not given) are the collections
-- written. With `deferred` (a zero-downtime rebuild's staging collection,
-- which may never go live), nothing is recorded: the vector ids of chunks
-- that had none are appended to it, to be recorded once they are live.
function Documents:_index_chunks(col, chunks, docs, targets, deferred)
  if #chunks == 0 then return 0 end
  local texts = {}
  for i, c in ipairs(chunks) do texts[i] = c.content end
  local dense, err = embed_with(self.embedder.dense, texts, "dense", col.qdrant_collections.dense.size)
  if not dense then return nil, err end
  local sparse
  -- a collection made by a dense-only embedder has no sparse vector to fill
  local settings = col.qdrant_collections
  if self.embedder.sparse and type(settings) == "table" and settings.sparse then
    sparse, err = embed_with(self.embedder.sparse, texts, "sparse")
    if not sparse then return nil, err end
  end
  local points, items = {}, {}
  for i, c in ipairs(chunks) do
    local d = docs[c.document_id] or {}
    local vector = { [DENSE] = dense[i] }
    if sparse and #sparse[i].indices > 0 then vector[SPARSE] = sparse[i] end
    points[i] = { id = c.id, vector = vector, payload = {
      collection_id = col.id, document_id = c.document_id, chunk_index = c.chunk_index,
      file_name = d.file_name, metadata = d.meta } }
    items[i] = { chunk_id = c.id, collection_id = col.id, vector_id = type(c.id) == "number" and string.format("%d", c.id) or c.id }
  end
  if not targets then
    targets, err = self:_write_targets(col)
    if not targets then return nil, err end
  end
  for _, name in ipairs(targets) do
    local ok
    ok, err = self.db.qdrant:upsert(name, points, self.upsert_options)
    if not ok then
      self:_unsure(col)
      return qdrant_failure(err)
    end
  end
  local n
  if deferred then
    for i, c in ipairs(chunks) do
      if c.embedding_vector_id == nil or c.embedding_vector_id == core.null then deferred[#deferred + 1] = items[i] end
    end
  else
    n, err = self.db.chunks:update_chunk_embeddings(items)
    if not n then return nil, err end
  end
  -- chunks deleted while they were embedded: their delete may have run
  -- before this upsert, so their points go now (a deferred batch records
  -- nothing, so it cannot tell whether any went: it always looks)
  if deferred or n < #items then
    local ok
    ok, err = self:_drop_orphans(col, points, targets)
    if not ok then return nil, err end
  end
  return n or #items
end

-- Deletes the points among `points` whose chunk PostgreSQL no longer has.
function Documents:_drop_orphans(col, points, targets)
  local ids = {}
  for i, p in ipairs(points) do ids[i] = p.id end
  local rows, err = self.db.pg:query([[SELECT id FROM chunks WHERE collection_id = $1
    AND partition_key = chunk_partition_key($1) AND id = ANY($2::int8[])]], col.id, core.array(ids))
  if not rows then return nil, err end
  local alive, gone = {}, {}
  for _, r in ipairs(rows) do alive[r.id] = true end
  for _, id in ipairs(ids) do if not alive[id] then gone[#gone + 1] = id end end
  if #gone == 0 then return true end
  for _, name in ipairs(targets) do
    local ok, derr = self.db.qdrant:delete_points(name, gone)
    if not ok then return qdrant_failure(derr) end
  end
  return true
end

-- file_name and meta of the documents `chunks` belong to, in one query.
function Documents:_document_info(chunks)
  local ids, seen = {}, {}
  for _, c in ipairs(chunks) do
    if c.document_id ~= core.null and not seen[c.document_id] then
      seen[c.document_id] = true
      ids[#ids + 1] = c.document_id
    end
  end
  local out = {}
  if #ids == 0 then return out end
  local rows, err = self.db.pg:query("SELECT id, file_name, meta FROM documents WHERE id = ANY($1::text[])", core.array(ids))
  if not rows then return nil, err end
  for _, r in ipairs(rows) do out[r.id] = { file_name = r.file_name, meta = r.meta ~= core.null and r.meta or nil } end
  return out
end

-- Writes a whole document's chunks to Qdrant and marks it completed.
function Documents:_index_document(col, doc)
  local ok, err = self:_ensure_qdrant(col)
  if not ok then return nil, err end
  local chunks
  chunks, err = self.db.chunks:get_chunks_by_document(doc.id, col.id, MAX_CHUNKS_PER_DOCUMENT)
  if not chunks then return nil, err end
  local docs = { [doc.id] = { file_name = doc.file_name, meta = doc.meta ~= core.null and doc.meta or nil } }
  -- the embedder gets batch_size texts at a time, as everywhere
  for first = 1, #chunks, self.batch_size do
    local n
    n, err = self:_index_chunks(col, table.move(chunks, first, math.min(first + self.batch_size - 1, #chunks), 1, {}), docs)
    if not n then return nil, err end
  end
  return self:_finish_documents(col, doc.id)
end

-- Marks completed the pending documents (of the collection, or the one
-- given) whose chunks all have vectors, with their chunk counts.
function Documents:_finish_documents(col, document_id)
  local ok, err = self.db.pg:query([[
    UPDATE documents d SET status = 'completed', error_message = NULL, chunking_completed_at = now(), updated_at = now(),
      chunk_count = (SELECT count(*) FROM chunks c WHERE c.collection_id = $1
                     AND c.partition_key = chunk_partition_key($1) AND c.document_id = d.id)
    WHERE d.collection_id = $1 AND ($2::text IS NULL OR d.id = $2) AND d.status IN ('pending', 'processing')
      AND NOT EXISTS (SELECT 1 FROM chunks c WHERE c.collection_id = $1 AND c.partition_key = chunk_partition_key($1)
                      AND c.document_id = d.id AND c.embedding_vector_id IS NULL)]], col.id, document_id or core.null)
  if not ok then return nil, err end
  -- their index jobs are done
  return self.db.pg:query([[DELETE FROM reindex_jobs j USING documents d WHERE j.collection_id = $1
    AND j.action = 'index' AND d.id = j.document_id AND d.status = 'completed' AND ($2::text IS NULL OR d.id = $2)]],
    col.id, document_id or core.null)
end

-- The collection's counters, from its rows.
function Documents:_update_stats(col)
  local stats, err = self.db.chunks:get_chunk_statistics(col.id)
  if not stats then return nil, err end
  local docs
  docs, err = self.db.pg:query(
    "SELECT count(*) AS n, coalesce(sum(file_size), 0)::int8 AS bytes FROM documents WHERE collection_id = $1", col.id)
  if not docs then return nil, err end
  return self.db.collections:update_stats(col.id, { document_count = docs[1].n, vector_count = stats.embedded_chunks,
    total_size_bytes = docs[1].bytes, chunks_total_count = stats.total_chunks })
end

-- ---- the queue -----------------------------------------------------------

-- Queues `action` jobs for documents (an array of ids) on `tx`, leased to
-- the caller: they fall due when the lease ends, so a worker finishes them
-- if the caller dies. Returns the jobs' ids.
local function enqueue(tx, action, collection_id, document_ids)
  if #document_ids == 0 then return {} end
  local rows, err = tx:query([[
    INSERT INTO reindex_jobs (action, collection_id, document_id, next_attempt_at)
    SELECT $1, $2, unnest($3::text[]), now() + $4 * interval '1 second' RETURNING id]],
    action, collection_id, core.array(document_ids), LEASE_SECONDS)
  if not rows then return nil, err end
  -- delivered at commit, to a worker waiting in LISTEN
  local ok
  ok, err = tx:query("SELECT pg_notify($1, $2)", QUEUE_CHANNEL, collection_id)
  if not ok then return nil, err end
  local ids = {}
  for i, r in ipairs(rows) do ids[i] = r.id end
  return ids
end

-- After a failed index_collection: the jobs of its pending documents are
-- due soon rather than at the end of their lease.
function Documents:_release_jobs(col, err)
  local ok = self.db.pg:query([[UPDATE reindex_jobs SET next_attempt_at = now() + interval '1 second', last_error = $2,
      updated_at = now()
    WHERE collection_id = $1 AND action = 'index' AND document_id IN
      (SELECT id FROM documents WHERE collection_id = $1 AND status = 'pending')]], col.id, message_of(err))
  if ok then self.db.pg:notify(QUEUE_CHANNEL, col.id) end
end

-- A job's attempt settled: done, it goes; failed (err), it comes back after
-- a backoff that doubles with each attempt (1 s, 2 s, ... 300 s), with
-- jitter so failed jobs spread out.
function Documents:_settle_job(id, ok, err)
  if ok then return self.db.pg:query("DELETE FROM reindex_jobs WHERE id = $1", id) end
  local updated, uerr = self.db.pg:query([[
    UPDATE reindex_jobs SET last_error = $2, updated_at = now(), attempts = greatest(attempts, 1),
      next_attempt_at = now() + least($3, 2 ^ least(greatest(attempts - 1, 0), 20)) * (0.5 + random() / 2) * interval '1 second'
    WHERE id = $1]], id, message_of(err), BACKOFF_MAX)
  if not updated then return nil, uerr end
  -- a waiting worker learns when the job falls due
  return self.db.pg:notify(QUEUE_CHANNEL, tostring(id))
end

-- ---- documents -----------------------------------------------------------

local DOCUMENT_FIELDS = { "content", "file_name", "file_path", "mime_type", "metadata" }

-- Whether a string in v (keys included) has a zero byte; v has no cycle
-- (json_encode took it).
local function has_zero_byte(v)
  if type(v) == "string" then return v:find("\0", 1, true) ~= nil end
  if type(v) ~= "table" then return false end
  for k, x in pairs(v) do
    if has_zero_byte(k) or has_zero_byte(x) then return true end
  end
  return false
end

-- A document's row fields, checked; nil, err for a bad one.
local function document_fields(col, d, where)
  if type(d) ~= "table" then return input_error("%s is a %s, not a table", where, type(d)) end
  local ok, err = core.check_keys(d, DOCUMENT_FIELDS, where)
  if not ok then return nil, err end
  if type(d.content) ~= "string" then return input_error("%s: content must be a string", where) end
  for _, k in ipairs { "file_name", "file_path", "mime_type" } do
    if d[k] ~= nil and (type(d[k]) ~= "string" or d[k] == "") then
      return input_error("%s: %s must be a non-empty string", where, k)
    end
  end
  if d.metadata ~= nil and type(d.metadata) ~= "table" then return input_error("%s: metadata must be a table", where) end
  for _, k in ipairs(DOCUMENT_FIELDS) do
    if k ~= "metadata" and type(d[k]) == "string" and d[k]:find("\0", 1, true) then
      return input_error("%s: %s has a zero byte, which PostgreSQL's text cannot hold", where, k)
    end
  end
  if d.metadata ~= nil then
    -- what jsonb would refuse (a cycle, invalid UTF-8, a zero byte), refused
    -- before anything is written
    local json, jerr = core.json_encode(d.metadata)
    if not json then return input_error("%s: metadata: %s", where, message_of(jerr)) end
    if has_zero_byte(d.metadata) then
      return input_error("%s: metadata has a zero byte, which PostgreSQL's jsonb cannot hold", where)
    end
  end
  local hash = core.sha256(d.content)
  local name = d.file_name or ("document-" .. hash:sub(1, 12) .. ".txt")
  local chunks = core.chunk_text(d.content, col.chunk_size, math.min(col.chunk_overlap, col.chunk_size - 1))
  if #chunks > MAX_CHUNKS_PER_DOCUMENT then
    return input_error("%s gives %d chunks at chunk_size %d; at most %d per document", where, #chunks,
      col.chunk_size, MAX_CHUNKS_PER_DOCUMENT)
  end
  return {
    row = { collection_id = col.id, file_path = d.file_path or name, file_name = name, file_size = #d.content,
            mime_type = d.mime_type or "text/plain", content_hash = "sha256:" .. hash, meta = d.metadata },
    chunks = chunks,
  }
end

-- Inserts a document and its chunks on `tx`; doc, created.
local function store_document(repo, col, f)
  local doc, created = repo.documents:create(f.row)
  if not doc then return nil, created end
  if not created then return doc, false end
  local rows = {}
  for i, c in ipairs(f.chunks) do
    rows[i] = { collection_id = col.id, document_id = doc.id, chunk_index = i - 1, content = c.content,
                start_offset = c.start_offset, end_offset = c.end_offset }
  end
  if #rows > 0 then
    local n, err = repo.chunks:create_chunks_bulk(rows)
    if not n then return nil, err end
  end
  return doc, true
end

-- svc:create_document(collection_id, content, metadata) -> doc, queued
-- metadata's file_name, file_path and mime_type fill those columns; the
-- whole table is the document's meta.
function Documents:create_document(collection_id, content, metadata)
  if metadata ~= nil and type(metadata) ~= "table" then return input_error("metadata must be a table") end
  local col, err = self.db.collections:get_by_uuid(collection_id)
  if not col then return nil, err end
  metadata = metadata or {}
  local f
  f, err = document_fields(col, { content = content, file_name = metadata.file_name, file_path = metadata.file_path,
    mime_type = metadata.mime_type, metadata = next(metadata) and metadata or nil }, "the document")
  if not f then return nil, err end
  -- an embedder that does not fit the collection is refused before
  -- anything is written (and a refused document fixes no settings)
  local ok
  ok, err = self:_settings(col)
  if not ok then return nil, err end
  -- the document, its chunks and its job in one transaction; the job is
  -- leased to this call, and comes back to a worker if this process dies
  local res
  res, err = self.db.pg:transaction(function(tx)
    local doc, created = store_document(repositories(tx), col, f)
    if not doc then return nil, created end
    if not created then return { doc = doc } end
    local jobs, jerr = enqueue(tx, "index", col.id, { doc.id })
    if not jobs then return nil, jerr end
    return { doc = doc, job = jobs[1] }
  end)
  if not res then return nil, err end
  -- the same content again: a pending document is still in the queue
  if not res.job then return res.doc, res.doc.status ~= "completed" end
  ok, err = self:_index_document(col, res.doc)
  self:_settle_job(res.job, ok, err)
  self:_update_stats(col)
  self.db.cache:delete("doc:" .. res.doc.id)
  local doc = self.db.documents:get(res.doc.id) or res.doc
  return doc, not ok
end

-- svc:delete_document(document_id, collection_id) -> true
function Documents:delete_document(document_id, collection_id)
  local col, err = self.db.collections:get_by_uuid(collection_id)
  if not col then return nil, err end
  local jobs
  jobs, err = self.db.pg:transaction(function(tx)
    local repo = repositories(tx)
    local doc, derr = repo.documents:get(document_id)
    if not doc then return nil, derr end
    if doc.collection_id ~= col.id then
      return nil, core.error { kind = "not_found", message = "document " .. document_id .. " is not in collection " .. col.id }
    end
    local ok, e = repo.documents:delete(document_id)
    if not ok then return nil, e end
    return enqueue(tx, "delete", col.id, { document_id })
  end)
  if not jobs then return nil, err end
  local ok
  ok, err = self:_delete_points(col, document_id)
  self:_settle_job(jobs[1], ok, err)
  self:_update_stats(col)
  self.db.cache:delete("doc:" .. document_id)
  return true
end

function Documents:_delete_points(col, document_id)
  local filter = { must = { { key = "document_id", match = { value = document_id } } } }
  local targets, err = self:_write_targets(col)
  if not targets then return nil, err end
  for _, name in ipairs(targets) do
    local ok, err = self.db.qdrant:delete_points(name, filter)
    -- nothing to delete from a collection Qdrant lost
    if not ok and not (err.kind == "qdrant" and err.status == 404) then return nil, err end
  end
  return true
end

-- ---- the worker ------------------------------------------------------------

-- Takes the next due job: moves its next_attempt_at a lease ahead in one
-- statement, skipping rows another worker has locked.
function Documents:_claim(collection_id)
  local rows, err = self.db.pg:query([[
    UPDATE reindex_jobs SET next_attempt_at = now() + $1 * interval '1 second', attempts = attempts + 1,
      updated_at = now()
    WHERE id = (SELECT id FROM reindex_jobs WHERE next_attempt_at <= now() AND ($2::text IS NULL OR collection_id = $2)
                ORDER BY next_attempt_at, id FOR UPDATE SKIP LOCKED LIMIT 1)
    RETURNING *]], LEASE_SECONDS, collection_id or core.null)
  if not rows then return nil, err end
  return rows[1] or false
end

function Documents:_run_job(job)
  local col, err = self.db.collections:get_by_uuid(job.collection_id)
  if not col then
    if err.kind == "not_found" then return true end -- the collection went, and its jobs with it
    return nil, err
  end
  if job.action == "delete" then
    local ok, derr = self:_delete_points(col, job.document_id)
    if not ok then return nil, derr end
    self:_update_stats(col)
    return true
  end
  local doc
  doc, err = self.db.documents:get(job.document_id)
  if not doc then
    if err.kind == "not_found" then return true end -- deleted meanwhile: its delete job does the rest
    return nil, err
  end
  local ok
  ok, err = self:_index_document(col, doc)
  if not ok then return nil, err end
  self:_update_stats(col)
  self.db.cache:delete("doc:" .. doc.id)
  return true
end

local function check_timeout(v)
  if v ~= nil and not (type(v) == "number" and v >= 0) then return input_error("timeout must be a number of seconds >= 0") end
  return true
end

-- svc:retry_pending{ limit =, collection_id =, timeout = } -> { done =, failed =, left = }:
-- runs the jobs that are due (of one collection, when given), each once,
-- until none is due (or `limit` ran, or `timeout` seconds passed: no job is
-- begun after it).
function Documents:retry_pending(opts)
  local err
  opts, err = check_options(opts, { "limit", "collection_id", "timeout" }, "retry_pending's options")
  if not opts then return nil, err end
  if opts.collection_id ~= nil and not core.is_uuid(opts.collection_id) then
    return input_error("collection_id must be a collection's id (a lowercase UUID)")
  end
  local limit
  limit, err = positive_integer(opts.limit, "limit", math.huge)
  if not limit then return nil, err end
  local ok
  ok, err = check_timeout(opts.timeout)
  if not ok then return nil, err end
  return self:_drain(opts.collection_id, limit, opts.timeout and core.monotime() + opts.timeout)
end

-- retry_pending's loop; no job is begun after `deadline` (core.monotime()).
function Documents:_drain(collection_id, limit, deadline)
  local err
  local report, seen = { done = 0, failed = 0 }, {}
  while report.done + report.failed < limit and not (deadline and core.monotime() >= deadline) do
    local job
    job, err = self:_claim(collection_id)
    if job == nil then return nil, err end
    if not job or seen[job.id] then
      -- a job failed here comes back only after its backoff; seeing it
      -- again means the backoff was shorter than this call
      if job then self:_settle_job(job.id, false, job.last_error or "retried") end
      break
    end
    seen[job.id] = true
    local ok, jerr = self:_run_job(job)
    self:_settle_job(job.id, ok, jerr)
    if ok then
      report.done = report.done + 1
      self:_heal_status(job.collection_id)
    else
      report.failed = report.failed + 1
    end
  end
  local rows
  rows, err = self.db.pg:query("SELECT count(*) AS n FROM reindex_jobs WHERE $1::text IS NULL OR collection_id = $1",
    collection_id or core.null)
  if not rows then return nil, err end
  report.left = rows[1].n
  return report
end

-- A degraded collection that the queue made whole (no job left, every
-- document completed, every chunk with its vector) is ready again, as a
-- rerun would leave it; so is one left `processing` by a run that was
-- killed. A live index_collection's documents hold jobs until they are
-- completed, a plain rebuild's chunks have no vector until it wrote them
-- again, and both set their own status at their end.
function Documents:_heal_status(collection_id)
  return self.db.pg:query([[
    UPDATE collections c SET status = 'ready', status_message = NULL, updated_at = now()
    WHERE c.id = $1 AND c.status IN ('degraded', 'processing')
      AND NOT EXISTS (SELECT 1 FROM reindex_jobs j WHERE j.collection_id = $1)
      AND NOT EXISTS (SELECT 1 FROM documents d WHERE d.collection_id = $1 AND d.status IN ('pending', 'processing'))
      AND NOT EXISTS (SELECT 1 FROM chunks k WHERE k.collection_id = $1 AND k.partition_key = chunk_partition_key($1)
                      AND k.embedding_vector_id IS NULL)]],
    collection_id)
end

-- svc:worker{ timeout =, on_batch = } : drains the queue, then sleeps in
-- LISTEN until a job arrives or the next one falls due; returns after
-- `timeout` seconds (none: never) with the totals.
function Documents:worker(opts)
  local err
  opts, err = check_options(opts, { "timeout", "on_batch", "max_wait" }, "worker's options")
  if not opts then return nil, err end
  local ok
  ok, err = check_timeout(opts.timeout)
  if not ok then return nil, err end
  if opts.max_wait ~= nil and not (type(opts.max_wait) == "number" and opts.max_wait > 0 and opts.max_wait <= MAX_WAIT) then
    return input_error("max_wait must be a positive number of seconds, at most %d", MAX_WAIT)
  end
  if opts.on_batch ~= nil and type(opts.on_batch) ~= "function" then return input_error("on_batch must be a function") end
  local max_wait = opts.max_wait or 30
  local deadline = opts.timeout and core.monotime() + opts.timeout
  -- rounds: how many times the queue was read; errors: how many of those
  -- failed (error: the last failure), so a worker pointed at the wrong
  -- database does not look like one with an empty queue
  local total = { done = 0, failed = 0, left = 0, rounds = 0, errors = 0 }
  local backoff = BACKOFF_FIRST
  while true do
    local r, rerr = self:_drain(nil, math.huge, deadline)
    total.rounds = total.rounds + 1
    if r then
      total.done, total.failed, total.left = total.done + r.done, total.failed + r.failed, r.left
      if opts.on_batch and (r.done + r.failed) > 0 then opts.on_batch(r) end
    else
      total.errors, total.error = total.errors + 1, rerr
      if opts.on_batch then opts.on_batch { error = rerr } end
    end
    local wait = max_wait
    if deadline then
      wait = math.min(wait, deadline - core.monotime())
      if wait <= 0 then return total end
    end
    -- a round that failed backs off, even when a job is due (a standby
    -- that refuses the claim would otherwise be asked without a pause)
    local ok, werr
    if r then
      ok, werr = self:_wait_for_jobs(wait)
    else
      ok, werr = false, nil
    end
    if ok then
      backoff = BACKOFF_FIRST
    else
      -- the server is away (a restart, a dropped connection): back off
      -- rather than spin, and listen again on a fresh connection
      if opts.on_batch and werr then opts.on_batch { error = werr } end
      core.sleep(math.min(backoff, deadline and math.max(0, deadline - core.monotime()) or backoff))
      backoff = math.min(backoff * 2, max_wait)
    end
  end
end

-- Sleeps until a job is queued or rescheduled (a notification) or the next
-- one falls due, at most `wait` seconds; true, or nil, err when the server
-- could not be asked. LISTEN comes first and the queue is read after it, on
-- the same connection: a job queued before the LISTEN is seen by the
-- query, one queued after it sends a notification. The connection is not
-- held between waits, so a worker works on a pool of one connection.
function Documents:_wait_for_jobs(wait)
  local conn, err = self.db.pg:acquire()
  if not conn then return nil, err end
  return compat.closing(conn, self._wait_on, self, conn, wait)
end

function Documents:_wait_on(conn, wait)
  local ok, err
  ok, err = conn:listen(QUEUE_CHANNEL)
  if not ok then return nil, err end
  local rows
  rows, err = conn:query "SELECT extract(epoch FROM min(next_attempt_at) - now())::float8 AS s FROM reindex_jobs"
  if not rows then return nil, err end
  local s = rows[1].s
  if s ~= nil and s ~= core.null then wait = math.min(wait, s) end
  if wait <= 0 then return true end
  local note
  note, err = conn:wait_notification(wait)
  if note == nil and err ~= nil then return nil, err end
  return true
end

-- ---- indexing a collection ------------------------------------------------

local INDEX_OPTIONS = { "user_id", "progress", "batch_size", "documents_per_transaction" }

-- Documents from an array or an iterator, one at a time; an array with a
-- hole is refused, since the documents after it would be dropped in silence.
local function each_document(documents)
  if type(documents) == "function" then return documents end
  local n = 0
  for k in pairs(documents) do
    if math.type(k) ~= "integer" or k < 1 then return input_error("documents must be an array: found the key %s", tostring(k)) end
    if k > n then n = k end
  end
  for i = 1, n do
    if documents[i] == nil then return input_error("documents[%d] is nil: the array has a hole", i) end
  end
  local i = 0
  return function()
    i = i + 1
    return documents[i]
  end, n
end

-- Sets the collection's status at an operation's end. Another call may
-- have moved it meanwhile (to `error`, from which only `processing` leads
-- on): this operation's outcome is the newer news, so it goes through
-- `processing`.
function Documents:_set_status(col, status, message)
  local ok, err = self.db.collections:update_status(col.id, status, message)
  if not ok and err.kind == "invalid_transition" then
    ok, err = self.db.collections:update_status(col.id, "processing")
    if ok then ok, err = self.db.collections:update_status(col.id, status, message) end
  end
  return ok, err
end

-- Runs `body` as an operation on the collection: the operation goes
-- pending -> processing -> completed or failed, the collection
-- -> processing -> ready, degraded or error. body returns the report and
-- the collection's final status, or nil, err, status.
function Documents:_operation(col, kind, user_id, config, body)
  local op, err = self.db.operations:create { collection_id = col.id, user_id = user_id or col.owner_id,
    type = kind, config = config }
  if not op then
    -- the one foreign key the caller chose: a user_id naming no user
    if err.code == "23503" and user_id ~= nil then
      return nil, core.error { kind = "not_found", message = "no user " .. tostring(user_id) .. " to run the operation" }
    end
    return nil, err
  end
  local ok
  ok, err = self.db.operations:update_status(op.uuid, "processing")
  if not ok then return nil, err end
  ok, err = self.db.collections:update_status(col.id, "processing")
  if not ok then
    self.db.operations:update_status(op.uuid, "failed", { error_message = message_of(err) })
    return nil, err
  end
  local res = table.pack(pcall(body, op))
  local report, status
  if res[1] then
    report, err, status = res[2], res[3], res[4]
  else
    report, err, status = nil, res[2], "error"
  end
  if report then
    self:_set_status(col, "ready")
    self.db.operations:update_status(op.uuid, "completed")
    return report
  end
  self:_set_status(col, status or "error", message_of(err))
  self.db.operations:update_status(op.uuid, "failed", { error_message = message_of(err) })
  -- what the caller's code raised (an iterator, a progress callback) goes on up
  if not res[1] then error(err, 0) end
  if type(err) == "table" then err.operation = op.uuid end
  return nil, err
end

-- Embeds and writes every chunk of the collection that has no vector yet
-- (those of this run, and any an interrupted run left), in batches.
function Documents:_index_pending(col, report, progress, batch_size)
  local last_first
  while true do
    local chunks, err = self.db.chunks:get_chunks_without_embeddings(col.id, batch_size)
    if not chunks then return nil, err end
    if #chunks == 0 then return true end
    -- the same chunks again would mean their vector ids never stick: stop
    -- rather than loop
    if chunks[1].id == last_first then
      return nil, core.error { kind = "postgres", message = "chunk " .. last_first .. "'s embedding_vector_id was not recorded" }
    end
    last_first = chunks[1].id
    local docs
    docs, err = self:_document_info(chunks)
    if not docs then return nil, err end
    local n
    n, err = self:_index_chunks(col, chunks, docs)
    if not n then return nil, err end
    report.vectors = report.vectors + n
    progress()
  end
end

-- svc:index_collection(collection_id, documents, opts) -> report
function Documents:index_collection(collection_id, documents, opts)
  local err
  opts, err = check_options(opts, INDEX_OPTIONS, "index_collection's options")
  if not opts then return nil, err end
  if type(documents) ~= "table" and type(documents) ~= "function" then
    return input_error("documents must be an array or an iterator function")
  end
  if opts.progress ~= nil and type(opts.progress) ~= "function" then return input_error("progress must be a function") end
  local per_tx
  per_tx, err = positive_integer(opts.documents_per_transaction, "documents_per_transaction", 100)
  if not per_tx then return nil, err end
  local batch_size
  batch_size, err = positive_integer(opts.batch_size, "batch_size", self.batch_size)
  if not batch_size then return nil, err end
  if batch_size > 10000 then return input_error("batch_size must be at most 10000") end
  local next_document, total = each_document(documents)
  if not next_document then return nil, total end
  local col
  col, err = self.db.collections:get_by_uuid(collection_id)
  if not col then return nil, err end
  local report = { documents = 0, skipped = 0, chunks = 0, vectors = 0, total = total }
  local function progress()
    if opts.progress then opts.progress(report) end
  end
  -- an embedder that does not fit is refused before the operation begins:
  -- the collection keeps its status
  local ok
  ok, err = self:_settings(col)
  if not ok then return nil, err end
  return self:_operation(col, "index", opts.user_id, { batch_size = batch_size, chunk_size = col.chunk_size,
      chunk_overlap = col.chunk_overlap, embedder = self.embedder.name },
    function(op)
      -- what the caller's code raises (iterator, progress) releases the
      -- jobs of the documents stored so far, as a failure does
      local res = table.pack(pcall(self._index_run, self, col, op, report, next_document, progress, per_tx, batch_size))
      if not res[1] then
        self:_release_jobs(col, res[2])
        error(res[2], 0)
      end
      return table.unpack(res, 2, res.n)
    end)
end

-- index_collection's work, inside its operation.
function Documents:_index_run(col, op, report, next_document, progress, per_tx, batch_size)
  report.operation = op.uuid
  local ok, qerr = self:_ensure_qdrant(col)
  if not ok then return nil, qerr, failed_status(qerr) end
  local seen, finished = 0, false
  while not finished do
    -- a batch of documents and their chunks in one transaction: a crash
    -- leaves whole documents, whose chunks the next run embeds
    local batch = {}
    while #batch < per_tx do
      local d = next_document()
      if d == nil then
        finished = true
        break
      end
      seen = seen + 1
      local f, ferr = document_fields(col, d, "document " .. seen)
      if not f then return nil, ferr, "error" end
      batch[#batch + 1] = f
    end
    if #batch > 0 then
      local res, terr = self.db.pg:transaction(function(tx)
        local repo, created, chunks = repositories(tx), {}, 0
        for _, f in ipairs(batch) do
          local doc, new = store_document(repo, col, f)
          if not doc then return nil, new end
          if new then created[#created + 1], chunks = doc.id, chunks + #f.chunks end
        end
        local ok, qerr = enqueue(tx, "index", col.id, created)
        if not ok then return nil, qerr end
        return { created = #created, chunks = chunks }
      end)
      if not res then return nil, terr, "error" end
      report.documents = report.documents + res.created
      report.skipped = report.skipped + #batch - res.created
      report.chunks = report.chunks + res.chunks
      progress()
      local iok, ierr = self:_index_pending(col, report, progress, batch_size)
      if iok then iok, ierr = self:_finish_documents(col) end
      -- the counters, and updated_at, which keys the search cache
      if iok then iok, ierr = self:_update_stats(col) end
      if not iok then
        self:_release_jobs(col, ierr)
        return nil, ierr, failed_status(ierr)
      end
    end
  end
  local iok, ierr = self:_index_pending(col, report, progress, batch_size)
  if iok then iok, ierr = self:_finish_documents(col) end
  if not iok then
    self:_release_jobs(col, ierr)
    return nil, ierr, failed_status(ierr)
  end
  iok, ierr = self:_update_stats(col)
  if not iok then return nil, ierr, failed_status(ierr) end
  return report
end

-- ---- rebuilding the vector index -------------------------------------------

-- svc:rebuild_vector_index(collection_id, { zero_downtime =, progress =, user_id = }) -> report
function Documents:rebuild_vector_index(collection_id, opts)
  local err
  opts, err = check_options(opts, { "zero_downtime", "progress", "user_id" }, "rebuild_vector_index's options")
  if not opts then return nil, err end
  if opts.progress ~= nil and type(opts.progress) ~= "function" then return input_error("progress must be a function") end
  -- a string "true" from a config must not run the rebuild that empties the live index
  if opts.zero_downtime ~= nil and type(opts.zero_downtime) ~= "boolean" then
    return input_error("zero_downtime must be true or false")
  end
  local col
  col, err = self.db.collections:get_by_uuid(collection_id)
  if not col then return nil, err end
  -- one rebuild of a collection at a time, across processes: an advisory
  -- lock on a connection held for the rebuild (a process that dies lets go)
  if self.db.pg:stats().max < 2 then
    return input_error("rebuild_vector_index holds a connection for its lock and needs another: "
      .. "the pool allows %d", self.db.pg:stats().max)
  end
  local conn
  conn, err = self.db.pg:acquire()
  if not conn then return nil, err end
  local locked
  locked, err = conn:query("SELECT pg_try_advisory_lock($1::int4, hashtext($2)) AS ok", REBUILD_LOCK, col.id)
  if not locked or not locked[1].ok then
    conn:release()
    return nil, err or core.error { kind = "conflict", message = "collection " .. col.id .. " is being rebuilt by another process" }
  end
  local res = table.pack(pcall(function()
    -- the row as it is now that no other rebuild runs (one that just
    -- finished moved its generation)
    local fresh, ferr = self.db.collections:get_by_uuid(col.id)
    if not fresh then return nil, ferr end
    -- an embedder that does not fit is refused before the operation begins
    local ok, serr = self:_settings(fresh)
    if not ok then return nil, serr end
    return self:_rebuild(fresh, opts)
  end))
  conn:query("SELECT pg_advisory_unlock($1::int4, hashtext($2))", REBUILD_LOCK, col.id)
  conn:release()
  if not res[1] then error(res[2], 0) end
  return table.unpack(res, 2, res.n)
end

-- The collection an alias points to, false when none does, or nil, err
-- when Qdrant could not say (never a guess: a rebuild deletes what is not
-- the alias's).
local function alias_target(q, alias)
  local aliases, err = q:list_aliases()
  if not aliases then return qdrant_failure(err) end
  for _, a in ipairs(aliases) do
    if a.alias == alias then return a.collection end
  end
  return false
end

-- Deletes the collection's physical collections (vector_store_name_vN)
-- other than `keep`: what rebuilds killed midway left, noted in the row's
-- qdrant_staging or not (killed before they noted it). The caller holds the
-- collection's rebuild lock, so no rebuild is filling any of them.
function Documents:_drop_physical(col, keep)
  local q = self.db.qdrant
  local names, err = q:list_collections()
  if not names then return qdrant_failure(err) end
  local prefix = col.vector_store_name .. "_v"
  for _, name in ipairs(names) do
    if name ~= keep and name:sub(1, #prefix) == prefix and name:sub(#prefix + 1):match "^%d+$" then
      local ok
      ok, err = q:delete_collection(name)
      if not ok and not (err.kind == "qdrant" and err.status == 404) then return qdrant_failure(err) end
    end
  end
  if type(col.qdrant_staging) == "table" then
    col.qdrant_staging = core.null
    return self.db.collections:update(col.id, { qdrant_staging = core.null })
  end
  return true
end

-- Records the vector ids a zero-downtime rebuild deferred, now that its
-- collection is live.
function Documents:_record(items)
  for first = 1, #items, 10000 do
    local ok, err = self.db.chunks:update_chunk_embeddings(table.move(items, first, math.min(first + 9999, #items), 1, {}))
    if not ok then return nil, err end
  end
  return true
end

function Documents:_rebuild(col, opts)
  local q = self.db.qdrant
  local report = { vectors = 0, zero_downtime = opts.zero_downtime == true }
  return self:_operation(col, "reindex", opts.user_id, { zero_downtime = report.zero_downtime,
      embedder = self.embedder.name },
    function(op)
      report.operation = op.uuid
      local s = col.qdrant_collections
      local target, staging_gen, live, deferred
      if report.zero_downtime then
        local ok, qerr = self:_ensure_qdrant(col)
        if not ok then return nil, qerr, "degraded" end
        -- a rebuild killed after its alias swap left the row one generation
        -- behind: the collection the alias points to is live, never a leftover
        live, qerr = alias_target(q, col.vector_store_name)
        if live == nil then return nil, qerr, "degraded" end
        ok, qerr = self:_drop_physical(col, live)
        if not ok then return nil, qerr, "degraded" end
        staging_gen = s.generation + 1
        while physical(col, staging_gen) == live do staging_gen = staging_gen + 1 end
        target = physical(col, staging_gen)
        ok, qerr = create_physical(q, target, s)
        if not ok then return nil, qerr, "degraded" end
        -- writers now also write to the new collection
        col.qdrant_staging = { name = target, generation = staging_gen }
        ok, qerr = self.db.collections:update(col.id, { qdrant_staging = col.qdrant_staging })
        if not ok then return nil, qerr, "degraded" end
        -- vector ids of chunks that had none are recorded once the new
        -- collection is live: a rebuild that fails or dies leaves them to
        -- the queue, not marked as if the live index had them
        deferred = {}
      else
        -- the chunks count as without a vector until this rebuild writes
        -- theirs: one that fails midway leaves the rest to a rerun of
        -- index_collection (which embeds every chunk without a vector) or
        -- of the rebuild
        local ok, qerr = self.db.pg:query([[UPDATE chunks SET embedding_vector_id = NULL
          WHERE collection_id = $1 AND partition_key = chunk_partition_key($1) AND embedding_vector_id IS NOT NULL]], col.id)
        if not ok then return nil, qerr, "error" end
        -- start again from empty: every physical collection, the live one
        -- included (which may be a generation ahead of the row)
        ok, qerr = self:_drop_physical(col, nil)
        if not ok then return nil, qerr, "error" end
        self:_unsure(col)
        ok, qerr = self:_ensure_qdrant(col)
        if not ok then return nil, qerr, "error" end
        target = col.vector_store_name
      end
      local function fail(e)
        -- never the collection the alias points to (a swap whose answer was
        -- lost), nor one Qdrant could not say the alias does not point to
        if report.zero_downtime then
          local current = alias_target(q, col.vector_store_name)
          if current ~= nil and current ~= target then
            q:delete_collection(target)
            self.db.collections:update(col.id, { qdrant_staging = core.null })
          end
        end
        return nil, e, report.zero_downtime and "degraded" or "error"
      end
      -- keyset pagination over the collection's chunks; what the progress
      -- callback raises drops the new collection too, then goes on up
      local copied, done, cerr = pcall(function()
        local after
        while true do
          local chunks, e = self.db.chunks:get_chunks_by_collection(col.id, { after_id = after, limit = self.batch_size })
          if not chunks then return nil, e end
          if #chunks == 0 then return true end
          local docs
          docs, e = self:_document_info(chunks)
          if not docs then return nil, e end
          local n
          n, e = self:_index_chunks(col, chunks, docs, { target }, deferred)
          if not n then return nil, e end
          report.vectors = report.vectors + n
          after = chunks[#chunks].id
          if opts.progress then opts.progress(report) end
        end
      end)
      if not copied then
        fail(done)
        error(done, 0)
      end
      if not done then return fail(cerr) end
      if report.zero_downtime then
        local old = live or physical(col, s.generation)
        -- one request: searches see the old collection or the new, never neither
        local ok, aerr = q:update_aliases { { delete = { alias = col.vector_store_name } },
          { create = { alias = col.vector_store_name, collection = target } } }
        if not ok then
          ok, aerr = q:update_aliases { { create = { alias = col.vector_store_name, collection = target } } }
          if not ok then return fail(select(2, qdrant_failure(aerr))) end
        end
        local settings = { generation = staging_gen, dense = s.dense, sparse = s.sparse }
        ok, aerr = self.db.collections:update(col.id, { qdrant_collections = settings, qdrant_staging = core.null })
        if not ok then return nil, aerr, "degraded" end
        col.qdrant_collections, col.qdrant_staging = settings, nil
        ok, aerr = self:_record(deferred)
        if not ok then return nil, aerr, "degraded" end
        q:delete_collection(old)
        -- a generation a killed rebuild left between the two
        if old ~= physical(col, s.generation) then q:delete_collection(physical(col, s.generation)) end
      end
      local ok, ferr = self:_finish_documents(col)
      if not ok then return nil, ferr, "degraded" end
      self:_update_stats(col)
      return report
    end)
end

-- ---- search -----------------------------------------------------------------

local SEARCH_OPTIONS = { "limit", "filter", "mode", "user_id", "cache_ttl" }

local MAX_FILTER_DEPTH = 32

-- A stable text of a value for the cache key: tables with their keys
-- sorted, so equal options give one key in every process, and each scalar
-- with its type and length, so no two values share a text. false, err for a
-- cycle or a filter nested too deep.
local function canonical(v, out, depth)
  local t = type(v)
  if t ~= "table" then
    local text = tostring(v)
    -- every digit (LuaJIT's tostring keeps 14)
    if math.type(v) == "integer" then text = string.format("%d", v)
    elseif math.type(v) == "float" then text = string.format("%.17g", v) end
    out[#out + 1] = string.format("%s%d:%s", t:sub(1, 1), #text, text)
    return true
  end
  if depth > MAX_FILTER_DEPTH then return input_error("the filter is nested deeper than %d levels (or has a cycle)", MAX_FILTER_DEPTH) end
  local keys = {}
  for k in pairs(v) do keys[#keys + 1] = k end
  table.sort(keys, function(a, b)
    if type(a) == type(b) and (type(a) == "string" or type(a) == "number") then return a < b end
    return type(a) < type(b)
  end)
  out[#out + 1] = "{"
  for _, k in ipairs(keys) do
    canonical(k, out, depth + 1)
    local ok, err = canonical(v[k], out, depth + 1)
    if not ok then return nil, err end
  end
  out[#out + 1] = "}"
  return true
end

-- svc:search(collection_id, query_text, { limit, filter, mode, user_id }) -> hits
function Documents:search(collection_id, query_text, opts)
  local started = core.monotime()
  local err
  opts, err = check_options(opts, SEARCH_OPTIONS, "search's options")
  if not opts then return nil, err end
  if type(query_text) ~= "string" or query_text == "" then return input_error("the query must be a non-empty string") end
  -- what search_logs could not store, refused rather than searched unlogged
  if query_text:find("\0", 1, true) or not core.json_encode(query_text) then
    return input_error("the query must be UTF-8 text without zero bytes")
  end
  -- an id, or its decimal string (LuaJIT's beyond 2^53), which the repository checks
  if math.type(opts.user_id) ~= "integer" and type(opts.user_id) ~= "string" then
    return input_error("search needs user_id: whose read permission is checked")
  end
  local mode = opts.mode or "dense"
  if mode ~= "dense" and mode ~= "hybrid" then return input_error("mode must be \"dense\" or \"hybrid\", not %s", tostring(mode)) end
  if mode == "hybrid" and not self.embedder.sparse then return input_error("hybrid search needs an embedder with sparse(texts)") end
  local limit
  limit, err = positive_integer(opts.limit, "limit", 10)
  if not limit then return nil, err end
  if limit > 1000 then return input_error("limit must be at most 1000") end
  if opts.filter ~= nil and type(opts.filter) ~= "table" then return input_error("filter must be a Qdrant filter table") end
  if opts.cache_ttl ~= nil and not (type(opts.cache_ttl) == "number" and opts.cache_ttl > 0 and opts.cache_ttl <= MAX_TTL) then
    return input_error("cache_ttl must be a positive number of seconds, at most 2^53 ms")
  end
  -- the cache key's text, which also refuses a cyclic filter before Qdrant sees it
  local key_parts = { mode, "|", tostring(limit), "|", query_text, "|" }
  local ok
  ok, err = canonical(opts.filter, key_parts, 0)
  if not ok then return nil, err end
  -- the filter is logged as jsonb, which has no place for a zero byte
  if has_zero_byte(opts.filter) then return input_error("the filter has a zero byte") end
  local col
  col, err = self.db.collections:get_by_uuid_with_permission_check(collection_id, opts.user_id)
  if not col then return nil, err end
  local settings = col.qdrant_collections
  if mode == "hybrid" and type(settings) == "table" and not settings.sparse then
    return input_error("collection %s has no sparse vectors (its embedder was dense-only): search it with mode = \"dense\"",
      col.name)
  end

  local compute = function()
    local dense, e = embed_with(self.embedder.dense, { query_text }, "dense",
      type(settings) == "table" and type(settings.dense) == "table" and settings.dense.size or nil)
    if not dense then return nil, e end
    local q
    if mode == "dense" then
      q = { query = dense[1], using = DENSE, limit = limit, filter = opts.filter }
    else
      local sparse
      sparse, e = embed_with(self.embedder.sparse, { query_text }, "sparse")
      if not sparse then return nil, e end
      local deep = math.max(limit * 5, 50)
      -- a query with no terms ("?") has nothing to match sparsely: dense alone
      if #sparse[1].indices == 0 then
        q = { query = dense[1], using = DENSE, limit = limit, filter = opts.filter }
      else
        q = { prefetch = { { query = dense[1], using = DENSE, limit = deep, filter = opts.filter },
                           { query = sparse[1], using = SPARSE, limit = deep, filter = opts.filter } },
              fusion = "rrf", limit = limit, filter = opts.filter }
      end
    end
    local found
    found, e = self.db.qdrant:query(col.vector_store_name, q)
    -- nothing indexed yet: no Qdrant collection is no hits; once vectors
    -- were written, a missing one is an outage to report
    if not found and e.kind == "qdrant" and e.status == 404 and col.vector_count == 0 then return {} end
    if not found then return qdrant_failure(e) end
    return self:_hydrate(col, found)
  end

  -- the key names the collection row's updated_at, which every write moves
  -- (in PostgreSQL, so a writer that cannot reach Redis still invalidates)
  local key = string.format("search:%s:%s:%s", col.id, tostring(col.updated_at), core.sha256(table.concat(key_parts)))
  local failure, hits, cerr
  hits, cerr = self.db.cache:remember(key, opts.cache_ttl or self.cache_ttl, function()
    local h, e = compute()
    failure = e
    return h
  end)
  if hits == nil then return nil, failure or cerr end
  local ms = (core.monotime() - started) * 1000
  -- the log is bookkeeping: a failure to write it does not fail the search
  self.db.pg:query([[INSERT INTO search_logs (user_id, collection_id, query, search_type, filters, result_count, latency_ms)
    VALUES ($1, $2, $3, $4, $5, $6, $7)]], opts.user_id, col.id, query_text, mode, opts.filter or core.null, #hits, ms)
  return hits
end

-- Qdrant's hits with their chunk's content and document's name, in one
-- query (a collection's chunks are in one partition). A hit whose chunk
-- PostgreSQL no longer has is dropped: PostgreSQL is the source of truth.
function Documents:_hydrate(col, found)
  if #found == 0 then return {} end
  local ids = {}
  for i, h in ipairs(found) do ids[i] = h.id end
  local rows, err = self.db.pg:query([[
    SELECT c.id, c.content, c.document_id, d.file_name FROM chunks c LEFT JOIN documents d ON d.id = c.document_id
    WHERE c.collection_id = $1 AND c.partition_key = chunk_partition_key($1) AND c.id = ANY($2::int8[])]],
    col.id, core.array(ids))
  if not rows then return nil, err end
  local by_id = {}
  for _, r in ipairs(rows) do by_id[r.id] = r end
  local hits = {}
  for _, h in ipairs(found) do
    local r = by_id[h.id]
    if r then
      hits[#hits + 1] = { chunk_id = r.id, score = h.score, content = r.content, document_id = r.document_id,
                          file_name = r.file_name }
    end
  end
  return hits
end

function Documents:__tostring() return "semstore.services.documents(" .. self.embedder.name .. ")" end

local SERVICE_OPTIONS = { "embedder", "batch_size", "cache_ttl", "upsert" }

-- semstore.services.documents(db, { embedder =, batch_size = 64, cache_ttl = 60, upsert = {...} })
function M.documents(db, opts)
  if type(db) ~= "table" or not db.pg then return input_error("documents() takes a db from semstore.connect") end
  local err
  opts, err = check_options(opts, SERVICE_OPTIONS, "documents' options")
  if not opts then return nil, err end
  local embedder
  embedder, err = wrap_embedder(opts.embedder)
  if not embedder then return nil, err end
  local batch
  batch, err = positive_integer(opts.batch_size, "batch_size", 64)
  if not batch then return nil, err end
  if batch > 10000 then return input_error("batch_size must be at most 10000") end
  if opts.cache_ttl ~= nil and not (type(opts.cache_ttl) == "number" and opts.cache_ttl > 0 and opts.cache_ttl <= MAX_TTL) then
    return input_error("cache_ttl must be a positive number of seconds, at most 2^53 ms")
  end
  if opts.upsert ~= nil then
    if type(opts.upsert) ~= "table" then return input_error("upsert must be a table of upsert options") end
    -- a typo would otherwise fail every write later and queue it for ever
    local ok
    ok, err = db.qdrant:check_upsert_options(opts.upsert)
    if not ok then return nil, err end
  end
  return setmetatable({
    db = db, embedder = embedder, batch_size = batch, cache_ttl = opts.cache_ttl or 60,
    upsert_options = opts.upsert or { batch_size = 256, parallel = 4 },
    ensured = {},
  }, Documents)
end

return M
