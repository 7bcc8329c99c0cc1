file(REMOVE_RECURSE
  "libsemstore_core.a"
)
