#!/usr/bin/env bash
# The main job: installs what is missing, builds semstore, brings up
# throwaway PostgreSQL and Redis servers and the Qdrant stand-in on loopback
# (or uses DATABASE_URL, REDIS_URL and QDRANT_URL when all three are set),
# migrates, seeds users, collections and a few hundred documents
# (examples/seed_dev_data.lua: chunked, embedded and indexed, with a progress
# bar on a terminal), checks health and integrity, and runs dense and
# hybrid searches printed as a table. Seeding is idempotent: a second run
# against the same servers finds everything there.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
bash scripts/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j2 >/dev/null
if [ -n "${DATABASE_URL:-}" ] && [ -n "${REDIS_URL:-}" ] && [ -n "${QDRANT_URL:-}" ]; then
  echo "using the servers DATABASE_URL, REDIS_URL and QDRANT_URL name"
else
  # servers of this run's own, in a folder of its own
  mkdir -p .run
  run=$(mktemp -d "$root/.run/demo.XXXXXX")
  trap 'bash "$root/scripts/servers.sh" stop "$run"' EXIT
  SEMSTORE_RUN_OWNER=$$ bash scripts/servers.sh start "$run"
  # shellcheck disable=SC1091
  source "$run/env"
fi
export LUA_PATH="$root/lua/?.lua;$root/lua/?/init.lua;;" LUA_CPATH="$root/build/?.so;;"
semstore() { lua5.4 bin/semstore "$@"; }
semstore wait --timeout 60
semstore migrate up --dir examples/migrations
semstore migrate status --dir examples/migrations
echo "== seeding and indexing"
semstore seed examples/seed_dev_data.lua 300
echo "== health"
semstore health
semstore check
echo "== search"
semstore run examples/search.lua
echo "== the other examples"
lua5.4 examples/quickstart.lua
lua5.4 examples/qdrant_search.lua
