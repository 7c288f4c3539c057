#!/usr/bin/env bash
# `npm run bench`: installs what the benchmarks need (Postgres, pgbench, pgbouncer;
# sshd, scp and sshpass when bench/scp.ts exists; nginx and wrk for bench/http.ts), builds Sluice, runs every
# benchmark and combines the results into bench/results/summary.md, summary.json
# and chart.svg. Knobs (environment) are listed in bench/README.md; BENCH_ONLY
# picks steps, e.g. BENCH_ONLY=pgbench,report.
set -euo pipefail
cd "$(dirname "$0")/.."

have_scp=0; [ -f bench/scp.ts ] && have_scp=1
need=()
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || need+=(postgresql)
command -v pgbench >/dev/null || need+=(postgresql-contrib postgresql-client)
command -v pgbouncer >/dev/null || [ -x /usr/sbin/pgbouncer ] || need+=(pgbouncer)
if [ "$have_scp" = 1 ]; then
  [ -x /usr/sbin/sshd ] || need+=(openssh-server)
  command -v scp >/dev/null || need+=(openssh-client)
  command -v sshpass >/dev/null || need+=(sshpass)
fi
{ command -v nginx || [ -x /usr/sbin/nginx ]; } >/dev/null || need+=(nginx-light)
command -v wrk >/dev/null || need+=(wrk)
command -v curl >/dev/null || need+=(curl)
if [ ${#need[@]} -gt 0 ]; then
  SUDO=(); [ "$(id -u)" -ne 0 ] && SUDO=(sudo -n)
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}"
fi
[ -d node_modules ] || npm install --no-audit --no-fund
[ "${BENCH_NO_BUILD:-}" = 1 ] || npm run build
# 1,000 idle sessions hold two sockets each in the gateway.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

steps=(policy masking masking-rows recording pgbench recording-ab large-result idle soak slow-reader scp http report)
only=",${BENCH_ONLY:-$(IFS=,; echo "${steps[*]}")},"
failed=()
started=$SECONDS
for step in "${steps[@]}"; do
  [[ "$only" == *",$step,"* ]] || continue
  [ "$step" = scp ] && [ "$have_scp" = 0 ] && continue
  t0=$SECONDS
  echo "== bench/$step.ts" >&2
  # bench/scp.ts always writes to bench/results: with BENCH_OUT elsewhere, keep the published files.
  scp_saved=""
  if [ "$step" = scp ] && [ -n "${BENCH_OUT:-}" ] && [ "$(realpath -m "$BENCH_OUT")" != "$(realpath -m bench/results)" ]; then
    scp_saved=$(mktemp -d)
    cp bench/results/scp.json bench/results/scp.md "$scp_saved/" 2>/dev/null || true
  fi
  if node --import tsx "bench/$step.ts"; then
    echo "== bench/$step.ts: $((SECONDS - t0)) s" >&2
  else
    echo "== bench/$step.ts FAILED after $((SECONDS - t0)) s" >&2
    failed+=("$step")
  fi
  if [ -n "$scp_saved" ]; then
    mkdir -p "$BENCH_OUT"
    mv bench/results/scp.json bench/results/scp.md "$BENCH_OUT/" 2>/dev/null || true
    cp "$scp_saved"/scp.* bench/results/ 2>/dev/null || true
    rm -rf "$scp_saved"
  fi
done
echo "== all steps: $((SECONDS - started)) s; results in ${BENCH_OUT:-bench/results}" >&2
if [ ${#failed[@]} -gt 0 ]; then
  echo "== failed: ${failed[*]}" >&2
  exit 1
fi
