# Empty compiler generated dependencies file for semstore_lua.
# This may be replaced when dependencies are built.
