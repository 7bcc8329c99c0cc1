rockspec_format = "3.0"
package = "semstore"
version = "dev-1"
source = { url = "git+file:///dev/null" }
description = {
  summary = "A native data layer for Lua: PostgreSQL pool, typed queries and transactions in C",
  license = "MIT",
}
dependencies = { "lua >= 5.4" }
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
