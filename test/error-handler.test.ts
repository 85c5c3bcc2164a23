import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { once } from 'node:events'
import { request as httpRequest } from 'node:http'
import { connect } from 'node:net'
import { Readable } from 'node:stream'
import { after, before, describe, it } from 'node:test'
import { gunzipSync } from 'node:zlib'
import compression from 'compression'
import createHttpError from 'http-errors'
import request from 'supertest'
import { defineErrorCode, type ErrorReport, icError } from '../src/index.ts'
import { type AppSpec, frameworks, type RouteSpec, type RunningApp, startApp } from './support/harness.ts'
import { slowDownload } from './support/slow-download.ts'

const CDN_CACHE_HEADERS: Readonly<Record<string, string>> = {
  'cache-control': 'public, max-age=31536000, immutable',
  'surrogate-control': 'max-age=31536000',
  'cdn-cache-control': 'max-age=31536000',
  // Each CDN's own CDN-Cache-Control, which takes precedence over the generic one there.
  'cloudflare-cdn-cache-control': 'max-age=31536000',
  'vercel-cdn-cache-control': 'max-age=31536000',
  'netlify-cdn-cache-control': 'public, max-age=31536000',
  'x-accel-expires': '31536000', // nginx proxy_cache, over Cache-Control
  'edge-control': 'max-age=365d', // Akamai
  expires: 'Thu, 31 Dec 2037 23:55:55 GMT',
  age: '12',
  'surrogate-key': 'img-42',
  'cache-tag': 'img-42',
  'content-digest': 'sha-256=:RK/0qy18MlBSVnWgjwz6lZEWjP/lF5HF9bvEF8FabDg=:',
  'repr-digest': 'sha-256=:RK/0qy18MlBSVnWgjwz6lZEWjP/lF5HF9bvEF8FabDg=:',
  digest: 'sha-256=RK/0qy18MlBSVnWgjwz6lZEWjP/lF5HF9bvEF8FabDg=',
  'accept-ranges': 'bytes',
}

defineErrorCode('ACME_QUOTA_EXCEEDED', {
  status: 402,
  title: 'Quota Exceeded',
  description: 'The monthly image quota is used up.',
  retryable: false,
  hint: 'Upgrade the plan.',
})

const TEN_KB = 'x'.repeat(10 * 1024)
const NASTY = `line one\r\nSet-Cookie: stolen=1\r\n\r\nünïcødé ✓ 日本 \u0000\u007f ${TEN_KB}`

const fail = (path: string, make: () => unknown): RouteSpec => ({
  path,
  handle: () => {
    throw make()
  },
})

