#!/usr/bin/env bash
# Throwaway PostgreSQL 15 and Redis servers on loopback, and the Qdrant
# stand-in (tools/qdrant-standin), for the demo, the tests and the benchmarks. Each start is a run of its own: a folder under
# .run/ (PostgreSQL's data goes to a folder in /tmp when the checkout is not
# reachable by the unprivileged user PostgreSQL must run as), free loopback
# ports, and an env file to `source`. stop stops its run's servers only, so
# runs in several checkouts, or several in one, leave each other alone.
#   scripts/servers.sh start [RUN]       start servers in the folder RUN (made when missing);
#                                        without RUN, in a new .run/servers.XXXXXX, and .run/env
#                                        then links to its env file
#   scripts/servers.sh stop [RUN]        stop RUN's servers, remove RUN but for its logs/ folder
#   scripts/servers.sh restart-pg [RUN]  restart RUN's PostgreSQL (SEMSTORE_TEST_RESTART_PG does)
#   scripts/servers.sh restart-redis [RUN]  restart RUN's Redis on its port (SEMSTORE_TEST_RESTART_REDIS does)
#   scripts/servers.sh env [RUN]         print the path of RUN's env file
#   scripts/servers.sh logs RUN DEST     copy RUN's PostgreSQL, Redis and stand-in logs into DEST
# RUN defaults to the run .run/env links to (the last start without RUN).
# SEMSTORE_PG_PORT and SEMSTORE_REDIS_PORT choose the ports, and start
# refuses them when something listens there; otherwise free ones are picked.
# When QDRANT_URL is set (a real Qdrant), start uses it and starts no
# stand-in; otherwise the env file points QDRANT_URL at the stand-in and sets
# SEMSTORE_QDRANT_STANDIN=1 (specs skip fault injection without it).
# With SEMSTORE_RUN_OWNER=PID the run belongs to that process: once it is
# gone (a test run that was killed), the next start in this checkout stops
# the run's leftover servers.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd -P)
runs="$root/.run"
pg_bin=/usr/lib/postgresql/15/bin
# initdb and postgres refuse to run as root
pg_user=postgres

as_pg() { runuser -u "$pg_user" -- "$@"; }
die() { echo "servers.sh: $*" >&2; exit 1; }

# The run folder given (absolute, whether or not it exists), or the one
# .run/env links to.
run_dir() {
  if [ -n "${1:-}" ]; then
    realpath -m "$1"
  elif [ -L "$runs/env" ]; then
    dirname "$(readlink "$runs/env")"
  else
    die "no run folder given, and no $runs/env from a start without one"
  fi
}

pg_data_dir() {
  if [ -f "$1/pgdata-path" ]; then cat "$1/pgdata-path"; else echo "$1/pg"; fi
}

