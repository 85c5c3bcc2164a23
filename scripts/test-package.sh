#!/usr/bin/env bash
# Packs the package and uses the tarball from an ESM, a CommonJS (require) and a TypeScript
# (nodenext) consumer, each making one real request; then publint and attw check the manifest.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
# npm pack runs the build (prepack): the tarball never holds a stale dist/.
tarball="$PWD/$(npm pack --silent | tail -n 1)"
work=$(mktemp -d)
trap 'rm -rf "$work" "$tarball"' EXIT
# Every relative link of every Markdown file the tarball ships (README, CHANGELOG, BENCHMARKS,
# docs/) resolves inside the package as installed: a file the tarball lacks (examples/, src/)
# or one outside it, and a heading its target lacks, fail.
mkdir "$work/unpacked"
tar xzf "$tarball" -C "$work/unpacked"
node scripts/check-md-links.mjs "$work/unpacked/package"
rm -rf "$work/unpacked"
cp test/consumers/esm.mjs test/consumers/cjs.cjs test/consumers/consumer.mts test/consumers/inferred.mts \
  test/consumers/tsconfig.json test/consumers/tsconfig.inferred.json "$work/"
cd "$work"
echo '{ "name": "consumer", "private": true }' > package.json
npm install --no-audit --no-fund --silent "$tarball" express@5 koa@3 typescript@6 @types/node@20 @types/express@5 @types/koa@2.15 >/dev/null
node esm.mjs
node cjs.cjs
npx --no-install tsc -p tsconfig.json
npx --no-install tsc -p tsconfig.inferred.json
node out/consumer.mjs
# The types hold for TypeScript 5 (the oldest and the newest 5.x this was checked with) and
# for TypeScript 7, the native compiler.
for version in 5.4 5.9 7; do
  npm install --no-audit --no-fund --silent "typescript@$version" >/dev/null
  npx --no-install tsc -p tsconfig.json --noEmit
  if [ "$version" != 5.4 ]; then npx --no-install tsc -p tsconfig.inferred.json; fi
done
# Nothing but the package and @types/node, with skipLibCheck off: the declarations need no
# @types package a consumer without Express or Koa would lack.
bare=$(mktemp -d)
trap 'rm -rf "$work" "$bare" "$tarball"' EXIT
cp "$repo/test/consumers/bare.mts" "$repo/test/consumers/tsconfig.bare.json" "$bare/"
cd "$bare"
echo '{ "name": "bare-consumer", "private": true }' > package.json
npm install --no-audit --no-fund --silent "$tarball" typescript@5.9 @types/node@20 >/dev/null
npx --no-install tsc -p tsconfig.bare.json
cd "$repo"
npx --no-install publint --strict
npx --no-install attw --pack . --profile esm-only --format table-flipped
