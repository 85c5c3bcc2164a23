// Overload: a CPU-heavy Express 5 route (about 4 ms of CPU per request) is first measured
// unloaded (one request at a time) and saturated (eight at a time: its capacity), then sent
// three times its capacity for a while, open loop, with and without loadShedding(). Reported: the p99 latency of accepted requests
// against its unloaded value (the goal: within 2×, with shedding), and the share of 503s.
import { spawnSync } from 'node:child_process'
import { cpus } from 'node:os'
import { smoke, startServer } from './lib/abba.ts'

const workMs = 4
const seconds = smoke ? 2 : 10
const script = 'bench/servers/overload.ts'
const hasTaskset = spawnSync('taskset', ['-c', '1', 'true']).status === 0 && cpus().length > 1

interface Result {
  byStatus: Record<string, { count: number; p50: number; p99: number; mean: number }>
  errors: number
  timeouts: number
}

function client(port: number, rate: number | string, secs: number): Result {
  const args = [
    '--import',
    'tsx',
    'bench/lib/open-loop.ts',
    `http://127.0.0.1:${port}/work`,
    String(rate),
    String(secs),
  ]
  const [command, argv] = hasTaskset
    ? ['taskset', ['-c', '1', process.execPath, ...args]]
    : [process.execPath, args]
  const run = spawnSync(command, argv, { encoding: 'utf8', maxBuffer: 16 * 1024 * 1024 })
  if (run.status !== 0) throw new Error(`load generator failed: ${run.stderr}`)
  return JSON.parse(run.stdout.trim().split('\n').at(-1) ?? '{}') as Result
}

const f = (n: number | undefined, digits = 1) => (n === undefined ? '–' : n.toFixed(digits))
const rows: string[] = []
let capacity = 0
let unloadedP99 = 0
for (const variant of ['none', 'shed'] as const) {
  const server = await startServer({ script, args: [variant, String(workMs)] })
  try {
    client(server.port, 'closed', 1)
    const unloaded = client(server.port, 'closed', smoke ? 1 : 3)
    const ok = unloaded.byStatus['200']
    if (variant === 'none') {
      // Capacity: throughput with several requests at a time, so the server, not the round trip, is the limit.
      const saturated = client(server.port, 'closed:8', smoke ? 1 : 3)
      capacity = (saturated.byStatus['200']?.count ?? 0) / (smoke ? 1 : 3)
      unloadedP99 = ok?.p99 ?? 0
    }
    const rate = Math.round(capacity * 3)
    const loaded = client(server.port, rate, seconds)
    const accepted = loaded.byStatus['200']
    const shed = loaded.byStatus['503']
    const sent =
      Object.values(loaded.byStatus).reduce((s, v) => s + v.count, 0) + loaded.errors + loaded.timeouts
    rows.push(
      `| ${variant === 'shed' ? 'loadShedding()' : 'no shedding'} | ${f(ok?.p99)} | ${rate} | ${accepted?.count ?? 0} | **${f(accepted?.p99)}** | **${f((accepted?.p99 ?? 0) / Math.max(0.001, unloadedP99), 2)}×** | ${f(((shed?.count ?? 0) / Math.max(1, sent)) * 100)} % | ${f(shed?.p99)} | ${loaded.errors + loaded.timeouts} |`,
    )
  } finally {
    await server.stop()
  }
}

console.log(
  `\n### Overload: 3× capacity on a ${workMs} ms CPU route, ${seconds} s, open loop${smoke ? ' (smoke run)' : ''}\n`,
)
console.log(
  `node ${process.version}, ${cpus().length} cores; capacity (8 requests at a time, no shedding): ${capacity.toFixed(0)} req/s\n`,
)
console.log(
  '| server | unloaded p99 ms | offered req/s | accepted (200) | p99 of accepted ms | ÷ unloaded p99 (no-shed run) | 503 share | p99 of 503 ms | errors + timeouts |',
)
console.log('|---|---|---|---|---|---|---|---|---|')
for (const row of rows) console.log(row)
