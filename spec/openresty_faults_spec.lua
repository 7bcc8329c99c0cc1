-- examples/openresty under bad input and store faults: what a hunt of
-- spec/openresty_spec.lua's example found (each test failed before its fix).
-- Same approach as spec/openresty_spec.lua: a scratch database of the
-- throwaway servers, launch.lua, the LuaJIT build in nginx, real HTTP
-- through curl. Runs under lua5.4 and luajit busted alike.
local helpers = require "support.helpers"
local ngx_fixture = require "support.openresty_fixture"
local launch, root = ngx_fixture.launch, helpers.root
local available, why_not = ngx_fixture.available, ngx_fixture.why_not

describe("examples/openresty under faults", function()
  if not available then
    pending("nginx with lua-nginx-module is not installed: " .. why_not)
    return
  end

  local fixture = require "support.services_fixture"
  local core = require "semstore.core"

  local sh, urlencode, query_string = ngx_fixture.sh, ngx_fixture.urlencode, ngx_fixture.query_string
  local fx, dir, nginx, col, priv
  local function error_log() return ngx_fixture.error_log(dir) end
  local function request(...) return ngx_fixture.request(nginx, dir, ...) end

  local function search_path(c, q, user_id)
    return "/search?collection=" .. c.id .. "&q=" .. urlencode(q) .. "&mode=hybrid&limit=5&user_id=" .. urlencode(user_id)
  end

  lazy_setup(function()
    ngx_fixture.check_build()
    fx = fixture.open()
    col = fx.new_collection { is_public = true }
    -- private, owned by fx.owner
    priv = fx.new_collection { is_public = false }
    for i, topic in ipairs { "cats purr and sleep in the sun", "the database keeps rows in pages on disk",
      "bread needs flour water salt and yeast", "rockets burn fuel to reach orbit" } do
      for _, c in ipairs { col, priv } do
        local doc, queued = assert(fx.svc:create_document(c.id, ("Note %d. %s."):format(i, topic), { file_name = "note" .. i .. ".txt" }))
        assert(doc and not queued, "indexing failed")
      end
    end
    dir = helpers.tmpdir()
    local err
    nginx, err = launch.start { dir = dir, port = helpers.free_port(), root = root, env = { DATABASE_URL = fx.url } }
    assert(nginx, err)
  end)

  lazy_teardown(function()
    if fixture.standin and fx then fx.faults("DELETE") end
    if nginx then launch.stop(dir) end
    if dir then helpers.rmdir(dir) end
    if fx then fx.close() end
  end)

  it("answers /search with a 502 or 503, not a 500, when Qdrant answers 503", function()
    if not fixture.standin then return pending "needs the Qdrant stand-in's fault injection" end
    -- every attempt (the client retries a 503) gets the fault
    fx.faults("POST", { kind = "503", count = 100, path = "/points/query" })
    local status, body = request("GET", search_path(col, "qdrant is unavailable", fx.other.id))
    fx.faults("DELETE")
    local res = core.json_decode(body)
    assert.is_table(res, body)
    assert.is_table(res.error, body)
    -- an upstream outage is not the server's internal error
    assert.is_true(status == 502 or status == 503, "status " .. tostring(status) .. ": " .. body .. error_log())
  end)

  it("keeps /collections/:id answering while Qdrant stalls the thread pool's searches", function()
    if not fixture.standin then return pending "needs the Qdrant stand-in's fault injection" end
    -- eight searches (threads=8 in nginx.conf) whose Qdrant query stalls
    -- for 40 s: they run on the Qdrant calls' own thread pool, and give up
    -- within the handlers' Qdrant limits (5 s an attempt, 10 s in all)
    fx.faults("POST", { kind = "stall", count = 8, path = "/points/query", stall_ms = 40000 })
    local script = string.format([[
      url=%s
      for i in 1 2 3 4 5 6 7 8; do
        curl -s -m 150 -o /dev/null -w "search %%{http_code} %%{time_total}\n" "$url/search?collection=%s&q=stalled+$i&user_id=%s" &
      done
      sleep 2
      curl -s -m 10 -o /dev/null -w "collection %%{http_code} %%{time_total}\n" "$url/collections/%s"
      curl -s -m 10 -o /dev/null -w "ping %%{http_code} %%{time_total}\n" "$url/ping"
      wait
    ]], helpers.shell_quote(nginx.url), col.id, tostring(fx.other.id), col.id)
    local out = sh("bash -c " .. helpers.shell_quote(script))
    fx.faults("DELETE")
    local searches = 0
    for status, took in out:gmatch "search (%d+) ([%d%.]+)" do
      searches = searches + 1
      assert.is_true(tonumber(took) < 20, "a search held its thread for " .. took .. " s:\n" .. out)
      assert.is_truthy(status == "502" or status == "504" or status == "200", out)
    end
    assert.are.equal(8, searches, out)
    local code, t = out:match "collection (%d+) ([%d%.]+)"
    assert.are.equal("200", out:match "ping (%d+)", out)
    -- /collections/:id needs no Qdrant, yet waited behind the stalled searches
    assert.are.equal("200", code, "GET /collections/:id while Qdrant stalls: " .. out .. error_log())
    assert.is_true(tonumber(t) < 5, out)
  end)

  it("stores metadata numbers beyond 2^53 that come through POST /documents as JSON numbers", function()
    -- the body's JSON as a client sends it (no Lua involved)
    local body = string.format('{"collection":"%s","content":"a document with a big external id",'
      .. '"metadata":{"file_name":"big-ext.txt","ext_id":9007199254740993,"small":5}}', col.id)
    local status, resp = request("POST", "/documents", body)
    assert.are.equal(201, status, resp .. error_log())
    local rows = assert(fx.db.pg:query([[SELECT jsonb_typeof(meta->'ext_id') AS t, meta->>'ext_id' AS v,
      jsonb_typeof(meta->'small') AS small FROM documents WHERE file_name = 'big-ext.txt']]))
    assert.are.equal(1, #rows)
    assert.are.equal("number", rows[1].small)
    assert.are.equal("9007199254740993", rows[1].v)
    -- via Lua 5.4 it is a number; via nginx's LuaJIT it became a string
    assert.are.equal("number", rows[1].t, "meta.ext_id stored as a JSON " .. tostring(rows[1].t))
  end)

  it("refuses on /search a user_id that is not a plain decimal integer", function()
    -- each of these names another user than the digits given (or no
    -- integer at all), and one that may read the private collection
    local owner = tostring(fx.owner.id)
    for _, user_id in ipairs { owner .. ".0000000000000001", owner .. "e0", string.format("0x%x", tonumber(owner)) } do
      local status, body = request("GET", search_path(priv, "cats purr", user_id))
      assert.are.equal(400, status, "user_id=" .. user_id .. " -> " .. tostring(status) .. " " .. body:sub(1, 200))
    end
  end)

  it("answers nginx's own 4xx (a 10 MB body, a huge URI, GET /documents) in JSON", function()
    local big = dir .. "/big.json"
    helpers.write_file(big, '{"collection":"' .. col.id .. '","content":"' .. string.rep("x", 10 * 1024 * 1024) .. '"}')
    local status, body, headers = request("POST", "/documents", nil, big)
    os.remove(big)
    assert.are.equal(413, status)
    assert.is_truthy((headers["content-type"] or ""):find("application/json", 1, true), "413 as " .. tostring(headers["content-type"]))
    assert.is_table(core.json_decode(body), body)
    status, body, headers = request("GET", search_path(col, string.rep("cats ", 10000), fx.other.id))
    assert.are.equal(414, status)
    assert.is_truthy((headers["content-type"] or ""):find("application/json", 1, true), "414 as " .. tostring(headers["content-type"]))
    status, body, headers = request("GET", "/documents")
    assert.is_true(status == 403 or status == 405, tostring(status))
    assert.is_truthy((headers["content-type"] or ""):find("application/json", 1, true), "GET /documents as " .. tostring(headers["content-type"]))
  end)

  it("launch.start in a DIR where nginx already runs leaves no nginx behind after launch.stop", function()
    local d = helpers.tmpdir()
    local first = assert(launch.start { dir = d, port = helpers.free_port(), root = root, env = { DATABASE_URL = fx.url } })
    local second = launch.start { dir = d, port = helpers.free_port(), root = root, env = { DATABASE_URL = fx.url } }
    launch.stop(d)
    local found = os.execute("kill -0 " .. first.pid .. " 2>/dev/null")
    local left = found == true or found == 0
    -- clean up whatever is left (the first master, which takes its workers along)
    if left then
      os.execute("kill -TERM " .. first.pid .. " 2>/dev/null")
      helpers.sleep(0.5)
    end
    helpers.rmdir(d)
    assert.is_false(left, "the first nginx (pid " .. first.pid .. ") still runs after stop; second start gave "
      .. tostring(second and second.pid))
  end)
end)
