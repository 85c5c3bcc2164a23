// Instructions per request, counted by callgrind: deterministic where req/s ratios swing by
// ±10 % between runs on this machine. Each server runs under valgrind; instrumentation is
// switched on after a warm-up (so JIT compilation is over) and the main thread's count is
// divided by the requests sent. Callgrind also simulates the caches and the branch predictor:
// first-level instruction-cache misses and mispredicted branches per request show the cost that
// instruction counts miss (code run cold, between two requests' worth of Express and Node).
// Needs valgrind (skipped, with a note, when it is missing).
//   npx tsx bench/instructions.ts              bare route and requestRules(), three times each
//   npx tsx bench/instructions.ts --smoke      a few hundred requests, once each
import { spawn, spawnSync } from 'node:child_process'
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { signQuery } from '../src/index.ts'
import { smoke } from './lib/abba.ts'
import { ACCOUNT, HOST, SECRET } from './servers/rules-fixture.ts'

const root = fileURLToPath(new URL('..', import.meta.url))
const script = 'bench/servers/express-rules.ts'
const path = `/img?${signQuery(`width=300&height=200&quality=80&crop=fit&origin=${encodeURIComponent(`https://${HOST}/photos/a.jpg`)}&icac=${ACCOUNT}`, SECRET)}`
const warmUp = smoke ? 300 : 20_000
const measured = smoke ? 200 : 8_000
const runs = smoke ? 1 : 3

if (spawnSync('valgrind', ['--version']).status !== 0) {
  console.log('valgrind is not installed: instruction counts skipped')
  process.exit(0)
}

function requests(port: number, amount: number): void {
  const run = spawnSync(
    process.execPath,
    [
      `${root}node_modules/autocannon/autocannon.js`,
      '-c',
      '10',
      '-a',
      String(amount),
      '-t',
      '60',
      '-j',
      `http://127.0.0.1:${port}${path}`,
    ],
    { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 },
  )
  const result = JSON.parse(run.stdout) as { non2xx: number; errors: number; requests: { total: number } }
  if (result.non2xx + result.errors > 0 || result.requests.total < amount)
    throw new Error(
      `${result.non2xx} non-2xx, ${result.errors} errors, ${result.requests.total}/${amount} requests`,
    )
}

/** What callgrind counts per request on the main thread (its simulated caches and branch predictor). */
interface Counts {
  readonly instructions: number
  /** First-level instruction-cache misses: code fetched again because other code evicted it. */
  readonly instructionMisses: number
  /** Mispredicted conditional and indirect branches. */
  readonly mispredicted: number
}

/** Main-thread counts per request of one server variant. */
async function count(variant: string): Promise<Counts> {
  const dir = mkdtempSync(join(tmpdir(), 'callgrind-'))
  const out = join(dir, 'out')
  const child = spawn(
    'valgrind',
    [
      '--tool=callgrind',
      '--separate-threads=yes',
      '--cache-sim=yes',
      '--branch-sim=yes',
      '--instr-atstart=no',
      '--smc-check=all-non-file',
      `--callgrind-out-file=${out}`,
      process.execPath,
      '--import',
      'tsx',
      script,
      variant,
    ],
    { cwd: root, stdio: ['ignore', 'pipe', 'ignore'] },
  )
  try {
    const port = await new Promise<number>((resolve, reject) => {
      child.once('exit', (code) => reject(new Error(`${script} ${variant} exited with ${code}`)))
      createInterface({ input: child.stdout }).on('line', (line) => {
        const match = /^listening (\d+)$/.exec(line.trim())
        if (match) resolve(Number(match[1]))
      })
    })
    const control = (...args: string[]) => spawnSync('callgrind_control', [...args, String(child.pid)])
    requests(port, warmUp)
    control('-i', 'on')
    requests(port, measured)
    control('-i', 'off')
    control('-d')
    const dump = readdirSync(dir).find((name) => name.endsWith('-01') && name.startsWith('out.'))
    if (dump === undefined) throw new Error('callgrind wrote no dump for the main thread')
    const text = readFileSync(join(dir, dump), 'utf8')
    const events = /^events: (.+)$/m.exec(text)?.[1]?.trim().split(/\s+/)
    const totals = /^totals: (.+)$/m.exec(text)?.[1]?.trim().split(/\s+/).map(Number)
    if (events === undefined || totals === undefined) throw new Error('no totals line in the callgrind dump')
    const event = (name: string) => (totals[events.indexOf(name)] ?? Number.NaN) / measured
    return {
      instructions: event('Ir'),
      instructionMisses: event('I1mr'),
      mispredicted: event('Bcm') + event('Bim'),
    }
  } finally {
    child.kill('SIGKILL')
    rmSync(dir, { recursive: true, force: true })
  }
}

const variants = [
  ['bare', 'express 5, bare route'],
  ['rules', 'requestRules() (1 layer, 10 hosts)'],
] as const
const counts = new Map<string, Counts[]>()
for (let run = 0; run < runs; run++) {
  for (const [variant] of variants)
    counts.set(variant, [...(counts.get(variant) ?? []), await count(variant)])
}
// The median run by instructions stands for each build: one run now and then lands a few percent off.
const medianRun = (variant: string) => {
  const sorted = [...(counts.get(variant) ?? [])].sort((a, b) => a.instructions - b.instructions)
  return sorted[sorted.length >> 1] as Counts
}
const bare = medianRun('bare')
const n = (value: number) => Math.round(value).toLocaleString('en')
const over = (value: number, base: number) =>
  `+${n(value - base)} (${(((value - base) / base) * 100).toFixed(1)} %)`
console.log(`\n### Instructions per request (callgrind, main thread)${smoke ? ' (smoke run)' : ''}\n`)
console.log(`${warmUp} warm-up requests, then ${measured} counted, 10 connections; ${runs} run(s) each\n`)
console.log(
  '| server | instructions per request (each run) | over bare | I1 misses | over bare | mispredicted branches | over bare |',
)
console.log('|---|---|---|---|---|---|---|')
for (const [variant, name] of variants) {
  const run = medianRun(variant)
  const row = [
    name,
    (counts.get(variant) ?? []).map((c) => n(c.instructions)).join(', '),
    variant === 'bare' ? '' : over(run.instructions, bare.instructions),
    n(run.instructionMisses),
    variant === 'bare' ? '' : over(run.instructionMisses, bare.instructionMisses),
    n(run.mispredicted),
    variant === 'bare' ? '' : over(run.mispredicted, bare.mispredicted),
  ]
  console.log(`| ${row.join(' | ')} |`)
}
