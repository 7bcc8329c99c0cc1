-- A borrowed connection against the real server: COPY, notifications,
-- timeouts, transactions that follow the server's status, and what a
-- borrower leaves behind.
local compat = require "semstore.compat"
compat() -- Lua 5.4's library under LuaJIT too
local semstore = require "semstore"
local helpers = require "support.helpers"

-- Runs a rows() or copy_to() loop (the four values they return) and leaves
-- it early once body returns true. Under 5.4 with break: the loop's
-- closing value ends it. LuaJIT's generic for ignores a closing value, so
-- there the loop is left the way a LuaJIT user leaves it, inside
-- compat.closing with that value.
local function loop_until(body, step, state, control, closer)
  if helpers.lua54 then
    for v in step, state, control, closer do
      if body(v) then break end
    end
  else
    compat.closing(closer, function()
      for v in step, state, control do
        if body(v) then break end
      end
    end)
  end
end

describe("conn", function()
  local db
  setup(function()
    db = helpers.connect { size = 1, max_overflow = 0, timeout = 5 }
    assert(db.pg:exec [[
      drop table if exists conn_t;
      create table conn_t (a int, b text);
      do $$ begin
        if not exists (select 1 from pg_roles where rolname = 'spec_reader') then create role spec_reader; end if;
      end $$;
      grant spec_reader to current_user]])
  end)
  teardown(function()
    assert(db.pg:exec "drop table conn_t")
    helpers.assert_all_returned(db)
    db:close()
  end)
  before_each(function() assert(db.pg:exec "truncate conn_t") end)

  describe("COPY", function()
    it("through query or exec is refused with an input error and leaves the connection usable", function()
      local conn = assert(db.pg:acquire())
      local pid = conn:backend_pid()
      local rows, err = conn:query "copy (select 1) to stdout"
      assert.is_nil(rows)
      assert.are.equal("input", err.kind)
      rows, err = conn:exec "copy conn_t from stdin"
      assert.is_nil(rows)
      assert.are.equal("input", err.kind)
      assert.are.equal("idle", conn:transaction_status())
      assert.are.equal(1, assert(conn:query "select 1 as v")[1].v)
      assert.are.equal(pid, conn:backend_pid())
      conn:release()
      assert.is_nil((db.pg:query "copy (select 1) to stdout"))
      assert.are.equal(2, assert(db.pg:query "select 2 as v")[1].v)
    end)

    it("copy_from takes a string, an array of strings or an iterator", function()
      local conn = assert(db.pg:acquire())
      assert.are.equal(2, assert(conn:copy_from("copy conn_t (a, b) from stdin", "1\tone\n2\ttwo\n")))
      assert.are.equal(2, assert(conn:copy_from("copy conn_t (a, b) from stdin (format csv)", { "3,three\n4,", "four\n" })))
      local i = 0
      assert.are.equal(100, assert(conn:copy_from("copy conn_t (a) from stdin", function()
        i = i + 1
        if i <= 100 then return (100 + i) .. "\n" end
      end)))
      assert.are.equal(104, assert(conn:query "select count(*)::int as n from conn_t")[1].n)
      assert.are.equal("four", assert(conn:query "select b from conn_t where a = 4")[1].b)
      conn:release()
    end)

    it("copy_from: a refusal or bad data gives nil, err, copies nothing and leaves the connection usable", function()
      local conn = assert(db.pg:acquire())
      local n, err = conn:copy_from("copy no_such_table from stdin", "1\n")
      assert.is_nil(n)
      assert.are.equal("42P01", err.code)
      n, err = conn:copy_from("copy conn_t (a) from stdin", { "1\n", "not a number\n" })
      assert.is_nil(n)
      assert.are.equal("22P02", err.code)
      n, err = conn:copy_from("copy conn_t (a) from stdin", { "1\n", 42 })
      assert.is_nil(n)
      assert.are.equal("input", err.kind)
      n, err = conn:copy_from("select 1", "x")
      assert.is_nil(n)
      assert.are.equal("input", err.kind)
      local ok = pcall(conn.copy_from, conn, "copy conn_t (a) from stdin", function() error "source failed" end)
      assert.is_false(ok)
      assert.are.equal("idle", conn:transaction_status())
      assert.are.equal(0, assert(conn:query "select count(*)::int as n from conn_t")[1].n)
      conn:release()
    end)

    it("copy_to iterates the data, and leaving the loop early leaves the connection usable", function()
      local conn = assert(db.pg:acquire())
      local parts = {}
      for piece in assert(conn:copy_to "copy (select g from generate_series(1, 1000) g) to stdout") do
        parts[#parts + 1] = piece
      end
      local text = table.concat(parts)
      assert.are.equal(1000, select(2, text:gsub("\n", "")))
      assert.truthy(text:find("^1\n2\n"))
      local seen = 0
      loop_until(function()
        seen = seen + 1
        return seen == 3
      end, assert(conn:copy_to "copy (select g from generate_series(1, 1000000) g) to stdout"))
      assert.are.equal(3, seen)
      assert.are.equal(5, assert(conn:query "select 5 as v")[1].v)
      local it, err = conn:copy_to "copy no_such_table to stdout"
      assert.is_nil(it)
      assert.are.equal("42P01", err.code)
      it, err = conn:copy_to "select 1"
      assert.is_nil(it)
      assert.are.equal("input", err.kind)
      assert.are.equal("idle", conn:transaction_status())
      conn:release()
    end)
  end)

  describe("LISTEN/NOTIFY", function()
    it("delivers a notification with channel, payload and pid, and nil on timeout", function()
      local other = helpers.connect { size = 1, max_overflow = 0 }
      local conn = assert(db.pg:acquire())
      assert(conn:listen "Spec Channel")
      assert.is_nil(conn:wait_notification(0.05))
      assert(other.pg:notify("Spec Channel", "hello 'there'"))
      local n = assert(conn:wait_notification(5))
      assert.are.equal("Spec Channel", n.channel)
      assert.are.equal("hello 'there'", n.payload)
      assert.is_true(math.type(n.pid) == "integer" and n.pid ~= conn:backend_pid())
      assert(conn:unlisten "Spec Channel")
      assert(other.pg:notify("Spec Channel", "late"))
      assert.is_nil(conn:wait_notification(0.1))
      local _, err = conn:listen ""
      assert.are.equal("input", err.kind)
      _, err = conn:wait_notification(0 / 0)
      assert.are.equal("input", err.kind)
      conn:release()
      other:close()
    end)
  end)

  describe("timeouts", function()
    it("settimeout cancels a statement that runs too long; the connection stays usable", function()
      local conn = assert(db.pg:acquire())
      assert(conn:settimeout(0.2))
      local rows, err = conn:query "select pg_sleep(5)"
      assert.is_nil(rows)
      assert.are.equal("timeout", err.kind)
      assert.are.equal("57014", err.code)
      assert(conn:settimeout(nil))
      assert.are.equal(1, assert(conn:query "select 1 as v")[1].v)
      local _, e = conn:settimeout(-1)
      assert.are.equal("input", e.kind)
      _, e = conn:settimeout(math.huge)
      assert.are.equal("input", e.kind)
      conn:release()
    end)

    it("db.pg:cancel stops a statement another connection runs", function()
      local big = helpers.connect { size = 2, max_overflow = 0 }
      local conn = assert(big.pg:acquire())
      local pid = conn:backend_pid()
      -- a background psql asks for the cancel while this thread waits
      os.execute(string.format(helpers.lua_bin .. [[ -e 'package.path=%q; package.cpath=%q
        local s = require "semstore"; local d = assert(s.connect{name="c", postgres=%q})
        assert(d.pg:query "select pg_sleep(0.3)"); assert(d.pg:cancel(%d))' >/dev/null 2>&1 &]],
        package.path, package.cpath, helpers.url, pid))
      local rows, err = conn:query "select pg_sleep(10)"
      assert.is_nil(rows)
      assert.are.equal("57014", err.code)
      conn:release()
      local _, e = big.pg:cancel "x"
      assert.are.equal("input", e.kind)
      big:close()
    end)
  end)

  describe("transactions follow the server", function()
    it("inside the caller's own BEGIN, transaction() is a savepoint and the caller's ROLLBACK undoes all", function()
      local conn = assert(db.pg:acquire())
      assert(conn:exec "BEGIN")
      assert(conn:query("insert into conn_t (a) values ($1)", 1))
      assert(conn:transaction(function(tx) assert(tx:query("insert into conn_t (a) values ($1)", 2)) end))
      assert.are.equal("in_transaction", conn:transaction_status())
      assert(conn:exec "ROLLBACK")
      assert.are.equal(0, assert(conn:query "select count(*)::int as n from conn_t")[1].n)
      -- isolation on a nested one is refused rather than silently ignored
      assert(conn:exec "BEGIN")
      local ok, err = conn:transaction(function() end, { isolation = "serializable" })
      assert.is_nil(ok)
      assert.are.equal("input", err.kind)
      assert(conn:exec "ROLLBACK")
      -- a COMMIT inside the function is reported, not papered over
      ok, err = conn:transaction(function(tx) assert(tx:exec "COMMIT") end)
      assert.is_nil(ok)
      assert.are.equal("input", err.kind)
      _, err = conn:transaction(function() end, { isolaton = "serializable" })
      assert.are.equal("input", err.kind)
      conn:release()
    end)

    it("gives the connection back when the function raises, with the pool's one connection", function()
      for _ = 1, 3 do
        local ok, err = db.pg:transaction(function() error({ custom = true }) end)
        assert.is_nil(ok)
        assert.are.equal("callback", err.kind)
      end
      assert.are.equal(0, db.pg:stats().in_use)
    end)
  end)

  describe("what a borrower leaves behind", function()
    it("is reset before the next borrower: role, settings, set_config, listeners, advisory locks, temp tables", function()
      local conn = assert(db.pg:acquire())
      local pid = conn:backend_pid()
      local me = assert(conn:query "select current_user as u")[1].u
      assert(conn:exec "SET ROLE spec_reader; SET search_path = pg_catalog; SET statement_timeout = 1234")
      assert(conn:query("select set_config('app.user_id', $1, false)", "42"))
      assert(conn:query "select pg_advisory_lock(777)")
      assert(conn:listen "left_behind")
      assert(conn:exec "create temp table left_behind (a int)")
      assert.are.equal("spec_reader", assert(conn:query "select current_user as u")[1].u)
      conn:release()
      conn = assert(db.pg:acquire())
      assert.are.equal(pid, conn:backend_pid()) -- the same connection, prepared statements kept
      local r = assert(conn:query [[select current_user as u, current_setting('search_path') as sp,
        current_setting('statement_timeout') as st, coalesce(current_setting('app.user_id', true), '') as app,
        (select count(*)::int from pg_listening_channels()) as listening,
        (select count(*)::int from pg_locks where locktype = 'advisory' and pid = pg_backend_pid()) as locks,
        (select count(*)::int from pg_class where relname = 'left_behind' and relpersistence = 't') as temps]])[1]
      assert.are.same({ u = me, sp = '"$user", public', st = "30s", app = "", listening = 0, locks = 0, temps = 0 }, r)
      conn:release()
    end)

    it("a statement that changes nothing in the session costs no reset round trip", function()
      local other = helpers.connect { size = 1, max_overflow = 0 }
      local function last_statement(pid)
        return assert(other.pg:query("select query from pg_stat_activity where pid = $1", pid))[1].query
      end
      local conn = assert(db.pg:acquire())
      local pid = conn:backend_pid()
      assert(conn:query("select $1::int as v", 1))
      conn:release()
      assert.are.equal("select $1::int as v", last_statement(pid))
      conn = assert(db.pg:acquire())
      assert(conn:exec "SET application_name = 'changed'")
      conn:release()
      assert.truthy(last_statement(pid):find("DISCARD TEMP", 1, true))
      other:close()
    end)
  end)
end)

describe("rows", function()
  local db
  setup(function() db = helpers.connect { size = 1, max_overflow = 0, timeout = 5 } end)
  teardown(function()
    helpers.assert_all_returned(db)
    db:close()
  end)

  local function rss_kb()
    local f = assert(io.open "/proc/self/status")
    local kb = tonumber(f:read("a"):match "VmRSS:%s*(%d+)")
    f:close()
    return kb
  end

  it("iterates a large result one row at a time, in bounded memory", function()
    local n = helpers.under_valgrind and 20000 or 1000000
    collectgarbage()
    local before, peak, count, sum = rss_kb(), 0, 0, 0
    for row in db.pg:rows("select g, md5(g::text) as h from generate_series(1, $1::int) g", n) do
      count, sum = count + 1, sum + row.g
      if count % 50000 == 0 then peak = math.max(peak, rss_kb()) end
    end
    assert.are.equal(n, count)
    assert.are.equal(math.floor(n * (n + 1) / 2), sum)
    -- the whole result as Lua tables would take hundreds of MB
    assert.is_true(peak - before < 32 * 1024, "RSS grew by " .. (peak - before) .. " kB")
    assert.are.equal(0, db.pg:stats().in_use)
  end)

  it("leaving the loop early cancels the rest and gives the connection back usable", function()
    local pid
    loop_until(function(row)
      pid = row.pid
      return row.g == 3
    end, db.pg:rows "select g, pg_backend_pid() as pid from generate_series(1, 10000000) g")
    assert.are.equal(0, db.pg:stats().in_use)
    local conn = assert(db.pg:acquire())
    assert.are.equal(pid, conn:backend_pid())
    assert.are.equal(7, assert(conn:query "select 7 as v")[1].v)
    -- on a borrowed connection, other calls wait for the loop to end
    for row in conn:rows "select g from generate_series(1, 3) g" do
      -- the last row ends the result before the loop body sees it
      if row.g < 3 then assert.has_error(function() conn:query "select 1" end) end
    end
    assert.are.equal(8, assert(conn:query "select 8 as v")[1].v)
    conn:release()
  end)

  it("an error at the start is nil, err; midway it raises; the connection goes back either way", function()
    local it, err = db.pg:rows "select nonsense"
    assert.is_nil(it)
    assert.are.equal("42703", err.code)
    local seen = 0
    local ok, e = pcall(function()
      for _ in db.pg:rows "select 1 / (3 - g) as v from generate_series(1, 5) g" do seen = seen + 1 end
    end)
    assert.is_false(ok)
    assert.are.equal("22012", e.code)
    assert.are.equal(2, seen)
    assert.are.equal(0, db.pg:stats().in_use)
  end)
end)

describe("decoding edge cases", function()
  local db
  setup(function()
    db = helpers.connect()
    assert(db.pg:exec [[
      drop type if exists spec_mood cascade;
      create type spec_mood as enum ('happy', 'sad', 'with,comma')]])
  end)
  teardown(function()
    assert(db.pg:exec "drop type spec_mood")
    db:close()
  end)

  it("decodes arrays of types the decoder does not know as arrays of their text forms", function()
    local r = assert(db.pg:query [[select array['happy', 'with,comma']::spec_mood[] as m, 'sad'::spec_mood as one,
      array['10.0.0.1'::inet] as ips, '{[1,3)}'::int4multirange as mr, '{1,2,3}'::line as l]])[1]
    assert.are.same({ "happy", "with,comma" }, r.m)
    assert.are.equal("sad", r.one)
    assert.are.same({ "10.0.0.1" }, r.ips)
    assert.are.equal("{[1,3)}", r.mr)
    assert.are.equal("{1,2,3}", r.l)
  end)

  it("asks the catalog, not the text: values of unknown types that look like arrays stay text", function()
    local deep = ("{"):rep(8) .. "x" .. ("}"):rep(8)
    assert(db.pg:exec("drop type if exists spec_deep; create type spec_deep as enum (" .. semstore.quote_literal(deep) ..
      ", '{a,b}')"))
    assert.are.equal(deep, assert(db.pg:query("select $1::spec_deep as v", deep))[1].v)
    assert.are.equal("{a,b}", assert(db.pg:query "select '{a,b}'::spec_deep as v")[1].v)
    local r = assert(db.pg:query [[select array['((1,1),(0,0))'::box, '((3,3),(2,2))'::box] as boxes,
      '{[1,3), [5,7)}'::int4multirange as mr, '[2,5)'::int4range as rng, array['{a,b}']::spec_deep[] as labels]])[1]
    assert.are.same({ "(1,1),(0,0)", "(3,3),(2,2)" }, r.boxes)
    assert.are.equal("{[1,3),[5,7)}", r.mr)
    assert.are.equal("[2,5)", r.rng)
    assert.are.same({ "{a,b}" }, r.labels)
    -- streamed: a many-row result of a type the connection has not seen yet, by query and by rows
    assert(db.pg:exec "drop type if exists spec_fresh; create type spec_fresh as enum ('x', 'y')")
    local rows = assert(db.pg:query "select array['x', 'y']::spec_fresh[] as v, g from generate_series(1, 500) g")
    assert.are.equal(500, #rows)
    assert.are.same({ "x", "y" }, rows[500].v)
    assert(db.pg:exec "drop type if exists spec_fresh2; create type spec_fresh2 as enum ('p')")
    local n = 0
    for row in db.pg:rows "select array['p']::spec_fresh2[] as v from generate_series(1, 50)" do
      assert.are.same({ "p" }, row.v)
      n = n + 1
    end
    assert.are.equal(50, n)
    assert(db.pg:exec "drop type spec_deep; drop type spec_fresh; drop type spec_fresh2")
  end)

  it("refuses a result with two columns of one name instead of keeping one", function()
    local rows, err = db.pg:query "select 1 as a, 2 as a"
    assert.is_nil(rows)
    assert.are.equal("input", err.kind)
    assert.are.equal("a", err.column)
    assert.are.equal(3, assert(db.pg:query "select 3 as a, 4 as b")[1].a)
  end)
end)

describe("review findings", function()
  local db
  setup(function() db = helpers.connect { size = 1, max_overflow = 0, timeout = 5, connect_timeout = 1 } end)
  teardown(function()
    helpers.assert_all_returned(db)
    db:close()
  end)

  it("a COMMIT that takes longer than connect_timeout still commits", function()
    local conn = assert(db.pg:acquire())
    assert(conn:exec [[
      create temp table slow_commit (x int);
      create function pg_temp.slow() returns trigger language plpgsql as $$ begin perform pg_sleep(1.5); return null; end $$;
      create constraint trigger slow_t after insert on slow_commit deferrable initially deferred
        for each row execute function pg_temp.slow()]])
    assert.are.equal("done", assert(conn:transaction(function(tx)
      assert(tx:query "insert into slow_commit values (1)")
      return "done"
    end)))
    assert.are.equal(1, assert(conn:query "select count(*)::int as n from slow_commit")[1].n)
    conn:release()
  end)

  -- LuaJIT's lua_pcall cannot be resumed after a yield (5.4's lua_pcallk can)
  ;(helpers.lua54 and it or pending)("a transaction's function may yield, on a pool and on a connection (Lua 5.4 only: yield across lua_pcallk)", function()
    for _, on_conn in ipairs { false, true } do
      local conn = on_conn and assert(db.pg:acquire()) or nil
      local target = conn or db.pg
      local co = coroutine.create(function()
        return target:transaction(function(tx)
          assert(tx:query "select 1")
          assert.are.equal("resumed", coroutine.yield "yielded")
          return "done"
        end)
      end)
      assert.are.same({ true, "yielded" }, { coroutine.resume(co) })
      assert.are.same({ true, "done" }, { coroutine.resume(co, "resumed") })
      -- an error after a yield still rolls back and gives the connection back
      co = coroutine.create(function()
        return target:transaction(function() coroutine.yield() error "late" end)
      end)
      coroutine.resume(co)
      local ok, res, err = coroutine.resume(co)
      assert.is_true(ok)
      assert.is_nil(res)
      assert.are.equal("callback", err.kind)
      if conn then
        assert.are.equal("idle", conn:transaction_status())
        conn:release()
      end
      assert.are.equal(0, db.pg:stats().in_use)
    end
  end)

  if helpers.luajit then
    it("under LuaJIT a transaction's function cannot yield: a callback error, rolled back, the connection back", function()
      assert(db.pg:exec "drop table if exists yield_probe; create table yield_probe (a int)")
      for _, on_conn in ipairs { false, true } do
        local conn = on_conn and assert(db.pg:acquire()) or nil
        local target = conn or db.pg
        local co = coroutine.create(function()
          return target:transaction(function(tx)
            assert(tx:query "insert into yield_probe values (1)")
            coroutine.yield "yielded"
            return "done"
          end)
        end)
        local ok, res, err = coroutine.resume(co)
        assert.is_true(ok)
        assert.is_nil(res)
        assert.are.equal("callback", err.kind)
        assert.truthy(err.message:find("yield across", 1, true), err.message)
        assert.are.equal("dead", coroutine.status(co))
        if conn then
          assert.are.equal("idle", conn:transaction_status())
          conn:release()
        end
        assert.are.equal(0, db.pg:stats().in_use)
      end
      assert.are.equal(0, assert(db.pg:query "select count(*)::int as n from yield_probe")[1].n)
      assert(db.pg:exec "drop table yield_probe")
    end)
  end

  it("settimeout bounds the call even when the server cannot take the cancel request", function()
    local data = assert(os.getenv "SEMSTORE_TEST_PG_DATA")
    local postmaster = assert(io.open(data .. "/postmaster.pid")):read "l"
    local conn = assert(db.pg:acquire())
    assert(conn:settimeout(0.3))
    -- a stopped postmaster takes no cancel request; resumed by the test, or in 8 s whatever happens
    os.execute("kill -STOP " .. postmaster .. "; (sleep 8; kill -CONT " .. postmaster .. ") >/dev/null 2>&1 &")
    local t0 = require("semstore.core").monotime()
    local rows = conn:query "select pg_sleep(1.5) is null as v"
    local took = require("semstore.core").monotime() - t0
    os.execute("kill -CONT " .. postmaster)
    -- the statement itself ends in 1.5 s: the caller is not held by the stuck cancel
    assert.is_true(took < 3, "took " .. took .. " s")
    assert.truthy(rows)
    conn:release()
  end)

  it("a DO block's or a PREPARE's session state is reset", function()
    assert(db.pg:exec "DO $$ BEGIN EXECUTE 'SET search_path = pg_catalog'; EXECUTE 'LISTEN from_do'; END $$")
    local r = assert(db.pg:query [[select current_setting('search_path') as sp,
      (select count(*)::int from pg_listening_channels()) as l]])[1]
    assert.are.same({ sp = '"$user", public', l = 0 }, r)
    assert(db.pg:exec "PREPARE spec_p AS SELECT 1")
    assert(db.pg:exec "PREPARE spec_p AS SELECT 1")
    assert.are.equal(3, assert(db.pg:query "select 3 as v")[1].v)
    assert.are.equal(3, assert(db.pg:query "select 3 as v")[1].v)
    local _, err = semstore.connect { name = "reset-typo", postgres = helpers.url, pool = { reset = "sometimes" } }
    assert.are.equal("input", err.kind)
  end)

  it("a function that sets the session inside its body: kept by 'auto', undone by 'always'", function()
    local function run(mode)
      local p = helpers.connect({ size = 1, max_overflow = 0, reset = mode })
      local conn = assert(p.pg:acquire())
      assert(conn:exec [[create or replace function public.spec_set_uid() returns void language sql
        as $$ select pg_catalog.set_config('app.uid', '7', false) $$]])
      conn:release()
      assert(p.pg:query "select 1 from public.spec_set_uid()")
      local v = assert(p.pg:query "select coalesce(current_setting('app.uid', true), '') as v")[1].v
      p:close()
      return v
    end
    assert.are.equal("7", run "auto")
    assert.are.equal("", run "always")
    assert(db.pg:exec "drop function public.spec_set_uid()")
  end)

  it("a column named temperature costs no reset round trip", function()
    local other = helpers.connect { size = 1, max_overflow = 0 }
    local conn = assert(db.pg:acquire())
    local pid = conn:backend_pid()
    assert(conn:query "select 1 as temperature, 2 as template")
    conn:release()
    assert.are.equal("select 1 as temperature, 2 as template",
      assert(other.pg:query("select query from pg_stat_activity where pid = $1", pid))[1].query)
    other:close()
  end)
end)

describe("statements prepared again", function()
  local db
  setup(function()
    db = helpers.connect { size = 1, max_overflow = 0 }
    assert(db.pg:exec [[
      drop sequence if exists prep_seq; create sequence prep_seq;
      create or replace function prep_unsupported() returns int language plpgsql as
        $$ begin raise exception 'nope' using errcode = 'feature_not_supported'; end $$;
      drop table if exists prep_shape; create table prep_shape (a int); insert into prep_shape values (1)]])
  end)
  teardown(function()
    assert(db.pg:exec "drop sequence prep_seq; drop function prep_unsupported(); drop table prep_shape")
    db:close()
  end)

  it("a 0A000 that is the statement's own error does not run it twice", function()
    for _ = 1, 3 do
      local rows, err = db.pg:query "select nextval('prep_seq') + prep_unsupported() as v"
      assert.is_nil(rows)
      assert.are.equal("0A000", err.code)
    end
    -- three calls, three nextval: none ran again
    assert.are.equal(3, assert(db.pg:query "select last_value::int as v from prep_seq")[1].v)
  end)

  it("a table whose shape changed under a prepared statement is prepared again transparently", function()
    for _ = 1, 2 do assert.are.same({ a = 1 }, assert(db.pg:query "select * from prep_shape")[1]) end
    assert(db.pg:exec "alter table prep_shape add column b int default 2")
    assert.are.same({ a = 1, b = 2 }, assert(db.pg:query "select * from prep_shape")[1])
  end)
end)

describe("second review findings", function()
  local db
  setup(function()
    db = helpers.connect { size = 1, max_overflow = 0, timeout = 5 }
    assert(db.pg:exec "drop table if exists hunt2_t; create table hunt2_t (a int)")
  end)
  teardown(function()
    assert(db.pg:exec "drop table hunt2_t")
    helpers.assert_all_returned(db)
    db:close()
  end)
  before_each(function() assert(db.pg:exec "truncate hunt2_t") end)

  it("release() inside a rows loop ends the loop instead of reading freed memory", function()
    local conn = assert(db.pg:acquire())
    local seen = 0
    for _ in conn:rows "select generate_series(1, 3) g" do
      seen = seen + 1
      conn:release()
    end
    assert.are.equal(1, seen)
    assert.is_true(conn:released())
  end)

  it("a loop ended from outside cannot take a later loop's rows", function()
    local conn = assert(db.pg:acquire())
    local itA, kA
    assert(conn:transaction(function(tx)
      itA, kA = tx:rows "select 'A' || g as v from generate_series(1, 3) g"
      assert.are.equal("A1", itA(kA).v)
    end))
    local itB, kB = conn:rows "select 'B' || g as v from generate_series(1, 5) g"
    assert.are.equal("B1", itB(kB).v)
    assert.is_nil(itA(kA))
    assert.are.equal("B2", itB(kB).v)
    for _ in itB, kB do end
    assert.are.equal(1, assert(conn:query "select 1 as v")[1].v)
    conn:release()
  end)

  it("leaving a rows or copy_to loop early inside a transaction keeps the transaction", function()
    assert(db.pg:transaction(function(tx)
      assert(tx:query "insert into hunt2_t values (1)")
      loop_until(function() return true end, tx:rows "select generate_series(1, 100000) g")
      loop_until(function() return true end, assert(tx:copy_to "copy (select generate_series(1, 100000)) to stdout"))
      assert.are.equal(1, assert(tx:query "select count(*)::int as n from hunt2_t")[1].n)
    end))
    assert.are.equal(1, assert(db.pg:query "select count(*)::int as n from hunt2_t")[1].n)
  end)

  it("statements after a COPY in the same text count for the reset, and the COPY's count stands", function()
    local conn = assert(db.pg:acquire())
    assert.are.equal(3, assert(conn:copy_from("copy hunt2_t from stdin; set search_path = pg_catalog", "1\n2\n3\n")))
    conn:release()
    assert.are.equal('"$user", public', assert(db.pg:query "select current_setting('search_path') as v")[1].v)
  end)

  it("DEALLOCATE ALL run by the user inside a transaction does not break cached statements", function()
    for _ = 1, 2 do assert(db.pg:query "select 11 as v") end
    assert(db.pg:transaction(function(tx)
      assert(tx:exec "DEALLOCATE ALL")
      assert.are.equal(11, assert(tx:query "select 11 as v")[1].v)
    end))
  end)

  it("a positive timeout under a millisecond is not taken as no limit", function()
    local tiny = helpers.connect({ size = 1, max_overflow = 0, statement_timeout = 0.0001 })
    local rows, err = tiny.pg:query "select pg_sleep(0.05)"
    assert.is_nil(rows)
    assert.are.equal("57014", err.code)
    tiny:close()
  end)
end)
