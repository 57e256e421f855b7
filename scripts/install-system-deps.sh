#!/usr/bin/env bash
# Installs the Debian packages the tests and benchmarks drive for real: headless Chromium
# (dashboard tests) and NSS's certutil (libnss3-tools: the HTTPS dashboard test trusts its
# test CA in a Chromium profile's certificate database), Prometheus and promtool (scrape and
# rule tests), Alertmanager (alert delivery test), wrk (gateway benchmark), tmux (`top` test)
# and the PostgreSQL server (the history's PostgreSQL backend: tests/postgres_server.py runs
# initdb/pg_ctl from it).
# Does nothing when they are already there; says so and carries on when it cannot install
# (not root, no apt): the tests that need a missing tool are then skipped with that reason.
set -uo pipefail
need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v certutil >/dev/null 2>&1 || need+=(libnss3-tools)
command -v prometheus >/dev/null 2>&1 || need+=(prometheus)
command -v wrk >/dev/null 2>&1 || need+=(wrk)
command -v tmux >/dev/null 2>&1 || need+=(tmux)
command -v prometheus-alertmanager >/dev/null 2>&1 || need+=(prometheus-alertmanager)
# Debian keeps the server's binaries off PATH, in /usr/lib/postgresql/<version>/bin.
{ command -v initdb || compgen -G '/usr/lib/postgresql/*/bin/initdb'; } >/dev/null 2>&1 \
  || need+=(postgresql)
[ ${#need[@]} -eq 0 ] && exit 0
if ! command -v apt-get >/dev/null 2>&1; then
  echo "system-deps: no apt-get here; missing ${need[*]} (tests needing them will be skipped)" >&2
  exit 0
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then sudo="sudo -n"; else
    echo "system-deps: not root; missing ${need[*]} (tests needing them will be skipped)" >&2
    exit 0
  fi
fi
echo "system-deps: installing ${need[*]} with apt-get (once)..." >&2
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq >/dev/null || echo "system-deps: apt-get update failed" >&2
$sudo apt-get install -y -qq "${need[@]}" >/dev/null \
  || echo "system-deps: could not install ${need[*]} (tests needing them will be skipped)" >&2
exit 0