# The start time of process $1 (field 22 of /proc/PID/stat), empty when it
# does not exist: with the pid it names one process, even after pid reuse.
proc_start() {
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 0
  stat=${stat##*) }
  echo "$stat" | awk '{ print $20 }'
}

# Whether something listens on TCP port $1, on any address, IPv4 or IPv6.
port_busy() {
  awk -v p="$(printf ':%04X' "$1")" 'FNR > 1 && $4 == "0A" && substr($2, length($2) - 4) == p { found = 1 }
    END { exit !found }' /proc/net/tcp /proc/net/tcp6 2>/dev/null
}

# A port nobody listens on, below the kernel's range for outgoing connections.
pick_port() {
  local lo p
  read -r lo _ < /proc/sys/net/ipv4/ip_local_port_range
  [ "$lo" -gt 21000 ] || lo=30000
  for _ in $(seq 1 100); do
    p=$((20000 + RANDOM % (lo - 20000)))
    port_busy "$p" || { echo "$p"; return 0; }
  done
  die "found no free port between 20000 and $lo"
}

# The port $1 names, refused when busy, or a free one.
choose_port() {
  local given=$1 var=$2
  if [ -n "$given" ]; then
    [[ "$given" =~ ^[0-9]+$ ]] || die "$var=$given is not a port number"
    if port_busy "$given"; then
      die "port $given ($var) is busy: something else listens on it; choose another, or unset $var to have a free one picked"
    fi
    echo "$given"
  else
    pick_port
  fi
}

# Stops Redis if the pid file names a redis-server running in this run's
# folder (redis-server changes into its --dir), so never a stranger.
stop_redis() {
  local pidf="$1/redis/redis.pid" pid
  [ -f "$pidf" ] || return 0
  pid=$(cat "$pidf")
  [[ "$pid" =~ ^[0-9]+$ ]] || return 0
  [ "$(readlink "/proc/$pid/cwd" 2>/dev/null)" = "$1/redis" ] || return 0
  kill "$pid" 2>/dev/null || return 0
  for _ in $(seq 1 50); do
    [ -d "/proc/$pid" ] || return 0
    sleep 0.1
  done
  kill -9 "$pid" 2>/dev/null || true
}

# Stops the stand-in if its pid file names the process it started (pid and
# start time), so never a stranger.
stop_standin() {
  local pidf="$1/qdrant/standin.pid" pid st
  [ -f "$pidf" ] || return 0
  read -r pid st < "$pidf" || return 0
  [[ "$pid" =~ ^[0-9]+$ ]] || return 0
  [ -n "$st" ] && [ "$(proc_start "$pid")" = "$st" ] || return 0
  kill "$pid" 2>/dev/null || return 0
  for _ in $(seq 1 50); do
    [ -d "/proc/$pid" ] || return 0
    sleep 0.1
  done
  kill -9 "$pid" 2>/dev/null || true
}

# Stops the servers of run $1 and removes the run but for its logs/ folder.
stop_run() {
  local run=$1 data
  [ -d "$run" ] || return 0
  data=$(pg_data_dir "$run")
  if [ -f "$data/data/postmaster.pid" ]; then
    as_pg "$pg_bin/pg_ctl" -D "$data/data" -m immediate -w stop >/dev/null 2>&1 || true
  fi
  stop_redis "$run"
  stop_standin "$run"
  case "$data" in "$run"/*|/tmp/semstore-pg.*) rm -rf "$data" ;; esac
  if [ "$(readlink "$runs/env" 2>/dev/null)" = "$run/env" ]; then rm -f "$runs/env"; fi
  find "$run" -mindepth 1 -maxdepth 1 ! -name logs -exec rm -rf {} + 2>/dev/null || true
  rmdir "$run" 2>/dev/null || true
}

# Stops the leftovers of runs in this checkout whose owner is gone.
stop_orphans() {
  local d pid st now
  for d in "$runs"/*/; do
    d=${d%/}
    [ -f "$d/owner" ] || continue
    read -r pid st < "$d/owner" || continue
    now=$(proc_start "$pid")
    [ -n "$now" ] && [ "$now" = "$st" ] && continue
    echo "servers.sh: stopping the servers left by $d (its owner, pid $pid, is gone)" >&2
    stop_run "$d"
  done
}

copy_logs() {
  local run=$1 dest=$2 data
  mkdir -p "$dest"
  data=$(pg_data_dir "$run")
  if [ -f "$data/server.log" ]; then cp "$data/server.log" "$dest/postgresql.log"; fi
  if [ -f "$run/redis/redis.log" ]; then cp "$run/redis/redis.log" "$dest/redis.log"; fi
  if [ -f "$run/qdrant/standin.log" ]; then cp "$run/qdrant/standin.log" "$dest/qdrant-standin.log"; fi
}

# On a failed start: keep the logs, stop what did start.
start_failed() {
  trap - EXIT
  copy_logs "$run" "$run/logs"
  stop_run "$run"
  echo "servers.sh: the servers did not start; their logs are in $run/logs" >&2
}

start_pg() {
  local data=$1 port
  for _ in 1 2 3 4 5; do
    port=$(choose_port "${SEMSTORE_PG_PORT:-}" SEMSTORE_PG_PORT)
    echo "port = $port" > "$data/data/port.conf"
    chown "$pg_user" "$data/data/port.conf"
    if as_pg "$pg_bin/pg_ctl" -D "$data/data" -l "$data/server.log" -w -t 60 start >/dev/null; then
      pg_port=$port
      return 0
    fi
    # another program may have taken the port since it was picked
    grep -qE 'could not bind|could not create any TCP/IP sockets' "$data/server.log" 2>/dev/null || break
    [ -z "${SEMSTORE_PG_PORT:-}" ] || break
    echo "servers.sh: port $port was taken meanwhile, trying another" >&2
  done
  echo "servers.sh: PostgreSQL did not start:" >&2
  tail -n 5 "$data/server.log" >&2 2>/dev/null || true
  return 1
}

# Starts Redis and waits until the server answering on the port reports the
# pid in this run's pid file.
start_redis() {
  local dir=$1 port pid
  for _ in 1 2 3 4 5; do
    port=$(choose_port "${SEMSTORE_REDIS_PORT:-}" SEMSTORE_REDIS_PORT)
    : > "$dir/redis.log"
    redis-server --port "$port" --bind 127.0.0.1 --daemonize yes --dir "$dir" \
      --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" --save '' --appendonly no
    for _ in $(seq 1 100); do
      if [ -f "$dir/redis.pid" ]; then
        pid=$(cat "$dir/redis.pid")
        if [ "$(redis-cli -p "$port" info server 2>/dev/null | tr -d '\r' | sed -n 's/^process_id://p')" = "$pid" ]; then
          redis_port=$port
          return 0
        fi
      fi
      grep -q 'aborting' "$dir/redis.log" && break
      sleep 0.1
    done
    grep -q 'Address already in use' "$dir/redis.log" || break
    [ -z "${SEMSTORE_REDIS_PORT:-}" ] || break
    echo "servers.sh: port $port was taken meanwhile, trying another" >&2
  done
  echo "servers.sh: Redis did not start:" >&2
  tail -n 5 "$dir/redis.log" >&2
  return 1
}

# Starts the Qdrant stand-in on a port it picks itself (--port 0) and reads
# the port from the one line it prints; snapshots go to $1/data.
start_standin() {
  local dir=$1 pid line
  mkdir -p "$dir/data"
  : > "$dir/standin.out"
  nohup node "$root/tools/qdrant-standin/server.js" --host 127.0.0.1 --port 0 --data "$dir/data" \
    > "$dir/standin.out" 2> "$dir/standin.log" < /dev/null &
  pid=$!
  echo "$pid $(proc_start "$pid")" > "$dir/standin.pid"
  for _ in $(seq 1 100); do
    line=$(grep -m1 '^Qdrant stand-in listening on ' "$dir/standin.out" 2>/dev/null || true)
    if [ -n "$line" ]; then
      qdrant_url=${line#Qdrant stand-in listening on }
      return 0
    fi
    [ -d "/proc/$pid" ] || break
    sleep 0.1
  done
  echo "servers.sh: the Qdrant stand-in did not start:" >&2
  tail -n 5 "$dir/standin.log" >&2
  return 1
}

start() {
  local link=0
  # ports given that are busy: refused before anything is made
  [ -z "${SEMSTORE_PG_PORT:-}" ] || choose_port "$SEMSTORE_PG_PORT" SEMSTORE_PG_PORT >/dev/null
  [ -z "${SEMSTORE_REDIS_PORT:-}" ] || choose_port "$SEMSTORE_REDIS_PORT" SEMSTORE_REDIS_PORT >/dev/null
  mkdir -p "$runs"
  stop_orphans
  if [ -n "${1:-}" ]; then
    run=$(realpath -m "$1")
    mkdir -p "$run"
    [ ! -e "$run/env" ] || die "$run already has servers; stop them first"
  else
    run=$(mktemp -d "$runs/servers.XXXXXX")
    link=1
  fi
  trap start_failed EXIT
  # mktemp makes folders only their owner can enter
  chmod 755 "$run"
  if [ -n "${SEMSTORE_RUN_OWNER:-}" ]; then
    echo "$SEMSTORE_RUN_OWNER $(proc_start "$SEMSTORE_RUN_OWNER")" > "$run/owner"
  fi
  mkdir -p "$run/redis"
  id "$pg_user" >/dev/null 2>&1 || useradd --system --no-create-home "$pg_user"
  local data="$run/pg"
  # the unprivileged user must be able to reach the data folder
  if ! runuser -u "$pg_user" -- test -x "$run"; then
    data=$(mktemp -d /tmp/semstore-pg.XXXXXX)
    echo "$data" > "$run/pgdata-path"
  fi
  mkdir -p "$data"
  chown "$pg_user" "$data"
  chmod 700 "$data"
  local pwfile="$data.pw"
  echo postgres > "$pwfile"
  chown "$pg_user" "$pwfile"
  as_pg "$pg_bin/initdb" -D "$data/data" -U postgres --pwfile="$pwfile" --auth=scram-sha-256 \
    -E UTF8 --locale=C.UTF-8 >/dev/null 2>&1 ||
    as_pg "$pg_bin/initdb" -D "$data/data" -U postgres --pwfile="$pwfile" --auth=scram-sha-256 -E UTF8 --locale=C >/dev/null
  rm -f "$pwfile"
  cat >> "$data/data/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
include = 'port.conf'
unix_socket_directories = '$data'
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 200
max_prepared_transactions = 32
shared_buffers = 128MB
log_min_messages = warning
CONF
  start_pg "$data"
  # the server answering is this run's own
  local got
  got=$(PGPASSWORD=postgres psql -X -q -At -h 127.0.0.1 -p "$pg_port" -U postgres -d postgres -v ON_ERROR_STOP=1 \
    -c "show data_directory")
  [ "$got" = "$data/data" ] || die "the PostgreSQL on port $pg_port serves $got, not $data/data"
  PGPASSWORD=postgres psql -X -q -h 127.0.0.1 -p "$pg_port" -U postgres -d postgres -v ON_ERROR_STOP=1 \
    -c "create role semstore login superuser password 'semstore'" \
    -c "create database semstore_test owner semstore" >/dev/null

  start_redis "$run/redis"

  # a real Qdrant given by the caller wins over the stand-in
  local qdrant_env
  if [ -n "${QDRANT_URL:-}" ]; then
    qdrant_url=$QDRANT_URL
    qdrant_env="export QDRANT_URL=$(printf '%q' "$qdrant_url")"
  else
    mkdir -p "$run/qdrant"
    start_standin "$run/qdrant"
    qdrant_env="export QDRANT_URL=$qdrant_url
export SEMSTORE_QDRANT_STANDIN=1"
  fi

  local url="postgresql://semstore:semstore@127.0.0.1:$pg_port/semstore_test"
  cat > "$run/env.tmp" <<ENV
export DATABASE_URL=$url
export SEMSTORE_TEST_DATABASE_URL=$url
export SEMSTORE_TEST_PG_SUPERUSER_URL=postgresql://postgres:postgres@127.0.0.1:$pg_port/postgres
export SEMSTORE_TEST_PG_PORT=$pg_port
export SEMSTORE_TEST_PG_DATA=$data/data
export SEMSTORE_TEST_RESTART_PG=$(printf '%q' "bash $(printf '%q' "$root/scripts/servers.sh") restart-pg $(printf '%q' "$run")")
export SEMSTORE_TEST_RESTART_REDIS=$(printf '%q' "bash $(printf '%q' "$root/scripts/servers.sh") restart-redis $(printf '%q' "$run")")
export REDIS_URL=redis://127.0.0.1:$redis_port/0
$qdrant_env
ENV
  mv "$run/env.tmp" "$run/env"
  [ "$link" = 0 ] || ln -sfn "$run/env" "$runs/env"
  trap - EXIT
  echo "PostgreSQL on 127.0.0.1:$pg_port, Redis on 127.0.0.1:$redis_port, Qdrant${QDRANT_URL:+ (given)}${QDRANT_URL:- stand-in} at $qdrant_url (source $run/env)"
}

case "${1:-}" in
  start) start "${2:-}" ;;
  stop) stop_run "$(run_dir "${2:-}")" ;;
  restart-pg)
    run=$(run_dir "${2:-}")
    as_pg "$pg_bin/pg_ctl" -D "$(pg_data_dir "$run")/data" -m fast -w -t 60 restart >/dev/null
    ;;
  restart-redis)
    run=$(run_dir "${2:-}")
    port=$(sed -n 's|^export REDIS_URL=redis://127.0.0.1:\([0-9]*\)/0$|\1|p' "$run/env")
    [ -n "$port" ] || die "no Redis port in $run/env"
    stop_redis "$run"
    redis_port=
    SEMSTORE_REDIS_PORT=$port start_redis "$run/redis"
    [ -n "$redis_port" ] || die "Redis did not restart on port $port"
    ;;
  env) echo "$(run_dir "${2:-}")/env" ;;
  logs)
    if [ -z "${2:-}" ] || [ -z "${3:-}" ]; then die "usage: $0 logs RUN DEST"; fi
    copy_logs "$(run_dir "$2")" "$3"
    ;;
  *) echo "usage: $0 start|stop|restart-pg|restart-redis|env [RUN], or $0 logs RUN DEST" >&2; exit 2 ;;
esac
