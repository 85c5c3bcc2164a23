// Edge cases of the error handler found in review: each failed before its fix.
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { createReadStream } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { Agent, createServer, request as httpRequest, type IncomingMessage, type Server } from 'node:http'
import { type AddressInfo, connect } from 'node:net'
import { PassThrough } from 'node:stream'
import { describe, it } from 'node:test'
import { fileURLToPath } from 'node:url'
import vm from 'node:vm'
import express5 from 'express'
import express4 from 'express4'
import createHttpError from 'http-errors'
import Koa3 from 'koa'
import Koa2 from 'koa2'
import request from 'supertest'
import * as ex from '../src/express.ts'
import { type ErrorReport, icError, requestSignal } from '../src/index.ts'
import * as kx from '../src/koa.ts'
import { type Adapter, frameworks, settled, startApp } from './support/harness.ts'

type Served = { url: string; server: Server; close(): Promise<void> }

const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/** notFound() under the mount `/api/v2` names the whole path the client asked for. */
async function assertNamesMountedPath(handler: never): Promise<void> {
  const s = await listen(handler)
  try {
    const r = await request(s.url).get('/api/v2/imagez/1?x=<b>')
    assert.equal(r.status, 404)
    assert.match(r.text, /^Not Found \(IC_NOT_FOUND\): No route for GET \/api\/v2\/imagez\/1\n/)
  } finally {
    await s.close()
  }
}

/** Sends GETs of `paths` pipelined on one raw connection, waits `waitMs`, then leaves. */
async function pipelineThenLeave(url: string, paths: readonly string[], waitMs: number): Promise<void> {
  const socket = connect(Number(new URL(url).port), '127.0.0.1')
  socket.on('error', () => {})
  socket.write(paths.map((path) => `GET ${path} HTTP/1.1\r\nHost: x\r\n\r\n`).join(''))
  await pause(waitMs)
  socket.destroy()
}

async function listen(handler: never): Promise<Served> {
  const server = createServer(handler)
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  return {
    url,
    server,
    close: async () => {
      server.closeAllConnections()
      server.close()
    },
  }
}

const withTimeout = <T>(p: Promise<T>, ms: number) =>
  Promise.race([
    p,
    new Promise<never>((_, r) => setTimeout(() => r(new Error(`no answer within ${ms} ms`)), ms)),
  ])

const Koas = [
  ['koa2', Koa2],
  ['koa3', Koa3],
] as const
const Expresses = [
  ['express4', express4 as unknown as typeof express5],
  ['express5', express5],
] as const

describe('Koa: a thrown non-Error is emitted raw on the app', () => {
  // String() throws on the last two: the event must not be lost with it.
  const thrown: [label: string, make: () => unknown, message: string][] = [
    ['a string', () => 'a string', 'non-error thrown: "a string"'],
    ['a null-prototype object', () => Object.create(null), 'non-error thrown: {}'],
    [
      'an object whose toString() throws',
      () => ({
        toString() {
          throw new Error('no text')
        },
      }),
      'non-error thrown: {}',
    ],
  ]
  for (const [name, Koa] of Koas) {
    for (const [label, make, message] of thrown) {
      it(`${name}: app 'error' fires once, with an Error, for ${label}`, async () => {
        const app = new Koa()
        const seen: unknown[] = []
        app.on('error', (err: unknown) => seen.push(err))
        app.use(kx.errorHandler({ onError: () => {} }) as never)
        app.use(async () => {
          throw make()
        })
        const s = await listen(app.callback() as never)
        try {
          const r = await request(s.url).get('/')
          assert.equal(r.status, 500)
          assert.equal(r.headers['x-ic-error-code'], 'IC_INTERNAL_ERROR')
          await new Promise((res) => setTimeout(res, 20))
          assert.equal(seen.length, 1)
          assert.ok(seen[0] instanceof Error, `emitted ${typeof seen[0]}`)
          assert.equal((seen[0] as Error).message, message)
        } finally {
          await s.close()
        }
      })
    }
  }
})

/** A route failing with each `make()` on every framework: the status, the code, one report, no hang. */
function answersOnEveryFramework(
  label: string,
  cases: readonly (readonly [string, () => unknown, number, string])[],
): void {
  const apps: [string, (make: () => unknown, reports: ErrorReport[]) => never][] = [
    ...Koas.map(([name, Koa]) => {
      const mount = (make: () => unknown, reports: ErrorReport[]) => {
        const app = new Koa()
        app.silent = true
        app.use(kx.errorHandler({ onError: (r) => reports.push(r) }) as never)
        app.use(async () => {
          throw make()
        })
        return app.callback() as never
      }
      return [name, mount] as [string, typeof mount]
    }),
    ...Expresses.map(([name, express]) => {
      const mount = (make: () => unknown, reports: ErrorReport[]) => {
        const app = express()
        app.set('env', 'production')
        app.get('/', (_req, _res, next) => next(make()))
        app.use(ex.errorHandler({ onError: (r) => reports.push(r) }) as never)
        return app as never
      }
      return [name, mount] as [string, typeof mount]
    }),
  ]
  for (const [name, mount] of apps) {
    it(`${name}: ${label}`, async () => {
      for (const [what, make, status, code] of cases) {
        const reports: ErrorReport[] = []
        const s = await listen(mount(make, reports))
        try {
          const r = await withTimeout(fetch(s.url), 1500)
          assert.equal(r.status, status, what)
          assert.equal(r.headers.get('x-ic-error-code'), code, what)
          assert.equal(reports.length, 1, what)
          assert.deepEqual([reports[0]?.status, reports[0]?.outcome], [status, 'sent'], what)
        } finally {
          await s.close()
        }
      }
    })
  }
}

describe('a header value in an IcError that Node refuses', () => {
  const boom = () => icError('IC_HOST_NOT_ALLOWED', { headers: { 'x-host': 'évil.例え.jp\r\n' } })
  answersOnEveryFramework('still answers with our error (no hang), onError once', [
    ['refused header', boom, 401, 'IC_HOST_NOT_ALLOWED'],
  ])
})

describe('a foreign error whose header is an array of values', () => {
  for (const framework of frameworks) {
    it(`${framework}: sends every WWW-Authenticate challenge of createError(401, { headers })`, async () => {
      const app = await startApp(framework, {
        routes: [
          {
            path: '/login',
            handle: () => {
              throw createHttpError(401, { headers: { 'WWW-Authenticate': ['Basic realm="img"', 'Bearer'] } })
            },
          },
        ],
      })
      try {
        const r = await request(app.url).get('/login')
        assert.deepEqual([r.status, r.headers['x-ic-error-code']], [401, 'IC_UNAUTHORIZED'])
        assert.equal(r.headers['www-authenticate'], 'Basic realm="img", Bearer')
      } finally {
        await app.close()
      }
    })
  }
})

