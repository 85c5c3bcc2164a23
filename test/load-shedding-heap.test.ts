import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { describe, test } from 'node:test'
import { frameworks } from './support/harness.ts'

interface Stats {
  readonly heapUsed: number
  readonly majorGcs: number
  readonly threshold: number
  readonly seen?: number
}

/** Starts test/support/heap-server.ts for `framework` in a process of its own, with a 256 MB heap. */
async function startHeapServer(framework: string) {
  const child = spawn(
    process.execPath,
    ['--max-old-space-size=256', '--import', 'tsx', 'test/support/heap-server.ts', framework],
    // Not the runner's stderr: a child this test failed to stop must hold none of its pipes.
    { stdio: ['ignore', 'pipe', 'pipe'] },
  )
  let out = ''
  child.stderr.on('data', (chunk: Buffer) => {
    out += chunk.toString()
  })
  const url = await new Promise<string>((resolve, reject) => {
    child.stdout.on('data', (chunk: Buffer) => {
      out += chunk.toString()
      const found = /listening (http:\/\/[\d.:]+)/.exec(out)
      if (found !== null) resolve(found[1] as string)
    })
    child.once('exit', (code) => reject(new Error(`exited with ${code}: ${out}`)))
  })
  return {
    url,
    stats: async (path = '/stats') => (await (await fetch(url + path)).json()) as Stats,
    async close() {
      if (child.exitCode !== null) return
      child.kill('SIGTERM')
      await once(child, 'exit')
    },
  }
}

describe('loadShedding({ maxHeapUsedBytes }) against a real heap, no GC forced', () => {
  for (const framework of frameworks) {
    test(`${framework}: service resumes after a spike that ended, though heapUsed still counts its garbage; a heap that grew and stays is shed`, {
      timeout: 30_000,
    }, async () => {
      const server = await startHeapServer(framework)
      try {
        assert.equal((await fetch(server.url)).status, 200)
        // One request's live spike (a large decode), seen by a major GC of V8's own, then dropped.
        const spike = await server.stats('/spike')
        assert.ok(spike.heapUsed > spike.threshold, 'the spike left heapUsed over the threshold')
        const started = Date.now()
        let status = 0
        let refused = 0
        // Requests that allocate next to nothing: refused, they would never bring the major GC
        // that empties heapUsed (V8's memory reducer did, 30-40 s later).
        while (Date.now() - started < 6000) {
          const res = await fetch(server.url)
          await res.text()
          status = res.status
          if (status === 200) break
          refused++
          await new Promise((resolve) => setTimeout(resolve, 20))
        }
        const after = await server.stats()
        assert.equal(status, 200, `still refused after ${Date.now() - started} ms (${refused} requests)`)
        assert.equal(after.majorGcs, spike.majorGcs, 'a major GC ran meanwhile: the test shows nothing')
        assert.ok(
          after.heapUsed > after.threshold,
          'heapUsed fell under the threshold: the test shows nothing',
        )

        // A growth that stays (kept references) is still seen, and shed.
        const grown = await server.stats('/grow')
        assert.ok((grown.seen ?? 0) > grown.threshold)
        const shed = await fetch(server.url, { headers: { accept: 'application/json' } })
        const body = (await shed.json()) as { code?: string }
        assert.deepEqual([shed.status, body.code], [503, 'IC_OVERLOADED'])
      } finally {
        await server.close()
      }
    })
  }
})
