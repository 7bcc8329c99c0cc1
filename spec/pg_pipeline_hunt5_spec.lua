-- Pipeline regressions, round 3: what a third bug hunt found once cancel
-- requests were kept in flight and groups after the deadline held back.
-- Nothing here repeats spec/pg_pipeline_spec.lua,
-- spec/pg_pipeline_attacks_spec.lua or spec/pg_pipeline_hunt4_spec.lua.
require "semstore.compat" ()
local helpers = require "support.helpers"

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
