#!/usr/bin/env bash
# Runs the benchmarks on the throwaway servers: the PostgreSQL server pinned
# to one core and the Lua client to the other, so the scheduler moving them
# around does not drown the differences being measured.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j2 >/dev/null
bash scripts/servers.sh start
trap 'bash scripts/servers.sh stop' EXIT
# shellcheck disable=SC1091
source .run/env
# backends fork from the postmaster and inherit its core
taskset -a -cp 1 "$(head -n 1 "$SEMSTORE_TEST_PG_DATA/postmaster.pid")" >/dev/null
export LUA_PATH='lua/?.lua;lua/?/init.lua;;' LUA_CPATH='build/?.so;;'
taskset -c 0 lua5.4 bench/pg_query_bench.lua "$@"
