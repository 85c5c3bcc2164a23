// Deadline precision: the 504 must reach the client within the deadline + 20 ms at p99,
// whether the handler passes the request signal to its backend fetch or ignores it, with
// many requests timing out at once. Then the cost of clientClosed() + deadline() on a route
// that answers at once, as an ABBA throughput ratio against the bare route.
//
//   npx tsx bench/deadline.ts            2,000 timed-out requests per variant, 6 ABBA pairs
//   npx tsx bench/deadline.ts --smoke    a few hundred, 1 pair, no thresholds, exit 0
import { once } from 'node:events'
import { Agent, get, type IncomingMessage } from 'node:http'
import { printComparisons, type RunningServer, runAbba, smoke, startServer } from './lib/abba.ts'

const DEADLINE_MS = 100
const ALLOWANCE_MS = 20
const REQUESTS = smoke ? 300 : 2000
const CONCURRENCY = Number(process.argv[process.argv.indexOf('--concurrency') + 1]) || 50
const script = 'bench/servers/lifecycle.ts'

function percentile(sorted: readonly number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] as number
}

async function measure(server: RunningServer, path: string, requests = REQUESTS) {
  const agent = new Agent({ keepAlive: true, maxSockets: CONCURRENCY })
  const latencies: number[] = []
  const statuses = new Map<number, number>()
  let left = requests
  const worker = async (): Promise<void> => {
    while (left > 0) {
      left--
      const started = performance.now()
      const req = get({ host: '127.0.0.1', port: server.port, path, agent })
      const [res] = (await once(req, 'response')) as [IncomingMessage]
      res.resume()
      await once(res, 'end')
      latencies.push(performance.now() - started)
      statuses.set(res.statusCode ?? 0, (statuses.get(res.statusCode ?? 0) ?? 0) + 1)
    }
  }
  await Promise.all(Array.from({ length: CONCURRENCY }, worker))
  agent.destroy()
  latencies.sort((a, b) => a - b)
  return {
    path,
    statuses: Object.fromEntries(statuses),
    p50: percentile(latencies, 50),
    p99: percentile(latencies, 99),
    max: latencies.at(-1) as number,
  }
}

const server = await startServer({ script, args: ['guarded', String(DEADLINE_MS)] })
const rows = []
try {
  // Warm up (JIT, connections) first; its numbers are thrown away.
  for (const path of ['/slow-aware', '/slow-ignoring']) await measure(server, path, 2 * CONCURRENCY)
  for (const path of ['/slow-aware', '/slow-ignoring']) rows.push(await measure(server, path))
} finally {
  await server.stop()
}

console.log(
  `## Deadline precision (deadline ${DEADLINE_MS} ms, ${REQUESTS} requests, ${CONCURRENCY} at once)\n`,
)
console.log('| Handler | Statuses | p50 | p99 | max | p99 ≤ deadline + 20 ms |')
console.log('|---|---|---:|---:|---:|---|')
let pass = true
for (const r of rows) {
  const ok = r.p99 <= DEADLINE_MS + ALLOWANCE_MS && r.statuses[504] === REQUESTS
  pass &&= ok
  const statuses = Object.entries(r.statuses)
    .map(([status, n]) => `${n} × ${status}`)
    .join(', ')
  const name = r.path === '/slow-aware' ? 'passes the signal to the backend fetch' : 'ignores the signal'
  console.log(
    `| ${name} | ${statuses} | ${r.p50.toFixed(1)} ms | ${r.p99.toFixed(1)} ms | ${r.max.toFixed(1)} ms | ${ok ? 'yes' : 'NO'} |`,
  )
}

const comparisons = await runAbba({
  baseline: { name: 'bare Express 5 route', script, args: ['bare'], path: '/ok' },
  candidates: [{ name: 'clientClosed() + deadline()', script, args: ['guarded', '10000'], path: '/ok' }],
})
console.log()
printComparisons('Cost of clientClosed() + deadline() on a route that answers at once', comparisons)
if (smoke) console.log('(smoke run: thresholds not enforced)')
process.exit(smoke || pass ? 0 : 1)