const routes: RouteSpec[] = [
  { path: '/ok', handle: () => ({ body: 'fine', headers: { 'content-type': 'text/plain' } }) },
  fail('/validation', () =>
    icError('IS_VALIDATION_ERROR', {
      validation: [
        { message: '"width" must be a number', path: ['width'], type: 'number.base' },
        { message: '"chs" is required', path: ['chs'], type: 'any.required' },
      ],
    }),
  ),
  fail('/host', () => icError('IC_HOST_NOT_ALLOWED', { message: 'Host evil.net is not allowed' })),
  fail('/rate', () => icError('IC_RATE_LIMITED')),
  fail('/overloaded', () =>
    icError('IC_OVERLOADED', { retryAfterSeconds: 7, details: { reason: 'eventLoopDelay' } }),
  ),
  fail('/timeout', () => icError('IC_BACKEND_TIMEOUT')),
  fail('/backend-missing', () => icError('IC_IMAGE_NOT_FOUND')),
  fail('/http-404', () => createHttpError(404)),
  fail('/http-413-foreign-code', () => createHttpError(413, 'too big', { code: 'ECONNRESET' })),
  fail('/http-400-with-our-code', () =>
    createHttpError(400, 'bad', { code: 'IS_VALIDATION_ERROR', validation: [{ message: 'from elsewhere' }] }),
  ),
  fail('/plain-error', () => new Error('secret database password in the message')),
  fail('/string', () => 'a thrown string'),
  fail('/null', () => null),
  fail('/undefined', () => undefined),
  fail('/status-302', () => Object.assign(new Error('redirect?'), { status: 302 })),
  fail('/status-700', () => Object.assign(new Error('nonsense'), { status: 700 })),
  fail('/status-code-418', () => Object.assign(new Error('short and stout'), { statusCode: 418 })),
  fail('/exposed-503', () => createHttpError(503, 'Maintenance until 17:00', { expose: true })),
  fail('/hidden-502', () => createHttpError(502, 'upstream 10.0.0.7 refused')),
  fail('/foreign-504', () => createHttpError(504, 'the upstream gateway timed out')),
  fail('/foreign-headers', () =>
    createHttpError(400, 'bad', {
      headers: { 'x-ok': 'yes', 'x-bad': 'a\r\nb', 'content-length': '1', 'x-ic-error-code': 'FORGED' },
    }),
  ),
  fail('/nasty-validation', () =>
    icError('IS_VALIDATION_ERROR', {
      validation: [
        { message: NASTY },
        { message: 'ünïcødé ✓ 日本' },
        ...Array.from({ length: 200 }, (_, i) => ({ message: `item ${i} ${'y'.repeat(50)}` })),
      ],
    }),
  ),
  fail('/nasty-message', () => icError('IC_HOST_NOT_ALLOWED', { message: NASTY })),
  fail('/custom-code', () => icError('ACME_QUOTA_EXCEEDED')),
  {
    path: '/half-built',
    handle: ({ res }) => {
      res.setHeader('content-type', 'image/png')
      res.setHeader('etag', '"abc"')
      res.setHeader('x-kept', 'kept')
      throw icError('IC_IMAGE_MALFORMED')
    },
  },
  {
    path: '/cached-image',
    handle: ({ res }) => {
      // Set up-front for an image meant to be cached a year by the CDN; the image is not there yet.
      for (const [name, value] of Object.entries(CDN_CACHE_HEADERS)) res.setHeader(name, value)
      res.setHeader('vary', 'accept')
      throw icError('IC_IMAGE_NOT_FOUND')
    },
  },
  {
    path: '/cors',
    handle: ({ res }) => {
      res.setHeader('access-control-allow-origin', '*')
      res.setHeader('access-control-expose-headers', 'x-custom')
      throw icError('IS_VALIDATION_ERROR', { validation: [{ message: 'nope' }] })
    },
  },
  {
    // What cors({ origin: true, credentials: true, exposedHeaders: '*' }) sets.
    path: '/cors-credentials',
    handle: ({ res }) => {
      res.setHeader('access-control-allow-origin', 'https://app.example')
      res.setHeader('access-control-allow-credentials', 'true')
      res.setHeader('access-control-expose-headers', '*')
      throw icError('IC_RATE_LIMITED', { retryAfterSeconds: 7 })
    },
  },
  {
    path: '/cors-wildcard',
    handle: ({ res }) => {
      res.setHeader('access-control-allow-origin', '*')
      res.setHeader('access-control-expose-headers', '*')
      throw icError('IC_RATE_LIMITED', { retryAfterSeconds: 7 })
    },
  },
  {
    path: '/async',
    handle: async () => {
      await new Promise((resolve) => setImmediate(resolve))
      throw icError('IC_BUCKET_NOT_ALLOWED')
    },
  },
]

interface Scenario {
  readonly name: string
  readonly method?: 'GET' | 'HEAD'
  readonly path: string
  readonly headers?: Record<string, string>
  readonly status: number
  readonly code?: string
  readonly type?: 'problem' | 'text' | 'none'
  readonly check?: (res: request.Response) => void
}

const JSON_ACCEPT = { accept: 'application/json' }

