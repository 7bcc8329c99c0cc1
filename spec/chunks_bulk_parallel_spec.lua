-- db.chunks:create_chunks_bulk(rows, { parallel = N }): partitions copied
-- over N pooled connections, committed whole by a two-phase commit, and
-- db.chunks:recover_bulk / `semstore recover` settling what a process that
-- died midway left prepared. Every case ends with all rows or none, and no
-- prepared transaction once recovery ran.
local compat = require "semstore.compat"
compat() -- Lua 5.4's library under LuaJIT too
local semstore = require "semstore"
local helpers = require "support.helpers"

local N = helpers.under_valgrind and 2000 or 20000
local COLLECTIONS = 12
-- a row size that makes N rows 12 MB, more than the 8 MB a bulk keeps
-- before it copies: parts are then copied while rows still come
local BIG = math.ceil(12e6 / N)

describe("create_chunks_bulk with parallel", function()
  local name, url, db, admin, collections

  local fixture, count, prepared, decisions, chunk, rows_of
  setup(function()
    fixture = helpers.chunk_schema(COLLECTIONS)
    name, url, db, admin, collections = fixture.name, fixture.url, fixture.db, fixture.admin, fixture.collections
    count = fixture.count
    prepared = fixture.prepared
    decisions = fixture.decisions
    chunk = fixture.chunk
    rows_of = fixture.rows_of
  end)
  teardown(function() fixture.close() end)

  before_each(function() assert(db.pg:exec "DELETE FROM chunks") end)
  after_each(function()
    helpers.assert_all_returned(db)
    assert.are.equal(0, prepared())
  end)

  it("copies on two connections and commits every row, leaving no prepared transaction or decision", function()
    local steps = {}
    local n, ids, report = db.chunks:create_chunks_bulk(rows_of(N, 300), { parallel = 2, return_ids = true,
      on_step = function(step, k) steps[#steps + 1] = step .. " " .. k end })
    assert.are.equal(N, n, tostring(ids))
    assert.are.equal(N, #ids)
    assert.are.same({ connections = 2, parallel = 2 }, report)
    assert.are.equal(N, count())
    -- ids in input order, each row once
    local got = assert(db.pg:query("SELECT chunk_index FROM chunks WHERE id = $1", ids[N]))
    assert.are.equal(N, got[1].chunk_index)
    assert.are.equal(N, assert(db.pg:query "SELECT count(DISTINCT id)::int AS n FROM chunks")[1].n)
    assert.are.same({ "prepare 1", "prepare 2", "decide 1", "commit 1", "commit 2", "forget 1" }, steps)
    assert.are.equal(0, decisions())
  end)

  it("reports one connection and no fallback without parallel, and parallel = 1 the same", function()
    local n, ids, report = db.chunks:create_chunks_bulk(rows_of(10))
    assert.are.equal(10, n)
    assert.is_nil(ids)
    assert.are.same({ connections = 1, parallel = 1 }, report)
    n, ids, report = db.chunks:create_chunks_bulk(rows_of(10), { parallel = 1 })
    assert.are.same({ connections = 1, parallel = 1 }, report)
  end)

  it("a small bulk copies on as many connections as have work, and still commits whole", function()
    local n, _, report = db.chunks:create_chunks_bulk(rows_of(3), { parallel = 3 })
    assert.are.equal(3, n)
    assert.are.equal(3, report.connections)
    assert.are.equal(3, count())
    assert.are.equal(0, decisions())
  end)

  it("refuses a parallel that is no integer from 1 to 16, and an on_step that is no function", function()
    for _, bad in ipairs { 0, 17, 1.5, -1, 0 / 0, "2" } do
      local n, err = db.chunks:create_chunks_bulk(rows_of(5), { parallel = bad })
      assert.is_nil(n)
      assert.are.equal("input", err.kind)
      assert.truthy(tostring(err):find "parallel", tostring(err))
    end
    local n, err = db.chunks:create_chunks_bulk(rows_of(5), { parallel = 2, on_step = "yes" })
    assert.is_nil(n)
    assert.truthy(tostring(err):find "on_step", tostring(err))
    n, err = db.chunks:create_chunks_bulk(rows_of(5), { paralel = 2 })
    assert.is_nil(n)
    assert.truthy(tostring(err):find "paralel", tostring(err))
    assert.are.equal(0, count())
  end)

  describe("falls back to one connection, and says why", function()
    it("inside the caller's transaction, which the rows then join", function()
      local report
      local ok, err = db.pg:transaction(function(conn)
        local n, _
        n, _, report = assert(semstore.repositories(conn).chunks:create_chunks_bulk(rows_of(100), { parallel = 2 }))
        assert.are.equal(100, n)
        error("roll it back")
      end)
      assert.is_nil(ok)
      assert.truthy(tostring(err):find "roll it back", tostring(err))
      assert.are.equal(1, report.connections)
      assert.truthy(report.fallback:find "transaction", report.fallback)
      assert.are.equal(0, count())
    end)

    it("when the pool has no connection free", function()
      local small = helpers.connect({ size = 1, max_overflow = 0, timeout = 10 }, { postgres = url })
      local n, _, report = small.chunks:create_chunks_bulk(rows_of(100), { parallel = 2 })
      assert.are.equal(100, n)
      assert.are.equal(1, report.connections)
      assert.truthy(report.fallback:find "pool", report.fallback)
      helpers.assert_all_returned(small)
      small:close()
    end)

    it("when the server's prepared transactions are too few for the connections", function()
      -- occupy all but one of the server's slots with prepared transactions of another name
      local most = assert(admin.pg:query "SELECT current_setting('max_prepared_transactions')::int AS n")[1].n
      local conn = assert(db.pg:acquire())
      for i = 1, most - 1 do assert(conn:exec("BEGIN; PREPARE TRANSACTION 'spec:occupied:" .. i .. "'")) end
      conn:release()
      local n, err, report = db.chunks:create_chunks_bulk(rows_of(100), { parallel = 2 })
      for i = 1, most - 1 do assert(db.pg:exec("ROLLBACK PREPARED 'spec:occupied:" .. i .. "'")) end
      assert.are.equal(100, n, tostring(err))
      assert.are.equal(1, report.connections)
      assert.truthy(report.fallback:find "max_prepared_transactions", report.fallback)
      assert.are.equal(100, count())
    end)
  end)

  describe("a failure in one part rolls every part back", function()
    it("a CHECK that one collection's rows break", function()
      assert(db.pg:exec "ALTER TABLE chunks ADD CONSTRAINT spec_poison CHECK (content <> 'poison')")
      local rows = rows_of(N)
      rows[N - 3].content = "poison"
      local n, err = db.chunks:create_chunks_bulk(rows, { parallel = 2 })
      assert(db.pg:exec "ALTER TABLE chunks DROP CONSTRAINT spec_poison")
      assert.is_nil(n)
      assert.are.equal("postgres", err.kind)
      assert.are.equal("23514", err.code)
      assert.are.equal(0, count())
      assert.are.equal(0, decisions())
    end)

    it("a foreign key one part breaks, found while another part is copied", function()
      local rows = rows_of(N, 200)
      rows[7].document_id = "00000000-0000-4000-8000-000000000000"
      local n, err = db.chunks:create_chunks_bulk(rows, { parallel = 3 })
      assert.is_nil(n)
      assert.are.equal("23503", err.code)
      assert.are.equal(0, count())
    end)

    it("a bad row late in the input, after parts were copied on both connections", function()
      local rows = rows_of(N, BIG)
      rows[N].chunk_index = -1
      local n, err = db.chunks:create_chunks_bulk(rows, { parallel = 2 })
      assert.is_nil(n)
      assert.are.equal(N, err.row)
      assert.are.equal(0, count())
    end)

    it("an iterator that raises midway", function()
      local rows, i = rows_of(N, BIG), 0
      local ok, err = pcall(db.chunks.create_chunks_bulk, db.chunks, function()
        i = i + 1
        if i == N - 10 then error("the source broke") end
        return rows[i]
      end, { parallel = 2 })
      assert.is_false(ok)
      assert.truthy(tostring(err):find "the source broke", tostring(err))
      assert.are.equal(0, count())
    end)

    it("on_step raising before the decision rolls back; after it, the bulk still commits whole", function()
      for _, at in ipairs { "prepare 2", "decide 1" } do
        local ok, err = pcall(db.chunks.create_chunks_bulk, db.chunks, rows_of(500), { parallel = 2,
          on_step = function(step, k) if step .. " " .. k == at then error("stop at " .. at) end end })
        assert.is_false(ok)
        assert.truthy(tostring(err):find(at, 1, true), tostring(err))
        assert.are.equal(0, count(), at)
      end
      for _, at in ipairs { "commit 1", "commit 2", "forget 1" } do
        assert(db.pg:exec "DELETE FROM chunks")
        local ok = pcall(db.chunks.create_chunks_bulk, db.chunks, rows_of(500), { parallel = 2,
          on_step = function(step, k) if step .. " " .. k == at then error("stop at " .. at) end end })
        assert.is_false(ok)
        assert.are.equal(500, count(), at)
        assert.are.equal(0, decisions(), at)
      end
    end)

    it("a backend of the second connection killed midway: nil, err, no rows, the pool usable", function()
      local rows, i, killed = rows_of(N, BIG), 0, nil
      local mine = {}
      local n, err = db.chunks:create_chunks_bulk(function()
        i = i + 1
        if i == N - 100 then
          local copying = assert(admin.pg:query([[SELECT pid FROM pg_stat_activity WHERE datname = $1
            AND state IN ('active', 'idle in transaction') AND backend_xid IS NOT NULL ORDER BY pid]], name))
          assert.are.equal(2, #copying)
          mine = copying
          killed = assert(admin.pg:query("SELECT pg_terminate_backend($1, 5000) AS ok", copying[2].pid))[1].ok
        end
        return rows[i]
      end, { parallel = 2 })
      assert.is_true(killed, #mine)
      assert.is_nil(n)
      assert.truthy(err.kind == "connection" or err.kind == "postgres", tostring(err))
      assert.are.equal(0, count())
      assert.are.equal(N, (db.chunks:create_chunks_bulk(rows, { parallel = 2 })))
      assert.are.equal(N, count())
    end)
  end)

  it("a stopped backend (SIGSTOP) cannot hold the bulk past the connection's timeout, on any connection", function()
    local rows, i, stopped = rows_of(N, BIG), 0, nil
    local conn = assert(db.pg:acquire())
    assert(conn:settimeout(1))
    local started = require("semstore.core").monotime()
    local n, err = semstore.repositories(conn).chunks:create_chunks_bulk(function()
      i = i + 1
      if i == N - 100 then
        local other = assert(admin.pg:query([[SELECT pid FROM pg_stat_activity WHERE datname = $1
          AND backend_xid IS NOT NULL AND pid <> $2]], name, conn:backend_pid()))
        assert.are.equal(1, #other)
        stopped = other[1].pid
        assert(os.execute("kill -STOP " .. stopped))
      end
      return rows[i]
    end, { parallel = 2 })
    local took = require("semstore.core").monotime() - started
    if stopped then os.execute("kill -CONT " .. stopped) end
    conn:release()
    assert.truthy(stopped)
    assert.is_nil(n)
    assert.truthy(err.kind == "connection" or err.kind == "timeout", tostring(err))
    -- 1 s to the cancel request, 5 s for an answer that cannot come
    assert.is_true(took < 20, took)
    assert.are.equal(0, count())
  end)

  describe("a process killed (kill -9) at each step", function()
    -- A child process loads the rows with parallel = 2 and kills itself at
    -- `at` (on_step's step and connection); then recovery runs.
    local function killed_at(at)
      local script = helpers.tmpdir() .. "/bulk.lua"
      helpers.write_file(script, [[
        local at, n = arg[1], tonumber(arg[2])
        local cols = {}
        for i = 3, #arg do cols[#cols + 1] = arg[i] end
        local rows = {}
        for i = 1, n do rows[i] = { collection_id = cols[i % #cols + 1], chunk_index = i, content = "row " .. i } end
        local got, err = db.chunks:create_chunks_bulk(rows, { parallel = 2, on_step = function(step, k)
          if step .. " " .. k == at then os.execute("kill -9 " .. io.open("/proc/self/stat"):read("n")) end
        end })
        io.stdout:write("finished ", tostring(got), " ", tostring(err), "\n")
      ]])
      local args = { "run", script, at, "1000" }
      for _, c in ipairs(collections) do args[#args + 1] = c end
      local code, out, err = helpers.cli(args, { env = { DATABASE_URL = url } })
      helpers.rmdir(script:match "^(.*)/")
      assert.are_not.equal(0, code, out .. err)
      assert.is_nil(out:find "finished", out)
    end

    local function recover(expect_rows)
      -- younger than the grace: left alone
      local r = assert(db.chunks:recover_bulk())
      assert.are.same({ committed = 0, rolled_back = 0, forgotten = 0 }, r)
      r = assert(db.chunks:recover_bulk { grace = 0 })
      assert.are.equal(0, prepared())
      assert.are.equal(0, decisions())
      assert.are.equal(expect_rows, count())
      return r
    end

    it("before the first PREPARE: nothing prepared, no rows", function()
      killed_at "prepare 1"
      assert.are.equal(0, prepared())
      local r = recover(0)
      assert.are.same({ committed = 0, rolled_back = 0, forgotten = 0 }, r)
    end)

    it("between the PREPAREs: the prepared part holds its locks until recovery rolls it back", function()
      killed_at "prepare 2"
      assert.are.equal(1, prepared())
      -- it holds locks on the leaves it wrote until settled
      assert.is_true(assert(admin.pg:query([[SELECT count(*)::int AS n FROM pg_locks l
        JOIN pg_database d ON d.oid = l.database
        WHERE l.pid IS NULL AND l.locktype = 'relation' AND d.datname = $1]], name))[1].n > 0)
      local r = recover(0)
      assert.are.same({ committed = 0, rolled_back = 1, forgotten = 0 }, r)
    end)

    it("after the decision: recovery commits every part", function()
      killed_at "commit 1"
      assert.are.equal(2, prepared())
      assert.are.equal(1, decisions())
      local r = recover(1000)
      assert.are.same({ committed = 2, rolled_back = 0, forgotten = 1 }, r)
    end)

    it("between the COMMIT PREPAREDs: recovery commits the rest", function()
      killed_at "commit 2"
      assert.are.equal(1, prepared())
      local r = recover(1000)
      assert.are.same({ committed = 1, rolled_back = 0, forgotten = 1 }, r)
    end)

    it("`semstore recover --grace 0` settles them too, and says what it did", function()
      killed_at "commit 1"
      local code, out, err = helpers.cli({ "recover", "--grace", "0" }, { env = { DATABASE_URL = url } })
      assert.are.equal(0, code, out .. err)
      assert.truthy(out:find("committed 2, rolled back 0", 1, true), out)
      assert.are.equal(1000, count())
      assert.are.equal(0, decisions())
      code, out = helpers.cli({ "recover", "--grace", "soon" }, { env = { DATABASE_URL = url } })
      assert.are.equal(2, code)
    end)

    it("a coordinator that recovery took for dead cannot commit after the rollback", function()
      -- recovery decides rollback for a bulk whose parts it found; the
      -- coordinator, still alive at its decision step, then rolls back too
      local n, err = db.chunks:create_chunks_bulk(rows_of(200), { parallel = 2, on_step = function(step)
        if step == "decide" then assert(db.chunks:recover_bulk { grace = 0 }) end
      end })
      assert.is_nil(n)
      assert.truthy(tostring(err):find "rolled back by recovery", tostring(err))
      assert.are.equal(0, count())
      assert(db.chunks:recover_bulk { grace = 0 })
      assert.are.equal(0, decisions())
    end)

    it("recover_bulk refuses options it does not know, and a negative grace", function()
      local r, err = db.chunks:recover_bulk { grace = -1 }
      assert.is_nil(r)
      assert.are.equal("input", err.kind)
      r, err = db.chunks:recover_bulk { grase = 1 }
      assert.is_nil(r)
      assert.truthy(tostring(err):find "grase", tostring(err))
    end)
  end)
end)
