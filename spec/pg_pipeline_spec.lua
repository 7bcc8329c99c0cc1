-- db.pg:pipeline and conn:pipeline (libpq's pipeline mode) against the real
-- server: results shaped as query() gives them, what a failure does to the
-- statements around it, sync points, transactions, refused values, COPY,
-- a pipeline far bigger than the sockets' buffers, timeouts, a backend
-- killed midway, and what a pipeline leaves in the session.
require "semstore.compat" ()
local semstore = require "semstore"
local helpers = require "support.helpers"

local function count(db)
  return assert(db.pg:query "select count(*)::int4 as n from pipeline_t")[1].n
end

describe("pipeline", function()
  local db
  setup(function()
    db = helpers.connect { size = 1, max_overflow = 0, timeout = 5 }
    assert(db.pg:exec [[
      drop table if exists pipeline_t;
      create table pipeline_t (a int primary key, b text)]])
  end)
  teardown(function()
    assert(db.pg:exec "drop table pipeline_t")
    helpers.assert_all_returned(db)
    db:close()
  end)
  before_each(function() assert(db.pg:exec "truncate pipeline_t") end)
  after_each(function() helpers.assert_all_returned(db) end)

  it("sends every statement and returns each result as query() returns it", function()
    local results = assert(db.pg:pipeline(function(p)
      p:query("insert into pipeline_t values ($1, $2)", 1, "one")
      p:query("insert into pipeline_t values ($1, $2), ($3, $4)", 2, "two", 3, semstore.null)
      p:query("select a, b from pipeline_t order by a")
      p:query("select $1::int8 as n, $2::jsonb as j, $3::text as t, $4::bool as f", 42, { x = { 1, 2 } }, nil, true)
      p:query("update pipeline_t set b = 'x' where a > 10")
    end))
    assert.are.equal(5, #results)
    local expected = {
      assert(db.pg:query "select 1 where false"), -- shapes to compare with
    }
    assert.are.same({}, { table.unpack(results[1]) })
    assert.are.equal(1, results[1].affected)
    assert.are.equal(2, results[2].affected)
    assert.are.same({ { a = 1, b = "one" }, { a = 2, b = "two" }, { a = 3, b = semstore.null } },
      { table.unpack(results[3]) })
    assert.are.same({ "a", "b" }, results[3].columns)
    assert.are.equal(3, results[3].affected)
    local row = results[4][1]
    assert.are.equal(42, row.n)
    assert.are.same({ x = { 1, 2 } }, row.j)
    assert.are.equal(semstore.null, row.t)
    assert.is_true(row.f)
    assert.are.equal(0, results[5].affected)
    assert.are.equal(0, #expected[1])
    -- the same statement through query() gives the same shape
    local q = assert(db.pg:query "select a, b from pipeline_t order by a")
    assert.are.same(q.columns, results[3].columns)
    assert.are.same({ table.unpack(q) }, { table.unpack(results[3]) })
  end)

  it("decodes NULL as nil on a pool that asks for it, as query() does", function()
    local nil_db = helpers.connect({ size = 1, max_overflow = 0, timeout = 5 }, { null = "nil" })
    local r = assert(nil_db.pg:pipeline(function(p) p:query "select 1 as a, null::text as b" end))
    assert.are.same({ a = 1 }, r[1][1])
    helpers.assert_all_returned(nil_db)
    nil_db:close()
  end)

  it("runs on a borrowed connection too, which stays borrowed and usable", function()
    local conn = assert(db.pg:acquire())
    local pid = conn:backend_pid()
    local r = assert(conn:pipeline(function(p)
      p:query("select pg_backend_pid() as pid")
      p:query("select $1::text as s", "x")
    end))
    assert.are.equal(pid, r[1][1].pid)
    assert.are.equal("x", r[2][1].s)
    assert.are.equal("idle", conn:transaction_status())
    assert.are.equal(1, assert(conn:query "select 1 as v")[1].v)
    conn:release()
    assert.has_error(function() conn:pipeline(function(p) p:query "select 1" end) end, "this connection was released")
  end)

  describe("a failing statement", function()
    it("without sync points: nothing of the pipeline stays, later statements are skipped, err names it", function()
      local results, err = db.pg:pipeline(function(p)
        p:query("insert into pipeline_t values ($1, 'a')", 1)
        p:query("insert into pipeline_t values ($1, 'b')", 2)
        p:query("insert into pipeline_t values ($1, 'dup')", 1)
        p:query("insert into pipeline_t values ($1, 'c')", 3)
      end)
      assert.is_nil(results)
      assert.are.equal("postgres", err.kind)
      assert.are.equal("23505", err.code)
      assert.are.equal(3, err.statement)
      assert.are.equal("pipeline_t_pkey", err.constraint)
      assert.truthy(err.message:find("^statement 3: duplicate key"))
      assert.truthy(tostring(err):find("postgres error 23505: statement 3: duplicate key", 1, true))
      assert.are.equal(0, count(db)) -- one implicit transaction: 1 and 2 rolled back, 3 never ran
    end)

    it("with sync points: groups before it stay committed, its own group is rolled back, later groups run", function()
      local results, err = db.pg:pipeline(function(p)
        p:query("insert into pipeline_t values (1, 'first group')")
        p:sync()
        p:query("insert into pipeline_t values (2, 'second group')")
        p:query("insert into pipeline_t values (1, 'dup')")
        p:query("insert into pipeline_t values (3, 'skipped')")
        p:sync()
        p:query("insert into pipeline_t values (4, 'third group')")
      end)
      assert.is_nil(results)
      assert.are.equal(3, err.statement)
      local rows = assert(db.pg:query "select a from pipeline_t order by a")
      assert.are.same({ { a = 1 }, { a = 4 } }, { table.unpack(rows) })
    end)

    it("a sync point at the end, or two in a row, changes nothing", function()
      local r = assert(db.pg:pipeline(function(p)
        p:sync()
        p:query "select 1 as v"
        p:sync()
        p:sync()
      end))
      assert.are.equal(1, #r)
    end)

    it("inside a transaction aborts it, as any failed statement does", function()
      local ok, err = db.pg:transaction(function(tx)
        assert(tx:query "insert into pipeline_t values (100, 'before')")
        local r, perr = tx:pipeline(function(p)
          p:query "insert into pipeline_t values (1, 'a')"
          p:query "select 1/0"
        end)
        assert.is_nil(r)
        assert.are.equal(2, perr.statement)
        assert.are.equal("failed_transaction", tx:transaction_status())
        return r, perr
      end)
      assert.is_nil(ok)
      assert.are.equal("22012", err.code)
      assert.are.equal(0, count(db))
    end)

    it("inside a transaction that goes on, its statements commit with it", function()
      assert(db.pg:transaction(function(tx)
        assert(tx:pipeline(function(p)
          p:query "insert into pipeline_t values (1, 'a')"
          p:sync() -- a sync point inside a transaction commits nothing
          p:query "insert into pipeline_t values (2, 'b')"
        end))
        assert.are.equal("in_transaction", tx:transaction_status())
        return tx:query "insert into pipeline_t values (3, 'c')"
      end))
      assert.are.equal(3, count(db))
    end)
  end)

  describe("refused before anything is sent", function()
    local function nothing_sent(fn, statement, kind)
      local before = db.pg:stats().acquired
      local results, err = db.pg:pipeline(fn)
      assert.is_nil(results)
      assert.are.equal(kind or "input", err.kind)
      assert.are.equal(statement, err.statement)
      assert.truthy(err.message:find("^statement " .. statement .. ": "))
      assert.are.equal(before, db.pg:stats().acquired) -- no connection was even borrowed
      assert.are.equal(0, count(db))
      return err
    end

    it("a NaN inside JSON, a function or a zero byte among the values", function()
      local err = nothing_sent(function(p)
        p:query("insert into pipeline_t values (1, 'a')")
        p:query("insert into pipeline_t values (2, $1::jsonb::text)", { x = 0 / 0 })
        p:query("insert into pipeline_t values ($1, 'c')", 3)
      end, 2)
      assert.truthy(err.message:find("NaN", 1, true))
      nothing_sent(function(p)
        p:query("insert into pipeline_t values (1, 'a')")
        p:query("insert into pipeline_t values ($1, 'b')", 2, print)
      end, 2)
      nothing_sent(function(p)
        p:query("insert into pipeline_t values ($1, $2)", 1, "a\0b")
      end, 1)
      nothing_sent(function(p)
        p:query("insert into pipeline_t values (1, 'a')\0")
      end, 1)
    end)

    it("a COPY, whatever its case or the comments before it", function()
      local err = nothing_sent(function(p)
        p:query("insert into pipeline_t values (1, 'a')")
        p:query("/* load */ -- them\n  CoPy pipeline_t from stdin")
      end, 2)
      assert.truthy(err.message:find("copy_from", 1, true))
      nothing_sent(function(p) p:query("copy (select 1) to stdout") end, 1)
      -- and the pool's connection is fine
      assert.are.equal(1, assert(db.pg:query "select 1 as v")[1].v)
    end)

    it("fn raising: nothing is sent, no connection is borrowed, the error goes on up", function()
      local before = db.pg:stats().acquired
      assert.has_error(function()
        db.pg:pipeline(function(p)
          p:query("insert into pipeline_t values (1, 'a')")
          error("stop here")
        end)
      end, "stop here")
      local e = semstore.error { kind = "input", message = "mine" }
      local ok, raised = pcall(db.pg.pipeline, db.pg, function() error(e) end)
      assert.is_false(ok)
      assert.are.equal(e, raised)
      assert.are.equal(before, db.pg:stats().acquired)
      assert.are.equal(0, count(db))
    end)

    it("fn raising on a borrowed connection leaves it as it was", function()
      local conn = assert(db.pg:acquire())
      assert.has_error(function()
        conn:pipeline(function(p)
          p:query("insert into pipeline_t values (1, 'a')")
          error("stop")
        end)
      end, "stop")
      assert.are.equal("idle", conn:transaction_status())
      assert.are.equal(0, assert(conn:query "select count(*)::int4 as n from pipeline_t")[1].n)
      conn:release()
    end)
  end)

  it("a NaN binds as float8's NaN, as in query(); where no float is taken the server refuses it in its place", function()
    local r = assert(db.pg:pipeline(function(p) p:query("select $1::float8 as f", 0 / 0) end))
    assert.is_true(r[1][1].f ~= r[1][1].f)
    local _, err = db.pg:pipeline(function(p)
      p:query("insert into pipeline_t values (1, 'a')")
      p:query("insert into pipeline_t values ($1, 'b')", 0 / 0)
    end)
    assert.are.equal("22P02", err.code)
    assert.are.equal(2, err.statement)
    assert.are.equal(0, count(db))
  end)

  it("a result the decoder refuses (two columns of one name) fails naming its statement; what ran stays", function()
    local r, err = db.pg:pipeline(function(p)
      p:query "insert into pipeline_t values (1, 'a')"
      p:query "select 1 as x, 2 as x"
    end)
    assert.is_nil(r)
    assert.are.equal("input", err.kind)
    assert.are.equal(2, err.statement)
    assert.truthy(err.message:find("^statement 2: "))
    assert.are.equal(1, count(db)) -- the server ran both: only the decoding failed
  end)

  it("an empty pipeline returns an empty array and borrows nothing", function()
    local before = db.pg:stats().acquired
    assert.are.same({}, assert(db.pg:pipeline(function() end)))
    assert.are.equal(before, db.pg:stats().acquired)
  end)

  describe("misuse raises", function()
    it("p used after its pipeline ended: sent, failed, or raised out of", function()
      local kept
      assert(db.pg:pipeline(function(p) kept = p; p:query "select 1" end))
      assert.has_error(function() kept:query "select 2" end)
      local ok, err = pcall(kept.query, kept, "select 2")
      assert.is_false(ok)
      assert.truthy(tostring(err):find("this pipeline has ended", 1, true))
      assert.has_error(function() kept:sync() end)
      db.pg:pipeline(function(p) kept = p; p:query "select 1/0" end)
      assert.has_error(function() kept:query "select 2" end)
      pcall(db.pg.pipeline, db.pg, function(p) kept = p; error "x" end)
      assert.has_error(function() kept:query "select 2" end)
      assert.are.equal("semstore.pg_pipeline(ended)", tostring(kept))
    end)

    it("a SQL text that is not a string, a function that is not one", function()
      assert.has_error(function() db.pg:pipeline(function(p) p:query(nil) end) end)
      assert.has_error(function() db.pg:pipeline(function(p) p:query({}) end) end)
      local r, err = db.pg:pipeline("select 1")
      assert.is_nil(r)
      assert.are.equal("input", err.kind)
    end)

    it("a connection busy with a rows() loop", function()
      local conn = assert(db.pg:acquire())
      for _ in conn:rows "select generate_series(1, 3)" do
        assert.has_error(function() conn:pipeline(function(p) p:query "select 1" end) end)
        break
      end
      conn:release()
    end)
  end)

  it("a pipeline far bigger than the sockets' buffers does not deadlock", function()
    local n = helpers.under_valgrind and 2000 or 20000
    local big = string.rep("x", 2000)
    local t0 = os.time()
    local results = assert(db.pg:pipeline(function(p)
      for i = 1, n do p:query("insert into pipeline_t values ($1, $2) returning b", i, big) end
    end))
    assert.are.equal(n, #results)
    assert.are.equal(big, results[n][1].b)
    assert.are.equal(n, count(db))
    assert.is_true(os.time() - t0 < 60)
  end)

  describe("timeouts", function()
    it("conn:settimeout bounds the whole pipeline; the statement past it is named; the connection stays", function()
      local conn = assert(db.pg:acquire())
      conn:settimeout(0.3)
      local r, err = conn:pipeline(function(p)
        p:query "insert into pipeline_t values (1, 'a')"
        p:query "select pg_sleep(5)"
        p:query "insert into pipeline_t values (2, 'b')"
      end)
      assert.is_nil(r)
      assert.are.equal("timeout", err.kind)
      assert.are.equal("57014", err.code)
      assert.are.equal(2, err.statement)
      conn:settimeout(0)
      assert.are.equal(0, assert(conn:query "select count(*)::int4 as n from pipeline_t")[1].n)
      conn:release()
    end)

    it("conn:settimeout also bounds the wait to write, while the server is stuck before reading the rest", function()
      -- the first statement keeps the server from reading; the rest (far
      -- more than the sockets hold) cannot all be written until it ends
      local conn = assert(db.pg:acquire())
      local n = helpers.under_valgrind and 2000 or 20000
      local big = string.rep("y", 2000)
      conn:settimeout(0.5)
      local t0 = os.time()
      local r, err = conn:pipeline(function(p)
        p:query "select pg_sleep(30)"
        for i = 1, n do p:query("insert into pipeline_t values ($1, $2)", i, big) end
      end)
      assert.is_nil(r)
      assert.are.equal("timeout", err.kind)
      assert.are.equal(1, err.statement)
      assert.is_true(os.time() - t0 < 15)
      conn:settimeout(0)
      assert.are.equal(0, assert(conn:query "select count(*)::int4 as n from pipeline_t")[1].n)
      conn:release()
    end)

    it("the server's statement_timeout, set inside the pipeline, fails the statement and does not outlive the borrow", function()
      local r, err = db.pg:pipeline(function(p)
        p:query "set statement_timeout = 100"
        p:query "select pg_sleep(3)"
      end)
      assert.is_nil(r)
      assert.are.equal("postgres", err.kind)
      assert.are.equal("57014", err.code)
      assert.are.equal(2, err.statement)
      -- a failed group rolls back its SET too; a SET that went through is reset on release
      assert(db.pg:pipeline(function(p)
        p:query "set statement_timeout = 100"
        p:query "set application_name = 'pipeline-leak'"
      end))
      local row = assert(db.pg:query [[select current_setting('statement_timeout') as st,
        current_setting('application_name') as app]])[1]
      assert.are.equal("30s", row.st)
      assert.are_not.equal("pipeline-leak", row.app)
    end)
  end)

  it("a SET in a group after a failed one still reaches the reset on release", function()
    local r, err = db.pg:pipeline(function(p)
      p:query "select 1/0"
      p:sync()
      p:query "set application_name = 'pipeline-after-failure'"
      p:query "set work_mem = '7MB'"
    end)
    assert.is_nil(r)
    assert.are.equal(1, err.statement)
    local row = assert(db.pg:query [[select current_setting('application_name') as app,
      current_setting('work_mem') as wm]])[1]
    assert.are_not.equal("pipeline-after-failure", row.app)
    assert.are_not.equal("7MB", row.wm)
  end)

  describe("a backend that dies midway", function()
    it("killed from inside: a connection error, and the pool recovers", function()
      local evicted = db.pg:stats().evicted
      local r, err = db.pg:pipeline(function(p)
        p:query "select 1"
        p:query "select pg_terminate_backend(pg_backend_pid())"
        p:query "select 3"
      end)
      assert.is_nil(r)
      assert.are.equal("connection", err.kind)
      assert.are.equal(2, err.statement)
      assert.are.equal(evicted + 1, db.pg:stats().evicted)
      assert.are.equal(1, assert(db.pg:query "select 1 as v")[1].v)
    end)

    it("killed while the client is still writing a big pipeline: a connection error naming where it stopped", function()
      local n = helpers.under_valgrind and 2000 or 20000
      local big = string.rep("z", 2000)
      local r, err = db.pg:pipeline(function(p)
        p:query "select pg_terminate_backend(pg_backend_pid())"
        for i = 1, n do p:query("insert into pipeline_t values ($1, $2)", i, big) end
      end)
      assert.is_nil(r)
      assert.are.equal("connection", err.kind)
      assert.are.equal(1, err.statement)
      assert.are.equal(0, count(db))
      assert.are.equal(1, assert(db.pg:query "select 1 as v")[1].v)
    end)

    it("killed from another connection while it waits", function()
      if not helpers.superuser_url then return pending("no superuser URL") end
      local conn = assert(db.pg:acquire())
      local pid = conn:backend_pid()
      -- a process of its own ends the backend 0.5 s into the pipeline
      local killer = assert(io.popen(("(sleep 0.5; psql -qAt '%s' -c 'select pg_terminate_backend(%d)') 2>&1")
        :format(helpers.superuser_url, pid)))
      local r, err = conn:pipeline(function(p)
        p:query "insert into pipeline_t values (1, 'a')"
        p:query "select pg_sleep(10)"
        p:query "insert into pipeline_t values (2, 'b')"
      end)
      killer:read "a"
      killer:close()
      assert.is_nil(r)
      assert.are.equal("connection", err.kind)
      assert.are.equal(2, err.statement)
      assert.falsy(tostring(err):find("password", 1, true))
      conn:release()
      assert.are.equal(0, count(db))
    end)
  end)

  it("prepared statements: a pipeline prepares nothing, and sees a table change between runs", function()
    local conn = assert(db.pg:acquire())
    local function run()
      return conn:pipeline(function(p)
        for i = 1, 3 do p:query("select * from pipeline_t where a = $1", i) end
      end)
    end
    assert(run())
    assert(run())
    local prepared = "select count(*)::int4 as n from pg_prepared_statements where statement like '%pipeline_t where%'"
    assert.are.equal(0, assert(conn:query(prepared))[1].n)
    assert(conn:exec "alter table pipeline_t add column c int")
    assert(conn:query("insert into pipeline_t values (1, 'a', 7)"))
    local r = assert(run())
    assert.are.equal(7, r[1][1].c)
    assert(conn:exec "alter table pipeline_t drop column c")
    conn:release()
  end)
  it("a statement repeated in a row binds its own values, across a failed group too", function()
    local r, err = db.pg:pipeline(function(p)
      p:query("select $1::int4 as x", 1)
      p:query("select $1::int4 as x", 2)
      p:query "select 1/0 as x"
      p:sync()
      p:query("select $1::int4 as x", 3)
      p:query("select $1::int4 as x", 4)
      p:query("select $1::text as x", "five")
      p:query("select $1::text as x", "six")
    end)
    assert.is_nil(r)
    assert.are.equal(3, err.statement)
    -- the groups after a failed one run: a repeat there binds its own text
    r = db.pg:pipeline(function(p)
      p:query("insert into pipeline_t values ($1, $2)", 5, "five")
      p:query "select 1/0 as x"
      p:sync()
      p:query("insert into pipeline_t values ($1, $2)", 7, "seven")
      p:query("insert into pipeline_t values ($1, $2)", 8, "eight")
    end)
    assert.is_nil(r)
    local rows = assert(db.pg:query "select a, b from pipeline_t order by a")
    assert.are.same({ { a = 7, b = "seven" }, { a = 8, b = "eight" } }, rows)
    r = assert(db.pg:pipeline(function(p)
      p:query("select $1::int4 as x", 3)
      p:query("select $1::int4 as x", 4)
      p:sync()
      p:query("select $1::int4 as x", 5)
      p:query("insert into pipeline_t values ($1, $2) returning a", 9, "x")
      p:query("insert into pipeline_t values ($1, $2) returning a", 10, "y")
    end))
    assert.are.same({ 3, 4, 5, 9, 10 }, { r[1][1].x, r[2][1].x, r[3][1].x, r[4][1].a, r[5][1].a })
  end)
end)
