#!/usr/bin/env bash
# Runs the benchmarks on the throwaway servers: the PostgreSQL server pinned
# to one core and the Lua client to the other, so the scheduler moving them
# around does not drown the differences being measured.
# The Qdrant benchmark writes to a sink of its own (the Qdrant stand-in in
# --sink mode), pinned the same way; the Redis benchmark pins redis-server
# to that core too.
#   bash bench/run.sh [ARGS]          pg_query_bench.lua ARGS, then pg_pipeline_bench.lua, chunks_bench.lua (unpinned),
#                                     qdrant_bench.lua and redis_bench.lua with their defaults
#   bash bench/run.sh query [ARGS]    only pg_query_bench.lua [rounds]
#   bash bench/run.sh pipeline [ARGS]  only pg_pipeline_bench.lua [rows] [rounds]: single-row INSERTs,
#                                     db.pg:pipeline vs conn:query per row vs LuaSQL per row
#   bash bench/run.sh chunks [ARGS]   only chunks_bench.lua [rows] [rounds] [--rss [N]]
#   bash bench/run.sh qdrant [ARGS]   only qdrant_bench.lua [points] [rounds]
#   bash bench/run.sh redis [ARGS]    only redis_bench.lua [keys] [rounds] [pipeline]
#   bash bench/run.sh openresty [ARGS]  only openresty.lua [seconds] [connections] [documents] [rounds]:
#                                     /search through nginx (examples/openresty), worker threads vs the
#                                     request phase; needs nginx-light, libnginx-mod-http-lua and wrk,
#                                     builds build-luajit too; not part of the default run
#   bash bench/run.sh workflows [ARGS]  only workflows_bench.lua [documents] [rounds]: index_collection,
#                                     dense and hybrid searches, a zero-downtime rebuild (rates, no peer);
#                                     not part of the default run
# SEMSTORE_BENCH_BUILD names the build folder (default build).
set -euo pipefail
bench=all
case "${1:-}" in
  query|pipeline|chunks|qdrant|redis|openresty|workflows) bench=$1; shift ;;
esac
cd "$(dirname "$0")/.."
root=$(pwd)
bash scripts/install-deps.sh
build=${SEMSTORE_BENCH_BUILD:-build}
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build" -j2 >/dev/null
# the Qdrant benchmark's own needs: LuaSocket for its peer (b), the official
# JS client for its peer (a)
qdrant_deps() {
  if ! lua5.4 -e 'require "socket.http"' 2>/dev/null; then
    local sudo=()
    [ "$(id -u)" = 0 ] || sudo=(sudo)
    "${sudo[@]}" apt-get install -y lua-socket >/dev/null
  fi
  if [ ! -d bench/js/node_modules ]; then
    (cd bench/js && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
  fi
}
# the Redis benchmark's own needs: its peer, Debian's lua-redis (Lua 5.1-5.3
# only) under lua5.1, over LuaSocket; redis-benchmark comes with redis-server
redis_deps() {
  if ! lua5.1 -e 'require "redis"; require "socket"' 2>/dev/null; then
    local sudo=()
    [ "$(id -u)" = 0 ] || sudo=(sudo)
    "${sudo[@]}" apt-get install -y lua5.1 lua-socket lua-redis >/dev/null
  fi
}
# servers of this run's own, in a folder of its own
mkdir -p .run
run=$(mktemp -d "$root/.run/bench.XXXXXX")
sink_pid=
cleanup() {
  if [ -n "$sink_pid" ]; then kill "$sink_pid" 2>/dev/null || true; fi
  bash "$root/scripts/servers.sh" stop "$run"
}
trap cleanup EXIT
# the Qdrant sink: the stand-in answering upserts without reading them, on core 1
start_sink() {
  taskset -c 1 node tools/qdrant-standin/server.js --port 0 --sink >"$run/sink.out" 2>"$run/sink.log" &
  sink_pid=$!
  for _ in $(seq 100); do
    QDRANT_URL=$(sed -n 's/^Qdrant stand-in listening on //p' "$run/sink.out")
    [ -n "$QDRANT_URL" ] && break
    kill -0 "$sink_pid" 2>/dev/null || { cat "$run/sink.log" >&2; exit 1; }
    sleep 0.1
  done
  [ -n "$QDRANT_URL" ] || { echo "run.sh: the Qdrant sink did not start" >&2; exit 1; }
}
if [ "$bench" != qdrant ]; then
  SEMSTORE_RUN_OWNER=$$ bash scripts/servers.sh start "$run"
  # shellcheck disable=SC1091
  source "$run/env"
  # backends fork from the postmaster and inherit its core
  taskset -a -cp 1 "$(head -n 1 "$SEMSTORE_TEST_PG_DATA/postmaster.pid")" >/dev/null
fi
# The chunks benchmark runs unpinned: its two-connection contenders need
# both cores for the server's two backends (new backends inherit this).
unpin_pg() { taskset -a -cp 0-1 "$(head -n 1 "$SEMSTORE_TEST_PG_DATA/postmaster.pid")" >/dev/null; }
export LUA_PATH='lua/?.lua;lua/?/init.lua;;' LUA_CPATH="$build/?.so;;"
qdrant() {
  qdrant_deps
  start_sink
  QDRANT_URL=$QDRANT_URL SINK_PID=$sink_pid taskset -c 0 lua5.4 bench/qdrant_bench.lua "$@"
}
redis() {
  redis_deps
  local port pid
  port=${REDIS_URL##*:}
  port=${port%%/*}
  pid=$(redis-cli -p "$port" info server | tr -d '\r' | sed -n 's/^process_id://p')
  [ -n "$pid" ] || { echo "run.sh: no redis-server answers on port $port" >&2; exit 1; }
  # redis-server on core 1 (with its background threads), the clients on core 0
  taskset -a -cp 1 "$pid" >/dev/null
  REDIS_PID=$pid taskset -c 0 lua5.4 bench/redis_bench.lua "$@"
}
# the OpenResty benchmark's own needs: nginx with lua-nginx-module, wrk,
# and the LuaJIT build of the module nginx loads
openresty_deps() {
  if [ ! -e /usr/lib/nginx/modules/ngx_http_lua_module.so ] || ! command -v wrk >/dev/null; then
    local sudo=()
    [ "$(id -u)" = 0 ] || sudo=(sudo)
    "${sudo[@]}" apt-get install -y nginx-light libnginx-mod-http-lua wrk >/dev/null
  fi
  cmake -S . -B build-luajit -DCMAKE_BUILD_TYPE=Release -DSEMSTORE_LUA=luajit >/dev/null
  cmake --build build-luajit -j2 >/dev/null
}
case "$bench" in
  openresty) openresty_deps; lua5.4 bench/openresty.lua "$@" ;;
  query) taskset -c 0 lua5.4 bench/pg_query_bench.lua "$@" ;;
  pipeline) taskset -c 0 lua5.4 bench/pg_pipeline_bench.lua "$@" ;;
  chunks) unpin_pg; lua5.4 bench/chunks_bench.lua "$@" ;;
  workflows) unpin_pg; lua5.4 bench/workflows_bench.lua "$@" ;;
  qdrant) qdrant "$@" ;;
  redis) redis "$@" ;;
  all)
    taskset -c 0 lua5.4 bench/pg_query_bench.lua "$@"
    taskset -c 0 lua5.4 bench/pg_pipeline_bench.lua
    unpin_pg
    lua5.4 bench/chunks_bench.lua
    qdrant
    redis
    ;;
esac
