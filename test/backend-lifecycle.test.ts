import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { once } from 'node:events'
import { createReadStream } from 'node:fs'
import {
  Agent,
  createServer,
  request as httpRequest,
  type IncomingMessage,
  type OutgoingHttpHeaders,
  type ServerResponse,
} from 'node:http'
import { type AddressInfo, connect, type Socket } from 'node:net'
import { PassThrough, Readable } from 'node:stream'
import { after, before, describe, test } from 'node:test'
import { fileURLToPath } from 'node:url'
import { gunzipSync } from 'node:zlib'
import compression from 'compression'
import express5 from 'express'
import express4 from 'express4'
import Koa3 from 'koa'
import Koa2 from 'koa2'
import morgan from 'morgan'
import * as ex from '../src/express.ts'
import { createBackendFetch, isIcError, requestSignal } from '../src/index.ts'
import * as kx from '../src/koa.ts'
import { type Backend, PNG, startBackend } from './support/backends.ts'
import {
  type AppSpec,
  type Framework,
  frameworks,
  type RunningApp,
  settled,
  startApp,
} from './support/harness.ts'
import { slowDownload } from './support/slow-download.ts'

interface Answer {
  readonly status: number
  readonly headers: IncomingMessage['headers']
  readonly body: string
  readonly socket: Socket
}

/** One GET through `agent` (keep-alive when given), with the socket it used; a gzip body is decoded. */
async function get(url: string, agent?: Agent, headers: OutgoingHttpHeaders = {}): Promise<Answer> {
  const req = httpRequest(url, agent === undefined ? { headers } : { agent, headers })
  req.end()
  const [res] = (await once(req, 'response')) as [IncomingMessage]
  const chunks: Buffer[] = []
  for await (const chunk of res) chunks.push(chunk)
  const bytes = Buffer.concat(chunks)
  const body = (res.headers['content-encoding'] === 'gzip' ? gunzipSync(bytes) : bytes).toString()
  return { status: res.statusCode ?? 0, headers: res.headers, body, socket: req.socket as Socket }
}

/** A promise, and the function a handler calls to settle it when it got there. */
function reached(): { readonly promise: Promise<void>; readonly resolve: () => void } {
  let resolve: () => void = () => {}
  const promise = new Promise<void>((settle) => {
    resolve = settle
  })
  return { promise, resolve }
}

/** Collects what goes to console.error (Express's final handler logs there) until restored. */
function captureConsoleError(): { readonly logged: unknown[]; restore(): void } {
  const logged: unknown[] = []
  const consoleError = console.error
  console.error = (...args: unknown[]) => logged.push(args)
  return { logged, restore: () => (console.error = consoleError) }
}

/** Opens a raw client socket to the app. */
async function rawSocket(appUrl: string): Promise<Socket> {
  const { port } = new URL(appUrl)
  const socket = connect(Number(port), '127.0.0.1')
  await once(socket, 'connect')
  return socket
}

/** A raw connection to the app carrying `count` pipelined GETs of `path`. */
async function pipelinedGets(appUrl: string, path: string, count: number): Promise<Socket> {
  const client = await rawSocket(appUrl)
  client.on('error', () => {})
  client.write(`GET ${path} HTTP/1.1\r\nHost: x\r\n\r\n`.repeat(count))
  return client
}

/**
 * An app whose `/image` route fetches from `backend` with the request's signal, behind the
 * middlewares of `use`; `onFetch` sees the handler's response and signal first.
 */
function fetchingApp(
  framework: Framework,
  backend: Backend,
  use: NonNullable<AppSpec['use']>,
  onFetch?: (res: ServerResponse, signal: AbortSignal) => void,
): Promise<RunningApp> {
  return startApp(framework, {
    use,
    routes: [
      {
        path: '/image',
        handle: async ({ res, locals }) => {
          const signal = locals.signal as AbortSignal
          onFetch?.(res, signal)
          const { body } = await fetchImage(`${backend.url}/a.png`, { signal })
          return { body }
        },
      },
    ],
  })
}

/** A raw connection to the app carrying `GET /image`, once `backend` has received the fetch. */
async function requestFetching(app: RunningApp, backend: Backend): Promise<Socket> {
  const client = await rawSocket(app.url)
  client.on('error', () => {})
  const backendGotIt = backend.nextRequest()
  client.write('GET /image HTTP/1.1\r\nHost: x\r\n\r\n')
  await backendGotIt
  return client
}

/**
 * A middleware still busy when the client leaves (a session store, a token check): it calls
 * the next one only once the connection has closed.
 */
function waitForClientToLeave(framework: Framework): unknown {
  return framework.startsWith('express')
    ? (req: IncomingMessage, _res: ServerResponse, next: () => void) => {
        if (req.socket.destroyed) next()
        else req.socket.once('close', () => next())
      }
    : async (ctx: { req: IncomingMessage }, next: () => Promise<void>) => {
        if (!ctx.req.socket.destroyed) await once(ctx.req.socket, 'close')
        await next()
      }
}

/** How many timers the process has pending: a deadline's timer is one. */
function activeTimers(): number {
  return process.getActiveResourcesInfo().filter((kind) => kind === 'Timeout').length
}

/** Resolves once `n` reports are in (the error hook runs after the response was handled). */
async function reportsOf(app: RunningApp, n: number): Promise<RunningApp['reports']> {
  while (app.reports.length < n) await new Promise((resolve) => setImmediate(resolve))
  return app.reports
}

/** Whether `promise` settles within `ms`: a wait that fails with a message rather than the test's timeout. */
async function within(promise: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined
  const late = new Promise<false>((resolve) => {
    timer = setTimeout(resolve, ms, false)
  })
  try {
    return await Promise.race([promise.then(() => true), late])
  } finally {
    clearTimeout(timer)
  }
}

const fetchImage = createBackendFetch({ allowedAddresses: ['127.0.0.1'] })

