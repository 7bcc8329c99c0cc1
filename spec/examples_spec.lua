-- Every script in examples/ runs, in the order a reader would run them, on
-- a database of its own: none goes stale.
local helpers = require "support.helpers"

describe("the examples", function()
  local name, url

  lazy_setup(function() name, url = helpers.fresh_database() end)
  lazy_teardown(function() helpers.drop_database(name) end)

  local function run(args, expect)
    local code, out, err = helpers.cli(args, { env = { DATABASE_URL = url } })
    assert.are.equal(0, code, table.concat(args, " ") .. "\n" .. out .. err)
    for _, pattern in ipairs(expect or {}) do assert.truthy(out:find(pattern), pattern .. " not in:\n" .. out) end
    return out
  end

  it("run one after another, twice, as the README shows them", function()
    run({ "migrate", "up", "--dir", "examples/migrations" }, { "applied 0002_tag_lookup_index" })
    for round = 1, 2 do
      -- seeding is idempotent: the second round finds everything there
      run({ "seed", "examples/seed_dev_data.lua", "40" }, round == 1 and { "handbook%s+40 new documents" }
        or { "handbook%s+0 new documents,%s+40 already there" })
      run({ "seed", "examples/seed.lua", "50" }, { "seeded 50 chunks, all in chunks_p%d+" })
      run({ "run", "examples/search.lua" }, { "handbook/%d+%-resetting%-your", "hybrid", "access_denied" })
      run({ "run", "examples/index_collection.lua" }, { "completed", "collection recipes: ready" })
      run({ "run", "examples/rebuild_index.lua" }, { "rebuilt %d+ vectors", "best hit before bread.md, after bread.md" })
      run({ "run", "examples/drain_queue.lua" }, { "queued = true", "1 done, 0 failed, 0 left", "now completed" })
      run({ "run", "examples/bulk_load.lua", "3000" }, { "loaded 3000 chunks on 2 connections\n",
        "a bad row in one part: nil %(postgres 23503%); chunks before 3000, after 3000", "recovery: committed 0" })
      run({ "run", "examples/cache.lua" }, { "computed 1 time", "cached document, id 9007199254740993" })
      run({ "run", "examples/health.lua" }, { "postgres%s+healthy", "redis%s+healthy" })
      run({ "run", "examples/quickstart.lua" })
      run({ "run", "examples/qdrant_search.lua" })
    end
  end)
end)
