// Abort leak check: many requests whose client goes away while the backend fetch is in
// flight must leave nothing behind: no active handles or timers, no listeners, and the heap
// back within 10 MB of where it started. A deliberately leaky variant runs too, as a
// self-test: the check must catch it.
//
//   npx tsx bench/abort-leak.ts                  100,000 aborted requests (and 20,000 leaky ones)
//   npx tsx bench/abort-leak.ts --requests 20000
//   npx tsx bench/abort-leak.ts --smoke          a thousand, no thresholds, exit 0
import { EventEmitter, once } from 'node:events'
import { createServer, type Server } from 'node:http'
import { type AddressInfo, connect, type Socket } from 'node:net'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import express from 'express'
import { clientClosed, createBackendFetch, deadline, errorHandler, requestSignal } from '../src/express.ts'
import { smoke } from './lib/abba.ts'

setFlagsFromString('--expose-gc')
const gc = runInNewContext('gc') as () => void

function option(name: string, fallback: number): number {
  const at = process.argv.indexOf(name)
  return at === -1 ? fallback : Number(process.argv[at + 1])
}
const requests = option('--requests', smoke ? 1000 : 100_000)
const leakyRequests = option('--leaky-requests', smoke ? 1000 : 20_000)
const WARMUP = smoke ? 200 : 1000
const concurrency = option('--concurrency', 64)
const HEAP_LIMIT_BYTES = 10 * 1024 * 1024

interface Snapshot {
  readonly resources: Readonly<Record<string, number>>
  readonly listeners: Readonly<Record<string, number>>
  readonly heapUsed: number
}

function tracked(server: Server): { open: () => number } {
  let open = 0
  server.on('connection', (socket: Socket) => {
    open++
    socket.on('close', () => open--)
  })
  return { open: () => open }
}

async function listen(server: Server): Promise<number> {
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  return (server.address() as AddressInfo).port
}

