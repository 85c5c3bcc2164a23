import assert from 'node:assert/strict'
import { once } from 'node:events'
import { request as httpRequest, type IncomingMessage, type ServerResponse } from 'node:http'
import { connect } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, describe, it } from 'node:test'
import {
  createLoadSampler,
  type LoadSample,
  MemoryStore,
  type RateLimitReset,
  type RateLimitStore,
  StoreDeadlineError,
} from '../src/index.ts'
import { frameworks, type Listen, type RunningApp, startApp } from './support/harness.ts'

const calm: LoadSample = { eventLoopDelayMs: 2, eventLoopUtilization: 0.1, heapUsedBytes: 1e6, rssBytes: 1e7 }
const json = { accept: 'application/json' }

async function get(app: RunningApp, path: string, headers: Record<string, string> = {}) {
  if (app.socketPath !== undefined) return getThroughSocket(app.socketPath, path, headers)
  const res = await fetch(app.url + path, { headers })
  return { status: res.status, headers: res.headers, text: await res.text() }
}

async function getThroughSocket(socketPath: string, path: string, headers: Record<string, string>) {
  const req = httpRequest({ socketPath, path, headers })
  req.end()
  const [res] = (await once(req, 'response')) as [IncomingMessage]
  let text = ''
  for await (const chunk of res) text += chunk
  const received = new Headers()
  for (const [name, value] of Object.entries(res.headers))
    if (typeof value === 'string') received.set(name, value)
  return { status: res.statusCode ?? 0, headers: received, text }
}

/**
 * Blocks the event loop for `ms`, as a GC pause or synchronous work in another request does:
 * the thread sleeps in Atomics.wait() rather than spinning, so as not to load a shared machine.
 */
function stallLoop(ms: number): void {
  const cell = new Int32Array(new SharedArrayBuffer(4))
  const until = performance.now() + ms
  for (let left = ms; left > 0; left = until - performance.now()) Atomics.wait(cell, 0, 0, left)
}

function deferred() {
  let resolve: () => void = () => {}
  const promise = new Promise<void>((r) => {
    resolve = r
  })
  return { promise, resolve }
}