describe("a foreign error carrying an upstream's response headers (undici's responseError())", () => {
  // What an image CDN answers for a missing original: gzip, a year of caching, its own CORS grant.
  const UPSTREAM_404: Readonly<Record<string, string>> = {
    'content-type': 'text/html',
    'content-encoding': 'gzip',
    'cache-control': 'public, max-age=31536000',
    expires: 'Thu, 01 Jan 2099 00:00:00 GMT',
    etag: '"abc"',
    'last-modified': 'Thu, 01 Jan 2015 00:00:00 GMT',
    age: '100',
    vary: 'accept-encoding',
    'surrogate-key': 'img-1',
    'cdn-cache-control': 'max-age=31536000',
    'access-control-allow-origin': '*',
    'access-control-allow-credentials': 'true',
    'strict-transport-security': 'max-age=63072000; includeSubDomains',
    'alt-svc': 'h3=":8443"; ma=86400',
    'clear-site-data': '"cache"',
    'proxy-authenticate': 'Basic realm="cdn"',
    server: 'cdn/1.0',
    date: 'Thu, 01 Jan 2015 00:00:00 GMT',
    'cross-origin-resource-policy': 'same-origin',
    via: '1.1 cdn',
    'content-location': '/img/1.png',
    'x-upstream-id': 'u-1',
  }
  async function withUpstream(run: (fetchImage: (path: string) => Promise<unknown>) => Promise<void>) {
    const { gzipSync } = await import('node:zlib')
    const { Agent: UndiciAgent, interceptors, request: undiciRequest } = await import('undici')
    const upstream = await listen(((req: IncomingMessage, res: import('node:http').ServerResponse) => {
      if (req.url === '/private.png') {
        res.writeHead(401, { 'www-authenticate': 'Bearer realm="img"', 'cache-control': 'max-age=600' })
        res.end()
        return
      }
      res.writeHead(404, UPSTREAM_404)
      res.end(gzipSync('<h1>no such image</h1>'))
    }) as never)
    const dispatcher = new UndiciAgent().compose(interceptors.responseError())
    try {
      await run(async (path) => {
        const r = await undiciRequest(`${upstream.url}${path}`, { dispatcher })
        return r.body.arrayBuffer()
      })
    } finally {
      await dispatcher.close()
      await upstream.close()
    }
  }
  for (const framework of frameworks) {
    it(`${framework}: only the headers that speak of the error reach the response`, async () => {
      await withUpstream(async (fetchImage) => {
        const app = await startApp(framework, {
          routes: [
            {
              path: '/img',
              handle: async ({ res }) => {
                res.setHeader('access-control-allow-origin', 'https://app.example')
                await fetchImage('/img.png')
                return undefined
              },
            },
            {
              path: '/private',
              handle: async () => {
                await fetchImage('/private.png')
                return undefined
              },
            },
            {
              path: '/range',
              handle: () => {
                throw createHttpError(416, { headers: { 'Content-Range': 'bytes */1000', Expires: '0' } })
              },
            },
            {
              path: '/proxy-auth',
              handle: () => {
                throw createHttpError(407, { headers: { 'Proxy-Authenticate': 'Basic realm="proxy"' } })
              },
            },
            {
              path: '/foreign-range',
              handle: () => {
                throw createHttpError(404, { headers: { 'content-range': 'bytes 0-9/1000' } })
              },
            },
            {
              path: '/own',
              handle: () => {
                throw icError('IC_IMAGE_NOT_FOUND', { headers: { 'cache-control': 'public, max-age=60' } })
              },
            },
          ],
        })
        try {
          const r = await request(app.url).get('/img').set('accept-encoding', 'gzip')
          assert.deepEqual([r.status, r.headers['x-ic-error-code']], [404, 'IC_NOT_FOUND'])
          assert.equal(r.headers['cache-control'], 'no-store')
          assert.equal(r.headers['content-type'], 'text/plain; charset=utf-8')
          assert.match(r.text, /^Not Found \(IC_NOT_FOUND\)/, 'the body is the plain text it says it is')
          for (const name of [
            'content-encoding',
            'expires',
            'etag',
            'last-modified',
            'age',
            'surrogate-key',
            'cdn-cache-control',
            'access-control-allow-credentials',
            'strict-transport-security',
            'alt-svc',
            'clear-site-data',
            'proxy-authenticate',
            'cross-origin-resource-policy',
            'via',
            'content-location',
            'server',
            'keep-alive',
          ])
            assert.equal(r.headers[name], undefined, name)
          assert.notEqual(r.headers.date, UPSTREAM_404.date, "Node's own Date, not the upstream's")
          assert.equal(
            r.headers['access-control-allow-origin'],
            'https://app.example',
            "the app's CORS, not the upstream's",
          )
          assert.equal(r.headers['x-upstream-id'], 'u-1', 'other headers are kept')
          assert.equal(r.headers.vary, 'Accept', "ours, not the upstream's Vary: accept-encoding")

          const denied = await request(app.url).get('/private')
          assert.deepEqual([denied.status, denied.headers['www-authenticate']], [401, 'Bearer realm="img"'])
          assert.equal(denied.headers['cache-control'], 'no-store')

          const proxy = await request(app.url).get('/proxy-auth')
          assert.deepEqual([proxy.status, proxy.headers['proxy-authenticate']], [407, 'Basic realm="proxy"'])

          const range = await request(app.url).get('/range')
          assert.deepEqual([range.status, range.headers['content-range']], [416, 'bytes */1000'])
          assert.equal(range.headers.expires, undefined)
          const notRange = await request(app.url).get('/foreign-range')
          assert.deepEqual([notRange.status, notRange.headers['content-range']], [404, undefined])

          const own = await request(app.url).get('/own')
          assert.deepEqual([own.status, own.headers['cache-control']], [404, 'public, max-age=60'])
          assert.equal(app.reports.length, 6)
        } finally {
          await app.close()
        }
      })
    })
  }
})

describe("a status set on this package's error after it was made", () => {
  const given = (status: Record<string, unknown>) => () =>
    Object.assign(icError('IC_IMAGE_NOT_FOUND'), status)
  answersOnEveryFramework('is used only in 400–599, else the code keeps its own status', [
    ['status 200', given({ status: 200 }), 404, 'IC_IMAGE_NOT_FOUND'],
    ['status 302', given({ status: 302, statusCode: 302 }), 404, 'IC_IMAGE_NOT_FOUND'],
    ['status "410"', given({ status: '410', statusCode: '410' }), 404, 'IC_IMAGE_NOT_FOUND'],
  ])
})

describe('an answer that cannot be written as it is keeps its status', () => {
  const mutated = () => {
    const err = icError('IC_HOST_NOT_ALLOWED')
    ;(err.headers as Record<string, string>)['x-host'] = 'evil\r\nset-cookie: a=b'
    return err
  }
  answersOnEveryFramework('a header set on the error after icError(), which Node refuses', [
    ['mutated header', mutated, 401, 'IC_HOST_NOT_ALLOWED'],
  ])
  for (const framework of frameworks) {
    it(`${framework}: validation items with a BigInt or a cycle in their context stay a 400 for JSON clients`, async () => {
      const cyclic: Record<string, unknown> = { key: 'width' }
      cyclic.self = cyclic
      const app = await startApp(framework, {
        routes: [
          {
            path: '/cyclic',
            handle: () => {
              throw createHttpError(400, 'bad params', {
                validation: [{ message: '"width" must be ≤ 8192', path: ['width'], context: cyclic }],
              })
            },
          },
          {
            path: '/bigint',
            handle: () => {
              throw createHttpError(400, 'bad params', {
                validation: [
                  { message: '"width" must be ≤ 8192', path: ['width'], context: { limit: 8192n } },
                ],
              })
            },
          },
        ],
      })
      try {
        for (const path of ['/cyclic', '/bigint']) {
          const r = await request(app.url).get(path).set('accept', 'application/json')
          assert.deepEqual([r.status, r.headers['x-ic-error-code']], [400, 'IC_BAD_REQUEST'], path)
          assert.deepEqual(JSON.parse(r.text).validation, [
            { message: '"width" must be ≤ 8192', path: ['width'] },
          ])
        }
      } finally {
        await app.close()
      }
    })
  }
})

describe('foreign validation shapes', () => {
  for (const [name, express] of Expresses) {
    it(`${name}: validation: [null] / strings do not crash the text body and keep messages`, async () => {
      const app = express()
      const reports: ErrorReport[] = []
      app.get('/null', (_q, _s, next) => next(createHttpError(400, 'bad', { validation: [null] })))
      app.get('/strings', (_q, _s, next) =>
        next(createHttpError(400, 'bad', { validation: ['width must be a number'] })),
      )
      app.use(ex.errorHandler({ onError: (r) => reports.push(r) }) as never)
      const s = await listen(app as never)
      try {
        const a = await request(s.url).get('/null')
        assert.equal(a.headers['x-ic-error-code'], 'IC_BAD_REQUEST')
        const b = await request(s.url).get('/strings')
        assert.deepEqual(JSON.parse(b.headers['x-ic-error-validation'] as string), [
          { message: 'width must be a number' },
        ])
      } finally {
        await s.close()
      }
    })
  }
})

describe('Retry-After already on the response', () => {
  for (const [name, express] of Expresses) {
    it(`${name}: a limiter that set Retry-After: 12 then next(createError(429)) keeps 12`, async () => {
      const app = express()
      app.get('/', (_q, res, next) => {
        res.setHeader('Retry-After', '12')
        next(createHttpError(429))
      })
      app.use(ex.errorHandler({ onError: () => {} }) as never)
      const s = await listen(app as never)
      try {
        const r = await request(s.url).get('/')
        assert.equal(r.status, 429)
        assert.equal(r.headers['retry-after'], '12')
      } finally {
        await s.close()
      }
    })
  }
})

