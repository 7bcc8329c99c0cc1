-- The README, read as a new user would (sixth hunt): each test failed on the
-- code it was written against, for the reason its name gives.
require "semstore.compat" () -- Lua 5.4's library under LuaJIT too
local fixture = require "support.services_fixture"

describe("sixth hunt (README)", function()
  local fx = fixture.lazy(lazy_setup, lazy_teardown)

  local function logs(col)
    return fx.count("SELECT count(*)::int AS n FROM search_logs WHERE collection_id = $1", col.id)
  end

  -- README, Search: "a row in search_logs with the latency and the result
  -- count". A query PostgreSQL's text cannot hold (a zero byte, invalid
  -- UTF-8) gets its hits but no row: the INSERT's failure is ignored.
  it("a search whose query PostgreSQL cannot store is refused as input, or logged, never silently unlogged", function()
    local col = fx.new_collection()
    assert(fx.svc:index_collection(col.id, fx.corpus(4)))
    for _, q in ipairs { "cats\0purr", "cats \254 purr" } do
      local before = logs(col)
      local hits, err = fx.svc:search(col.id, q, { user_id = fx.owner.id })
      if hits then
        assert.equal(before + 1, logs(col), ("search %q returned hits but left no search_logs row"):format(q))
      else
        assert.equal("input", err.kind)
      end
    end
  end)

  -- README, Workflows: "bad arguments and unknown options are `input`
  -- errors"; `user_id` is the operation's. A user_id naming no user reaches
  -- the operations INSERT and comes back as PostgreSQL's foreign-key error.
  it("index_collection and rebuild_vector_index with a user_id naming no user are input/not_found errors, not postgres", function()
    local col = fx.new_collection()
    assert(fx.svc:index_collection(col.id, fx.corpus(2)))
    local r, err = fx.svc:index_collection(col.id, { { content = "a document for nobody" } }, { user_id = 987654321 })
    assert.is_nil(r)
    assert.is_truthy(err.kind == "input" or err.kind == "not_found", "index_collection: kind " .. tostring(err.kind))
    r, err = fx.svc:rebuild_vector_index(col.id, { user_id = 987654321 })
    assert.is_nil(r)
    assert.is_truthy(err.kind == "input" or err.kind == "not_found", "rebuild_vector_index: kind " .. tostring(err.kind))
  end)

  -- README, progress_bar: "`io.stderr` by default, or `io.stdout` ... A bad
  -- label or an unknown option gives nil, err (input)"; "bad arguments ...
  -- are input errors". A stream that is not a file handle is taken, and the
  -- draw it gives raises in the middle of index_collection.
  it("progress_bar refuses a stream that is not a file handle (input), rather than giving a draw that raises", function()
    local semstore = require "semstore"
    local draw, err = semstore.progress_bar("indexing", { stream = "stderr", force = true })
    if draw then
      local ok, raised = pcall(draw, { documents = 1, total = 2, chunks = 1, vectors = 0 })
      assert.is_true(ok, "draw raised: " .. tostring(raised))
    else
      assert.equal("input", err.kind)
    end
  end)

  -- README: "`force = true` draws anyway"; rebuild_vector_index's
  -- zero_downtime refuses anything but a boolean. progress_bar takes
  -- force = "yes" (or 1) and silently does not draw.
  it("progress_bar refuses a force that is not a boolean (input), rather than ignoring it", function()
    local semstore = require "semstore"
    for _, force in ipairs { "yes", 1 } do
      local draw, err = semstore.progress_bar("indexing", { stream = io.tmpfile(), force = force })
      assert.is_nil(draw, "force = " .. tostring(force) .. " was taken")
      assert.equal("input", err.kind)
    end
  end)

  -- README: "bad arguments ... are input errors"; every other call given a
  -- collection id that is not a UUID says so (`input`). retry_pending takes
  -- a typo'd id and reports an empty queue, { done = 0, failed = 0, left = 0 },
  -- while that collection's jobs wait.
  it("retry_pending{ collection_id = <not a UUID> } is an input error, not an empty queue", function()
    local col = fx.new_collection()
    assert(fx.db.pg:query([[INSERT INTO reindex_jobs (action, collection_id, document_id, next_attempt_at)
      VALUES ('delete', $1, gen_random_uuid(), now())]], col.id))
    local r, err = fx.svc:retry_pending { collection_id = col.id:upper() }
    assert.is_nil(r, "a collection_id that is no UUID gave an empty queue")
    assert.equal("input", err.kind)
  end)

  -- README, Workflows: "A failure in Qdrant carries err.store == "qdrant"".
  -- search returns Qdrant's error untagged (services.lua, search's compute:
  -- `if not found then return nil, e end`), both when Qdrant is away and
  -- when it refuses the filter.
  it("search's Qdrant failures carry err.store == 'qdrant'", function()
    local semstore = require "semstore"
    local col = fx.new_collection()
    assert(fx.svc:index_collection(col.id, fx.corpus(4)))
    local down = fx.qdrant_down()
    local svc = assert(semstore.services.documents(down))
    local hits, err = svc:search(col.id, "cats", { user_id = fx.owner.id, cache_ttl = 0.001 })
    down:close()
    assert.is_nil(hits)
    assert.equal("qdrant", err.store, "Qdrant away: kind " .. tostring(err.kind) .. ": " .. tostring(err.message))
    hits, err = fx.svc:search(col.id, "cats", { user_id = fx.owner.id, filter = { must = 5 } })
    assert.is_nil(hits)
    assert.equal("qdrant", err.store, "filter refused: kind " .. tostring(err.kind) .. ": " .. tostring(err.message))
  end)
end)