async function runVariant(leaky: boolean, total: number) {
  const clients = new Map<string, Socket>()
  // The backend never answers: it takes the request as the cue that the handler is waiting
  // on it, and makes that request's client go away.
  const backend = createServer((req) => {
    const id = new URL(req.url ?? '/', 'http://x').searchParams.get('id') ?? ''
    clients.get(id)?.destroy()
  })
  const backendConnections = tracked(backend)
  const backendPort = await listen(backend)
  const fetchImage = createBackendFetch({ allowedAddresses: ['127.0.0.1'], timeoutMs: '1m' })

  const bus = new EventEmitter()
  bus.setMaxListeners(0)
  const statuses = new Map<number, number>()
  const app = express()
  app.use(clientClosed())
  app.use(deadline({ timeoutMs: '1m' }))
  if (leaky) {
    // The mistakes this check exists for: a timer never cleared, a listener never removed.
    app.use((req, _res, next) => {
      setTimeout(() => {}, 3_600_000)
      bus.on('never', () => req.url)
      next()
    })
  }
  app.get('/image', async (req, res, next) => {
    try {
      const image = await fetchImage(`http://127.0.0.1:${backendPort}/a.png?id=${req.query.id}`, {
        signal: requestSignal(req),
      })
      res.send(image.body)
    } catch (err) {
      next(err)
    }
  })
  app.use(errorHandler({ onError: (r) => statuses.set(r.status, (statuses.get(r.status) ?? 0) + 1) }))
  const server = createServer(app)
  const appConnections = tracked(server)
  const port = await listen(server)

  let nextId = 0
  let bytesReceived = 0
  const one = async (): Promise<void> => {
    const id = String(nextId++)
    const socket = connect(port, '127.0.0.1')
    clients.set(id, socket)
    socket.on('data', (chunk: Buffer) => {
      bytesReceived += chunk.length
    })
    socket.on('error', () => {})
    socket.write(`GET /image?id=${id} HTTP/1.1\r\nHost: bench\r\n\r\n`)
    await once(socket, 'close')
    clients.delete(id)
  }
  const batch = async (count: number): Promise<void> => {
    let left = count
    const worker = async (): Promise<void> => {
      while (left > 0) {
        left--
        await one()
      }
    }
    await Promise.all(Array.from({ length: Math.min(concurrency, count) }, worker))
  }
  const reported = () => [...statuses.values()].reduce((a, b) => a + b, 0)
  const settle = async (expected: number): Promise<void> => {
    while (reported() < expected || appConnections.open() > 0 || backendConnections.open() > 0) {
      await new Promise((resolve) => setTimeout(resolve, 5))
    }
    for (let i = 0; i < 3; i++) {
      await new Promise((resolve) => setImmediate(resolve))
      gc()
    }
  }
  const snapshot = (): Snapshot => {
    const resources: Record<string, number> = {}
    for (const kind of process.getActiveResourcesInfo()) resources[kind] = (resources[kind] ?? 0) + 1
    return {
      resources,
      listeners: {
        'server request': server.listenerCount('request'),
        'server connection': server.listenerCount('connection'),
        'backend connection': backend.listenerCount('connection'),
        'process (all events)': process.eventNames().reduce((n, e) => n + process.listenerCount(e), 0),
        'bus never': bus.listenerCount('never'),
      },
      heapUsed: process.memoryUsage().heapUsed,
    }
  }

  const warmup = Math.min(WARMUP, total)
  await batch(warmup)
  await settle(warmup)
  const before = snapshot()
  const started = performance.now()
  await batch(total)
  const seconds = (performance.now() - started) / 1000
  await settle(warmup + total)
  const afterRun = snapshot()

  const grown: string[] = []
  for (const [kind, count] of Object.entries(afterRun.resources)) {
    if (count > (before.resources[kind] ?? 0)) grown.push(`${kind} ${before.resources[kind] ?? 0} → ${count}`)
  }
  for (const [name, count] of Object.entries(afterRun.listeners)) {
    if (count > (before.listeners[name] ?? 0))
      grown.push(`${name} listeners ${before.listeners[name]} → ${count}`)
  }
  const heapDelta = afterRun.heapUsed - before.heapUsed
  if (heapDelta > HEAP_LIMIT_BYTES) grown.push(`heap +${(heapDelta / 1024 / 1024).toFixed(1)} MB`)

  bus.removeAllListeners()
  server.close()
  backend.close()
  return {
    variant: leaky ? 'leaky (self-test)' : 'clientClosed + deadline + backend fetch',
    total,
    seconds,
    statuses: Object.fromEntries(statuses),
    bytesReceived,
    heapDeltaMB: heapDelta / 1024 / 1024,
    timers: `${before.resources.Timeout ?? 0} → ${afterRun.resources.Timeout ?? 0}`,
    handles: `${Object.values(before.resources).reduce((a, b) => a + b, 0)} → ${Object.values(afterRun.resources).reduce((a, b) => a + b, 0)}`,
    grown,
  }
}

const real = await runVariant(false, requests)
const leaky = await runVariant(true, leakyRequests)

console.log(`## Abort leak check (${smoke ? 'smoke' : 'full'} run, concurrency ${concurrency})\n`)
console.log(
  '| Variant | Aborted requests | Time | Reported | Bytes sent to clients | Active resources | Timers | Heap Δ after GC | Growth found |',
)
console.log('|---|---:|---:|---|---:|---|---|---:|---|')
for (const r of [real, leaky]) {
  const reported = Object.entries(r.statuses)
    .map(([status, n]) => `${n} × ${status}`)
    .join(', ')
  console.log(
    `| ${r.variant} | ${r.total} | ${r.seconds.toFixed(1)} s | ${reported} | ${r.bytesReceived} | ${r.handles} | ${r.timers} | ${r.heapDeltaMB.toFixed(2)} MB | ${r.grown.join('; ') || 'none'} |`,
  )
}
const realOk =
  real.grown.length === 0 &&
  real.bytesReceived === 0 &&
  real.statuses[499] === real.total + Math.min(WARMUP, real.total)
const selfTestOk = leaky.grown.length > 0
console.log(
  `\nclean variant: ${realOk ? 'PASS' : 'FAIL'}; leaky variant caught: ${selfTestOk ? 'PASS' : 'FAIL'}`,
)
if (smoke) console.log('(smoke run: thresholds not enforced)')
process.exit(smoke || (realOk && selfTestOk) ? 0 : 1)