describe('request body left unread by a failed body parser', () => {
  for (const [name, express] of Expresses) {
    it(`${name}: 413 from express.json({limit}) reaches the client`, async () => {
      const app = express()
      app.post('/', express.json({ limit: '1kb' }), (_q, res) => res.end('ok'))
      app.use(ex.errorHandler({ onError: () => {} }) as never)
      const s = await listen(app as never)
      try {
        const status = await withTimeout(
          new Promise<number>((resolve, reject) => {
            const req = httpRequest(
              `${s.url}/`,
              {
                method: 'POST',
                headers: { 'content-type': 'application/json', 'content-length': String(8 * 1024 * 1024) },
              },
              (res) => {
                res.resume()
                resolve(res.statusCode ?? 0)
              },
            )
            req.on('error', reject)
            const chunk = Buffer.alloc(64 * 1024, 0x20)
            let left = 128
            const pump = () => {
              while (left > 0) {
                left--
                if (!req.write(chunk)) {
                  req.once('drain', pump)
                  return
                }
              }
              req.end()
            }
            pump()
          }),
          3000,
        )
        assert.equal(status, 413)
      } finally {
        await s.close()
      }
    })
  }
})

describe('an error answered while the request body is still on its way', () => {
  for (const framework of frameworks) {
    it(`${framework}: keeps the connection of a request without a body or with a small one, refused in the tick it arrived`, async () => {
      const refuse = (a: Adapter) => [
        a.fromGuard(() => {
          throw icError('IC_BAD_REQUEST', { message: 'refused at once' })
        }, 'refuse'),
      ]
      const app = await startApp(framework, {
        routes: [
          { method: 'GET', path: '/refuse', use: refuse, handle: () => ({ body: 'no' }) },
          { method: 'POST', path: '/refuse', use: refuse, handle: () => ({ body: 'no' }) },
        ],
      })
      const agent = new Agent({ keepAlive: true, maxSockets: 1 })
      try {
        const sockets = new Set<unknown>()
        for (const method of ['GET', 'POST', 'GET', 'POST']) {
          const res = await withTimeout(
            new Promise<IncomingMessage>((resolve, reject) => {
              const body = method === 'POST' ? '{"a":1}' : undefined
              const req = httpRequest(`${app.url}/refuse`, {
                agent,
                method,
                headers:
                  body === undefined
                    ? {}
                    : { 'content-type': 'application/json', 'content-length': body.length },
              })
              req.on('error', reject)
              req.on('response', resolve)
              req.end(body)
            }),
            3000,
          )
          sockets.add(res.socket)
          res.resume()
          await once(res, 'end')
          assert.equal(res.statusCode, 400)
          assert.notEqual(res.headers.connection, 'close')
        }
        assert.equal(sockets.size, 1, 'one socket for the four refusals')
      } finally {
        agent.destroy()
        await app.close()
      }
    })

    it(`${framework}: closes the connection instead of reading the rest of the body`, async () => {
      const app = await startApp(framework, {
        routes: [
          {
            method: 'POST',
            path: '/refuse',
            use: (a) => [
              a.fromGuard(() => {
                throw icError('IC_BAD_REQUEST', { message: 'refused before the body' })
              }, 'refuse'),
            ],
            handle: () => ({ body: 'no' }),
          },
        ],
      })
      try {
        const res = await withTimeout(
          new Promise<IncomingMessage>((resolve, reject) => {
            const req = httpRequest(`${app.url}/refuse`, {
              method: 'POST',
              headers: { 'transfer-encoding': 'chunked' },
            })
            req.on('error', reject)
            req.on('response', resolve)
            // Never ended: a keep-alive server would go on reading whatever comes.
            req.write(Buffer.alloc(1024))
          }),
          3000,
        )
        res.resume()
        assert.equal(res.statusCode, 400)
        assert.equal(res.headers.connection, 'close')
        await withTimeout(once(res.socket, 'close'), 3000)
      } finally {
        await app.close()
      }
    })
  }
})

describe('Express guards failing with falsy values or routing words', () => {
  for (const [name, express] of Expresses) {
    it(`${name}: a guard that throws '' / 0 / 'route' never lets the request through`, async () => {
      const app = express()
      for (const [p, v] of [
        ['/empty', ''],
        ['/zero', 0],
        ['/route', 'route'],
        ['/false', false],
      ] as const) {
        app.get(
          p,
          ex.fromGuard(() => {
            throw v
          }, 'g') as never,
          (_q, res) => res.end('PASSED'),
        )
      }
      app.use(ex.notFound() as never)
      app.use(ex.errorHandler({ onError: () => {} }) as never)
      const s = await listen(app as never)
      try {
        for (const p of ['/empty', '/zero', '/route', '/false']) {
          const r = await request(s.url).get(p)
          assert.equal(r.status, 500, `${p}: ${r.status} ${r.text}`)
        }
      } finally {
        await s.close()
      }
    })
  }
})

describe('499 is never written to a client that is still there', () => {
  // Another request's departure passed on (a shared backend fetch aborted), a createError(499):
  // the client is still connected, so this is a server failure, answered and reported as one.
  answersOnEveryFramework('answered 500 IC_INTERNAL_ERROR, reported once, the connection not cut', [
    ['IC_CLIENT_CLOSED_REQUEST', () => icError('IC_CLIENT_CLOSED_REQUEST'), 500, 'IC_INTERNAL_ERROR'],
    ['createError(499)', () => createHttpError(499, 'upstream cancelled'), 500, 'IC_INTERNAL_ERROR'],
  ])
})

describe('a body stream that fails before its first byte, through stream.pipeline', () => {
  it('koa3: reported as the server failure (500, outcome closed), not as a 499 client-gone', async () => {
    const { Readable } = await import('node:stream')
    const app = new Koa3()
    app.silent = true
    const reports: ErrorReport[] = []
    app.use(kx.errorHandler({ onError: (r) => reports.push(r) }) as never)
    app.use(async (ctx: { body: unknown }) => {
      ctx.body = new Readable({
        read() {
          this.destroy(new Error('disk gone'))
        },
      })
    })
    const s = await listen(app.callback() as never)
    try {
      await fetch(s.url).catch(() => undefined)
      await new Promise((r) => setTimeout(r, 50))
      assert.equal(reports.length, 1)
      assert.deepEqual([reports[0]?.status, reports[0]?.outcome], [500, 'closed'])
    } finally {
      await s.close()
    }
  })
  for (const [name, express] of Expresses) {
    it(`${name}: pipeline(body, res, next) failing early is a 500 with outcome closed, not a 499`, async () => {
      const { Readable, pipeline } = await import('node:stream')
      const app = express()
      const reports: ErrorReport[] = []
      app.get('/', (_q, res, next) => {
        pipeline(
          new Readable({
            read() {
              this.destroy(new Error('disk gone'))
            },
          }),
          res,
          (e) => e && next(e),
        )
      })
      app.use(ex.errorHandler({ onError: (r) => reports.push(r) }) as never)
      const s = await listen(app as never)
      try {
        await fetch(s.url).catch(() => undefined)
        await new Promise((r) => setTimeout(r, 50))
        assert.equal(reports.length, 1)
        assert.deepEqual([reports[0]?.status, reports[0]?.outcome], [500, 'closed'], 'nothing was sent')
      } finally {
        await s.close()
      }
    })
  }
})

/**
 * An app of `framework` whose only route hands its raw response to `run` (Koa with
 * `ctx.respond = false`) and fails with what `run` rejects with, `errorHandler()` reporting
 * to `reports`, and `clientClosed()` mounted when asked.
 */
function rawResponseApp(
  framework: (typeof frameworks)[number],
  run: (res: import('node:http').ServerResponse) => Promise<unknown>,
  clientClosed: boolean,
  reports: ErrorReport[],
): never {
  const onError = (r: ErrorReport) => reports.push(r)
  if (framework === 'koa2' || framework === 'koa3') {
    const app = framework === 'koa2' ? new Koa2() : new Koa3()
    app.silent = true
    app.use(kx.errorHandler({ onError }) as never)
    if (clientClosed) app.use(kx.clientClosed() as never)
    app.use(async (ctx: { respond: boolean; res: import('node:http').ServerResponse }) => {
      ctx.respond = false
      await run(ctx.res)
    })
    return app.callback() as never
  }
  const app = framework === 'express4' ? (express4 as unknown as typeof express5)() : express5()
  if (clientClosed) app.use(ex.clientClosed() as never)
  app.all('/', (_q, res, next) => {
    run(res).catch(next)
  })
  app.use(ex.errorHandler({ onError }) as never)
  return app as never
}

