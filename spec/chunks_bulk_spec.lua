-- db.chunks:create_chunks_bulk: chunks from an array or an iterator, COPYed
-- in binary into the leaf partitions, all or nothing.
local compat = require "semstore.compat"
compat() -- Lua 5.4's library under LuaJIT too
local semstore = require "semstore"
local helpers = require "support.helpers"
local null = semstore.null

-- Under valgrind everything runs ~30x slower: fewer rows where the count
-- does not matter. The budget test cannot shrink (the budget is 8 MB), so
-- its rows are large and few.
local N = helpers.under_valgrind and 1000 or 10000
local BAD_AT = helpers.under_valgrind and 700 or 7000
local BIG_ROWS, BIG_SIZE = 3000, 4096 -- 12 MB of content: more than the 8 MB budget
local COLLECTIONS = 40

describe("db.chunks:create_chunks_bulk", function()
  local name, url, db, admin, owner, collections, document

  local function count(where, ...)
    return assert(db.pg:query("SELECT count(*)::int AS n FROM chunks " .. (where or ""), ...))[1].n
  end

  -- Large contents are shared between rows (Lua strings are values): the
  -- bytes are copied in C only, which keeps the big bulks quick under valgrind.
  local big_contents = {}
  local function big_content(i, size)
    local k = i % 16
    local key = size * 16 + k
    if not big_contents[key] then big_contents[key] = string.rep(string.char(65 + k), size - 8) .. string.format("%08d", k) end
    return big_contents[key]
  end

  local function chunk(i, size)
    return {
      collection_id = collections[i % #collections + 1],
      chunk_index = i,
      content = size and big_content(i, size) or ("chunk " .. i),
    }
  end

  local function rows_of(n, size)
    local rows = {}
    for i = 1, n do rows[i] = chunk(i, size) end
    return rows
  end

  local function iterate(list, n)
    local i = 0
    n = n or #list
    return function()
      i = i + 1
      if i <= n then return list[i] end
    end
  end

  -- The server process that holds the bulk's transaction open: busy with
  -- a COPY (the server takes one in while the next rows are encoded), or
  -- idle in the transaction after one.
  local function bulk_backends()
    local rows = assert(admin.pg:query([[SELECT pid FROM pg_stat_activity
      WHERE datname = $1 AND state IN ('active', 'idle in transaction') AND query LIKE 'COPY chunks_p%']], name))
    local pids = {}
    for i, r in ipairs(rows) do pids[i] = r.pid end
    return pids
  end

  local fixture
  setup(function()
    fixture = helpers.chunk_schema(COLLECTIONS)
    name, url, db, admin, owner, collections = fixture.name, fixture.url, fixture.db, fixture.admin, fixture.owner,
      fixture.collections
    document = assert(db.pg:query([[INSERT INTO documents (collection_id, file_path, file_name, file_size, content_hash)
      VALUES ($1, '/d/a.txt', 'a.txt', 10, 'h1') RETURNING id]], collections[1]))[1].id
  end)
  teardown(function() fixture.close() end)

  before_each(function() assert(db.pg:exec "DELETE FROM chunks") end)
  after_each(function() helpers.assert_all_returned(db) end)

  it("returns 0 for no rows, and sends nothing", function()
    assert.are.equal(0, db.chunks:create_chunks_bulk {})
    local n, ids = db.chunks:create_chunks_bulk({}, { return_ids = true })
    assert.are.equal(0, n)
    assert.are.same({}, ids)
    assert.are.equal(0, db.chunks:create_chunks_bulk(function() return nil end))
    assert.are.equal(0, count())
  end)

  it("inserts from an array: every chunk in the leaf its key names, every field as given", function()
    local rows = {}
    local contents = { "", "héllo 世界 🚀", 'quote " backslash \\ tab \t newline \n', "\1\127", string.rep("long ", 2000) }
    for i = 1, 400 do
      local r = chunk(i)
      if i % 2 == 0 then
        r.document_id = i % 4 == 0 and document or nil
        r.collection_id = i % 4 == 0 and collections[1] or r.collection_id
        r.start_offset, r.end_offset, r.token_count = i * 10, i * 10 + 9, i % 7
        r.embedding_vector_id = "vec-" .. i
        r.metadata = { page = i, big = helpers.int8 "4611686018427387905", ratio = i / 3, title = "t" .. i .. " é",
          tags = { "a", "b" }, nested = { ok = i % 3 == 0, none = null }, empty = semstore.array {} }
      end
      if i <= #contents then r.content = contents[i] end
      rows[i] = r
    end
    rows[3].start_offset, rows[3].end_offset, rows[3].token_count, rows[3].chunk_index = 0, 2147483647, 0, 2147483647
    rows[5].metadata, rows[5].document_id, rows[5].embedding_vector_id = null, null, null
    assert.are.equal(#rows, assert(db.chunks:create_chunks_bulk(rows)))

    local got = assert(db.pg:query [[SELECT id, collection_id, partition_key, tableoid::regclass::text AS leaf,
        chunk_partition_key(collection_id) AS key, document_id, chunk_index, content, start_offset, end_offset,
        token_count, embedding_vector_id, metadata, created_at
      FROM chunks ORDER BY chunk_index]])
    assert.are.equal(#rows, #got)
    local by_index, leaves = {}, {}
    for _, g in ipairs(got) do
      assert.are.equal("chunks_p" .. g.key, g.leaf)
      assert.are.equal(g.key, g.partition_key)
      assert.are.equal(semstore.partition_key(g.collection_id), g.key)
      assert.are.equal("integer", math.type(g.id))
      assert.is_string(g.created_at)
      leaves[g.leaf] = true
      by_index[g.chunk_index] = g
    end
    local distinct = 0
    for _ in pairs(leaves) do distinct = distinct + 1 end
    assert.is_true(distinct >= 10, "rows spread over " .. distinct .. " leaves")
    for _, r in ipairs(rows) do
      local g = assert(by_index[r.chunk_index], r.chunk_index)
      assert.are.equal(r.collection_id, g.collection_id)
      assert.are.equal(r.content, g.content)
      local function opt(v) if v == nil then return null end return v end
      assert.are.equal(opt(r.document_id), g.document_id)
      assert.are.equal(opt(r.start_offset), g.start_offset)
      assert.are.equal(opt(r.end_offset), g.end_offset)
      assert.are.equal(opt(r.token_count), g.token_count)
      assert.are.equal(opt(r.embedding_vector_id), g.embedding_vector_id)
      if r.metadata == nil or r.metadata == null then
        assert.are.equal(null, g.metadata)
      else
        local m = g.metadata
        assert.are.same({ r.metadata.page, helpers.int8 "4611686018427387905", helpers.lua54 and "integer" or nil, r.metadata.ratio, r.metadata.title, { "a", "b" },
          { ok = r.metadata.nested.ok, none = null } },
          { m.page, m.big, math.type(m.big), m.ratio, m.title, m.tags, m.nested })
        assert.are.same({}, m.empty)
      end
    end
  end)

  it("inserts from an iterator, one table per call until nil", function()
    local calls = 0
    local n = assert(db.chunks:create_chunks_bulk(function()
      calls = calls + 1
      if calls <= 1000 then return chunk(calls) end
    end))
    assert.are.equal(1000, n)
    assert.are.equal(1001, calls)
    assert.are.equal(1000, count())
    assert.are.equal(0, count "WHERE tableoid <> ('chunks_p' || chunk_partition_key(collection_id))::regclass")
    assert.are.equal(1000, count "WHERE content = 'chunk ' || chunk_index AND document_id IS NULL AND metadata IS NULL")
  end)

  it("returns the ids in input order with return_ids, from an array and from an iterator", function()
    for _, from_iterator in ipairs { false, true } do
      assert(db.pg:exec "DELETE FROM chunks")
      local rows = rows_of(2500)
      local n, ids
      if from_iterator then
        n, ids = db.chunks:create_chunks_bulk(iterate(rows), { return_ids = true })
      else
        n, ids = db.chunks:create_chunks_bulk(rows, { return_ids = true })
      end
      assert.are.equal(#rows, n, tostring(ids))
      assert.are.equal(#rows, #ids)
      local seen = {}
      for i, id in ipairs(ids) do
        assert.are.equal("integer", math.type(id))
        assert.is_nil(seen[id], "id " .. id .. " twice")
        seen[id] = i
      end
      local got = assert(db.pg:query("SELECT id, content, chunk_index FROM chunks WHERE id = ANY($1::int8[])",
        semstore.array(ids)))
      assert.are.equal(#rows, #got)
      for _, g in ipairs(got) do
        local i = seen[g.id]
        assert.are.equal(rows[i].content, g.content)
        assert.are.equal(i, g.chunk_index)
      end
    end
    -- without return_ids: the count alone
    local a, b = db.chunks:create_chunks_bulk(rows_of(3))
    assert.are.equal(3, a)
    assert.is_nil(b)
  end)

  describe("a bad row among " .. N .. " (at " .. BAD_AT .. ")", function()
    local base
    local UUID = "550e8400-e29b-41d4-a716-446655440000"
    local function with(fields)
      return function()
        local r = chunk(BAD_AT)
        for k, v in pairs(fields) do r[k] = v end
        if fields.__drop then r[fields.__drop], r.__drop = nil, nil end
        return r
      end
    end
    local cases = {
      { "missing content", "content", with { __drop = "content" } },
      { "content that is a number", "content", with { content = 5 } },
      { "content with a zero byte", "content", with { content = "a\0b" } },
      { "content that is not UTF-8", "content", with { content = "caf\xe9" } },
      { "content with an overlong form", "content", with { content = "\xc0\xaf" } },
      { "content with a surrogate", "content", with { content = "\xed\xa0\x80" } },
      { "content cut in a character", "content", with { content = "abc\xe2\x82" } },
      { "missing collection_id", "collection_id", with { __drop = "collection_id" } },
      { "a collection_id that is no UUID", "collection_id", with { collection_id = "not-a-uuid" } },
      { "an upper-case collection_id", "collection_id", with { collection_id = UUID:upper() } },
      { "a collection_id with braces", "collection_id", with { collection_id = "{" .. UUID .. "}" } },
      { "a collection_id that is a number", "collection_id", with { collection_id = 42 } },
      { "an upper-case document_id", "document_id", with { document_id = UUID:upper() } },
      { "a missing chunk_index", "chunk_index", with { __drop = "chunk_index" } },
      { "a negative chunk_index", "chunk_index", with { chunk_index = -1 } },
      { "a float chunk_index", "chunk_index", with { chunk_index = 1.5 } },
      { "a chunk_index beyond int4", "chunk_index", with { chunk_index = 2147483648 } },
      -- a canonical decimal string is an integer (LuaJIT's int8 beyond 2^53)
      { "a chunk_index that is a string but no canonical decimal", "chunk_index", with { chunk_index = "3.0" } },
      { "a negative token_count", "token_count", with { token_count = -5 } },
      { "a start_offset that is NaN", "start_offset", with { start_offset = 0 / 0 } },
      { "an end_offset that is a table", "end_offset", with { end_offset = {} } },
      { "an embedding_vector_id that is not UTF-8", "embedding_vector_id", with { embedding_vector_id = "\xff" } },
      { "an unknown field", "colour", with { colour = "red" } },
      { "metadata that is not a table", "metadata", with { metadata = '{"a":1}' } },
      { "metadata holding a function", "metadata", with { metadata = { f = print } } },
      { "metadata holding NaN", "metadata", with { metadata = { x = 0 / 0 } } },
      { "a row that is not a table", nil, function() return "oops" end },
      { "a row that is false", nil, function() return false end },
    }

    setup(function() base = rows_of(N) end)

    for _, c in ipairs(cases) do
      local what, field, make = c[1], c[2], c[3]
      it(what .. ": nil, an input error naming row and field, no rows", function()
        local keep = base[BAD_AT]
        base[BAD_AT] = make()
        local res, err = db.chunks:create_chunks_bulk(base)
        base[BAD_AT] = keep
        assert.is_nil(res)
        assert.are.equal("input", err.kind, tostring(err))
        assert.are.equal(BAD_AT, err.row, tostring(err))
        assert.are.equal(field, err.field, tostring(err))
        assert.truthy(tostring(err.message):find("row " .. BAD_AT, 1, true), tostring(err))
        assert.are.equal(0, count())
      end)
    end

    it("from an iterator too, with return_ids", function()
      local keep = base[BAD_AT]
      base[BAD_AT] = with { collection_id = UUID:upper() }()
      local res, err = db.chunks:create_chunks_bulk(iterate(base, N), { return_ids = true })
      base[BAD_AT] = keep
      assert.is_nil(res)
      assert.are.equal("input", err.kind)
      assert.are.equal(BAD_AT, err.row)
      assert.are.equal("collection_id", err.field)
      assert.are.equal(0, count())
    end)

    it("the first bad row is the one named", function()
      local rows = rows_of(20)
      rows[9].chunk_index, rows[12].content = -1, nil
      local res, err = db.chunks:create_chunks_bulk(rows)
      assert.is_nil(res)
      assert.are.same({ "input", 9, "chunk_index" }, { err.kind, err.row, err.field })
    end)
  end)

  describe("more than the 8 MB in memory", function()
    it("are all inserted, flushed part by part", function()
      local flushed
      local rows = rows_of(BIG_ROWS, BIG_SIZE)
      local i = 0
      local n = assert(db.chunks:create_chunks_bulk(function()
        i = i + 1
        if i == BIG_ROWS then flushed = #bulk_backends() end
        return rows[i]
      end))
      assert.are.equal(BIG_ROWS, n)
      assert.are.equal(1, flushed, "a COPY ran before the last row was read")
      assert.are.equal(BIG_ROWS, count())
      assert.are.equal(BIG_ROWS, count("WHERE length(content) = $1 AND right(content, 8)::int = chunk_index % 16", BIG_SIZE))
      assert.are.equal(0, count "WHERE tableoid <> ('chunks_p' || chunk_partition_key(collection_id))::regclass")
    end)

    it("all in one collection (one partition, copied several times): all inserted", function()
      local rows = rows_of(BIG_ROWS, BIG_SIZE)
      for _, r in ipairs(rows) do r.collection_id = collections[3] end
      local n, err = db.chunks:create_chunks_bulk(rows)
      assert.are.equal(BIG_ROWS, n, tostring(err))
      assert.are.equal(BIG_ROWS, count("WHERE collection_id = $1 AND length(content) = $2", collections[3], BIG_SIZE))
      assert.are.equal(BIG_ROWS, count("WHERE tableoid = $1::regclass", "chunks_p" .. semstore.partition_key(collections[3])))
    end)

    it("with a bad row near the end: none (all or nothing)", function()
      local flushed
      local rows = rows_of(BIG_ROWS, BIG_SIZE)
      local bad = BIG_ROWS - 10
      rows[bad].chunk_index = -1
      local i = 0
      local res, err = db.chunks:create_chunks_bulk(function()
        i = i + 1
        if i == bad then flushed = #bulk_backends() end
        return rows[i]
      end)
      assert.is_nil(res)
      assert.are.equal(1, flushed, "a COPY ran before the bad row was read")
      assert.are.same({ "input", bad, "chunk_index" }, { err.kind, err.row, err.field })
      assert.are.equal(0, count())
      assert.are.same({}, bulk_backends())
    end)

    it("from an iterator with return_ids, more ids taken after a COPY was sent: all, ids in order", function()
      -- ids are taken 10,000 at a time from an iterator: 12,000 rows of 1 KB
      -- pass the budget before row 10,001 asks for more
      local n_rows, size = 12000, 1000
      local i, flushed = 0, nil
      local n, ids = db.chunks:create_chunks_bulk(function()
        i = i + 1
        if i == 10001 then flushed = #bulk_backends() end
        if i <= n_rows then return chunk(i, size) end
      end, { return_ids = true })
      assert.are.equal(1, flushed, "a COPY ran before row 10,001")
      assert.are.equal(n_rows, n, tostring(ids))
      assert.are.equal(n_rows, #ids)
      assert.are.equal(n_rows, count())
      local got = assert(db.pg:query("SELECT id, chunk_index FROM chunks WHERE id = ANY($1::int8[])", semstore.array(ids)))
      assert.are.equal(n_rows, #got)
      local index_of = {}
      for k, id in ipairs(ids) do index_of[id] = k end
      for _, g in ipairs(got) do assert.are.equal(index_of[g.id], g.chunk_index) end
    end)

    it("a server-side error in a part copied early: that error, and none", function()
      local rows = rows_of(BIG_ROWS, BIG_SIZE)
      for k = 1, 20 do rows[k].document_id = "00000000-0000-4000-8000-000000000000" end
      local res, err = db.chunks:create_chunks_bulk(rows)
      assert.is_nil(res)
      assert.are.equal("23503", err.code, tostring(err))
      assert.are.equal(0, count())
      assert.are.equal(0, db.pg:stats().in_use)
    end)

    it("from an array with a bad row at the very end: none", function()
      local rows = rows_of(BIG_ROWS, BIG_SIZE)
      rows[BIG_ROWS].content = "bad \0 byte"
      local res, err = db.chunks:create_chunks_bulk(rows, { return_ids = true })
      assert.is_nil(res)
      assert.are.same({ "input", BIG_ROWS, "content" }, { err.kind, err.row, err.field })
      assert.are.equal(0, count())
    end)
  end)

  it("a document_id that names no document: postgres error 23503 and no rows", function()
    local rows = rows_of(500)
    rows[300].document_id = "00000000-0000-4000-8000-000000000000"
    local res, err = db.chunks:create_chunks_bulk(rows)
    assert.is_nil(res)
    assert.are.equal("postgres", err.kind)
    assert.are.equal("23503", err.code, tostring(err))
    assert.are.equal(0, count())
    -- the same for a collection that does not exist
    rows[300].document_id = nil
    rows[301].collection_id = "00000000-0000-4000-8000-000000000000"
    res, err = db.chunks:create_chunks_bulk(rows, { return_ids = true })
    assert.is_nil(res)
    assert.are.equal("23503", err.code, tostring(err))
    assert.are.equal(0, count())
    -- and the pool's connection is usable again
    assert.are.equal(500, db.chunks:create_chunks_bulk(rows_of(500)))
  end)

  describe("an iterator that raises", function()
    local function raising_at(at, size)
      local boom = { "boom" }
      local i = 0
      return boom, function()
        i = i + 1
        if i == at then error(boom) end
        return chunk(i, size)
      end
    end

    it("before anything was sent: the error propagates, no rows, the connection goes back", function()
      local boom, iter = raising_at(500)
      local ok, e = pcall(db.chunks.create_chunks_bulk, db.chunks, iter)
      assert.is_false(ok)
      assert.are.equal(boom, e)
      assert.are.equal(0, db.pg:stats().in_use)
      assert.are.equal(0, count())
    end)

    it("after a part was copied: the same", function()
      local boom, iter = raising_at(BIG_ROWS, BIG_SIZE)
      local ok, e = pcall(db.chunks.create_chunks_bulk, db.chunks, iter, { return_ids = true })
      assert.is_false(ok)
      assert.are.equal(boom, e)
      assert.are.equal(0, db.pg:stats().in_use)
      assert.are.equal(0, count())
      assert.are.same({}, bulk_backends())
      assert.are.equal(10, db.chunks:create_chunks_bulk(rows_of(10)))
    end)

    it("with a string error", function()
      local ok, e = pcall(db.chunks.create_chunks_bulk, db.chunks, function() error("iterator broke", 0) end)
      assert.is_false(ok)
      assert.are.equal("iterator broke", e)
      assert.are.equal(0, db.pg:stats().in_use)
    end)
  end)

  describe("on a borrowed connection", function()
    it("joins db.pg:transaction: rolled back when the function returns nil, err", function()
      local ok, err = db.pg:transaction(function(tx)
        local n = assert(semstore.repositories(tx).chunks:create_chunks_bulk(rows_of(300)))
        assert.are.equal(300, n)
        assert.are.equal(300, assert(tx:query "SELECT count(*)::int AS n FROM chunks")[1].n)
        assert.are.equal("in_transaction", tx:transaction_status())
        return nil, "changed my mind"
      end)
      assert.is_nil(ok)
      assert.truthy(tostring(err):find("changed my mind", 1, true))
      assert.are.equal(0, count())
    end)

    it("joins db.pg:transaction: committed with it, and sees what the transaction wrote", function()
      local ok = assert(db.pg:transaction(function(tx)
        local doc = assert(tx:query([[INSERT INTO documents (collection_id, file_path, file_name, file_size, content_hash)
          VALUES ($1, '/d/b.txt', 'b.txt', 1, 'h-tx') RETURNING id]], collections[2]))[1].id
        local rows = rows_of(200)
        for _, r in ipairs(rows) do r.collection_id, r.document_id = collections[2], doc end
        local n, ids = semstore.repositories(tx).chunks:create_chunks_bulk(rows, { return_ids = true })
        assert.are.equal(200, n, tostring(ids))
        assert.are.equal(200, #ids)
        return "done"
      end))
      assert.are.equal("done", ok)
      assert.are.equal(200, count "WHERE document_id IS NOT NULL")
    end)

    it("a failed bulk inside a transaction rolls back to its savepoint only", function()
      local ok = assert(db.pg:transaction(function(tx)
        assert(tx:query([[INSERT INTO chunks (collection_id, partition_key, chunk_index, content)
          VALUES ($1::text, chunk_partition_key($1::text), 0, 'before')]], collections[1]))
        local rows = rows_of(400)
        rows[399].document_id = "00000000-0000-4000-8000-000000000000"
        local res, err = semstore.repositories(tx).chunks:create_chunks_bulk(rows)
        assert.is_nil(res)
        assert.are.equal("23503", err.code, tostring(err))
        assert.are.equal("in_transaction", tx:transaction_status())
        -- the transaction goes on
        assert(tx:query([[INSERT INTO chunks (collection_id, partition_key, chunk_index, content)
          VALUES ($1::text, chunk_partition_key($1::text), 1, 'after')]], collections[1]))
        local n = assert(semstore.repositories(tx).chunks:create_chunks_bulk(rows_of(5)))
        assert.are.equal(5, n)
        return true
      end))
      assert.is_true(ok)
      assert.are.equal(7, count())
      assert.are.equal(2, count "WHERE content IN ('before', 'after')")
    end)

    it("an input error inside a transaction leaves it usable", function()
      local ok = assert(db.pg:transaction(function(tx)
        local res, err = semstore.repositories(tx).chunks:create_chunks_bulk { { collection_id = "x", chunk_index = 0, content = "c" } }
        assert.is_nil(res)
        assert.are.equal("input", err.kind)
        assert.are.equal(3, assert(semstore.repositories(tx).chunks:create_chunks_bulk(rows_of(3))))
        return true
      end))
      assert.is_true(ok)
      assert.are.equal(3, count())
    end)

    it("commits on its own on a connection with no transaction open", function()
      local conn = assert(db.pg:acquire())
      compat.closing(conn, function()
        local repos = semstore.repositories(conn)
        assert.are.equal(100, assert(repos.chunks:create_chunks_bulk(rows_of(100))))
        assert.are.equal("idle", conn:transaction_status())
        assert.is_false(conn:released())
        assert.are.equal(100, count())
      end)
    end)
  end)

  describe("a server connection killed in the middle", function()
    local function check_after(res, err)
      assert.is_nil(res)
      assert.truthy(err.kind == "connection" or err.kind == "postgres", tostring(err))
      assert.are.equal(0, db.pg:stats().in_use)
      assert.are.equal(0, count())
      -- the pool goes on
      assert.are.equal(1, assert(db.pg:query "SELECT 1 AS one")[1].one)
      assert.are.equal(10, assert(db.chunks:create_chunks_bulk(rows_of(10))))
      assert.are.equal(10, count())
    end

    it("after a part was copied: nil, err, no rows, the pool usable", function()
      local rows = rows_of(BIG_ROWS, BIG_SIZE)
      local killed
      local i = 0
      local res, err = db.chunks:create_chunks_bulk(function()
        i = i + 1
        if i == BIG_ROWS - 100 then
          local pids = bulk_backends()
          assert.are.equal(1, #pids)
          killed = assert(admin.pg:query("SELECT pg_terminate_backend($1, 5000) AS ok", pids[1]))[1].ok
        end
        return rows[i]
      end)
      assert.is_true(killed)
      check_after(res, err)
    end)

    it("on a borrowed connection before anything was sent: nil, err, no rows", function()
      local conn = assert(db.pg:acquire())
      local pid = conn:backend_pid()
      local i = 0
      local res, err = semstore.repositories(conn).chunks:create_chunks_bulk(function()
        i = i + 1
        if i == 50 then
          assert.is_true(assert(admin.pg:query("SELECT pg_terminate_backend($1, 5000) AS ok", pid))[1].ok)
        end
        if i <= 100 then return chunk(i) end
      end)
      conn:release()
      check_after(res, err)
    end)

    it("with return_ids, killed while the ids are taken: nil, err", function()
      local conn = assert(db.pg:acquire())
      assert.is_true(assert(admin.pg:query("SELECT pg_terminate_backend($1, 5000) AS ok", conn:backend_pid()))[1].ok)
      local res, err = semstore.repositories(conn).chunks:create_chunks_bulk(rows_of(100), { return_ids = true })
      conn:release()
      check_after(res, err)
    end)
  end)

  describe("review fixes", function()
    it("a raise while C holds a borrowed connection gives it back at once, not at the next collection", function()
      collectgarbage "stop"
      for _ = 1, 3 do
        local bad = setmetatable({}, { __index = function() error "boom" end })
        assert.is_false(pcall(db.chunks.create_chunks_bulk, db.chunks, { bad }))
        assert.are.equal(0, db.pg:stats().in_use)
        assert.is_false(pcall(db.chunks.update_chunk_embeddings, db.chunks, { bad }))
        assert.are.equal(0, db.pg:stats().in_use)
        -- a statement reads nothing of its repository but `pg` (the partition
        -- count is kept with the connection), and no Lua code runs while it
        -- holds the connection: it answers, and gives the connection back
        local ok, res, err = pcall(db.chunks.get_chunk_by_id, setmetatable({}, { __index = function(_, k)
          if k == "pg" then return db.pg end
          error "boom"
        end }), 1, collections[1])
        assert.is_true(ok, tostring(res))
        assert.are.equal("not_found", err.kind, tostring(err))
        assert.are.equal(0, db.pg:stats().in_use)
      end
      collectgarbage "restart"
    end)

    it("takes a row whose fields come through __index", function()
      local proto = chunk(1)
      local row = setmetatable({}, { __index = proto })
      assert.are.equal(1, assert(db.chunks:create_chunks_bulk { row }))
      local mixed = setmetatable({ content = "own" }, { __index = proto })
      assert.are.equal(1, assert(db.chunks:create_chunks_bulk { mixed }))
      local typo = setmetatable({ contnt = "x" }, { __index = proto })
      local n, err = db.chunks:create_chunks_bulk { typo }
      assert.is_nil(n)
      assert.are.equal("input", err.kind)
      assert.are.equal("contnt", err.field)
      assert.are.equal(2, count())
    end)

    it("refuses a repository call on the bulk's own connection from its iterator, and loses nothing", function()
      local evicted = db.pg:stats().evicted
      local conn = assert(db.pg:acquire())
      local repos = semstore.repositories(conn)
      local i = 0
      local ok, err = pcall(repos.chunks.create_chunks_bulk, repos.chunks, function()
        i = i + 1
        if i == 30 then repos.chunks:get_chunk_statistics(collections[1]) end
        if i <= 60 then return chunk(i, 4096) end
      end)
      assert.is_false(ok)
      assert.truthy(tostring(err):find("in use", 1, true), tostring(err))
      assert.is_false(conn:released())
      assert.are.equal("idle", conn:transaction_status())
      assert.are.equal(1, assert(conn:query "select 1 as v")[1].v)
      conn:release()
      assert.are.equal(0, count())
      assert.are.equal(evicted, db.pg:stats().evicted)
    end)
  end)

  describe("Lua code running during the bulk", function()
    it("cannot query or release the bulk's own connection", function()
      local conn = assert(db.pg:acquire())
      for _, misuse in ipairs { function() conn:release() end, function() conn:query "SELECT 1" end } do
        local i = 0
        local ok, err = pcall(semstore.repositories(conn).chunks.create_chunks_bulk, semstore.repositories(conn).chunks,
          function()
            i = i + 1
            if i == 20 then misuse() end
            if i <= 40 then return chunk(i, 4096) end
          end)
        assert.is_false(ok)
        assert.truthy(tostring(err):find("in use by a repository call", 1, true), tostring(err))
        assert.is_false(conn:released())
        assert.are.equal("idle", conn:transaction_status())
      end
      assert.are.equal(0, count())
      conn:release()
    end)

    it("raising in a row's metamethod after a COPY was sent: nothing of the bulk stays, in a transaction too", function()
      local rows = rows_of(BIG_ROWS, BIG_SIZE)
      rows[#rows] = setmetatable({}, { __index = function() error("no such row") end })
      local ok, err = pcall(db.chunks.create_chunks_bulk, db.chunks, rows)
      assert.is_false(ok)
      assert.truthy(tostring(err):find("no such row", 1, true))
      assert.are.equal(0, db.pg:stats().in_use)
      assert.are.equal(0, count())
      -- inside the caller's transaction: rolled back to the bulk's savepoint,
      -- and what the transaction did before it commits
      assert(db.pg:transaction(function(tx)
        assert(tx:query("INSERT INTO chunks (collection_id, partition_key, chunk_index, content) VALUES ($1::text, chunk_partition_key($1::text), 0, 'before')", collections[1]))
        local inner_ok = pcall(semstore.repositories(tx).chunks.create_chunks_bulk, semstore.repositories(tx).chunks, rows)
        assert.is_false(inner_ok)
        assert.are.equal("in_transaction", tx:transaction_status())
      end))
      assert.are.equal(1, count())
      assert(db.pg:exec "DELETE FROM chunks")
      assert.are.equal(0, db.pg:stats().in_use)
    end)
  end)

  -- valgrind's own memory would swamp the figure
  local it_natively = helpers.under_valgrind and pending or it
  it_natively("streams 100 MB from an iterator in a process that stays small", function()
    local script = os.tmpname()
    helpers.write_file(script, [[
local semstore = require "semstore"
local url, n = ...
local db = assert(semstore.connect { name = "rss", postgres = url, pool = { size = 1, max_overflow = 0 } })
local collections = {}
for _, r in ipairs(assert(db.pg:query "SELECT id FROM collections ORDER BY id")) do collections[#collections + 1] = r.id end
local pad, i = string.rep("x", 1000), 0
print((assert(db.chunks:create_chunks_bulk(function()
  i = i + 1
  if i > tonumber(n) then return nil end
  return { collection_id = collections[i % #collections + 1], chunk_index = i, content = pad .. i, metadata = { i = i } }
end))))
print(io.open("/proc/self/status"):read("a"):match("VmHWM:%s*(%d+) kB"))
]])
    local p = assert(io.popen(string.format("LUA_PATH=%s LUA_CPATH=%s %s %s %s 100000 2>&1",
      helpers.shell_quote(helpers.root .. "/lua/?.lua;" .. helpers.root .. "/lua/?/init.lua;;"),
      helpers.shell_quote(helpers.cpath), helpers.lua_bin, script, helpers.shell_quote(url))))
    local out = p:read "a"
    p:close()
    os.remove(script)
    local inserted, peak_kb = out:match "^(%d+)\n(%d+)\n$"
    assert.are.equal("100000", inserted, out)
    assert.is_true(tonumber(peak_kb) < 64 * 1024, "peak RSS " .. tostring(peak_kb) .. " kB")
    assert.are.equal(100000, count())
  end)

  it("takes ids only for rows that are there, whatever rows.n says", function()
    local res, err = db.chunks:create_chunks_bulk({ n = 0x7fffffff }, { return_ids = true })
    assert.is_nil(res)
    assert.are.equal("input", err.kind)
    assert.are.equal(1, err.row)
    assert.are.equal(0, db.pg:stats().in_use)
  end)

  it("refuses an option it does not know", function()
    local res, err = db.chunks:create_chunks_bulk(rows_of(3), { returnids = true })
    assert.is_nil(res)
    assert.are.equal("input", err.kind)
    assert.truthy(err.message:find("returnids", 1, true), err.message)
    assert.are.equal(0, count())
  end)

  it("checks its arguments", function()
    assert.has_error(function() db.chunks:create_chunks_bulk() end)
    assert.has_error(function() db.chunks:create_chunks_bulk "rows" end)
    assert.has_error(function() db.chunks:create_chunks_bulk({}, "opts") end)
    assert.has_error(function() db.chunks.create_chunks_bulk(nil, {}) end)
    assert.are.equal(0, count())
  end)
end)
