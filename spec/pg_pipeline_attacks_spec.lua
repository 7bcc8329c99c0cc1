-- Regression tests for the PostgreSQL pipeline mode (db.pg:pipeline,
-- conn:pipeline): each `it` reproduced a bug a bug hunt found (they failed,
-- or crashed in a child process, at commit 6f293eb). The comment above each
-- says what is expected and what the cause was in that code (the
-- prepare-ahead, the plan-changed retry and the leading empty statement,
-- all since removed: a pipeline's statements now go unnamed, are never
-- retried, and a sync point goes first).
require "semstore.compat" ()
local semstore = require "semstore"
local helpers = require "support.helpers"

local function now()
  local p = assert(io.popen "date +%s.%N")
  local s = p:read "l"
  p:close()
  return tonumber(s)
end

-- Runs a Lua script in a child process (so a crash fails the `it` instead
-- of killing busted); returns its exit status (true/false, code) and output.
local function child(script)
  local path = os.tmpname()
  local f = assert(io.open(path, "w"))
  f:write(script)
  f:close()
  local p = assert(io.popen(string.format("LUA_PATH=%s LUA_CPATH=%s %s %s %s 2>&1; echo \"exit=$?\"",
    helpers.shell_quote(helpers.root .. "/lua/?.lua;" .. helpers.root .. "/lua/?/init.lua;;"),
    helpers.shell_quote(helpers.cpath), helpers.lua_bin, path, helpers.shell_quote(helpers.url))))
  local out = p:read "a"
  p:close()
  os.remove(path)
  return out
end