/**
 * Serves `run` as {@link rawResponseApp} does, writes `parts` on a raw socket (each after the
 * first once the server has answered something) and gives what was reported, as
 * `[status, code, outcome]`.
 */
async function rawReports(
  framework: (typeof frameworks)[number],
  run: (res: import('node:http').ServerResponse) => Promise<unknown>,
  clientClosed: boolean,
  parts: readonly string[],
): Promise<unknown[][]> {
  const reports: ErrorReport[] = []
  const s = await listen(rawResponseApp(framework, run, clientClosed, reports))
  try {
    const socket = connect(Number(new URL(s.url).port), '127.0.0.1')
    socket.on('error', () => {})
    for (const [i, part] of parts.entries()) {
      if (i > 0) await once(socket, 'data')
      socket.write(part)
    }
    await settled(() => reports.length > 0)
    socket.destroy()
    return reports.map((r) => [r.status, r.code, r.outcome])
  } finally {
    await s.close()
  }
}

describe('a backend stream failing before its first byte, the failure wrapped by the handler (502)', () => {
  // The handler pipes the backend into the response itself and passes on a 502 of its own:
  // `pipeline()` destroyed the response with the backend's error, the client is still there.
  const failingBackend = async () => {
    const { Readable } = await import('node:stream')
    return new Readable({
      read() {
        this.destroy(Object.assign(new Error('upstream reset'), { code: 'UND_ERR_SOCKET' }))
      },
    })
  }
  const wrap = (err: unknown) => createHttpError(502, 'backend failed', { cause: err })
  for (const framework of frameworks) {
    for (const [label, waitMs, clientClosed] of [
      ['at once', 0, false],
      ['at once, under clientClosed()', 0, true],
      ['a while later, under clientClosed()', 30, true],
    ] as const) {
      it(`${framework}: passed on ${label}, it is reported as a server failure with outcome closed, not a 499`, async () => {
        const { pipeline } = await import('node:stream/promises')
        const reports: ErrorReport[] = []
        const fail = async (res: import('node:http').ServerResponse) => {
          try {
            await pipeline(await failingBackend(), res)
          } catch (err) {
            await pause(waitMs)
            throw wrap(err)
          }
        }
        const s = await listen(rawResponseApp(framework, fail, clientClosed, reports))
        const socket = connect(Number(new URL(s.url).port), '127.0.0.1')
        try {
          socket.on('error', () => {})
          socket.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n')
          // The client stays: only the server closes this connection.
          await settled(() => reports.length > 0)
          assert.equal(reports.length, 1)
          const [report] = reports
          // Koa hears the destroyed socket's error (on-finished) before the handler's throw: the
          // backend's own failure is reported, a server failure too.
          const expected = framework.startsWith('koa')
            ? [500, 'IC_INTERNAL_ERROR', 'closed', 'upstream reset']
            : [502, 'IC_BAD_GATEWAY', 'closed', 'backend failed']
          assert.deepEqual(
            [report?.status, report?.code, report?.outcome, (report?.error as Error | undefined)?.message],
            expected,
          )
        } finally {
          socket.destroy()
          await s.close()
        }
      })
    }
  }
})

describe('HEAD Content-Length', () => {
  for (const [name, express] of Expresses) {
    it(`${name}: HEAD does not announce Content-Length: 0 when GET has a body`, async () => {
      const app = express()
      app.get('/', (_q, _r, next) => next(new Error('x')))
      app.use(ex.errorHandler({ onError: () => {} }) as never)
      const s = await listen(app as never)
      try {
        const h = await fetch(s.url, { method: 'HEAD' })
        const g = await fetch(s.url)
        await g.text()
        assert.equal(h.headers.get('content-length'), g.headers.get('content-length'))
      } finally {
        await s.close()
      }
    })
  }
})

describe('Express 5: an async handler that rejects after it sent its response', () => {
  it('express5: the response reaches the client whole, and the default onError prints the error', async () => {
    const payload = { pixels: 'x'.repeat(8 * 1024 * 1024) }
    const app = express5()
    app.get('/meta', async (_req, res) => {
      res.json(payload)
      await Promise.reject(new Error('cache write failed'))
    })
    app.use(ex.errorHandler() as never)
    const s = await listen(app as never)
    const logged: unknown[][] = []
    const consoleError = console.error
    console.error = (...args: unknown[]) => logged.push(args)
    try {
      const req = httpRequest(`${s.url}/meta`)
      req.end()
      const [res] = (await once(req, 'response')) as [IncomingMessage]
      res.pause()
      await new Promise((resolve) => setTimeout(resolve, 100))
      let text = ''
      res.setEncoding('utf8')
      res.on('data', (chunk: string) => {
        text += chunk
      })
      const ended = await new Promise<string>((resolve) => {
        res.on('end', () => resolve('complete'))
        res.on('error', (err: NodeJS.ErrnoException) => resolve(`cut (${err.code})`))
        res.resume()
      })
      assert.equal(ended, 'complete')
      assert.deepEqual(JSON.parse(text), payload)
      assert.equal(logged.length, 1)
      assert.equal((logged[0]?.[1] as Error | undefined)?.message, 'cache write failed')
    } finally {
      console.error = consoleError
      await s.close()
    }
  })
})

describe('a missing file (ENOENT)', () => {
  const MISSING = '/nonexistent/image.png'
  /** What `child_process.spawn()` of a binary that is not installed rejects with. */
  const spawnMissing = () =>
    new Promise((resolve, reject) =>
      spawn('image-api-errors-no-such-binary').on('error', reject).on('close', resolve),
    )
  for (const [name, Koa] of Koas) {
    it(`${name}: a file body that is not there is a 404 IC_NOT_FOUND, as Koa 2 answers it, without the file's path`, async () => {
      const app = new Koa()
      const emitted: unknown[] = []
      const reports: ErrorReport[] = []
      app.on('error', (err: unknown) => emitted.push(err))
      app.use(kx.errorHandler({ onError: (r) => reports.push(r) }) as never)
      app.use(async (ctx: { path: string; body: unknown }) => {
        ctx.body = createReadStream(MISSING)
      })
      const s = await listen(app.callback() as never)
      try {
        if (name === 'koa2') {
          const r = await request(s.url).get('/stream').set('accept', 'application/json')
          assert.deepEqual([r.status, r.headers['x-ic-error-code']], [404, 'IC_NOT_FOUND'])
          assert.doesNotMatch(r.text, /nonexistent/)
        } else {
          // Koa 3's pipeline destroys the response before any handler can answer (frameworks.md).
          await assert.rejects(request(s.url).get('/stream'))
        }
        while (reports.length === 0) await new Promise((resolve) => setImmediate(resolve))
        assert.deepEqual(
          reports.map((report) => [report.status, report.code, report.outcome, report.error]),
          [[404, 'IC_NOT_FOUND', name === 'koa2' ? 'sent' : 'closed', emitted[0]]],
          'onError gets the error as thrown',
        )
        assert.equal(
          (emitted[0] as NodeJS.ErrnoException).code,
          'ENOENT',
          'the app hears the error as thrown',
        )
      } finally {
        await s.close()
      }
    })

    it(`${name}: a file body whose opening a middleware awaits is answered 404 IC_NOT_FOUND`, async () => {
      const app = new Koa()
      app.silent = true
      app.use(kx.errorHandler() as never)
      app.use(async (ctx: { body: unknown }) => {
        const body = createReadStream(MISSING)
        ctx.body = body
        await once(body, 'open')
      })
      const s = await listen(app.callback() as never)
      try {
        const r = await request(s.url).get('/stream')
        assert.deepEqual([r.status, r.headers['x-ic-error-code']], [404, 'IC_NOT_FOUND'])
        assert.doesNotMatch(r.text, /nonexistent/)
      } finally {
        await s.close()
      }
    })

    it(`${name}: any other ENOENT (a binary spawn() cannot find, a file read in a middleware) is a 500`, async () => {
      const app = new Koa()
      app.silent = true
      const reports: ErrorReport[] = []
      app.use(kx.errorHandler({ onError: (r) => reports.push(r) }) as never)
      app.use(async (ctx: { path: string; body: unknown }) => {
        if (ctx.path === '/spawn') await spawnMissing()
        else if (ctx.path === '/read') ctx.body = await readFile(MISSING)
        else if (ctx.path === '/after-body') {
          // The body is a file stream, but the failure is another file's.
          ctx.body = createReadStream(fileURLToPath(import.meta.url))
          await readFile(MISSING)
        } else if (ctx.path === '/own-status')
          throw Object.assign(new Error('gone'), { code: 'ENOENT', syscall: 'open', status: 503 })
      })
      const s = await listen(app.callback() as never)
      try {
        const answers: string[] = []
        for (const path of ['/spawn', '/read', '/after-body', '/own-status']) {
          const r = await request(s.url).get(path)
          answers.push(`${path} ${r.status} ${r.headers['x-ic-error-code']}`)
        }
        assert.deepEqual(answers, [
          '/spawn 500 IC_INTERNAL_ERROR',
          '/read 500 IC_INTERNAL_ERROR',
          '/after-body 500 IC_INTERNAL_ERROR',
          '/own-status 503 IC_SERVICE_UNAVAILABLE',
        ])
        assert.deepEqual(
          reports.map((report) => (report.error as NodeJS.ErrnoException).code),
          ['ENOENT', 'ENOENT', 'ENOENT', 'ENOENT'],
        )
      } finally {
        await s.close()
      }
    })
  }
  it('a thrown ENOENT is a 500 on Express 4 and 5 and Koa 2 and 3 alike', async () => {
    const answers: string[] = []
    for (const framework of frameworks) {
      const app = await startApp(framework, {
        routes: [{ path: '/read', handle: async () => ({ body: await readFile(MISSING) }) }],
      })
      try {
        const r = await request(app.url).get('/read')
        answers.push(`${framework} ${r.status} ${r.headers['x-ic-error-code']}`)
      } finally {
        await app.close()
      }
    }
    assert.deepEqual(answers, [
      'express4 500 IC_INTERNAL_ERROR',
      'express5 500 IC_INTERNAL_ERROR',
      'koa2 500 IC_INTERNAL_ERROR',
      'koa3 500 IC_INTERNAL_ERROR',
    ])
  })
})

