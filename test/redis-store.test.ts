import assert from 'node:assert/strict'
import { after, before, describe, it, mock } from 'node:test'
import { Redis } from 'ioredis'
import { createClient } from 'redis'
import {
  MemoryStore,
  type RateLimitPolicy,
  type RateLimitReset,
  RedisStore,
  type SendCommand,
  StoreDeadlineError,
} from '../src/index.ts'
import { type Adapter, type Framework, frameworks, type RunningApp, startApp } from './support/harness.ts'
import { RedisServer } from './support/redis-server.ts'

interface Client {
  readonly sendCommand: SendCommand
  ready(): Promise<void>
  close(): Promise<void>
}

// Not events.once(): it rejects on the 'error' events a reconnecting client emits before it is ready.
function readyEvent(client: { once(event: 'ready', listener: () => void): unknown }): Promise<void> {
  return new Promise((resolve) => client.once('ready', () => resolve()))
}

// Without an offline queue (the recommended setting), commands fail at once while Redis is down,
// instead of waiting in the client and counting late, after Redis is back.
const clients: Record<'redis' | 'ioredis', (url: string, offlineQueue?: boolean) => Promise<Client>> = {
  async redis(url, offlineQueue = false) {
    const client = createClient({
      url,
      disableOfflineQueue: !offlineQueue,
      socket: { reconnectStrategy: () => 20 },
    })
    client.on('error', () => {})
    await client.connect()
    return {
      sendCommand: (args) => client.sendCommand(args),
      ready: async () => {
        if (!client.isReady) await readyEvent(client)
      },
      close: async () => client.destroy(),
    }
  },
  async ioredis(url, offlineQueue = false) {
    const client = new Redis(url, {
      retryStrategy: () => 20,
      lazyConnect: true,
      enableOfflineQueue: offlineQueue,
    })
    client.on('error', () => {})
    await client.connect()
    return {
      sendCommand: ([name = '', ...rest]) => client.call(name, ...rest),
      ready: async () => {
        if (client.status !== 'ready') await readyEvent(client)
      },
      close: async () => client.disconnect(),
    }
  },
}

