#!/usr/bin/env bash
# THE test command (`npm test`, CI). Installs the system packages the e2e
# tests need, builds, runs tap, and ends with a plain "N passed, N failed".
# Extra arguments go to tap, e.g. `npm test -- test/harness.test.ts`.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the e2e tests use. Add new ones here, plus a probe in have().
PACKAGES="postgresql postgresql-client postgresql-contrib openssl openssh-server openssh-client sshpass nginx-light wrk curl python3-requests"

# True when a package's payload is already usable. Probing for the binary
# first matters: e.g. psql can come from postgresql-client-15 without the
# postgresql-client metapackage, and such a machine should pay nothing.
have() {
  case "$1" in
    postgresql) compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null && id postgres >/dev/null 2>&1 && return 0 ;;
    postgresql-client) command -v psql >/dev/null && return 0 ;;
    postgresql-contrib) compgen -G '/usr/share/postgresql/*/extension/sslinfo.control' >/dev/null && return 0 ;;
    openssl) command -v openssl >/dev/null && return 0 ;;
    openssh-server) [ -x /usr/sbin/sshd ] && return 0 ;;
    openssh-client) command -v ssh >/dev/null && command -v scp >/dev/null && command -v sftp >/dev/null && return 0 ;;
    sshpass) command -v sshpass >/dev/null && return 0 ;;
    mariadb-server) { command -v mariadbd || [ -x /usr/sbin/mariadbd ]; } >/dev/null && return 0 ;;
    pgbouncer) command -v pgbouncer >/dev/null && return 0 ;;
    # The HTTP tests' upstream (static files, gzip, keep-alive reverse proxy) and clients.
    nginx-light) { command -v nginx || [ -x /usr/sbin/nginx ]; } >/dev/null && return 0 ;;
    wrk) command -v wrk >/dev/null && return 0 ;;
    curl) command -v curl >/dev/null && return 0 ;;
    # Tests run /usr/bin/python3 itself: a python3 earlier on PATH (pyenv) may lack the Debian package.
    python3-requests) /usr/bin/python3 -c 'import requests' >/dev/null 2>&1 && return 0 ;;
  esac
  dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'
}

missing=()
for p in $PACKAGES; do have "$p" || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  echo "test.sh: installing ${missing[*]}"
  SUDO=()
  if [ "$(id -u)" -ne 0 ]; then SUDO=(sudo -n); fi
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

if [ ! -d node_modules ]; then
  # npm ci: exactly the lockfile (which lists every platform's optional packages,
  # so it works with the npm of Node 20 and with npm 11).
  npm ci --no-audit --no-fund
fi

if ! npm run build; then
  echo "0 passed, 1 failed"
  exit 1
fi

# The raw TAP reporter is deterministic (no TTY-dependent UI) and ends with
# tap's own count line "# { total: N, pass: N, fail: N, ... }", read below.
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
set +e
npx tap --reporter=tap "$@" 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
set -e

summary="$(grep -E '^# \{ total: ' "$log" | tail -n 1 || true)"
num() { sed -nE "s/.*[{ ]$1: ([0-9]+).*/\1/p" <<<"$summary"; }
passed="$(num pass)"; failed="$(num fail)"
passed="${passed:-0}"; failed="${failed:-0}"
# Never report a clean run when tap itself failed (crash, timeout, bad config).
if [ "$rc" -ne 0 ] && [ "$failed" -eq 0 ]; then failed=1; fi
echo "${passed} passed, ${failed} failed"
exit "$rc"
