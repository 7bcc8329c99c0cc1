-- Transactions: commit, rollback on raise or on nil, err, savepoints when nested.
local compat = require "semstore.compat"
local helpers = require "support.helpers"

describe("transactions", function()
  local db
  local function count()
    return assert(db.pg:query "select count(*)::int as n from tx_probe")[1].n
  end
  setup(function()
    db = helpers.connect()
    assert(db.pg:exec "drop table if exists tx_probe; create table tx_probe (a int primary key)")
  end)
  before_each(function() assert(db.pg:exec "truncate tx_probe") end)
  teardown(function()
    assert(db.pg:exec "drop table tx_probe")
    helpers.assert_all_returned(db)
    db:close()
  end)

  it("commits and returns the function's results", function()
    local a, b = db.pg:transaction(function(tx)
      assert(tx:query("insert into tx_probe values ($1)", 1))
      return "x", 2
    end)
    assert.are.equal("x", a)
    assert.are.equal(2, b)
    assert.are.equal(1, count())
    assert.is_true(db.pg:transaction(function() end))
  end)

  it("rolls back when the function raises", function()
    local ok, err = db.pg:transaction(function(tx)
      assert(tx:query("insert into tx_probe values ($1)", 1))
      error("boom")
    end)
    assert.is_nil(ok)
    assert.are.equal("callback", err.kind)
    assert.truthy(err.message:find "boom")
    assert.are.equal(0, count())
  end)

  it("rolls back when the function returns nil, err and passes err on", function()
    local ok, err = db.pg:transaction(function(tx)
      assert(tx:query("insert into tx_probe values ($1)", 1))
      return tx:query("insert into tx_probe values ($1)", 1)
    end)
    assert.is_nil(ok)
    assert.are.equal("23505", err.code)
    assert.are.equal(0, count())
  end)

  it("a failed statement whose error was ignored still rolls back", function()
    local ok, err = db.pg:transaction(function(tx)
      tx:query("insert into tx_probe values ($1)", 1)
      tx:query "select 1/0"
      return true
    end)
    assert.is_nil(ok)
    assert.are.equal("25P02", err.code)
    assert.are.equal(0, count())
  end)

  it("nests as savepoints: an inner failure keeps the outer work", function()
    assert(db.pg:transaction(function(tx)
      assert(tx:query("insert into tx_probe values ($1)", 1))
      local ok, err = tx:transaction(function(inner)
        assert(inner:query("insert into tx_probe values ($1)", 2))
        return inner:query("insert into tx_probe values ($1)", 1)
      end)
      assert.is_nil(ok)
      assert.are.equal("23505", err.code)
      assert(tx:transaction(function(inner)
        return inner:query("insert into tx_probe values ($1)", 3)
      end))
      return true
    end))
    local rows = assert(db.pg:query "select a from tx_probe order by a")
    assert.are.same({ { a = 1 }, { a = 3 } }, rows)
  end)

  it("an outer failure undoes committed savepoints", function()
    db.pg:transaction(function(tx)
      assert(tx:transaction(function(inner) return inner:query("insert into tx_probe values ($1)", 5) end))
      error "outer"
    end)
    assert.are.equal(0, count())
  end)

  it("takes an isolation level and read only", function()
    local level = assert(db.pg:transaction(function(tx)
      return assert(tx:query "show transaction_isolation")[1].transaction_isolation
    end, { isolation = "serializable" }))
    assert.are.equal("serializable", level)
    local ok, err = db.pg:transaction(function(tx)
      return tx:query("insert into tx_probe values ($1)", 9)
    end, { read_only = true })
    assert.is_nil(ok)
    assert.are.equal("25006", err.code)
    local _, bad = db.pg:transaction(function() end, { isolation = "chaos; drop table tx_probe" })
    assert.are.equal("input", bad.kind)
    assert.are.equal(0, count())
  end)

  it("a connection released inside a transaction is rolled back", function()
    local conn = assert(db.pg:acquire())
    assert(conn:exec "begin")
    assert(conn:query("insert into tx_probe values ($1)", 1))
    assert.are.equal("in_transaction", conn:transaction_status())
    conn:release()
    assert.are.equal(0, count())
    local again = assert(db.pg:acquire())
    assert.are.equal("idle", again:transaction_status())
    again:release()
  end)

  -- LuaJIT cannot read the syntax: the chunk is compiled under 5.4 only
  ;(helpers.lua54 and it or pending)("works with to-be-closed connections (Lua 5.4 only: <close> syntax)", function()
    local chunk = assert(load [[
      local db = ...
      do
        local conn <close> = assert(db.pg:acquire())
        assert(conn:query("insert into tx_probe values ($1)", 1))
        assert(db.pg:stats().in_use == 1)
      end
      assert(db.pg:stats().in_use == 0)
    ]])
    chunk(db)
    assert.are.equal(1, count())
  end)

  it("compat.closing gives a connection back on return and on a raise", function()
    local held = assert(db.pg:acquire())
    assert.are.equal("kept", compat.closing(held, function(conn)
      assert(conn:query("insert into tx_probe values ($1)", 2))
      assert.are.equal(1, db.pg:stats().in_use)
      return "kept"
    end, held))
    assert.are.equal(0, db.pg:stats().in_use)
    local conn = assert(db.pg:acquire())
    local ok, err = pcall(compat.closing, conn, function() error("boom", 0) end)
    assert.is_false(ok)
    assert.are.equal("boom", err)
    assert.is_true(conn:released())
    assert.are.equal(0, db.pg:stats().in_use)
    assert.are.equal(1, count())
  end)
end)
