#!/usr/bin/env bash
# `npm run bench`: installs what the benchmarks need (Postgres, pgbench, pgbouncer),
# builds Sluice and runs every benchmark. Results land in bench/results/.
set -euo pipefail
cd "$(dirname "$0")/.."
need=()
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || need+=(postgresql)
command -v pgbench >/dev/null || need+=(postgresql-contrib postgresql-client)
command -v pgbouncer >/dev/null || [ -x /usr/sbin/pgbouncer ] || need+=(pgbouncer)
if [ ${#need[@]} -gt 0 ]; then
  SUDO=(); [ "$(id -u)" -ne 0 ] && SUDO=(sudo -n)
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}"
fi
[ -d node_modules ] || npm install --no-audit --no-fund
npm run build
node --import tsx bench/policy.ts
node --import tsx bench/pgbench.ts "$@"
