#!/usr/bin/env node
// Runs every *.test.ts under src/ and test/ with node:test through tsx.
// Node 20's --test takes paths, not globs, so the files are listed here.
import { spawnSync } from 'node:child_process'
import { readdirSync } from 'node:fs'
import { join } from 'node:path'

function collect(dir) {
  const out = []
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name)
    if (entry.isDirectory() && entry.name !== 'node_modules' && entry.name !== 'consumers')
      out.push(...collect(path))
    else if (entry.isFile() && entry.name.endsWith('.test.ts')) out.push(path)
  }
  return out
}

const filter = process.argv.slice(2)
const files = [...collect('src'), ...collect('test')]
  .filter((f) => filter.length === 0 || filter.some((f2) => f.includes(f2)))
  .sort()
if (files.length === 0) {
  console.error('no test files matched')
  process.exit(1)
}
const result = spawnSync(
  process.execPath,
  ['--import', 'tsx', '--test', '--test-concurrency=4', '--test-timeout=60000', ...files],
  { stdio: 'inherit' },
)
process.exit(result.status ?? 1)
