-- The `semstore` command, run as a process the way users run it.
require "semstore.compat" () -- Lua 5.4's library under LuaJIT too
local helpers = require "support.helpers"

local cli = helpers.cli
local semstore_partition_key = require("semstore").partition_key

describe("the semstore command", function()
  local scratch, name, url, dir, db

  before_each(function()
    scratch = helpers.scratch()
    name, url, dir, db = scratch.name, scratch.url, scratch.dir, scratch.db
  end)

  after_each(function() helpers.remove_scratch(scratch) end)

  local function env(extra)
    local e = { DATABASE_URL = url }
    for k, v in pairs(extra or {}) do e[k] = v end
    return e
  end

  local function count(sql, ...) return db.pg:query(sql, ...)[1].n end

  it("prints help for every subcommand and exits 2 on bad usage", function()
    for _, args in ipairs { { "--help" }, { "migrate", "--help" }, { "migrate", "up", "--help" }, { "health", "--help" },
      { "wait", "--help" }, { "check", "--help" }, { "partitions", "--help" }, { "run", "--help" }, { "seed", "--help" }, { "dev-qdrant", "--help" } } do
      local code, out = cli(args)
      assert.are.equal(0, code, table.concat(args, " "))
      assert.truthy(out:find("usage: semstore", 1, true), table.concat(args, " "))
    end
    for _, args in ipairs { {}, { "frobnicate" }, { "migrate" }, { "migrate", "sideways" }, { "migrate", "up", "--bogus" },
      { "migrate", "down", "0" }, { "migrate", "down", "1.5" }, { "migrate", "new" }, { "migrate", "up", "--dir" },
      { "migrate", "status", "extra" }, { "health", "now" }, { "health", "--bogus" },
      { "wait", "--timeout", "-1" }, { "wait", "--timeout", "soon" }, { "wait", "--timeout" }, { "wait", "now" },
      { "check", "everything" }, { "partitions", "--top", "5" }, { "run" }, { "seed" }, { "dev-qdrant", "extra" },
      { "dev-qdrant", "--port", "http" }, { "dev-qdrant", "--port", "70000" } } do
      local code, out, err = cli(args, { env = env() })
      assert.are.equal(2, code, table.concat(args, " "))
      assert.are.equal("", out)
      assert.truthy(err:find("usage: semstore", 1, true), err)
    end
  end)

  it("migrates up, reports status and goes down, with exit codes", function()
    local mdir = dir .. "/migrations"
    local code, out = cli({ "migrate", "new", "create widgets", "--dir", mdir })
    assert.are.equal(0, code)
    assert.truthy(out:find("0001_create_widgets.lua", 1, true))
    helpers.write_file(mdir .. "/0002_widgets.lua",
      'return { up = function(db) assert(db.pg:exec "CREATE TABLE widgets (id int)") end,\n' ..
      '  down = function(db) assert(db.pg:exec "DROP TABLE widgets") end }\n')
    code, out = cli({ "migrate", "status" }, { env = env(), cwd = dir })
    assert.are.equal(0, code)
    assert.truthy(out:find("pending%s+0002_widgets"), out)
    code, out = cli({ "migrate", "up" }, { env = env(), cwd = dir })
    assert.are.equal(0, code, out)
    assert.truthy(out:find("applied semstore/0001_extensions_and_types", 1, true))
    assert.truthy(out:find("applied 0002_widgets", 1, true), "./migrations is the default folder")
    assert.are.equal(9, count "SELECT count(*) AS n FROM schema_migrations")
    code, out = cli({ "migrate", "status" }, { env = env(), cwd = dir })
    assert.are.equal(0, code)
    assert.truthy(out:find("applied%s+0002_widgets%s+%d%d%d%d%-%d%d%-%d%d"), out)
    code, out = cli({ "migrate", "down" }, { env = env(), cwd = dir })
    assert.are.equal(0, code)
    assert.truthy(out:find("reverted 0002_widgets", 1, true))
    assert.are.equal(0, count "SELECT count(*) AS n FROM pg_tables WHERE tablename = 'widgets'")
    helpers.write_file(mdir .. "/0001_create_widgets.lua", "return { up = function() end }\n")
    local err
    code, out, err = cli({ "migrate", "status", "--dir=" .. mdir }, { env = env() })
    assert.are.equal(1, code, "status fails when an applied migration changed")
    assert.truthy(err:find("problem: 0001_create_widgets", 1, true), err)
    code, out, err = cli({ "migrate", "up", "--dir", mdir }, { env = env() })
    assert.are.equal(1, code)
    assert.truthy(err:find("changed after it was applied", 1, true))
  end)

  it("changes nothing with --dry-run and prints the statements", function()
    local code, out = cli({ "migrate", "up", "--dry-run" }, { env = env(), cwd = dir })
    assert.are.equal(0, code, out)
    assert.truthy(out:find("CREATE TABLE chunks_p99 PARTITION OF chunks", 1, true))
    assert.truthy(out:find("dry run: rolled back", 1, true))
    assert.are.equal(0, count "SELECT count(*) AS n FROM pg_class WHERE relname IN ('users', 'chunks', 'schema_migrations')")
  end)

  it("keeps passwords out of what --dry-run prints and of the error", function()
    local mdir = dir .. "/migrations"
    os.execute("mkdir " .. mdir)
    helpers.write_file(mdir .. "/0001_roles.lua", [[
return { up = function(db)
  assert(db.pg:exec "DO $$ BEGIN IF false THEN ALTER ROLE nosuchrole PASSWORD 'hunter1'; END IF; END $$")
  assert(db.pg:exec "ALTER ROLE nosuchrole ENCRYPTED PASSWORD 'hunter2'")
end }
]])
    local code, out, err = cli({ "migrate", "up", "--dry-run", "--dir", mdir }, { env = env() })
    assert.are.equal(1, code, out .. err)
    assert.truthy(out:find("IF false THEN ALTER ROLE nosuchrole PASSWORD '***'; END IF;", 1, true), out)
    assert.truthy(out:find("ALTER ROLE nosuchrole ENCRYPTED PASSWORD '***'", 1, true), out)
    assert.truthy(err:find("role \"nosuchrole\" does not exist", 1, true), err)
    assert.falsy((out .. err):find("hunter", 1, true), out .. err)
  end)

  it("serializes two runners started together: each migration runs once", function()
    local mdir = dir .. "/migrations"
    os.execute("mkdir " .. mdir)
    helpers.write_file(mdir .. "/0001_runs.lua",
      'return { up = function(db) assert(db.pg:exec "CREATE TABLE runs (step text, pid int DEFAULT pg_backend_pid())") end }\n')
    helpers.write_file(mdir .. "/0002_slow.lua", [[
return {
  transaction = false,
  up = function(db)
    assert(db.pg:exec "INSERT INTO runs (step) VALUES ('0002 started')")
    -- holds on until the other runner waits for the lock (10 s at most)
    assert(db.pg:exec [=[
      DO $$ BEGIN
        FOR i IN 1..200 LOOP
          EXIT WHEN EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND NOT granted);
          PERFORM pg_sleep(0.05);
        END LOOP;
      END $$]=])
    assert(db.pg:exec "INSERT INTO runs (step) VALUES ('0002 done')")
  end,
}
]])
    local cmd = {}
    for i = 1, 2 do
      cmd[i] = string.format("cd %s && env DATABASE_URL=%s LUA_PATH=%s LUA_CPATH=%s %s %s/bin/semstore migrate up --dir %s > %s/out%d 2>&1; echo $? > %s/rc%d",
        helpers.shell_quote(dir), helpers.shell_quote(url),
        helpers.shell_quote(helpers.root .. "/lua/?.lua;" .. helpers.root .. "/lua/?/init.lua;;"),
        helpers.shell_quote(helpers.cpath), helpers.lua_bin, helpers.root, mdir, dir, i, dir, i)
    end
    assert(os.execute(string.format("(%s) & (%s) & wait", cmd[1], cmd[2])))
    local outs = {}
    for i = 1, 2 do
      assert.are.equal("0", helpers.read_file(dir .. "/rc" .. i):match "%d+", helpers.read_file(dir .. "/out" .. i))
      outs[i] = helpers.read_file(dir .. "/out" .. i)
    end
    assert.are.equal(2, count "SELECT count(*) AS n FROM runs", "the slow migration ran once")
    assert.are.equal(1, count "SELECT count(DISTINCT pid) AS n FROM runs")
    assert.are.equal(9, count "SELECT count(*) AS n FROM schema_migrations")
    local waited = outs[1]:find("nothing to apply", 1, true) and outs[1] or outs[2]
    assert.truthy(waited:find("nothing to apply", 1, true), outs[1] .. outs[2])
    assert.truthy(waited:find("waiting for another migration run to finish %(server process %d+, semstore%)"), outs[1] .. "\n---\n" .. outs[2])
  end)

  it("fixes the partition count from CHUNK_PARTITION_COUNT when the schema is first made", function()
    local code, out = cli({ "migrate", "up" }, { env = env { CHUNK_PARTITION_COUNT = "8" }, cwd = dir })
    assert.are.equal(0, code, out)
    assert.are.equal(8, count "SELECT count(*) AS n FROM pg_inherits WHERE inhparent = 'chunks'::regclass")
    assert.are.equal(8, count "SELECT chunk_partition_count() AS n")
    assert.are.equal(428265705 % 8, count "SELECT chunk_partition_key('550e8400-e29b-41d4-a716-446655440000') AS n")
    local err
    code, out, err = cli({ "migrate", "down", "5" }, { env = env(), cwd = dir })
    assert.are.equal(0, code, err)
    code, out, err = cli({ "migrate", "up" }, { env = env { CHUNK_PARTITION_COUNT = "0" }, cwd = dir })
    assert.are.equal(1, code)
    assert.truthy(err:find("CHUNK_PARTITION_COUNT must be an integer from 1 to 1000, not 0", 1, true), err)
    assert.are.equal(2, count "SELECT count(*) AS n FROM schema_migrations", "0003 failed, so 0004 did not run")
    assert.are.equal(0, count "SELECT count(*) AS n FROM pg_class WHERE relname IN ('documents', 'operations')")
  end)

  it("reads .env from the working directory without overriding the environment", function()
    helpers.write_file(dir .. "/.env", "# settings\nexport DATABASE_URL=\"" .. url .. "\"\nDB_POOL_SIZE='3' # three\n")
    local code, out = cli({ "health" }, { env = { DATABASE_URL = false }, cwd = dir })
    assert.are.equal(0, code, out)
    assert.truthy(out:find("database " .. name, 1, true), out)
    code, out = cli({ "health" }, { env = { DATABASE_URL = helpers.url }, cwd = dir })
    assert.are.equal(0, code)
    assert.truthy(out:find("database semstore_test", 1, true), "a variable already set wins")
    helpers.write_file(dir .. "/.env", "DATABASE_URL=" .. url .. "\nthis is not a setting\n")
    local err
    code, out, err = cli({ "health" }, { env = { DATABASE_URL = false }, cwd = dir })
    assert.are.equal(1, code)
    assert.truthy(err:find(".env:2: expected KEY=VALUE", 1, true), err)
  end)

  it("checks Redis from health, without its password", function()
    local code, out = cli({ "health" }, { env = { REDIS_URL = os.getenv "REDIS_URL" } })
    assert.are.equal(0, code, out)
    assert.truthy(out:find("redis%s+healthy%s+[%d.]+%s+redis://%S+%s+PONG"), out)
    code, out = cli({ "health" }, { env = { REDIS_URL = "redis://app:redis-hunter2@127.0.0.1:1/0" } })
    assert.are.equal(1, code)
    assert.truthy(out:find("redis%s+unhealthy%s+[%d.]+%s+redis://app:%*%*%*@127%.0%.0%.1:1/0%s+connection error"), out)
    assert.falsy(out:find("redis-hunter2", 1, true))
  end)

  it("checks Qdrant from health when it is configured, without its API key", function()
    local code, out = cli({ "health" }, { env = { QDRANT_URL = os.getenv "QDRANT_URL" } })
    assert.are.equal(0, code, out)
    assert.truthy(out:find("qdrant%s+healthy%s+[%d.]+%s+http://%S+%s+%d+ collections"), out)
    code, out = cli({ "health" }, { env = { QDRANT_URL = "http://127.0.0.1:1", QDRANT_API_KEY = "key-hunter2" } })
    assert.are.equal(1, code)
    assert.truthy(out:find("postgres%s+healthy"), out)
    assert.truthy(out:find("qdrant%s+unhealthy"), out)
    assert.falsy(out:find("key-hunter2", 1, true))
    code, out = cli({ "health" }, { env = { QDRANT_URL = false, QDRANT_HOST = false } })
    assert.are.equal(0, code, out)
    assert.falsy(out:find("qdrant"), out)
  end)

  it("reports an unreachable server from health without its password", function()
    local code, out = cli({ "health" }, { env = { DATABASE_URL = "postgresql://app:hunter2secret@127.0.0.1:1/app" } })
    assert.are.equal(1, code)
    assert.truthy(out:find("postgres%s+unhealthy"), out)
    assert.falsy(out:find("hunter2secret", 1, true))
    assert.truthy(out:find("app:***@127.0.0.1:1", 1, true), out)
    -- a server that answers and refuses the password: its error is printed
    -- on the same row, one line, and the password is not
    local wrong = url:gsub("://([^:@/]+):[^@]*@", "://%1:pw-hunter2secret@")
    code, out = cli({ "health" }, { env = { DATABASE_URL = wrong } })
    assert.are.equal(1, code)
    assert.truthy(out:find("postgres%s+unhealthy%s+[%d.]+%s+%S+%s+connection error[^\n]*password authentication failed"), out)
    assert.falsy(out:find("hunter2secret", 1, true), out)
  end)

  it("prints health as an aligned table, one row per store", function()
    local code, out = cli({ "health" }, { env = { DATABASE_URL = url, REDIS_URL = "redis://127.0.0.1:1/0" } })
    assert.are.equal(1, code, "redis is unhealthy")
    local lines = {}
    for line in out:gmatch "[^\n]+" do lines[#lines + 1] = line end
    assert.are.equal(4, #lines, out)
    assert.truthy(lines[1]:match "^store%s+status%s+ms%s+target%s+detail$", out)
    -- every column starts where the header's does
    local starts = { lines[1]:find "status", select(2, lines[1]:find "ms") , lines[1]:find "target", lines[1]:find "detail" }
    for i = 2, 4 do
      assert.are.equal(" ", lines[i]:sub(starts[1] - 1, starts[1] - 1), out)
      assert.truthy(lines[i]:sub(starts[1]):match "^%a*healthy ", out)
      assert.truthy(lines[i]:sub(1, starts[2]):match "%d%.%d$", out)
      assert.truthy(lines[i]:sub(starts[3]):match "^%a+://", out)
      assert.truthy(lines[i]:sub(starts[4] - 2, starts[4] - 1) == "  ", out)
    end
    assert.truthy(lines[2]:match "^postgres%s+healthy .*PostgreSQL %d+.*database " .. name, out)
    assert.truthy(lines[3]:match "^redis%s+unhealthy .*connection error", out)
    assert.truthy(lines[4]:match "^qdrant%s+healthy ", out)
  end)

  describe("wait", function()
    local monotime = require("semstore.core").monotime

    it("returns at once when every store answers", function()
      local code, out, err = cli({ "wait", "--timeout", "10" }, { env = env() })
      assert.are.equal(0, code, err)
      for _, store in ipairs { "postgres", "redis", "qdrant" } do
        assert.truthy(out:find(store .. " answers after [%d.]+ s: "), out)
      end
      assert.falsy(out:find("waiting for", 1, true), out)
    end)

    it("gives up after --timeout, naming the store that never answered, without its password", function()
      local started = monotime()
      local code, out, err = cli({ "wait", "--timeout", "1" },
        { env = env { REDIS_URL = "redis://app:wait-hunter2@127.0.0.1:1/0" } })
      local took = monotime() - started
      assert.are.equal(1, code, out .. err)
      assert.truthy(took >= 1 and took < 4, "took " .. took .. " s")
      assert.truthy(out:find("postgres answers after", 1, true), out)
      assert.truthy(out:find("waiting for redis (0 s of 1)", 1, true), out)
      assert.truthy(err:find("semstore: gave up after 1%.%d s; no answer from redis\n"), err)
      assert.truthy(err:find("  redis: connection error: could not connect to Redis at 127.0.0.1:1", 1, true), err)
      assert.falsy((out .. err):find("wait-hunter2", 1, true), out .. err)
    end)

    it("waits for a store that comes up late", function()
      local port, pidf = helpers.free_port(), dir .. "/redis.pid"
      -- the server starts 1.5 s after the wait does; the subshell's pid
      -- becomes redis-server's (exec)
      assert(os.execute(string.format(
        "(sleep 1.5; exec redis-server --port %d --bind 127.0.0.1 --save '' --appendonly no --dir %s) >%s/redis.log 2>&1 & echo $! > %s",
        port, helpers.shell_quote(dir), helpers.shell_quote(dir), helpers.shell_quote(pidf))))
      finally(function() os.execute("kill " .. helpers.read_file(pidf):match "%d+" .. " 2>/dev/null") end)
      local code, out, err = cli({ "wait", "--timeout", "30" }, { env = env { REDIS_URL = "redis://127.0.0.1:" .. port .. "/0" } })
      assert.are.equal(0, code, out .. err)
      assert.truthy(out:find("waiting for redis (0 s of 30)", 1, true), out)
      local after = tonumber(out:match "redis answers after ([%d.]+) s: PONG")
      assert.truthy(after and after >= 1.4 and after < 10, out)
      assert.truthy(out:find("postgres answers after 0", 1, true), "each store is reported when it first answers")
    end)
  end)

  describe("check", function()
    local CHECKS = { "documents without a collection", "chunks under the wrong partition key",
      "chunks of a missing document", "duplicate content hashes", "chunks without embeddings" }
    local NO_QDRANT = { QDRANT_URL = false, QDRANT_HOST = false }

    local function literal(s) return (s:gsub("%p", "%%%0")) end

    -- the schema, a user and a collection with one document
    local function collection()
      assert.are.equal(0, (cli({ "migrate", "up" }, { env = env(), cwd = dir })))
      local user = assert(db.users:create { username = helpers.unique "checker", email = helpers.unique "checker" .. "@example.org",
        password = "pw" })
      local col = assert(db.collections:create { name = helpers.unique "checked", owner_id = user.id, embedding_model = "local" })
      local doc = assert(db.documents:create { collection_id = col.id, file_path = "/a.txt", file_name = "a.txt",
        file_size = 1, content_hash = "hash-a" })
      return col, doc
    end

    it("finds nothing in a clean database, and embedding gaps and Qdrant mismatches when they are there", function()
      local col, doc = collection()
      local code, out, err = cli({ "check" }, { env = env() })
      assert.are.equal(0, code, out .. err)
      for _, check in ipairs(CHECKS) do assert.truthy(out:find("\n?" .. check .. "%s+0\n"), out) end
      assert.truthy(out:find("embedded chunks against Qdrant points%s+0\n"), out)
      assert.truthy(out:find("no findings\n$"), out)

      -- three chunks with a vector, one without
      for i = 1, 4 do
        assert(db.chunks:create_chunk { collection_id = col.id, document_id = doc.id, chunk_index = i, content = "c" .. i,
          embedding_vector_id = i < 4 and tostring(i) or nil })
      end
      local vsn = col.vector_store_name
      code, out = cli({ "check" }, { env = env() })
      assert.are.equal(1, code, out)
      assert.truthy(out:find("chunks without embeddings%s+1\n    " .. literal(col.name) .. ": 1\n"), out)
      assert.truthy(out:find("embedded chunks against Qdrant points%s+1\n    " .. literal(col.name) ..
        ": 3 embedded chunks, Qdrant collection " .. literal(vsn) .. " is missing\n"), out)
      assert.truthy(out:find("\n2 findings\n$"), out)

      code, out = cli({ "check" }, { env = env(NO_QDRANT) })
      assert.are.equal(1, code, "the chunk without a vector is still a finding")
      assert.truthy(out:find("embedded chunks against Qdrant points%s+skipped: Qdrant is not configured\n"), out)
      assert.truthy(out:find("\n1 findings\n$"), out)

      -- fewer points in Qdrant than embedded chunks
      local q = db.qdrant
      assert(q:create_collection(vsn, { vectors = { dense = { size = 4, distance = "Cosine" } } }))
      finally(function() q:delete_collection(vsn) end)
      assert(q:upsert(vsn, { { id = 1, vector = { dense = { 1, 0, 0, 0 } } }, { id = 2, vector = { dense = { 0, 1, 0, 0 } } } }))
      code, out = cli({ "check" }, { env = env() })
      assert.are.equal(1, code, out)
      assert.truthy(out:find("embedded chunks against Qdrant points%s+1\n    " .. literal(col.name) ..
        ": 3 embedded chunks, 2 points in Qdrant's " .. literal(vsn) .. "\n"), out)

      -- all embedded, as many points as chunks: clean again
      assert(q:upsert(vsn, { { id = 3, vector = { dense = { 0, 0, 1, 0 } } }, { id = 4, vector = { dense = { 0, 0, 0, 1 } } } }))
      assert(db.pg:query("UPDATE chunks SET embedding_vector_id = '4' WHERE collection_id = $1 AND embedding_vector_id IS NULL", col.id))
      code, out = cli({ "check" }, { env = env() })
      assert.are.equal(0, code, out)
      assert.truthy(out:find("no findings\n$"), out)
    end)

    it("finds what the constraints prevent, in a database loaded without them", function()
      local col, doc = collection()
      -- this test's own database: as a restore that skipped the constraints
      -- would leave it
      assert(db.pg:exec [[
        ALTER TABLE documents DROP CONSTRAINT documents_collection_id_fkey;
        ALTER TABLE chunks DROP CONSTRAINT chunks_document_id_fkey;
        ALTER TABLE chunks DROP CONSTRAINT chunks_partition_key_matches;
        DROP INDEX ix_documents_collection_content_hash;
      ]])
      local insert_doc = [[
        INSERT INTO documents (collection_id, file_path, file_name, file_size, content_hash)
        VALUES ($1, 'b.txt', 'b.txt', 1, $2) RETURNING id]]
      local orphan = assert(db.pg:query(insert_doc, "00000000-0000-4000-8000-000000000001", "hash-b"))[1].id
      local twin = assert(db.pg:query(insert_doc, col.id, "hash-a"))[1].id
      local insert_chunk = [[
        INSERT INTO chunks (collection_id, partition_key, document_id, chunk_index, content, embedding_vector_id)
        VALUES ($1, $2, $3, $4, 'text', 'v') RETURNING id]]
      local key = semstore_partition_key(col.id)
      local misplaced = assert(db.pg:query(insert_chunk, col.id, (key + 1) % 100, doc.id, 1))[1].id
      local lost = assert(db.pg:query(insert_chunk, col.id, key, "00000000-0000-4000-8000-000000000002", 2))[1].id
      local code, out = cli({ "check" }, { env = env(NO_QDRANT) })
      assert.are.equal(1, code, out)
      assert.truthy(out:find("documents without a collection%s+1\n    " .. literal(orphan) .. "\n"), out)
      assert.truthy(out:find(string.format("chunks under the wrong partition key%%s+1\n    chunk %d: partition_key %d, collection %s expects %d\n",
        misplaced, (key + 1) % 100, literal(col.id), key)), out)
      assert.truthy(out:find(string.format("chunks of a missing document%%s+1\n    chunk %d: document 00000000%%-0000%%-4000%%-8000%%-000000000002\n", lost)), out)
      local a, b = doc.id, twin
      if b < a then a, b = b, a end
      assert.truthy(out:find("duplicate content hashes%s+1\n    collection " .. literal(col.id) .. ", hash hash%-a: 2 documents %(" ..
        literal(a) .. ", " .. literal(b) .. "%)\n"), out)
      assert.truthy(out:find("chunks without embeddings%s+0\n"), out)
      assert.truthy(out:find("\n4 findings\n$"), out)
    end)

    it("fails with the server's error when the schema is not there", function()
      local code, out, err = cli({ "check" }, { env = env() })
      assert.are.equal(1, code, out)
      assert.truthy(err:find('relation "documents" does not exist', 1, true), err)
    end)
  end)

  it("lists every chunk partition in order with its rows and size, and the skew", function()
    local code, out, err = cli({ "partitions" }, { env = env() })
    assert.are.equal(1, code, "no schema yet")
    assert.truthy(err:find('relation "chunks" does not exist', 1, true), err)
    assert.are.equal(0, (cli({ "migrate", "up" }, { env = env(), cwd = dir })))
    local user = assert(db.users:create { username = helpers.unique "p", email = helpers.unique "p" .. "@example.org", password = "pw" })
    local col = assert(db.collections:create { name = helpers.unique "parts", owner_id = user.id, embedding_model = "local" })
    for i = 1, 5 do assert(db.chunks:create_chunk { collection_id = col.id, chunk_index = i, content = "c" .. i }) end
    code, out, err = cli({ "partitions" }, { env = env() })
    assert.are.equal(0, code, err)
    assert.truthy(out:match "^partition%s+rows%s+size\n", out)
    local names = {}
    for leaf in out:gmatch "\n(chunks_p%d+) " do names[#names + 1] = leaf end
    assert.are.equal(100, #names)
    for i, leaf in ipairs(names) do assert.are.equal("chunks_p" .. (i - 1), leaf, "by partition number") end
    local key = semstore_partition_key(col.id)
    assert.truthy(out:find("\nchunks_p" .. key .. "%s+5%s+%d+ [kM]B\n"), out)
    assert.truthy(out:find("\nchunks_p" .. (key + 1) % 100 .. "%s+0%s+%d+ [kM]B\n"), "empty ones show, with their size")
    assert.truthy(out:find("\npartitions%s+100 %(99 empty%)\n"), out)
    assert.truthy(out:find("\nrows%s+5 in all; per partition mean 0%.1, min 0, max 5\n"), out)
    -- one full partition of 100: max / mean = 100, sd / mean = sqrt(99)
    assert.truthy(out:find("\nskew%s+100%.00 %(max / mean%)\n"), out)
    assert.truthy(out:find("\nvariation%s+9%.95 %(standard deviation / mean%)\n"), out)
  end)

  it("runs the examples: their migrations, up and down, and the seeding script", function()
    local mdir = helpers.root .. "/examples/migrations"
    local code, out, err = cli({ "migrate", "up", "--dir", mdir }, { env = env() })
    assert.are.equal(0, code, err)
    code, out, err = cli({ "seed", helpers.root .. "/examples/seed.lua", "50" }, { env = env() })
    assert.are.equal(0, code, err)
    local leaf = out:match "seeded 50 chunks, all in (chunks_p%d+)"
    assert.truthy(leaf, out)
    assert.are.equal(1, count "SELECT count(*) AS n FROM collection_tags")
    assert.are.equal(1, count "SELECT count(*) AS n FROM pg_indexes WHERE indexname = 'ix_collection_tags_tag'")
    code, out, err = cli({ "seed", helpers.root .. "/examples/seed.lua", "none" }, { env = env() })
    assert.are.equal(1, code)
    assert.truthy(err:find("usage: semstore seed examples/seed.lua [N]", 1, true), err)
    code, out, err = cli({ "migrate", "down", "2", "--dir", mdir }, { env = env() })
    assert.are.equal(0, code, err)
    assert.are.equal(0, count "SELECT count(*) AS n FROM pg_class WHERE relname = 'collection_tags'")
  end)

  it("runs scripts and seeds with a connected db and their arguments", function()
    helpers.write_file(dir .. "/sum.lua", [[
local a, b = ...
local row = assert(db.pg:query("SELECT $1::int + $2::int AS n", tonumber(a), tonumber(arg[2])))[1]
print(row.n, arg[0], #arg)
]])
    local code, out, err = cli({ "run", "sum.lua", "40", "2" }, { env = env(), cwd = dir })
    assert.are.equal(0, code, err)
    assert.are.equal("42\tsum.lua\t2\n", out)
    helpers.write_file(dir .. "/seed.lua", [[
assert(db.pg:exec "CREATE TABLE IF NOT EXISTS fruit (name text)")
for _, name in ipairs(arg) do assert(db.pg:query("INSERT INTO fruit VALUES ($1)", name)) end
]])
    code, out, err = cli({ "seed", "seed.lua", "apple", "pear" }, { env = env(), cwd = dir })
    assert.are.equal(0, code, err)
    assert.are.equal(2, count "SELECT count(*) AS n FROM fruit")
    helpers.write_file(dir .. "/boom.lua", 'error "boom"')
    code, out, err = cli({ "run", "boom.lua" }, { env = env(), cwd = dir })
    assert.are.equal(1, code)
    assert.truthy(err:find("boom.lua:1: boom", 1, true), err)
    helpers.write_file(dir .. "/soft.lua", 'return nil, "no input file"')
    code, out, err = cli({ "seed", "soft.lua" }, { env = env(), cwd = dir })
    assert.are.equal(1, code)
    assert.truthy(err:find("no input file", 1, true), err)
    code, out, err = cli({ "run", "missing.lua" }, { env = env(), cwd = dir })
    assert.are.equal(1, code)
    assert.truthy(err:find("missing.lua", 1, true), err)
  end)

  describe("dev-qdrant", function()
    local function wait_for_line(path)
      for _ = 1, 100 do
        local f = io.open(path)
        local text = f and f:read "a"
        if f then f:close() end
        local url = text and text:match "Qdrant stand%-in listening on (http://127%.0%.0%.1:%d+)"
        if url then return url end
        helpers.sleep(0.1)
      end
    end

    it("runs the stand-in in the foreground and prints the URL it listens on", function()
      local out, pidf, data = dir .. "/dev-qdrant.out", dir .. "/dev-qdrant.pid", dir .. "/snapshots"
      -- the shell's pid becomes semstore's (exec); node is its child
      local inner = string.format("echo $$ > %s; exec env LUA_PATH=%s LUA_CPATH=%s %s bin/semstore dev-qdrant --port 0 --data %s > %s 2>&1",
        pidf, helpers.shell_quote(helpers.root .. "/lua/?.lua;" .. helpers.root .. "/lua/?/init.lua;;"),
        helpers.shell_quote(helpers.cpath), helpers.lua_bin, data, out)
      assert(os.execute(string.format("cd %s && sh -c %s &", helpers.shell_quote(helpers.root), helpers.shell_quote(inner))))
      local node_pid
      -- the stand-in is stopped whatever happens: it is semstore's child
      finally(function()
        local f = io.open(pidf)
        local lua_pid = f and f:read "a":match "%d+"
        if f then f:close() end
        node_pid = node_pid or (lua_pid and assert(io.popen("pgrep -P " .. lua_pid)):read "l")
        if node_pid then os.execute("kill " .. node_pid .. " 2>/dev/null") end
      end)
      local url = wait_for_line(out)
      local lua_pid = helpers.read_file(pidf):match "%d+"
      node_pid = assert(io.popen("pgrep -P " .. lua_pid)):read "l"
      assert.truthy(url, "no URL line from dev-qdrant")
      local body = assert(io.popen("curl -s " .. url .. "/collections")):read "a"
      assert.are.equal('{"result":{"collections":[]}', body:match '^{"result":{"collections":%[%]}')
      assert.truthy(body:find('"status":"ok"', 1, true), body)
      assert(os.execute("kill " .. node_pid))
      for _ = 1, 50 do
        if not io.open("/proc/" .. lua_pid .. "/stat") then break end
        helpers.sleep(0.1)
      end
      assert.falsy(io.open("/proc/" .. lua_pid .. "/stat"), "semstore ends when the stand-in does")
      node_pid = nil
    end)

    it("names what is missing when node is not on the PATH", function()
      -- a PATH with the interpreter alone
      local bindir = dir .. "/bin"
      assert(os.execute(string.format("mkdir -p %s && ln -s \"$(command -v %s)\" %s/%s", bindir, helpers.lua_bin, bindir, helpers.lua_bin)))
      local code, out, err = cli({ "dev-qdrant", "--port", "0" }, { env = { PATH = bindir } })
      assert.are.equal(1, code, out .. err)
      assert.truthy(err:find("node is not installed", 1, true), err)
    end)
  end)
end)
