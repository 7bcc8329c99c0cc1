rockspec_format = "3.0"
package = "semstore"
version = "dev-1"
source = { url = "git+file:///dev/null" }
description = {
  summary = "A native data layer for Lua: PostgreSQL pool, typed queries and transactions in C",
  license = "MIT",
}
-- Lua 5.4, or LuaJIT 2.1 (which reports 5.1): the build follows the
-- headers of whichever Lua luarocks runs. Under LuaJIT the C build needs
-- lua-compat-5.3's header and the Lua modules its compat53 module (Debian:
-- lua-compat53-dev, lua-compat53), which luarocks would otherwise fetch.
dependencies = { "lua >= 5.1" }
-- LuaFileSystem, which the migration runner needs, comes from Debian's
-- lua-filesystem: listed here, luarocks would fetch it from its registry.
-- libpq, libxcrypt, libcrypto and double-conversion, found by CMake through pkg-config
-- (Debian: libpq-dev, libcrypt-dev, libssl-dev, libdouble-conversion-dev); a C++
-- compiler for the double-conversion shim (Debian: g++, in build-essential)
build = {
  type = "cmake",
  variables = {
    CMAKE_BUILD_TYPE = "Release",
    CMAKE_INSTALL_PREFIX = "$(PREFIX)",
    LUA_INCDIR = "$(LUA_INCDIR)",
    SEMSTORE_LUA_LIBDIR = "$(LIBDIR)",
    SEMSTORE_LUA_DIR = "$(LUADIR)",
  },
  install = { bin = { semstore = "bin/semstore" } },
  copy_directories = { "examples" },
}