describe('Koa: errorHandler({ onError: undefined })', () => {
  for (const [name, Koa] of Koas) {
    it(`${name}: keeps the Koa default (no console.error of its own), so a 5xx is logged once, by Koa`, async () => {
      const config: { onError?: (report: ErrorReport) => void } = {} // nothing configured
      const app = new Koa()
      app.silent = true
      const emitted: unknown[] = []
      app.on('error', (err: unknown) => emitted.push(err))
      app.use(kx.errorHandler({ onError: config.onError }) as never)
      app.use(async () => {
        throw new Error('db down')
      })
      const s = await listen(app.callback() as never)
      const logged: unknown[] = []
      const consoleError = console.error
      console.error = (...args: unknown[]) => logged.push(args)
      try {
        assert.equal((await request(s.url).get('/')).status, 500)
        assert.deepEqual(logged, [])
        assert.deepEqual(
          emitted.map((err) => (err as Error).message),
          ['db down'],
        )
      } finally {
        console.error = consoleError
        await s.close()
      }
    })
  }
})

describe('notFound() under a mount path names the path the client asked for', () => {
  for (const [name, express] of Expresses) {
    it(`${name}: a router mounted at /api/v2`, async () => {
      const app = express()
      const api = express.Router()
      api.get('/images/:id', (_req, res) => res.send('ok'))
      api.use(ex.notFound() as never)
      app.use('/api/v2', api)
      app.use(ex.errorHandler({ onError: () => {} }) as never)
      await assertNamesMountedPath(app as never)
    })
  }
  for (const [name, Koa] of Koas) {
    it(`${name}: a koa-mount style mount at /api/v2, which rewrites ctx.path`, async () => {
      const app = new Koa()
      app.silent = true
      app.use(kx.errorHandler({ onError: () => {} }) as never)
      const notFound = kx.notFound()
      app.use(async (ctx: { path: string }, next: () => Promise<unknown>) => {
        if (!ctx.path.startsWith('/api/v2/')) {
          await next()
          return
        }
        const mountedAt = ctx.path
        ctx.path = ctx.path.slice('/api/v2'.length)
        try {
          await notFound(ctx as never, async () => {})
        } finally {
          ctx.path = mountedAt
        }
      })
      await assertNamesMountedPath(app.callback() as never)
    })
  }
})

describe('Koa: a late error after the request already failed', () => {
  for (const [name, Koa] of Koas) {
    it(`${name}: is neither written nor emitted on the app a second time`, async () => {
      const app = new Koa()
      const seen: unknown[] = []
      const reports: ErrorReport[] = []
      app.on('error', (err: unknown) => seen.push(err))
      app.use(kx.errorHandler({ onError: (r) => reports.push(r) }) as never)
      app.use(async (ctx: { onerror(err: unknown): void }) => {
        ctx.onerror(icError('IC_BACKEND_TIMEOUT'))
        throw new Error('late failure of the handler')
      })
      const s = await listen(app.callback() as never)
      try {
        const r = await request(s.url).get('/')
        assert.equal(r.status, 504)
        assert.equal(r.headers['x-ic-error-code'], 'IC_BACKEND_TIMEOUT')
        await new Promise((resolve) => setTimeout(resolve, 20))
        assert.equal(reports.length, 1)
        assert.equal(seen.length, 1)
      } finally {
        await s.close()
      }
    })
  }
})

const hostile = () =>
  new Proxy(new Error('hostile'), {
    get() {
      throw new Error('every property read throws')
    },
  })

describe('a thrown value whose getters throw, and a branded error without its code', () => {
  const cloned = () => {
    const Class = icError('IC_RATE_LIMITED').constructor as new (message: string) => Error
    return new Class('cloned through err.constructor')
  }
  const expectations = [
    ['hostile', hostile, 500, 'IC_INTERNAL_ERROR'],
    ['cloned', cloned, 429, 'IC_RATE_LIMITED'],
  ] as const
  answersOnEveryFramework(
    'answered (500 / 429 with the code of its status), onError once, no hang',
    expectations,
  )
})

describe('a thrown value whose getters throw, after the response started', () => {
  for (const [name, express] of Expresses) {
    it(`${name}: reported once as headers-sent (500), the truncated response cut`, async () => {
      const reports: ErrorReport[] = []
      const app = express()
      app.get('/', (_req, res, next) => {
        res.write('partial')
        next(hostile())
      })
      app.use(ex.errorHandler({ onError: (r) => reports.push(r) }) as never)
      const s = await listen(app as never)
      try {
        const body = await withTimeout(
          fetch(s.url).then((r) => r.text()),
          1500,
        ).then(
          () => 'whole',
          () => 'cut',
        )
        assert.equal(body, 'cut')
        assert.deepEqual(
          reports.map((r) => [r.status, r.outcome]),
          [[500, 'headers-sent']],
        )
      } finally {
        await s.close()
      }
    })
  }
})

