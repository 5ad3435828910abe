#!/usr/bin/env bash
# System packages the tests start for real (Debian's): PostgreSQL for the audit store, Chromium for the browser
# test; with `bench`, wrk for the load benchmark. Installs only what is missing; needs root (CI runs as root).
set -euo pipefail
need=()
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
if [ "${1:-}" = "bench" ]; then command -v wrk >/dev/null 2>&1 || need+=(wrk); fi
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "missing system packages: ${need[*]}; install them: sudo apt-get install -y ${need[*]}" >&2
    exit 1
  fi
  echo "installing ${need[*]} (Debian packages) ..."
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
