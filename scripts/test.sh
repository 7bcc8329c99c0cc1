#!/usr/bin/env bash
# The one test command: installs what is missing, builds, starts throwaway
# PostgreSQL and Redis servers and the Qdrant stand-in, runs the C unit
# tests, the stand-in's own tests (node --test), the busted specs under
# Lua 5.4 and under LuaJIT (the module built for each), and the 5.4 specs
# once more under valgrind, then stops the servers. Its last line
# is `N passed, N failed`. Each run has its own servers, on free ports, and
# its own folder .run/test.XXXXXX, so runs at once do not meet; when a test
# fails, the folder's logs/ (with the servers' logs) is kept.
set -uo pipefail
cd "$(dirname "$0")/.."
root=$(pwd -P)

passed=0
failed=0
run=
logs=
finish() {
  if [ -n "$run" ]; then
    if [ "$failed" -ne 0 ]; then
      bash scripts/servers.sh logs "$run" "$logs/servers" >/dev/null 2>&1
      rmdir "$logs/servers" 2>/dev/null
    fi
    bash scripts/servers.sh stop "$run" >/dev/null 2>&1
    if [ "$failed" -ne 0 ] && [ -n "$(ls -A "$logs" 2>/dev/null)" ]; then
      if [ -d "$logs/servers" ]; then
        echo "logs kept in $logs (PostgreSQL's and Redis's in $logs/servers)"
      else
        echo "logs kept in $logs"
      fi
    else
      rm -rf "$logs"
      rmdir "$run" 2>/dev/null
    fi
  fi
  echo "$passed passed, $failed failed"
  [ "$failed" -eq 0 ]
  exit $?
}

bash scripts/install-deps.sh || { failed=1; echo "could not install the dependencies"; finish; }
mkdir -p .run
# runs at once in this checkout take turns at building
if ! (
  flock 9
  cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSEMSTORE_TESTS=ON >/dev/null &&
    cmake --build build -j2 2>&1 | grep -E "warning|error"
  [ "${PIPESTATUS[0]}" -eq 0 ] || exit 1
  # the module again for LuaJIT 2.1 (OpenResty's): the specs run under both
  cmake -S . -B build-luajit -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSEMSTORE_LUA=luajit >/dev/null &&
    cmake --build build-luajit -j2 2>&1 | grep -E "warning|error"
  [ "${PIPESTATUS[0]}" -eq 0 ]
) 9>.run/build.lock; then
  failed=1
  echo "the build failed"
  finish
fi

run=$(mktemp -d "$root/.run/test.XXXXXX") || { failed=1; echo "could not make a folder in .run"; finish; }
logs="$run/logs"
mkdir -p "$logs"
# finish stops the servers; this is for a run that is interrupted
trap 'bash "$root/scripts/servers.sh" stop "$run" >/dev/null 2>&1' EXIT
SEMSTORE_RUN_OWNER=$$ bash scripts/servers.sh start "$run" || { failed=1; echo "the servers did not start"; finish; }
# shellcheck disable=SC1091
source "$run/env"
export LUA_PATH='lua/?.lua;lua/?/init.lua;spec/?.lua;;' LUA_CPATH='build/?.so;;'

# Adds the counts of a line "N passed, N failed" in the output $1 of
# program $3; a program that printed none (it crashed), or whose exit
# status $2 is not 0 though it reported no failure (or is neither 0 nor the
# harness's 1), counts as one more failure.
count_c() {
  local line p f
  line=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$1" | tail -n 1)
  if [ -z "$line" ]; then
    echo "$3: no summary line, exit status $2"
    failed=$((failed + 1))
    return
  fi
  p=$(echo "$line" | cut -d' ' -f1)
  f=$(echo "$line" | cut -d' ' -f3)
  passed=$((passed + p))
  failed=$((failed + f))
  if [ "$2" -ne 0 ] && { [ "$f" -eq 0 ] || [ "$2" -ne 1 ]; }; then
    echo "$3: exit status $2 after \"$line\""
    failed=$((failed + 1))
  fi
}

# busted prints "N successes / N failures / N errors / N pending" (or
# "1 success"), in the output $1; no summary at all, or an exit status $2
# that is not 0 though it reported no failure, counts as one failure.
count_busted() {
  local line s f e
  line=$(grep -E '^[0-9]+ success(es)? / [0-9]+ failures? / [0-9]+ errors? /' "$1" | tail -n 1)
  if [ -z "$line" ]; then
    echo "busted: no summary line, exit status $2"
    failed=$((failed + 1))
    return 1
  fi
  s=$(echo "$line" | awk '{print $1}')
  f=$(echo "$line" | awk '{print $4}')
  e=$(echo "$line" | awk '{print $7}')
  passed=$((passed + s))
  failed=$((failed + f + e))
  if [ "$2" -ne 0 ] && [ $((f + e)) -eq 0 ]; then
    echo "busted: exit status $2 after \"$line\""
    failed=$((failed + 1))
    return 1
  fi
  [ $((f + e)) -eq 0 ]
}

