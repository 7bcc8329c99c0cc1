-- The migration runner against a real server, each test in a database of its own.
require "semstore.compat" () -- Lua 5.4's library under LuaJIT too
local migrate = require "semstore.migrate"
local helpers = require "support.helpers"

local LOCK_ID = 0x73656d73746f7265

-- a migration file's text from its up and down SQL
local function sql_migration(up, down, extra)
  local text = "return {\n  up = function(db) assert(db.pg:exec [==[" .. up .. "]==]) end,\n"
  if down then text = text .. "  down = function(db) assert(db.pg:exec [==[" .. down .. "]==]) end,\n" end
  return text .. (extra or "") .. "}\n"
end

describe("migrations", function()
  local scratch, url, db, dir

  before_each(function()
    scratch = helpers.scratch { size = 2, max_overflow = 2, timeout = 5, statement_timeout = 5 }
    url, db, dir = scratch.url, scratch.db, scratch.dir
  end)

  after_each(function() helpers.remove_scratch(scratch) end)

  local function write(file, text) helpers.write_file(dir .. "/" .. file, text) end

  local function exists(relation)
    return db.pg:query("SELECT to_regclass($1) IS NOT NULL AS yes", relation)[1].yes
  end

  local function applied()
    local rows = assert(db.pg:query "SELECT source, version FROM schema_migrations ORDER BY applied_at")
    local out = {}
    for i, r in ipairs(rows) do out[i] = r.source .. "/" .. r.version end
    return out
  end

  local function ids(list)
    local out = {}
    for i, m in ipairs(list) do out[i] = m.id end
    return out
  end

  it("applies the built-in schema first, then the application's folder, and records each", function()
    write("0001_widgets.lua", sql_migration("CREATE TABLE widgets (id int)", "DROP TABLE widgets"))
    local report = assert(migrate.up(db, { dir = dir }))
    assert.are.same({ "semstore/0001_extensions_and_types", "semstore/0002_users_and_collections",
      "semstore/0003_documents_and_chunks", "semstore/0004_operations_and_search_logs", "semstore/0005_reindex_queue",
      "semstore/0006_cheaper_chunk_checks", "semstore/0007_bulk_decisions", "0001_widgets" }, ids(report.applied))
    assert.is_true(exists "widgets")
    local rows = assert(db.pg:query "SELECT * FROM schema_migrations ORDER BY applied_at")
    assert.are.equal(8, #rows)
    for _, r in ipairs(rows) do
      assert.truthy(r.checksum:match "^%x+$" and #r.checksum == 64, r.checksum)
      assert.is_true(math.type(r.execution_ms) == "integer" and r.execution_ms >= 0)
      assert.truthy(r.applied_at:match "^%d%d%d%d%-%d%d%-%d%dT")
    end
    assert.are.same({ "app", "0001", "widgets" }, { rows[8].source, rows[8].version, rows[8].name })
    assert.are.same({}, assert(migrate.up(db, { dir = dir })).applied, "a second run finds nothing to do")
  end)

  it("goes up, down to nothing and up again to the same schema", function()
    local pristine = helpers.schema_dump(url)
    assert(migrate.up(db))
    local first = helpers.schema_dump(url)
    assert.truthy(first:find("CREATE TABLE public.chunks_p99", 1, true))
    local report = assert(migrate.down(db, { steps = "all" }))
    assert.are.equal(7, #report.reverted)
    assert.are.equal(pristine, helpers.schema_dump(url))
    assert.are.same({}, applied())
    assert(migrate.up(db))
    assert.are.equal(first, helpers.schema_dump(url))
  end)

  it("0006 makes chunks' id columns plain text without rewriting a row, and its down restores them", function()
    assert(migrate.up(db, { target = "semstore/0005" }))
    local owner = assert(db.pg:query([[INSERT INTO users (username, email, hashed_password)
      VALUES ('bo', 'bo@example.org', 'x') RETURNING id]]))[1].id
    local col = assert(db.pg:query([[INSERT INTO collections (name, owner_id, vector_store_name, embedding_model)
      VALUES ('c', $1, 'col_c', 'm') RETURNING id]], owner))[1].id
    assert(db.pg:query([[INSERT INTO chunks (collection_id, partition_key, chunk_index, content)
      SELECT $1::text, chunk_partition_key($1::text), i, 'chunk ' || i FROM generate_series(1, 1000) i]], col))
    local leaf = "chunks_p" .. db.pg:query("SELECT chunk_partition_key($1) AS k", col)[1].k
    local function files()
      return assert(db.pg:query([[SELECT c.relname, pg_relation_filenode(c.oid) AS f FROM pg_class c
        WHERE c.oid = $1::regclass OR c.oid IN (SELECT indexrelid FROM pg_index WHERE indrelid = $1::regclass)
        ORDER BY c.relname]], leaf))
    end
    local before = {}
    for _, r in ipairs(files()) do before[r.relname] = r.f end
    assert(migrate.up(db, { target = "semstore/0006" }))
    local after = files()
    assert.are.equal(4, #after, "the leaf, its primary key and two indexes left")
    -- the rows stay where they are (binary-coercible); PostgreSQL rebuilds
    -- the indexes on the two columns all the same
    for _, r in ipairs(after) do
      if r.relname == leaf then assert.are.equal(before[leaf], r.f, "the rows were rewritten") end
    end
    assert.are.equal(1000, db.pg:query("SELECT count(*) AS n FROM chunks WHERE collection_id = $1", col)[1].n)
    assert(migrate.down(db))
    local t = db.pg:query [[SELECT format_type(atttypid, atttypmod) AS t FROM pg_attribute
      WHERE attrelid = 'chunks'::regclass AND attname = 'collection_id']]
    assert.are.equal("uuid_text", t[1].t)
    assert.are.equal(1, db.pg:query("SELECT count(*) AS n FROM pg_indexes WHERE indexname = 'idx_chunks_part_collection'")[1].n)
    assert.are.equal(1000, db.pg:query("SELECT count(*) AS n FROM chunks WHERE collection_id = $1", col)[1].n)
  end)

  it("keeps on the way down an extension that was there before", function()
    assert(db.pg:exec "CREATE EXTENSION pg_trgm")
    assert(migrate.up(db))
    assert(migrate.down(db, { steps = "all" }))
    local ext = assert(db.pg:query "SELECT extname FROM pg_extension WHERE extname IN ('pg_trgm', 'uuid-ossp')")
    assert.are.equal(1, #ext)
    assert.are.equal("pg_trgm", ext[1].extname)
    assert.is_false(exists "semstore_extensions")
  end)

  it("reverts one step by default, newest first, and up stops at a target", function()
    write("0001_a.lua", sql_migration("CREATE TABLE a (id int)", "DROP TABLE a"))
    write("0002_b.lua", sql_migration("CREATE TABLE b (id int)", "DROP TABLE b"))
    write("0003_c.lua", sql_migration("CREATE TABLE c (id int)", "DROP TABLE c"))
    local report = assert(migrate.up(db, { dir = dir, builtin = false, target = "0002" }))
    assert.are.same({ "0001_a", "0002_b" }, ids(report.applied))
    assert.is_false(exists "c")
    report = assert(migrate.down(db, { dir = dir, builtin = false }))
    assert.are.same({ "0002_b" }, ids(report.reverted))
    assert.is_true(exists "a")
    assert.is_false(exists "b")
    assert(migrate.up(db, { dir = dir, builtin = false, target = "0003_c" }))
    assert.are.same({ "app/0001", "app/0002", "app/0003" }, applied())
    local _, err = migrate.up(db, { dir = dir, builtin = false, target = "0009" })
    assert.are.equal("input", err.kind)
  end)

  it("refuses an applied migration whose file changed since", function()
    write("0001_a.lua", sql_migration("CREATE TABLE a (id int)", "DROP TABLE a"))
    assert(migrate.up(db, { dir = dir, builtin = false }))
    write("0001_a.lua", sql_migration("CREATE TABLE a (id bigint)", "DROP TABLE a"))
    write("0002_b.lua", sql_migration("CREATE TABLE b (id int)", "DROP TABLE b"))
    local res, err = migrate.up(db, { dir = dir, builtin = false })
    assert.is_nil(res)
    assert.are.equal("migration", err.kind)
    assert.truthy(err.message:find(dir .. "/0001_a.lua", 1, true))
    assert.truthy(err.message:find("changed after it was applied", 1, true))
    assert.is_false(exists "b", "nothing runs after a refusal")
    res, err = migrate.down(db, { dir = dir, builtin = false })
    assert.is_nil(res)
    assert.truthy(err.message:find("changed", 1, true))
    local entries, problems = assert(migrate.status(db, { dir = dir, builtin = false }))
    assert.are.equal("changed", entries[1].state)
    assert.are.equal(1, #problems)
  end)

  it("reports out-of-order and missing migrations instead of skipping them", function()
    write("0001_a.lua", sql_migration("CREATE TABLE a (id int)"))
    write("0003_c.lua", sql_migration("CREATE TABLE c (id int)"))
    assert(migrate.up(db, { dir = dir, builtin = false }))
    write("0002_b.lua", sql_migration("CREATE TABLE b (id int)"))
    local res, err = migrate.up(db, { dir = dir, builtin = false })
    assert.is_nil(res)
    assert.truthy(err.message:find("0002_b is older than a migration already applied", 1, true))
    local entries = assert(migrate.status(db, { dir = dir, builtin = false }))
    assert.are.same({ "applied", "pending", "applied" }, { entries[1].state, entries[2].state, entries[3].state })
    assert.is_true(entries[2].out_of_order)
    os.remove(dir .. "/0002_b.lua")
    os.remove(dir .. "/0001_a.lua")
    local problems
    entries, problems = assert(migrate.status(db, { dir = dir, builtin = false }))
    assert.are.equal("missing", entries[2].state)
    assert.truthy(problems[1]:find("0001_a was applied but its file is gone", 1, true))
    res, err = migrate.up(db, { dir = dir, builtin = false })
    assert.is_nil(res)
    assert.are.equal("migration", err.kind)
  end)

  it("leaves no trace of a failing migration and names its file and statement", function()
    write("0001_a.lua", sql_migration("CREATE TABLE a (id int)"))
    write("0002_b.lua", [[
return { up = function(db)
  assert(db.pg:exec "CREATE TABLE b (id int)")
  assert(db.pg:query("INSERT INTO b VALUES ($1)", 1))
  assert(db.pg:query("INSERT INTO no_such_table VALUES ($1)", 2))
end }
]])
    local res, err, report = migrate.up(db, { dir = dir, builtin = false })
    assert.is_nil(res)
    assert.are.same({ "0001_a" }, ids(report.applied))
    assert.are.equal("postgres", err.kind)
    assert.are.equal("42P01", err.code)
    assert.are.equal(dir .. "/0002_b.lua", err.file)
    assert.are.equal("0002_b", err.migration)
    assert.truthy(err.statement:find("INSERT INTO no_such_table", 1, true))
    assert.truthy(tostring(err):find("0002_b.lua", 1, true))
    assert.truthy(tostring(err):find("statement: INSERT INTO no_such_table", 1, true))
    assert.is_true(exists "a")
    assert.is_false(exists "b")
    assert.are.same({ "app/0001" }, applied())
  end)

  it("keeps a statement's password out of the error and what on_statement sees", function()
    write("0001_role.lua", sql_migration("ALTER ROLE nosuchrole PASSWORD 'hunter2'"))
    local seen = {}
    local res, err = migrate.up(db, { dir = dir, builtin = false, on_statement = function(sql) seen[#seen + 1] = sql end })
    assert.is_nil(res)
    assert.are.equal("42704", err.code)
    assert.are.equal("ALTER ROLE nosuchrole PASSWORD '***'", err.statement)
    assert.truthy(tostring(err):find("statement: ALTER ROLE nosuchrole PASSWORD '***'", 1, true), tostring(err))
    assert.are.same({ "ALTER ROLE nosuchrole PASSWORD '***'" }, seen)
    -- the server quotes an unterminated literal in its message
    write("0001_role.lua", sql_migration("ALTER ROLE nosuchrole PASSWORD 'hunter2"))
    res, err = migrate.up(db, { dir = dir, builtin = false })
    assert.are.equal("42601", err.code)
    assert.truthy(err.message:find([[at or near "'***']], 1, true), err.message)
    for _, text in ipairs { tostring(err), err.message, err.statement } do
      assert.falsy(text:find("hunter2", 1, true), text)
    end
    -- and a migration that makes its own error of it
    write("0001_role.lua", [[
return { up = function(db)
  local ok, err = db.pg:exec "ALTER ROLE nosuchrole PASSWORD $pw$hunter2"
  if not ok then error("could not set the password: " .. tostring(err), 0) end
end }
]])
    res, err = migrate.up(db, { dir = dir, builtin = false })
    assert.are.equal("callback", err.kind)
    assert.truthy(err.message:find("could not set the password", 1, true), err.message)
    assert.falsy(tostring(err):find("hunter2", 1, true), tostring(err))
    assert.are.same({}, applied())
  end)

  it("rolls back a migration that ignores a failed statement", function()
    write("0001_a.lua", [[
return { up = function(db)
  db.pg:exec "CREATE TABLE a (id int)"
  db.pg:exec "CREATE TABLE a (id int)"
end }
]])
    local res, err = migrate.up(db, { dir = dir, builtin = false })
    assert.is_nil(res)
    assert.are.equal("42P07", err.code)
    assert.is_false(exists "a")
    assert.are.same({}, applied())
  end)

  it("reports a Lua error raised by a migration with its file", function()
    write("0001_a.lua", 'return { up = function(db) assert(db.pg:exec "CREATE TABLE a (id int)"); error "not today" end }')
    local res, err = migrate.up(db, { dir = dir, builtin = false })
    assert.is_nil(res)
    assert.are.equal("callback", err.kind)
    assert.truthy(err.message:find("0001_a.lua:1: not today", 1, true))
    assert.is_false(exists "a")
  end)

  it("blames a statement only for its own error", function()
    write("0001_a.lua", [[
return { up = function(db)
  assert(db.pg:exec "CREATE TABLE a (id int)")
  local ok = db.pg:transaction(function(sp) return sp:query "SELECT * FROM no_such_table" end)
  assert(ok == nil, "the savepoint failed")
  assert(db.pg:query("INSERT INTO a VALUES ($1)", 1))
  error({ "not a string" })
end }
]])
    local res, err = migrate.up(db, { dir = dir, builtin = false })
    assert.is_nil(res)
    assert.are.equal("callback", err.kind)
    assert.is_nil(err.statement, "the failed SELECT was handled; the error is the migration's own")
    assert.is_nil(err.code)
    write("0001_a.lua", "return { up = function(db) assert(db.pg:exec 'CREATE TABLE a (id int)'); error() end }")
    res, err = migrate.up(db, { dir = dir, builtin = false })
    assert.is_nil(res)
    assert.truthy(err.message:find("raised an error without a message", 1, true))
    assert.is_false(exists "a")
    assert.are.same({}, applied())
  end)

  it("leaves alone the migrations of a source the run does not read", function()
    write("0001_a.lua", sql_migration("CREATE TABLE a (id int)", "DROP TABLE a"))
    assert(migrate.up(db))
    assert(migrate.up(db, { dir = dir, builtin = false }), "built-in rows are not missing files")
    local entries, problems = assert(migrate.status(db, { dir = dir, builtin = false }))
    assert.are.same({}, problems)
    assert.are.same({ "applied", "unchecked" }, { entries[1].state, entries[2].state })
    entries, problems = assert(migrate.status(db))
    assert.are.same({}, problems)
    assert(migrate.down(db, { dir = dir, builtin = false }))
    assert.is_false(exists "a")
    local res, err = migrate.down(db, { dir = dir, builtin = false })
    assert.is_nil(res)
    assert.truthy(err.message:find("semstore/0007_bulk_decisions: its folder is not part of this run (builtin = false)", 1, true), err.message)
    assert.is_true(exists "operations")
  end)

  it("runs a transaction = false migration outside a transaction, still holding the lock", function()
    write("0001_t.lua", sql_migration("CREATE TABLE t (id int)", "DROP TABLE t"))
    write("0002_in_tx.lua", sql_migration("CREATE INDEX CONCURRENTLY t_id ON t (id)"))
    local _, err = migrate.up(db, { dir = dir, builtin = false })
    assert.are.equal("25001", err.code, "CREATE INDEX CONCURRENTLY cannot run in a transaction")
    os.remove(dir .. "/0002_in_tx.lua")
    local other = helpers.connect(nil, { postgres = url }) -- advisory locks are per database
    -- called by the migration between its statements: another session
    -- must not get the runner's lock while it commits as it goes
    _G.spec_lock_probe = function()
      return other.pg:query("SELECT pg_try_advisory_lock($1) AS got", LOCK_ID)[1].got
    end
    write("0002_concurrently.lua", [[
return {
  transaction = false,
  up = function(db)
    assert(db.pg:exec "CREATE INDEX CONCURRENTLY t_id ON t (id)")
    assert(db.pg:transaction_status() == "idle", "not in a transaction")
    assert(spec_lock_probe() == false, "the lock was free")
  end,
  down = function(db) assert(db.pg:exec "DROP INDEX CONCURRENTLY t_id") end,
}
]])
    assert(migrate.up(db, { dir = dir, builtin = false }))
    _G.spec_lock_probe = nil
    assert.are.equal(1, db.pg:query("SELECT count(*) AS n FROM pg_indexes WHERE indexname = 't_id'")[1].n)
    assert(migrate.down(db, { dir = dir, builtin = false }))
    assert.are.equal(0, db.pg:query("SELECT count(*) AS n FROM pg_indexes WHERE indexname = 't_id'")[1].n)
    assert.are.same({ "app/0001" }, applied())
    other:close()
  end)

  it("survives its connection being killed mid-migration, recording nothing", function()
    write("0001_a.lua", [[
return { up = function(db)
  assert(db.pg:exec "CREATE TABLE a (id int)")
  assert(db.pg:query "SELECT pg_terminate_backend(pg_backend_pid())")
end }
]])
    local res, err = migrate.up(db, { dir = dir, builtin = false })
    assert.is_nil(res)
    assert.are.equal("connection", err.kind)
    assert.are.equal("0001_a", err.migration)
    helpers.assert_all_returned(db)
    assert.is_false(exists "a")
    assert.are.same({}, applied())
    write("0001_a.lua", sql_migration("CREATE TABLE a (id int)"))
    assert(migrate.up(db, { dir = dir, builtin = false }), "the server let the lock go with the session")
    assert.are.same({ "app/0001" }, applied())
  end)

  it("keeps a migration to its own connection", function()
    write("0001_a.lua", "return { up = function(db) return db.pg:acquire() end }")
    local res, err = migrate.up(db, { dir = dir, builtin = false })
    assert.is_nil(res)
    assert.truthy(err.message:find("db.pg:acquire is not available in a migration", 1, true))
  end)

  it("changes nothing in a dry run and shows the statements", function()
    write("0001_a.lua", sql_migration("CREATE TABLE a (id int)", "DROP TABLE a"))
    write("0002_b.lua", sql_migration("CREATE TABLE b (id int)", "DROP TABLE b"))
    write("0003_c.lua", sql_migration("CREATE INDEX CONCURRENTLY b_id ON b (id)", nil, "transaction = false,\n"))
    local seen = {}
    local report = assert(migrate.up(db, { dir = dir, dry_run = true,
      on_statement = function(sql) seen[#seen + 1] = sql end }))
    assert.is_true(report.dry_run)
    assert.are.equal(9, #report.applied)
    assert.are.equal("0003_c", report.stopped_before)
    assert.truthy(seen[#seen]:find("CREATE TABLE b", 1, true))
    assert.is_false(exists "a")
    assert.is_false(exists "users")
    assert.is_false(exists "schema_migrations")
    assert(migrate.up(db, { dir = dir, target = "0001" }))
    report = assert(migrate.down(db, { dir = dir, dry_run = true }))
    assert.are.same({ "0001_a" }, ids(report.reverted))
    assert.is_true(exists "a")
    assert.are.equal(8, #applied())
  end)

  it("checks every file before applying anything", function()
    write("0001_a.lua", sql_migration("CREATE TABLE a (id int)"))
    write("0002_typo.lua", sql_migration("CREATE TABLE b (id int)", nil, "transactions = false,\n"))
    local res, err = migrate.up(db, { dir = dir, builtin = false })
    assert.is_nil(res)
    assert.are.equal("input", err.kind)
    assert.truthy(err.message:find("unknown field transactions", 1, true))
    assert.is_false(exists "a")
    os.remove(dir .. "/0002_typo.lua")
    write("add_things.lua", "return {}")
    res, err = migrate.up(db, { dir = dir, builtin = false })
    assert.is_nil(res)
    assert.truthy(err.message:find("add_things.lua: a migration's file is named NNNN_name.lua", 1, true))
    os.remove(dir .. "/add_things.lua")
    write("1_same.lua", sql_migration("SELECT 1"))
    res, err = migrate.up(db, { dir = dir, builtin = false })
    assert.is_nil(res)
    assert.truthy(err.message:find("same version", 1, true))
    os.remove(dir .. "/1_same.lua")
    write("0002_nothing.lua", "return 42")
    res, err = migrate.up(db, { dir = dir, builtin = false })
    assert.truthy(err.message:find("must return a table with an up function", 1, true))
    assert.is_false(exists "a")
    _, err = migrate.up(db, { dir = dir .. "/nope" })
    assert.truthy(err.message:find("no migrations folder", 1, true))
  end)

  it("refuses to revert a migration without a down step", function()
    write("0001_a.lua", sql_migration("CREATE TABLE a (id int)"))
    assert(migrate.up(db, { dir = dir, builtin = false }))
    local res, err = migrate.down(db, { dir = dir, builtin = false })
    assert.is_nil(res)
    assert.truthy(err.message:find("0001_a: it has no down function", 1, true))
    assert.is_true(exists "a")
    _, err = migrate.down(db, { steps = 0 })
    assert.are.equal("input", err.kind)
    _, err = migrate.up(nil)
    assert.are.equal("input", err.kind)
  end)

  it("gives the connection back as it found it", function()
    write("0001_a.lua", sql_migration("SET search_path = pg_catalog"))
    assert(migrate.up(db, { dir = dir, builtin = false }))
    local conn = assert(db.pg:acquire())
    assert.are.equal("5s", conn:query("SHOW statement_timeout")[1].statement_timeout)
    assert.are.equal('"$user", public', conn:query("SHOW search_path")[1].search_path)
    assert.are.equal(0, conn:query("SELECT count(*) AS n FROM pg_locks WHERE locktype = 'advisory'")[1].n)
    conn:release()
  end)

  it("keeps schema_migrations in the first schema on the search path, whatever its name", function()
    local schema = 'App "Data" ü'
    local quoted = require("semstore").quote_ident(schema)
    assert(db.pg:exec("CREATE SCHEMA " .. quoted))
    assert(db.pg:exec("ALTER DATABASE " .. require("semstore").quote_ident(scratch.name) .. " SET search_path = " .. quoted .. ", public"))
    local other = helpers.connect(nil, { postgres = url }) -- new sessions get the search path
    write("0001_a.lua", sql_migration("CREATE TABLE a (id int)", "DROP TABLE a"))
    assert(migrate.up(other, { dir = dir, builtin = false }))
    local rows = assert(db.pg:query([[SELECT n.nspname AS schema FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE c.relname = 'schema_migrations']]))
    assert.are.same({ schema }, { rows[1].schema })
    local entries = assert(migrate.status(other, { dir = dir, builtin = false }))
    assert.are.equal("applied", entries[1].state)
    assert(migrate.down(other, { dir = dir, builtin = false }))
    other:close()
  end)

  it("writes numbered stubs that run", function()
    local path = assert(migrate.new(dir .. "/new", "Add widgets!"))
    assert.are.equal(dir .. "/new/0001_add_widgets.lua", path)
    assert.are.equal(dir .. "/new/0002_more.lua", assert(migrate.new(dir .. "/new", "more")))
    local _, err = migrate.new(dir .. "/new", "")
    assert.are.equal("input", err.kind)
    assert(migrate.up(db, { dir = dir .. "/new", builtin = false }))
    assert(migrate.down(db, { dir = dir .. "/new", builtin = false, steps = 2 }))
    write("20260101120000_first.lua", sql_migration("SELECT 1"))
    local stamped = assert(migrate.new(dir, "second"))
    assert.truthy(stamped:match "/%d%d%d%d%d%d%d%d%d%d%d%d%d%d_second%.lua$", stamped)
  end)
end)
