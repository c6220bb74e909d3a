#!/usr/bin/env bash
# Bundle the dashboard's front end (web/dashboard) into OUT (default build/dashboard), idempotently:
#   build-dashboard.sh [OUT]
# The npm packages (pinned by web/dashboard/package-lock.json) are installed with `npm ci`
# into build/dashboard-npm, only when the lock file changed; esbuild then bundles src/ into
# OUT/app.js + OUT/app.css beside index.html. Nothing is fetched at run time: the server
# hands out OUT's files offline.
set -euo pipefail
src=web/dashboard
out=${1:-build/dashboard}
npmdir=build/dashboard-npm
if ! command -v npm >/dev/null; then
  echo "kubelite: npm is needed to build the dashboard (Debian: apt-get install nodejs npm)" >&2
  exit 1
fi
mkdir -p "$npmdir" "$out"
if ! cmp -s "$src/package-lock.json" "$npmdir/package-lock.json" || [ ! -x "$npmdir/node_modules/.bin/esbuild" ]; then
  echo "kubelite: installing the dashboard's npm packages (web/dashboard/package-lock.json) into $npmdir"
  cp "$src/package.json" "$src/package-lock.json" "$npmdir/"
  (cd "$npmdir" && npm ci --no-audit --no-fund --loglevel=error)
fi
tmp=$(mktemp -d "$out.XXXXXX")
chmod 755 "$tmp"
trap 'rm -rf "$tmp"' EXIT
NODE_PATH="$PWD/$npmdir/node_modules" "$npmdir/node_modules/.bin/esbuild" "$src/src/app.js" \
  --bundle --minify --sourcemap --target=es2020 --format=iife --log-level=warning \
  --outfile="$tmp/app.js"
cp "$src/src/index.html" "$tmp/"
rm -rf "$out.old"
[ -d "$out" ] && mv "$out" "$out.old"
mv "$tmp" "$out"
rm -rf "$out.old"
trap - EXIT
