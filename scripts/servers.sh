#!/usr/bin/env bash
# Throwaway PostgreSQL 15 and Redis servers on loopback, for the demo, the
# tests and the benchmarks.
#   scripts/servers.sh start|stop|restart-pg|env
# Data lives under .run/ (or a folder in /tmp when the checkout is not
# reachable by the unprivileged user PostgreSQL must run as); .run/env holds
# the addresses for `source`.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
run="$root/.run"
pg_port=${SEMSTORE_PG_PORT:-55432}
redis_port=${SEMSTORE_REDIS_PORT:-56379}
pg_bin=/usr/lib/postgresql/15/bin
# initdb and postgres refuse to run as root
pg_user=postgres

as_pg() { runuser -u "$pg_user" -- "$@"; }

pg_data_dir() {
  if [ -f "$run/pgdata-path" ]; then cat "$run/pgdata-path"; else echo "$run/pg"; fi
}

stop() {
  local data
  data=$(pg_data_dir)
  if [ -f "$data/data/postmaster.pid" ]; then
    as_pg "$pg_bin/pg_ctl" -D "$data/data" -m immediate -w stop >/dev/null 2>&1 || true
  fi
  if [ -f "$run/redis/redis.pid" ]; then
    redis-cli -p "$redis_port" shutdown nosave >/dev/null 2>&1 || kill "$(cat "$run/redis/redis.pid")" 2>/dev/null || true
  fi
  case "$data" in "$run"/*|/tmp/semstore-pg.*) rm -rf "$data" ;; esac
  rm -rf "$run"
}

start() {
  stop
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
port = $pg_port
unix_socket_directories = '$data'
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 200
shared_buffers = 128MB
log_min_messages = warning
CONF
  as_pg "$pg_bin/pg_ctl" -D "$data/data" -l "$data/server.log" -w -t 60 start >/dev/null
  PGPASSWORD=postgres psql -q -h 127.0.0.1 -p "$pg_port" -U postgres -d postgres -v ON_ERROR_STOP=1 \
    -c "create role semstore login superuser password 'semstore'" \
    -c "create database semstore_test owner semstore" >/dev/null

  redis-server --port "$redis_port" --bind 127.0.0.1 --daemonize yes --dir "$run/redis" \
    --pidfile "$run/redis/redis.pid" --logfile "$run/redis/redis.log" --save '' --appendonly no
  for _ in $(seq 1 100); do
    [ "$(redis-cli -p "$redis_port" ping 2>/dev/null)" = PONG ] && break
    sleep 0.2
  done
  [ "$(redis-cli -p "$redis_port" ping 2>/dev/null)" = PONG ] || { echo "redis did not start" >&2; exit 1; }

  local url="postgresql://semstore:semstore@127.0.0.1:$pg_port/semstore_test"
  cat > "$run/env" <<ENV
export DATABASE_URL=$url
export SEMSTORE_TEST_DATABASE_URL=$url
export SEMSTORE_TEST_PG_SUPERUSER_URL=postgresql://postgres:postgres@127.0.0.1:$pg_port/postgres
export SEMSTORE_TEST_PG_PORT=$pg_port
export SEMSTORE_TEST_PG_DATA=$data/data
export SEMSTORE_TEST_RESTART_PG="bash $root/scripts/servers.sh restart-pg"
export REDIS_URL=redis://127.0.0.1:$redis_port/0
ENV
  echo "PostgreSQL on 127.0.0.1:$pg_port, Redis on 127.0.0.1:$redis_port (source $run/env)"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  restart-pg) as_pg "$pg_bin/pg_ctl" -D "$(pg_data_dir)/data" -m fast -w -t 60 restart >/dev/null ;;
  env) echo "$run/env" ;;
  *) echo "usage: $0 start|stop|restart-pg|env" >&2; exit 2 ;;
esac
