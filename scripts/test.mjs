#!/usr/bin/env node
// Runs every *.test.ts under src/ and test/ with node:test through tsx.
// Node 20's --test takes paths, not globs, so the files are listed here.
import { spawn } from 'node:child_process'
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
// In a process group of its own, killed whole once the run ends: a process a failed test left
// behind (a spawned demo server, a redis-server) would otherwise outlive the run and hold its
// output pipe open, and a CI that reads that pipe to its end would wait for it forever.
const run = spawn(
  process.execPath,
  ['--import', 'tsx', '--test', '--test-concurrency=4', '--test-timeout=60000', ...files],
  { stdio: 'inherit', detached: true },
)
const killGroup = (signal) => {
  try {
    process.kill(-run.pid, signal)
  } catch {
    // The group is gone already.
  }
}
// Detached, the run no longer gets the terminal's Ctrl-C: pass signals on.
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) process.on(signal, () => killGroup(signal))
// node --test waits for each file's output pipes to close: a leftover that inherited one keeps
// the whole run from ending. A run past this is stopped, and fails, rather than hanging CI.
const limitMs = Number(process.env.TEST_RUN_TIMEOUT_MS ?? 10 * 60_000)
const watchdog = setTimeout(() => {
  console.error(
    `test run still going after ${limitMs} ms (a test left a process holding its output?): stopped`,
  )
  killGroup('SIGKILL')
}, limitMs)
run.on('exit', (code, signal) => {
  clearTimeout(watchdog)
  killGroup('SIGKILL')
  process.exit(code ?? (signal === null ? 1 : 128))
})
