-- Starts and stops examples/openresty/nginx.conf in a folder of its own
-- (the prefix: pid file, logs, temporary files), on a port of one's choice.
-- Runs under Lua 5.4 and LuaJIT. As a command:
--   lua5.4 examples/openresty/launch.lua start DIR [PORT]   (default 8080)
--   lua5.4 examples/openresty/launch.lua stop DIR
-- As a module (spec/openresty_spec.lua, bench/openresty.lua):
--   local launch = dofile "examples/openresty/launch.lua"
--   local nginx = assert(launch.start { dir =, port =, root =, env = { DATABASE_URL = ... } })
--   launch.stop(nginx.dir)
-- The environment's DATABASE_URL, REDIS_URL and QDRANT_URL reach the
-- handlers (nginx.conf's `env` lines); opts.env overrides them.
local M = {}

local function shell_quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

-- what a shell command printed
local function read_command(cmd)
  local p = assert(io.popen(cmd))
  local out = p:read "*a"
  p:close()
  return out
end

-- true when the shell command succeeded (os.execute's result differs
-- between Lua 5.1 and 5.2+)
local function run(cmd)
  local a, _, c = os.execute(cmd)
  if type(a) == "number" then return a == 0 end
  return a == true and (c == nil or c == 0)
end

local function read_file(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local text = f:read "*a"
  f:close()
  return text
end

local function write_file(path, text)
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
end

local function sleep(seconds) run(string.format("sleep %.3f", seconds)) end

local function alive(pid) return run("kill -0 " .. pid .. " 2>/dev/null") end

-- The checkout this file is in.
function M.default_root()
  local source = debug.getinfo(1, "S").source:gsub("^@", "")
  local dir = source:match "^(.*)/examples/openresty/[^/]*$" or "."
  return (read_command("cd " .. shell_quote(dir) .. " && pwd -P"):gsub("%s+$", ""))
end

-- Whether nginx and lua-nginx-module are installed: true, or false and why not.
M.NGINX = "/usr/sbin/nginx"
M.MODULES = { "/usr/lib/nginx/modules/ndk_http_module.so", "/usr/lib/nginx/modules/ngx_http_lua_module.so" }
function M.available()
  if not read_file(M.NGINX) then return false, M.NGINX .. " is not installed (apt-get install nginx-light)" end
  for _, path in ipairs(M.MODULES) do
    if not read_file(path) then return false, path .. " is not installed (apt-get install libnginx-mod-http-lua)" end
  end
  return true
end

-- nginx.conf with the checkout, the port and, when started as root, the
-- `user` line filled in.
function M.render(root, port)
  local template = assert(read_file(root .. "/examples/openresty/nginx.conf"))
  local text = template:gsub("/path/to/semstore", function() return root end)
  text = text:gsub("127%.0%.0%.1:8080", "127.0.0.1:" .. port)
  if read_command("id -u"):match "^0%s" then text = text:gsub("\n#user root root;", "\nuser root root;") end
  return text
end

-- A loopback TCP port nothing listens on (from /proc/net/tcp and tcp6),
-- between 20000 and 29999, below the kernel's range for outgoing connections.
function M.free_port()
  local busy = {}
  for _, path in ipairs { "/proc/net/tcp", "/proc/net/tcp6" } do
    local f = io.open(path)
    if f then
      for line in f:lines() do
        local port, state = line:match "^%s*%d+: %x+:(%x+) %x+:%x+ (%x%x)"
        if port and state == "0A" then busy[tonumber(port, 16)] = true end
      end
      f:close()
    end
  end
  for _ = 1, 100 do
    local port = math.random(20000, 29999)
    if not busy[port] then return port end
  end
  error "no free port between 20000 and 29999"
end

local function pid_of(dir)
  local text = read_file(dir .. "/logs/nginx.pid")
  return text and text:match "^(%d+)"
end

-- Starts nginx in `dir` (made if missing) on `port`: { dir =, port =, pid =,
-- url = } once /ping answers, or nil, err (with the error log's end).
function M.start(opts)
  local dir, port = assert(opts.dir, "dir"), assert(tonumber(opts.port), "port")
  local root = opts.root or M.default_root()
  -- a second nginx in the folder would overwrite the first one's pid file,
  -- and stop() could then never find the first
  local running = pid_of(dir)
  if running and alive(running) then
    return nil, "nginx already runs in " .. dir .. " (pid " .. running .. "): stop it first"
  end
  assert(run("mkdir -p " .. shell_quote(dir .. "/logs") .. " " .. shell_quote(dir .. "/tmp")))
  local conf = dir .. "/nginx.conf"
  write_file(conf, M.render(root, port))
  local sets = {}
  for k, v in pairs(opts.env or {}) do sets[#sets + 1] = k .. "=" .. shell_quote(v) end
  local cmd = string.format("env %s %s -p %s -c %s -e %s >%s 2>&1", table.concat(sets, " "), M.NGINX,
    shell_quote(dir .. "/"), shell_quote(conf), shell_quote(dir .. "/logs/error.log"), shell_quote(dir .. "/logs/start.out"))
  local url = "http://127.0.0.1:" .. port
  if not run(cmd) then
    return nil, "nginx did not start: " .. (read_file(dir .. "/logs/start.out") or "") .. (read_file(dir .. "/logs/error.log") or "")
  end
  -- the master writes its pid file before it forks the worker: wait for /ping
  for _ = 1, 100 do
    if read_command("curl -s -m 1 " .. url .. "/ping 2>/dev/null"):match "pong" then
      return { dir = dir, port = port, pid = pid_of(dir), url = url }
    end
    sleep(0.05)
  end
  M.stop(dir)
  return nil, "nginx started but /ping did not answer: " .. (read_file(dir .. "/logs/error.log") or "")
end

-- The master's children (its workers and cache processes).
local function children(pid)
  local out = {}
  for child in read_command("pgrep -P " .. pid .. " 2>/dev/null"):gmatch "%d+" do out[#out + 1] = child end
  return out
end

-- Stops the nginx whose pid file is in `dir` and waits until the master and
-- its workers are gone (SIGKILL after 10 s). true, or false when none ran.
function M.stop(dir)
  local pid = pid_of(dir)
  if not pid or not alive(pid) then return false end
  local pids = children(pid)
  pids[#pids + 1] = pid
  run("kill -TERM " .. pid .. " 2>/dev/null")
  for _ = 1, 200 do
    local left = false
    for _, p in ipairs(pids) do if alive(p) then left = true end end
    if not left then return true end
    sleep(0.05)
  end
  for _, p in ipairs(pids) do run("kill -KILL " .. p .. " 2>/dev/null") end
  return true
end

if arg and type(arg[0]) == "string" and arg[0]:match "launch%.lua$" then
  -- run as a command (not through dofile or require)
  local cmd, dir, port = arg[1], arg[2], arg[3]
  if cmd == "start" and dir then
    local ok, why = M.available()
    if not ok then io.stderr:write(why, "\n") os.exit(1) end
    local nginx, err = M.start { dir = dir, port = port or 8080 }
    if not nginx then io.stderr:write(err, "\n") os.exit(1) end
    print(string.format("nginx (pid %s) at %s; logs in %s/logs", nginx.pid, nginx.url, dir))
  elseif cmd == "stop" and dir then
    print(M.stop(dir) and "stopped" or "not running")
  else
    io.stderr:write "usage: launch.lua start DIR [PORT] | stop DIR\n"
    os.exit(2)
  end
end

M.read_command = read_command

return M
