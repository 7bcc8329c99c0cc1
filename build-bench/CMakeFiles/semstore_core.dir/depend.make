# Empty dependencies file for semstore_core.
# This may be replaced when dependencies are built.