const scenarios: Scenario[] = [
  {
    name: 'a good request is untouched',
    path: '/ok',
    status: 200,
    check: (r) => assert.equal(r.text, 'fine'),
  },
  {
    name: 'validation failure: 400, every item in x-ic-error-validation, problem+json for JSON clients',
    path: '/validation',
    headers: JSON_ACCEPT,
    status: 400,
    code: 'IS_VALIDATION_ERROR',
    type: 'problem',
    check: (r) => {
      const items = JSON.parse(r.headers['x-ic-error-validation'] as string)
      assert.deepEqual(
        items.map((i: { message: string }) => i.message),
        ['"width" must be a number', '"chs" is required'],
      )
      assert.equal(r.body.status, 400)
      assert.equal(r.body.code, 'IS_VALIDATION_ERROR')
      assert.equal(r.body.title, 'Invalid Parameters')
      assert.equal(r.body.validation.length, 2)
      assert.equal(r.body.instance, r.headers['x-request-id'])
      assert.equal(r.body.retryable, false)
      assert.match(r.body.type, /IS_VALIDATION_ERROR$/)
    },
  },
  {
    name: 'validation failure for a client without Accept: text/plain with every message',
    path: '/validation',
    status: 400,
    code: 'IS_VALIDATION_ERROR',
    type: 'text',
    check: (r) => {
      assert.match(r.text, /^Invalid Parameters \(IS_VALIDATION_ERROR\)/)
      assert.match(r.text, /- "chs" is required/)
    },
  },
  {
    name: 'an <img> client (Accept: image/webp) gets text/plain, never 406',
    path: '/validation',
    headers: { accept: 'image/webp,image/*;q=0.8' },
    status: 400,
    code: 'IS_VALIDATION_ERROR',
    type: 'text',
  },
  {
    name: 'JSON preferred only when asked for at least as much as text',
    path: '/host',
    headers: { accept: 'text/plain, application/json;q=0.5' },
    status: 401,
    code: 'IC_HOST_NOT_ALLOWED',
    type: 'text',
  },
  {
    name: 'policy rejection: 401 with its message shown (4xx are exposed)',
    path: '/host',
    headers: JSON_ACCEPT,
    status: 401,
    code: 'IC_HOST_NOT_ALLOWED',
    type: 'problem',
    check: (r) => assert.equal(r.body.detail, 'Host evil.net is not allowed'),
  },
  {
    name: 'HEAD: status and headers, no body',
    method: 'HEAD',
    path: '/validation',
    status: 400,
    code: 'IS_VALIDATION_ERROR',
    type: 'none',
    check: (r) => assert.ok(r.headers['x-ic-error-validation']),
  },
  {
    name: 'rate limited: 429 with Retry-After from the catalogue',
    path: '/rate',
    status: 429,
    code: 'IC_RATE_LIMITED',
    type: 'text',
    check: (r) => assert.equal(r.headers['retry-after'], '60'),
  },
  {
    name: 'overloaded: 503 with the error’s own Retry-After',
    path: '/overloaded',
    headers: JSON_ACCEPT,
    status: 503,
    code: 'IC_OVERLOADED',
    type: 'problem',
    check: (r) => {
      assert.equal(r.headers['retry-after'], '7')
      assert.equal(r.body.retryable, true)
      assert.equal(r.body.details, undefined, '5xx details stay private')
    },
  },
  {
    name: 'deadline: 504 without Retry-After',
    path: '/timeout',
    status: 504,
    code: 'IC_BACKEND_TIMEOUT',
    check: (r) => assert.equal(r.headers['retry-after'], undefined),
  },
  { name: 'backend 404 passed through', path: '/backend-missing', status: 404, code: 'IC_IMAGE_NOT_FOUND' },
  { name: 'an http-errors 404 gets the default code', path: '/http-404', status: 404, code: 'IC_NOT_FOUND' },
  {
    name: 'a foreign code (ECONNRESET) never reaches x-ic-error-code',
    path: '/http-413-foreign-code',
    status: 413,
    code: 'IC_PAYLOAD_TOO_LARGE',
  },
  {
    name: 'a foreign error carrying one of our codes and validation keeps both',
    path: '/http-400-with-our-code',
    status: 400,
    code: 'IS_VALIDATION_ERROR',
    check: (r) =>
      assert.deepEqual(JSON.parse(r.headers['x-ic-error-validation'] as string), [
        { message: 'from elsewhere' },
      ]),
  },
  {
    name: 'a plain Error: 500, message hidden',
    path: '/plain-error',
    headers: JSON_ACCEPT,
    status: 500,
    code: 'IC_INTERNAL_ERROR',
    type: 'problem',
    check: (r) => {
      assert.doesNotMatch(r.text, /secret/)
      assert.equal(r.body.status, 500)
    },
  },
  { name: 'a thrown string: 500', path: '/string', status: 500, code: 'IC_INTERNAL_ERROR', type: 'text' },
  { name: 'a thrown null: 500', path: '/null', status: 500, code: 'IC_INTERNAL_ERROR', type: 'text' },
  { name: 'a thrown undefined: 500', path: '/undefined', status: 500, code: 'IC_INTERNAL_ERROR' },
  {
    name: 'status 302 on an error is not honoured',
    path: '/status-302',
    status: 500,
    code: 'IC_INTERNAL_ERROR',
  },
  {
    name: 'status 700 on an error is not honoured',
    path: '/status-700',
    status: 500,
    code: 'IC_INTERNAL_ERROR',
  },
  {
    name: 'statusCode 418 is honoured, with the class default code',
    path: '/status-code-418',
    status: 418,
    code: 'IC_CLIENT_ERROR',
    check: (r) => assert.match(r.text, /short and stout/),
  },
  {
    name: 'an exposed 5xx shows its message and gets the 503 Retry-After',
    path: '/exposed-503',
    status: 503,
    code: 'IC_SERVICE_UNAVAILABLE',
    check: (r) => {
      assert.match(r.text, /Maintenance until 17:00/)
      assert.equal(r.headers['retry-after'], '5')
    },
  },
  {
    name: 'a hidden 5xx never shows its message',
    path: '/hidden-502',
    status: 502,
    code: 'IC_BAD_GATEWAY',
    check: (r) => assert.doesNotMatch(r.text, /10\.0\.0\.7/),
  },
  {
    name: "a 504 raised without a code is an upstream's timeout, not this package's deadline",
    path: '/foreign-504',
    status: 504,
    code: 'IC_GATEWAY_TIMEOUT',
    check: (r) => assert.match(r.text, /An upstream service did not answer in time/),
  },
  {
    name: 'foreign error headers: valid ones kept, unsafe or reserved ones dropped, our code not forged',
    path: '/foreign-headers',
    status: 400,
    code: 'IC_BAD_REQUEST',
    check: (r) => {
      assert.equal(r.headers['x-ok'], 'yes')
      assert.equal(r.headers['x-bad'], undefined)
      assert.notEqual(r.headers['content-length'], '1')
    },
  },
  {
    name: 'CR/LF, non-ASCII and 10 KB in validation messages: one valid, capped, ASCII-only header',
    path: '/nasty-validation',
    status: 400,
    code: 'IS_VALIDATION_ERROR',
    check: (r) => {
      const raw = r.headers['x-ic-error-validation'] as string
      assert.ok(raw.length <= 4096, `header is ${raw.length} bytes`)
      assert.match(raw, /^[\x20-\x7e]+$/)
      const items = JSON.parse(raw) as { message: string }[]
      assert.ok(items[0]?.message.startsWith('line one\r\nSet-Cookie: stolen=1'))
      assert.ok(items[0]?.message.endsWith('…'))
      assert.equal(items[1]?.message, 'ünïcødé ✓ 日本')
      assert.match(items.at(-1)?.message ?? '', /more validation errors left out$/)
      assert.equal(r.headers['set-cookie'], undefined)
    },
  },
  {
    name: 'CR/LF, non-ASCII and 10 KB in an error message: only in the body, escaped as JSON',
    path: '/nasty-message',
    headers: JSON_ACCEPT,
    status: 401,
    code: 'IC_HOST_NOT_ALLOWED',
    type: 'problem',
    check: (r) => {
      assert.equal(r.body.detail, NASTY)
      assert.equal(r.headers['set-cookie'], undefined)
    },
  },
  {
    name: 'a user-defined code carries its own status',
    path: '/custom-code',
    status: 402,
    code: 'ACME_QUOTA_EXCEEDED',
  },
  {
    name: 'headers of a half-built success response are dropped, others kept',
    path: '/half-built',
    status: 400,
    code: 'IC_IMAGE_MALFORMED',
    type: 'text',
    check: (r) => {
      assert.equal(r.headers.etag, undefined)
      assert.equal(r.headers['x-kept'], 'kept')
    },
  },
  {
    name: "caching headers of the success response, a CDN's included, are dropped: a transient 404 is not kept",
    path: '/cached-image',
    status: 404,
    code: 'IC_IMAGE_NOT_FOUND',
    type: 'text',
    check: (r) => {
      for (const name of Object.keys(CDN_CACHE_HEADERS)) {
        if (name !== 'cache-control') assert.equal(r.headers[name], undefined, name)
      }
      assert.equal(r.headers.vary, 'accept')
    },
  },
  {
    name: 'CORS responses expose our headers to page scripts',
    path: '/cors',
    status: 400,
    code: 'IS_VALIDATION_ERROR',
    check: (r) => {
      assert.equal(r.headers['access-control-allow-origin'], '*')
      const exposed = (r.headers['access-control-expose-headers'] as string).split(', ')
      for (const name of ['x-custom', 'x-ic-error-code', 'x-ic-error-validation', 'x-request-id']) {
        assert.ok(exposed.includes(name), `${name} exposed`)
      }
    },
  },
  {
    name: 'credentialed CORS with Expose-Headers *: our headers are named after the *, which a credentialed request takes literally',
    path: '/cors-credentials',
    status: 429,
    code: 'IC_RATE_LIMITED',
    check: (r) => {
      assert.equal(r.headers['access-control-allow-origin'], 'https://app.example')
      assert.equal(
        r.headers['access-control-expose-headers'],
        '*, x-ic-error-code, retry-after, x-request-id',
      )
    },
  },
  {
    name: 'Expose-Headers * with Allow-Origin *: no credentials possible, the wildcard exposes everything, left alone',
    path: '/cors-wildcard',
    status: 429,
    code: 'IC_RATE_LIMITED',
    check: (r) => assert.equal(r.headers['access-control-expose-headers'], '*'),
  },
  { name: 'async rejections are caught', path: '/async', status: 401, code: 'IC_BUCKET_NOT_ALLOWED' },
  {
    name: 'unknown routes: 404 IC_NOT_FOUND',
    path: '/nowhere',
    status: 404,
    code: 'IC_NOT_FOUND',
    type: 'text',
  },
  {
    name: 'a well-formed incoming x-request-id is reused',
    path: '/host',
    headers: { 'x-request-id': 'req-42_a.b~c' },
    status: 401,
    code: 'IC_HOST_NOT_ALLOWED',
    check: (r) => assert.equal(r.headers['x-request-id'], 'req-42_a.b~c'),
  },
  {
    name: 'a malformed incoming x-request-id is replaced',
    path: '/host',
    headers: { 'x-request-id': 'has spaces and "quotes"' },
    status: 401,
    code: 'IC_HOST_NOT_ALLOWED',
    check: (r) => assert.match(r.headers['x-request-id'] as string, /^[0-9a-f-]{36}$/),
  },
]

