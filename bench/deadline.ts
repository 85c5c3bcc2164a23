// Deadline precision: the 504 must reach the client within the deadline + 20 ms at p99,
// whether the handler passes the request signal to its backend fetch or ignores it, at 10
// connections (checked) and with 50 requests timing out at once (reported), autocannon on its own core. Then the cost of
// clientClosed() + deadline() on a route that answers at once, as an ABBA throughput ratio
// against the bare route.
//
// The floor row is a route without deadline() answering 504 from its own setTimeout: what the
// machine's timers and scheduler allow; the other rows should stay close to it.
//
//   npx tsx bench/deadline.ts            10 s of timed-out requests per handler, 6 ABBA pairs
//   npx tsx bench/deadline.ts --smoke    2 s per handler, 1 pair, no thresholds, exit 0
import { once } from 'node:events'
import { Agent, get, type IncomingMessage } from 'node:http'
import { load, printComparisons, type RunningServer, runAbba, smoke, startServer } from './lib/abba.ts'

const DEADLINE_MS = 100
const ALLOWANCE_MS = 20
const SECONDS = smoke ? 2 : 10
const CONNECTIONS = 50
/** Concurrencies measured: a moderate load, and 50 requests timing out in the same instant. */
const LOADS = [10, CONNECTIONS] as const
const script = 'bench/servers/lifecycle.ts'
const handlers = [
  { path: '/slow-aware', name: 'passes the signal to the backend fetch' },
  { path: '/slow-ignoring', name: 'ignores the signal' },
  { path: '/floor', name: 'floor: no deadline(), a 504 from its own timer (not a check)' },
] as const

/** Sends `count` requests, `CONNECTIONS` at a time, and counts the statuses (also a warm-up). */
async function statuses(server: RunningServer, path: string, count: number): Promise<Map<number, number>> {
  const agent = new Agent({ keepAlive: true, maxSockets: CONNECTIONS })
  const seen = new Map<number, number>()
  let left = count
  const worker = async (): Promise<void> => {
    while (left-- > 0) {
      const [res] = (await once(get({ host: '127.0.0.1', port: server.port, path, agent }), 'response')) as [
        IncomingMessage,
      ]
      res.resume()
      await once(res, 'end')
      seen.set(res.statusCode ?? 0, (seen.get(res.statusCode ?? 0) ?? 0) + 1)
    }
  }
  await Promise.all(Array.from({ length: CONNECTIONS }, worker))
  agent.destroy()
  return seen
}

const server = await startServer({ script, args: ['guarded', String(DEADLINE_MS)] })
const rows = []
try {
  for (const connections of LOADS) {
    for (const { path, name } of handlers) {
      const checked = await statuses(server, path, 4 * CONNECTIONS)
      const window = load(server, { path }, SECONDS, connections)
      rows.push({ name, connections, checked, window })
    }
  }
} finally {
  await server.stop()
}

console.log(`## Deadline precision (deadline ${DEADLINE_MS} ms, ${SECONDS} s per handler and load)\n`)
console.log(
  '| Handler | Connections | Statuses (first 200) | Requests under load | Not 504, or errors | p99 | p99 ≤ deadline + 20 ms |',
)
console.log('|---|---:|---|---:|---:|---:|---|')
let pass = true
for (const { name, connections, checked, window } of rows) {
  const only504 = checked.size === 1 && checked.has(504)
  const ok =
    only504 &&
    window.p99Ms <= DEADLINE_MS + ALLOWANCE_MS &&
    window.non2xx === window.requests &&
    window.errors === 0
  if (!name.startsWith('floor') && connections === LOADS[0]) pass &&= ok
  const seen = [...checked].map(([status, n]) => `${n} × ${status}`).join(', ')
  console.log(
    `| ${name} | ${connections} | ${seen} | ${window.requests} | ${window.requests - window.non2xx + window.errors} | ${window.p99Ms} ms | ${name.startsWith('floor') ? '—' : ok ? 'yes' : 'NO'} |`,
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
