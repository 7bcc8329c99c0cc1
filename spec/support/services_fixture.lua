-- What the services specs share: a migrated database of their own with two
-- users and a service on it, and the helpers their tests use.
require "semstore.compat" () -- Lua 5.4's library under LuaJIT too
local semstore = require "semstore"
local migrate = require "semstore.migrate"
local helpers = require "support.helpers"

local fixture = {}

fixture.standin = os.getenv "SEMSTORE_QDRANT_STANDIN" == "1"

function fixture.open()
  local fx = {}
  fx.db_name, fx.url = helpers.fresh_database()
  local db = helpers.connect(nil, { postgres = fx.url })
  fx.db = db
  assert(migrate.up(db))
  fx.owner = assert(db.users:create { username = "owner", email = "owner@example.org", password = "pw" })
  fx.other = assert(db.users:create { username = "other", email = "other@example.org", password = "pw" })
  fx.svc = assert(semstore.services.documents(db, { batch_size = 16 }))

  -- a db whose Qdrant refuses every connection at once
  function fx.qdrant_down()
    return helpers.connect(nil, { postgres = fx.url, qdrant = { url = "http://127.0.0.1:1", max_retries = 0, connect_timeout = 1 } })
  end
  -- what fn(down_svc) returns, called with a service whose Qdrant is down
  function fx.while_qdrant_down(fn)
    local down = fx.qdrant_down()
    local res = table.pack(pcall(fn, assert(semstore.services.documents(down))))
    down:close()
    if not res[1] then error(res[2], 0) end
    return table.unpack(res, 2, res.n)
  end
  -- a db on the same Qdrant that does not retry, so an injected fault fails a call at once
  function fx.no_retries()
    return helpers.connect(nil, { postgres = fx.url, qdrant = { url = os.getenv "QDRANT_URL", max_retries = 0 } })
  end
  -- the stand-in's fault injection
  function fx.faults(method, body) return assert(db.qdrant.handle:request(method, "/__standin/faults", body)) end

  function fx.new_collection(fields)
    local f = { name = helpers.unique("svc", "-"), owner_id = fx.owner.id, embedding_model = "local-hash",
      chunk_size = 120, chunk_overlap = 20 }
    for k, v in pairs(fields or {}) do f[k] = v end
    return assert(db.collections:create(f))
  end

  function fx.count(sql, ...) return assert(db.pg:query(sql, ...))[1].n end
  function fx.jobs(collection_id) return fx.count("SELECT count(*) AS n FROM reindex_jobs WHERE collection_id = $1", collection_id) end
  function fx.points(col) return assert(db.qdrant:count(col.vector_store_name)) end
  function fx.chunks_of(col) return fx.count("SELECT count(*) AS n FROM chunks WHERE collection_id = $1", col.id) end
  -- a queued job's backoff as if it had passed
  function fx.make_due(collection_id)
    assert(db.pg:query("UPDATE reindex_jobs SET next_attempt_at = now() WHERE collection_id = $1", collection_id))
  end

  -- n short documents on four topics, with the topic in their metadata
  function fx.corpus(n)
    local topics = { "cats purr and sleep in the sun", "the database keeps rows in pages on disk",
      "bread needs flour water salt and yeast", "rockets burn fuel to reach orbit" }
    local docs = {}
    for i = 1, n do
      docs[i] = { content = string.format("Note %d. %s. More about %s, item %d.", i, topics[i % 4 + 1], topics[i % 4 + 1], i),
                  file_name = "note" .. i .. ".txt", metadata = { topic = i % 4 + 1 } }
    end
    return docs
  end

  -- the hits' chunk ids, in order; their document ids, sorted
  function fx.chunk_ids(hits)
    local out = {}
    for i, h in ipairs(hits) do out[i] = h.chunk_id end
    return out
  end
  function fx.document_ids(hits)
    local out = {}
    for i, h in ipairs(hits) do out[i] = h.document_id end
    table.sort(out)
    return out
  end

  -- the shell command that runs `semstore run SCRIPT ARGS...` on this
  -- database, for a process of its own (io.popen, or several in background)
  function fx.semstore_run_command(script, ...)
    local words = { helpers.shell_quote(script) }
    for _, a in ipairs { ... } do words[#words + 1] = helpers.shell_quote(a) end
    return string.format("cd %s && DATABASE_URL=%s LUA_PATH=%s LUA_CPATH=%s %s bin/semstore run %s",
      helpers.shell_quote(helpers.root), helpers.shell_quote(fx.url),
      helpers.shell_quote(helpers.root .. "/lua/?.lua;" .. helpers.root .. "/lua/?/init.lua;;"),
      helpers.shell_quote(helpers.cpath), helpers.lua_bin, table.concat(words, " "))
  end

  -- runs `body` (Lua source) through `semstore run` against this database,
  -- with the arguments given; returns the exit code, stdout and stderr
  function fx.run_script(body, args, env)
    local dir = helpers.tmpdir()
    helpers.write_file(dir .. "/script.lua", body)
    local e = { DATABASE_URL = fx.url }
    for k, v in pairs(env or {}) do e[k] = v end
    local code, out, err = helpers.cli({ "run", dir .. "/script.lua", table.unpack(args or {}) }, { env = e })
    helpers.rmdir(dir)
    return code, out, err
  end

  -- kills (kill -9) a zero-downtime rebuild of `col` in a process of its
  -- own after its third batch of 4; returns the exit code
  function fx.kill_rebuild_midway(col)
    return fx.run_script([[
      local semstore = require "semstore"
      local svc = assert(semstore.services.documents(db, { batch_size = 4 }))
      local batches = 0
      svc:rebuild_vector_index(arg[1], { zero_downtime = true, progress = function()
        batches = batches + 1
        if batches == 3 then os.execute("kill -9 " .. io.open("/proc/self/stat"):read("n")) end
      end })
    ]], { col.id })
  end

  function fx.close()
    if fixture.standin then db.qdrant.handle:request("DELETE", "/__standin/faults") end
    helpers.assert_all_returned(db)
    db:close()
    helpers.drop_database(fx.db_name)
  end
  return fx
end

-- An embedder with local_hash's vectors (dense and sparse) that runs
-- hook(texts) before each dense() call.
function fixture.hooked_embedder(hook)
  local base = semstore.embedders.local_hash()
  return setmetatable({
    dim = base.dim,
    dense = function(_, texts) hook(texts); return base:dense(texts) end,
    sparse = function(_, texts) return base:sparse(texts) end,
  }, { __tostring = function() return "hooked" end })
end

-- The fixture of a describe block: an empty table now, filled by its
-- lazy_setup (db, svc, owner, other, url and the helpers above) and closed
-- by its lazy_teardown (busted's, which only spec files see: pass them).
function fixture.lazy(lazy_setup, lazy_teardown)
  local fx = {}
  lazy_setup(function()
    for k, v in pairs(fixture.open()) do fx[k] = v end
  end)
  lazy_teardown(function() fx.close() end)
  return fx
end

return fixture
