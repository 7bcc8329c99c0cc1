#!/usr/bin/env bash
# Installs what semstore needs from Debian's packages, and only what is
# missing: a machine that has everything makes no network access.
set -euo pipefail

packages=(build-essential cmake pkg-config lua5.4 liblua5.4-dev lua-cjson lua-filesystem lua-busted libpq-dev
  libhiredis-dev libcurl4-openssl-dev libcrypt-dev libdouble-conversion-dev postgresql-15 postgresql-contrib
  redis-server valgrind lua-sql-postgres luarocks procps util-linux)

missing=()
for p in "${packages[@]}"; do
  if [ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" != "install ok installed" ]; then
    missing+=("$p")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  echo "missing packages: ${missing[*]} (run as root to install them)" >&2
  exit 1
fi
echo "installing: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