describe('Express: where a deadline 504 goes when the app has no single errorHandler() at its top', () => {
  for (const [name, express] of Expresses) {
    it(`${name}: through next(err), to the errorHandler() of the sub-router or of the first match`, async () => {
      const reports: string[] = []
      const app = express()
      const router = express.Router()
      router.get('/slow', ex.deadline({ timeoutMs: 30 }) as never, () => {})
      router.use(ex.errorHandler({ onError: (r) => reports.push(`router ${r.code}`) }) as never)
      app.use('/r', router)
      app.get('/slow', ex.deadline({ timeoutMs: 30 }) as never, () => {})
      app.use(ex.errorHandler({ onError: (r) => reports.push(`first ${r.code}`) }) as never)
      app.use(ex.errorHandler({ onError: (r) => reports.push(`second ${r.code}`) }) as never)
      const server = await listen(app as never)
      try {
        assert.equal((await fetch(`${server.url}/r/slow`)).status, 504)
        assert.equal((await fetch(`${server.url}/slow`)).status, 504)
        assert.deepEqual(reports, ['router IC_BACKEND_TIMEOUT', 'first IC_BACKEND_TIMEOUT'])
      } finally {
        await server.close()
      }
    })

    it(`${name}: a router's own errorHandler() answers its routes' 504, beside one of the app's; one at a path is not taken for every path`, async () => {
      const reports: string[] = []
      const app = express()
      const api = express.Router()
      api.get('/slow', ex.deadline({ timeoutMs: 30 }) as never, () => {})
      api.use(ex.errorHandler({ onError: (r) => reports.push(`api ${r.code}`) }) as never)
      app.use('/api', api)
      app.get('/slow', ex.deadline({ timeoutMs: 30 }) as never, () => {})
      app.use(ex.errorHandler({ onError: (r) => reports.push(`app ${r.code}`) }) as never)
      const admin = express()
      admin.get('/slow', ex.deadline({ timeoutMs: 30 }) as never, () => {})
      admin.use('/admin', ex.errorHandler({ onError: (r) => reports.push(`admin ${r.code}`) }) as never)
      admin.use(ex.errorHandler({ onError: (r) => reports.push(`rest ${r.code}`) }) as never)
      // Its only errorHandler() is at a path: not taken for /slow.
      const onlyAdmin = express()
      onlyAdmin.set('env', 'test')
      onlyAdmin.get('/slow', ex.deadline({ timeoutMs: 30 }) as never, () => {})
      onlyAdmin.use(
        '/admin',
        ex.errorHandler({ onError: (r) => reports.push(`only-admin ${r.code}`) }) as never,
      )
      // errorHandler()s on routes, where Express sends their errors.
      const routes = express()
      routes.get(
        '/slow',
        ex.deadline({ timeoutMs: 30 }) as never,
        () => {},
        ex.errorHandler({ onError: (r) => reports.push(`route ${r.code}`) }) as never,
      )
      routes
        .route('/r')
        .get(ex.deadline({ timeoutMs: 30 }) as never, () => {})
        .all(ex.errorHandler({ onError: (r) => reports.push(`route.all ${r.code}`) }) as never)
      routes.use(ex.errorHandler({ onError: (r) => reports.push(`routes-app ${r.code}`) }) as never)
      const servers = await Promise.all([app, admin, onlyAdmin, routes].map((a) => listen(a as never)))
      const [server, adminServer, onlyAdminServer, routesServer] = servers as [Served, Served, Served, Served]
      try {
        assert.equal((await fetch(`${server.url}/api/slow`)).status, 504)
        assert.equal((await fetch(`${server.url}/slow`)).status, 504)
        assert.equal((await fetch(`${adminServer.url}/slow`)).status, 504)
        assert.equal((await fetch(`${onlyAdminServer.url}/slow`)).status, 504)
        assert.equal((await fetch(`${routesServer.url}/slow`)).status, 504)
        assert.equal((await fetch(`${routesServer.url}/r`)).status, 504)
        assert.deepEqual(reports, [
          'api IC_BACKEND_TIMEOUT',
          'app IC_BACKEND_TIMEOUT',
          'rest IC_BACKEND_TIMEOUT',
          'route IC_BACKEND_TIMEOUT',
          'route.all IC_BACKEND_TIMEOUT',
        ])
      } finally {
        await Promise.all(servers.map((s) => s.close()))
      }
    })
  }
})

describe("Express: a route that calls next(err) twice itself (docs/api.md's limit)", () => {
  for (const [name, express] of Expresses) {
    it(`${name}: the second error skips errorHandler(), which the router is past, and reaches the final handler`, async () => {
      const logged: unknown[] = []
      const consoleError = console.error
      console.error = (...args: unknown[]) => logged.push(args[0])
      const reports: ErrorReport[] = []
      const app = express()
      app.set('env', 'development')
      app.get('/', (_req, _res, next) => {
        next(createHttpError(404, 'first'))
        setTimeout(() => next(new Error('second')), 10)
      })
      app.use(ex.errorHandler({ onError: (r) => reports.push(r) }) as never)
      const s = await listen(app as never)
      try {
        const r = await request(s.url).get('/')
        assert.equal(r.status, 404)
        await pause(50)
        assert.deepEqual(
          reports.map((report) => (report.error as Error).message),
          ['first'],
        )
        assert.equal(logged.length, 1)
        assert.match(String(logged[0]), /^Error: second/)
      } finally {
        console.error = consoleError
        await s.close()
      }
    })
  }
})

describe('hooks that fail', () => {
  const failingHooks = {
    'an async onError that rejects': { onError: async () => Promise.reject(new Error('log sink down')) },
    'an onError whose promise of another realm rejects': {
      onError: () => (vm.runInNewContext('Promise') as PromiseConstructor).reject(new Error('log sink down')),
    },
    'a generateRequestId that throws': {
      onError: () => {},
      generateRequestId: () => {
        throw new Error('no id today')
      },
    },
    'a problemType that throws': {
      onError: () => {},
      problemType: () => {
        throw new Error('no type today')
      },
    },
  } as const
  for (const [hook, options] of Object.entries(failingHooks)) {
    const apps = [
      ...Expresses.map(([name, express]) => {
        return [
          name,
          () => {
            const app = express()
            app.get('/', (_q, _r, next) => next(icError('IC_HOST_NOT_ALLOWED')))
            app.use(ex.errorHandler(options) as never)
            return app as never
          },
        ] as const
      }),
      ...Koas.map(([name, Koa]) => {
        return [
          name,
          () => {
            const app = new Koa()
            app.silent = true
            app.use(kx.errorHandler(options) as never)
            app.use(() => {
              throw icError('IC_HOST_NOT_ALLOWED')
            })
            return app.callback() as never
          },
        ] as const
      }),
    ]
    for (const [name, make] of apps) {
      it(`${name}: ${hook} still gets an answer, and the process lives on`, async () => {
        const unhandled: unknown[] = []
        const onUnhandled = (reason: unknown) => unhandled.push(reason)
        process.on('unhandledRejection', onUnhandled)
        const s = await listen(make())
        try {
          const res = await withTimeout(fetch(s.url, { headers: { accept: 'application/json' } }), 2000)
          const body = (await res.json()) as { type: string }
          const code = res.headers.get('x-ic-error-code')
          assert.deepEqual([res.status, code], [401, 'IC_HOST_NOT_ALLOWED'])
          if (hook === 'a problemType that throws')
            assert.equal(body.type, 'urn:image-api-errors:code:IC_HOST_NOT_ALLOWED')
          assert.match(res.headers.get('x-request-id') ?? '', /^[0-9a-f-]{36}$/)
          await new Promise((resolve) => setTimeout(resolve, 10))
          assert.deepEqual(unhandled, [])
        } finally {
          process.off('unhandledRejection', onUnhandled)
          await s.close()
        }
      })
    }
  }
})

describe('Koa: an error status set without a body is answered as an error', () => {
  for (const [name, Koa] of Koas) {
    it(`${name}: @koa/router's allowedMethods() 405 gets x-ic-error-code and keeps Allow; a body of the app's own is left alone`, async () => {
      const { default: Router } = await import('@koa/router')
      const app = new Koa()
      app.silent = true
      const reports: ErrorReport[] = []
      const emitted: unknown[] = []
      app.on('error', (e: { code?: unknown }) => emitted.push(e.code))
      app.use(kx.errorHandler({ onError: (r) => reports.push(r) }) as never)
      app.use(kx.notFound() as never)
      const router = new Router()
      router.get('/x', (ctx: { body: unknown }) => {
        ctx.body = 'x'
      })
      router.get('/locked', (ctx: { status: number }) => {
        ctx.status = 401
      })
      router.get('/own', (ctx: { status: number; body: unknown }) => {
        ctx.status = 400
        ctx.body = 'my own answer'
      })
      router.get('/plan', (ctx: { status: number; message: string }) => {
        ctx.status = 403
        ctx.message = 'Your plan does not include webp'
      })
      router.get('/early', (ctx: { status: number }) => {
        ctx.status = 425 // Koa 2 names it from statuses 1.x: "Unordered Collection"
      })
      router.get('/img/missing.png', (ctx: { status: number; message: string }) => {
        ctx.status = 404
        ctx.message = 'No such image'
      })
      app.use(router.routes() as never)
      app.use(router.allowedMethods() as never)
      const s = await listen(app.callback() as never)
      try {
        const post = await fetch(`${s.url}/x`, { method: 'POST' })
        assert.deepEqual(
          [post.status, post.headers.get('x-ic-error-code'), post.headers.get('allow')],
          [405, 'IC_METHOD_NOT_ALLOWED', 'HEAD, GET'],
        )
        const locked = await fetch(`${s.url}/locked`)
        assert.deepEqual([locked.status, locked.headers.get('x-ic-error-code')], [401, 'IC_UNAUTHORIZED'])
        const own = await fetch(`${s.url}/own`)
        assert.deepEqual(
          [own.status, own.headers.get('x-ic-error-code'), await own.text()],
          [400, null, 'my own answer'],
        )
        const plan = await fetch(`${s.url}/plan`)
        assert.equal(plan.status, 403)
        assert.match(await plan.text(), /Your plan does not include webp/)
        const early = await fetch(`${s.url}/early`)
        assert.equal(early.status, 425)
        assert.doesNotMatch(
          await early.text(),
          /Unordered Collection/,
          'a default text is not a message of the app',
        )
        const image = await fetch(`${s.url}/img/missing.png`)
        assert.deepEqual([image.status, image.headers.get('x-ic-error-code')], [404, 'IC_NOT_FOUND'])
        assert.match(await image.text(), /No such image/, "the app's 404 message, not notFound()'s")
        const missing = await fetch(`${s.url}/nothing`)
        assert.deepEqual([missing.status, missing.headers.get('x-ic-error-code')], [404, 'IC_NOT_FOUND'])
        assert.match(await missing.text(), /No route for GET \/nothing/)
        assert.deepEqual(
          reports.map((r) => r.code),
          [
            'IC_METHOD_NOT_ALLOWED',
            'IC_UNAUTHORIZED',
            'IC_FORBIDDEN',
            'IC_CLIENT_ERROR',
            'IC_NOT_FOUND',
            'IC_NOT_FOUND',
          ],
        )
        assert.deepEqual(emitted, ['IC_NOT_FOUND'], 'a status without a body is not an error thrown')
      } finally {
        await s.close()
      }
    })
  }
})

