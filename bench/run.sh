#!/usr/bin/env bash
# Runs the benchmarks on the throwaway servers: the PostgreSQL server pinned
# to one core and the Lua client to the other, so the scheduler moving them
# around does not drown the differences being measured.
#   bash bench/run.sh [ARGS]          pg_query_bench.lua ARGS, then chunks_bench.lua with its defaults
#   bash bench/run.sh query [ARGS]    only pg_query_bench.lua [rounds]
#   bash bench/run.sh chunks [ARGS]   only chunks_bench.lua [rows] [rounds] [--rss [N]]
set -euo pipefail
bench=all
case "${1:-}" in
  query|chunks) bench=$1; shift ;;
esac
cd "$(dirname "$0")/.."
root=$(pwd)
bash scripts/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j2 >/dev/null
# servers of this run's own, in a folder of its own
mkdir -p .run
run=$(mktemp -d "$root/.run/bench.XXXXXX")
trap 'bash "$root/scripts/servers.sh" stop "$run"' EXIT
SEMSTORE_RUN_OWNER=$$ bash scripts/servers.sh start "$run"
# shellcheck disable=SC1091
source "$run/env"
# backends fork from the postmaster and inherit its core
taskset -a -cp 1 "$(head -n 1 "$SEMSTORE_TEST_PG_DATA/postmaster.pid")" >/dev/null
export LUA_PATH='lua/?.lua;lua/?/init.lua;;' LUA_CPATH='build/?.so;;'
case "$bench" in
  query) taskset -c 0 lua5.4 bench/pg_query_bench.lua "$@" ;;
  chunks) taskset -c 0 lua5.4 bench/chunks_bench.lua "$@" ;;
  all)
    taskset -c 0 lua5.4 bench/pg_query_bench.lua "$@"
    taskset -c 0 lua5.4 bench/chunks_bench.lua
    ;;
esac
