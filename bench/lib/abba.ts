import { spawn, spawnSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { cpus } from 'node:os'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'

/** A server under test: a script that listens on 127.0.0.1, port 0, and prints `listening <port>`. */
export interface ServerSpec {
  /** Label in the results. */
  readonly name: string
  /** Path of the server script (TypeScript is run through tsx). */
  readonly script: string
  readonly args?: readonly string[]
  /** Request path (with query) that autocannon loads. */
  readonly path: string
  /** Extra request headers. */
  readonly headers?: Readonly<Record<string, string>>
  /** Discard the server's stderr (e.g. a handler that logs every failure). */
  readonly quiet?: boolean
}

export interface AbbaOptions {
  readonly baseline: ServerSpec
  readonly candidates: readonly ServerSpec[]
  /** ABBA pairs per candidate (1 with --smoke, whatever this says). @default 6 */
  readonly pairs?: number
  /** Seconds per load window (1 with --smoke). @default 5 */
  readonly windowSeconds?: number
  /** autocannon connections. @default 50 */
  readonly connections?: number
  /**
   * Server processes per side. Two processes of the same server differ by several percent
   * for their whole life on this kind of machine (where their memory and code land), which
   * pairing windows does not cancel: with more than one, pair `i` loads baseline process
   * `i mod n` against candidate process `(i + ⌊i / n⌋) mod n`, so every process meets every
   * other. @default 1
   */
  readonly processes?: number
}

export interface Window {
  readonly requestsPerSecond: number
  readonly requests: number
  readonly p99Ms: number
  readonly non2xx: number
  readonly errors: number
  readonly cpuMicrosPerRequest: number
}

export interface Comparison {
  readonly baseline: string
  readonly candidate: string
  /** Median of the paired candidate/baseline throughput ratios, with their range. */
  readonly ratio: { readonly median: number; readonly min: number; readonly max: number }
  /** Median of the paired server CPU differences, µs per request (candidate − baseline). */
  readonly deltaCpuMicros: number
  readonly baselineWindows: readonly Window[]
  readonly candidateWindows: readonly Window[]
}

/** True when the bench was started with `--smoke`: a short run for CI, no thresholds. */
export const smoke = process.argv.includes('--smoke')

const root = fileURLToPath(new URL('../..', import.meta.url))
const autocannonBin = `${root}node_modules/autocannon/autocannon.js`
const hasTaskset = spawnSync('taskset', ['-c', '0', 'true']).status === 0
const ticksPerSecond = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout.trim()) || 100

function pinned(core: number, command: string, args: readonly string[]): [string, string[]] {
  return hasTaskset && cpus().length > 1
    ? ['taskset', ['-c', String(core), command, ...args]]
    : [command, [...args]]
}

/** A running server process. */
export interface RunningServer {
  readonly pid: number
  readonly port: number
  cpuTicks(): number
  stop(): Promise<void>
}

/** Starts a server script pinned to core 0 and waits for its `listening <port>` line. */
export async function startServer(
  spec: Pick<ServerSpec, 'script' | 'args' | 'quiet'>,
): Promise<RunningServer> {
  const [command, args] = pinned(0, process.execPath, [
    '--expose-gc',
    '--import',
    'tsx',
    spec.script,
    ...(spec.args ?? []),
  ])
  const child = spawn(command, args, {
    cwd: root,
    stdio: ['ignore', 'pipe', spec.quiet === true ? 'ignore' : 'inherit'],
  })
  const lines = createInterface({ input: child.stdout })
  const port = await new Promise<number>((resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`${spec.script} exited with ${code} before listening`)))
    lines.on('line', (line) => {
      const match = /^listening (\d+)$/.exec(line.trim())
      if (match) resolve(Number(match[1]))
      else process.stdout.write(`  [${spec.script}] ${line}\n`)
    })
  })
  const pid = child.pid as number
  return {
    pid,
    port,
    cpuTicks() {
      const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? []
      return Number(fields[11]) + Number(fields[12])
    },
    async stop() {
      if (child.exitCode !== null) return
      child.kill('SIGTERM')
      await new Promise((resolve) => child.once('exit', resolve))
    },
  }
}

/** One autocannon window against a running server, as its own process pinned to core 1. */
export function load(
  server: RunningServer,
  spec: Pick<ServerSpec, 'path' | 'headers'>,
  seconds: number,
  connections = 50,
): Window {
  const headerArgs = Object.entries(spec.headers ?? {}).flatMap(([k, v]) => ['-H', `${k}=${v}`])
  const before = server.cpuTicks()
  const [command, args] = pinned(1, process.execPath, [
    autocannonBin,
    '-c',
    String(connections),
    '-d',
    String(seconds),
    '-p',
    '1',
    '-j',
    ...headerArgs,
    `http://127.0.0.1:${server.port}${spec.path}`,
  ])
  const run = spawnSync(command, args, { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 })
  const after = server.cpuTicks()
  if (run.status !== 0) throw new Error(`autocannon failed: ${run.stderr}`)
  const result = JSON.parse(run.stdout) as {
    requests: { average: number; total: number }
    latency: { p99: number }
    non2xx: number
    errors: number
    timeouts: number
  }
  const requests = Math.max(1, result.requests.total)
  return {
    requestsPerSecond: result.requests.average,
    requests: result.requests.total,
    p99Ms: result.latency.p99,
    non2xx: result.non2xx,
    errors: result.errors + result.timeouts,
    cpuMicrosPerRequest: ((after - before) / ticksPerSecond / requests) * 1e6,
  }
}

