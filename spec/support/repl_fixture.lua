-- What the REPL specs share: a migrated database with a user and a public
-- collection, a HOME of their own, and a way to type into `semstore repl`
-- through a pseudo-terminal (util-linux `script`).
require "semstore.compat" () -- Lua 5.4's library under LuaJIT too
local migrate = require "semstore.migrate"
local helpers = require "support.helpers"

local fixture = {}

-- The fixture of a describe block, filled by its lazy_setup and removed by
-- its lazy_teardown (busted's, which only spec files see: pass them).
function fixture.lazy(lazy_setup, lazy_teardown)
  local fx = {}
  lazy_setup(function()
    fx.scratch = helpers.scratch()
    assert(migrate.up(fx.scratch.db))
    local owner = assert(fx.scratch.db.users:create { username = "ada", email = "ada@example.org", password = "pw" })
    assert(fx.scratch.db.collections:create { name = "papers", owner_id = owner.id, embedding_model = "m", is_public = true })
    fx.home = helpers.tmpdir()
  end)
  lazy_teardown(function()
    helpers.remove_scratch(fx.scratch)
    helpers.rmdir(fx.home)
  end)

  -- `cd` to the checkout and the environment of a session: HOME (none when
  -- h is false), this database, the checkout's modules
  function fx.env_prefix(h)
    return string.format("cd %s && umask 022 && %s DATABASE_URL=%s LUA_PATH=%s LUA_CPATH=%s",
      helpers.shell_quote(helpers.root), h and ("HOME=" .. helpers.shell_quote(h)) or "env -u HOME",
      helpers.shell_quote(fx.scratch.url),
      helpers.shell_quote(helpers.root .. "/lua/?.lua;" .. helpers.root .. "/lua/?/init.lua;;"),
      helpers.shell_quote(helpers.cpath))
  end

  -- The screen of a session (carriage returns and terminal escapes
  -- removed), whether it exited 0, and its exit code. `steps` are lines
  -- (typed at once) or { delay, text } pairs (typed after delay seconds,
  -- text as printf %b reads it: "\\003" is Ctrl-C). h: the HOME (default
  -- the fixture's; false: none).
  function fx.session(steps, h)
    if h == nil then h = fx.home end
    local out = os.tmpname()
    local feed = {}
    for _, s in ipairs(steps) do
      if type(s) == "string" then
        feed[#feed + 1] = "printf '%s\\n' " .. helpers.shell_quote(s)
      else
        feed[#feed + 1] = string.format("sleep %s; printf %%b %s", s[1], helpers.shell_quote(s[2]))
      end
    end
    -- time to answer before the end of the input (Ctrl-D)
    feed[#feed + 1] = "sleep 1"
    -- script runs the command through $SHELL: exec, so that the REPL is
    -- the terminal's only process (a dash left waiting above it dies of the
    -- Ctrl-C the REPL survives); SHELL=/bin/sh as CI's environment has it
    local cmd = string.format("( %s ) | ( %s SHELL=/bin/sh timeout 60 script -qec %s /dev/null ) >%s 2>&1",
      table.concat(feed, "; "), fx.env_prefix(h), helpers.shell_quote("exec " .. helpers.lua_bin .. " bin/semstore repl"), out)
    local ok, _, code = os.execute(cmd)
    local screen = helpers.read_file(out)
    os.remove(out)
    return (screen:gsub("\r", ""):gsub("\27%[[%d;?]*%a", "")), ok == true, code
  end
  return fx
end

return fixture
