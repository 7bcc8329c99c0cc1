file(REMOVE_RECURSE
  "CMakeFiles/semstore_lua.dir/csrc/lua/chunks_bulk.c.o"
  "CMakeFiles/semstore_lua.dir/csrc/lua/chunks_bulk.c.o.d"
  "CMakeFiles/semstore_lua.dir/csrc/lua/config.c.o"
  "CMakeFiles/semstore_lua.dir/csrc/lua/config.c.o.d"
  "CMakeFiles/semstore_lua.dir/csrc/lua/conn_handle.c.o"
  "CMakeFiles/semstore_lua.dir/csrc/lua/conn_handle.c.o.d"
  "CMakeFiles/semstore_lua.dir/csrc/lua/convert.c.o"
  "CMakeFiles/semstore_lua.dir/csrc/lua/convert.c.o.d"
  "CMakeFiles/semstore_lua.dir/csrc/lua/errors.c.o"
  "CMakeFiles/semstore_lua.dir/csrc/lua/errors.c.o.d"
  "CMakeFiles/semstore_lua.dir/csrc/lua/json_decode.c.o"
  "CMakeFiles/semstore_lua.dir/csrc/lua/json_decode.c.o.d"
  "CMakeFiles/semstore_lua.dir/csrc/lua/json_encode.c.o"
  "CMakeFiles/semstore_lua.dir/csrc/lua/json_encode.c.o.d"
  "CMakeFiles/semstore_lua.dir/csrc/lua/pool_handle.c.o"
  "CMakeFiles/semstore_lua.dir/csrc/lua/pool_handle.c.o.d"
  "CMakeFiles/semstore_lua.dir/csrc/lua/qdrant_handle.c.o"
  "CMakeFiles/semstore_lua.dir/csrc/lua/qdrant_handle.c.o.d"
  "CMakeFiles/semstore_lua.dir/csrc/lua/quote.c.o"
  "CMakeFiles/semstore_lua.dir/csrc/lua/quote.c.o.d"
  "CMakeFiles/semstore_lua.dir/csrc/lua/repositories.c.o"
  "CMakeFiles/semstore_lua.dir/csrc/lua/repositories.c.o.d"
  "CMakeFiles/semstore_lua.dir/csrc/lua/rows.c.o"
  "CMakeFiles/semstore_lua.dir/csrc/lua/rows.c.o.d"
  "CMakeFiles/semstore_lua.dir/csrc/lua/semstore.c.o"
  "CMakeFiles/semstore_lua.dir/csrc/lua/semstore.c.o.d"
  "semstore/core.pdb"
  "semstore/core.so"
)

# Per-language clean rules from dependency scanning.
foreach(lang C)
  include(CMakeFiles/semstore_lua.dir/cmake_clean_${lang}.cmake OPTIONAL)
endforeach()