describe('backend lifecycle on every framework', () => {
  let silent: Backend // accepts the request, never answers
  let image: Backend // answers a PNG
  let statusBackend: Backend // answers /<status>
  before(async () => {
    silent = await startBackend(() => {})
    image = await startBackend((_req, res) => res.end(PNG))
    statusBackend = await startBackend((req, res) => {
      const status = Number(req.url?.slice(1))
      if (status === 503) res.setHeader('retry-after', '7')
      if (status === 200) res.setHeader('content-type', 'image/png')
      res.statusCode = status
      res.end(status === 200 ? '<!doctype html><p>not an image</p>' : `status ${status}`)
    })
  })
  after(async () => {
    await Promise.all([silent.close(), image.close(), statusBackend.close()])
  })

  for (const framework of frameworks) {
    describe(framework, { timeout: 20_000 }, () => {
      test('the deadline answers 504 before the response started, and aborts the backend fetch', async () => {
        const app = await startApp(framework, {
          routes: [
            {
              path: '/image',
              use: (a) => [a.deadline({ timeoutMs: 150 })],
              handle: async ({ req, locals }) => {
                assert.equal(locals.signal, requestSignal(req))
                const { body } = await fetchImage(`${silent.url}/slow.png`, { signal: requestSignal(req) })
                return { body }
              },
            },
          ],
        })
        try {
          const backendClosed = silent.nextSocketClose()
          const started = Date.now()
          const res = await get(`${app.url}/image`)
          assert.equal(res.status, 504)
          assert.equal(res.headers['x-ic-error-code'], 'IC_BACKEND_TIMEOUT')
          assert.ok(Date.now() - started >= 150)
          await backendClosed
          const [report] = await reportsOf(app, 1)
          assert.equal(report?.status, 504)
          assert.equal(report?.outcome, 'sent')
          assert.equal(app.reports.length, 1)
        } finally {
          await app.close()
        }
      })

      test('a handler that makes a dozen backend fetches at once on its request signal gets no listener warning', async () => {
        const warnings: string[] = []
        const onWarning = (warning: Error) => warnings.push(`${warning.name}: ${warning.message}`)
        process.on('warning', onWarning)
        const app = await startApp(framework, {
          use: (a) => [a.clientClosed(), a.deadline({ timeoutMs: '5s' })],
          routes: [
            {
              path: '/mosaic',
              handle: async ({ req }) => {
                const tiles = await Promise.all(
                  Array.from({ length: 12 }, (_, i) =>
                    fetchImage(`${image.url}/tile-${i}.png`, { signal: requestSignal(req) }),
                  ),
                )
                return { body: String(tiles.length) }
              },
            },
          ],
        })
        try {
          const res = await get(`${app.url}/mosaic`)
          assert.deepEqual([res.status, res.body], [200, '12'])
          await new Promise((resolve) => setImmediate(resolve))
          assert.deepEqual(warnings, [])
        } finally {
          process.off('warning', onWarning)
          await app.close()
        }
      })

      test('writes straight to the response after the deadline are dropped: no throw, no error event, a late pipe drains', async () => {
        const agent = new Agent({ keepAlive: true, maxSockets: 1 })
        const { promise: wroteLate, resolve: lateDone } = reached()
        let drained: Promise<unknown> = Promise.resolve()
        const app = await startApp(framework, {
          routes: [
            {
              path: '/late',
              use: (a) => [a.deadline({ timeoutMs: '100ms' })],
              // The writes run in a timer, outside any promise: before the fix, the first one
              // ended the process. The handler itself ends after them (Koa answers 404 otherwise).
              // Timed from the abort, not from the request: a loaded loop running both timers in
              // one turn let a handler due at 250 ms answer before the 504 due at 100 ms.
              handle: ({ req, res }) =>
                new Promise<undefined>((resolve) => {
                  const lateWrites = () => {
                    res.setHeader('x-late', 'yes')
                    res.removeHeader('x-late')
                    res.writeHead(200, { 'x-late': 'yes' })
                    res.write('late', () => {})
                    res.end('!')
                    const source = createReadStream(fileURLToPath(import.meta.url))
                    drained = once(source, 'close')
                    source.pipe(res)
                    lateDone()
                    resolve(undefined)
                  }
                  requestSignal(req).addEventListener('abort', () => setTimeout(lateWrites, 100), {
                    once: true,
                  })
                }),
            },
            { path: '/ok', use: (a) => [a.deadline({ timeoutMs: '10s' })], handle: () => ({ body: 'ok' }) },
          ],
        })
        try {
          const late = await get(`${app.url}/late`, agent)
          assert.equal(late.status, 504)
          await wroteLate
          await drained
          const next = await get(`${app.url}/ok`, agent)
          assert.deepEqual([next.status, next.body, next.headers['x-late']], [200, 'ok', undefined])
          assert.equal(next.socket, late.socket)
          assert.equal((await reportsOf(app, 1)).length, 1)
        } finally {
          agent.destroy()
          await app.close()
        }
      })

      test('late writes are dropped where a middleware wrapped them on the response itself (morgan, compression)', async () => {
        const agent = new Agent({ keepAlive: true, maxSockets: 1 })
        const { promise: wroteLate, resolve: lateDone } = reached()
        const logger = morgan('tiny', { stream: { write: () => {} } })
        const app = await startApp(framework, {
          // koa-compress goes through ctx.body and leaves the response's methods alone; koa-morgan mounts morgan so.
          use: () =>
            framework.startsWith('express')
              ? [logger, compression({ threshold: 0 })]
              : [
                  (ctx: { req: IncomingMessage; res: ServerResponse }, next: () => Promise<void>) =>
                    new Promise<void>((resolve) => logger(ctx.req, ctx.res, () => resolve())).then(next),
                ],
          routes: [
            {
              path: '/late',
              use: (a) => [a.deadline({ timeoutMs: '100ms' })],
              // In a timer: before the fix, on-headers' writeHead threw ERR_HTTP_HEADERS_SENT there and ended the process.
              handle: ({ req, res }) =>
                new Promise<undefined>((resolve) => {
                  requestSignal(req).addEventListener(
                    'abort',
                    () =>
                      setTimeout(() => {
                        res.writeHead(200, { 'content-type': 'image/png', 'x-late': 'yes' })
                        res.write(PNG)
                        res.end(PNG, () => lateDone())
                        resolve(undefined)
                      }, 50),
                    { once: true },
                  )
                }),
            },
            { path: '/ok', handle: () => ({ body: 'ok' }) },
          ],
        })
        try {
          const gzip = { 'accept-encoding': 'gzip' }
          const late = await get(`${app.url}/late`, agent, gzip)
          assert.equal(late.status, 504)
          assert.equal(late.headers['x-ic-error-code'], 'IC_BACKEND_TIMEOUT')
          assert.equal(late.headers['x-late'], undefined)
          // On Express the 504 itself went through compression's wrappers.
          if (framework.startsWith('express')) assert.equal(late.headers['content-encoding'], 'gzip')
          await wroteLate
          const next = await get(`${app.url}/ok`, agent, gzip)
          assert.deepEqual([next.status, next.body, next.headers['x-late']], [200, 'ok', undefined])
          assert.equal(
            next.socket,
            late.socket,
            'the same keep-alive socket: nothing stray was written on it',
          )
          assert.equal((await reportsOf(app, 1)).length, 1)
        } finally {
          agent.destroy()
          await app.close()
        }
      })

      test('a handler that ignores the signal and answers late neither crashes nor sends twice', async () => {
        const agent = new Agent({ keepAlive: true, maxSockets: 1 })
        const app = await startApp(framework, {
          routes: [
            {
              path: '/late',
              use: (a) => [a.deadline({ timeoutMs: '100ms' })],
              handle: async ({ req, res }) => {
                const signal = requestSignal(req)
                await once(signal, 'abort')
                if (!res.writableFinished) await once(res, 'finish')
                return { status: 200, headers: { 'x-late': 'yes' }, body: 'late' }
              },
            },
            { path: '/ok', use: (a) => [a.deadline({ timeoutMs: '10s' })], handle: () => ({ body: 'ok' }) },
          ],
        })
        try {
          const late = await get(`${app.url}/late`, agent)
          assert.equal(late.status, 504)
          assert.equal(late.headers['x-late'], undefined)
          // The same keep-alive connection serves the next request: nothing stray was written on it.
          const next = await get(`${app.url}/ok`, agent)
          assert.equal(next.status, 200)
          assert.equal(next.body, 'ok')
          assert.equal(next.socket, late.socket)
          assert.equal((await reportsOf(app, 1)).length, 1)
        } finally {
          agent.destroy()
          await app.close()
        }
      })

      test("without errorHandler(), writes after the framework's own 504 are dropped: nothing throws in a timer", async () => {
        const thrown: unknown[] = []
        const { promise: wroteLate, resolve: lateDone } = reached()
        const app = await startApp(framework, {
          errorHandler: false,
          routes: [
            {
              path: '/late',
              use: (a) => [a.deadline({ timeoutMs: '100ms' })],
              // In a timer, as a callback-style handler writes: before the fix, Express's final
              // handler (or Koa's ctx.onerror) answered the 504 and the first write ended the process.
              handle: async ({ req, res }) => {
                await once(requestSignal(req), 'abort')
                if (!res.writableFinished) await once(res, 'finish')
                setTimeout(() => {
                  try {
                    const send = (res as { send?: (body: string) => void }).send
                    if (send !== undefined) send.call(res, 'late')
                    res.setHeader('x-late', 'yes')
                    res.writeHead(200)
                    res.end('late')
                  } catch (err) {
                    thrown.push(err)
                  }
                  lateDone()
                }, 10)
                return undefined
              },
            },
          ],
        })
        try {
          const late = await get(`${app.url}/late`)
          assert.equal(late.status, 504)
          assert.equal(late.headers['x-late'], undefined)
          await wroteLate
          assert.deepEqual(thrown, [])
        } finally {
          await app.close()
        }
      })

      test('a handler that fails after the 504 is ignored: not logged, and the keep-alive connection lives on', async () => {
        const agent = new Agent({ keepAlive: true, maxSockets: 1 })
        const { logged, restore } = captureConsoleError()
        const { promise: failedLate, resolve: lateFailed } = reached()
        const app = await startApp(framework, {
          routes: [
            {
              path: '/late',
              use: (a) => [a.deadline({ timeoutMs: '100ms' })],
              // A backend call that ignored the signal, failing once the 504 was sent.
              handle: async ({ res }) => {
                if (!res.writableFinished) await once(res, 'finish')
                setImmediate(lateFailed)
                throw new Error('the backend failed after the deadline')
              },
            },
            { path: '/ok', handle: () => ({ body: 'ok' }) },
          ],
        })
        try {
          const late = await get(`${app.url}/late`, agent)
          assert.equal(late.status, 504)
          await failedLate
          const next = await get(`${app.url}/ok`, agent)
          assert.deepEqual([next.status, next.body], [200, 'ok'])
          assert.equal(next.socket, late.socket, 'the same keep-alive socket')
          assert.deepEqual(logged, [], "nothing reached the framework's own error logging")
          assert.deepEqual(
            (await reportsOf(app, 1)).map((r) => r.code),
            ['IC_BACKEND_TIMEOUT'],
          )
        } finally {
          restore()
          agent.destroy()
          await app.close()
        }
      })

      test('a handler that fails after its client left is ignored too', async () => {
        const { logged, restore } = captureConsoleError()
        const { promise: failedLate, resolve: lateFailed } = reached()
        const app = await startApp(framework, {
          use: (a) => [a.clientClosed()],
          routes: [
            {
              path: '/slow',
              handle: async ({ req }) => {
                await once(requestSignal(req), 'abort')
                await new Promise((resolve) => setTimeout(resolve, 20))
                setImmediate(lateFailed)
                throw new Error('the backend failed after the client left')
              },
            },
          ],
        })
        try {
          const socket = await rawSocket(app.url)
          socket.write('GET /slow HTTP/1.1\r\nHost: x\r\n\r\n')
          await new Promise((resolve) => setTimeout(resolve, 50))
          socket.destroy()
          await failedLate
          await new Promise((resolve) => setImmediate(resolve))
          assert.deepEqual(logged, [])
          assert.deepEqual(
            (await reportsOf(app, 1)).map((r) => [r.code, r.outcome]),
            [['IC_CLIENT_CLOSED_REQUEST', 'client-gone']],
          )
        } finally {
          restore()
          await app.close()
        }
      })

      test("a backend retry the request's deadline would cut short is not waited for: the 502 is answered at once", async () => {
        const waits: number[] = []
        const retrying = (minDelayMs: number, maxDelayMs: number) =>
          createBackendFetch({
            allowedAddresses: ['127.0.0.1'],
            timeoutMs: '30s',
            retry: {
              maxAttempts: 3,
              minDelayMs,
              maxDelayMs,
              random: () => 0.9,
              onRetry: (e) => waits.push(e.delayMs),
            },
          })
        // 1.9 s before the first retry, with 1.5 s left of the request.
        const slowRetry = retrying(1000, 30_000)
        const quickRetry = retrying(5, 10)
        const app = await startApp(framework, {
          routes: [
            {
              path: '/slow-retry',
              use: (a) => [a.deadline({ timeoutMs: 1500 })],
              handle: async ({ req }) => ({
                body: (await slowRetry(`${statusBackend.url}/502`, { signal: requestSignal(req) })).body,
              }),
            },
            {
              path: '/quick-retry',
              use: (a) => [a.deadline({ timeoutMs: 1500 })],
              handle: async ({ req }) => ({
                body: (await quickRetry(`${statusBackend.url}/502`, { signal: requestSignal(req) })).body,
              }),
            },
          ],
        })
        try {
          const started = Date.now()
          const slow = await get(`${app.url}/slow-retry`)
          assert.deepEqual([slow.status, slow.headers['x-ic-error-code']], [502, 'IC_BACKEND_ERROR'])
          assert.ok(
            Date.now() - started < 1000,
            `answered at once, not at the deadline (${Date.now() - started} ms)`,
          )
          assert.deepEqual(waits, [], 'no retry wait started')
          // Waits that fit in the time left are still made.
          const quick = await get(`${app.url}/quick-retry`)
          assert.deepEqual([quick.status, quick.headers['x-ic-error-code']], [502, 'IC_BACKEND_ERROR'])
          assert.equal(waits.length, 2)
        } finally {
          await app.close()
        }
      })

      test('a response that finishes in time clears its deadline timer', async () => {
        const app = await startApp(framework, {
          routes: [
            { path: '/fast', use: (a) => [a.deadline({ timeoutMs: '10m' })], handle: () => ({ body: 'ok' }) },
          ],
        })
        try {
          const baseline = activeTimers()
          for (let i = 0; i < 20; i++) assert.equal((await get(`${app.url}/fast`)).status, 200)
          await new Promise((resolve) => setImmediate(resolve))
          assert.ok(activeTimers() <= baseline, `timers grew from ${baseline} to ${activeTimers()}`)
          assert.equal(app.reports.length, 0)
        } finally {
          await app.close()
        }
      })

      test('an end() that throws under deadline() and clientClosed() is answered 500, not taken for an ended response', async () => {
        const app = await startApp(framework, {
          use: (a) => [a.clientClosed(), a.deadline({ timeoutMs: 2000 })],
          routes: [
            {
              path: '/bad-end',
              handle: ({ res }) => {
                ;(res.end as (chunk: unknown) => void)(404)
                return { body: 'unreachable' }
              },
            },
          ],
        })
        try {
          const started = Date.now()
          const res = await fetch(`${app.url}/bad-end`, { signal: AbortSignal.timeout(1500) })
          await res.arrayBuffer()
          assert.deepEqual([res.status, res.headers.get('x-ic-error-code')], [500, 'IC_INTERNAL_ERROR'])
          assert.ok(Date.now() - started < 1000, 'answered at once, not at the deadline')
          assert.deepEqual(
            app.reports.map((r) => [r.status, r.outcome, (r.error as NodeJS.ErrnoException).code]),
            [[500, 'sent', 'ERR_INVALID_ARG_TYPE']],
          )
        } finally {
          await app.close()
        }
      })

      test('a large image ended in time reaches a slow client whole after the deadline passed', async () => {
        const image = Buffer.alloc(16 * 1024 * 1024, 1)
        let flushedAtDeadline: boolean | undefined
        const app = await startApp(framework, {
          routes: [
            {
              path: '/big',
              use: (a) => [a.deadline({ timeoutMs: 100 })],
              handle: ({ res }) => {
                setTimeout(() => (flushedAtDeadline = res.writableFinished), 150)
                return { headers: { 'content-type': 'image/png' }, body: image }
              },
            },
          ],
        })
        try {
          const got = await slowDownload(
            `${app.url}/big`,
            () => new Promise((resolve) => setTimeout(resolve, 300)),
          )
          assert.equal(flushedAtDeadline, false, 'the body was still being flushed when the deadline passed')
          assert.deepEqual([got.status, got.ended, got.bytes], [200, 'complete', image.length])
          await new Promise((resolve) => setImmediate(resolve))
          assert.deepEqual(app.reports, [])
        } finally {
          await app.close()
        }
      })

      test('a pipelined response queued behind another clears its deadline timer when its client leaves', async () => {
        const entered = [reached(), reached()]
        const ended: Promise<void>[] = []
        let count = 0
        const app = await startApp(framework, {
          use: (a) => [a.deadline({ timeoutMs: '10m' })],
          routes: [
            {
              path: '/slow',
              handle: async () => {
                const finished = reached()
                ended.push(finished.promise)
                entered[count++]?.resolve()
                await new Promise((resolve) => setTimeout(resolve, 50))
                setImmediate(finished.resolve)
                return { body: 'too late' }
              },
            },
          ],
        })
        try {
          const baseline = activeTimers()
          const client = await pipelinedGets(app.url, '/slow', 2)
          await Promise.all(entered.map((e) => e.promise))
          client.destroy()
          await Promise.all(ended)
          await new Promise((resolve) => setImmediate(resolve))
          // Both handlers ended their responses, one of which never got the socket: no 10-minute timer is left.
          assert.ok(activeTimers() <= baseline, `timers grew from ${baseline} to ${activeTimers()}`)
          assert.equal(app.reports.length, 0)
        } finally {
          await app.close()
        }
      })

      test('a pipelined request whose client left before deadline() ran arms no timer', async () => {
        const entered = [reached(), reached()]
        let count = 0
        const afterClientLeft = waitForClientToLeave(framework)
        const app = await startApp(framework, {
          use: (a) => [afterClientLeft, a.deadline({ timeoutMs: '10m' })],
          routes: [
            {
              path: '/hang',
              handle: () => {
                entered[count++]?.resolve()
                return new Promise<undefined>(() => {})
              },
            },
          ],
        })
        try {
          const baseline = activeTimers()
          const client = await pipelinedGets(app.url, '/hang', 2)
          await new Promise((resolve) =>
            app.server.once('request', () => app.server.once('request', resolve)),
          )
          client.destroy()
          await Promise.all(entered.map((e) => e.promise))
          await new Promise((resolve) => setTimeout(resolve, 20))
          // The second response never got the socket: its deadline would have answered a 504 to nobody in 10 minutes.
          assert.ok(activeTimers() <= baseline, `timers grew from ${baseline} to ${activeTimers()}`)
          assert.equal(app.reports.length, 0)
        } finally {
          await app.close()
        }
      })

      test('a deadline that passes once the response started closes the connection instead', async () => {
        const app = await startApp(framework, {
          routes: [
            {
              path: '/stream',
              use: (a) => [a.deadline({ timeoutMs: 100 })],
              handle: () => {
                const body = new Readable({ read() {} })
                body.push(PNG)
                return { status: 200, headers: { 'content-type': 'image/png' }, body }
              },
            },
          ],
        })
        try {
          const req = httpRequest(`${app.url}/stream`)
          req.end()
          const [res] = (await once(req, 'response')) as [IncomingMessage]
          assert.equal(res.statusCode, 200)
          res.resume()
          const [err] = (await once(res, 'error')) as [NodeJS.ErrnoException]
          assert.equal(err.code, 'ECONNRESET')
          const [report] = await reportsOf(app, 1)
          assert.equal(report?.status, 504)
          assert.equal(report?.code, 'IC_BACKEND_TIMEOUT')
          assert.equal(report?.outcome, 'headers-sent')
        } finally {
          await app.close()
        }
      })

      test('a client that leaves in the middle of a streamed response is reported once as 499', async () => {
        const app = await startApp(framework, {
          use: (a) => [a.clientClosed()],
          routes: [
            {
              path: '/stream',
              handle: ({ req }) => {
                const body = new Readable({ read() {} })
                requestSignal(req).addEventListener('abort', () => body.destroy())
                body.push(PNG)
                return { status: 200, headers: { 'content-type': 'image/png' }, body }
              },
            },
          ],
        })
        try {
          const client = await rawSocket(app.url)
          client.write('GET /stream HTTP/1.1\r\nHost: x\r\n\r\n')
          await once(client, 'data')
          client.destroy()
          const [report] = await reportsOf(app, 1)
          assert.equal(report?.status, 499)
          assert.equal(report?.code, 'IC_CLIENT_CLOSED_REQUEST')
          await new Promise((resolve) => setImmediate(resolve))
          assert.equal(app.reports.length, 1)
        } finally {
          await app.close()
        }
      })

      test('a client that goes away aborts the backend fetch at once, not at its 30 s timeout, and is reported once as 499', async () => {
        const app = await fetchingApp(framework, silent, (a) => [a.clientClosed()])
        try {
          const client = await requestFetching(app, silent)
          let received = 0
          client.on('data', (chunk: Buffer) => {
            received += chunk.length
          })
          const backendClosed = silent.nextSocketClose()
          const destroyedAt = performance.now()
          client.destroy()
          await backendClosed
          const elapsed = performance.now() - destroyedAt
          // The fetch's own timeout is 30 s: far below it is the abort, with room for a loaded machine.
          assert.ok(
            elapsed < 5000,
            `the backend socket closed ${elapsed.toFixed(1)} ms after the client left`,
          )
          const [report] = await reportsOf(app, 1)
          assert.equal(report?.status, 499)
          assert.equal(report?.code, 'IC_CLIENT_CLOSED_REQUEST')
          assert.equal(report?.outcome, 'client-gone')
          assert.equal(report?.response.headersSent, false)
          assert.equal(received, 0)
          await new Promise((resolve) => setImmediate(resolve))
          assert.equal(app.reports.length, 1)
        } finally {
          await app.close()
        }
      })

      test('a handler that ignores the signal is still reported once as 499, and writes nothing', async () => {
        const { promise: done, resolve: handlerDone } = reached()
        const app = await startApp(framework, {
          use: (a) => [a.clientClosed()],
          routes: [
            {
              path: '/busy',
              handle: async ({ req }) => {
                await once(requestSignal(req), 'abort')
                await new Promise((resolve) => setImmediate(resolve))
                await new Promise((resolve) => setImmediate(resolve))
                setImmediate(handlerDone)
                return { body: 'too late' }
              },
            },
          ],
        })
        try {
          const client = await rawSocket(app.url)
          client.write('GET /busy HTTP/1.1\r\nHost: x\r\n\r\n')
          await new Promise((resolve) => app.server.once('request', resolve))
          client.destroy()
          const [report] = await reportsOf(app, 1)
          assert.equal(report?.status, 499)
          assert.ok(isIcError(report?.error) && report.error.code === 'IC_CLIENT_CLOSED_REQUEST')
          await done
          assert.equal(app.reports.length, 1)
        } finally {
          await app.close()
        }
      })

      test('a pipelined request queued behind another is reported as 499 too when its client leaves, not before', async () => {
        const aborted: string[] = []
        const bodiesRead = [reached(), reached()]
        let socketClosed: Promise<void> = Promise.resolve()
        const waitForAbort = async (req: IncomingMessage, read: { resolve(): void } | undefined) => {
          // The queued POST's body is read, so its request emits 'close' while the connection lives.
          for await (const _ of req);
          read?.resolve()
          socketClosed = new Promise((resolve) => req.socket.once('close', () => resolve()))
          const signal = requestSignal(req)
          await once(signal, 'abort')
          aborted.push(`${req.method} ${isIcError(signal.reason) ? signal.reason.code : signal.reason}`)
          throw signal.reason
        }
        const app = await startApp(framework, {
          use: (a) => [a.clientClosed()],
          routes: [
            { path: '/slow', handle: ({ req }) => waitForAbort(req, bodiesRead[0]) },
            { path: '/slow', method: 'POST', handle: ({ req }) => waitForAbort(req, bodiesRead[1]) },
          ],
        })
        try {
          const client = await rawSocket(app.url)
          client.on('error', () => {})
          client.write(
            'GET /slow HTTP/1.1\r\nHost: x\r\n\r\n' +
              'POST /slow HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello',
          )
          await Promise.all(bodiesRead.map((read) => read.promise))
          await new Promise((resolve) => setTimeout(resolve, 20))
          assert.deepEqual(aborted, [], 'nothing aborted while the connection lives')
          assert.equal(app.reports.length, 0)
          client.destroy()
          await socketClosed
          for (const until = Date.now() + 1000; app.reports.length < 2 && Date.now() < until; )
            await new Promise((resolve) => setTimeout(resolve, 5))
          assert.deepEqual(app.reports.map((r) => [r.request.method, r.status, r.code, r.outcome]).sort(), [
            ['GET', 499, 'IC_CLIENT_CLOSED_REQUEST', 'client-gone'],
            ['POST', 499, 'IC_CLIENT_CLOSED_REQUEST', 'client-gone'],
          ])
          assert.deepEqual(aborted.sort(), ['GET IC_CLIENT_CLOSED_REQUEST', 'POST IC_CLIENT_CLOSED_REQUEST'])
        } finally {
          await app.close()
        }
      })

      test('keep-alive and pipelined requests are never taken for a client that left', async () => {
        const agent = new Agent({ keepAlive: true, maxSockets: 1 })
        const app = await startApp(framework, {
          use: (a) => [a.clientClosed(), a.deadline({ timeoutMs: '5s' })],
          routes: [
            {
              path: '/image',
              handle: async ({ req }) => ({
                body: (await fetchImage(image.url, { signal: requestSignal(req) })).body,
              }),
            },
          ],
        })
        try {
          const first = await get(`${app.url}/image`, agent)
          for (let i = 0; i < 10; i++) {
            const res = await get(`${app.url}/image`, agent)
            assert.equal(res.status, 200)
            assert.equal(res.socket, first.socket)
          }
          const client = await rawSocket(app.url)
          const three = 'GET /image HTTP/1.1\r\nHost: x\r\n\r\n'.repeat(3)
          let text = ''
          client.setEncoding('latin1')
          client.on('data', (chunk: string) => {
            text += chunk
            if (text.split('HTTP/1.1 200 OK').length === 4 && text.endsWith(PNG.toString('latin1')))
              client.end()
          })
          client.write(three)
          await once(client, 'close')
          assert.equal(text.split('HTTP/1.1 200 OK').length - 1, 3)
          assert.equal(app.reports.length, 0)
          assert.equal(first.socket.listenerCount('close') <= 5, true)
        } finally {
          agent.destroy()
          await app.close()
        }
      })

      test('backend statuses and bodies reach the client with their own codes', async () => {
        const app = await startApp(framework, {
          use: (a) => [a.clientClosed(), a.deadline({ timeoutMs: '5s' })],
          routes: [
            {
              path: '/proxy',
              handle: async ({ req }) => {
                const status = new URL(req.url ?? '/', 'http://x').searchParams.get('status')
                const image = await fetchImage(`${statusBackend.url}/${status}`, {
                  signal: requestSignal(req),
                })
                return { body: image.body }
              },
            },
          ],
        })
        const table: readonly (readonly [number, number, string])[] = [
          [200, 400, 'IC_IMAGE_MALFORMED'],
          [400, 400, 'IC_BACKEND_BAD_REQUEST'],
          [401, 401, 'IC_BACKEND_UNAUTHORIZED'],
          [403, 403, 'IC_BACKEND_FORBIDDEN'],
          [404, 404, 'IC_IMAGE_NOT_FOUND'],
          [500, 502, 'IC_BACKEND_ERROR'],
          [502, 502, 'IC_BACKEND_ERROR'],
          [503, 503, 'IC_BACKEND_UNAVAILABLE'],
          [504, 504, 'IC_BACKEND_GATEWAY_TIMEOUT'],
        ]
        try {
          for (const [backendStatus, status, code] of table) {
            const res = await get(`${app.url}/proxy?status=${backendStatus}`)
            assert.equal(res.status, status, `backend ${backendStatus}`)
            assert.equal(res.headers['x-ic-error-code'], code, `backend ${backendStatus}`)
            if (backendStatus === 503) assert.equal(res.headers['retry-after'], '7')
          }
          assert.equal((await reportsOf(app, table.length)).length, table.length)
        } finally {
          await app.close()
        }
      })
    })
  }
})