for (const framework of frameworks) {
  describe(`load protection on ${framework}`, () => {
    const apps: RunningApp[] = []
    after(async () => {
      for (const app of apps) await app.close()
    })
    async function start(spec: Parameters<typeof startApp>[1], listen?: Listen) {
      const app = await startApp(framework, spec, listen)
      apps.push(app)
      return app
    }

    describe('rateLimit(options)', () => {
      it('sends RateLimit headers on every response and refuses with 429 once the limit is reached', async () => {
        const app = await start({
          use: (a) => [a.rateLimit({ limit: 2, windowMs: '1m', name: 'per-ip' })],
          routes: [{ path: '/chart', handle: () => ({ body: 'chart' }) }],
        })
        const first = await get(app, '/chart')
        assert.equal(first.status, 200)
        assert.equal(first.headers.get('ratelimit-policy'), '"per-ip";q=2;w=60')
        assert.match(first.headers.get('ratelimit') ?? '', /^"per-ip";r=1;t=(60|59)$/)
        assert.equal((await get(app, '/chart')).headers.get('ratelimit')?.startsWith('"per-ip";r=0;'), true)
        const refused = await get(app, '/chart', json)
        assert.equal(refused.status, 429)
        assert.equal(refused.headers.get('x-ic-error-code'), 'IC_RATE_LIMITED')
        assert.match(refused.headers.get('retry-after') ?? '', /^(60|59)$/)
        assert.match(refused.headers.get('ratelimit') ?? '', /^"per-ip";r=0;t=(60|59)$/)
        assert.equal(refused.headers.get('ratelimit-policy'), '"per-ip";q=2;w=60')
        assert.equal(refused.headers.get('content-type'), 'application/problem+json; charset=utf-8')
        assert.equal(JSON.parse(refused.text).code, 'IC_RATE_LIMITED')
        assert.deepEqual(
          app.reports.map((r) => [r.status, r.code]),
          [[429, 'IC_RATE_LIMITED']],
        )
      })

      it('counts a request once when one instance is mounted app-wide and on its route', async () => {
        let limiter: unknown
        const app = await start({
          use: (a) => {
            limiter = a.rateLimit({ limit: 3, windowMs: '1m', name: 'per-ip' })
            return [limiter]
          },
          routes: [{ path: '/chart', use: () => [limiter], handle: () => ({ body: 'chart' }) }],
        })
        const seen: (string | null)[] = []
        for (let i = 0; i < 3; i++) {
          const res = await get(app, '/chart')
          assert.equal(res.status, 200)
          seen.push(res.headers.get('ratelimit')?.replace(/;t=\d+$/, '') ?? null)
          assert.equal(res.headers.get('ratelimit-policy'), '"per-ip";q=3;w=60', 'one policy item')
        }
        assert.deepEqual(seen, ['"per-ip";r=2', '"per-ip";r=1', '"per-ip";r=0'])
        assert.equal((await get(app, '/chart')).status, 429)
      })

      it('charges a per-route cost from the request (output area)', async () => {
        const app = await start({
          routes: [
            {
              path: '/chart',
              use: (a) => [
                a.rateLimit({
                  limit: 1_000_000,
                  windowMs: '1m',
                  cost: (req) => {
                    const chs = new URL(req.url ?? '/', 'http://x').searchParams.get('chs') ?? '100x100'
                    const [w = 0, h = 0] = chs.split('x').map(Number)
                    return w * h
                  },
                }),
              ],
              handle: () => ({ body: 'ok' }),
            },
            { path: '/free', handle: () => ({ body: 'free' }) },
          ],
        })
        assert.match((await get(app, '/chart?chs=999x999')).headers.get('ratelimit') ?? '', /;r=1999;/)
        const refused = await get(app, '/chart?chs=100x100')
        assert.equal(refused.status, 429)
        assert.equal((await get(app, '/chart?chs=10x10')).status, 200)
        const free = await get(app, '/free')
        assert.equal(free.status, 200)
        assert.equal(free.headers.get('ratelimit'), null, 'other routes are not limited')
      })

      it('keys by the forwarded client only through trusted proxy hops', async () => {
        const app = await start({
          use: (a) => [a.rateLimit({ limit: 1, windowMs: '1m', trustProxy: 1 })],
          routes: [{ path: '/', handle: () => ({ body: 'ok' }) }],
        })
        assert.equal((await get(app, '/', { 'x-forwarded-for': '198.51.100.1' })).status, 200)
        assert.equal((await get(app, '/', { 'x-forwarded-for': '198.51.100.2' })).status, 200)
        assert.equal((await get(app, '/', { 'x-forwarded-for': '203.0.113.9, 198.51.100.1' })).status, 429)
      })

      it("warns once of an untrusted X-Forwarded-For for key 'account' when it falls back to the IP", async () => {
        const name = `by-account-${framework}`
        const warnings: string[] = []
        const onWarning = (warning: Error & { code?: string }) => {
          if (warning.code === 'IMAGE_API_ERRORS_UNTRUSTED_FORWARDED_FOR') warnings.push(warning.message)
        }
        process.on('warning', onWarning)
        try {
          const app = await start({
            routes: [
              {
                path: '/',
                use: (a) => [a.rateLimit({ limit: 2, windowMs: '1m', key: 'account', name })],
                handle: () => ({ body: 'ok' }),
              },
              {
                path: '/trusting',
                use: (a) => [a.rateLimit({ limit: 2, windowMs: '1m', key: 'account', trustProxy: 1 })],
                handle: () => ({ body: 'ok' }),
              },
            ],
          })
          const statuses: number[] = []
          // Keyed by its account, the request does not depend on the address.
          statuses.push((await get(app, '/?icac=acme', { 'x-forwarded-for': '198.51.100.1' })).status)
          await new Promise((resolve) => setImmediate(resolve))
          assert.deepEqual(warnings, [], 'no warning while the account is the key')
          // Three clients behind the loopback proxy, without icac: they share its key.
          for (const client of ['198.51.100.1', '198.51.100.2', '198.51.100.3'])
            statuses.push((await get(app, '/', { 'x-forwarded-for': client })).status)
          for (const client of ['198.51.100.1', '198.51.100.2', '198.51.100.3'])
            statuses.push((await get(app, '/trusting', { 'x-forwarded-for': client })).status)
          assert.deepEqual(statuses, [200, 200, 200, 429, 200, 200, 200])
          // process.emitWarning() emits on the next tick.
          await new Promise((resolve) => setImmediate(resolve))
        } finally {
          process.off('warning', onWarning)
        }
        assert.equal(warnings.length, 1, warnings.join(' | '))
        assert.match(
          warnings[0] ?? '',
          new RegExp(
            `^rateLimit\\(\\) "${name}" got X-Forwarded-For from 127\\.0\\.0\\.1 with trustProxy false: every client behind that proxy shares one limit\\. Set trustProxy`,
          ),
        )
      })

      it('gives a trustProxy function IPv4 peers of a dual-stack server as IPv4', async () => {
        const asked: string[] = []
        const ours = (address: string) => {
          asked.push(address)
          return address.startsWith('127.')
        }
        const app = await start(
          {
            use: (a) => [a.rateLimit({ limit: 1, windowMs: '1m', trustProxy: ours })],
            routes: [{ path: '/', handle: () => ({ body: 'ok' }) }],
          },
          { host: '::' },
        )
        assert.equal((await get(app, '/', { 'x-forwarded-for': '198.51.100.1' })).status, 200)
        assert.equal(
          (await get(app, '/', { 'x-forwarded-for': '198.51.100.2' })).status,
          200,
          'another client',
        )
        assert.equal((await get(app, '/', { 'x-forwarded-for': '198.51.100.1' })).status, 429)
        assert.equal(asked[0], '127.0.0.1', 'the socket peer, ::ffff:127.0.0.1 on the wire')
      })

      it('keys clients apart on a Unix socket behind a proxy: the socket counts as a trusted hop', async () => {
        const asked: string[] = []
        const app = await start(
          {
            use: (a) => [
              a.rateLimit({ limit: 1, windowMs: '1m', name: 'by-number', trustProxy: 1 }),
              a.rateLimit({
                limit: 1,
                windowMs: '1m',
                name: 'by-function',
                trustProxy: (address) => {
                  asked.push(address)
                  return false
                },
              }),
            ],
            routes: [{ path: '/', handle: () => ({ body: 'ok' }) }],
          },
          { socketPath: join(tmpdir(), `rl-${process.pid}-${framework}.sock`) },
        )
        assert.equal((await get(app, '/', { 'x-forwarded-for': '203.0.113.1, 198.51.100.1' })).status, 200)
        assert.equal(
          (await get(app, '/', { 'x-forwarded-for': '203.0.113.1, 198.51.100.2' })).status,
          200,
          'another client',
        )
        const again = await get(app, '/', { 'x-forwarded-for': '203.0.113.9, 198.51.100.1' })
        assert.equal(again.status, 429)
        assert.equal(again.headers.get('ratelimit'), '"by-number";r=0;t=60')
        assert.deepEqual(asked, ['198.51.100.1', '198.51.100.2'], 'never asked about the socket')
      })

      it('believes no X-Forwarded-For from a TCP client that reset its connection (it has no address either)', async () => {
        const memory = new MemoryStore()
        const keys: string[] = []
        const store: RateLimitStore = {
          consume: (key, cost, policy) => {
            keys.push(key)
            return memory.consume(key, cost, policy)
          },
          reset: (key) => memory.reset(key),
        }
        const app = await start({
          use: (a) => [
            a.rateLimit({
              limit: 3,
              windowMs: '1m',
              blockMs: '1h',
              store,
              trustProxy: (address) => address === '127.0.0.2',
            }),
          ],
          routes: [{ path: '/', handle: () => ({ body: 'ok' }) }],
        })
        const { port } = new URL(app.url)
        const victim = '198.51.100.50'
        for (let i = 0; i < 5; i++) {
          const socket = connect(Number(port), '127.0.0.1')
          socket.on('error', () => {})
          await once(socket, 'connect')
          socket.write(`GET / HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: ${victim}\r\n\r\n`)
          socket.resetAndDestroy()
        }
        while (keys.length < 5) await new Promise((resolve) => setTimeout(resolve, 5))
        assert.ok(!keys.some((key) => key.includes(victim)), `counted under ${keys.join(', ')}`)
        const throughProxy = await new Promise<IncomingMessage>((resolve, reject) =>
          httpRequest({ port, localAddress: '127.0.0.2', headers: { 'x-forwarded-for': victim } }, resolve)
            .on('error', reject)
            .end(),
        )
        throughProxy.resume()
        assert.equal(throughProxy.statusCode, 200, 'the client the spoofed requests named is not blocked')
      })

      it('awaits an async key and skip, as ported from express-rate-limit', async () => {
        const app = await start({
          use: (a) => [
            a.rateLimit({
              limit: 1,
              windowMs: '1m',
              key: async (req) => (req.headers['x-api-key'] as string | undefined) ?? 'anonymous',
              skip: async (req) => req.headers['x-internal'] === '1',
            }),
          ],
          routes: [
            { path: '/', handle: () => ({ body: 'ok' }) },
            {
              path: '/numbered',
              use: (a) => [a.rateLimit({ limit: 1, windowMs: '1m', key: async () => 42 as never })],
              handle: () => ({ body: 'ok' }),
            },
          ],
        })
        assert.equal((await get(app, '/', { 'x-api-key': 'alice' })).status, 200)
        assert.equal((await get(app, '/', { 'x-api-key': 'bob' })).status, 200, 'another key')
        assert.equal((await get(app, '/', { 'x-api-key': 'alice' })).status, 429)
        for (let i = 0; i < 2; i++) {
          const internal = await get(app, '/', { 'x-api-key': 'alice', 'x-internal': '1' })
          assert.equal(internal.status, 200, 'skipped')
          assert.equal(internal.headers.get('ratelimit'), null)
        }
        const numbered = await get(app, '/numbered', { 'x-api-key': 'carol', ...json })
        assert.equal(numbered.status, 500)
        assert.equal(numbered.headers.get('x-ic-error-code'), 'IC_INTERNAL_ERROR')
        assert.equal(app.reports.at(-1)?.code, 'IC_INTERNAL_ERROR')
      })

      it('unblocks a client with resetKey(), its IPv6 group given by any of its addresses', async () => {
        let limiter: RateLimitReset | undefined
        const app = await start({
          use: (a) => {
            const made = a.rateLimit({ limit: 1, windowMs: '1m', blockMs: '1h', trustProxy: 1 })
            limiter = made
            return [made]
          },
          routes: [{ path: '/', handle: () => ({ body: 'ok' }) }],
        })
        const client = { 'x-forwarded-for': '2001:db8:1:100::1' }
        assert.equal((await get(app, '/', client)).status, 200)
        assert.equal((await get(app, '/', client)).status, 429)
        await limiter?.resetKey('2001:db8:1:1ff::9')
        assert.equal((await get(app, '/', client)).status, 200)
        assert.equal((await get(app, '/', client)).status, 429, 'counted again from there')
      })

      it('serves and reports through onStoreError when the store fails (fail-open)', async () => {
        const failures: unknown[] = []
        const broken: RateLimitStore = { consume: () => Promise.reject(new Error('down')), reset: () => {} }
        const app = await start({
          use: (a) => [
            a.rateLimit({ limit: 1, windowMs: 1000, store: broken, onStoreError: (e) => failures.push(e) }),
          ],
          routes: [{ path: '/', handle: () => ({ body: 'served' }) }],
        })
        const res = await get(app, '/')
        assert.equal(res.status, 200)
        assert.equal(res.text, 'served')
        assert.equal(failures.length, 1)
        assert.deepEqual(app.reports, [], 'a served request is no failed request')
      })

      it("refuses at construction a store without reset(), such as rate-limiter-flexible's", async () => {
        // rate-limiter-flexible's limiters have consume(key, points), which rejects once over the
        // limit, and delete(key): accepted, every request would fail open and nothing be limited.
        class RateLimiterMemory {
          async consume(_key: string, points = 1) {
            return { remainingPoints: 1, msBeforeNext: 60_000, consumedPoints: points }
          }
          async delete() {}
        }
        const store = new RateLimiterMemory() as never
        const message =
          /^Expected `store` to be a rate-limit store \(an object with consume\(key, cost, policy, deadlineMs\) and reset\(key\), .*do not fit\), got a RateLimiterMemory without reset\(\)$/
        await assert.rejects(
          start({
            use: (a) => [a.rateLimit({ limit: 2, windowMs: '1m', store })],
            routes: [{ path: '/', handle: () => ({ body: 'served' }) }],
          }),
          { name: 'TypeError', message },
        )
        await assert.rejects(
          start({
            use: (a) => [a.imageChartsRateLimits({ store })],
            routes: [{ path: '/', handle: () => ({ body: 'served' }) }],
          }),
          { name: 'TypeError', message },
        )
        const app = await start({
          use: (a) => [a.rateLimit({ limit: 1, windowMs: '1m', store: new MemoryStore() })],
          routes: [{ path: '/', handle: () => ({ body: 'served' }) }],
        })
        assert.deepEqual([(await get(app, '/')).status, (await get(app, '/')).status], [200, 429])
      })

      it('swallows the rejection of an async onStoreError, served (fail-open) or refused (fail-closed)', async () => {
        const unhandled: unknown[] = []
        const onUnhandled = (reason: unknown) => unhandled.push(reason)
        process.on('unhandledRejection', onUnhandled)
        try {
          const reported: unknown[] = []
          // As when Redis is down and the metrics backend the hook reports to is too.
          const common = {
            limit: 1,
            windowMs: 1000,
            store: { consume: () => Promise.reject(new Error('The client is offline')), reset: () => {} },
            onStoreError: async (e: unknown) => {
              reported.push(e)
              throw new Error('metrics backend unreachable')
            },
          }
          const app = await start({
            routes: [
              { path: '/open', use: (a) => [a.rateLimit(common)], handle: () => ({ body: 'served' }) },
              {
                path: '/closed',
                use: (a) => [a.rateLimit({ ...common, failOpen: false })],
                handle: () => ({ body: 'served' }),
              },
            ],
          })
          const served = await get(app, '/open')
          assert.equal(served.status, 200)
          assert.equal(served.text, 'served')
          const refused = await get(app, '/closed')
          assert.equal(refused.status, 503)
          assert.equal(refused.headers.get('x-ic-error-code'), 'IC_STORE_UNAVAILABLE')
          assert.equal((await get(app, '/open')).status, 200, 'the server still answers')
          assert.equal(reported.length, 3)
          // An unhandled rejection is reported once the microtasks of the turn have run.
          await new Promise((resolve) => setTimeout(resolve, 20))
        } finally {
          process.off('unhandledRejection', onUnhandled)
        }
        assert.deepEqual(unhandled, [], 'no unhandled rejection, which would end the process')
      })

      it('asks a store of its own again after a stall of the event loop only when it rejects with StoreDeadlineError', async () => {
        // The first call's answer comes after a stall longer than storeTimeoutMs; the second refuses.
        const lateStore = (error: Error) => {
          const deadlines: number[] = []
          const store: RateLimitStore = {
            consume: (_key, _cost, _policy, deadlineMs) => {
              deadlines.push(deadlineMs ?? Number.NaN)
              if (deadlines.length > 1) return { allowed: false, used: 1, resetMs: 5000 }
              setImmediate(() => stallLoop(300))
              return new Promise((_resolve, reject) => setImmediate(() => reject(error)))
            },
            reset: () => {},
          }
          return { store, deadlines }
        }
        const counted = lateStore(new StoreDeadlineError('ran after its deadline: counted nothing'))
        const failed = lateStore(new Error('no such key space'))
        const failures: unknown[] = []
        const common = {
          limit: 1,
          windowMs: '1m',
          storeTimeoutMs: 100,
          onStoreError: (e: unknown) => failures.push(e),
        }
        const app = await start({
          routes: [
            {
              path: '/counted',
              use: (a) => [a.rateLimit({ ...common, store: counted.store })],
              handle: () => ({ body: 'served' }),
            },
            {
              path: '/failed',
              use: (a) => [a.rateLimit({ ...common, store: failed.store })],
              handle: () => ({ body: 'served' }),
            },
          ],
        })
        const refused = await get(app, '/counted')
        assert.equal(refused.status, 429, 'the answer of the second call applies')
        assert.equal(counted.deadlines.length, 2)
        assert.ok(
          (counted.deadlines[1] as number) >= (counted.deadlines[0] as number) + 200,
          `a fresh deadline: ${counted.deadlines.join(', ')}`,
        )
        assert.deepEqual(failures, [])
        const served = await get(app, '/failed')
        assert.equal(served.status, 200, 'fail-open')
        assert.equal(failed.deadlines.length, 1, 'another error may have counted: not asked again')
        assert.deepEqual(
          failures.map((e) => (e as Error).message),
          ['no such key space'],
        )
      })

      it('refuses with 503 IC_STORE_UNAVAILABLE when the store hangs (fail-closed)', async () => {
        const hanging: RateLimitStore = { consume: () => new Promise(() => {}), reset: () => {} }
        const app = await start({
          use: (a) => [
            a.rateLimit({
              limit: 1,
              windowMs: 1000,
              store: hanging,
              failOpen: false,
              storeTimeoutMs: 50,
              onStoreError: () => {},
            }),
          ],
          routes: [{ path: '/', handle: () => ({ body: 'served' }) }],
        })
        const res = await get(app, '/')
        assert.equal(res.status, 503)
        assert.equal(res.headers.get('x-ic-error-code'), 'IC_STORE_UNAVAILABLE')
        assert.equal(res.headers.get('retry-after'), '5')
        assert.equal(app.reports[0]?.code, 'IC_STORE_UNAVAILABLE')
      })

      it("applies Image-Charts' limits: 10 unsigned requests a minute, then blocked", async () => {
        const app = await start({
          use: (a) => [a.imageChartsRateLimits({ store: new MemoryStore() })],
          routes: [{ path: '/chart', handle: () => ({ body: 'chart' }) }],
        })
        for (let i = 0; i < 10; i++) assert.equal((await get(app, '/chart?cht=p')).status, 200)
        const refused = await get(app, '/chart?cht=p')
        assert.equal(refused.status, 429)
        assert.equal(refused.headers.get('retry-after'), '60')
        // Refused by the unsigned quota, so the per-IP policy neither counted nor reported it.
        assert.equal(refused.headers.get('ratelimit-policy'), '"ic-unsigned";q=10;w=60')
        assert.equal((await get(app, '/chart?cht=p&icac=acme&ichm=abc')).status, 200, 'signed requests go on')
      })

      it('imageChartsRateLimits() waits for its store once per request: one deadline for both policies, one report', async () => {
        const calls: { key: string; deadlineMs: number | undefined }[] = []
        let answer: 'slow' | 'hang' | 'reject' = 'slow'
        const store: RateLimitStore = {
          consume: (key, _cost, _policy, deadlineMs) => {
            calls.push({ key, deadlineMs })
            if (answer === 'reject') return Promise.reject(new Error('The client is offline'))
            if (answer === 'hang') return new Promise(() => {})
            return new Promise((resolve) =>
              setTimeout(() => resolve({ allowed: true, used: 1, resetMs: 5000 }), 20),
            )
          },
          reset: () => {},
        }
        const failures: Error[] = []
        const app = await start({
          use: (a) => [
            a.imageChartsRateLimits({
              store,
              storeTimeoutMs: 200,
              onStoreError: (e) => failures.push(e as Error),
            }),
          ],
          routes: [{ path: '/chart', handle: () => ({ body: 'chart' }) }],
        })
        const counted = await get(app, '/chart?cht=p')
        assert.equal(counted.status, 200)
        assert.equal(counted.headers.get('ratelimit'), '"ic-unsigned";r=9;t=5, "ic-per-ip";r=89;t=5')
        assert.deepEqual(
          calls.map((c) => c.key),
          ['ic-unsigned:ip:127.0.0.1', 'ic-per-ip:ip:127.0.0.1'],
        )
        assert.equal(calls[1]?.deadlineMs, calls[0]?.deadlineMs, 'the second policy gets what is left')
        for (const failing of ['hang', 'reject'] as const) {
          answer = failing
          calls.length = 0
          failures.length = 0
          const served = await get(app, '/chart?cht=p')
          assert.equal(served.status, 200, `${failing}: served, fail-open`)
          assert.equal(served.headers.get('ratelimit'), null)
          assert.equal(calls.length, 1, `${failing}: the second policy does not ask the failed store again`)
          assert.deepEqual(
            failures.map((e) => e.name),
            [failing === 'hang' ? 'StoreTimeoutError' : 'Error'],
            `${failing}: reported once`,
          )
        }
      })

      it('warns once per imageChartsRateLimits() call of a misconfiguration, not once per policy', async () => {
        for (const [code, listen, headers] of [
          ['IMAGE_API_ERRORS_UNTRUSTED_FORWARDED_FOR', undefined, { 'x-forwarded-for': '198.51.100.9' }],
          [
            'IMAGE_API_ERRORS_NO_CLIENT_ADDRESS',
            { socketPath: join(tmpdir(), `icrl-${process.pid}-${framework}.sock`) },
            {},
          ],
        ] as const) {
          const warnings: string[] = []
          const onWarning = (warning: Error & { code?: string }) => {
            if (warning.code === code) warnings.push(warning.message)
          }
          process.on('warning', onWarning)
          try {
            const app = await start(
              {
                use: (a) => [a.imageChartsRateLimits({ store: new MemoryStore() })],
                routes: [{ path: '/chart', handle: () => ({ body: 'chart' }) }],
              },
              listen,
            )
            // Unsigned (both policies count it), then signed (the per-IP one only).
            for (const path of ['/chart?cht=p', '/chart?cht=p&icac=acme&ichm=abc', '/chart?cht=p'])
              assert.equal((await get(app, path, headers)).status, 200)
            // process.emitWarning() emits on the next tick.
            await new Promise((resolve) => setImmediate(resolve))
          } finally {
            process.off('warning', onWarning)
          }
          assert.equal(warnings.length, 1, `${code}: ${warnings.join(' | ')}`)
          assert.match(
            warnings[0] ?? '',
            /^imageChartsRateLimits\(\) got .* with trustProxy false: every client/,
          )
        }
      })

      it('counts forged signatures per IP when mounted before signature(), as recommended', async () => {
        const app = await start({
          use: (a) => [
            a.imageChartsRateLimits({ store: new MemoryStore() }),
            a.signature({ accounts: { acme: ['s3cret-s3cret-s3cret-s3cret-1234'] } }),
          ],
          routes: [{ path: '/chart', handle: () => ({ body: 'chart' }) }],
        })
        const statuses: number[] = []
        for (let i = 0; i < 95; i++)
          statuses.push((await get(app, `/chart?cht=p&icac=acme&ichm=${'ab'.repeat(32)}`)).status)
        assert.deepEqual(statuses.slice(0, 90), Array(90).fill(401), 'refused by the signature check')
        assert.deepEqual(statuses.slice(90), Array(5).fill(429), 'then by the per-IP limit')
        const next = await get(app, '/chart?cht=p')
        assert.equal(next.status, 429, 'the client is blocked for a minute, unsigned requests too')
      })
    })

    describe('loadShedding(options)', () => {
      it('refuses with 503 IC_OVERLOADED, the reason in the report, while over a threshold; recovers after', async () => {
        let sample = calm
        const sampler = createLoadSampler({ source: () => sample })
        after(() => sampler.close())
        const app = await start({
          use: (a) => [a.loadShedding({ sampler, maxEventLoopDelayMs: 100, random: () => 0 })],
          routes: [{ path: '/chart', handle: () => ({ body: 'chart' }) }],
        })
        assert.equal((await get(app, '/chart')).status, 200)
        sample = { ...calm, eventLoopDelayMs: 150 }
        // Two samples over: an overload that lasts, whose Retry-After grows with the pressure.
        sampler.refresh()
        sampler.refresh()
        const shed = await get(app, '/chart', json)
        assert.equal(shed.status, 503)
        assert.equal(shed.headers.get('x-ic-error-code'), 'IC_OVERLOADED')
        assert.equal(shed.headers.get('retry-after'), '16')
        assert.equal(JSON.parse(shed.text).code, 'IC_OVERLOADED')
        const report = app.reports[0]
        assert.ok(report !== undefined)
        assert.equal(report.status, 503)
        assert.deepEqual((report.error as { details?: unknown }).details, {
          reason: 'eventLoopDelay',
          value: 150,
          threshold: 100,
          pressure: 1.5,
        })
        sample = calm
        sampler.refresh()
        assert.equal((await get(app, '/chart')).status, 200)
      })

      it('answers an overload seen in one sample only with the minimum Retry-After: the stall has ended', async () => {
        let sample = calm
        const sampler = createLoadSampler({ source: () => sample })
        after(() => sampler.close())
        const app = await start({
          use: (a) => [
            a.loadShedding({ sampler, maxEventLoopDelayMs: 100, retryAfterJitterRatio: 0, random: () => 0 }),
          ],
          routes: [{ path: '/chart', handle: () => ({ body: 'chart' }) }],
        })
        // One 1.5 s stall (a boot step, a synchronous parse) read in one window, three times the threshold.
        sample = { ...calm, eventLoopDelayMs: 300 }
        sampler.refresh()
        const once = await get(app, '/chart')
        assert.deepEqual([once.status, once.headers.get('retry-after')], [503, '1'])
        sampler.refresh()
        const lasting = await get(app, '/chart')
        assert.deepEqual([lasting.status, lasting.headers.get('retry-after')], [503, '30'])
        sample = calm
        sampler.refresh()
        assert.equal((await get(app, '/chart')).status, 200)
      })

      it('limits requests in flight, released when a response finishes or its client goes away', async () => {
        const gates: ReturnType<typeof deferred>[] = []
        const serverClosed: Promise<unknown>[] = []
        const entered: ReturnType<typeof deferred>[] = [deferred(), deferred(), deferred()]
        const app = await start({
          use: (a) => [a.loadShedding({ maxInFlight: 1 })],
          routes: [
            {
              path: '/slow',
              handle: async ({ res }) => {
                const gate = deferred()
                gates.push(gate)
                serverClosed.push(new Promise((resolve) => res.on('close', resolve)))
                entered[gates.length - 1]?.resolve()
                await gate.promise
                return { body: 'done' }
              },
            },
            { path: '/fast', handle: () => ({ body: 'fast' }) },
          ],
        })
        const slow = fetch(`${app.url}/slow`)
        await entered[0]?.promise
        const shed = await get(app, '/fast')
        assert.equal(shed.status, 503)
        assert.equal(shed.headers.get('x-ic-error-code'), 'IC_OVERLOADED')
        gates[0]?.resolve()
        assert.equal(await (await slow).text(), 'done')
        assert.equal((await get(app, '/fast')).status, 200, 'released on finish')

        // A client that leaves mid-request releases its slot at res 'close'.
        const aborted = httpRequest(`${app.url}/slow`)
        aborted.on('error', () => {})
        aborted.end()
        await entered[1]?.promise
        aborted.destroy()
        // The slot was released by the middleware's own 'close' listener, registered before this one.
        await serverClosed[1]
        const status = (await get(app, '/fast')).status
        assert.equal(status, 200, 'released on close')
        gates[1]?.resolve()
      })

      it('counts a request once when one instance is mounted app-wide and on its route', async () => {
        const gate = deferred()
        const entered = deferred()
        let shed: unknown
        const app = await start({
          use: (a) => {
            shed = a.loadShedding({ maxInFlight: 2 })
            return [shed]
          },
          routes: [
            {
              path: '/slow',
              use: () => [shed],
              handle: async () => {
                entered.resolve()
                await gate.promise
                return { body: 'slow' }
              },
            },
            { path: '/fast', use: () => [shed], handle: () => ({ body: 'fast' }) },
          ],
        })
        const statuses: number[] = []
        for (let i = 0; i < 5; i++) statuses.push((await get(app, '/fast')).status)
        assert.deepEqual(statuses, [200, 200, 200, 200, 200], 'nothing leaks')
        const slow = fetch(`${app.url}/slow`)
        await entered.promise
        assert.equal((await get(app, '/fast')).status, 200, 'the slow request holds one slot of two')
        gate.resolve()
        assert.equal(await (await slow).text(), 'slow')
        assert.deepEqual(app.reports, [])
      })

      it('frees the slot of a pipelined request queued behind another when its client leaves, and not before', async () => {
        const pipelined = deferred()
        const later = deferred()
        const entered = [deferred(), deferred(), deferred()]
        let count = 0
        let socketClosed: Promise<unknown> = Promise.resolve()
        const hold = async (req: IncomingMessage) => {
          const gate = count < 2 ? pipelined : later
          // The queued POST's body is read, so its request emits 'close' while the connection lives.
          for await (const _ of req);
          socketClosed = once(req.socket, 'close')
          entered[count++]?.resolve()
          await gate.promise
          return { body: 'done' }
        }
        const app = await start({
          use: (a) => [a.loadShedding({ maxInFlight: 2 })],
          routes: [
            { path: '/slow', handle: ({ req }) => hold(req) },
            { path: '/slow', method: 'POST', handle: ({ req }) => hold(req) },
            { path: '/fast', handle: () => ({ body: 'fast' }) },
          ],
        })
        const client = connect(Number(new URL(app.url).port), '127.0.0.1')
        client.on('error', () => {})
        client.write(
          'GET /slow HTTP/1.1\r\nHost: x\r\n\r\n' +
            'POST /slow HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello',
        )
        await entered[0]?.promise
        await entered[1]?.promise
        await new Promise((resolve) => setImmediate(resolve))
        assert.equal((await get(app, '/fast')).status, 503, 'both pipelined requests hold a slot')
        client.destroy()
        await socketClosed
        pipelined.resolve()
        // One request in flight again, and one slot left for another: the queued one freed its slot too.
        const slow = fetch(`${app.url}/slow`)
        await entered[2]?.promise
        assert.equal((await get(app, '/fast')).status, 200, 'both slots released when the client left')
        later.resolve()
        assert.equal(await (await slow).text(), 'done')
      })

      it('frees the slot of a request whose client left before loadShedding() ran', async () => {
        const app = await start({
          use: (a) => [
            // An asynchronous guard (a rate-limit store, an account lookup) that outlives its client.
            a.fromGuard(async (req, res) => {
              if (req.url === '/wait' && !res.closed) await once(res, 'close')
            }, 'slowLookup'),
            a.loadShedding({ maxInFlight: 1 }),
          ],
          routes: [
            { path: '/wait', handle: () => ({ body: 'late' }) },
            { path: '/', handle: () => ({ body: 'ok' }) },
          ],
        })
        const client = connect(Number(new URL(app.url).port), '127.0.0.1')
        client.on('error', () => {})
        client.write('GET /wait HTTP/1.1\r\nHost: x\r\n\r\n')
        const [, res] = (await once(app.server, 'request')) as [unknown, ServerResponse]
        client.destroy()
        await once(res, 'close')
        await new Promise((resolve) => setImmediate(resolve))
        assert.equal((await get(app, '/')).status, 200)
        assert.equal((await get(app, '/')).status, 200)
      })
    })
  })
}
