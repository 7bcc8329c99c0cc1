-- semstore.quote_ident and semstore.quote_literal: libpq's quoting, with no
-- server, checked against a real one.
local semstore = require "semstore"
local helpers = require "support.helpers"

-- the file descriptors this process has open: a socket would be one more
local function open_fds()
  local n = 0
  for _ in require("lfs").dir "/proc/self/fd" do n = n + 1 end
  return n
end

describe("quoting", function()
  local db
  setup(function() db = helpers.connect() end)
  teardown(function()
    helpers.assert_all_returned(db)
    db:close()
  end)

  local strings = { "plain", "it's", "a\\b", "\\", "''", 'a"b', "x'); DROP TABLE t; --", "tab\tnew\nline",
    "my table ü", "日本語のテーブル", "😀 emoji", "back\\slash and 'quote' and \"double\"", "E'x'", "$$", " lead" }

  it("quotes names as libpq does", function()
    assert.are.equal('"a""b"', semstore.quote_ident 'a"b')
    assert.are.equal('"my table ü"', semstore.quote_ident "my table ü")
    assert.are.equal('"Users"', semstore.quote_ident "Users")
    assert.are.equal('"a\\b"', semstore.quote_ident "a\\b")
  end)

  it("quotes literals as libpq does", function()
    assert.are.equal("'it''s'", semstore.quote_literal "it's")
    assert.are.equal("'ü 😀'", semstore.quote_literal "ü 😀")
    assert.are.equal(" E'a\\\\b'", semstore.quote_literal "a\\b")
    assert.are.equal(" E'\\\\'''", semstore.quote_literal "\\'")
  end)

  it("gives literals the server reads back as the same text", function()
    for _, s in ipairs(strings) do
      local lit = semstore.quote_literal(s)
      local row = assert(db.pg:query("SELECT " .. lit .. " = $1::text AS same, " .. lit .. " AS v, quote_literal($1::text) AS server", s))[1]
      assert.is_true(row.same, lit)
      assert.are.equal(s, row.v)
      assert.are.equal(row.server, (lit:gsub("^ ", "")), "the server's quote_literal agrees")
    end
  end)

  it("gives names the server reads back as the same name", function()
    for _, s in ipairs(strings) do
      local rows = assert(db.pg:query("SELECT 1 AS " .. semstore.quote_ident(s)))
      assert.are.equal(s, rows.columns[1])
    end
    local name = "quote spec \"ü\" " .. os.time()
    -- one borrow: the pool drops temporary tables when a connection goes back
    local conn = assert(db.pg:acquire())
    assert(conn:exec("CREATE TEMP TABLE " .. semstore.quote_ident(name) .. " (" .. semstore.quote_ident("it's") .. " text)"))
    local rows = assert(conn:query("SELECT count(*) AS n FROM pg_class WHERE relname = $1", name))
    assert.are.equal(1, rows[1].n)
    assert(conn:exec("DROP TABLE " .. semstore.quote_ident(name)))
    conn:release()
  end)

  it("refuses what is not text: zero bytes and bad UTF-8 are input errors", function()
    for _, bad in ipairs { "a\0b", "\0", "\xff", "caf\xe9", "\xc3", "\xc0\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80" } do
      for _, f in ipairs { semstore.quote_ident, semstore.quote_literal } do
        local v, err = f(bad)
        assert.is_nil(v, bad)
        assert.are.equal("input", err.kind, bad)
        assert.truthy(err.message:find(bad:find "\0" and "zero byte" or "UTF%-8"), err.message)
      end
    end
    local v, err = semstore.quote_ident ""
    assert.is_nil(v)
    assert.are.equal("input", err.kind)
    assert.are.equal("''", semstore.quote_literal "")
  end)

  it("raises for what is not a string", function()
    for _, f in ipairs { semstore.quote_ident, semstore.quote_literal } do
      for _, v in ipairs { 1, true, {}, semstore.null } do
        assert.has_error(function() f(v) end)
      end
      assert.has_error(function() f() end)
    end
  end)

  it("holds no connection: quoting leaves no descriptor open", function()
    local before = open_fds()
    for i = 1, 1000 do semstore.quote_literal("x" .. i) end
    assert.are.equal(before, open_fds())
  end)
end)