describe('Koa: a status past 599 set without a body is no error of ours', () => {
  for (const [name, Koa] of Koas) {
    it(`${name}: sent as the app set it, not turned into a 500 (nor an http-errors warning)`, async () => {
      const app = new Koa()
      app.silent = true
      const reports: ErrorReport[] = []
      app.use(kx.errorHandler({ onError: (r) => reports.push(r) }) as never)
      app.use((ctx: { status: number }) => {
        ctx.status = 600
      })
      const s = await listen(app.callback() as never)
      try {
        // fetch() refuses a status past 599: a plain request reads it.
        const res = await new Promise<IncomingMessage>((resolve, reject) =>
          httpRequest(s.url, resolve).on('error', reject).end(),
        )
        res.resume()
        assert.deepEqual([res.statusCode, res.headers['x-ic-error-code']], [600, undefined])
        assert.equal(reports.length, 0)
      } finally {
        await s.close()
      }
    })
  }
})

describe('a client that leaves while a large buffered image is still being sent', () => {
  for (const framework of frameworks) {
    it(`${framework}: is never reported as a server failure (Koa: a 499 client-gone)`, async () => {
      const image = Buffer.alloc(4 * 1024 * 1024, 1)
      const app = await startApp(framework, {
        use: (a) => [a.clientClosed()],
        routes: [{ path: '/big', handle: () => ({ headers: { 'content-type': 'image/png' }, body: image }) }],
      })
      try {
        const socket = connect(Number(new URL(app.url).port), '127.0.0.1')
        await once(socket, 'connect')
        socket.pause()
        socket.write('GET /big HTTP/1.1\r\nHost: x\r\n\r\n')
        await new Promise((resolve) => setTimeout(resolve, 150))
        socket.resetAndDestroy()
        await new Promise((resolve) => setTimeout(resolve, 300))
        assert.deepEqual(
          app.reports.filter((r) => r.status >= 500).map((r) => `${r.status} ${r.code} ${r.outcome}`),
          [],
        )
        if (framework.startsWith('koa'))
          assert.deepEqual(
            app.reports.map((r) => `${r.status} ${r.outcome}`),
            ['499 client-gone'],
          )
      } finally {
        await app.close()
      }
    })
  }
})

describe('Koa: a client that leaves mid-stream under clientClosed()', () => {
  for (const [name, Koa] of Koas) {
    it(`${name}: is reported and emitted as the IC_CLIENT_CLOSED_REQUEST it is, not as the stream's error`, async () => {
      const app = new Koa()
      const emitted: unknown[] = []
      app.on('error', (e: { code?: unknown }) => emitted.push(e.code))
      const reports: ErrorReport[] = []
      app.use(kx.errorHandler({ onError: (r) => reports.push(r) }) as never)
      app.use(kx.clientClosed() as never)
      app.use(((ctx: { body: unknown }) => {
        const body = new PassThrough()
        body.write('first bytes ')
        ctx.body = body
      }) as never)
      const s = await listen(app.callback() as never)
      try {
        const socket = connect(Number(new URL(s.url).port), '127.0.0.1')
        socket.write('GET /stream HTTP/1.1\r\nHost: x\r\n\r\n')
        await once(socket, 'data')
        socket.destroy()
        await new Promise((resolve) => setTimeout(resolve, 200))
        assert.deepEqual(
          reports.map((r) => [r.status, r.outcome, (r.error as { code?: unknown }).code]),
          [[499, 'client-gone', 'IC_CLIENT_CLOSED_REQUEST']],
        )
        assert.ok(
          emitted.every((code) => code === 'IC_CLIENT_CLOSED_REQUEST'),
          `emitted ${JSON.stringify(emitted)}`,
        )
      } finally {
        await s.close()
      }
    })
  }
})

describe('a client that leaves after the headers were sent, and the handler fails because of it', () => {
  type Fail = (res: import('node:http').ServerResponse) => Promise<never>
  // The handler's next chunk, written once the client left: Node calls back with ERR_STREAM_DESTROYED.
  const writeAfterClose: Fail = (res) =>
    new Promise((_, reject) => {
      res.on('close', () => res.write('more', (err) => reject(err ?? new Error('no error'))))
    })
  // An error of the handler's own in the very turn of the response's close.
  const failOnClose: Fail = (res) =>
    new Promise((_, reject) => {
      res.on('close', () => reject(new Error('sharp: Input buffer contains unsupported image format')))
    })
  // The response has started: an image's first bytes are out.
  const started =
    (fail: Fail) =>
    (res: import('node:http').ServerResponse): Promise<never> => {
      res.writeHead(200, { 'content-type': 'image/png' })
      res.write('PNG')
      return fail(res)
    }
  for (const framework of frameworks) {
    for (const [label, fail, clientClosed] of [
      ['a write failing with ERR_STREAM_DESTROYED, without clientClosed()', writeAfterClose, false],
      ['an error of its own in the turn of the close, under clientClosed()', failOnClose, true],
    ] as const) {
      it(`${framework}: ${label}, is a 499 client-gone, not a 500 headers-sent`, async () => {
        const reports: ErrorReport[] = []
        const s = await listen(rawResponseApp(framework, started(fail), clientClosed, reports))
        try {
          const socket = connect(Number(new URL(s.url).port), '127.0.0.1')
          socket.on('error', () => {})
          socket.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n')
          await once(socket, 'data')
          socket.destroy()
          await settled(() => reports.length > 0)
          assert.deepEqual(
            reports.map((r) => [r.status, r.code, r.outcome]),
            [[499, 'IC_CLIENT_CLOSED_REQUEST', 'client-gone']],
          )
        } finally {
          await s.close()
        }
      })
    }
    for (const clientClosed of [false, true]) {
      it(`${framework}: the app's own res.destroy(), then a write failing with ERR_STREAM_DESTROYED${clientClosed ? ', under clientClosed()' : ''}, is a 500, not a 499`, async () => {
        const destroyThenWrite: Fail = (res) =>
          new Promise((_, reject) => {
            setImmediate(() => {
              res.destroy()
              res.write('more', (err) => reject(err ?? new Error('no error')))
            })
          })
        assert.deepEqual(
          await rawReports(framework, started(destroyThenWrite), clientClosed, [
            'GET / HTTP/1.1\r\nHost: x\r\n\r\n',
          ]),
          [[500, 'IC_INTERNAL_ERROR', 'headers-sent']],
        )
      })
    }
    it(`${framework}: under clientClosed(), the app's own res.destroy() alone stops the request's work and reports no 499 for a client still connected`, async () => {
      const reports: ErrorReport[] = []
      let reason: unknown
      const destroyOnly = (res: import('node:http').ServerResponse): Promise<void> =>
        new Promise((resolve) => {
          const signal = requestSignal(res.req)
          signal.addEventListener('abort', () => {
            reason = signal.reason
            resolve()
          })
          setImmediate(() => res.destroy())
        })
      const s = await listen(rawResponseApp(framework, destroyOnly, true, reports))
      try {
        const socket = connect(Number(new URL(s.url).port), '127.0.0.1')
        socket.on('error', () => {})
        socket.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n')
        await settled(() => reason !== undefined)
        await new Promise((resolve) => setTimeout(resolve, 50))
        socket.destroy()
        assert.equal((reason as { code?: unknown }).code, 'ERR_STREAM_DESTROYED')
        assert.deepEqual(reports, [])
      } finally {
        await s.close()
      }
    })
    // Node's parser refuses the body (HPE_INVALID_CHUNK_SIZE) and destroys the socket: Koa hears
    // the parser's error through on-finished, Express the request's ECONNRESET.
    for (const clientClosed of [false, true]) {
      it(`${framework}: a malformed chunked body read after the headers were sent${clientClosed ? ', under clientClosed()' : ''} is a 499 client-gone, not a 500`, async () => {
        const readBody = async (res: import('node:http').ServerResponse) => {
          res.writeHead(200, { 'content-type': 'image/png' })
          res.write('PNG')
          for await (const _ of res.req) {
            // read to the end, or to the parser's failure
          }
          res.end()
        }
        assert.deepEqual(
          await rawReports(framework, readBody, clientClosed, [
            'POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n',
            'ZZ\r\nxx\r\n0\r\n\r\n',
          ]),
          [[499, 'IC_CLIENT_CLOSED_REQUEST', 'client-gone']],
        )
      })
    }
  }
})

