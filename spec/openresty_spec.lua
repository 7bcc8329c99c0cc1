-- examples/openresty: Debian's nginx with lua-nginx-module, the LuaJIT
-- build of the module (build-luajit/), and the handlers in worker threads,
-- on a scratch database of the throwaway servers, through real HTTP (curl).
-- This file only drives it: it runs under lua5.4 and luajit busted alike.
-- Skipped only when nginx or lua-nginx-module is not installed.
local helpers = require "support.helpers"
local ngx_fixture = require "support.openresty_fixture"
local launch, root = ngx_fixture.launch, helpers.root
local available, why_not = ngx_fixture.available, ngx_fixture.why_not

-- 2^53 + 1: no double holds it
local BIG_USER_ID = "9007199254740993"

describe("examples/openresty", function()
  if not available then
    pending("nginx with lua-nginx-module is not installed: " .. why_not)
    return
  end

  local fixture = require "support.services_fixture"
  local core = require "semstore.core"
  local unpack = table.unpack or unpack

  local sh, urlencode, query_string = ngx_fixture.sh, ngx_fixture.urlencode, ngx_fixture.query_string
  local fx, dir, nginx, col, big_user
  local function error_log() return ngx_fixture.error_log(dir) end
  local function request(...) return ngx_fixture.request(nginx, dir, ...) end

  local function get_json(path, expected_status)
    local status, body, headers = request("GET", path)
    assert.are.equal(expected_status or 200, status, path .. " -> " .. body .. error_log())
    return assert(core.json_decode(body)), body, headers
  end

  local function search_path(location, q, extra)
    local args = { collection = col.id, q = q, mode = "hybrid", user_id = tostring(fx.other.id), limit = "5" }
    for k, v in pairs(extra or {}) do args[k] = v end
    return location .. "?" .. query_string(args)
  end

  local function p50(list)
    local s = { unpack(list) }
    table.sort(s)
    return s[math.floor((#s + 1) / 2)]
  end

  lazy_setup(function()
    ngx_fixture.check_build()
    fx = fixture.open()
    local db = fx.db
    -- the collection's owner has an id above 2^53
    assert(db.pg:query("SELECT setval(pg_get_serial_sequence('users', 'id'), 9007199254740992)"))
    big_user = assert(db.users:create { username = "big", email = "big@example.org", password = "pw" })
    assert.are.equal(BIG_USER_ID, tostring(big_user.id))
    -- and so have the chunks: 2^53 + 2, + 4, ... (even, so the Qdrant
    -- stand-in, which reads ids as JavaScript numbers, keeps them exact;
    -- a real Qdrant takes 2^53 + 1 too)
    if fixture.standin then
      assert(db.pg:exec "ALTER SEQUENCE chunks_id_seq INCREMENT BY 2; SELECT setval('chunks_id_seq', 9007199254740992)")
    else
      assert(db.pg:exec "SELECT setval('chunks_id_seq', 9007199254740992)")
    end
    -- owned by that user: its id as this VM gave it (under LuaJIT the
    -- decimal string) goes back in as it came
    col = fx.new_collection { is_public = true, owner_id = big_user.id }
    dir = helpers.tmpdir()
    helpers.write_file(dir .. "/seed.lua", string.format([[
      local svc = assert(require("semstore").services.documents(db))
      for i = 1, 8 do
        local topic = ({ "cats purr and sleep in the sun", "the database keeps rows in pages on disk",
          "bread needs flour water salt and yeast", "rockets burn fuel to reach orbit" })[i %% 4 + 1]
        local doc, queued = assert(svc:create_document(%q, ("Note %%d. %%s. More about %%s, item %%d."):format(i, topic, topic, i),
          { file_name = "note" .. i .. ".txt", topic = i %% 4 + 1 }))
        assert(not queued, "indexing failed")
      end
    ]], col.id))
    -- (not fx.run_script: helpers.cli reads os.execute's exit code the 5.4 way)
    local out = sh(fx.semstore_run_command(dir .. "/seed.lua") .. " 2>&1; echo \"exit $?\"")
    assert(out:match "exit 0\n$", out)
    local err
    nginx, err = launch.start { dir = dir, port = helpers.free_port(), root = root, env = { DATABASE_URL = fx.url } }
    assert(nginx, err)
  end)

  lazy_teardown(function()
    if nginx then
      local master = nginx.pid
      local workers = sh("pgrep -P " .. master):gsub("%s+", " ")
      launch.stop(dir)
      -- nothing of it is left
      for pid in (master .. " " .. workers):gmatch "%d+" do
        -- os.execute gives true (5.4) or 0 (LuaJIT) when kill -0 finds it
        local found = os.execute("kill -0 " .. pid .. " 2>/dev/null")
        assert(found ~= true and found ~= 0, "nginx process " .. pid .. " is still running")
      end
    end
    if dir then helpers.rmdir(dir) end
    if fx then fx.close() end
  end)

  it("answers /ping without the data layer", function()
    local status, body = request("GET", "/ping")
    assert.are.equal(200, status)
    assert.are.equal("pong\n", body)
  end)

  it("reports the three stores on /health", function()
    local report = get_json "/health"
    assert.is_true(report.ok)
    for _, store in ipairs { "postgres", "redis", "qdrant" } do
      assert.are.equal("healthy", report[store].status, store)
    end
    assert.is_nil(report.postgres.target:find(":semstore@", 1, true), "the password is hidden")
  end)

  it("creates and indexes a document on POST /documents", function()
    -- indexed in nginx's worker thread by the LuaJIT build: its chunk's id
    -- is above 2^53 too
    local status, body = request("POST", "/documents", core.json_encode {
      collection = col.id, content = "Penguins cannot fly but they swim very fast in cold water.",
      metadata = { file_name = "penguins.txt", topic = 9 } })
    assert.are.equal(201, status, body .. error_log())
    local res = assert(core.json_decode(body))
    assert.is_false(res.queued)
    assert.are.equal("penguins.txt", res.document.file_name)
    assert.are.equal("completed", res.document.status)
    local rows = assert(fx.db.pg:query("SELECT id::text AS id, document_id FROM chunks WHERE document_id = $1", res.document.id))
    assert.are.equal(1, #rows)
    -- the new document is found, with its chunk's id
    local found = get_json(search_path("/search", "penguins swim in cold water"))
    assert.is_true(#rows[1].id >= 16 and rows[1].id > "9007199254740992", rows[1].id)
    assert.are.equal(rows[1].id, tostring(found.hits[1].chunk_id))
    assert.are.equal(res.document.id, found.hits[1].document_id)
    -- bad input is a 400, an unknown collection a 404
    status = request("POST", "/documents", "{not json")
    assert.are.equal(400, status)
    status, body = request("POST", "/documents", core.json_encode { collection = "00000000-0000-4000-8000-000000000000", content = "x" })
    assert.are.equal(404, status, body)
  end)

  it("searches with /search (hybrid): chunk text, document name and exact ids", function()
    local res, raw = get_json(search_path("/search", "cats purr and sleep in the sun"))
    assert.is_true(#res.hits > 0, raw)
    local ids = {}
    for _, h in ipairs(res.hits) do
      -- beyond 2^53 the LuaJIT build hands ids over as exact decimal strings
      assert.are.equal("string", type(h.chunk_id))
      assert.is_truthy(raw:find('"chunk_id":"' .. h.chunk_id .. '"', 1, true))
      ids[#ids + 1] = h.chunk_id
    end
    local rows = assert(fx.db.pg:query([[SELECT c.id::text AS id, c.content, c.document_id, d.file_name
      FROM chunks c JOIN documents d ON d.id = c.document_id WHERE c.id = ANY($1::int8[])]], core.array(ids)))
    local by_id = {}
    for _, r in ipairs(rows) do by_id[r.id] = r end
    for _, h in ipairs(res.hits) do
      local r = assert(by_id[h.chunk_id], "no chunk " .. h.chunk_id .. " in PostgreSQL")
      assert.are.equal(r.content, h.content)
      assert.are.equal(r.document_id, h.document_id)
      assert.are.equal(r.file_name, h.file_name)
      assert.is_number(h.score)
    end
    assert.is_truthy(res.hits[1].content:find("cats purr", 1, true))
    -- the request-phase variant gives the same answer
    local blocking = get_json(search_path("/search_blocking", "cats purr and sleep in the sun"))
    assert.are.same(res, blocking)
    -- refused input
    get_json(search_path("/search", "cats", { mode = "sideways" }), 400)
    get_json("/search?q=cats&user_id=1", 400)
  end)

  it("serves /collections/:id from Redis after the first read, ids above 2^53 exact", function()
    local res, raw, headers = get_json("/collections/" .. col.id)
    assert.are.equal("miss", headers["x-cache"])
    assert.are.equal(col.id, res.collection.id)
    assert.are.equal(col.name, res.collection.name)
    assert.is_truthy(raw:find('"owner_id":"' .. BIG_USER_ID .. '"', 1, true), raw)
    local again, raw2, headers2 = get_json("/collections/" .. col.id)
    assert.are.equal("hit", headers2["x-cache"])
    assert.are.equal(BIG_USER_ID, again.collection.owner_id)
    assert.are.equal(res.collection.updated_at, again.collection.updated_at)
    assert.is_truthy(raw2:find('"owner_id":"' .. BIG_USER_ID .. '"', 1, true), raw2)
    -- in Redis under the cache's prefix
    local cached = assert(fx.db.cache:get("collection:" .. col.id))
    assert.are.equal(col.id, cached.id)
    get_json("/collections/00000000-0000-4000-8000-000000000000", 404)
  end)

  it("answers 200 concurrent requests (50 at a time) with 200", function()
    local config = {}
    for i = 1, 200 do
      local path
      if i % 10 == 0 then path = "/health"
      elseif i % 10 == 5 then path = "/collections/" .. col.id
      else path = search_path("/search", "notes about item " .. i) end
      config[#config + 1] = string.format('url = "%s%s"\noutput = "/dev/null"', nginx.url, path)
    end
    helpers.write_file(dir .. "/many.curl", table.concat(config, "\n") .. "\n")
    local started = os.time()
    local out = sh(string.format("curl -s -m 60 --parallel --parallel-max 50 -w '%%{http_code}\\n' -K %s 2>/dev/null",
      helpers.shell_quote(dir .. "/many.curl")))
    local codes, n = {}, 0
    for code in out:gmatch "%d+" do
      n = n + 1
      codes[code] = (codes[code] or 0) + 1
    end
    local summary = {}
    for code, count in pairs(codes) do summary[#summary + 1] = code .. " x" .. count end
    assert.are.equal(200, n, table.concat(summary, ", ") .. error_log())
    assert.are.equal(200, codes["200"], table.concat(summary, ", ") .. error_log())
    assert.is_true(os.time() - started < 60)
    helpers.assert_all_returned(fx.db)
    -- up to 50 thread VMs were in flight, and all of them shared the
    -- worker's one pool (semstore_handlers.lua: 8 + 4 overflow), beside this
    -- file's own (3 + 2): a pool per VM would have opened one each at least
    local n = assert(fx.db.pg:query("SELECT count(*) AS n FROM pg_stat_activity WHERE datname = current_database()"))[1].n
    assert.is_true(n <= 12 + 5, n .. " connections to the database")
  end)

  it("stays responsive while slow calls run in worker threads, unlike in the request phase", function()
    local SLOW = 0.5
    -- two loops of three slow calls each, and /ping every 20 ms until they end
    local function measure(location)
      local script = string.format([[
        url=%s
        loop() { for i in 1 2 3; do curl -s -m 30 -o /dev/null -w 'slow %%{http_code} %%{time_total}\n' "$url/%s?seconds=%s"; done; }
        start=$(date +%%s.%%N)
        loop & a=$!
        loop & b=$!
        sleep 0.1
        while kill -0 $a 2>/dev/null || kill -0 $b 2>/dev/null; do
          curl -s -m 30 -o /dev/null -w 'ping %%{http_code} %%{time_total}\n' "$url/ping"
          sleep 0.02
        done
        wait
        echo "wall $(echo "$(date +%%s.%%N) - $start" | bc)"
      ]], helpers.shell_quote(nginx.url), location, SLOW)
      local out = sh("bash -c " .. helpers.shell_quote(script))
      local pings, slows, wall = {}, {}, nil
      for kind, code, t in out:gmatch "(%a+) (%d+) ([%d%.]+)" do
        assert.are.equal("200", code, kind .. ": " .. out .. error_log())
        if kind == "ping" then pings[#pings + 1] = tonumber(t) else slows[#slows + 1] = tonumber(t) end
      end
      wall = tonumber(out:match "wall ([%d%.]+)")
      assert.are.equal(6, #slows, out)
      assert.is_true(#pings >= 2, out)
      return { ping_p50 = p50(pings), pings = #pings, slow_p50 = p50(slows), wall = wall }
    end
    local threaded = measure("slow")
    local blocking = measure("slow_blocking")
    print(string.format("\nopenresty: /ping p50 while %d x pg_sleep(%.1f) ran: worker threads %.1f ms (%d pings, wall %.2f s), "
      .. "request phase %.1f ms (%d pings, wall %.2f s); ratio %.0fx",
      6, SLOW, threaded.ping_p50 * 1000, threaded.pings, threaded.wall, blocking.ping_p50 * 1000, blocking.pings,
      blocking.wall, blocking.ping_p50 / math.max(threaded.ping_p50, 1e-4)))
    -- in worker threads, /ping takes a small part of a slow call ...
    assert.is_true(threaded.ping_p50 < SLOW / 10, "worker threads: /ping p50 " .. threaded.ping_p50)
    -- ... in the request phase it waits for them
    assert.is_true(blocking.ping_p50 > SLOW / 5, "request phase: /ping p50 " .. blocking.ping_p50)
    assert.is_true(blocking.ping_p50 > 5 * threaded.ping_p50)
    -- and the two loops' slow calls overlapped in threads, one after the other in the request phase
    assert.is_true(threaded.wall < 0.75 * blocking.wall, threaded.wall .. " vs " .. blocking.wall)
  end)
end)