describe("pipeline regressions", function()
  local db, admin
  setup(function()
    db = helpers.connect { size = 1, max_overflow = 0, timeout = 10 }
    admin = helpers.connect { size = 1, max_overflow = 0, timeout = 10 }
  end)
  before_each(function()
    assert(db.pg:exec [[
      drop table if exists attack_t;
      create table attack_t (a int primary key);
      insert into attack_t values (1)]])
  end)
  teardown(function()
    assert(admin.pg:exec "drop table if exists attack_t")
    helpers.assert_all_returned(db)
    helpers.assert_all_returned(admin)
    db:close()
    admin:close()
  end)
  after_each(function()
    helpers.assert_all_returned(db)
    helpers.assert_all_returned(admin)
  end)

  -- REGRESSION 1 (fixed) (memory safety: use after free, segfault). A pipeline holding
  -- DEALLOCATE ALL followed by a statement the connection has prepared:
  -- the server answers 26000 for the latter; ss_pg_pipeline_run first notes
  -- every successful result (note_result -> forget_all frees every cached
  -- stmt, p->used[] included), then for the 26000 calls
  -- forget(pg, p->used[p->failed], ...) on the freed stmt (pg.c ~1657):
  -- valgrind shows "Invalid read ... forget (pg.c:555)", and the process
  -- dies with SIGSEGV. Expected: no crash; the pipeline returns a result or
  -- nil, err, and the connection is usable afterwards.
  it("DEALLOCATE ALL then a prepared statement in one pipeline does not crash", function()
    local out = child [[
require "semstore.compat" ()
local semstore = require "semstore"
local db = assert(semstore.connect { name = "uaf", postgres = arg[1], pool = { size = 1, max_overflow = 0 } })
local conn = assert(db.pg:acquire())
assert(conn:query "select 1 as x")
assert(conn:query "select 1 as x") -- second use: prepared on this connection
local r, err = conn:pipeline(function(p)
  p:query "deallocate all"
  p:query "select 1 as x"
end)
print("pipeline:", r and "ok" or tostring(err))
assert(conn:query "select 2 as y")
conn:release()
print "SURVIVED"
]]
    assert.is_truthy(out:match "SURVIVED", out)
    assert.is_truthy(out:match "exit=0", out)
  end)

  -- REGRESSION 1 (fixed), shortest form: on a new connection, "deallocate all" twice in
  -- one pipeline. The prepare-ahead (pipeline_prepared) prepares the text on
  -- its second use, so both statements run as that one prepared statement;
  -- the first drops it on the server, the second gets 26000, and the same
  -- freed stmt is forgotten again: SIGSEGV.
  it("two DEALLOCATE ALL in one pipeline do not crash", function()
    local out = child [[
require "semstore.compat" ()
local semstore = require "semstore"
local db = assert(semstore.connect { name = "uaf2", postgres = arg[1], pool = { size = 1, max_overflow = 0 } })
local r, err = db.pg:pipeline(function(p)
  p:query "deallocate all"
  p:query "deallocate all"
end)
print("pipeline:", r and "ok" or tostring(err))
assert(db.pg:query "select 1")
print "SURVIVED"
]]
    assert.is_truthy(out:match "SURVIVED", out)
    assert.is_truthy(out:match "exit=0", out)
  end)

  -- REGRESSION 2 (fixed). COPY is to be refused from the statement's text, "comments and
  -- case aside" (README, Pipelines): an input error, nothing sent. But
  -- starts_with_copy (pg.c) ends a "--" comment only at '\n', while the
  -- server's lexer also ends it at '\r'. "-- x\rCOPY ... TO STDOUT" gets
  -- through, the server starts a COPY inside the pipeline, pipeline_read
  -- gives the connection up and the caller gets a misleading
  -- "connection to PostgreSQL lost" (kind connection), and the pool opens a
  -- new connection.
  it("refuses a COPY hidden behind a -- comment ended by a carriage return", function()
    local opened = db.pg:stats().opened
    local r, err = db.pg:pipeline(function(p) p:query "-- note\rCOPY attack_t TO STDOUT" end)
    assert.is_nil(r)
    assert.are.equal("input", err.kind, tostring(err))
    assert.are.equal(1, err.statement)
    assert.is_truthy(tostring(err):match "COPY", tostring(err))
    assert(db.pg:query "select 1")
    assert.are.equal(opened, db.pg:stats().opened, "the connection was given up")
  end)

  -- REGRESSION 3 (fixed). conn:settimeout: "past it the statement running is cancelled ...
  -- kind == 'timeout'; the connection stays usable". When a statement is
  -- used twice in a pipeline, pipeline_prepared (pg.c) prepares it in a
  -- round trip of its own before the pipeline goes out. A table locked by
  -- another session makes that prepare wait: at the deadline wait_ms sends
  -- the cancel, which cancels the PREPARE (its error is ignored), the
  -- deadline becomes now + CANCEL_GRACE, the pipeline then blocks on the
  -- lock again and after 5 s more the connection is given up. Observed:
  -- ~6 s, kind "connection" ("no answer from PostgreSQL after a cancel
  -- request"), connection closed. Expected: ~1 s, kind "timeout", the
  -- connection still usable (as conn:query gives on the same lock).
  it("a pipeline of a statement used twice, waiting on a lock, times out after conn:settimeout, connection kept", function()
    local locker = assert(admin.pg:acquire())
    assert(locker:exec "begin; lock table attack_t in access exclusive mode")
    local conn = assert(db.pg:acquire())
    local pid = conn:backend_pid()
    conn:settimeout(1)
    local t0 = now()
    local r, err = conn:pipeline(function(p)
      p:query "select a from attack_t"
      p:query "select a from attack_t"
    end)
    local elapsed = now() - t0
    assert(locker:exec "rollback")
    locker:release()
    local after, aerr = conn:query "select 1 as one"
    conn:release()
    assert.is_nil(r)
    assert.are.equal("timeout", err.kind, tostring(err))
    assert.is_true(elapsed < 3, "waited " .. elapsed .. " s for a 1 s timeout")
    assert.is_truthy(after, "the connection was given up: " .. tostring(aerr))
    local c = assert(db.pg:acquire())
    local same = c:backend_pid() == pid
    c:release()
    assert.is_true(same, "the pool had to open another connection")
  end)

  -- REGRESSION 3 (fixed), second face: since the cancel is spent on the PREPARE and its
  -- error ignored, the pipeline is sent *after* its deadline has passed and
  -- runs to its end if the lock goes within the 5 s grace: the call then
  -- returns success at ~2 s under settimeout(1) and its INSERTs are
  -- committed. Expected: nothing is sent once the deadline has passed; a
  -- timeout error and no row inserted.
  it("a pipeline blocked past conn:settimeout commits nothing", function()
    -- another session holds the lock for 2 s
    local p = assert(io.popen(string.format(
      "psql %s -qAtc 'begin; lock table attack_t in access exclusive mode; select pg_sleep(2); commit' 2>&1 &",
      helpers.shell_quote(helpers.url))))
    helpers.sleep(0.5)
    local conn = assert(db.pg:acquire())
    conn:settimeout(1)
    local t0 = now()
    local r, err = conn:pipeline(function(q)
      q:query("insert into attack_t values ($1)", 2)
      q:query("insert into attack_t values ($1)", 3)
    end)
    local elapsed = now() - t0
    conn:release()
    p:close()
    local n = assert(db.pg:query "select count(*)::int as n from attack_t where a in (2, 3)")[1].n
    assert.is_nil(r, "the pipeline succeeded after " .. elapsed .. " s under a 1 s timeout")
    assert.are.equal("timeout", err.kind, tostring(err))
    assert.are.equal(0, n, "rows committed by a pipeline past its deadline")
  end)

  -- REGRESSION 4 (fixed). A pipeline of two groups (p:sync() between) past its timeout:
  -- the cancel hits group 1's statement, but group 2 still starts, and the
  -- wait goes on CANCEL_GRACE (5 s) more, then the connection is given up.
  -- Observed: ~6 s, nil, err with kind "timeout", and the connection is
  -- dead afterwards ("connection to PostgreSQL lost" on the next query):
  -- the error's kind does not even say so (settimeout: "If the server does
  -- not answer 5 s after the cancel, the connection is given up and the
  -- error is connection").
  -- Expected: back after ~1 s with kind "timeout", connection usable (the
  -- README: "the whole pipeline is one call for conn:settimeout (past it the
  -- statement running is cancelled ...)"; settimeout: "the connection stays
  -- usable"). Cause: wait_ms sends one cancel per call; the groups after a
  -- cancelled one are neither cancelled nor skipped.
  it("a pipeline of two groups past conn:settimeout returns in time and keeps the connection", function()
    local conn = assert(db.pg:acquire())
    conn:settimeout(1)
    local t0 = now()
    local r, err = conn:pipeline(function(p)
      p:query "select pg_sleep(3)"
      p:sync()
      p:query "select pg_sleep(10)"
    end)
    local elapsed = now() - t0
    local after, aerr = conn:query "select 1 as one"
    conn:release()
    assert.is_nil(r)
    assert.are.equal("timeout", err.kind, tostring(err))
    assert.is_true(elapsed < 3, "waited " .. elapsed .. " s for a 1 s timeout")
    assert.is_truthy(after, "the connection was given up: " .. tostring(aerr))
  end)

  -- REGRESSION 5 (fixed). The retry after "cached plan must not change result type"
  -- calls start_call again (pg.c, end of the attempt loop in
  -- ss_pg_pipeline_run), so the deadline restarts and the pipeline may take
  -- up to twice conn:settimeout without being cancelled (query()'s own
  -- retry in run() keeps the first deadline). Observed: ~1.4 s and success
  -- with settimeout(1). Expected: the whole pipeline is one call: cancelled
  -- at 1 s with kind "timeout".
  it("a pipeline reading a table changed since the connection prepared it keeps its deadline", function()
    local conn = assert(db.pg:acquire())
    assert(conn:query "select * from attack_t")
    assert(conn:query "select * from attack_t") -- prepared now
    assert(admin.pg:exec "alter table attack_t add column c int")
    conn:settimeout(1)
    local t0 = now()
    local r, err = conn:pipeline(function(p)
      p:query "select pg_sleep(0.7)"
      p:query "select * from attack_t"
    end)
    local elapsed = now() - t0
    conn:release()
    assert.is_true(elapsed < 1.3, "the pipeline ran " .. elapsed .. " s under a 1 s timeout: " ..
      tostring(r and "succeeded" or err))
  end)

  -- REGRESSION 6 (fixed). pipeline_prepared prepares a statement on its second use in the
  -- pipeline *before* any of it runs. A pipeline that changes a table's
  -- shape between two uses of "select *" then fails every time: statement
  -- 3 runs a plan prepared for the old shape (0A000 "cached plan must not
  -- change result type"), the retry prepares it again before the pipeline
  -- (the ALTER was rolled back), and fails the same way. The same three
  -- statements one by one through conn:query in a transaction on a new
  -- connection work (the first use is unnamed, the second prepared after
  -- the ALTER). Expected: the pipeline succeeds and result 3 has column b.
  it("a pipeline that alters a table between two uses of one SELECT succeeds", function()
    local fresh = helpers.connect { size = 1, max_overflow = 0, timeout = 10 }
    local via_query, qerr = fresh.pg:transaction(function(tx)
      assert(tx:query "select * from attack_t")
      assert(tx:query "alter table attack_t add column b int default 7")
      local rows = assert(tx:query "select * from attack_t")
      assert(tx:exec "alter table attack_t drop column b")
      return rows[1].b
    end)
    helpers.assert_all_returned(fresh)
    fresh:close()
    assert.are.equal(7, via_query, tostring(qerr))
    local r, err = db.pg:pipeline(function(p)
      p:query "select * from attack_t"
      p:query "alter table attack_t add column b int default 7"
      p:query "select * from attack_t"
    end)
    assert.is_truthy(r, tostring(err))
    assert.are.equal(7, r[3][1].b)
  end)
  -- REGRESSION 7 (fixed). The same retry (a prepared statement whose table changed shape,
  -- on an idle connection, one group) runs the whole pipeline again, on
  -- the grounds that nothing of it can have committed. But not everything
  -- a statement does is transactional: a PREPARE before the failing
  -- statement stays on the server after the implicit transaction rolled
  -- back, so the second run fails at statement 1 with 42P05 "prepared
  -- statement "q" already exists", an error no single run of these
  -- statements gives (ends_transactions in pg.c looks only for BEGIN,
  -- COMMIT, ... before the failure). Expected: the pipeline succeeds (q
  -- prepared once, the SELECT prepared again for the new shape).
  it("a pipeline reading a changed table runs its PREPARE once", function()
    local conn = assert(db.pg:acquire())
    assert(conn:query "select * from attack_t")
    assert(conn:query "select * from attack_t") -- prepared now
    assert(admin.pg:exec "alter table attack_t add column c int")
    local r, err = conn:pipeline(function(p)
      p:query "prepare attack_q as select 1 as one"
      p:query "select * from attack_t"
    end)
    conn:release()
    assert.is_truthy(r, tostring(err))
    assert.are.same({ a = 1, c = semstore.null }, r[2][1])
  end)

  -- REGRESSION 7 (fixed), second face: a session-level advisory lock taken before the
  -- failing statement is taken twice (the retry runs it again; advisory
  -- locks ignore the rollback), so the caller's one pg_advisory_unlock
  -- leaves it held and other sessions stay locked out while the connection
  -- is borrowed. Expected: the pipeline's statements run once.
  it("a pipeline reading a changed table takes its advisory lock once", function()
    local conn = assert(db.pg:acquire())
    assert(conn:query "select * from attack_t")
    assert(conn:query "select * from attack_t") -- prepared now
    assert(admin.pg:exec "alter table attack_t add column c int")
    local r, err = conn:pipeline(function(p)
      p:query "select pg_advisory_lock(424242)"
      p:query "select * from attack_t"
    end)
    assert.is_truthy(r, tostring(err))
    assert(conn:query "select pg_advisory_unlock(424242)")
    local other = assert(admin.pg:query "select pg_try_advisory_lock(424242) as got")[1].got
    if other then assert(admin.pg:query "select pg_advisory_unlock(424242)") end
    conn:release()
    assert.is_true(other, "the lock is still held after the one unlock the caller owes")
  end)

  -- REGRESSION 8 (fixed). README (Pipelines): "In a transaction that already failed,
  -- statement 1 fails with the server's 25P02." With a sync point that is
  -- not so: the first group's statements come back PIPELINE_ABORTED (the
  -- leading empty statement took the 25P02), the second group's first
  -- statement gets a 25P02 of its own, and ss_pg_pipeline_run picks that as
  -- the first failure (p->lead is only used when no statement failed).
  -- Observed: err.statement == 2, "statement 2: current transaction is
  -- aborted". Expected: err.statement == 1.
  it("in a failed transaction a pipeline with a sync point names statement 1", function()
    local conn = assert(db.pg:acquire())
    assert(conn:exec "begin")
    assert.is_nil((conn:query "select 1/0"))
    local r, err = conn:pipeline(function(p)
      p:query "select 1"
      p:sync()
      p:query "select 2"
    end)
    assert(conn:exec "rollback")
    conn:release()
    assert.is_nil(r)
    assert.are.equal("25P02", err.code)
    assert.are.equal(1, err.statement, tostring(err))
  end)
  -- REGRESSION 9 (fixed). In a failed transaction, a pipeline cannot recover it: a
  -- pipeline whose statement 1 is ROLLBACK TO SAVEPOINT (or ROLLBACK) fails
  -- with 25P02 and the transaction stays failed, because pipeline_send puts
  -- an empty statement of its own first (the libpq 15 single-row-flag
  -- workaround) and that one fails in the aborted transaction, so the
  -- server skips everything up to the sync, the ROLLBACK included.
  -- PostgreSQL takes ROLLBACK / ROLLBACK TO in an aborted transaction, and
  -- conn:query does; a pipeline of the same statements through libpq alone
  -- would too. (README's "In a transaction that already failed, statement
  -- 1 fails with the server's 25P02" describes the symptom, not a reason
  -- to refuse the statements that end the failure.) Expected: the savepoint
  -- is rolled back to, the INSERT after it runs.
  it("a pipeline starting with ROLLBACK TO SAVEPOINT recovers a failed transaction", function()
    local conn = assert(db.pg:acquire())
    assert(conn:exec "begin; insert into attack_t values (10); savepoint s")
    assert.is_nil((conn:query "insert into attack_t values (10)"))
    local r, err = conn:pipeline(function(p)
      p:query "rollback to savepoint s"
      p:query "insert into attack_t values (11)"
    end)
    local status = conn:transaction_status()
    conn:exec "rollback"
    conn:release()
    assert.is_truthy(r, tostring(err))
    assert.are.equal("in_transaction", status)
  end)
end)