describe('deadline(): a response that closes before it was ended aborts the request, as clientClosed() judges it', () => {
  let silent: Backend // accepts the request, never answers
  before(async () => {
    silent = await startBackend(() => {})
  })
  after(() => silent.close())

  for (const framework of frameworks) {
    describe(framework, { timeout: 20_000 }, () => {
      test('a client that leaves aborts the backend fetch at once, and its timer is cleared', async () => {
        const app = await fetchingApp(framework, silent, (a) => [a.deadline({ timeoutMs: '10m' })])
        try {
          const baseline = activeTimers()
          const client = await requestFetching(app, silent)
          const backendClosed = silent.nextSocketClose()
          client.destroy()
          assert.equal(await within(backendClosed, 1000), true, 'the backend fetch was not aborted')
          // The handler's fetch rejects with the departure, which errorHandler() reports.
          await settled(() => app.reports.length > 0, 1000)
          const [report] = app.reports
          assert.deepEqual([report?.status, report?.code], [499, 'IC_CLIENT_CLOSED_REQUEST'])
          assert.equal(app.reports.length, 1)
          assert.ok(activeTimers() <= baseline, `timers grew from ${baseline} to ${activeTimers()}`)
        } finally {
          await app.close()
        }
      })

      test("the app's own res.destroy() aborts the signal with ERR_STREAM_DESTROYED, no 499", async () => {
        let response: ServerResponse | undefined
        let signal: AbortSignal | undefined
        const app = await fetchingApp(
          framework,
          silent,
          (a) => [a.deadline({ timeoutMs: '10m' })],
          (res, seen) => {
            response = res
            signal = seen
          },
        )
        try {
          await requestFetching(app, silent)
          const backendClosed = silent.nextSocketClose()
          response?.destroy()
          assert.equal(await within(backendClosed, 1000), true, 'the backend fetch was not aborted')
          assert.equal((signal?.reason as NodeJS.ErrnoException | undefined)?.code, 'ERR_STREAM_DESTROYED')
          await settled(() => app.reports.length > 0, 100)
          assert.deepEqual(
            app.reports.filter((r) => r.status === 499),
            [],
          )
        } finally {
          await app.close()
        }
      })

      test('with clientClosed(): a client that resets the connection is reported once as 499, whichever hears it first', async () => {
        const app = await startApp(framework, {
          use: (a) => [a.deadline({ timeoutMs: '10m' }), a.clientClosed()],
          routes: [
            {
              path: '/busy',
              handle: async ({ req }) => {
                // Ignores the signal: only the lifecycle can report the departure.
                await once(requestSignal(req), 'abort')
                return { body: 'too late' }
              },
            },
          ],
        })
        try {
          const client = await rawSocket(app.url)
          client.on('error', () => {})
          client.write('GET /busy HTTP/1.1\r\nHost: x\r\n\r\n')
          await new Promise((resolve) => app.server.once('request', resolve))
          await new Promise((resolve) => setImmediate(resolve))
          client.resetAndDestroy()
          await settled(() => app.reports.length > 0, 1000)
          const [report] = app.reports
          assert.deepEqual([report?.status, report?.code], [499, 'IC_CLIENT_CLOSED_REQUEST'])
          assert.equal(app.reports.length, 1)
        } finally {
          await app.close()
        }
      })

      test('with clientClosed() armed after the client left: the departure is reported once as 499', async () => {
        const afterClientLeft = waitForClientToLeave(framework)
        const app = await startApp(framework, {
          use: (a) => [a.deadline({ timeoutMs: '10m' }), afterClientLeft, a.clientClosed()],
          routes: [{ path: '/busy', handle: () => ({ body: 'too late' }) }],
        })
        try {
          const client = await rawSocket(app.url)
          client.write('GET /busy HTTP/1.1\r\nHost: x\r\n\r\n')
          await new Promise((resolve) => app.server.once('request', resolve))
          client.destroy()
          await settled(() => app.reports.length > 0, 1000)
          const [report] = app.reports
          assert.deepEqual([report?.status, report?.code], [499, 'IC_CLIENT_CLOSED_REQUEST'])
          assert.equal(app.reports.length, 1)
        } finally {
          await app.close()
        }
      })
    })
  }
})

