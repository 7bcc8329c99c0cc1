-- Pipeline regressions, round 3: what a bug hunt found at commit 3587cf6
-- (cancel requests kept in flight, up to 8, settled before the connection
-- runs anything else). Nothing here repeats spec/pg_pipeline_spec.lua,
-- spec/pg_pipeline_attacks_spec.lua or spec/pg_pipeline_hunt4_spec.lua.
require "semstore.compat" ()
local helpers = require "support.helpers"

-- The test server's postmaster: stopped (SIGSTOP) for a moment, it takes
-- no connection, so a cancel request cannot arrive; the backends already
-- connected keep running.
local function postmaster_pid()
  local data = assert(os.getenv "SEMSTORE_TEST_PG_DATA", "run through scripts/servers.sh (SEMSTORE_TEST_PG_DATA)")
  local f = assert(io.open(data .. "/postmaster.pid"))
  local pid = f:read "n"
  f:close()
  return assert(pid)
end

describe("pipeline regressions, round 3", function()
  local db
  setup(function()
    db = helpers.connect { size = 1, max_overflow = 0, timeout = 10 }
  end)
  before_each(function()
    assert(db.pg:exec "drop table if exists hunt5_t; create table hunt5_t (a int)")
  end)
  after_each(function() helpers.assert_all_returned(db) end)
  teardown(function()
    assert(db.pg:exec "drop table if exists hunt5_t")
    helpers.assert_all_returned(db)
    db:close()
  end)

  -- A pipeline that ran to its end past conn:settimeout, every group
  -- committed and every result in, while its cancel requests could not
  -- arrive (the postmaster took no connection for a moment: a SYN
  -- retransmitted after 1 s, a postmaster busy forking):
  --
  -- Expected: its results (every statement succeeded and committed; at
  -- most a `timeout` naming a statement that did not commit), the
  -- connection given up afterwards.
  --
  -- Observed: nil and a `connection` error "statement 1: a cancel request
  -- for this connection could not be delivered", although statement 1 and
  -- every group after it committed. The first statement's column is of a
  -- type the decoder does not know yet (void): decoding it runs a catalog
  -- query on the same connection (ss_pg_learn_types -> run -> ready ->
  -- settle_cancel), which waits CANCEL_SETTLE (1 s) for the pipeline's
  -- cancel requests, fails, and the failure is pinned on the statement
  -- being decoded. With a known type (`pg_sleep(..) is null`) the same
  -- pipeline returns its 6 results. conn:query "select pg_sleep(0.6)" with
  -- conn:settimeout(0.2) does the same outside pipelines.
  it("a pipeline that committed everything is not reported failed at statement 1 when its cancels cannot arrive", function()
    local pm = postmaster_pid()
    local conn = assert(db.pg:acquire())
    assert(conn:query "select 1 as a")
    conn:settimeout(0.2)
    local stopped = os.execute("kill -STOP " .. pm)
    finally(function() os.execute("kill -CONT " .. pm) end)
    assert.is_truthy(stopped)
    local r, err = conn:pipeline(function(p)
      p:query "select pg_sleep(0.6)"
      p:query "insert into hunt5_t values (1)"
      for i = 2, 5 do
        p:sync()
        p:query("insert into hunt5_t values ($1::int)", i)
      end
    end)
    os.execute("kill -CONT " .. pm)
    conn:release()
    local n = assert(db.pg:query "select count(*)::int4 as n from hunt5_t")[1].n
    assert.are.equal(5, n) -- every group committed
    assert.is_truthy(r, "reported failed although every group committed: " .. tostring(err))
    assert.are.equal(6, #r)
  end)
  -- README "### Pipelines": "once the deadline passed (or Ctrl-C) the
  -- groups not sent yet are not sent: it stops at the next sync point".
  -- Group 1 here is larger than the socket buffers (a 20 MB value behind
  -- a pg_sleep(1)), so the client waits to write it and the 0.2 s
  -- deadline passes during that wait, before group 2 is even queued.
  --
  -- Expected: group 2 (queued after the deadline) is not sent: nil, a
  -- `timeout` naming statement 1, and nothing of group 2 committed.
  --
  -- Observed: group 2 goes and commits its row, every time. In
  -- pipeline_send the `if (pg->timed_out) break;` comes right after the
  -- sync point is queued, before the 256 kB flush where wait_socket sees
  -- the deadline pass; the loop then queues and sends the next group
  -- before it looks again (at that group's own sync point).
  it("a group queued after the deadline passed while the group before it was being flushed is not sent", function()
    local big = string.rep("b", 20 * 1024 * 1024)
    local conn = assert(db.pg:acquire())
    conn:settimeout(0.2)
    local r, err = conn:pipeline(function(p)
      p:query "select pg_sleep(1)"
      p:query("select length($1::text) as n", big)
      p:sync()
      p:query "insert into hunt5_t values (2)"
    end)
    conn:settimeout(0)
    local n = assert(conn:query "select count(*)::int4 as n from hunt5_t")[1].n
    conn:release()
    assert.is_nil(r)
    assert.are.equal("timeout", err.kind, tostring(err))
    assert.are.equal(1, err.statement, tostring(err))
    assert.are.equal(0, n, "group 2, queued after the deadline, was sent and committed")
  end)
end)
