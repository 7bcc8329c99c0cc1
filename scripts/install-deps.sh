#!/usr/bin/env bash
# Installs what semstore needs from Debian's packages, and only what is
# missing: a machine that has everything makes no network access. Then the
# Qdrant stand-in's npm packages (tools/qdrant-standin), when node_modules
# is missing or older than the lock file.
set -euo pipefail

packages=(build-essential cmake pkg-config lua5.4 liblua5.4-dev lua-cjson lua-filesystem lua-busted libpq-dev
  libhiredis-dev libcurl4-openssl-dev libcrypt-dev libssl-dev libdouble-conversion-dev postgresql-15 postgresql-contrib
  redis-server valgrind lua-sql-postgres luarocks procps util-linux lua-readline
  luajit2 libluajit2-5.1-dev lua-compat53-dev nginx-light libnginx-mod-http-lua wrk)
# node and npm only when missing: a machine may have them from elsewhere
command -v node >/dev/null 2>&1 || packages+=(nodejs)
command -v npm >/dev/null 2>&1 || packages+=(npm)

missing=()
for p in "${packages[@]}"; do
  if [ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" != "install ok installed" ]; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "missing packages: ${missing[*]} (run as root to install them)" >&2
    exit 1
  fi
  echo "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# npm ci touches node_modules' folder, so a lock file newer than it means a
# dependency changed since the last install
standin="$(cd "$(dirname "$0")/.." && pwd -P)/tools/qdrant-standin"
if [ ! -d "$standin/node_modules" ] || [ "$standin/package-lock.json" -nt "$standin/node_modules" ]; then
  (cd "$standin" && npm ci --no-audit --no-fund --loglevel=error >/dev/null) || {
    echo "npm ci failed in $standin" >&2
    exit 1
  }
  touch "$standin/node_modules"
fi
