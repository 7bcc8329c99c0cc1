-- db.qdrant against the Qdrant stand-in that scripts/servers.sh starts
-- (tools/qdrant-standin), or against a real Qdrant when QDRANT_URL names
-- one: the fault injections and request counts need the stand-in's admin
-- API, and are skipped there.
require "semstore.compat" () -- Lua 5.4's library under LuaJIT too
local semstore = require "semstore"
local config = require "semstore.config"
local helpers = require "support.helpers"

local URL = assert(os.getenv "QDRANT_URL", "run the specs through scripts/test.sh, which sets QDRANT_URL")
local STANDIN = os.getenv "SEMSTORE_QDRANT_STANDIN" == "1"
local BIG = helpers.under_valgrind and 2000 or 20000
local standin_it = STANDIN and it or pending

local function fresh(prefix) return helpers.unique(prefix or "c", "_") end

local db = helpers.connect(nil, { qdrant = URL })
local q = db.qdrant

-- The stand-in's admin API, through the client's own request().
local function admin(method, path, body)
  return assert(q.handle:request(method, "/__standin/" .. path, body))
end
local function requests() return admin("GET", "stats").requests end

-- float32, as Qdrant stores it
local function f32(x) return (string.unpack("f", string.pack("f", x))) end

-- deterministic pseudo-random numbers
local function lcg(seed)
  local s = seed
  return function()
    -- s * 1103515245 in two halves (16838 * 2^16 + 20077): exact in a
    -- double too (LuaJIT's numbers), the same sequence as in integers
    s = ((s * 16838) % 2147483648 * 65536 + s * 20077 + 12345) % 2147483648
    return s / 2147483648 * 2 - 1
  end
end

local function vec(rand, dim)
  local v = {}
  for i = 1, dim do v[i] = rand() end
  return v
end

local function rss_kb()
  for line in io.lines "/proc/self/status" do
    local kb = line:match "^VmRSS:%s+(%d+)"
    if kb then return tonumber(kb) end
  end
end

describe("qdrant configuration", function()
  local function env(t) return function(k) return t[k] end end

  it("reads QDRANT_URL, or QDRANT_HOST and QDRANT_PORT, and uses https with a key and no URL", function()
    assert.same({ url = "http://q:1" }, config.qdrant(nil, env { QDRANT_URL = "http://q:1" }))
    assert.same({ url = "http://h:6333" }, config.qdrant(nil, env { QDRANT_HOST = "h" }))
    assert.same({ url = "https://h:7000", api_key = "k" },
      config.qdrant(nil, env { QDRANT_HOST = "h", QDRANT_PORT = "7000", QDRANT_API_KEY = "k" }))
    assert.same({ url = "http://h:1", api_key = "k" }, config.qdrant({ url = "http://h:1" }, env { QDRANT_API_KEY = "k" }))
    assert.same({ url = "http://localhost:6333", timeout = 3 }, config.qdrant({ timeout = 3 }, env {}))
  end)

  it("is absent without settings, and refuses typos and bad ports", function()
    assert.is_false(config.qdrant(nil, env {}))
    local ok, err = config.qdrant({ ulr = "http://x" }, env {})
    assert.is_nil(ok)
    assert.equal("input", err.kind)
    assert.matches("ulr", err.message)
    ok, err = config.qdrant({ host = "h", port = 70000 }, env {})
    assert.is_nil(ok)
    assert.matches("port", err.message)
    ok, err = config.qdrant(42)
    assert.is_nil(ok)
    assert.equal("input", err.kind)
  end)

  it("gives an unconfigured db.qdrant whose methods return an input error", function()
    local unconfigured = require("semstore.qdrant").unconfigured
    local ok, err = unconfigured:query("c", { query = { 1 } })
    assert.is_nil(ok)
    assert.equal("input", err.kind)
    assert.matches("QDRANT_URL", err.message)
    assert.matches("not configured", tostring(unconfigured))
  end)

  it("refuses a URL that is not http(s), and bad timeouts", function()
    local ok, err = semstore.connect { postgres = helpers.url, qdrant = "ftp://x" }
    assert.is_nil(ok)
    assert.equal("input", err.kind)
    ok, err = semstore.connect { postgres = helpers.url, qdrant = { url = URL, timeout = 0 / 0 } }
    assert.is_nil(ok)
    assert.matches("timeout", err.message)
  end)
end)

describe("qdrant collections", function()
  it("creates, inspects, lists and deletes a plain collection", function()
    local name = fresh()
    assert.is_false(q:collection_exists(name))
    assert.is_true(q:create_collection(name, { vectors = { size = 4, distance = "Cosine" },
      hnsw = { m = 16, ef_construct = 100 }, optimizers = { indexing_threshold = 20000 } }))
    assert.is_true(q:collection_exists(name))
    local info = assert(q:get_collection(name))
    assert.equal(0, info.points_count)
    assert.equal("green", info.status)
    assert.same({ size = 4, distance = "Cosine" }, { size = info.config.params.vectors.size,
      distance = info.config.params.vectors.distance })
    assert.equal(16, info.config.hnsw_config.m)
    assert.equal(20000, info.config.optimizer_config.indexing_threshold)
    local names = assert(q:list_collections())
    local found = false
    for _, n in ipairs(names) do found = found or n == name end
    assert.is_true(found)
    assert.is_true(q:delete_collection(name))
    assert.is_false(q:collection_exists(name))
  end)

  it("creates named and sparse vectors", function()
    local name = fresh()
    assert(q:create_collection(name, { vectors = { dense = { size = 8, distance = "Dot" }, small = { size = 2, distance = "euclid" } },
      sparse_vectors = { text = { modifier = "idf" } } }))
    local params = assert(q:get_collection(name)).config.params
    assert.equal(8, params.vectors.dense.size)
    assert.equal("Dot", params.vectors.dense.distance)
    assert.equal("Euclid", params.vectors.small.distance)
    assert.equal("idf", params.sparse_vectors.text.modifier)
    assert(q:delete_collection(name))
  end)

  it("reports Qdrant's own errors with their status, and refuses bad options before sending", function()
    local name = fresh()
    assert(q:create_collection(name, { vectors = { size = 4 } }))
    local ok, err = q:create_collection(name, { vectors = { size = 4 } })
    assert.is_nil(ok)
    assert.equal("qdrant", err.kind)
    assert.equal(409, err.status)
    assert.matches("already exists", err.message)
    ok, err = q:get_collection(fresh())
    assert.equal(404, err.status)
    assert.matches("doesn't exist", err.message)
    assert.matches("^qdrant error 404: Not found", tostring(err))
    ok, err = q:create_collection(fresh(), { vectors = { size = 4 }, hnws = {} })
    assert.equal("input", err.kind)
    assert.matches("hnws", err.message)
    ok, err = q:create_collection(fresh(), { vectors = { size = 0 } })
    assert.equal("input", err.kind)
    ok, err = q:create_collection(fresh(), { vectors = { size = 4, distance = "Hamming" } })
    assert.matches("Hamming", err.message)
    ok, err = q:create_collection("", { vectors = { size = 4 } })
    assert.equal("input", err.kind)
    assert(q:delete_collection(name))
  end)

  it("updates a collection, indexes a payload field, and manages aliases", function()
    local name, alias = fresh(), fresh "alias"
    assert(q:create_collection(name, { vectors = { size = 2 } }))
    assert(q:update_collection(name, { optimizers = { indexing_threshold = 0 } }))
    assert.equal(0, assert(q:get_collection(name)).config.optimizer_config.indexing_threshold)
    assert(q:create_payload_index(name, "source", "keyword"))
    assert.equal("keyword", assert(q:get_collection(name)).payload_schema.source.data_type)
    local ok, err = q:create_payload_index(name, "source", "keywrd")
    assert.equal("input", err.kind)
    assert(q:update_aliases { { create = { alias = alias, collection = name } } })
    local seen
    for _, a in ipairs(assert(q:list_aliases())) do
      if a.alias == alias then seen = a.collection end
    end
    assert.equal(name, seen)
    -- an alias works as the collection's name
    assert(q:upsert(alias, { { id = 1, vector = { 1, 0 } } }))
    assert.equal(1, q:count(name))
    assert(q:update_aliases { { delete = { alias = alias } } })
    ok, err = q:count(alias)
    assert.is_nil(ok)
    assert.equal(404, err.status)
    assert(q:delete_collection(name))
  end)
end)

describe("qdrant points", function()
  local name, dim = fresh "big", 16
  local rand = lcg(7)
  local vectors = {}

  setup(function()
    assert(q:create_collection(name, { vectors = { size = dim, distance = "Dot" } }))
  end)
  teardown(function() q:delete_collection(name) end)

  it("upserts many points in batches, each landing once", function()
    local points = {}
    for i = 1, BIG do
      vectors[i] = vec(rand, dim)
      points[i] = { id = i, vector = vectors[i], payload = { n = i, even = i % 2 == 0 } }
    end
    local report = assert(q:upsert(name, points, { batch_size = 256, parallel = 4 }))
    assert.equal(BIG, report.points)
    assert.equal(math.ceil(BIG / 256), report.batches)
    assert.is_nil(report.failed_ids)
    assert.equal(BIG, q:count(name))
    assert.equal(math.floor(BIG / 2), q:count(name, { must = { { key = "even", match = { value = true } } } }))
    -- the same points again: still BIG, ids are idempotent
    assert(q:upsert(name, points, { batch_size = 1000 }))
    assert.equal(BIG, q:count(name))
  end)

  it("scrolls over every point once, with the vectors written as float32", function()
    local seen, n = {}, 0
    for p in q:scroll(name, { batch = 333, with_vector = true }) do
      assert.is_nil(seen[p.id])
      seen[p.id], n = true, n + 1
      if p.id % 997 == 0 then
        for k = 1, dim do assert.equal(f32(vectors[p.id][k]), f32(p.vector[k])) end
        assert.equal(p.id, p.payload.n)
      end
    end
    assert.equal(BIG, n)
  end)

  it("deletes points by id and by filter, and sets payloads", function()
    assert(q:delete_points(name, { 1, 2, 3 }))
    assert.equal(BIG - 3, q:count(name))
    assert(q:set_payload(name, { flag = "x" }, { 10, 11 }))
    assert.equal(2, q:count(name, { must = { { key = "flag", match = { value = "x" } } } }))
    assert(q:delete_points(name, { must = { { key = "flag", match = { value = "x" } } } }))
    assert.equal(BIG - 5, q:count(name))
    local ok, err = q:delete_points(name, {})
    assert.equal("input", err.kind)
    ok, err = q:delete_points(name, { must_nt = {} })
    assert.matches("must_nt", err.message)
  end)

  it("refuses a bad point before anything is sent, naming it", function()
    local cases = {
      { { id = -1, vector = vec(rand, dim) }, "negative", "id" },
      { { id = 1, vector = { 0 / 0, table.unpack(vec(rand, dim - 1)) } }, "vector%[1%] is NaN", "vector" },
      { { id = 1, vector = { 1e39, table.unpack(vec(rand, dim - 1)) } }, "float32", "vector" },
      { { id = 1, vector = vec(rand, dim - 1) }, "has 15 numbers, the collection's have 16", "vector" },
      { { id = "not-a-uuid", vector = vec(rand, dim) }, "UUID", "id" },
      { { id = 1.5, vector = vec(rand, dim) }, "unsigned integer", "id" },
      { { id = 1, vector = vec(rand, dim), payload = { 1, 2 } }, "payload", "payload" },
      { { id = 1, vectors = vec(rand, dim) }, "unknown field vectors", "vectors" },
      { { id = 1, vector = vec(rand, dim), payload = { f = function() end } }, "payload", "payload" },
      { { id = 1 }, "no vector", "vector" },
    }
    local function written() return admin("GET", "stats").points_written end
    local before = STANDIN and written()
    for _, case in ipairs(cases) do
      local good = { id = 5, vector = vec(rand, dim) }
      local ok, err = q:upsert(name, { good, case[1] })
      assert.is_nil(ok)
      assert.equal("input", err.kind)
      assert.equal(2, err.point)
      assert.matches("^point 2: ", err.message)
      assert.matches(case[2], err.message)
      assert.equal(case[3], err.field)
    end
    -- an oversized point, after points that fit: larger than max_bytes alone
    local many = {}
    for i = 1, 300 do many[i] = { id = i, vector = vec(rand, dim) } end
    many[301] = { id = 9, vector = vec(rand, dim), payload = { text = string.rep("x", 5000) } }
    local ok, err = q:upsert(name, many, { max_bytes = 4096 })
    assert.is_nil(ok)
    assert.equal(301, err.point)
    assert.matches("^point 301: the point is %d+ bytes of JSON, more than max_bytes", err.message)
    -- (a refused size makes the client read the collection's sizes afresh
    -- once, in case another client changed them: a GET, no point sent)
    if STANDIN then assert.equal(before, written()) end
  end)

  it("reads a collection's sizes afresh when another client recreated it", function()
    local other = helpers.connect(nil, { qdrant = URL }).qdrant
    local c = fresh "sizes"
    assert(q:create_collection(c, { vectors = { size = 2 } }))
    assert(q:upsert(c, { { id = 1, vector = { 1, 2 } } }))
    assert(other:delete_collection(c))
    assert(other:create_collection(c, { vectors = { size = 3 } }))
    assert(q:upsert(c, { { id = 1, vector = { 1, 2, 3 } } }))
    -- an alias moved to a collection of another size
    local alias, big = fresh "alias", fresh "sizes"
    assert(q:create_collection(big, { vectors = { size = 4 } }))
    assert(q:update_aliases { { create = { alias = alias, collection = c } } })
    assert(q:upsert(alias, { { id = 2, vector = { 1, 2, 3 } } }))
    assert(q:update_aliases { { delete = { alias = alias } }, { create = { alias = alias, collection = big } } })
    assert(q:upsert(alias, { { id = 2, vector = { 1, 2, 3, 4 } } }))
    assert.equal(1, q:count(big))
    local ok, err = q:update_aliases { { create = true } }
    assert.equal("input", err.kind)
    ok, err = q:update_aliases { { create = { alias = alias } } }
    assert.matches("collection", err.message)
    assert(q:update_aliases { { delete = { alias = alias } } })
    assert(q:delete_collection(c))
    assert(q:delete_collection(big))
  end)

  it("refuses bad UTF-8, and an id of -0.0 is 0", function()
    local c = fresh "utf8"
    assert(q:create_collection(c, { vectors = { size = 2 } }))
    assert(q:upsert(c, { { id = -0.0, vector = { 1, 2 } } }))
    local ok, err = q:upsert(c, { { id = 1, vector = { 1, 2 }, payload = { s = "caf\xe9" } } })
    assert.is_nil(ok)
    assert.matches("UTF%-8", err.message)
    ok, err = q:upsert(c, { { id = 1, vector = { ["caf\xe9"] = { 1, 2 } } } })
    assert.matches("UTF%-8", err.message)
    assert.equal(1, q:count(c))
    assert.equal(0, q:scroll(c)().id)
    assert(q:delete_collection(c))
  end)

  -- the stand-in has no multivectors
  ;(STANDIN and pending or it)("writes multivectors", function()
    local c = fresh "multi"
    assert(q:create_collection(c, { vectors = { size = 2, multivector = { comparator = "max_sim" } } }))
    assert(q:upsert(c, { { id = 1, vector = { { 1, 2 }, { 3, 4 } } } }))
    local ok, err = q:upsert(c, { { id = 2, vector = { { 1, 2 }, { 3 } } } })
    assert.matches("vector%[2%] has 1 numbers", err.message)
    assert.equal(1, q:count(c))
    assert(q:delete_collection(c))
  end)

  it("accepts UUIDs and integers up to 2^64-1 as ids", function()
    local uuid = "550E8400-E29B-41D4-A716-446655440000"
    assert(q:upsert(name, { { id = uuid, vector = vec(rand, dim) }, { id = "18446744073709551615", vector = vec(rand, dim) } }))
    local hits = assert(q:query(name, { query = uuid, limit = 1 }))
    assert.equal(1, #hits)
    local ok, err = q:upsert(name, { { id = "18446744073709551616", vector = vec(rand, dim) } })
    assert.is_nil(ok)
    assert.equal("input", err.kind)
  end)

  it("streams an iterator of points with memory bounded", function()
    if helpers.under_valgrind then return end -- RSS under valgrind says nothing
    local stream = fresh "stream"
    assert(q:create_collection(stream, { vectors = { size = 8, distance = "Dot" } }))
    local r, n, peak = lcg(3), 200000, 0
    collectgarbage()
    local base, i = rss_kb(), 0
    local report = assert(q:upsert(stream, function()
      i = i + 1
      if i > n then return nil end
      if i % 10000 == 0 then peak = math.max(peak, rss_kb()) end
      return { id = i, vector = { r(), r(), r(), r(), r(), r(), r(), r() }, payload = { i = i } }
    end, { batch_size = 512, parallel = 4 }))
    assert.equal(n, report.points)
    assert.equal(n, q:count(stream))
    -- all 200,000 points held at once would be ~100 MB of Lua tables and JSON
    assert.is_true(peak - base < 40 * 1024, "RSS grew by " .. (peak - base) .. " kB")
    assert(q:delete_collection(stream))
  end)

  it("stops an iterator at a bad point: the points before it are written", function()
    local stream = fresh "stream"
    assert(q:create_collection(stream, { vectors = { size = 2 } }))
    local i = 0
    local ok, err = q:upsert(stream, function()
      i = i + 1
      if i == 600 then return { id = i, vector = { 1 } } end
      return { id = i, vector = { 1, i } }
    end, { batch_size = 100 })
    assert.is_nil(ok)
    assert.equal(600, err.point)
    assert.equal(599, err.report.points)
    assert.equal(599, q:count(stream))
    -- an iterator that raises: the client is free again at once
    local boom = pcall(q.upsert, q, stream, function() error("boom") end)
    assert.is_false(boom)
    assert(q:count(stream))
    -- the client cannot be closed from the code that feeds it
    local n = 0
    local closed, why = pcall(q.upsert, q, stream, function()
      n = n + 1
      if n == 3 then q:close() end
      return { id = n, vector = { 1, n } }
    end, { batch_size = 2 })
    assert.is_false(closed)
    assert.matches("while an upsert runs", tostring(why))
    assert(q:count(stream))
    -- nor does a slow iterator make requests in flight time out
    n = 0
    local core = require "semstore.core"
    local report = assert(q:upsert(stream, function()
      n = n + 1
      if n > 20 then return nil end
      core.sleep(0.05)
      return { id = n, vector = { 1, n } }
    end, { batch_size = 4, parallel = 2, timeout = 0.3, retry_timeout = 0.5 }))
    assert.equal(20, report.points)
    assert.equal(0, report.retries)
    assert(q:delete_collection(stream))
  end)
end)

-- Exact scores in Lua, for every distance.
local function score(distance, a, b)
  local s = 0
  if distance == "Cosine" then
    local na, nb = 0, 0
    for i = 1, #a do na, nb = na + a[i] ^ 2, nb + b[i] ^ 2 end
    for i = 1, #a do s = s + a[i] / math.sqrt(na) * b[i] / math.sqrt(nb) end
  elseif distance == "Dot" then
    for i = 1, #a do s = s + a[i] * b[i] end
  elseif distance == "Euclid" then
    for i = 1, #a do s = s + (a[i] - b[i]) ^ 2 end
    s = math.sqrt(s)
  else
    for i = 1, #a do s = s + math.abs(a[i] - b[i]) end
  end
  return s
end

describe("qdrant query", function()
  for _, distance in ipairs { "Cosine", "Dot", "Euclid", "Manhattan" } do
    it("matches an exact computation for " .. distance .. ", with a filter", function()
      local name, rand, dim = fresh(distance), lcg(#distance), 8
      assert(q:create_collection(name, { vectors = { size = dim, distance = distance } }))
      local points = {}
      for i = 1, 300 do
        local v = vec(rand, dim)
        for k = 1, dim do v[k] = f32(v[k]) end
        points[i] = { id = i, vector = v, payload = { group = i % 3 } }
      end
      assert(q:upsert(name, points))
      local query = vec(rand, dim)
      local want = {}
      for _, p in ipairs(points) do
        if p.payload.group == 1 then want[#want + 1] = { id = p.id, score = score(distance, query, p.vector) } end
      end
      local smaller = distance == "Euclid" or distance == "Manhattan"
      table.sort(want, function(x, y) if smaller then return x.score < y.score end return x.score > y.score end)
      local hits = assert(q:query(name, { query = query, limit = 10,
        filter = { must = { { key = "group", match = { value = 1 } } } } }))
      assert.equal(10, #hits)
      for k, h in ipairs(hits) do
        assert.equal(want[k].id, h.id)
        assert.is_true(math.abs(want[k].score - h.score) < 1e-4 * math.max(1, math.abs(want[k].score)))
        assert.equal(1, h.payload.group)
      end
      -- score_threshold cuts in the distance's own direction
      local cut = want[5].score
      local some = assert(q:query(name, { query = query, limit = 10, score_threshold = cut,
        filter = { must = { { key = "group", match = { value = 1 } } } } }))
      assert.is_true(#some >= 4 and #some <= 6)
      assert(q:delete_collection(name))
    end)
  end

  it("fuses dense and sparse prefetches with RRF as the formula says", function()
    local name, rand = fresh "hybrid", lcg(11)
    assert(q:create_collection(name, { vectors = { dense = { size = 4, distance = "Cosine" } },
      sparse_vectors = { text = {} } }))
    local points = {}
    for i = 1, 100 do
      -- every point has index 0, so every point matches the sparse query
      points[i] = { id = i, vector = { dense = vec(rand, 4),
        text = { indices = { 0, i % 7 + 1, i % 13 + 20 }, values = { f32(rand() + 2), f32(rand() + 2), f32(rand() + 2) } } } }
    end
    assert(q:upsert(name, points))
    local dq = vec(rand, 4)
    local sq = { indices = { 0, 3, 25 }, values = { 1, 0.5, 0.25 } }
    local function sparse_score(p)
      local s = 0
      for a, idx in ipairs(p.vector.text.indices) do
        for b, qi in ipairs(sq.indices) do
          if idx == qi then s = s + p.vector.text.values[a] * sq.values[b] end
        end
      end
      return s
    end
    local dense, sparse = {}, {}
    for _, p in ipairs(points) do
      dense[#dense + 1] = { id = p.id, s = score("Cosine", dq, p.vector.dense) }
      sparse[#sparse + 1] = { id = p.id, s = sparse_score(p) }
    end
    table.sort(dense, function(x, y) return x.s > y.s end)
    table.sort(sparse, function(x, y) return x.s > y.s end)
    -- Qdrant's RRF (lib/segment/src/common/score_fusion.rs): 1 / (k + rank), rank from 0, k = 2
    local fused = {}
    for _, list in ipairs { dense, sparse } do
      for rank = 1, 20 do
        local id = list[rank].id
        fused[id] = (fused[id] or 0) + 1 / (2 + rank - 1)
      end
    end
    local hits = assert(q:query(name, { fusion = "rrf", limit = 10, prefetch = {
      { query = dq, using = "dense", limit = 20 }, { query = sq, using = "text", limit = 20 } } }))
    assert.equal(10, #hits)
    local best = {}
    for id, s in pairs(fused) do best[#best + 1] = s end
    table.sort(best, function(x, y) return x > y end)
    for k, h in ipairs(hits) do
      -- Qdrant's scores are float32
      assert.equal(f32(fused[h.id] or 0), h.score)
      assert.equal(f32(best[k]), h.score)
    end
    -- query_batch: both queries in one round trip
    local both = assert(q:query_batch(name, { { query = dq, using = "dense", limit = 3 },
      { query = sq, using = "text", limit = 3 } }))
    assert.equal(dense[1].id, both[1][1].id)
    assert.equal(sparse[1].id, both[2][1].id)
    local ok, err = q:query(name, { fusion = "max" })
    assert.equal("input", err.kind)
    ok, err = q:query(name, { qurey = dq })
    assert.matches("qurey", err.message)
    assert(q:delete_collection(name))
  end)
end)

describe("qdrant snapshots and indexing", function()
  it("creates, lists and recovers a snapshot", function()
    local name = fresh "snap"
    assert(q:create_collection(name, { vectors = { size = 2 } }))
    assert(q:upsert(name, { { id = 1, vector = { 1, 0 } }, { id = 2, vector = { 0, 1 } } }))
    local snap = assert(q:create_snapshot(name))
    assert.is_string(snap.name)
    local listed = false
    for _, s in ipairs(assert(q:list_snapshots(name))) do listed = listed or s.name == snap.name end
    assert.is_true(listed)
    assert(q:delete_points(name, { 1, 2 }))
    assert.equal(0, q:count(name))
    -- a real Qdrant downloads the snapshot from itself; the stand-in takes its name
    local location = STANDIN and snap.name or (URL .. "/collections/" .. name .. "/snapshots/" .. snap.name)
    assert(q:recover_snapshot(name, location))
    assert.equal(2, q:count(name))
    local ok, err = q:recover_snapshot(name, "")
    assert.equal("input", err.kind)
    assert(q:delete_collection(name))
  end)

  standin_it("waits for indexing until green, or times out", function()
    local name = fresh "index"
    assert(q:create_collection(name, { vectors = { size = 2 } }))
    admin("POST", "config", { indexing_ms = 600 })
    assert(q:upsert(name, { { id = 1, vector = { 1, 0 } } }))
    local core = require "semstore.core"
    assert.equal("yellow", assert(q:get_collection(name)).status)
    local ok, err = q:wait_for_indexing(name, 0.1)
    assert.is_nil(ok)
    assert.equal("timeout", err.kind)
    assert.matches("yellow", err.message)
    local t0 = core.monotime()
    assert.is_true(q:wait_for_indexing(name, 5))
    assert.is_true(core.monotime() - t0 < 2)
    admin("POST", "config", { indexing_ms = 0 })
    assert(q:delete_collection(name))
  end)

  it("bulk loads with indexing off, and restores the threshold after, even on failure", function()
    local name = fresh "bulk"
    assert(q:create_collection(name, { vectors = { size = 2 }, optimizers = { indexing_threshold = 12345 } }))
    local pts = {}
    for i = 1, 1000 do pts[i] = { id = i, vector = { i, 1 } } end
    local report = assert(q:bulk_load(name, pts, { batch_size = 100 }))
    assert.equal(1000, report.points)
    local info = assert(q:get_collection(name))
    assert.equal(12345, info.config.optimizer_config.indexing_threshold)
    assert.equal("green", info.status)
    local ok, err = q:bulk_load(name, { { id = 1, vector = { 1 } } })
    assert.is_nil(ok)
    assert.equal("input", err.kind)
    assert.equal(12345, assert(q:get_collection(name)).config.optimizer_config.indexing_threshold)
    -- an iterator that raises: restored too, and the error goes on up
    assert.has_error(function() q:bulk_load(name, function() error("boom", 0) end) end, "boom")
    assert.equal(12345, assert(q:get_collection(name)).config.optimizer_config.indexing_threshold)
    -- a threshold Qdrant reports as null (its default) comes back as the default
    local unset = fresh "bulk"
    assert(q:create_collection(unset, { vectors = { size = 2 }, optimizers = { indexing_threshold = semstore.null } }))
    assert(q:bulk_load(unset, { { id = 1, vector = { 1, 2 } } }))
    local restored = assert(q:get_collection(unset)).config.optimizer_config.indexing_threshold
    assert.equal(10000, restored)
    assert(q:delete_collection(unset))
    ok, err = q:bulk_load(name, pts, { batch_sise = 10 })
    assert.matches("batch_sise", err.message)
    ok, err = q:upsert(name, pts, { wait = "no" })
    assert.matches("wait", err.message)
    ok, err = q:query(name)
    assert.equal("input", err.kind)
    assert(q:delete_collection(name))
  end)
end)

describe("qdrant faults", function()
  local name = fresh "faults"
  local rand = lcg(5)
  local function points(n)
    local out = {}
    for i = 1, n do out[i] = { id = i, vector = { rand(), rand() } } end
    return out
  end

  setup(function()
    if not STANDIN then return end
    assert(q:create_collection(name, { vectors = { size = 2 } }))
  end)
  teardown(function()
    if not STANDIN then return end
    admin("DELETE", "faults")
    q:delete_collection(name)
  end)

  standin_it("lands everything through 503s and 429s, counting the retries", function()
    admin("POST", "faults", { kind = "503", every = 3, count = 6, path = "/points" })
    admin("POST", "faults", { kind = "429", every = 4, count = 4, retry_after = 0, path = "/points" })
    local report = assert(q:upsert(name, points(3000), { batch_size = 100, parallel = 4 }))
    assert.equal(3000, report.points)
    assert.is_true(report.retries >= 10, "retries: " .. report.retries)
    assert.equal(3000, q:count(name))
    admin("DELETE", "faults")
  end)

  standin_it("honours a Retry-After of 2 s", function()
    admin("POST", "faults", { kind = "429", count = 1, retry_after = 2 })
    local t0 = semstore.config and require("semstore.core").monotime()
    assert(q:count(name))
    assert.is_true(require("semstore.core").monotime() - t0 >= 1.9)
  end)

  standin_it("times out a stalled request and retries it", function()
    admin("POST", "faults", { kind = "stall", count = 1, stall_ms = 3000 })
    local core = require "semstore.core"
    local t0 = core.monotime()
    assert(q:upsert(name, points(10), { timeout = 0.5 }))
    assert.is_true(core.monotime() - t0 < 2.5)
    admin("DELETE", "faults")
  end)

  standin_it("does not retry a 400", function()
    admin("POST", "stats/reset")
    admin("POST", "faults", { kind = "400", count = 1 })
    local ok, err = q:count(name)
    assert.is_nil(ok)
    assert.equal(400, err.status)
    assert.equal(1, requests()) -- the count alone (the admin API does not count itself)
  end)

  standin_it("bounds the whole time by retry_timeout, and lists the ids not written", function()
    admin("POST", "faults", { kind = "503", count = 1000, path = "/points" })
    local core = require "semstore.core"
    local t0 = core.monotime()
    local ok, err = q:upsert(name, points(500), { batch_size = 100, parallel = 2, max_retries = 100, retry_timeout = 1.5 })
    local took = core.monotime() - t0
    admin("DELETE", "faults")
    assert.is_nil(ok)
    assert.equal("qdrant", err.kind)
    assert.equal(503, err.status)
    assert.is_true(took < 3, "took " .. took)
    assert.equal(0, err.report.points)
    local ids = err.report.failed_ids
    table.sort(ids)
    assert.equal(500, #ids)
    for i = 1, 500 do assert.equal(i, ids[i]) end
  end)

  standin_it("reports a dropped connection as retried, not lost", function()
    admin("POST", "faults", { kind = "drop", count = 2, path = "/points" })
    local report = assert(q:upsert(name, points(300), { batch_size = 100, parallel = 1 }))
    assert.equal(300, report.points)
    admin("DELETE", "faults")
  end)
end)

describe("qdrant api key", function()
  standin_it("is sent as the api-key header and never printed", function()
    local key = helpers.unique("sekret-KEY", "-")
    local kdb = helpers.connect(nil, { qdrant = { url = URL, api_key = key } })
    assert(kdb.qdrant:list_collections())
    assert.equal(key, admin("GET", "stats").last_headers["api-key"])
    local _, err = kdb.qdrant:get_collection(fresh())
    assert.is_nil(tostring(err):find(key, 1, true))
    assert.is_nil(tostring(kdb):find(key, 1, true))
    assert.is_nil(tostring(kdb.qdrant):find(key, 1, true))
    kdb:close()
  end)
end)

describe("examples/qdrant_search.lua", function()
  it("runs, and its hybrid query ranks the search documents first", function()
    local cmd = "cd " .. helpers.shell_quote(helpers.root) .. " && LUA_PATH='lua/?.lua;lua/?/init.lua;;' LUA_CPATH=" .. helpers.shell_quote(helpers.cpath) .. " " ..
      "QDRANT_URL=" .. helpers.shell_quote(URL) .. " DATABASE_URL=" .. helpers.shell_quote(helpers.url) ..
      " " .. helpers.lua_bin .. " examples/qdrant_search.lua 2>&1"
    local p = assert(io.popen(cmd))
    local out = p:read "a"
    local ok = p:close()
    assert.is_true(ok, out)
    assert.truthy(out:find("upserted 4 points in 2 batches", 1, true), out)
    local hybrid = out:match "hybrid.-\n(.*)"
    assert.truthy(hybrid:find "^%s+[24]%s", hybrid)
    assert.truthy(out:find("points:%s+4"), out)
  end)
end)