describe("Koa without clientClosed(): the app's own res.destroy() while it reads the body", () => {
  // Dropping an abusive upload: the body's reading then fails with ECONNRESET, which is the
  // server's own cut, not the client leaving.
  for (const [name, Koa] of [
    ['koa2', Koa2],
    ['koa3', Koa3],
  ] as const) {
    it(`${name}: is reported and emitted as the server's failure, and the request's signal is left alone`, async () => {
      const reports: ErrorReport[] = []
      const emitted: unknown[] = []
      let reason: unknown
      const app = new Koa()
      app.silent = true
      app.on('error', (err: unknown) => emitted.push((err as { code?: unknown }).code))
      app.use(kx.errorHandler({ onError: (r) => reports.push(r) }) as never)
      app.use(
        async (ctx: { req: IncomingMessage; res: import('node:http').ServerResponse; body: unknown }) => {
          const signal = requestSignal(ctx.req)
          signal.addEventListener('abort', () => {
            reason = (signal.reason as { code?: unknown }).code
          })
          let bytes = 0
          for await (const chunk of ctx.req) {
            bytes += (chunk as Buffer).length
            if (bytes > 10) ctx.res.destroy()
          }
          ctx.body = 'stored'
        },
      )
      const s = await listen(app.callback() as never)
      try {
        const socket = connect(Number(new URL(s.url).port), '127.0.0.1')
        socket.on('error', () => {})
        socket.write(`POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n${'a'.repeat(50)}`)
        await settled(() => reports.length > 0)
        await new Promise((resolve) => setTimeout(resolve, 30))
        socket.destroy()
        assert.deepEqual(
          reports.map((r) => [r.status, r.outcome]),
          [[500, 'closed']],
        )
        assert.deepEqual(emitted, ['ECONNRESET'])
        assert.equal(reason, undefined)
      } finally {
        await s.close()
      }
    })
  }
})

describe('pipelined and reset connections', () => {
  it("express5: a backend's reset while a queued pipelined response was being written is the server's failure, not a 499", async () => {
    const reports: string[] = []
    const app = express5()
    app.get('/slow', (_req, res) => {
      setTimeout(() => res.end('slow'), 150)
    })
    app.get('/proxy', (_req, res, next) => {
      res.write('partial')
      setTimeout(() => next(Object.assign(new Error('upstream reset'), { code: 'ECONNRESET' })), 20)
    })
    app.use(ex.errorHandler({ onError: (r) => reports.push(`${r.request.url} ${r.status} ${r.outcome}`) }))
    const s = await listen(app as never)
    try {
      await pipelineThenLeave(s.url, ['/slow', '/proxy'], 400)
      assert.deepEqual(reports, ['/proxy 500 headers-sent'])
    } finally {
      await s.close()
    }
  })

  // errorHandler() alone, no clientClosed(): a queued response has no socket of its own yet.
  for (const framework of frameworks) {
    it(`${framework}: a queued pipelined request failing after its client left is a 499, not a 500 sent to no one`, async () => {
      const app = await startApp(framework, {
        routes: [
          {
            path: '/slow',
            handle: async () => {
              await pause(300)
              return { body: 'slow' }
            },
          },
          {
            path: '/fail',
            handle: async () => {
              await pause(200)
              throw new Error('backend failed')
            },
          },
        ],
      })
      try {
        await pipelineThenLeave(app.url, ['/slow', '/fail'], 100)
        await settled(() => app.reports.length > 0)
        const reports = app.reports.map((r) => `${r.request.url} ${r.status} ${r.outcome}`)
        assert.deepEqual(reports, ['/fail 499 client-gone'])
      } finally {
        await app.close()
      }
    })
  }

  it('express5: a queued pipelined response its handler ended in time keeps its signal when a deadline passes', async () => {
    const signals: AbortSignal[] = []
    const app = express5()
    app.use(ex.deadline({ timeoutMs: 100 }))
    app.get('/slow', (_req, res) => {
      setTimeout(() => res.end('slow'), 250)
    })
    app.get('/fast', (_req, res) => {
      signals.push(res.locals.signal as AbortSignal)
      res.end('fast')
    })
    app.use(ex.errorHandler())
    const s = await listen(app as never)
    try {
      await pipelineThenLeave(s.url, ['/slow', '/fast'], 400)
      assert.equal(signals.length, 1)
      assert.equal(signals[0]?.aborted, false, String((signals[0]?.reason as { code?: string })?.code))
    } finally {
      await s.close()
    }
  })

  for (const [name, Koa] of Koas) {
    it(`${name}: a client resetting the connection while the handler waits is reported and emitted as IC_CLIENT_CLOSED_REQUEST`, async () => {
      const app = new Koa()
      const out: string[] = []
      app.on('error', (e: { code?: unknown }) => out.push(`emitted ${String(e.code)}`))
      app.use(
        kx.errorHandler({
          onError: (r) => out.push(`${r.status} ${(r.error as { code?: unknown }).code} ${r.outcome}`),
        }) as never,
      )
      app.use(kx.clientClosed() as never)
      app.use((async (ctx: { body: unknown }) => {
        await pause(300)
        ctx.body = 'late'
      }) as never)
      const s = await listen(app.callback() as never)
      try {
        const socket = connect(Number(new URL(s.url).port), '127.0.0.1')
        socket.on('error', () => {})
        socket.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n')
        await pause(50)
        socket.resetAndDestroy()
        await pause(400)
        assert.deepEqual(out, [
          '499 IC_CLIENT_CLOSED_REQUEST client-gone',
          'emitted IC_CLIENT_CLOSED_REQUEST',
        ])
      } finally {
        await s.close()
      }
    })
  }
})

describe("Koa: a backend's reset mid-body, the client still there", () => {
  for (const [name, Koa] of Koas) {
    it(`${name}: is emitted as the backend's error, not as a client that left`, async () => {
      const app = new Koa()
      const out: string[] = []
      app.on('error', (e: { code?: unknown }) => out.push(`emitted ${String(e.code)}`))
      app.use(kx.errorHandler({ onError: (r) => out.push(`${r.status} ${r.outcome}`) }) as never)
      app.use(kx.clientClosed() as never)
      app.use(((ctx: { body: unknown; type: string }) => {
        const body = new PassThrough()
        ctx.type = 'image/png'
        ctx.body = body
        body.write(Buffer.alloc(1000))
        setTimeout(() => body.destroy(Object.assign(new Error('upstream reset'), { code: 'ECONNRESET' })), 30)
      }) as never)
      const s = await listen(app.callback() as never)
      try {
        await new Promise<void>((resolve) => {
          const req = httpRequest(`${s.url}/`, (res) => {
            res.on('data', () => {})
            res.on('error', () => {})
            res.on('close', () => resolve())
          })
          req.on('error', () => resolve())
          req.end()
        })
        await new Promise((resolve) => setTimeout(resolve, 100))
        assert.deepEqual(out, ['500 headers-sent', 'emitted ECONNRESET'])
      } finally {
        await s.close()
      }
    })
  }
})
