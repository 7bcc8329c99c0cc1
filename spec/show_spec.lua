-- semstore.show: how values are shown to people (the REPL's printer).
local semstore = require "semstore"
local show = require "semstore.show"

describe("semstore.show.value", function()
  it("shows query rows as an aligned table with a header and a count", function()
    local rows = { columns = { "id", "name", "note" }, { id = 1, name = "ada", note = semstore.null },
                   { id = 22, name = "grace hopper", note = "x" } }
    assert.are.equal(table.concat({
      "id  name          note",
      "--  ------------  ----",
      "1   ada           null",
      "22  grace hopper  x",
      "(2 rows)" }, "\n"), show.value(rows))
    assert.are.equal("a\n-\n(0 rows)", show.value { columns = { "a" } })
  end)

  it("shows an array of records as a table, id first, and one record a field a line", function()
    local text = show.value { { name = "b", id = 2 }, { name = "é", id = 1, extra = { 1, 2 } } }
    assert.are.equal(table.concat({
      "id  extra   name",
      "--  ------  ----",
      "2           b",
      "1   [1, 2]  é",
      "(2 rows)" }, "\n"), text)
    assert.are.equal("id    7\nname  x", show.value { name = "x", id = 7 })
  end)

  it("shows other values as JSON-like text, null as null, cycles and depth bounded", function()
    assert.are.equal('{a: {b: [1, 2.5, null]}, s: "h\\n\\"q\\""}', show.value { a = { b = { 1, 2.5, semstore.null } }, s = 'h\n"q"' })
    assert.are.equal("null", show.value(semstore.null))
    assert.are.equal("nil", show.value(nil))
    assert.are.equal('"a\\000b"', show.value "a\0b")
    assert.are.equal("{}", show.value {})
    -- LuaJIT's numbers have no integer subtype: 3.0 is 3 there
    assert.are.equal(_VERSION == "Lua 5.4" and "3.0" or "3", show.value(3.0))
    local c = {}
    c.self = c
    assert.are.equal("{self: <cycle>}", show.value(c))
    local deep = {}
    local t = deep
    for _ = 1, 20 do
      t.next = {}
      t = t.next
    end
    assert.truthy(show.value(deep):find("{...}", 1, true))
    assert.are.equal('{[true]: "x", [1.5]: true}', show.value { [1.5] = true, [true] = "x" })
  end)

  it("shows errors with their kind and SQLSTATE", function()
    assert.are.equal("error (postgres, SQLSTATE 22012): division by zero",
      show.value(semstore.error { kind = "postgres", code = "22012", message = "division by zero" }))
    assert.are.equal("error (not_found): user 9 not found", show.value(semstore.error { kind = "not_found", message = "user 9 not found" }))
  end)

  it("cuts long cells and keeps control characters out of table lines", function()
    local text = show.value { columns = { "t" }, { t = ("x"):rep(100) .. "\n" } }
    assert.truthy(text:find(("x"):rep(59) .. "…", 1, true), text)
    assert.is_nil(text:find("xx\n", 1, true))
  end)
end)