describe('deadline() without errorHandler(): a started response the deadline cuts is closed', () => {
  // Koa's own ctx.onerror only emits once headers are sent: the client waited for the rest forever.
  let stalling: Backend // sends its first bytes, then nothing
  before(async () => {
    stalling = await startBackend((_req, res) => {
      res.writeHead(200, { 'content-type': 'image/png' })
      res.write('first bytes')
    })
  })
  after(() => stalling.close())

  for (const framework of frameworks) {
    for (const tied of [false, true]) {
      const label = tied ? "a backend stream given the request's signal" : 'a stream body that stalls'
      test(`${framework}: ${label}`, { timeout: 5000 }, async () => {
        const app = await startApp(framework, {
          errorHandler: false,
          use: (a) => [a.deadline({ timeoutMs: 100 })],
          routes: [
            {
              path: '/stream',
              handle: async ({ locals }) => {
                if (tied) {
                  const res = await fetch(stalling.url, { signal: locals.signal as AbortSignal })
                  return { body: Readable.fromWeb(res.body as never) }
                }
                const body = new PassThrough()
                body.write('first chunk')
                return { headers: { 'content-type': 'image/png' }, body }
              },
            },
          ],
        })
        try {
          const client = await rawSocket(app.url)
          client.on('error', () => {})
          client.write('GET /stream HTTP/1.1\r\nHost: x\r\n\r\n')
          await once(client, 'data')
          assert.equal(await within(once(client, 'close'), 1500), true, 'the connection stayed open')
        } finally {
          await app.close()
        }
      })
    }
  }
})