const spec: AppSpec = { routes }

/** A route that ends its response with `body`, then fails: an audit log failing after the image went out. */
function endedThenFailing(type: string, body: Buffer | string): RouteSpec {
  return {
    path: '/ended',
    handle: ({ res }) => {
      res.statusCode = 200
      res.setHeader('content-type', type)
      res.end(body)
      throw new Error('late audit-log failure')
    },
  }
}

function assertReportedOnceAsEnded(reports: readonly ErrorReport[]): void {
  assert.equal(reports.length, 1)
  const [report] = reports
  assert.deepEqual(
    [report?.status, report?.code, report?.outcome, (report?.error as Error | undefined)?.message],
    [200, 'IC_INTERNAL_ERROR', 'ended', 'late audit-log failure'],
  )
}
for (const framework of frameworks) {
  describe(`errorHandler() on ${framework}`, () => {
    let app: RunningApp
    before(async () => {
      app = await startApp(framework, spec)
    })
    after(() => app.close())

    for (const s of scenarios) {
      it(s.name, async () => {
        const before = app.reports.length
        const agent = request(app.url)
        let req = s.method === 'HEAD' ? agent.head(s.path) : agent.get(s.path)
        for (const [k, v] of Object.entries(s.headers ?? {})) req = req.set(k, v)
        const r = await req
        assert.equal(r.status, s.status)
        if (s.code === undefined) {
          assert.equal(r.headers['x-ic-error-code'], undefined)
          assert.equal(app.reports.length, before)
          return
        }
        assert.equal(r.headers['x-ic-error-code'], s.code)
        assert.match(r.headers['x-request-id'] as string, /^[\w.~-]{1,128}$/)
        assert.equal(r.headers['cache-control'], 'no-store')
        assert.equal(r.headers['x-content-type-options'], 'nosniff')
        const vary = String(r.headers.vary).split(/,\s*/)
        assert.equal(vary.filter((name) => name.toLowerCase() === 'accept').length, 1, `Vary: ${vary}`)
        const type = r.headers['content-type'] as string
        if (s.type === 'problem') assert.match(type, /^application\/problem\+json; charset=utf-8$/)
        if (s.type === 'text') assert.match(type, /^text\/plain; charset=utf-8$/)
        if (s.type === 'none') assert.equal(r.text ?? '', '')
        s.check?.(r)
        assert.equal(app.reports.length, before + 1, 'onError called exactly once')
        const report = app.reports.at(-1)
        assert.equal(report?.status, s.status)
        assert.equal(report?.code, s.code)
        assert.equal(report?.requestId, r.headers['x-request-id'])
        assert.equal(report?.outcome, 'sent')
      })
    }

    it('keeps the connection usable after an error (keep-alive)', async () => {
      const socket = connect(Number(new URL(app.url).port), '127.0.0.1')
      await once(socket, 'connect')
      socket.write('GET /host HTTP/1.1\r\nHost: x\r\n\r\nGET /ok HTTP/1.1\r\nHost: x\r\n\r\n')
      let text = ''
      socket.setEncoding('utf8')
      for await (const chunk of socket) {
        text += chunk
        if (text.includes('fine')) break
      }
      socket.destroy()
      assert.match(text, /^HTTP\/1\.1 401 Unauthorized\r\n/)
      assert.match(text, /HTTP\/1\.1 200 OK\r\n[\s\S]*fine$/)
    })
  })
}

