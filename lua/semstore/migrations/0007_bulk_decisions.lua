-- The coordinator's log of create_chunks_bulk's two-phase commit (issue
-- 14): with opts.parallel, every connection PREPAREs its part as
-- 'semstore:bulk:<bulk>:<k>', then one row here records the decision
-- before the first COMMIT PREPARED. A process that dies between the two
-- leaves prepared transactions that hold locks; `semstore recover` (and
-- each pool's first connection) commits those whose bulk has a 'commit'
-- row and rolls back the others, writing a 'rollback' row first, so a
-- coordinator still alive can no longer commit. The primary key is what
-- makes the coordinator and a recovery agree: whichever writes first wins.
-- Rows live as long as their bulk's last commit; recovery deletes any left.
return {
  up = function(db)
    assert(db.pg:exec [[
      CREATE TABLE semstore_bulk_decisions (
        bulk uuid PRIMARY KEY,
        outcome text NOT NULL CHECK (outcome IN ('commit', 'rollback')),
        decided_at timestamptz NOT NULL DEFAULT now()
      )
    ]])
  end,
  down = function(db)
    assert(db.pg:exec "DROP TABLE semstore_bulk_decisions")
  end,
}
