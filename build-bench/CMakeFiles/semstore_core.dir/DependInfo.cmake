
# Consider dependencies only in project.
set(CMAKE_DEPENDS_IN_PROJECT_ONLY OFF)

# The set of languages for which implicit dependencies are needed:
set(CMAKE_DEPENDS_LANGUAGES
  )

# The set of dependency files which are needed:
set(CMAKE_DEPENDS_DEPENDENCY_FILES
  "/work/main/csrc/core/buf.c" "CMakeFiles/semstore_core.dir/csrc/core/buf.c.o" "gcc" "CMakeFiles/semstore_core.dir/csrc/core/buf.c.o.d"
  "/work/main/csrc/core/chunks_bulk.c" "CMakeFiles/semstore_core.dir/csrc/core/chunks_bulk.c.o" "gcc" "CMakeFiles/semstore_core.dir/csrc/core/chunks_bulk.c.o.d"
  "/work/main/csrc/core/error.c" "CMakeFiles/semstore_core.dir/csrc/core/error.c.o" "gcc" "CMakeFiles/semstore_core.dir/csrc/core/error.c.o.d"
  "/work/main/csrc/core/hashtext.c" "CMakeFiles/semstore_core.dir/csrc/core/hashtext.c.o" "gcc" "CMakeFiles/semstore_core.dir/csrc/core/hashtext.c.o.d"
  "/work/main/csrc/core/json.c" "CMakeFiles/semstore_core.dir/csrc/core/json.c.o" "gcc" "CMakeFiles/semstore_core.dir/csrc/core/json.c.o.d"
  "/work/main/csrc/core/password.c" "CMakeFiles/semstore_core.dir/csrc/core/password.c.o" "gcc" "CMakeFiles/semstore_core.dir/csrc/core/password.c.o.d"
  "/work/main/csrc/core/pg.c" "CMakeFiles/semstore_core.dir/csrc/core/pg.c.o" "gcc" "CMakeFiles/semstore_core.dir/csrc/core/pg.c.o.d"
  "/work/main/csrc/core/pg_copy.c" "CMakeFiles/semstore_core.dir/csrc/core/pg_copy.c.o" "gcc" "CMakeFiles/semstore_core.dir/csrc/core/pg_copy.c.o.d"
  "/work/main/csrc/core/pg_quote.c" "CMakeFiles/semstore_core.dir/csrc/core/pg_quote.c.o" "gcc" "CMakeFiles/semstore_core.dir/csrc/core/pg_quote.c.o.d"
  "/work/main/csrc/core/pool.c" "CMakeFiles/semstore_core.dir/csrc/core/pool.c.o" "gcc" "CMakeFiles/semstore_core.dir/csrc/core/pool.c.o.d"
  "/work/main/csrc/core/qdrant.c" "CMakeFiles/semstore_core.dir/csrc/core/qdrant.c.o" "gcc" "CMakeFiles/semstore_core.dir/csrc/core/qdrant.c.o.d"
  "/work/main/csrc/core/redact.c" "CMakeFiles/semstore_core.dir/csrc/core/redact.c.o" "gcc" "CMakeFiles/semstore_core.dir/csrc/core/redact.c.o.d"
  "/work/main/csrc/core/repo.c" "CMakeFiles/semstore_core.dir/csrc/core/repo.c.o" "gcc" "CMakeFiles/semstore_core.dir/csrc/core/repo.c.o.d"
  "/work/main/csrc/core/repo_rules.c" "CMakeFiles/semstore_core.dir/csrc/core/repo_rules.c.o" "gcc" "CMakeFiles/semstore_core.dir/csrc/core/repo_rules.c.o.d"
  "/work/main/csrc/core/repo_statements.c" "CMakeFiles/semstore_core.dir/csrc/core/repo_statements.c.o" "gcc" "CMakeFiles/semstore_core.dir/csrc/core/repo_statements.c.o.d"
  "/work/main/csrc/core/value.c" "CMakeFiles/semstore_core.dir/csrc/core/value.c.o" "gcc" "CMakeFiles/semstore_core.dir/csrc/core/value.c.o.d"
  "/work/main/csrc/core/float_text.cc" "CMakeFiles/semstore_core.dir/csrc/core/float_text.cc.o" "gcc" "CMakeFiles/semstore_core.dir/csrc/core/float_text.cc.o.d"
  )

# Targets to which this target links.
set(CMAKE_TARGET_LINKED_INFO_FILES
  )

# Fortran module output directory.
set(CMAKE_Fortran_TARGET_MODULE_DIR "")