describe('an error response with a Cache-Control of its own varies on Accept', () => {
  const cached = { 'cache-control': 'public, max-age=60' }
  const vary = (path: string, app: string | undefined, own?: string): RouteSpec => ({
    path,
    handle: ({ res }) => {
      if (app !== undefined) res.setHeader('vary', app)
      throw icError('IC_IMAGE_NOT_FOUND', { headers: own === undefined ? cached : { ...cached, vary: own } })
    },
  })
  const routes = [
    vary('/plain', undefined),
    // What cors() sets for a specific origin.
    vary('/origin', 'Origin'),
    vary('/both', 'origin, ACCEPT', 'Accept-Language, accept, Origin'),
    vary('/star', '*'),
  ]
  for (const framework of frameworks) {
    it(`${framework}: Vary: Accept, merged with the app's and the error's own, once; Vary: * left alone`, async () => {
      const app = await startApp(framework, { routes })
      try {
        const seen: string[] = []
        for (const [path, accept] of [
          ['/plain', 'application/json'],
          ['/plain', 'image/webp,*/*'],
          ['/origin', 'application/json'],
          ['/both', 'text/plain'],
          ['/star', 'application/json'],
        ] as const) {
          const r = await request(app.url).get(path).set('accept', accept)
          assert.deepEqual([r.status, r.headers['cache-control']], [404, 'public, max-age=60'])
          seen.push(`${path} ${String(r.headers['content-type']).split(';')[0]} Vary: ${r.headers.vary}`)
        }
        assert.deepEqual(seen, [
          '/plain application/problem+json Vary: Accept',
          '/plain text/plain Vary: Accept',
          '/origin application/problem+json Vary: Origin, Accept',
          '/both text/plain Vary: origin, ACCEPT, Accept-Language',
          '/star application/problem+json Vary: *',
        ])
      } finally {
        await app.close()
      }
    })
  }
})

