#!/usr/bin/env bash
# `npm run differential`: Postgres's own regression suite run direct, through Sluice and
# direct again, compared file by file; then JDBC, psycopg2 and psycopg 3 check programs run
# direct and through Sluice. Results: bench/results/differential.{md,json}.
#
# Installs what it needs with apt-get (Postgres 15 server and its server headers, the JDK,
# Debian's pgjdbc, psycopg2 and psycopg 3) and fetches Debian's postgresql-15 source package
# (through a private deb-src list, never into the repository) for src/test/regress, into
# DIFF_CACHE (default /var/tmp/sluice-differential), where it also builds regress.so.
# Knobs: DIFF_ONLY=regress,drivers,report picks steps; DIFF_SCHEDULE=<file> runs another
# schedule (e.g. a short one while developing); DIFF_MAX_CONNECTIONS caps pg_regress's
# parallelism; DIFF_NO_BUILD=1 skips `npm run build`.
set -euo pipefail
cd "$(dirname "$0")/../.."

export DIFF_CACHE=${DIFF_CACHE:-/var/tmp/sluice-differential}
C=$DIFF_CACHE
mkdir -p "$C"
SUDO=(); [ "$(id -u)" -ne 0 ] && SUDO=(sudo -n)
apt_get() { "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get "$@"; }

# --- packages ---------------------------------------------------------------------------
PGV=15
need=()
[ -x /usr/lib/postgresql/$PGV/bin/initdb ] || need+=(postgresql-$PGV)
[ -f /usr/lib/postgresql/$PGV/lib/pgxs/src/makefiles/pgxs.mk ] || need+=(postgresql-server-dev-$PGV)
command -v javac >/dev/null || need+=(default-jdk-headless)
[ -f /usr/share/java/postgresql.jar ] || need+=(libpostgresql-jdbc-java)
/usr/bin/python3 -c 'import psycopg2' 2>/dev/null || need+=(python3-psycopg2)
/usr/bin/python3 -c 'import psycopg' 2>/dev/null || need+=(python3-psycopg)
command -v dpkg-source >/dev/null || need+=(dpkg-dev)
command -v make >/dev/null || need+=(make)
command -v gcc >/dev/null || need+=(gcc)
if [ ${#need[@]} -gt 0 ]; then
  apt_get update -qq
  apt_get install -y -qq --no-install-recommends "${need[@]}"
fi

# --- Debian's source package: src/test/regress ------------------------------------------
# A private deb-src list with its own lists and cache directories: the system's apt
# configuration and package lists are left alone.
A=$C/apt
mkdir -p "$A/lists/partial" "$A/cache/archives/partial" "$A/parts.d" "$C/src"
if [ ! -f "$A/sources.list" ]; then
  cat >"$A/sources.list" <<'EOF'
deb-src http://deb.debian.org/debian bookworm main
deb-src http://deb.debian.org/debian bookworm-updates main
deb-src http://deb.debian.org/debian-security bookworm-security main
EOF
fi
APT_SRC=(-o "Dir::Etc::SourceList=$A/sources.list" -o "Dir::Etc::SourceParts=$A/parts.d"
  -o "Dir::State::Lists=$A/lists" -o "Dir::Cache=$A/cache")
installed=$(dpkg-query -W -f='${Version}' postgresql-$PGV)
regress_dir() { find "$C/src" -maxdepth 5 -type d -path "*/src/test/regress" -name regress 2>/dev/null | sort | tail -1; }
if [ -z "$(regress_dir)" ]; then
  apt-get "${APT_SRC[@]}" update -qq
  # The installed server's own version if the mirror still has it, else the newest there is.
  (cd "$C/src" && { apt-get "${APT_SRC[@]}" source -qq "postgresql-$PGV=$installed" 2>/dev/null ||
    apt-get "${APT_SRC[@]}" source -qq "postgresql-$PGV"; })
fi
export DIFF_REGRESS_DIR=$(regress_dir)
[ -n "$DIFF_REGRESS_DIR" ] || { echo "no src/test/regress under $C/src" >&2; exit 1; }
export DIFF_SOURCE_VERSION=$(basename "$(dirname "$(dirname "$(dirname "$DIFF_REGRESS_DIR")")")")
echo "== regression suite from $DIFF_SOURCE_VERSION (server: postgresql-$PGV $installed)" >&2

# --- regress.so (the suite's C test functions) next to autoinc.so and refint.so ----------
export DIFF_LIB_DIR=$C/lib
PKGLIB=$(/usr/lib/postgresql/$PGV/bin/pg_config --pkglibdir)
if [ ! -f "$DIFF_LIB_DIR/regress.so" ] || [ "$DIFF_REGRESS_DIR/regress.c" -nt "$DIFF_LIB_DIR/regress.so" ]; then
  B=$C/build
  rm -rf "$B" && mkdir -p "$B" "$DIFF_LIB_DIR"
  cp "$DIFF_REGRESS_DIR/regress.c" "$B/"
  printf 'MODULES = regress\nPG_CONFIG = /usr/lib/postgresql/%s/bin/pg_config\nPGXS := $(shell $(PG_CONFIG) --pgxs)\ninclude $(PGXS)\n' "$PGV" >"$B/Makefile"
  make -s -C "$B" >/dev/null
  cp "$B/regress.so" "$DIFF_LIB_DIR/"
fi
ln -sf "$PKGLIB/autoinc.so" "$PKGLIB/refint.so" "$DIFF_LIB_DIR/"
chmod -R a+rX "$C/src" "$DIFF_LIB_DIR"

# --- Sluice ------------------------------------------------------------------------------
[ -d node_modules ] || npm install --no-audit --no-fund
[ "${DIFF_NO_BUILD:-}" = 1 ] || npm run build >/dev/null

steps=(regress drivers report)
only=",${DIFF_ONLY:-$(IFS=,; echo "${steps[*]}")},"
failed=()
for step in "${steps[@]}"; do
  [[ "$only" == *",$step,"* ]] || continue
  t0=$SECONDS
  echo "== differential/$step" >&2
  if node --import tsx "bench/differential/$step-main.ts"; then
    echo "== differential/$step: $((SECONDS - t0)) s" >&2
  else
    echo "== differential/$step FAILED after $((SECONDS - t0)) s" >&2
    failed+=("$step")
  fi
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "== failed: ${failed[*]}" >&2
  exit 1
fi
