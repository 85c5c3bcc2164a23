#!/usr/bin/env bash
# The whole test suite, with its set-up: `npm install && npm run test:all` on a fresh machine.
# Installs the Debian packages the tests use when they are missing (redis-server for the
# Redis store, chromium for the browser test, valgrind for bench/instructions.ts, openssl for
# the backend fetch's TLS test; needs root, as on CI), then runs lint,
# typecheck, build, the tests with coverage, the packed-tarball consumers, and every
# benchmark script for a second or two (no thresholds), so none of them rots.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v redis-server >/dev/null || missing+=(redis-server)
command -v chromium >/dev/null || missing+=(chromium)
command -v valgrind >/dev/null || missing+=(valgrind)
command -v openssl >/dev/null || missing+=(openssl)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing Debian packages: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

step() { printf '\n== %s\n' "$1"; }
step 'lint (biome)';           npx --no-install biome ci .
step 'typecheck (tsc)';        npx --no-install tsc --noEmit -p tsconfig.json
step 'build';                  npm run build --silent
step 'error-code docs';        npx --no-install tsx scripts/generate-error-codes.ts --check
step 'tests with coverage';    npx --no-install c8 node scripts/test.mjs
step 'packed tarball';         bash scripts/test-package.sh
step 'benchmarks (smoke)'
for bench in bench/*.ts; do
  echo "-- $bench"
  npx --no-install tsx "$bench" --smoke
done
echo
echo 'test:all: everything passed'
