#!/usr/bin/env bash
# The main job: builds semstore, starts throwaway PostgreSQL and Redis
# servers and the Qdrant stand-in on loopback, migrates (semstore's schema, then examples/migrations),
# seeds, checks health, and runs examples/quickstart.lua and
# examples/qdrant_search.lua (on the Qdrant stand-in) against them.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
bash scripts/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j2 >/dev/null
# servers of this run's own, in a folder of its own
mkdir -p .run
run=$(mktemp -d "$root/.run/demo.XXXXXX")
trap 'bash "$root/scripts/servers.sh" stop "$run"' EXIT
SEMSTORE_RUN_OWNER=$$ bash scripts/servers.sh start "$run"
# shellcheck disable=SC1091
source "$run/env"
export LUA_PATH='lua/?.lua;lua/?/init.lua;;' LUA_CPATH='build/?.so;;'
semstore() { lua5.4 bin/semstore "$@"; }
semstore migrate up --dir examples/migrations
semstore migrate status --dir examples/migrations
semstore seed examples/seed.lua 1000
semstore health
lua5.4 examples/quickstart.lua
lua5.4 examples/qdrant_search.lua