describe('deadline() mounted after compression() (Express)', () => {
  // 12 MiB of text that gzip shrinks by a quarter only: far more than the socket buffers hold.
  const text = randomBytes(9 * 1024 * 1024).toString('base64')
  const gzip = { 'accept-encoding': 'gzip' }
  for (const framework of ['express4', 'express5'] as const) {
    test(`${framework}: a compressible body ended in time reaches a slow client whole, nothing reported`, async () => {
      let endedAtDeadline: boolean | undefined
      const app = await startApp(framework, {
        use: () => [compression()],
        routes: [
          {
            path: '/text',
            use: (a) => [a.deadline({ timeoutMs: 100 })],
            handle: ({ res }) => {
              setTimeout(() => (endedAtDeadline = res.writableEnded), 150)
              return { headers: { 'content-type': 'text/plain' }, body: text }
            },
          },
        ],
      })
      try {
        const got = await slowDownload(
          `${app.url}/text`,
          () => new Promise((resolve) => setTimeout(resolve, 300)),
          gzip,
        )
        assert.equal(
          endedAtDeadline,
          false,
          'compression() had not passed the end on when the deadline passed',
        )
        assert.deepEqual([got.status, got.ended, got.headers['content-encoding']], [200, 'complete', 'gzip'])
        assert.ok(gunzipSync(got.body).equals(Buffer.from(text)), 'the whole body')
        await new Promise((resolve) => setImmediate(resolve))
        assert.deepEqual(app.reports, [])
      } finally {
        await app.close()
      }
    })

    test(`${framework}: a compressed response the handler never ends still gets its 504`, async () => {
      const app = await startApp(framework, {
        use: () => [compression()],
        routes: [
          {
            path: '/text',
            use: (a) => [a.deadline({ timeoutMs: 100 })],
            handle: ({ req, res }) => {
              res.setHeader('content-type', 'text/plain')
              res.write(text.slice(0, 64 * 1024))
              return new Promise<undefined>((resolve) =>
                requestSignal(req).addEventListener('abort', () => resolve(undefined), { once: true }),
              )
            },
          },
        ],
      })
      try {
        const got = await slowDownload(`${app.url}/text`, () => Promise.resolve(), gzip)
        assert.equal(got.status, 200)
        assert.match(got.ended, /^cut /)
        const [report] = await reportsOf(app, 1)
        assert.deepEqual(
          [report?.status, report?.code, report?.outcome],
          [504, 'IC_BACKEND_TIMEOUT', 'headers-sent'],
        )
      } finally {
        await app.close()
      }
    })
  }
})

