#!/usr/bin/env bash
# Runs spec/chunks_bulk_attacks_spec.lua (or the `it`s matching $1) under
# valgrind as scripts/test.sh does; exit status 99 means valgrind found
# errors (see the log it prints). Needs `bash scripts/servers.sh start;
# source .run/env` and a build in build/.
set -u
cd "$(dirname "$0")/../.."
log=$(mktemp /tmp/valgrind-attacks.XXXXXX.log)
export LUA_PATH='lua/?.lua;lua/?/init.lua;spec/?.lua;;' LUA_CPATH='build/?.so;;'
SEMSTORE_UNDER_VALGRIND=1 valgrind --quiet --error-exitcode=99 --leak-check=full \
  --errors-for-leak-kinds=definite --show-leak-kinds=definite --suppressions=scripts/valgrind.supp \
  --log-file="$log" lua5.4 /usr/bin/busted -o plainTerminal ${1:+--filter="$1"} spec/chunks_bulk_attacks_spec.lua
status=$?
echo "valgrind exit status $status; log $log:"
head -40 "$log"
exit $status