describe('errorHandler() lifecycle on real sockets', () => {
  for (const framework of frameworks) {
    it(`${framework}: an error after the body started streaming closes the connection, no second response`, async () => {
      const app = await startApp(framework, {
        routes: [
          {
            path: '/stream',
            handle: () => {
              let sent = false
              const body = new Readable({
                read() {
                  if (!sent) {
                    sent = true
                    this.push('partial-')
                    setTimeout(() => this.destroy(new Error('disk gone')), 20)
                  }
                },
              })
              return { headers: { 'content-type': 'text/plain' }, body }
            },
          },
        ],
      })
      try {
        const outcome = await new Promise<{ status: number; data: string; aborted: boolean }>((resolve) => {
          const req = httpRequest(`${app.url}/stream`, (res) => {
            let data = ''
            res.setEncoding('utf8')
            res.on('data', (c) => {
              data += c
            })
            res.on('error', () => resolve({ status: res.statusCode ?? 0, data, aborted: true }))
            res.on('end', () => resolve({ status: res.statusCode ?? 0, data, aborted: false }))
          })
          req.on('error', () => resolve({ status: 0, data: '', aborted: true }))
          req.end()
        })
        assert.equal(outcome.status, 200)
        assert.equal(outcome.data, 'partial-')
        assert.equal(outcome.aborted, true, 'the truncated body is not presented as complete')
        await waitFor(() => app.reports.length === 1)
        assert.equal(app.reports[0]?.outcome, 'headers-sent')
        assert.equal(app.reports[0]?.status, 500)
      } finally {
        await app.close()
      }
    })

    it(`${framework}: an error after the handler ended the response leaves it whole, reported once as ended`, async () => {
      const image = Buffer.alloc(8 * 1024 * 1024, 7)
      const app = await startApp(framework, {
        routes: [endedThenFailing('image/png', image)],
      })
      try {
        const got = await slowDownload(`${app.url}/ended`, () => waitFor(() => app.reports.length === 1))
        assert.deepEqual([got.status, got.ended, got.bytes], [200, 'complete', image.length])
        assertReportedOnceAsEnded(app.reports)
      } finally {
        await app.close()
      }
    })

    if (framework === 'express4' || framework === 'express5')
      it(`${framework}: an error after a compressible response was ended under compression() leaves it whole`, async () => {
        // compression() defers the real end until gzip flushed; clientClosed() after it sees the handler's call.
        const text = randomBytes(6 * 1024 * 1024).toString('base64')
        const app = await startApp(framework, {
          use: (a) => [compression(), a.clientClosed()],
          routes: [endedThenFailing('text/plain', text)],
        })
        try {
          const got = await slowDownload(`${app.url}/ended`, () => waitFor(() => app.reports.length === 1), {
            'accept-encoding': 'gzip',
          })
          assert.deepEqual(
            [got.status, got.ended, got.headers['content-encoding']],
            [200, 'complete', 'gzip'],
          )
          assert.ok(gunzipSync(got.body).equals(Buffer.from(text)), 'the whole body')
          assertReportedOnceAsEnded(app.reports)
        } finally {
          await app.close()
        }
      })

    it(`${framework}: a client that disconnects before the handler fails is reported as 499, nothing written`, async () => {
      let failLater: (() => void) | undefined
      const app = await startApp(framework, {
        routes: [
          {
            path: '/slow',
            handle: () =>
              new Promise((_, reject) => {
                failLater = () => reject(icError('IC_BACKEND_TIMEOUT'))
              }),
          },
        ],
      })
      try {
        const socket = connect(Number(new URL(app.url).port), '127.0.0.1')
        await once(socket, 'connect')
        socket.write('GET /slow HTTP/1.1\r\nHost: x\r\n\r\n')
        let received = ''
        socket.on('data', (c) => {
          received += c
        })
        await waitFor(() => failLater !== undefined)
        socket.destroy()
        await once(socket, 'close')
        await new Promise((resolve) => setTimeout(resolve, 20))
        failLater?.()
        await waitFor(() => app.reports.length === 1)
        assert.equal(app.reports[0]?.status, 499)
        assert.equal(app.reports[0]?.code, 'IC_CLIENT_CLOSED_REQUEST')
        assert.equal(app.reports[0]?.outcome, 'client-gone')
        assert.equal(app.reports[0]?.response.statusCode, 499)
        assert.equal(received, '')
      } finally {
        await app.close()
      }
    })
  }
})

