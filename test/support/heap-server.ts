// A server for test/load-shedding-heap.test.ts, in a process of its own (its heap limit kept
// small, so that V8 runs major GCs at sizes a test can reach; no GC is ever forced):
// `node --import tsx --max-old-space-size=256 test/support/heap-server.ts <framework>` prints
// `listening <url>`. Routes: `/spike` (a live spike a major GC saw, then dropped), `/grow`
// (the same, kept), `/stats` (heapUsed and the number of major GCs), and `/` under
// loadShedding({ maxHeapUsedBytes }), the threshold 64 MB above the heap at start.
import { constants, PerformanceObserver } from 'node:perf_hooks'
import { getHeapStatistics } from 'node:v8'
import { createLoadSampler } from '../../src/index.ts'
import { type Framework, startApp } from './harness.ts'

const majorGcs: number[] = []
new PerformanceObserver((list) => {
  for (const entry of list.getEntries())
    if ((entry as { detail?: { kind?: number } }).detail?.kind === constants.NODE_PERFORMANCE_GC_MAJOR)
      majorGcs.push(getHeapStatistics().used_heap_size)
}).observe({ entryTypes: ['gc'] })

/** Allocates objects kept in `into` until a major GC V8 ran by itself found more than `bytes` in use. */
async function growUntilGcSees(into: unknown[][], bytes: number): Promise<number> {
  const seen = majorGcs.length
  for (let chunk = 0; chunk < 1000; chunk++) {
    const objects: unknown[] = []
    for (let i = 0; i < 10_000; i++) objects.push({ i, name: `object ${i} of chunk ${chunk}` })
    into.push(objects)
    // The observer's entries arrive in an immediate queued before this one.
    await new Promise((resolve) => setImmediate(resolve))
    const heap = majorGcs.slice(seen).find((h) => h > bytes)
    if (heap !== undefined) return heap
  }
  throw new Error(`no major GC saw more than ${bytes} bytes in use`)
}

const framework = process.argv[2] as Framework
const threshold = process.memoryUsage().heapUsed + 64e6
const sampler = createLoadSampler({ sampleIntervalMs: 250 })
let held: unknown[][] = []
const stats = () => ({ heapUsed: process.memoryUsage().heapUsed, majorGcs: majorGcs.length, threshold })
const app = await startApp(framework, {
  routes: [
    {
      path: '/spike',
      handle: async () => {
        let spike: unknown[][] | undefined = []
        // 32 MB over: more than young space holds, so no scavenge alone takes heapUsed back under.
        const seen = await growUntilGcSees(spike, threshold + 32e6)
        spike = undefined
        // The reading the next request meets: taken after the spike, not before it.
        sampler.refresh()
        return { headers: { 'content-type': 'application/json' }, body: JSON.stringify({ ...stats(), seen }) }
      },
    },
    {
      path: '/grow',
      handle: async () => {
        const seen = await growUntilGcSees(held, threshold)
        // Read now, not at the next interval: the reading a request meets right after the growth.
        sampler.refresh()
        return { headers: { 'content-type': 'application/json' }, body: JSON.stringify({ ...stats(), seen }) }
      },
    },
    { path: '/stats', handle: () => ({ body: JSON.stringify(stats()) }) },
    {
      path: '/',
      use: (a) => [a.loadShedding({ sampler, maxHeapUsedBytes: threshold })],
      handle: () => ({ body: 'ok' }),
    },
  ],
})
process.on('SIGTERM', () => {
  held = []
  sampler.close()
  void app.close().then(() => process.exit(0))
})
console.log(`listening ${app.url}`)
