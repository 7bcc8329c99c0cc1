
# Consider dependencies only in project.
set(CMAKE_DEPENDS_IN_PROJECT_ONLY OFF)

# The set of languages for which implicit dependencies are needed:
set(CMAKE_DEPENDS_LANGUAGES
  )

# The set of dependency files which are needed:
set(CMAKE_DEPENDS_DEPENDENCY_FILES
  "/work/main/csrc/lua/chunks_bulk.c" "CMakeFiles/semstore_lua.dir/csrc/lua/chunks_bulk.c.o" "gcc" "CMakeFiles/semstore_lua.dir/csrc/lua/chunks_bulk.c.o.d"
  "/work/main/csrc/lua/config.c" "CMakeFiles/semstore_lua.dir/csrc/lua/config.c.o" "gcc" "CMakeFiles/semstore_lua.dir/csrc/lua/config.c.o.d"
  "/work/main/csrc/lua/conn_handle.c" "CMakeFiles/semstore_lua.dir/csrc/lua/conn_handle.c.o" "gcc" "CMakeFiles/semstore_lua.dir/csrc/lua/conn_handle.c.o.d"
  "/work/main/csrc/lua/convert.c" "CMakeFiles/semstore_lua.dir/csrc/lua/convert.c.o" "gcc" "CMakeFiles/semstore_lua.dir/csrc/lua/convert.c.o.d"
  "/work/main/csrc/lua/errors.c" "CMakeFiles/semstore_lua.dir/csrc/lua/errors.c.o" "gcc" "CMakeFiles/semstore_lua.dir/csrc/lua/errors.c.o.d"
  "/work/main/csrc/lua/json_decode.c" "CMakeFiles/semstore_lua.dir/csrc/lua/json_decode.c.o" "gcc" "CMakeFiles/semstore_lua.dir/csrc/lua/json_decode.c.o.d"
  "/work/main/csrc/lua/json_encode.c" "CMakeFiles/semstore_lua.dir/csrc/lua/json_encode.c.o" "gcc" "CMakeFiles/semstore_lua.dir/csrc/lua/json_encode.c.o.d"
  "/work/main/csrc/lua/pool_handle.c" "CMakeFiles/semstore_lua.dir/csrc/lua/pool_handle.c.o" "gcc" "CMakeFiles/semstore_lua.dir/csrc/lua/pool_handle.c.o.d"
  "/work/main/csrc/lua/qdrant_handle.c" "CMakeFiles/semstore_lua.dir/csrc/lua/qdrant_handle.c.o" "gcc" "CMakeFiles/semstore_lua.dir/csrc/lua/qdrant_handle.c.o.d"
  "/work/main/csrc/lua/quote.c" "CMakeFiles/semstore_lua.dir/csrc/lua/quote.c.o" "gcc" "CMakeFiles/semstore_lua.dir/csrc/lua/quote.c.o.d"
  "/work/main/csrc/lua/repositories.c" "CMakeFiles/semstore_lua.dir/csrc/lua/repositories.c.o" "gcc" "CMakeFiles/semstore_lua.dir/csrc/lua/repositories.c.o.d"
  "/work/main/csrc/lua/rows.c" "CMakeFiles/semstore_lua.dir/csrc/lua/rows.c.o" "gcc" "CMakeFiles/semstore_lua.dir/csrc/lua/rows.c.o.d"
  "/work/main/csrc/lua/semstore.c" "CMakeFiles/semstore_lua.dir/csrc/lua/semstore.c.o" "gcc" "CMakeFiles/semstore_lua.dir/csrc/lua/semstore.c.o.d"
  )

# Targets to which this target links.
set(CMAKE_TARGET_LINKED_INFO_FILES
  "/work/main/build-bench/CMakeFiles/semstore_core.dir/DependInfo.cmake"
  )

# Fortran module output directory.
set(CMAKE_Fortran_TARGET_MODULE_DIR "")
