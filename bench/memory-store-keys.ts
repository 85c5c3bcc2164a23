// Heap held by a MemoryStore of 1,000,000 live keys (the goal: under 200 MB), and the cost
// of consume() on new and on known keys. Not a throughput ratio: one process, measured
// after a full garbage collection before and after filling the store.
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import { MemoryStore } from '../src/index.ts'

const smoke = process.argv.includes('--smoke')
setFlagsFromString('--expose-gc')
const gc = runInNewContext('gc') as () => void

const keys = smoke ? 100_000 : 1_000_000
const policy = { limit: 90, windowMs: 600_000, blockMs: 60_000 }
// Keys as the limiter builds them: policy name, then the client (IPv4 and IPv6 /56 prefixes).
const keyOf = (i: number) =>
  i % 4 === 0
    ? `90-in-10s:ip:2001:db8:${(i >>> 8).toString(16)}:${((i & 0xff) << 8).toString(16)}::/56`
    : `90-in-10s:ip:${10 + (i >>> 24)}.${(i >>> 16) & 0xff}.${(i >>> 8) & 0xff}.${i & 0xff}`

const mb = (bytes: number) => (bytes / 1024 / 1024).toFixed(1)
gc()
const before = process.memoryUsage()
const store = new MemoryStore({ maxKeys: keys })
let started = performance.now()
for (let i = 0; i < keys; i++) store.consume(keyOf(i), 1, policy)
const insertMicros = ((performance.now() - started) * 1000) / keys
started = performance.now()
for (let i = 0; i < keys; i++) store.consume(keyOf(i), 1, policy)
const hitMicros = ((performance.now() - started) * 1000) / keys
gc()
const after = process.memoryUsage()
const heap = after.heapUsed - before.heapUsed
const buffers = after.arrayBuffers - before.arrayBuffers

console.log(`\n### MemoryStore holding ${keys.toLocaleString('en')} keys${smoke ? ' (smoke run)' : ''}\n`)
console.log(`node ${process.version}\n`)
console.log(
  '| keys held | heapUsed Δ MB | typed arrays Δ MB | heap + arrays per key, bytes | consume() new key µs | consume() known key µs |',
)
console.log('|---|---|---|---|---|---|')
console.log(
  `| ${store.size.toLocaleString('en')} | **${mb(heap)}** | ${mb(buffers)} | ${((heap + buffers) / keys).toFixed(0)} | ${insertMicros.toFixed(2)} | ${hitMicros.toFixed(2)} |`,
)
if (!smoke && heap + buffers > 200 * 1024 * 1024) console.log('\nOver the 200 MB goal.')
