// Load generator for bench/overload.ts, run as its own process. Open loop: requests leave at
// a fixed rate whatever the server does (autocannon's closed loop would slow down with the
// server and hide the overload). Latency is split by status, so the p99 of accepted (200)
// requests is not mixed with fast 503s. Prints one JSON line.
//   argv: <url> <requests per second, or 'closed' / 'closed:N' for N requests at a time> <seconds>
import { Agent, request } from 'node:http'

const [url = '', rateArg = 'closed', secondsArg = '2'] = process.argv.slice(2)
const seconds = Number(secondsArg)
const agent = new Agent({ keepAlive: true, maxSockets: 2048 })
const TIMEOUT_MS = 10_000
const latencies: Record<string, number[]> = {}
let errors = 0
let timeouts = 0

function send(): Promise<void> {
  const started = performance.now()
  return new Promise((resolve) => {
    const req = request(url, { agent, timeout: TIMEOUT_MS }, (res) => {
      res.resume()
      res.on('end', () => {
        const status = String(res.statusCode)
        latencies[status] ??= []
        latencies[status].push(performance.now() - started)
        resolve()
      })
    })
    req.on('timeout', () => {
      timeouts++
      req.destroy()
    })
    req.on('error', () => {
      errors++
      resolve()
    })
    req.end()
  })
}

const pending: Promise<void>[] = []
const start = performance.now()
if (rateArg.startsWith('closed')) {
  const loops = Number(rateArg.split(':')[1] ?? 1)
  const loop = async () => {
    while (performance.now() - start < seconds * 1000) await send()
  }
  await Promise.all(Array.from({ length: loops }, loop))
} else {
  const rate = Number(rateArg)
  let sent = 0
  await new Promise<void>((resolve) => {
    const timer = setInterval(() => {
      const elapsed = performance.now() - start
      const due = Math.min(Math.floor((rate * elapsed) / 1000), Math.floor(rate * seconds))
      while (sent < due) {
        pending.push(send())
        sent++
      }
      if (elapsed >= seconds * 1000) {
        clearInterval(timer)
        resolve()
      }
    }, 2)
  })
  await Promise.all(pending)
}
agent.destroy()

const percentile = (values: number[], p: number) => {
  if (values.length === 0) return 0
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] as number
}
const summary: Record<string, { count: number; p50: number; p99: number; mean: number }> = {}
for (const [status, values] of Object.entries(latencies)) {
  summary[status] = {
    count: values.length,
    p50: percentile(values, 50),
    p99: percentile(values, 99),
    mean: values.reduce((s, v) => s + v, 0) / values.length,
  }
}
console.log(JSON.stringify({ seconds, byStatus: summary, errors, timeouts }))
