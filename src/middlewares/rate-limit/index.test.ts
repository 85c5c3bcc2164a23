import assert from 'node:assert/strict'
import { IncomingMessage, ServerResponse } from 'node:http'
import { Socket } from 'node:net'
import { describe, it } from 'node:test'
import { type IcError, isIcError } from '../../errors.ts'
import type { Guard } from '../../guard.ts'
import {
  type ConsumeResult,
  chainGuards,
  imageChartsRateLimitsGuard,
  MemoryStore,
  type RateLimitOptions,
  type RateLimitStore,
  RedisStore,
  rateLimitGuard,
  StoreTimeoutError,
} from './index.ts'

/** `remoteAddress` null: a peer without an address on a Unix-socket listener. */
function request(
  url = '/chart',
  remoteAddress: string | null = '203.0.113.7',
  headers: Record<string, string> = {},
) {
  const socket = new Socket()
  Object.defineProperty(socket, 'remoteAddress', { value: remoteAddress ?? undefined })
  if (remoteAddress === null) Object.assign(socket, { server: { address: () => '/run/app.sock' } })
  const req = new IncomingMessage(socket)
  req.url = url
  req.headers = headers
  return { req, res: new ServerResponse(req) }
}

function clock() {
  const c = { t: 1_000_000, now: () => c.t }
  return c
}

async function outcome(
  options: RateLimitOptions,
  url?: string,
  address?: string,
  headers?: Record<string, string>,
) {
  const guard = rateLimitGuard(options)
  const { req, res } = request(url, address, headers)
  try {
    await guard(req, res)
    return { res, err: undefined }
  } catch (err) {
    assert.ok(isIcError(err), String(err))
    return { res, err: err as IcError }
  }
}

function run(guard: ReturnType<typeof rateLimitGuard>, url?: string, address?: string) {
  const { req, res } = request(url, address)
  try {
    const out = guard(req, res)
    assert.equal(out, undefined, 'the memory store answers synchronously')
    return { res, err: undefined }
  } catch (err) {
    return { res, err: err as IcError }
  }
}

/** The messages of the process warnings with `code` that `act` raised. */
async function warningsWhile(code: string, act: () => void): Promise<string[]> {
  const messages: string[] = []
  const onWarning = (warning: Error & { code?: string }) => {
    if (warning.code === code) messages.push(warning.message)
  }
  process.on('warning', onWarning)
  try {
    act()
    // process.emitWarning() emits on the next tick.
    await new Promise((resolve) => setImmediate(resolve))
  } finally {
    process.off('warning', onWarning)
  }
  return messages
}

