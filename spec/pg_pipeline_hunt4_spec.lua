-- Bugs in the PostgreSQL pipeline mode (db.pg:pipeline, conn:pipeline)
-- found by a bug hunt at commit 1bf3995 (unnamed statements, re-used parse
-- of a repeated statement, leading sync point, re-sent cancels). Each `it`
-- fails on that code; the comment above it says what is expected and the
-- suspected cause. Nothing here repeats spec/pg_pipeline_attacks_spec.lua.
require "semstore.compat" ()
local helpers = require "support.helpers"

local function now()
  local p = assert(io.popen "date +%s.%N")
  local s = p:read "l"
  p:close()
  return tonumber(s)
end

local function backend_pid(conn)
  return assert(conn:query "select pg_backend_pid() as p")[1].p
end

describe("pipeline hunt 4", function()
  local db
  setup(function()
    db = helpers.connect { size = 1, max_overflow = 0, timeout = 10 }
  end)
  before_each(function()
    assert(db.pg:exec [[
      drop table if exists hunt4_child;
      drop table if exists hunt4_parent;
      create table hunt4_parent (a int primary key);
      create table hunt4_child (a int references hunt4_parent deferrable initially deferred);
      drop schema if exists hunt4_s1 cascade;
      drop schema if exists hunt4_s2 cascade;
      create schema hunt4_s1;
      create schema hunt4_s2;
      create table hunt4_s1.t (a int);
      create table hunt4_s2.t (a int, b text);
      insert into hunt4_s1.t values (1);
      insert into hunt4_s2.t values (2, 'two')]])
  end)
  after_each(function() helpers.assert_all_returned(db) end)
  teardown(function()
    assert(db.pg:exec [[
      drop table if exists hunt4_child;
      drop table if exists hunt4_parent;
      drop schema if exists hunt4_s1 cascade;
      drop schema if exists hunt4_s2 cascade]])
    helpers.assert_all_returned(db)
    db:close()
  end)

  -- BUG 1a (silent data loss). A group whose implicit transaction fails at
  -- its COMMIT (a deferred foreign key checked at the sync point) is
  -- reported as a success: pipeline() returns the results, yet nothing was
  -- committed, and the connection is silently given up (on an acquired
  -- connection the NEXT call fails with "connection to PostgreSQL lost:
  -- ERROR: insert or update on table ... violates foreign key constraint").
  -- Observed: a results table, err nil, hunt4_child empty. Expected (README
  -- "All or nothing by default"): nil, err with the server's 23503, as
  -- `query "insert ..."` outside a transaction gives it, connection kept.
  -- Suspected cause: the commit's ErrorResponse comes back as a result
  -- before the group's PGRES_PIPELINE_SYNC; pipeline_read takes every
  -- non-sync result as the next statement's, finds i >= p->n, breaks out
  -- and marks the connection broken, but ss_pg_pipeline_run then only
  -- looks for a failed slot: every slot holds an OK result, so it returns
  -- 0 (success) although pipeline_read returned -1.
  it("a deferred constraint failing at the last group's commit fails the pipeline", function()
    local r, err = db.pg:pipeline(function(p)
      p:query "insert into hunt4_child values (1)"
    end)
    local n = assert(db.pg:query "select count(*)::int4 as n from hunt4_child")[1].n
    assert.are.equal(0, n) -- the server did roll it back
    assert.is_nil(r, "pipeline reported success for a group whose commit failed")
    assert.are.equal("23503", err.code, tostring(err))
  end)

  -- BUG 1b. The same commit failure in a group that is not the last one is
  -- blamed on the NEXT group's first statement (which ran and committed),
  -- and the connection is given up. Observed: err.statement == 2 with the
  -- FK error of statement 1's group, "select 2" committed, the backend pid
  -- changes (pipeline_read saw results out of step and set broken).
  -- Expected: err names statement 1 (its group failed), code 23503, and
  -- the connection stays (a server error is not a connection failure).
  -- Suspected cause: pipeline_read stores every non-sync result in
  -- p->results[i++], so the commit's error result (which libpq returns for
  -- the sync entry when it is already busy with it) takes the slot of the
  -- next statement, every later result shifts by one, and the last one
  -- finds i >= p->n and breaks out, marking the connection broken.
  it("a deferred constraint failing at a middle group's commit names its own group and keeps the connection", function()
    local conn = assert(db.pg:acquire())
    local pid = backend_pid(conn)
    local r, err = conn:pipeline(function(p)
      p:query "insert into hunt4_child values (1)"
      p:sync()
      p:query "insert into hunt4_parent values (5)"
      p:query "select 3 as z"
    end)
    local after, aerr = conn:query "select pg_backend_pid() as p"
    conn:release()
    assert.is_nil(r)
    assert.are.equal("23503", err.code, tostring(err))
    assert.are.equal(1, err.statement, tostring(err))
    assert.is_truthy(after, tostring(aerr))
    assert.are.equal(pid, after[1].p, "the connection was given up for a constraint violation")
  end)

  -- BUG 2. The re-used parse of a repeated statement is not what running
  -- the statements one by one does. A statement that changes the
  -- search_path its own text resolves against, repeated, fails the second
  -- time with 0A000 "cached plan must not change result type": the Bind of
  -- the unnamed statement re-analyzes it under the new search_path
  -- (hunt4_s2.t, two columns) and the server refuses a changed row type.
  -- The same three statements through conn:query succeed (second result
  -- has column b = "two"). README: every statement "is analyzed when the
  -- server reaches it, after whatever the statements before it changed";
  -- the re-use claims to be equivalent ("The server checks the statement
  -- again before each use"), but the check raises instead of re-parsing.
  -- Expected: the pipeline succeeds as the query() sequence does.
  -- Suspected cause: same_as_before (pg.c) binds the unnamed statement of
  -- the previous identical text; revalidation of a plan whose result
  -- changes is an error for a prepared statement, not a re-parse.
  it("a repeated statement whose analysis changes after its first run succeeds as through query()", function()
    local S = "select set_config('search_path', $1, false) as sp, * from t"
    local conn = assert(db.pg:acquire())
    assert(conn:query "set search_path = hunt4_s1")
    assert(conn:query(S, "hunt4_s2"))
    local q2 = assert(conn:query(S, "hunt4_s2"))
    assert.are.equal("two", q2[1].b) -- one by one, it works
    conn:release()

    conn = assert(db.pg:acquire())
    local r, err = conn:pipeline(function(p)
      p:query "set search_path = hunt4_s1"
      p:query(S, "hunt4_s2")
      p:query(S, "hunt4_s2")
    end)
    conn:release()
    assert.is_truthy(r, tostring(err))
    assert.are.equal("two", r[3][1].b)
  end)

  -- BUG 3. After a timeout, a pipeline whose later groups each take a
  -- little time (20 ms) is not cut short: the re-sent cancels (at most one
  -- per 50 ms at the sync points, one per 0.2 s while waiting) land on
  -- only a few of them, the rest run one after the other, the 5 s grace
  -- runs out and the connection is given up. Observed with settimeout(0.5)
  -- and 500 groups of pg_sleep(0.02): back after ~5.5 s, kind "timeout",
  -- then the connection is lost ("connection to PostgreSQL lost").
  -- Ctrl-C (core.catch_interrupts) has the same shape: 200 such groups of
  -- 10 ms took 2.4 s to come back after an interrupt at 0.5 s.
  -- Expected (README "Every wait has an end"): "the call comes back in
  -- about the timeout and the connection stays usable".
  -- Suspected cause: the later groups are only cancelled by requests that
  -- happen to reach the server while one of their statements runs; nothing
  -- skips them (e.g. no error forced on the remaining groups), so the
  -- pipeline's length, not the timeout, bounds the call.
  it("a timed-out pipeline with many short groups after it returns in about the timeout and keeps the connection", function()
    local conn = assert(db.pg:acquire())
    local pid = backend_pid(conn)
    conn:settimeout(0.5)
    local t0 = now()
    local r, err = conn:pipeline(function(p)
      p:query "select pg_sleep(3)"
      for _ = 1, 500 do
        p:sync()
        p:query "select pg_sleep(0.02)"
      end
    end)
    local elapsed = now() - t0
    conn:settimeout(0)
    local after, aerr = conn:query "select pg_backend_pid() as p"
    conn:release()
    assert.is_nil(r)
    assert.are.equal("timeout", err.kind, tostring(err))
    assert.is_true(elapsed < 2.5, "waited " .. elapsed .. " s for a 0.5 s timeout")
    assert.is_truthy(after, "the connection was given up: " .. tostring(aerr))
    assert.are.equal(pid, after[1].p)
  end)

  -- BUG 4. A backend that dies while the pipeline is still being sent (a
  -- big pipeline: 20,000 statements with 2 kB values, 40 MB) is blamed on
  -- statement 1, with the server's 57P01 lost, although the first 29
  -- groups ran and committed. Observed: kind "connection", err.statement
  -- == 1, "server closed the connection unexpectedly", hunt4_parent holds
  -- 2,900 rows. Expected (README "A backend that dies midway gives a
  -- `connection` error naming the statement it was running"): statement
  -- 3000, code 57P01, so the caller can tell what committed.
  -- Suspected cause: ss_pg_pipeline_run reads results only when
  -- pipeline_send succeeded (`!pipeline_send(...) && !pipeline_read(...)`);
  -- when the write fails, what the server answered (consumed into libpq's
  -- buffer while sending) is never read, every slot stays NULL, and the
  -- "no answer at all" loop names statement 1.
  it("a backend killed while a big pipeline is still being sent names the statement it ran", function()
    local big = string.rep("x", 2000)
    local r, err = db.pg:pipeline(function(p)
      for i = 1, 20000 do
        if i == 3000 then
          p:query "select pg_terminate_backend(pg_backend_pid())"
        else
          p:query("insert into hunt4_parent select $1::int where length($2) > 0", i, big)
        end
        if i % 100 == 0 then p:sync() end
      end
    end)
    local n = assert(db.pg:query "select count(*)::int4 as n from hunt4_parent")[1].n
    assert.is_nil(r)
    assert.are.equal("connection", err.kind, tostring(err))
    assert.are.equal(2900, n) -- the groups before the killed one committed
    assert.are.equal(3000, err.statement, tostring(err))
    assert.are.equal("57P01", err.code, tostring(err))
  end)

  -- BUG 5. A COPY behind a leading semicolon passes the COPY check and
  -- costs the connection. The server's parser drops empty statements, so
  -- "; copy t from stdin" is ONE statement, a COPY, and its CopyInResponse
  -- reaches pipeline_read. Observed: nil, kind "connection" ("connection
  -- to PostgreSQL lost", err.statement 2), the connection is broken (every
  -- later call on it fails). Expected (README: "COPY is refused from the
  -- statement's text ... an `input` error naming the statement", nothing
  -- sent): kind "input", err.statement 2, the connection kept.
  -- Suspected cause: starts_with_copy (pg.c) skips blanks and comments but
  -- not the semicolons (empty statements) the server's lexer/grammar skip.
  it("refuses a COPY behind a leading semicolon without losing the connection", function()
    local conn = assert(db.pg:acquire())
    local pid = backend_pid(conn)
    local r, err = conn:pipeline(function(p)
      p:query "select 1 as a"
      p:query "; copy hunt4_parent from stdin"
    end)
    local after, aerr = conn:query "select pg_backend_pid() as p"
    conn:release()
    assert.is_nil(r)
    assert.are.equal("input", err.kind, tostring(err))
    assert.are.equal(2, err.statement, tostring(err))
    assert.is_truthy(after, "the connection was given up: " .. tostring(aerr))
    assert.are.equal(pid, after[1].p)
  end)

  -- BUG 3b (same promise as BUG 3, a starker shape). After a timeout,
  -- every later group whose statement blocks (pg_sleep(10) here; a lock
  -- wait does the same) costs ~0.2 s: the cancel that ends one group's
  -- statement makes its sync result arrive within RECANCEL_MIN (50 ms) of
  -- that cancel, so no cancel goes when the next group starts, and that
  -- group waits for wait_ms's next re-cancel (RECANCEL_EVERY, 0.2 s). 30
  -- such groups exhaust the 5 s grace. Observed with settimeout(0.5): back
  -- after ~5.5 s, then "connection to PostgreSQL lost". Expected (README):
  -- back in about the timeout, the connection usable.
  it("a timed-out pipeline of 31 blocking groups returns in about the timeout and keeps the connection", function()
    local conn = assert(db.pg:acquire())
    local pid = backend_pid(conn)
    conn:settimeout(0.5)
    local t0 = now()
    local r, err = conn:pipeline(function(p)
      p:query "select pg_sleep(10)"
      for _ = 1, 30 do
        p:sync()
        p:query "select pg_sleep(10)"
      end
    end)
    local elapsed = now() - t0
    conn:settimeout(0)
    local after, aerr = conn:query "select pg_backend_pid() as p"
    conn:release()
    assert.is_nil(r)
    assert.are.equal("timeout", err.kind, tostring(err))
    assert.is_true(elapsed < 2.5, "waited " .. elapsed .. " s for a 0.5 s timeout")
    assert.is_truthy(after, "the connection was given up: " .. tostring(aerr))
    assert.are.equal(pid, after[1].p)
  end)
end)