async function get(app: RunningApp, path: string) {
  const started = performance.now()
  const res = await fetch(app.url + path)
  await res.arrayBuffer()
  return {
    status: res.status,
    code: res.headers.get('x-ic-error-code'),
    ms: performance.now() - started,
    res,
  }
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

type Written = 'before' | 'after'

/**
 * `send` with a stall of the event loop after the next command: the command is written before
 * the stall, as ioredis and node-redis (in an immediate queued first) write it, or after it,
 * as node-redis does when the stall was queued first.
 */
function stalling(send: SendCommand) {
  let next: { ms: number; written: Written } | undefined
  let sent = 0
  const sendCommand: SendCommand = (args) => {
    sent++
    const stall = next
    next = undefined
    if (stall === undefined) return send(args)
    if (stall.written === 'before') {
      const reply = send(args)
      setImmediate(() => stallLoop(stall.ms))
      return reply
    }
    setImmediate(() => stallLoop(stall.ms))
    return new Promise((resolve) => setImmediate(resolve)).then(() => send(args))
  }
  return {
    sendCommand,
    stallAfterNext(ms: number, written: Written) {
      next = { ms, written }
      sent = 0
    },
    get sent() {
      return sent
    },
  }
}

let redis: RedisServer
before(async () => {
  redis = await RedisServer.start()
})
after(async () => {
  await redis.stop()
})

for (const kind of ['redis', 'ioredis'] as const) {
  describe(`RedisStore with the ${kind} client`, () => {
    const open: { close(): Promise<void> }[] = []
    after(async () => {
      for (const thing of open.reverse()) await thing.close()
    })
    async function client(offlineQueue = false): Promise<Client> {
      const c = await clients[kind](redis.url, offlineQueue)
      open.push(c)
      return c
    }

    /** An app answering `body` on `path` behind the limiter `use` makes, its store failures collected; closed with the suite. */
    async function limitedApp(
      framework: Framework,
      path: string,
      body: string,
      use: (adapter: Adapter, onStoreError: (error: unknown) => void) => unknown,
    ): Promise<{ app: RunningApp; failures: Error[] }> {
      const failures: Error[] = []
      const app = await startApp(framework, {
        use: (a) => [use(a, (e) => failures.push(e as Error))],
        routes: [{ path, handle: () => ({ body }) }],
      })
      open.push(app)
      return { app, failures }
    }

    it('answers exactly as the memory store for the same sequence, and keys expire in Redis', async () => {
      const c = await client()
      const store = new RedisStore({ sendCommand: c.sendCommand, prefix: `${kind}:same:` })
      const memory = new MemoryStore()
      const plain: RateLimitPolicy = { limit: 5, windowMs: 60_000, blockMs: 0 }
      const blocking: RateLimitPolicy = { limit: 2, windowMs: 60_000, blockMs: 120_000 }
      const yearly: RateLimitPolicy = { limit: 1, windowMs: 30 * 86_400_000, blockMs: 366 * 86_400_000 }
      const steps: [string, number, RateLimitPolicy][] = [
        ['a', 2, plain],
        ['a', 3, plain],
        ['a', 1, plain],
        ['b', 9, plain],
        ['b', 0, plain],
        ['b', 5, plain],
        ['c', 1, blocking],
        ['c', 1, blocking],
        ['c', 1, blocking],
        ['c', 0, blocking],
        ['d', 900_000_000_000, { limit: 1e12, windowMs: 60_000, blockMs: 0 }],
        ['d', 100_000_000_000, { limit: 1e12, windowMs: 60_000, blockMs: 0 }],
        ['d', 1, { limit: 1e12, windowMs: 60_000, blockMs: 0 }],
        ['e', 1, yearly],
        ['e', 1, yearly],
        ['f', 3, blocking],
        ['f', 1, blocking],
        ['f', 3, blocking],
        ['f', 1, blocking],
      ]
      for (const [key, cost, policy] of steps) {
        const fromRedis = await store.consume(key, cost, policy)
        const fromMemory = memory.consume(key, cost, policy)
        assert.equal(fromRedis.allowed, fromMemory.allowed, `${key} ${cost}`)
        assert.equal(fromRedis.used, fromMemory.used, `${key} ${cost}`)
        assert.ok(
          Math.abs(fromRedis.resetMs - fromMemory.resetMs) < 1000,
          `${fromRedis.resetMs} vs ${fromMemory.resetMs}`,
        )
      }
      const ttlA = Number(await c.sendCommand(['PTTL', `${kind}:same:a`]))
      assert.ok(ttlA > 0 && ttlA <= 60_000, `window key expires (${ttlA})`)
      const ttlC = Number(await c.sendCommand(['PTTL', `${kind}:same:c`]))
      assert.ok(ttlC > 60_000 && ttlC <= 120_000, `blocked key expires with the block (${ttlC})`)
      const ttlE = Number(await c.sendCommand(['PTTL', `${kind}:same:e`]))
      assert.ok(ttlE > 365 * 86_400_000, `a block past the timer maximum is kept whole (${ttlE})`)
      await store.reset('a')
      assert.equal((await store.consume('a', 1, plain)).used, 1)
    })

    it('loads its script again when Redis lost it (EVALSHA, then EVAL on NOSCRIPT)', async () => {
      const c = await client()
      const store = new RedisStore({ sendCommand: c.sendCommand, prefix: `${kind}:flush:` })
      const policy = { limit: 3, windowMs: 10_000, blockMs: 0 }
      const calls = async (command: string) => {
        const info = String(await c.sendCommand(['INFO', 'commandstats']))
        return Number(new RegExp(`cmdstat_${command}:calls=(\\d+)`).exec(info)?.[1] ?? 0)
      }
      await store.consume('k', 1, policy)
      const evalsha = await calls('evalsha')
      const evals = await calls('eval')
      await c.sendCommand(['SCRIPT', 'FLUSH'])
      assert.equal((await store.consume('k', 1, policy)).used, 2)
      assert.equal(await calls('evalsha'), evalsha + 1, 'EVALSHA first (answered NOSCRIPT)')
      assert.equal(await calls('eval'), evals + 1, 'then EVAL, which caches the script again')
      assert.equal((await store.consume('k', 1, policy)).used, 3)
      assert.equal(await calls('eval'), evals + 1, 'EVALSHA alone from then on')
      assert.equal(await calls('evalsha'), evalsha + 2)
    })

    it('counts nothing that reaches Redis after its deadline, and still loads the script on NOSCRIPT', async () => {
      const c = await client()
      const store = new RedisStore({ sendCommand: c.sendCommand, prefix: `${kind}:late:` })
      const policy = { limit: 1, windowMs: 60_000, blockMs: 60_000 }
      // The first reply tells the store how far Redis's clock is from ours; until then no deadline is checked.
      assert.equal((await store.consume('first', 1, policy, Date.now() - 1)).allowed, true)
      await c.sendCommand(['SCRIPT', 'FLUSH'])
      await assert.rejects(store.consume('k', 1, policy, Date.now() - 1000), (error) => {
        assert.ok(error instanceof StoreDeadlineError)
        assert.match(error.message, /after its deadline/)
        return true
      })
      assert.equal(await c.sendCommand(['EXISTS', `${kind}:late:k`]), 0, 'nothing counted')
      assert.equal((await store.consume('k', 1, policy, Date.now() + 5000)).allowed, true)
      assert.equal((await store.consume('k', 1, policy)).allowed, false, 'no deadline: counted as before')
    })

    for (const skewMs of [-5000, 5000]) {
      it(`keeps deadlines right when this machine's clock is ${Math.abs(skewMs) / 1000} s ${skewMs < 0 ? 'behind' : 'ahead of'} Redis's`, async () => {
        const c = await client()
        const store = new RedisStore({ sendCommand: c.sendCommand, prefix: `${kind}:skew${skewMs}:` })
        const policy = { limit: 5, windowMs: 60_000, blockMs: 0 }
        mock.timers.enable({ apis: ['Date'], now: Date.now() + skewMs })
        try {
          await store.consume('k', 1, policy)
          // In time by this machine's clock: counted, whatever Redis's clock says.
          assert.equal((await store.consume('k', 1, policy, Date.now() + 2000)).used, 2)
          await assert.rejects(store.consume('k', 1, policy, Date.now() - 1000), {
            name: 'StoreDeadlineError',
          })
          assert.equal((await store.consume('k', 1, policy)).used, 3, 'the late one counted nothing')
        } finally {
          mock.timers.reset()
        }
      })
    }

    it("keeps counting when this machine's clock is stepped back after the offset was learnt", async () => {
      const c = await client()
      const store = new RedisStore({ sendCommand: c.sendCommand, prefix: `${kind}:step:` })
      const policy = { limit: 5, windowMs: 60_000, blockMs: 0 }
      mock.timers.enable({ apis: ['Date'], now: Date.now() })
      try {
        assert.equal((await store.consume('k', 1, policy, Date.now() + 2000)).used, 1)
        mock.timers.setTime(Date.now() - 5000) // an NTP step, a VM resumed
        assert.equal((await store.consume('k', 1, policy, Date.now() + 2000)).used, 2, 'counted at once')
        assert.equal((await store.consume('k', 1, policy, Date.now() + 2000)).used, 3, 'and from then on')
      } finally {
        mock.timers.reset()
      }
    })

    it('sends a command again after a clock step with its deadline: run late, it counts nothing', async () => {
      const c = await client()
      let sent = 0
      let delayMs = 0
      // The second round trip of one request is slow (a busy Redis, a long network path).
      const sendCommand: SendCommand = async (args) => {
        if (sent++ === 1 && delayMs > 0) await new Promise((resolve) => setTimeout(resolve, delayMs))
        return c.sendCommand(args)
      }
      const store = new RedisStore({ sendCommand, prefix: `${kind}:step-late:` })
      const policy = { limit: 5, windowMs: 60_000, blockMs: 0 }
      mock.timers.enable({ apis: ['Date'], now: Date.now() })
      try {
        assert.equal((await store.consume('k', 1, policy, Date.now() + 200)).used, 1)
        sent = 0
        delayMs = 500
        mock.timers.setTime(Date.now() - 5000)
        await assert.rejects(store.consume('k', 1, policy, Date.now() + 200), StoreDeadlineError)
        assert.equal(sent, 2, 'sent again once, after the offset was learnt anew')
        assert.equal(await c.sendCommand(['GET', `${kind}:step-late:k`]), '1', 'the late one counted nothing')
      } finally {
        mock.timers.reset()
      }
    })

    it('does not count requests served while Redis stalled when Redis resumes (no late block)', async () => {
      const c = await client()
      const store = new RedisStore({ sendCommand: c.sendCommand, prefix: `${kind}:stall:` })
      const { app, failures } = await limitedApp('express5', '/', 'ok', (a, onStoreError) =>
        a.rateLimit({
          limit: 10,
          windowMs: '10s',
          blockMs: '1m',
          store,
          storeTimeoutMs: 100,
          onStoreError,
        }),
      )
      assert.equal((await get(app, '/')).status, 200)
      redis.pause()
      let during: Awaited<ReturnType<typeof get>>[]
      try {
        during = await Promise.all(Array.from({ length: 20 }, () => get(app, '/')))
        // Resumed well past the deadlines: the learnt offset may be late by a reply's one-way
        // latency (api.md), which a loaded machine can stretch to tens of milliseconds.
        await new Promise((resolve) => setTimeout(resolve, 250))
      } finally {
        redis.resume()
      }
      assert.deepEqual(new Set(during.map((r) => r.status)), new Set([200]), 'served, fail-open')
      assert.ok(
        failures.every((e) => e.name === 'StoreTimeoutError'),
        failures.map((e) => e.name).join(),
      )
      // The 20 stalled scripts run now, past their deadline; a PING behind them waits for all.
      await c.sendCommand(['PING'])
      assert.equal(await c.sendCommand(['GET', `${kind}:stall:10-in-10s:ip:127.0.0.1`]), '1')
      const after = await get(app, '/')
      assert.equal(after.status, 200)
      assert.match(after.res.headers.get('ratelimit') ?? '', /^"10-in-10s";r=8;t=(9|10)$/)
    })

    // The stall is well past the timeout (the timer then runs about 300 ms late), and the
    // timeout long enough for a loaded machine's Redis to answer the command sent again.
    const lag = { storeTimeoutMs: 400, stallMs: 700 }

    for (const written of ['before', 'after'] as const) {
      it(`refuses a blocked client when the event loop stalls past storeTimeoutMs, the command written ${written} the stall`, async () => {
        const c = await client()
        const send = stalling(c.sendCommand)
        const policy = { limit: 1, windowMs: 60_000, blockMs: 3_600_000 }
        for (const framework of frameworks) {
          const store = new RedisStore({
            sendCommand: send.sendCommand,
            prefix: `${kind}:lag-${written}:${framework}:`,
          })
          // Blocked beforehand, without a timeout in the way (this also teaches the store Redis's clock).
          for (let i = 0; i < 2; i++) await store.consume('blocked:ip:127.0.0.1', 1, policy)
          const { app, failures } = await limitedApp(framework, '/', 'served', (a, onStoreError) =>
            a.rateLimit({
              limit: 1,
              windowMs: '1m',
              blockMs: '1h',
              name: 'blocked',
              store,
              storeTimeoutMs: lag.storeTimeoutMs,
              onStoreError,
            }),
          )
          send.stallAfterNext(lag.stallMs, written)
          const stalled = await get(app, '/')
          assert.equal(stalled.status, 429, `${framework}: Redis refused it, the loop stalled`)
          assert.equal(stalled.code, 'IC_RATE_LIMITED')
          assert.deepEqual(
            failures.map((e) => e.name),
            [],
            `${framework}: a healthy Redis is not reported`,
          )
          assert.equal(
            send.sent,
            written === 'before' ? 1 : 2,
            'sent again only when it ran past its deadline',
          )
        }
      })
    }

    it('counts a request once when the event loop stalls past storeTimeoutMs, its command written before or after', async () => {
      const c = await client()
      const send = stalling(c.sendCommand)
      for (const written of ['before', 'after'] as const) {
        const prefix = `${kind}:lag-once-${written}:`
        const store = new RedisStore({ sendCommand: send.sendCommand, prefix })
        await store.consume('other', 1, { limit: 1, windowMs: 1000, blockMs: 0 })
        const { app, failures } = await limitedApp('express5', '/', 'served', (a, onStoreError) =>
          a.rateLimit({
            limit: 2,
            windowMs: '1m',
            blockMs: '1h',
            store,
            storeTimeoutMs: lag.storeTimeoutMs,
            onStoreError,
          }),
        )
        send.stallAfterNext(lag.stallMs, written)
        const stalled = await get(app, '/')
        assert.equal(stalled.status, 200)
        assert.match(stalled.res.headers.get('ratelimit') ?? '', /^"2-in-60s";r=1;t=/, `${written}: counted`)
        assert.deepEqual(failures, [])
        assert.equal(await c.sendCommand(['GET', `${prefix}2-in-60s:ip:127.0.0.1`]), '1', `${written}: once`)
        assert.equal((await get(app, '/')).status, 200)
        assert.equal((await get(app, '/')).status, 429)
      }
    })

    it('gives a stalled Redis one more storeTimeoutMs after a stall of the event loop, then serves and reports once', async () => {
      const c = await client()
      const send = stalling(c.sendCommand)
      const prefix = `${kind}:lag-down:`
      const store = new RedisStore({ sendCommand: send.sendCommand, prefix })
      await store.consume('other', 1, { limit: 1, windowMs: 1000, blockMs: 0 })
      const { app, failures } = await limitedApp('koa3', '/', 'served', (a, onStoreError) =>
        a.rateLimit({
          limit: 2,
          windowMs: '1m',
          store,
          storeTimeoutMs: lag.storeTimeoutMs,
          onStoreError,
        }),
      )
      redis.pause()
      let served: Awaited<ReturnType<typeof get>>
      try {
        send.stallAfterNext(lag.stallMs, 'before')
        served = await get(app, '/')
      } finally {
        redis.resume()
      }
      assert.equal(served.status, 200, 'served, fail-open')
      assert.equal(served.res.headers.get('ratelimit'), null)
      assert.deepEqual(
        failures.map((e) => e.message),
        [
          `The rate-limit store did not answer within ${lag.storeTimeoutMs} ms, nor within ${lag.storeTimeoutMs} ms more after the event loop stalled`,
        ],
      )
      assert.equal(send.sent, 1, 'not sent again: its answer never came')
      assert.ok(served.ms < 10_000, `answered in ${served.ms} ms`)
      // The command runs now, past its deadline: it counts nothing.
      await c.sendCommand(['PING'])
      assert.equal(await c.sendCommand(['EXISTS', `${prefix}2-in-60s:ip:127.0.0.1`]), 0)
    })

    it('imageChartsRateLimits() waits storeTimeoutMs once per request while Redis stalls, and reports once', async () => {
      // The offline queue on, as by default: commands wait in the client, and the limiter times out.
      const c = await client(true)
      let sent = 0
      const store = new RedisStore({
        sendCommand: (args) => {
          sent++
          return c.sendCommand(args)
        },
        prefix: `${kind}:ic-stalled:`,
      })
      const { app, failures } = await limitedApp('express5', '/chart', 'chart', (a, onStoreError) =>
        a.imageChartsRateLimits({
          store,
          storeTimeoutMs: 200,
          onStoreError,
        }),
      )
      assert.equal((await get(app, '/chart?cht=p')).status, 200)
      assert.equal(sent, 2, 'both policies counted')
      redis.pause()
      const statuses: number[] = []
      try {
        sent = 0
        for (let i = 0; i < 3; i++) statuses.push((await get(app, '/chart?cht=p')).status)
      } finally {
        redis.resume()
      }
      assert.deepEqual(statuses, [200, 200, 200], 'served, fail-open')
      assert.equal(sent, 3, 'one command per request: the per-IP policy does not wait again')
      assert.deepEqual(
        failures.map((e) => e.name),
        ['StoreTimeoutError', 'StoreTimeoutError', 'StoreTimeoutError'],
        'one report per request',
      )
    })

    for (const written of ['before', 'after'] as const) {
      it(`imageChartsRateLimits() counts both policies after a stall of the event loop, the command written ${written} it`, async () => {
        const c = await client()
        const send = stalling(c.sendCommand)
        const prefix = `${kind}:ic-lag-${written}:`
        const store = new RedisStore({ sendCommand: send.sendCommand, prefix })
        await store.consume('other', 1, { limit: 1, windowMs: 1000, blockMs: 0 })
        const { app, failures } = await limitedApp('koa3', '/chart', 'chart', (a, onStoreError) =>
          a.imageChartsRateLimits({
            store,
            storeTimeoutMs: lag.storeTimeoutMs,
            onStoreError,
          }),
        )
        send.stallAfterNext(lag.stallMs, written)
        const stalled = await get(app, '/chart?cht=p')
        assert.equal(stalled.status, 200)
        assert.match(
          stalled.res.headers.get('ratelimit') ?? '',
          /^"ic-unsigned";r=9;t=60, "ic-per-ip";r=89;t=(9|10)$/,
          'both policies counted, the second within the window the stall gave',
        )
        assert.deepEqual(failures, [])
        assert.equal(await c.sendCommand(['GET', `${prefix}ic-unsigned:ip:127.0.0.1`]), '1')
        assert.equal(await c.sendCommand(['GET', `${prefix}ic-per-ip:ip:127.0.0.1`]), '1')
      })
    }

    it('is atomic: 100 concurrent requests on one key allow exactly the limit', async () => {
      const c = await client()
      const store = new RedisStore({ sendCommand: c.sendCommand, prefix: `${kind}:race:` })
      const results = await Promise.all(
        Array.from({ length: 100 }, () => store.consume('k', 1, { limit: 37, windowMs: 10_000, blockMs: 0 })),
      )
      assert.equal(results.filter((r) => r.allowed).length, 37)
    })

    it('lets two app instances sharing one Redis enforce one limit', async () => {
      const apps = await Promise.all(
        (['express5', 'koa3'] as const).map(async (framework) => {
          const c = await client()
          const store = new RedisStore({ sendCommand: c.sendCommand, prefix: `${kind}:shared:` })
          const app = await startApp(framework, {
            use: (a) => [a.rateLimit({ limit: 4, windowMs: '1m', store })],
            routes: [{ path: '/chart', handle: () => ({ body: 'ok' }) }],
          })
          open.push(app)
          return app
        }),
      )
      const [one, two] = apps as [RunningApp, RunningApp]
      const statuses = []
      for (const app of [one, two, one, two, one, two]) statuses.push((await get(app, '/chart')).status)
      assert.deepEqual(statuses, [200, 200, 200, 200, 429, 429])
      const last = await get(two, '/chart')
      assert.match(last.res.headers.get('ratelimit') ?? '', /^"4-in-60s";r=0;t=\d+$/)
    })

    it('unblocks a client in Redis with resetKey(): an account, hashed when long, and an IP', async () => {
      const c = await client()
      const account = `acme-${'x'.repeat(300)}`
      for (const framework of frameworks) {
        const store = new RedisStore({ sendCommand: c.sendCommand, prefix: `${kind}:reset:${framework}:` })
        let limiter: RateLimitReset | undefined
        const app = await startApp(framework, {
          use: (a) => {
            const made = a.rateLimit({ limit: 1, windowMs: '1m', blockMs: '1h', key: 'account', store })
            limiter = made
            return [made]
          },
          routes: [{ path: '/chart', handle: () => ({ body: 'ok' }) }],
        })
        open.push(app)
        for (const [path, keyOrAddress] of [
          [`/chart?icac=${account}`, account],
          ['/chart', '127.0.0.1'],
        ] as const) {
          assert.equal((await get(app, path)).status, 200, `${framework} ${path.slice(0, 20)}`)
          assert.equal((await get(app, path)).status, 429)
          await limiter?.resetKey(keyOrAddress)
          assert.equal((await get(app, path)).status, 200, 'unblocked')
        }
      }
    })

    it('keeps serving (fail-open) or refusing (fail-closed) through a Redis outage, and limits resume', async () => {
      const apps: { app: RunningApp; failures: unknown[] }[] = []
      for (const framework of frameworks) {
        const c = await client()
        const store = new RedisStore({ sendCommand: c.sendCommand, prefix: `${kind}:outage:${framework}:` })
        const failures: unknown[] = []
        const common = {
          limit: 2,
          windowMs: '1m',
          store,
          // Long enough for a loaded CI machine (a live Redis slower than this is refused by
          // /closed); the outage below is seen at once, as the clients queue nothing.
          storeTimeoutMs: 1000,
          onStoreError: (e: unknown) => failures.push(e),
        }
        const app = await startApp(framework, {
          routes: [
            {
              path: '/open',
              use: (a) => [a.rateLimit({ ...common, name: 'open' })],
              handle: () => ({ body: 'ok' }),
            },
            {
              path: '/closed',
              use: (a) => [a.rateLimit({ ...common, name: 'closed', failOpen: false })],
              handle: () => ({ body: 'ok' }),
            },
          ],
        })
        open.push(app)
        apps.push({ app, failures })
        assert.equal((await get(app, '/open')).status, 200)
        assert.equal((await get(app, '/closed')).status, 200)
        Object.assign(app, { client: c })
      }

      await redis.stop()
      for (const { app, failures } of apps) {
        for (let i = 0; i < 3; i++) {
          const served = await get(app, '/open')
          assert.equal(served.status, 200, `${app.framework} serves while Redis is down`)
          assert.ok(served.ms < 1500, `${app.framework} answered in ${served.ms} ms`)
        }
        const refused = await get(app, '/closed')
        assert.equal(refused.status, 503)
        assert.equal(refused.code, 'IC_STORE_UNAVAILABLE')
        assert.ok(refused.ms < 1500, `${app.framework} refused in ${refused.ms} ms`)
        assert.equal(failures.length, 4, 'every store failure reported')
        assert.equal(app.reports.at(-1)?.code, 'IC_STORE_UNAVAILABLE')
      }

      await redis.restart()
      for (const { app } of apps) {
        await (app as unknown as { client: Client }).client.ready()
        // Redis restarted empty (no persistence): the window starts over, and the limit holds again.
        assert.deepEqual(
          [
            (await get(app, '/open')).status,
            (await get(app, '/open')).status,
            (await get(app, '/open')).status,
          ],
          [200, 200, 429],
          app.framework,
        )
        assert.deepEqual(
          [
            (await get(app, '/closed')).status,
            (await get(app, '/closed')).status,
            (await get(app, '/closed')).status,
          ],
          [200, 200, 429],
          app.framework,
        )
      }
    })

    it('answers within storeTimeoutMs while Redis is down, even when the client queues commands', async () => {
      const c = await client(true)
      const store = new RedisStore({ sendCommand: c.sendCommand, prefix: `${kind}:queued:` })
      const failures: unknown[] = []
      const app = await startApp('express5', {
        use: (a) => [
          a.rateLimit({
            limit: 100,
            windowMs: '1m',
            store,
            storeTimeoutMs: 100,
            onStoreError: (e) => failures.push(e),
          }),
        ],
        routes: [{ path: '/', handle: () => ({ body: 'ok' }) }],
      })
      open.push(app)
      assert.equal((await get(app, '/')).status, 200)
      await redis.stop()
      try {
        const served = await get(app, '/')
        assert.equal(served.status, 200)
        assert.ok(served.ms < 1000, `answered in ${served.ms} ms`)
        assert.equal((failures[0] as Error).name, 'StoreTimeoutError')
      } finally {
        await redis.restart()
        await c.ready()
      }
    })
  })
}

describe('RedisStore options', () => {
  it('validates them', () => {
    assert.throws(() => new RedisStore(undefined as never), {
      name: 'TypeError',
      message: /^Expected the options of `RedisStore` to be an object/,
    })
    assert.throws(() => new RedisStore({} as never), {
      name: 'TypeError',
      message: /^Expected `sendCommand`/,
    })
    assert.throws(() => new RedisStore({ sendCommand: async () => null, prefix: 5 as never }), {
      name: 'TypeError',
      message: /^Expected `prefix`/,
    })
  })

  it('rejects on a reply it does not understand, so that the limiter reports it', async () => {
    const store = new RedisStore({ sendCommand: async () => 'OK' })
    await assert.rejects(store.consume('k', 1, { limit: 1, windowMs: 1000, blockMs: 0 }), /Unexpected reply/)
    // A client that maps integer replies to BigInt (node-redis' RESP3 type mapping) still gets this error.
    const bigints = new RedisStore({ sendCommand: async () => [1n, 5000n] })
    await assert.rejects(bigints.consume('k', 1, { limit: 1, windowMs: 1000, blockMs: 0 }), {
      name: 'TypeError',
      message: 'Unexpected reply from Redis: [1n,5000n]',
    })
  })
})