describe('Koa without errorHandler(): a handler that rejects with the abort reason', () => {
  // Koa's own ctx.onerror answers; the lifecycle reports the failure and so does Koa's catch of
  // the handler's rejection: each emitted it on the app.
  const rejectWithReason = (signal: AbortSignal, lateMs: number) =>
    new Promise<never>((_, reject) => {
      signal.addEventListener('abort', () => {
        if (lateMs < 0) reject(signal.reason)
        else setTimeout(() => reject(signal.reason), lateMs)
      })
    })
  for (const [name, Koa] of [
    ['koa2', Koa2],
    ['koa3', Koa3],
  ] as const) {
    for (const lifecycle of ['deadline', 'clientClosed'] as const) {
      for (const lateMs of [-1, 20]) {
        const when = lateMs < 0 ? 'at once' : `${lateMs} ms after the abort`
        test(`${name}, ${lifecycle}(): rejecting ${when}, the failure is emitted on the app once`, async () => {
          const app = new Koa()
          const emitted: unknown[] = []
          const arrived = reached()
          app.on('error', (err: { code?: unknown }) => emitted.push(err.code))
          app.use((lifecycle === 'deadline' ? kx.deadline({ timeoutMs: 50 }) : kx.clientClosed()) as never)
          app.use(async (ctx: { path: string; req: IncomingMessage; body: unknown }) => {
            if (ctx.path === '/ok') {
              ctx.body = 'ok'
              return
            }
            arrived.resolve()
            await rejectWithReason(requestSignal(ctx.req), lateMs)
          })
          const server = createServer(app.callback())
          server.listen(0, '127.0.0.1')
          await once(server, 'listening')
          const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
          const agent = new Agent({ keepAlive: true, maxSockets: 1 })
          try {
            if (lifecycle === 'deadline') {
              const res = await get(`${url}/image`, agent)
              assert.deepEqual([res.status, res.headers['x-ic-error-code']], [504, 'IC_BACKEND_TIMEOUT'])
              await settled(() => emitted.length > 0)
              await new Promise((resolve) => setTimeout(resolve, lateMs))
              const next = await get(`${url}/ok`, agent)
              assert.deepEqual([next.status, next.socket], [200, res.socket], 'the connection lives on')
              assert.deepEqual(emitted, ['IC_BACKEND_TIMEOUT'])
            } else {
              const client = await rawSocket(url)
              client.on('error', () => {})
              client.write('GET /image HTTP/1.1\r\nHost: x\r\n\r\n')
              await arrived.promise
              client.destroy()
              await settled(() => emitted.length > 0)
              await new Promise((resolve) => setTimeout(resolve, lateMs))
              assert.deepEqual(emitted, ['IC_CLIENT_CLOSED_REQUEST'])
            }
          } finally {
            agent.destroy()
            server.closeAllConnections()
            server.close()
          }
        })
      }
    }
    /**
     * A Koa app without errorHandler() behind `lifecycle`, whose body stalls after its first
     * bytes; resolves once a raw client has them, with what the app emitted so far.
     */
    async function stalledStream(lifecycle: unknown) {
      const app = new Koa()
      const emitted: unknown[] = []
      app.on('error', (err: { code?: unknown }) => emitted.push(err.code))
      app.use(lifecycle as never)
      app.use((ctx: { body: unknown }) => {
        const body = new PassThrough()
        body.write('first bytes ')
        ctx.body = body
      })
      const server = createServer(app.callback())
      server.listen(0, '127.0.0.1')
      await once(server, 'listening')
      const close = () => {
        server.closeAllConnections()
        server.close()
      }
      try {
        const client = await rawSocket(`http://127.0.0.1:${(server.address() as AddressInfo).port}`)
        client.on('error', () => {})
        client.write('GET /stream HTTP/1.1\r\nHost: x\r\n\r\n')
        await once(client, 'data')
        return { client, emitted, close }
      } catch (err) {
        close()
        throw err
      }
    }
    test(`${name}, deadline(): a stream that stalls past it is cut, and emitted once`, async () => {
      // Koa 3 pipes the body: cutting the response failed its pipeline, emitted besides the 504.
      const { client, emitted, close } = await stalledStream(kx.deadline({ timeoutMs: 100 }))
      try {
        assert.equal(await within(once(client, 'close'), 1500), true, 'the connection stayed open')
        await settled(() => emitted.length > 1, 100)
        assert.deepEqual(emitted, ['IC_BACKEND_TIMEOUT'])
      } finally {
        close()
      }
    })
    test(`${name}, clientClosed(): a client that leaves mid-stream is emitted once, as the departure`, async () => {
      // Koa 3 pipes the body: its pipeline's ERR_STREAM_PREMATURE_CLOSE was emitted besides the 499.
      const { client, emitted, close } = await stalledStream(kx.clientClosed())
      try {
        client.destroy()
        await settled(() => emitted.length > 0)
        assert.deepEqual(emitted, ['IC_CLIENT_CLOSED_REQUEST'])
      } finally {
        close()
      }
    })
  }
})

