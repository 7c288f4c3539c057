#!/usr/bin/env bash
# `npm run bench:build-ab -- <old-commit> [--pairs N] [--seconds S] [--mode M] [--clients C]`:
# an older build of Sluice against this tree's, fully governed, interleaved in one run
# (bench/build-ab.ts; results in bench/results/build-ab.{md,json}, or BENCH_OUT).
# Checks the old commit out as a git worktree in a temporary directory outside the
# repository, gives it this tree's node_modules when its dependencies are the same
# (otherwise `npm ci` there, in its own node_modules), builds it and this tree with
# tsc, runs the A/B, and removes the old checkout at the end (also on failure or
# Ctrl-C). BENCH_NO_BUILD=1 skips building this tree (use its current dist/).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

old=${1:-}
if [ -z "$old" ] || [ "${old#-}" != "$old" ]; then
  echo "usage: bench/build-ab.sh <old-commit> [--pairs N] [--seconds S] [--mode simple|extended|prepared] [--clients C]" >&2
  exit 2
fi
shift
sha=$(git rev-parse --verify --quiet "$old^{commit}") || { echo "build-ab: $old is not a commit" >&2; exit 2; }
old_label=$(git rev-parse --short "$sha")
# The new build is named by the last commit that changed what it is built from.
inputs=(src bin package-lock.json tsconfig.json)  # package-lock.json stands for the dependencies
new_label=$(git log -1 --format=%h HEAD -- "${inputs[@]}")
git diff --quiet HEAD -- "${inputs[@]}" || new_label="$new_label + uncommitted changes"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/sluice-build-ab-XXXXXX")
tree="$tmp/old"
cleanup() {
  git -C "$root" worktree remove --force "$tree" >/dev/null 2>&1 || true
  git -C "$root" worktree prune >/dev/null 2>&1 || true
  rm -rf "$tmp"
}
trap cleanup EXIT

echo "== build-ab: checking out $old_label in $tree" >&2
git worktree add --detach --quiet "$tree" "$sha"

# The same dependencies (package.json's and every locked package) share node_modules.
same_deps=$(node -e '
  const fs = require("node:fs");
  const read = (d) => {
    const p = JSON.parse(fs.readFileSync(d + "/package.json", "utf8"));
    let locked = null;
    try { const l = JSON.parse(fs.readFileSync(d + "/package-lock.json", "utf8")); locked = { ...l.packages }; delete locked[""]; } catch {}
    return JSON.stringify([p.dependencies, p.devDependencies, p.optionalDependencies, locked]);
  };
  console.log(read(process.argv[1]) === read(process.argv[2]) ? "yes" : "no");
' "$root" "$tree")
if [ "$same_deps" = yes ]; then
  ln -s "$(readlink -f "$root/node_modules")" "$tree/node_modules"
  echo "== build-ab: same dependencies as this tree: sharing node_modules" >&2
else
  echo "== build-ab: $old_label's dependencies differ from this tree's: npm ci in $tree" >&2
  (cd "$tree" && npm ci --no-audit --no-fund --ignore-scripts)
fi

echo "== build-ab: building $old_label (tsc)" >&2
(cd "$tree" && node_modules/.bin/tsc -p .)
if [ "${BENCH_NO_BUILD:-}" != 1 ]; then
  echo "== build-ab: building this tree ($new_label) (tsc)" >&2
  node_modules/.bin/tsc -p .
fi

node --import tsx bench/build-ab.ts --old "$tree" --old-label "$old_label" --new-label "$new_label" "$@"