const median = (values: readonly number[]): number => {
  const sorted = [...values].sort((a, b) => a - b)
  const mid = sorted.length >> 1
  return sorted.length % 2 === 1
    ? (sorted[mid] as number)
    : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2
}

/**
 * Measures each candidate against the baseline in interleaved A B B A windows (the
 * servers started once and warmed up; one process per side unless `processes`), and
 * reports the median paired throughput ratio, its range, and the median server-CPU
 * difference per request. Ratios, never absolute req/s: the machine's speed drifts by
 * tens of percent between minutes.
 */
export async function runAbba(options: AbbaOptions): Promise<Comparison[]> {
  const pairs = smoke ? 1 : (options.pairs ?? 6)
  const seconds = smoke ? 1 : (options.windowSeconds ?? 5)
  const connections = options.connections ?? 50
  const processes = smoke ? 1 : (options.processes ?? 1)
  const warm = smoke ? 1 : 3
  const results: Comparison[] = []
  const startAll = async (spec: ServerSpec) => {
    const started: RunningServer[] = []
    for (let i = 0; i < processes; i++) started.push(await startServer(spec))
    for (const server of started) load(server, spec, warm, connections)
    return started
  }
  const stopAll = (servers: readonly RunningServer[]) => Promise.all(servers.map((server) => server.stop()))
  const base = await startAll(options.baseline)
  try {
    for (const candidateSpec of options.candidates) {
      const candidates = await startAll(candidateSpec)
      try {
        const a: Window[] = []
        const b: Window[] = []
        for (let i = 0; i < pairs; i++) {
          const baseline = base[i % processes] as RunningServer
          const candidate = candidates[(i + Math.floor(i / processes)) % processes] as RunningServer
          if (i % 2 === 0) {
            a.push(load(baseline, options.baseline, seconds, connections))
            b.push(load(candidate, candidateSpec, seconds, connections))
          } else {
            b.push(load(candidate, candidateSpec, seconds, connections))
            a.push(load(baseline, options.baseline, seconds, connections))
          }
        }
        const ratios = a.map((w, i) => (b[i] as Window).requestsPerSecond / Math.max(1, w.requestsPerSecond))
        const deltas = a.map((w, i) => (b[i] as Window).cpuMicrosPerRequest - w.cpuMicrosPerRequest)
        results.push({
          baseline: options.baseline.name,
          candidate: candidateSpec.name,
          ratio: { median: median(ratios), min: Math.min(...ratios), max: Math.max(...ratios) },
          deltaCpuMicros: median(deltas),
          baselineWindows: a,
          candidateWindows: b,
        })
      } finally {
        await stopAll(candidates)
      }
    }
  } finally {
    await stopAll(base)
  }
  return results
}

/** Prints comparisons as a Markdown table (the format BENCHMARKS.md records). */
export function printComparisons(title: string, comparisons: readonly Comparison[]): void {
  const f = (n: number, digits = 2) => n.toFixed(digits)
  console.log(`\n### ${title}\n`)
  console.log(
    `node ${process.version}, ${cpus().length} cores, ${cpus()[0]?.model ?? '?'}${smoke ? ' (smoke run)' : ''}\n`,
  )
  console.log(
    '| baseline → candidate | req/s ratio, median [min–max] | Δ server CPU µs/req | median req/s A → B | p99 ms A → B | non-2xx B | errors B |',
  )
  console.log('|---|---|---|---|---|---|---|')
  for (const c of comparisons) {
    const rpsA = median(c.baselineWindows.map((w) => w.requestsPerSecond))
    const rpsB = median(c.candidateWindows.map((w) => w.requestsPerSecond))
    const p99A = median(c.baselineWindows.map((w) => w.p99Ms))
    const p99B = median(c.candidateWindows.map((w) => w.p99Ms))
    const non2xx = c.candidateWindows.reduce((s, w) => s + w.non2xx, 0)
    const total = c.candidateWindows.reduce((s, w) => s + w.requests, 0)
    const errors = c.candidateWindows.reduce((s, w) => s + w.errors, 0)
    console.log(
      `| ${c.baseline} → ${c.candidate} | **${f(c.ratio.median)}** [${f(c.ratio.min)}–${f(c.ratio.max)}] | ${f(c.deltaCpuMicros, 0)} | ${f(rpsA, 0)} → ${f(rpsB, 0)} | ${f(p99A, 0)} → ${f(p99B, 0)} | ${non2xx}/${total} | ${errors} |`,
    )
  }
}