describe('rateLimitGuard(options)', () => {
  it('warns once when a private peer forwards X-Forwarded-For to a limiter that trusts no proxy', async () => {
    const warnings = await warningsWhile('IMAGE_API_ERRORS_UNTRUSTED_FORWARDED_FOR', () => {
      const guard = rateLimitGuard({ limit: 100, windowMs: '10s', name: 'behind-lb' })
      const forwarded = { 'x-forwarded-for': '198.51.100.9' }
      for (let i = 0; i < 3; i++) {
        const { req, res } = request('/chart', '10.0.0.2', forwarded)
        guard(req, res)
      }
      const { req, res } = request('/chart', '203.0.113.9', forwarded)
      guard(req, res)
      const trusting = rateLimitGuard({ limit: 100, windowMs: '10s', trustProxy: 1 })
      const behind = request('/chart', '10.0.0.2', forwarded)
      trusting(behind.req, behind.res)
    })
    assert.equal(warnings.length, 1, 'once, and never from a public peer or with trustProxy set')
    assert.match(warnings[0] ?? '', /"behind-lb" got X-Forwarded-For from 10\.0\.0\.2 with trustProxy false/)
  })

  it('warns of X-Forwarded-For on a keep-alive connection whose first request had none', async () => {
    const warnings = await warningsWhile('IMAGE_API_ERRORS_UNTRUSTED_FORWARDED_FOR', () => {
      const guard = rateLimitGuard({ limit: 100, windowMs: '10s', name: 'health-checked' })
      // A proxy's health check opens the connection; its clients' requests follow on it.
      const first = request('/chart', '10.0.0.2')
      guard(first.req, first.res)
      for (const client of ['198.51.100.1', '198.51.100.2']) {
        const req = new IncomingMessage(first.req.socket)
        req.url = '/chart'
        req.headers = { 'x-forwarded-for': client }
        guard(req, new ServerResponse(req))
      }
    })
    assert.equal(warnings.length, 1)
    assert.match(warnings[0] ?? '', /"health-checked" got X-Forwarded-For from 10\.0\.0\.2/)
  })

  it('warns once when every client shares one key: a peer without an address and trustProxy false', async () => {
    const warnings = await warningsWhile('IMAGE_API_ERRORS_NO_CLIENT_ADDRESS', () => {
      // A TCP client that reset its connection has no address either, but it says nothing of the setup.
      const reset = request('/chart', null)
      Object.assign(reset.req.socket, { server: { address: () => ({ port: 80 }) } })
      rateLimitGuard({ limit: 100, windowMs: '10s', name: 'on-tcp' })(reset.req, reset.res)
      const guard = rateLimitGuard({ limit: 100, windowMs: '10s', name: 'on-a-socket' })
      const trusting = rateLimitGuard({ limit: 100, windowMs: '10s', trustProxy: 1 })
      for (const limiter of [guard, trusting])
        for (const headers of [{}, { 'x-forwarded-for': '198.51.100.9' }, {}]) {
          const { req, res } = request('/chart', null, headers)
          limiter(req, res)
        }
    })
    assert.equal(warnings.length, 1, 'once, and never with trustProxy set')
    assert.match(
      warnings[0] ?? '',
      /^rateLimit\(\) "on-a-socket" got a request from a peer without an address \(a Unix socket\) with trustProxy false: every client shares one limit\. Set trustProxy/,
    )
  })

  it('serves up to the limit, then refuses with 429 IC_RATE_LIMITED and Retry-After', () => {
    const c = clock()
    const guard = rateLimitGuard({ limit: 2, windowMs: '10s', store: new MemoryStore({ now: c.now }) })
    const first = run(guard)
    assert.equal(first.err, undefined)
    assert.equal(first.res.getHeader('ratelimit-policy'), '"2-in-10s";q=2;w=10')
    assert.equal(first.res.getHeader('ratelimit'), '"2-in-10s";r=1;t=10')
    c.t += 2500
    assert.equal(run(guard).res.getHeader('ratelimit'), '"2-in-10s";r=0;t=8')
    const refused = run(guard)
    assert.equal(refused.err?.status, 429)
    assert.equal(refused.err?.code, 'IC_RATE_LIMITED')
    assert.equal(refused.err?.headers['retry-after'], '8')
    assert.equal(refused.res.getHeader('ratelimit'), '"2-in-10s";r=0;t=8', 'headers on refusals too')
    assert.equal(run(guard, '/chart', '198.51.100.1').err, undefined, 'another client has its own count')
    c.t += 7500
    assert.equal(run(guard).err, undefined, 'the next window serves again')
  })

  it('charges each request its cost, rounded up; a bad cost counts as 1', () => {
    const area = (req: IncomingMessage) => {
      const size = new URL(req.url ?? '', 'http://x').searchParams.get('chs') ?? ''
      const [w, h] = size.split('x').map(Number)
      return ((w ?? Number.NaN) * (h ?? Number.NaN)) / 100_000
    }
    const guard = rateLimitGuard({ limit: 10, windowMs: 60_000, cost: area, store: new MemoryStore() })
    assert.equal(run(guard, '/chart?chs=500x500').res.getHeader('ratelimit'), '"10-in-60s";r=7;t=60')
    assert.equal(run(guard, '/chart?chs=oops').res.getHeader('ratelimit'), '"10-in-60s";r=6;t=60')
    assert.equal(run(guard, '/chart?chs=999x999').err?.code, 'IC_RATE_LIMITED', '10 units do not fit in 6')
    assert.equal(run(guard, '/chart?chs=100x100').res.getHeader('ratelimit'), '"10-in-60s";r=5;t=60')
  })

  it('takes windows and blocks longer than a timer can wait (a monthly quota), up to 366 days', () => {
    const c = clock()
    const store = new MemoryStore({ now: c.now })
    const guard = rateLimitGuard({ limit: 1, windowMs: '30d', blockMs: '366d', store })
    assert.equal(run(guard).res.getHeader('ratelimit'), '"1-in-2592000s";r=0;t=2592000')
    assert.equal(run(guard).err?.headers['retry-after'], String(366 * 86_400))
    c.t += 365 * 86_400_000
    assert.equal(run(guard).err?.code, 'IC_RATE_LIMITED', 'blocked for the whole 366 days')
    c.t += 86_400_000
    assert.equal(run(guard).err, undefined)
  })

  it('reports the units really left on a refusal, and refuses a cost over the limit without counting or blocking', () => {
    const store = new MemoryStore()
    const units = (req: IncomingMessage) => Number(new URL(req.url ?? '', 'http://x').searchParams.get('c'))
    const guard = rateLimitGuard({ limit: 10, windowMs: '1m', blockMs: '1m', cost: units, store })
    assert.equal(run(guard, '/chart?c=9').res.getHeader('ratelimit'), '"10-in-60s";r=1;t=60')
    const refused = run(guard, '/chart?c=2', '198.51.100.9')
    assert.equal(refused.err, undefined, 'another client')
    const plain = rateLimitGuard({ limit: 10, windowMs: '1m', cost: units, store })
    run(plain, '/chart?c=9')
    const over = run(plain, '/chart?c=2')
    assert.equal(over.err?.code, 'IC_RATE_LIMITED')
    assert.equal(over.res.getHeader('ratelimit'), '"10-in-60s";r=1;t=60', 'one unit is left')
    assert.equal(run(plain, '/chart?c=1').err, undefined, 'and a cost-1 request uses it')

    const tooCostly = run(guard, '/chart?c=11', '192.0.2.44')
    assert.equal(tooCostly.err?.status, 403)
    assert.equal(tooCostly.err?.code, 'IC_COST_OVER_LIMIT')
    assert.equal(tooCostly.err?.headers['retry-after'], undefined, 'no retry can pass')
    assert.match(
      tooCostly.err?.message ?? '',
      /costs 11 units, more than the whole limit of 10 .* can never pass/,
    )
    assert.deepEqual(tooCostly.err?.details, { cost: 11, limit: 10 })
    const endless = rateLimitGuard({ limit: 10, windowMs: '1m', cost: () => Number.POSITIVE_INFINITY, store })
    const endlessErr = run(endless, '/chart').err
    assert.equal(endlessErr?.code, 'IC_COST_OVER_LIMIT', 'Infinity is over any limit, as 1e300 is')
    assert.deepEqual(JSON.parse(JSON.stringify(endlessErr?.details)), { cost: 'Infinity', limit: 10 })
    assert.match(
      run(rateLimitGuard({ limit: 0, windowMs: '1m', store }), '/chart').err?.message ?? '',
      /^This request costs 1 unit, more than the whole limit of 0 per 60 s/,
    )
    assert.equal(tooCostly.res.getHeader('ratelimit'), undefined, 'not counted')
    assert.equal(
      run(guard, '/chart?c=1', '192.0.2.44').res.getHeader('ratelimit'),
      '"10-in-60s";r=9;t=60',
      'not blocked',
    )
  })

  it('keeps a client blocked for blockMs once refused', () => {
    const c = clock()
    const guard = rateLimitGuard({
      limit: 1,
      windowMs: 1000,
      blockMs: '1m',
      store: new MemoryStore({ now: c.now }),
    })
    run(guard)
    assert.equal(run(guard).err?.headers['retry-after'], '60')
    c.t += 30_000
    const still = run(guard)
    assert.equal(still.err?.headers['retry-after'], '30')
    assert.equal(still.res.getHeader('ratelimit'), '"1-in-1s";r=0;t=30')
    c.t += 30_000
    assert.equal(run(guard).err, undefined)
  })

  it('keys by IP: IPv6 clients by their /56, IPv4-mapped addresses as IPv4', () => {
    const guard = rateLimitGuard({ limit: 1, windowMs: 60_000 })
    assert.equal(run(guard, '/', '2001:db8:1:100::1').err, undefined)
    assert.equal(run(guard, '/', '2001:db8:1:1ff:abcd::9').err?.code, 'IC_RATE_LIMITED', 'same /56')
    assert.equal(run(guard, '/', '2001:db8:1:200::1').err, undefined, 'another /56')
    assert.equal(run(guard, '/', '192.0.2.1').err, undefined)
    assert.equal(run(guard, '/', '::ffff:192.0.2.1').err?.code, 'IC_RATE_LIMITED')
    const per64 = rateLimitGuard({ limit: 1, windowMs: 60_000, ipv6Subnet: 64 })
    run(per64, '/', '2001:db8:1:100::1')
    assert.equal(run(per64, '/', '2001:db8:1:1ff::1').err, undefined)
  })

  it('believes X-Forwarded-For only through the configured proxy hops', async () => {
    const spoofed = { 'x-forwarded-for': '198.51.100.9' }
    const direct = rateLimitGuard({ limit: 1, windowMs: 60_000 })
    const proxied = rateLimitGuard({ limit: 1, windowMs: 60_000, trustProxy: 1 })
    for (const guard of [direct, proxied]) {
      const { req, res } = request('/', '10.0.0.1', spoofed)
      guard(req, res)
    }
    const again = request('/', '10.0.0.1', { 'x-forwarded-for': '198.51.100.10' })
    assert.throws(
      () => direct(again.req, again.res),
      { code: 'IC_RATE_LIMITED' },
      'the socket address is the key',
    )
    const other = request('/', '10.0.0.1', { 'x-forwarded-for': '198.51.100.10' })
    assert.equal(proxied(other.req, other.res), undefined, 'the forwarded client is the key')
    const same = request('/', '10.0.0.2', { 'x-forwarded-for': '198.51.100.9' })
    assert.throws(() => proxied(same.req, same.res), { code: 'IC_RATE_LIMITED' })
  })

  it('keys by account (icac) and falls back to the IP without one', () => {
    const guard = rateLimitGuard({ limit: 1, windowMs: 60_000, key: 'account' })
    assert.equal(run(guard, '/chart?icac=acme&ichm=x', '192.0.2.1').err, undefined)
    assert.equal(
      run(guard, '/chart?icac=acme', '192.0.2.2').err?.code,
      'IC_RATE_LIMITED',
      'same account, other IP',
    )
    assert.equal(run(guard, '/chart?icac=other', '192.0.2.1').err, undefined)
    assert.equal(run(guard, '/chart', '192.0.2.1').err, undefined)
    assert.equal(run(guard, '/chart?icac=', '192.0.2.1').err?.code, 'IC_RATE_LIMITED')
    assert.equal(
      run(guard, `/chart?icac64=${Buffer.from('acme').toString('base64')}`, '192.0.2.3').err?.code,
      'IC_RATE_LIMITED',
      'icac64 names the same account',
    )
  })

  it('keys by a function; undefined, or skip(), leaves the request uncounted and without headers', () => {
    const guard = rateLimitGuard({
      limit: 1,
      windowMs: 60_000,
      key: (req) => (req.headers['x-api-key'] as string | undefined) ?? undefined,
      skip: (req) => req.url === '/health',
    })
    const keyed = (key: string | undefined, url = '/') => {
      const { req, res } = request(url, '192.0.2.1', key === undefined ? {} : { 'x-api-key': key })
      try {
        guard(req, res)
        return res.getHeader('ratelimit') ?? 'none'
      } catch (err) {
        return (err as IcError).code
      }
    }
    assert.equal(keyed('k1'), '"1-in-60s";r=0;t=60')
    assert.equal(keyed('k1'), 'IC_RATE_LIMITED')
    assert.equal(keyed('k2'), '"1-in-60s";r=0;t=60')
    assert.equal(keyed(undefined), 'none')
    assert.equal(keyed('k1', '/health'), 'none')
  })

  it('awaits a key, skip or cost answering with a promise or a thenable', async () => {
    const tick = () => new Promise((resolve) => setTimeout(resolve, 1))
    const guard = rateLimitGuard({
      limit: 3,
      windowMs: 60_000,
      key: async (req) => {
        await tick()
        return req.headers['x-api-key'] as string | undefined
      },
      skip: async (req) => req.url === '/health',
      cost: async (req) => Number(new URL(req.url ?? '', 'http://x').searchParams.get('c') ?? 1),
    })
    const send = async (apiKey: string | undefined, url = '/') => {
      const { req, res } = request(url, '192.0.2.1', apiKey === undefined ? {} : { 'x-api-key': apiKey })
      const out = guard(req, res)
      assert.ok(out instanceof Promise)
      try {
        await out
        return res.getHeader('ratelimit') ?? 'none'
      } catch (err) {
        return (err as IcError).code
      }
    }
    assert.equal(await send('alice', '/?c=3'), '"3-in-60s";r=0;t=60', 'charged the awaited cost')
    assert.equal(await send('alice'), 'IC_RATE_LIMITED')
    assert.equal(await send('bob'), '"3-in-60s";r=2;t=60', 'another key, another count')
    assert.equal(await send('bob', '/health'), 'none', 'skipped')
    assert.equal(await send(undefined), 'none', 'no key: not limited')
    assert.equal(await send('bob', '/?c=9'), 'IC_COST_OVER_LIMIT')

    const thenable = <T>(value: T): PromiseLike<T> => ({
      // biome-ignore lint/suspicious/noThenProperty: a thenable of another library, on purpose
      then: (resolve) => Promise.resolve(resolve?.(value)) as never,
    })
    const foreign = rateLimitGuard({ limit: 1, windowMs: 60_000, key: () => thenable('k') })
    await foreign(request().req, request().res)
    await assert.rejects(async () => foreign(request().req, request().res), { code: 'IC_RATE_LIMITED' })
  })

  it('fails the request with a TypeError naming `key` when the key is neither a string nor undefined', async () => {
    const message = /^Expected the `key` function of rateLimit\(\) to return a string or undefined, got /
    for (const bad of [42, null, { id: 'k' }]) {
      const sync = rateLimitGuard({ limit: 1, windowMs: 60_000, key: () => bad as never })
      assert.throws(() => sync(request().req, request().res), { name: 'TypeError', message })
      const later = rateLimitGuard({ limit: 1, windowMs: 60_000, key: async () => bad as never })
      await assert.rejects(async () => later(request().req, request().res), { name: 'TypeError', message })
    }
    const empty = rateLimitGuard({ limit: 1, windowMs: 60_000, key: async () => '' })
    await empty(request().req, request().res)
    await assert.rejects(async () => empty(request().req, request().res), { code: 'IC_RATE_LIMITED' })
  })

  it('hashes very long keys so that they cannot bloat the store', () => {
    const seen: string[] = []
    const store = new MemoryStore()
    const spy: RateLimitStore = {
      consume: (key, cost, policy) => {
        seen.push(key)
        return store.consume(key, cost, policy)
      },
      reset: () => {},
    }
    const guard = rateLimitGuard({ limit: 1, windowMs: 60_000, key: 'account', store: spy })
    run(guard, `/chart?icac=${'a'.repeat(5000)}`)
    assert.equal(run(guard, `/chart?icac=${'a'.repeat(5000)}`).err?.code, 'IC_RATE_LIMITED')
    assert.equal(run(guard, `/chart?icac=${'a'.repeat(4999)}b`).err, undefined)
    assert.ok(
      seen.every((key) => key.length <= 200),
      'long keys are hashed',
    )
  })

  describe('resetKey(keyOrAddress)', () => {
    const blocking = { limit: 1, windowMs: '1m', blockMs: '1h' } as const

    it("unblocks an IP address, its IPv6 group, or an IPv4-mapped form, with the limiter's name", async () => {
      const store = new MemoryStore()
      const guard = rateLimitGuard({ ...blocking, store, name: 'per-ip' })
      const other = rateLimitGuard({ ...blocking, store, name: 'other' })
      for (const address of ['192.0.2.1', '2001:db8:1:100::1']) {
        run(guard, '/', address)
        run(other, '/', address)
        assert.equal(run(guard, '/', address).err?.code, 'IC_RATE_LIMITED')
      }
      await guard.resetKey('::ffff:192.0.2.1')
      await guard.resetKey('2001:db8:1:1ff::9')
      assert.equal(run(guard, '/', '192.0.2.1').err, undefined)
      assert.equal(run(guard, '/', '2001:db8:1:100::1').err, undefined, 'the same /56')
      assert.equal(run(other, '/', '192.0.2.1').err?.code, 'IC_RATE_LIMITED', "another limiter's count stays")
      await assert.rejects(guard.resetKey('alice'), {
        name: 'TypeError',
        message: /^rateLimit\(\) "per-ip" is keyed by 'ip': expected an IP address to reset, got "alice"/,
      })
    })

    it("unblocks an account, or the IP of a request without one, and a function's key, hashed when long", async () => {
      const accounts = rateLimitGuard({ ...blocking, key: 'account' })
      run(accounts, '/chart?icac=acme')
      run(accounts, '/chart', '198.51.100.4')
      await accounts.resetKey('acme')
      assert.equal(run(accounts, '/chart?icac=acme').err, undefined)
      assert.equal(run(accounts, '/chart', '198.51.100.4').err?.code, 'IC_RATE_LIMITED')
      await accounts.resetKey('198.51.100.4')
      assert.equal(run(accounts, '/chart', '198.51.100.4').err, undefined)

      const long = 'k'.repeat(500)
      const custom = rateLimitGuard({ ...blocking, key: (req) => req.url?.slice(1) })
      for (const key of ['tenant-1', long]) {
        run(custom, `/${key}`)
        assert.equal(run(custom, `/${key}`).err?.code, 'IC_RATE_LIMITED')
        await custom.resetKey(key)
        assert.equal(run(custom, `/${key}`).err, undefined)
      }
    })

    it('resets both policies of imageChartsRateLimitsGuard(), in the store given', async () => {
      const resets: string[] = []
      const memory = new MemoryStore()
      const store: RateLimitStore = {
        consume: (key, cost, policy) => memory.consume(key, cost, policy),
        reset: async (key) => {
          resets.push(key)
          memory.reset(key)
        },
      }
      const guard = imageChartsRateLimitsGuard({ store })
      for (let i = 0; i < 11; i++) run(guard, '/chart')
      assert.equal(run(guard, '/chart').err?.code, 'IC_RATE_LIMITED')
      await guard.resetKey('203.0.113.7')
      assert.deepEqual(resets.sort(), ['ic-per-ip:ip:203.0.113.7', 'ic-unsigned:ip:203.0.113.7'])
      assert.equal(run(guard, '/chart').err, undefined)
    })
  })

  it('names each policy by its exact window, so that limiters sharing a store keep apart', () => {
    const store = new MemoryStore()
    const short = rateLimitGuard({ limit: 3, windowMs: 1500, store })
    const long = rateLimitGuard({ limit: 3, windowMs: '2s', store })
    for (let i = 0; i < 3; i++) assert.equal(run(short).err, undefined)
    const other = run(long)
    assert.equal(other.err, undefined, 'the 2 s policy has its own count')
    assert.equal(other.res.getHeader('ratelimit'), '"3-in-2s";r=2;t=2')
    const refused = run(short)
    assert.equal(refused.err?.code, 'IC_RATE_LIMITED')
    assert.equal(
      refused.res.getHeader('ratelimit-policy'),
      '"3-in-1500ms";q=3;w=2',
      'w in whole seconds, rounded up',
    )
  })

  it('appends its items when several limiters stack, and can leave the headers out', () => {
    const a = rateLimitGuard({ limit: 5, windowMs: 1000, name: 'burst' })
    const b = rateLimitGuard({ limit: 100, windowMs: '1h', name: 'hour "quota"' })
    const quiet = rateLimitGuard({ limit: 100, windowMs: '1h', headers: false })
    const { req, res } = request()
    a(req, res)
    b(req, res)
    quiet(req, res)
    assert.equal(res.getHeader('ratelimit-policy'), '"burst";q=5;w=1, "hour \\"quota\\"";q=100;w=3600')
    assert.equal(res.getHeader('ratelimit'), '"burst";r=4;t=1, "hour \\"quota\\"";r=99;t=3600')
    const other = request()
    other.res.setHeader('ratelimit-policy', ['"edge";q=1000;w=60', '"zone";q=50;w=1'])
    a(other.req, other.res)
    assert.equal(
      other.res.getHeader('ratelimit-policy'),
      '"edge";q=1000;w=60, "zone";q=50;w=1, "burst";q=5;w=1',
      'a list set by other code is kept',
    )
  })

  it('counts requests without a socket address under one shared key instead of failing', () => {
    const guard = rateLimitGuard({ limit: 1, windowMs: 60_000 })
    const bare = () => {
      const req = { headers: {}, url: '/' } as unknown as IncomingMessage
      const res = new ServerResponse(new IncomingMessage(new Socket()))
      return guard(req, res)
    }
    assert.equal(bare(), undefined)
    assert.throws(bare, { code: 'IC_RATE_LIMITED' })
  })

  it('leaves the headers alone once the response has started', () => {
    const guard = rateLimitGuard({ limit: 5, windowMs: 1000 })
    const { req, res } = request()
    res.writeHead(200)
    guard(req, res)
    assert.equal(res.getHeader('ratelimit'), undefined)
  })

  describe('store failures', () => {
    const failing: RateLimitStore = {
      consume: () => {
        throw new Error('store down')
      },
      reset: () => {},
    }
    const rejecting: RateLimitStore = {
      consume: () => Promise.reject(new Error('ECONNREFUSED')),
      reset: () => {},
    }
    const hanging: RateLimitStore = { consume: () => new Promise<ConsumeResult>(() => {}), reset: () => {} }
    const nonsense: RateLimitStore = { consume: () => ({ allowed: 'yes' }) as never, reset: () => {} }
    // A store of one's own may hand a Redis client's BigInt replies on: JSON cannot write them.
    const bigCounts: RateLimitStore = {
      consume: () => Promise.resolve({ allowed: true, used: 1n, resetMs: 5000 }) as never,
      reset: () => {},
    }

    for (const [label, store] of [
      ['throws', failing],
      ['rejects', rejecting],
      ['answers nonsense', nonsense],
      ['answers BigInt counts', bigCounts],
      ['hangs past storeTimeoutMs', hanging],
    ] as const) {
      it(`serves and reports when the store ${label} (fail-open, the default)`, async () => {
        const errors: unknown[] = []
        const { res, err } = await outcome({
          limit: 1,
          windowMs: 1000,
          store,
          storeTimeoutMs: 20,
          onStoreError: (error) => errors.push(error),
        })
        assert.equal(err, undefined)
        assert.equal(res.getHeader('ratelimit'), undefined, 'no headers without a count')
        assert.equal(errors.length, 1)
        assert.ok(errors[0] instanceof Error)
      })

      it(`refuses with 503 IC_STORE_UNAVAILABLE when the store ${label} (fail-closed)`, async () => {
        const errors: unknown[] = []
        const { err } = await outcome({
          limit: 1,
          windowMs: 1000,
          store,
          failOpen: false,
          storeTimeoutMs: 20,
          onStoreError: (error) => {
            errors.push(error)
            throw new Error('a broken hook is swallowed')
          },
        })
        assert.equal(err?.status, 503)
        assert.equal(err?.code, 'IC_STORE_UNAVAILABLE')
        assert.equal(err?.headers['retry-after'], '5')
        assert.equal(err?.cause, errors[0])
      })
    }

    it('shows what the store answered in the reported error, BigInts too', async () => {
      const errors: Error[] = []
      for (const store of [
        nonsense,
        bigCounts,
        { consume: () => ({ allowed: true, used: 2n, resetMs: 5000 }) as never, reset: () => {} },
      ])
        await outcome({ limit: 1, windowMs: 1000, store, onStoreError: (e) => errors.push(e as Error) })
      assert.deepEqual(
        errors.map((e) => [e.name, e.message]),
        [
          ['TypeError', 'The rate-limit store answered {"allowed":"yes"}'],
          ['TypeError', 'The rate-limit store answered {"allowed":true,"used":1n,"resetMs":5000}'],
          ['TypeError', 'The rate-limit store answered {"allowed":true,"used":2n,"resetMs":5000}'],
        ],
      )
    })

    it('names the timeout in the reported error', async () => {
      const errors: Error[] = []
      const started = Date.now()
      await outcome({
        limit: 1,
        windowMs: 1000,
        store: hanging,
        storeTimeoutMs: 30,
        onStoreError: (e) => errors.push(e as Error),
      })
      assert.ok(Date.now() - started < 1000)
      assert.ok(errors[0] instanceof StoreTimeoutError)
      assert.equal(errors[0]?.name, 'StoreTimeoutError')
      assert.match(errors[0]?.message ?? '', /within 30 ms/)
    })
  })

  describe('imageChartsRateLimitsGuard(options)', () => {
    it('allows 90 requests per 10 s per IP, then blocks for one minute', () => {
      const c = clock()
      const guard = imageChartsRateLimitsGuard({ store: new MemoryStore({ now: c.now }) })
      for (let i = 0; i < 90; i++)
        assert.equal(run(guard, `/chart?icac=a&ichm=s${i}`).err, undefined, `request ${i}`)
      const refused = run(guard, '/chart?icac=a&ichm=s')
      assert.equal(refused.err?.code, 'IC_RATE_LIMITED')
      assert.equal(refused.err?.headers['retry-after'], '60')
      c.t += 10_000
      assert.equal(run(guard, '/chart?icac=a&ichm=s').err?.code, 'IC_RATE_LIMITED', 'still blocked')
      c.t += 50_000
      assert.equal(run(guard, '/chart?icac=a&ichm=s').err, undefined)
    })

    it('allows 10 unsigned requests per minute per IP, then blocks for one minute', () => {
      const c = clock()
      const guard = imageChartsRateLimitsGuard({ store: new MemoryStore({ now: c.now }) })
      for (let i = 0; i < 10; i++) {
        const { res, err } = run(guard, '/chart?cht=p')
        assert.equal(err, undefined)
        assert.equal(res.getHeader('ratelimit-policy'), '"ic-unsigned";q=10;w=60, "ic-per-ip";q=90;w=10')
      }
      const refused = run(guard, '/chart?cht=p&icac=only-account')
      assert.equal(refused.err?.code, 'IC_RATE_LIMITED')
      assert.equal(refused.err?.headers['retry-after'], '60')
      assert.equal(run(guard, '/chart?icac=a&ichm=s').err, undefined, 'signed requests skip the free quota')
      assert.equal(
        run(guard, `/chart?icac64=${Buffer.from('a').toString('base64')}&ichm=s`).err,
        undefined,
        'icac64 is icac, as the signature guard reads it',
      )
      c.t += 60_000
      assert.equal(run(guard, '/chart').err, undefined)
    })

    it('counts a request refused by the unsigned quota in neither policy', () => {
      const c = clock()
      const guard = imageChartsRateLimitsGuard({ store: new MemoryStore({ now: c.now }) })
      for (let i = 0; i < 13; i++) run(guard, '/chart?cht=p')
      const signed = run(guard, '/chart?icac=a&ichm=s')
      assert.equal(signed.err, undefined)
      assert.equal(
        signed.res.getHeader('ratelimit'),
        '"ic-per-ip";r=79;t=10',
        '10 unsigned + 1 signed counted, not 14',
      )
    })

    it('has spent the unsigned unit of a request that the per-IP limit then refuses', () => {
      const c = clock()
      const guard = imageChartsRateLimitsGuard({ store: new MemoryStore({ now: c.now }) })
      for (let i = 0; i < 90; i++) run(guard, '/chart?icac=a&ichm=s')
      const refused = run(guard, '/chart?cht=p')
      assert.equal(refused.err?.code, 'IC_RATE_LIMITED')
      assert.equal(refused.res.getHeader('ratelimit'), '"ic-unsigned";r=9;t=60, "ic-per-ip";r=0;t=60')
    })

    it('refuses an option it does not know, its presets included, and takes every documented one', () => {
      for (const [options, name] of [
        [{ trustproxy: 1 }, 'trustproxy'],
        [{ limit: 1000 }, 'limit'],
        [{ windowMs: '1m' }, 'windowMs'],
        [{ key: 'account' }, 'key'],
      ] as const)
        assert.throws(() => imageChartsRateLimitsGuard(options as never), {
          name: 'TypeError',
          message: new RegExp(`^Unknown option \`${name}\` of imageChartsRateLimits: expected one of store,`),
        })
      assert.throws(() => imageChartsRateLimitsGuard(null as never), {
        name: 'TypeError',
        message: /^Expected the options of `imageChartsRateLimits` to be an object, got null/,
      })
      const guard = imageChartsRateLimitsGuard({
        store: new MemoryStore(),
        trustProxy: 1,
        ipv6Subnet: 64,
        failOpen: false,
        storeTimeoutMs: '1s',
        onStoreError: () => {},
        headers: false,
      })
      assert.equal(run(guard, '/chart').err, undefined)
      assert.equal(typeof imageChartsRateLimitsGuard(), 'function')
      // Options inherited from a prototype are read as rateLimit() reads them.
      const inherited = imageChartsRateLimitsGuard(Object.create({ headers: false }))
      assert.equal(run(inherited, '/chart').res.getHeader('ratelimit-policy'), undefined)
      assert.throws(
        () => imageChartsRateLimitsGuard(Object.create({ limit: 5 })),
        /`limit` of imageChartsRateLimits/,
      )
    })
  })

  it('refuses an option it does not know, and takes every documented one', () => {
    assert.throws(() => rateLimitGuard({ limit: 1, windowMS: 1000 } as never), {
      name: 'TypeError',
      message: /^Unknown option `windowMS` of rateLimit: expected one of limit, windowMs,/,
    })
    assert.throws(() => rateLimitGuard({ limit: 1, windowMs: 1000, block: '1m' } as never), {
      name: 'TypeError',
      message: /^Unknown option `block` of rateLimit/,
    })
    const guard = rateLimitGuard({
      limit: 5,
      windowMs: '10s',
      cost: () => 1,
      key: 'ip',
      trustProxy: false,
      ipv6Subnet: 64,
      blockMs: '1m',
      store: new MemoryStore(),
      failOpen: true,
      storeTimeoutMs: 100,
      onStoreError: () => {},
      skip: () => false,
      name: 'all-options',
      headers: true,
    })
    assert.equal(run(guard, '/chart').err, undefined)
  })

  it('throws a TypeError naming `store` for a store without reset(), in both limiters', () => {
    const store = { consume: () => ({ allowed: true, used: 1, resetMs: 1 }) } as never
    const message =
      /^Expected `store` to be a rate-limit store \(an object with consume\(key, cost, policy, deadlineMs\) and reset\(key\).*rate-limiter-flexible's stores have another interface and do not fit\), got an object without reset\(\)$/
    assert.throws(() => rateLimitGuard({ limit: 1, windowMs: 1000, store }), { name: 'TypeError', message })
    assert.throws(() => imageChartsRateLimitsGuard({ store }), { name: 'TypeError', message })
  })

  const base = { limit: 1, windowMs: 1000 }
  for (const [options, message] of [
    [{ windowMs: 1000 }, /^Expected `limit` to be an integer from 0/],
    [{ ...base, limit: -1 }, /^Expected `limit`/],
    [{ ...base, limit: 1.5 }, /^Expected `limit`/],
    [{ ...base, limit: 1e13 }, /^Expected `limit` to be an integer from 0 to 1000000000000/],
    [{ limit: 1 }, /^Expected `windowMs` to be a duration/],
    [{ ...base, windowMs: 'often' }, /^Expected `windowMs`/],
    [{ ...base, windowMs: 0 }, /^Expected `windowMs`/],
    [{ ...base, blockMs: -5 }, /^Expected `blockMs`/],
    [{ ...base, windowMs: '367d' }, /^Expected `windowMs` to be a duration of 1 ms to 31622400000 ms/],
    [{ ...base, blockMs: '367d' }, /^Expected `blockMs` to be a duration of 0 ms to 31622400000 ms/],
    [{ ...base, storeTimeoutMs: 0 }, /^Expected `storeTimeoutMs`/],
    [{ ...base, cost: 3 }, /^Expected `cost` to be a function, got 3/],
    [{ ...base, skip: true }, /^Expected `skip` to be a function/],
    [{ ...base, onStoreError: 'log' }, /^Expected `onStoreError` to be a function/],
    [{ ...base, key: 'cookie' }, /^Expected `key` to be 'ip', 'account' or a function/],
    [{ ...base, trustProxy: true }, /^Expected `trustProxy`/],
    [{ ...base, ipv6Subnet: 129 }, /^Expected `ipv6Subnet`/],
    [{ ...base, failOpen: 'yes' }, /^Expected `failOpen` to be a boolean/],
    [{ ...base, headers: 1 }, /^Expected `headers` to be a boolean/],
    [{ ...base, store: {} }, /^Expected `store` to be a rate-limit store/],
    [{ ...base, store: 'redis' }, /^Expected `store` to be a rate-limit store .*, got "redis"$/],
    [{ ...base, name: 'new\nline' }, /^Expected `name` to be 1 to 64 printable ASCII/],
    [{ ...base, name: '' }, /^Expected `name`/],
    [null, /^Expected the options of `rateLimit` to be an object, got null/],
  ] as const) {
    it(`throws a TypeError for ${JSON.stringify(options)}`, () => {
      assert.throws(() => rateLimitGuard(options as never), { name: 'TypeError', message })
    })
  }
})

describe('chainGuards(guards)', () => {
  const tick = () => new Promise((resolve) => setTimeout(resolve, 5))

  it('publishes what its guards publish, merged in order, and stays synchronous while they are', () => {
    const published = { tenant: 'acme' }
    const chained = chainGuards([
      () => published,
      () => undefined,
      () => ({ plan: 'free', tenant: 'acme-eu' }),
      rateLimitGuard({ limit: 10, windowMs: '1m' }),
    ])
    const { req, res } = request()
    assert.deepEqual(chained(req, res), { tenant: 'acme-eu', plan: 'free' })
    assert.deepEqual(published, { tenant: 'acme' }, "a guard's own object is left as it was")
    assert.equal(chainGuards([() => undefined, () => undefined])(req, res), undefined)
  })

  it('awaits each asynchronous guard before the next runs, and resolves with the merged values', async () => {
    const ran: string[] = []
    const step =
      (name: string, values: Record<string, unknown> | undefined, wait: boolean): Guard =>
      () => {
        ran.push(`${name} start`)
        if (!wait) return values
        return tick().then(() => {
          ran.push(`${name} done`)
          return values
        })
      }
    const chained = chainGuards([
      step('key', { apiKey: { id: 'k1' } }, true),
      step('tenant', { tenant: 'acme' }, false),
      step('none', undefined, true),
      step('plan', { plan: 'pro' }, true),
    ])
    const { req, res } = request()
    const out = chained(req, res)
    assert.ok(out instanceof Promise)
    assert.deepEqual(await out, { apiKey: { id: 'k1' }, tenant: 'acme', plan: 'pro' })
    assert.deepEqual(ran, [
      'key start',
      'key done',
      'tenant start',
      'none start',
      'none done',
      'plan start',
      'plan done',
    ])
    const nothing = chainGuards([step('a', undefined, true)])(req, res)
    assert.equal(await nothing, undefined)
  })
})

describe('RedisStore(options)', () => {
  it('refuses an option it does not know, and takes every documented one', async () => {
    const sent: string[][] = []
    const sendCommand = async (args: string[]) => {
      sent.push(args)
      return [1, 1, 1000, Date.now()]
    }
    assert.throws(() => new RedisStore({ sendCommand, keyPrefix: 'charts:' } as never), {
      name: 'TypeError',
      message: /^Unknown option `keyPrefix` of RedisStore: expected one of sendCommand, prefix$/,
    })
    const store = new RedisStore({ sendCommand, prefix: 'charts:rl:' })
    assert.deepEqual(await store.consume('k', 1, { limit: 5, windowMs: 1000, blockMs: 0 }), {
      allowed: true,
      used: 1,
      resetMs: 1000,
    })
    assert.equal(sent[0]?.[3], 'charts:rl:k')
  })
})