describe('Express without errorHandler(): a handler that passes the abort reason on to next(err)', () => {
  // The lifecycle hands its failure to next(err), and so does the handler; the router is past
  // every layer by then, so each reaches Express's final handler, which logs it and, the second
  // time, finds the headers sent and destroys the socket.
  let silent: Backend
  before(async () => {
    silent = await startBackend(() => {})
  })
  after(() => silent.close())
  const rejectWithReason = (signal: AbortSignal, lateMs: number) =>
    new Promise<never>((_, reject) => {
      signal.addEventListener('abort', () => {
        if (lateMs < 0) reject(signal.reason)
        else setTimeout(() => reject(signal.reason), lateMs)
      })
    })
  async function start(
    framework: 'express4' | 'express5',
    lifecycle: 'deadline' | 'clientClosed',
    lateMs?: number,
    arrived = () => {},
  ) {
    const app = (framework === 'express4' ? (express4 as unknown as typeof express5) : express5)()
    app.set('env', 'development') // Express's final handler logs every error with console.error
    app.use((lifecycle === 'deadline' ? ex.deadline({ timeoutMs: 50 }) : ex.clientClosed()) as never)
    app.get('/ok', (_req, res) => {
      res.send('ok')
    })
    app.get('/image', (req, res, next) => {
      arrived()
      const signal = requestSignal(req)
      // A real backend fetch rejects with the signal's reason in the turn of the abort.
      const image =
        lateMs === undefined
          ? fetchImage(`${silent.url}/slow.png`, { signal })
          : rejectWithReason(signal, lateMs)
      image.then(({ body }) => res.send(body), next)
    })
    const server = createServer(app)
    server.listen(0, '127.0.0.1')
    await once(server, 'listening')
    return {
      url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
      close: () => {
        server.closeAllConnections()
        server.close()
      },
    }
  }
  for (const framework of ['express4', 'express5'] as const) {
    for (const [label, lateMs, closes, logs] of [
      [
        'a fetch rejecting in the turn of the abort gets one 504, logged once, the connection kept',
        undefined,
        false,
        1,
      ],
      // What remains: the final handler logs the second forward too, and destroys the socket.
      ['a handler rejecting 20 ms after the abort gets a 504 that says Connection: close', 20, true, 2],
    ] as const) {
      test(`${framework}, deadline(): ${label}`, async () => {
        const { logged, restore } = captureConsoleError()
        const app = await start(framework, 'deadline', lateMs)
        const agent = new Agent({ keepAlive: true, maxSockets: 1 })
        try {
          const res = await get(`${app.url}/image`, agent)
          assert.deepEqual([res.status, res.headers['x-ic-error-code']], [504, 'IC_BACKEND_TIMEOUT'])
          assert.equal(res.headers.connection === 'close', closes)
          await settled(() => logged.length >= logs)
          const next = await get(`${app.url}/ok`, agent)
          assert.equal(next.status, 200)
          if (!closes)
            assert.equal(next.socket, res.socket, 'the keep-alive connection serves the next request')
          assert.equal(logged.length, logs)
        } finally {
          restore()
          agent.destroy()
          app.close()
        }
      })
    }
    test(`${framework}, clientClosed(): a handler rejecting in the turn of the departure is logged once`, async () => {
      const { logged, restore } = captureConsoleError()
      const arrived = reached()
      const app = await start(framework, 'clientClosed', -1, arrived.resolve)
      try {
        const client = await rawSocket(app.url)
        client.on('error', () => {})
        client.write('GET /image HTTP/1.1\r\nHost: x\r\n\r\n')
        await arrived.promise
        client.destroy()
        await settled(() => logged.length > 0)
        assert.equal(logged.length, 1)
      } finally {
        restore()
        app.close()
      }
    })
  }
})