echo "== C unit tests"
for t in build/tests/test_*; do
  [ -x "$t" ] || continue
  log="$logs/$(basename "$t").log"
  "$t" > "$log" 2>&1
  status=$?
  tail -n 1 "$log" | sed "s|^|$(basename "$t"): |"
  grep -E '^FAIL' "$log" || true
  count_c "$log" "$status" "$(basename "$t")"
done

# node --test ends with "# pass N" and "# fail N" lines, in the output $1;
# none (it crashed), or an exit status $2 that is not 0 though it reported
# no failure, counts as one failure.
count_node() {
  local p f
  p=$(grep -E '^# pass [0-9]+$' "$1" | tail -n 1 | awk '{print $3}')
  f=$(grep -E '^# fail [0-9]+$' "$1" | tail -n 1 | awk '{print $3}')
  if [ -z "$p" ] || [ -z "$f" ]; then
    echo "node --test: no summary lines, exit status $2"
    failed=$((failed + 1))
    return
  fi
  passed=$((passed + p))
  failed=$((failed + f))
  if [ "$2" -ne 0 ] && [ "$f" -eq 0 ]; then
    echo "node --test: exit status $2 after \"# pass $p\", \"# fail $f\""
    failed=$((failed + 1))
  fi
}

echo "== Qdrant stand-in tests (node --test)"
(cd tools/qdrant-standin && node --test --test-reporter=tap test.js) > "$logs/qdrant-standin.log" 2>&1
status=$?
grep -E '^(not ok|# (pass|fail) )' "$logs/qdrant-standin.log"
count_node "$logs/qdrant-standin.log" "$status"

echo "== busted specs (Lua 5.4)"
lua5.4 /usr/bin/busted --output=plainTerminal spec/ 2>&1 | tee "$logs/busted.log"
count_busted "$logs/busted.log" "${PIPESTATUS[0]}"

echo "== busted specs (LuaJIT)"
LUA_CPATH='build-luajit/?.so;;' luajit /usr/bin/busted --output=plainTerminal spec/ 2>&1 | tee "$logs/busted-luajit.log"
count_busted "$logs/busted-luajit.log" "${PIPESTATUS[0]}"

if [ "${SEMSTORE_SKIP_VALGRIND:-0}" != 1 ]; then
  echo "== the C tests and the specs again under valgrind"
  vg_c_ok=1
  for t in build/tests/test_*; do
    [ -x "$t" ] || continue
    valgrind --quiet --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite \
      --show-leak-kinds=definite --suppressions=scripts/valgrind.supp \
      --log-file="$logs/valgrind-$(basename "$t").log" "$t" > "$logs/$(basename "$t")-valgrind.out" 2>&1
    status=$?
    # any exit status but 0: a failed test, a crash, or (99) valgrind's errors
    if [ "$status" -ne 0 ]; then
      vg_c_ok=0
      echo "$(basename "$t") under valgrind: exit status $status"
    fi
  done
  SEMSTORE_UNDER_VALGRIND=1 valgrind --quiet --error-exitcode=99 --leak-check=full \
    --errors-for-leak-kinds=definite --show-leak-kinds=definite --suppressions=scripts/valgrind.supp \
    --log-file="$logs/valgrind.log" lua5.4 /usr/bin/busted --output=plainTerminal spec/ > "$logs/busted-valgrind.log" 2>&1
  status=$?
  inner_passed=$passed inner_failed=$failed
  # --error-exitcode: 99 means valgrind found errors or definite leaks;
  # any other status but 0, failed specs or a crash
  if count_busted "$logs/busted-valgrind.log" "$status" && [ "$status" -eq 0 ] && [ "$vg_c_ok" = 1 ]; then
    echo "valgrind: clean"
    passed=$((inner_passed + 1)) failed=$inner_failed
  else
    echo "valgrind: errors or failures (busted's exit status $status), see $logs/valgrind*.log:"
    cat "$logs"/valgrind*.log | head -60
    tail -n 20 "$logs/busted-valgrind.log"
    passed=$inner_passed failed=$((inner_failed + 1))
  fi
fi
finish
