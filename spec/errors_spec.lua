-- Failures come back as nil, err with the server's fields, and never show a password.
local semstore = require "semstore"
local helpers = require "support.helpers"

describe("errors", function()
  local db
  setup(function()
    db = helpers.connect()
    assert(db.pg:exec [[
      drop table if exists err_parent, err_child;
      create table err_parent (id int primary key, email text constraint err_parent_email_key unique);
      create table err_child (parent_id int constraint err_child_parent_fk references err_parent(id), n int not null)]])
  end)
  teardown(function()
    assert(db.pg:exec "drop table err_child, err_parent")
    helpers.assert_all_returned(db)
    db:close()
  end)

  it("a unique violation carries 23505 and the constraint name", function()
    assert(db.pg:query("insert into err_parent values ($1, $2)", 1, "a@example.com"))
    local rows, err = db.pg:query("insert into err_parent values ($1, $2)", 2, "a@example.com")
    assert.is_nil(rows)
    assert.are.equal("postgres", err.kind)
    assert.are.equal("23505", err.code)
    assert.are.equal("err_parent_email_key", err.constraint)
    assert.are.equal("err_parent", err.table)
    assert.are.equal("ERROR", err.severity)
    assert.truthy(err.detail:find "a@example.com", 1, true)
    assert.truthy(tostring(err):find "23505")
  end)

  it("a foreign key violation and a not-null violation name their targets", function()
    local _, err = db.pg:query("insert into err_child values ($1, $2)", 99, 1)
    assert.are.equal("23503", err.code)
    assert.are.equal("err_child_parent_fk", err.constraint)
    _, err = db.pg:query("insert into err_child values ($1, $2)", nil, nil)
    assert.are.equal("23502", err.code)
    assert.are.equal("n", err.column)
  end)

  it("a syntax error gives 42601", function()
    local rows, err = db.pg:query "selec 1"
    assert.is_nil(rows)
    assert.are.equal("42601", err.code)
    rows, err = db.pg:exec "create table (;"
    assert.is_nil(rows)
    assert.are.equal("42601", err.code)
  end)

  it("tostring() of an error reads as one line with the code and message", function()
    local _, e = db.pg:query "select 1/0"
    assert.are.equal("22012", e.code)
    assert.are.equal("postgres error 22012: division by zero", tostring(e))
  end)

  it("the statement timeout cancels a slow query with 57014 and keeps the pool usable", function()
    local slow = helpers.connect({ size = 1, max_overflow = 0, timeout = 5, statement_timeout = 0.2 })
    local rows, err = slow.pg:query "select pg_sleep(3)"
    assert.is_nil(rows)
    assert.are.equal("57014", err.code)
    assert.are.equal(1, assert(slow.pg:query "select 1 as one")[1].one)
    assert.are.equal(0, slow.pg:stats().evicted)
    slow:close()
  end)

  it("misuse raises: exec with parameters, a released connection", function()
    assert.has_error(function() db.pg:exec("select $1", 1) end)
    local conn = assert(db.pg:acquire())
    conn:release()
    assert.has_error(function() conn:query "select 1" end)
    conn:release() -- a second release does nothing
  end)

  it("a password never shows in errors or tostring", function()
    local bad = helpers.url:gsub("://([^:]+):[^@]*@", "://%1:Sup3rSecretPw@")
    local other = assert(semstore.connect { name = "bad-password", postgres = bad, pool = { size = 1, max_overflow = 0, timeout = 2 } })
    assert.is_nil(tostring(other):find "Sup3rSecretPw")
    local rows, err = other.pg:query "select 1"
    assert.is_nil(rows)
    assert.are.equal("connection", err.kind)
    assert.is_nil(tostring(err):find "Sup3rSecretPw")
    other:close()
    -- libpq quotes a malformed conninfo in its message; that is redacted too
    local broken = assert(semstore.connect { name = "bad-conninfo", postgres = "password=Sup3rSecretPw host", pool = { size = 1, timeout = 2 } })
    rows, err = broken.pg:query "select 1"
    assert.is_nil(rows)
    assert.is_nil(tostring(err):find "Sup3rSecretPw")
    assert.is_nil(tostring(broken):find "Sup3rSecretPw")
    broken:close()
    local password = helpers.url:match "://[^:]+:([^@]*)@"
    assert.is_nil(tostring(db):find(":" .. password .. "@", 1, true))
    assert.truthy(tostring(db):find(":***@", 1, true))
  end)

  it("an unreachable server is a connection error", function()
    local gone = assert(semstore.connect { name = "unreachable", postgres = "postgresql://u:p@127.0.0.1:1/db", pool = { size = 1, timeout = 2, connect_timeout = 2 } })
    local rows, err = gone.pg:query "select 1"
    assert.is_nil(rows)
    assert.are.equal("connection", err.kind)
    assert.are.equal(0, gone.pg:stats().size)
    gone:close()
  end)

  it("a pool name already used for another server is refused", function()
    local a = helpers.connect()
    local b, err = semstore.connect { name = a.name, postgres = "postgresql://x@127.0.0.1:1/other" }
    assert.is_nil(b)
    assert.are.equal("input", err.kind)
    a:close()
  end)
  it("tostring of an error with long fields reads every byte it was given", function()
    local long = ("x"):rep(2000) .. "END"
    local text = tostring(semstore.error { kind = "input", message = long, code = "22000", detail = ("d"):rep(3000) })
    assert.are.equal("input error 22000: " .. long .. " (" .. ("d"):rep(3000) .. ")", text)
    assert.are.equal("semstore error: ?", tostring(semstore.error {}))
    assert.are.equal("input error: 42", tostring(semstore.error { kind = "input", message = 42 }))
    -- a RAISE with a long text, from the server
    local _, err = db.pg:exec("do $$ begin raise exception '%', repeat('y', 3000); end $$")
    assert.is_true(#err.message > 1000 and err.message == ("y"):rep(#err.message))
    assert.are.equal("postgres error P0001: " .. err.message, tostring(err))
  end)
  it("a password libpq quotes bare in a connect error is hidden, as written and decoded", function()
    for _, url in ipairs {
      "postgresql://semstore:Super%Secret4@127.0.0.1:1/x",
      "postgresql://semstore:Caf%C3%A9%zzSecret@127.0.0.1:1/x",
      "host=127.0.0.1 port=1 password='Super%Secret4 x' sslmode=bogus",
    } do
      local d = semstore.connect { name = "secret-" .. #url, postgres = url, pool = { size = 1, max_overflow = 0 } }
      local rows, err = (d and d.pg or {}).query and d.pg:query "select 1"
      local text = tostring(err) .. " " .. tostring(rows)
      assert.falsy(text:find("Secret", 1, true), text)
      if d then d:close() end
    end
  end)
end)
