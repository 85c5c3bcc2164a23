import assert from 'node:assert/strict'
import { once } from 'node:events'
import { createServer, type RequestListener } from 'node:http'
import type { AddressInfo } from 'node:net'
import { test } from 'node:test'
import * as customErrors from '../examples/custom-errors.ts'
import { startDemo } from '../examples/demo/server.ts'
import * as perRoute from '../examples/express-per-route.ts'
import * as express4 from '../examples/express4.ts'
import * as koa from '../examples/koa.ts'
import { getImage } from '../examples/retrying-client.ts'
import { createLoadSampler } from '../src/index.ts'

interface Expectation {
  readonly path: string
  readonly headers?: Record<string, string>
  readonly status: number
  readonly code?: string
  readonly validation?: string
  readonly retryAfter?: string
  readonly bodyHas?: string
  readonly bodyLacks?: string
}

async function check(createApp: () => RequestListener, expectations: readonly Expectation[]): Promise<void> {
  const server = createServer(createApp())
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  try {
    for (const e of expectations) {
      const res = await fetch(base + e.path, { headers: e.headers ?? {} })
      const body = await res.text()
      assert.equal(res.status, e.status, `${e.path}: ${body}`)
      assert.equal(res.headers.get('x-ic-error-code'), e.code ?? null, e.path)
      if (e.validation !== undefined) {
        const items = JSON.parse(res.headers.get('x-ic-error-validation') ?? '[]') as { message: string }[]
        assert.ok(
          items.some((i) => i.message === e.validation),
          `${e.path}: ${JSON.stringify(items)}`,
        )
      }
      if (e.retryAfter !== undefined) assert.equal(res.headers.get('retry-after'), e.retryAfter)
      if (e.bodyHas !== undefined) assert.ok(body.includes(e.bodyHas), `${e.path}: ${body}`)
      if (e.bodyLacks !== undefined) assert.ok(!body.includes(e.bodyLacks), `${e.path}: ${body}`)
    }
  } finally {
    server.closeAllConnections()
    server.close()
    await once(server, 'close')
  }
}

test('examples/express-per-route.ts: checks only where mounted', () =>
  check(perRoute.createApp, [
    { path: '/health?size=9000', status: 200, bodyHas: '"ok":true' },
    { path: '/avatar/42?size=128', status: 200, bodyHas: '"size":128' },
    {
      path: '/avatar/42?size=9000',
      status: 400,
      code: 'IS_VALIDATION_ERROR',
      validation: '"size" must be one of [32, 64, 128, 256]',
    },
    { path: '/thumb/42', status: 401, code: 'IC_UNAUTHORIZED' },
    { path: '/thumb/42?size=32', headers: { 'x-user': 'ann' }, status: 200, bodyHas: '"user":"ann"' },
    { path: '/nowhere', status: 404, code: 'IC_NOT_FOUND' },
  ]))

test('examples/express4.ts: rejections reach the error handler on Express 4', () =>
  check(express4.createApp, [
    { path: '/image/logo.png', status: 200 },
    { path: '/image/missing.jpg', status: 404, code: 'IC_IMAGE_NOT_FOUND', bodyHas: 'No image missing.jpg' },
  ]))

test('examples/koa.ts: thrown errors become responses on Koa', () =>
  check(koa.createApp, [
    { path: '/image/logo.png?width=300', status: 200, bodyHas: '"width":300' },
    {
      path: '/image/logo.png?width=abc',
      status: 400,
      code: 'IS_VALIDATION_ERROR',
      validation: '"width" must be an integer from 1 to 2048',
    },
    { path: '/image/other.png', status: 404, code: 'IC_IMAGE_NOT_FOUND' },
    { path: '/nowhere', status: 404, code: 'IC_NOT_FOUND' },
  ]))

test('examples/custom-errors.ts: your own code, catalogue codes, a hidden 500', () =>
  check(customErrors.createApp, [
    { path: '/quota', status: 402, code: 'ACME_QUOTA_EXCEEDED' },
    { path: '/busy', status: 503, code: 'IC_OVERLOADED', retryAfter: '3' },
    {
      path: '/image?width=big&height=-1',
      status: 400,
      code: 'IS_VALIDATION_ERROR',
      validation: '"height" must be a positive integer',
    },
    { path: '/image', status: 404, code: 'IC_IMAGE_NOT_FOUND' },
    { path: '/bug', status: 500, code: 'IC_INTERNAL_ERROR', bodyLacks: 'hunter2' },
  ]))

test('examples/retrying-client.ts: 502 is retried with backoff, 4xx are final', async () => {
  // A calm sampler: on a loaded machine the real one may shed with a 503, which this client retries.
  const sampler = createLoadSampler({
    source: () => ({ eventLoopDelayMs: 0, eventLoopUtilization: 0, heapUsedBytes: 0, rssBytes: 0 }),
    maxEventLoopDelayMs: 250,
  })
  const demo = await startDemo({ port: 0, sampler })
  try {
    const ok = await getImage(`${demo.url}/image/sample.jpg?width=32`, { maxDelayMs: 1000 })
    assert.equal(ok.status, 200)
    assert.equal(ok.retries.length, 0)
    assert.ok(ok.bytes > 0)
    const failing = await getImage(`${demo.url}/image/status/500?width=32`, { maxDelayMs: 1000 })
    assert.equal(failing.status, 502)
    assert.equal(failing.code, 'IC_BACKEND_ERROR')
    assert.deepEqual(
      failing.retries.map((e) => e.status),
      [502, 502],
    )
    for (const e of failing.retries) assert.equal(e.delayMs, 1000, 'the 1 s floor, with maxDelayMs')
    const invalid = await getImage(`${demo.url}/chart?cht=p&chd=t:1,2,3`, { maxDelayMs: 1000 })
    assert.equal(invalid.status, 400)
    assert.deepEqual(invalid.messages, ['"chs" is required'])
    assert.equal(invalid.retries.length, 0)
  } finally {
    await demo.close()
    sampler.close()
  }
})