describe('without errorHandler(), the errors still carry their code', () => {
  for (const framework of frameworks) {
    it(`${framework}: the default handler sends the status, x-ic-error-code and Retry-After from err.headers`, async () => {
      const app = await startApp(framework, { routes, errorHandler: false })
      try {
        const r = await request(app.url).get('/rate')
        assert.equal(r.status, 429)
        assert.equal(r.headers['x-ic-error-code'], 'IC_RATE_LIMITED')
        assert.equal(r.headers['retry-after'], '60')
        const v = await request(app.url).get('/validation')
        assert.equal(v.status, 400)
        assert.equal(JSON.parse(v.headers['x-ic-error-validation'] as string).length, 2)
      } finally {
        await app.close()
      }
    })
  }
})

async function waitFor(condition: () => boolean, timeoutMs = 2000): Promise<void> {
  const start = Date.now()
  while (!condition()) {
    if (Date.now() - start > timeoutMs) throw new Error('condition not met in time')
    await new Promise((resolve) => setTimeout(resolve, 5))
  }
}

describe('factories without options', () => {
  it('notFound() and clientClosed() refuse options on both adapters rather than ignore them', async () => {
    for (const adapter of [await import('../src/express.ts'), await import('../src/koa.ts')]) {
      for (const [factory, name] of [
        [adapter.notFound, 'notFound'],
        [adapter.clientClosed, 'clientClosed'],
      ] as const) {
        assert.throws(() => (factory as (o: unknown) => unknown)({ status: 410 }), {
          name: 'TypeError',
          message: `${name}() takes no options, got {"status":410}`,
        })
        assert.equal(typeof factory(), 'function')
        assert.equal(typeof (factory as (o: unknown) => unknown)(undefined), 'function')
      }
    }
  })
})
