-- What the OpenResty specs share: examples/openresty/launch.lua, whether
-- nginx with lua-nginx-module is installed, and an HTTP client (curl) for
-- the nginx a spec started. Only drives nginx: runs under lua5.4 and
-- luajit busted alike; under LuaJIT the spec's own semstore is the LuaJIT
-- build too.
local helpers = require "support.helpers"

local fixture = {}

fixture.launch = dofile(helpers.root .. "/examples/openresty/launch.lua")
fixture.available, fixture.why_not = fixture.launch.available()
fixture.sh = fixture.launch.read_command

if jit then package.cpath = helpers.root .. "/build-luajit/?.so;" .. package.cpath end

-- Fails with how to build it when nginx's module is missing.
function fixture.check_build()
  local so = io.open(helpers.root .. "/build-luajit/semstore/core.so")
  assert(so, "build-luajit/semstore/core.so is missing: nginx loads the LuaJIT build; "
    .. "cmake -S . -B build-luajit -DSEMSTORE_LUA=luajit && cmake --build build-luajit -j2")
  so:close()
end

function fixture.urlencode(s)
  return (tostring(s):gsub("[^%w%-%._~]", function(c) return string.format("%%%02X", c:byte()) end))
end

-- a=1&b=2, sorted by name
function fixture.query_string(args)
  local parts = {}
  for k, v in pairs(args) do parts[#parts + 1] = k .. "=" .. fixture.urlencode(v) end
  table.sort(parts)
  return table.concat(parts, "&")
end

-- The end of nginx's error log in `dir`, for a failure's message.
function fixture.error_log(dir)
  local text = helpers.read_file(dir .. "/logs/error.log")
  if not text then return "" end
  return "\n--- nginx error.log (end) ---\n" .. text:sub(-3000)
end

-- One request to the nginx `nginx` (launch.start's) with files in `dir`:
-- status, body, headers (lower-case names). body: JSON text to POST;
-- body_file: a file to send as the body instead; max_time: curl's -m (30).
function fixture.request(nginx, dir, method, path, body, body_file, max_time)
  local out, hdr = dir .. "/resp.body", dir .. "/resp.headers"
  local data = ""
  if body then
    body_file = dir .. "/req.body"
    helpers.write_file(body_file, body)
  end
  if body_file then data = "-H 'Content-Type: application/json' --data-binary @" .. helpers.shell_quote(body_file) end
  os.remove(hdr)
  os.remove(out)
  local status = fixture.sh(string.format("curl -s -m %d -X %s -D %s -o %s -w '%%{http_code}' %s %s", max_time or 30,
    method, helpers.shell_quote(hdr), helpers.shell_quote(out), data, helpers.shell_quote(nginx.url .. path)))
  local headers = {}
  for name, value in (helpers.read_file(hdr) or ""):gmatch "([%w%-]+):%s*([^\r\n]*)" do headers[name:lower()] = value end
  return tonumber(status), helpers.read_file(out) or "", headers
end

return fixture
