// Koa 2 and Koa 3 served over HTTP/2 (`http2.createServer(app.callback())`, cleartext), with
// node:http2 as the client: the error responses, the client resetting its stream, a deadline
// cutting a started response, and an upload cut short.
import assert from 'node:assert/strict'
import { once } from 'node:events'
import { createServer, get } from 'node:http'
import http2 from 'node:http2'
import { type AddressInfo, connect, type Socket } from 'node:net'
import { after, before, describe, it } from 'node:test'
import Koa3 from 'koa'
import Koa2 from 'koa2'
import { type ErrorReport, icError, requestSignal } from '../src/index.ts'
import * as kx from '../src/koa.ts'

const { NGHTTP2_CANCEL, NGHTTP2_INTERNAL_ERROR } = http2.constants
const PNG_START = Buffer.from('89504e470d0a1a0a0000000d49484452000000100000001008060000001ff3ff61', 'hex')

interface Answer {
  status: number
  headers: http2.IncomingHttpHeaders
  body: string
  rstCode: number | undefined
}

const warnings: Error[] = []
const onWarning = (warning: Error) => warnings.push(warning)
before(() => process.on('warning', onWarning))
after(() => {
  process.off('warning', onWarning)
  assert.deepEqual(
    warnings.map((w) => w.message),
    [],
    'no warning from Node: no status message, no Connection header on HTTP/2',
  )
})

/** Resolves once `test` holds, or fails after `ms`. */
async function until(test: () => boolean, what: string, ms = 2000): Promise<void> {
  const start = Date.now()
  while (!test()) {
    if (Date.now() - start > ms) assert.fail(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 5))
  }
}

/** Serves a Koa app over cleartext HTTP/2 on loopback, with a client session connected to it. */
async function serveOverHttp2(app: {
  callback(): (req: http2.Http2ServerRequest, res: http2.Http2ServerResponse) => unknown
}): Promise<{ server: http2.Http2Server; client: http2.ClientHttp2Session }> {
  const server = http2.createServer(app.callback())
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const client = http2.connect(`http://127.0.0.1:${(server.address() as AddressInfo).port}`)
  client.on('error', () => {})
  return { server, client }
}

for (const [name, Koa] of [
  ['koa2', Koa2],
  ['koa3', Koa3],
] as const) {
  describe(`${name} over HTTP/2`, () => {
    const reports: ErrorReport[] = []
    const aborted: unknown[] = []
    let stored = 0
    let server: http2.Http2Server
    let client: http2.ClientHttp2Session
    // A backend that sends the first bytes of an image, then resets its connection.
    const backend = createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'image/png' })
      res.write(Buffer.alloc(1000))
      setTimeout(() => res.socket?.resetAndDestroy(), 30)
    })

    before(async () => {
      backend.listen(0, '127.0.0.1')
      await once(backend, 'listening')
      const backendUrl = `http://127.0.0.1:${(backend.address() as AddressInfo).port}/`
      const app = new Koa()
      app.silent = true
      app.use(kx.errorHandler({ onError: (r) => reports.push(r) }) as never)
      app.use(kx.clientClosed() as never)
      app.use(
        async (ctx: { path: string; req: never; res: never; body: unknown }, next: () => Promise<void>) => {
          if (ctx.path === '/backend-reset') {
            ctx.body = await new Promise((resolve, reject) => get(backendUrl, resolve).on('error', reject))
            return
          }
          if (ctx.path === '/no-such-image')
            (ctx as unknown as { throw(s: number, m: string): never }).throw(404, 'No such image')
          if (ctx.path === '/own-headers')
            throw icError('IC_FORBIDDEN', {
              headers: { 'keep-alive': 'timeout=5', upgrade: 'h2c', 'x-ok': 'yes' },
            })
          if (ctx.path === '/status-only') {
            ;(ctx as unknown as { status: number }).status = 403
            return
          }
          if (ctx.path === '/app-headers') {
            // Set by the app before it failed: Node's HTTP/2 takes them here, refuses them at writeHead.
            const res = ctx.res as unknown as import('node:http').ServerResponse
            for (const [field, value] of [
              ['keep-alive', 'timeout=5'],
              ['upgrade', 'h2c'],
              ['proxy-connection', 'keep-alive'],
              ['http2-settings', 'AAMAAABkAAQAAP__'],
              ['x-ok', 'yes'],
            ])
              res.setHeader(field as string, value as string)
            throw icError('IC_FORBIDDEN')
          }
          if (ctx.path === '/own-destroy' || ctx.path === '/throw-after-write') {
            const signal = requestSignal(ctx.req)
            signal.addEventListener('abort', () => aborted.push(signal.reason), { once: true })
            const res = ctx.res as unknown as import('node:http').ServerResponse
            if (ctx.path === '/own-destroy') {
              res.destroy(new Error('our own failure'))
              return
            }
            res.writeHead(200)
            res.write('start')
            throw new Error('failed after the first bytes')
          }
          if (ctx.path === '/wait') {
            const signal = requestSignal(ctx.req)
            await new Promise((resolve) => signal.addEventListener('abort', resolve, { once: true }))
            aborted.push(signal.reason)
            return
          }
          await next()
        },
      )
      app.use(kx.imageParams({ maxWidth: 100 }) as never)
      const upload = kx.upload({ enabled: true, tokens: ['tok'], maxBytes: 1_000_000 })
      app.use((ctx: { path: string }, next: () => Promise<void>) =>
        ctx.path.startsWith('/upload/') ? upload(ctx as never, next) : next(),
      )
      app.use(kx.deadline({ timeoutMs: 60 }) as never)
      app.use(
        async (ctx: { path: string; req: never; res: never; body: unknown; state: { upload?: unknown } }) => {
          if (ctx.path === '/started') {
            const res = ctx.res as unknown as NodeJS.WritableStream & { writeHead(s: number): void }
            res.writeHead(200)
            res.write('start')
            await new Promise(() => {})
          }
          if (ctx.path === '/slow') {
            const signal = requestSignal(ctx.req)
            // As a backend fetch given the signal: it rejects with the abort's reason.
            await new Promise((resolve) => signal.addEventListener('abort', resolve, { once: true }))
            throw signal.reason
          }
          if (ctx.state.upload !== undefined) stored++
          ctx.body = 'ok'
        },
      )
      ;({ server, client } = await serveOverHttp2(app))
    })
    after(async () => {
      client.close()
      await new Promise((resolve) => server.close(resolve))
      await new Promise((resolve) => backend.close(resolve))
    })

    function ask(headers: http2.OutgoingHttpHeaders, send?: (req: http2.ClientHttp2Stream) => void) {
      return new Promise<Answer>((resolve, reject) => {
        const req = client.request(headers, { endStream: send === undefined })
        let status = 0
        let responseHeaders: http2.IncomingHttpHeaders = {}
        let body = ''
        req.on('response', (h) => {
          status = Number(h[':status'])
          responseHeaders = h
        })
        req.setEncoding('utf8')
        req.on('data', (chunk: string) => {
          body += chunk
        })
        req.on('error', () => {})
        req.on('close', () => resolve({ status, headers: responseHeaders, body, rstCode: req.rstCode }))
        req.on('timeout', () => reject(new Error('no answer')))
        req.setTimeout(3000)
        send?.(req)
      })
    }

    it('answers an error with its status, code, validation header and body; HEAD without a body', async () => {
      const res = await ask({ ':path': '/img?width=500', accept: 'application/json' })
      assert.equal(res.status, 400)
      assert.equal(res.headers['x-ic-error-code'], 'IS_VALIDATION_ERROR')
      assert.deepEqual(
        (JSON.parse(String(res.headers['x-ic-error-validation'])) as { message: string }[]).map(
          (i) => i.message,
        ),
        ['"width" must be less than or equal to 100'],
      )
      assert.equal(JSON.parse(res.body).code, 'IS_VALIDATION_ERROR')
      const head = await ask({ ':path': '/img?width=500', ':method': 'HEAD' })
      assert.deepEqual([head.status, head.body], [400, ''])
      assert.equal(head.headers['x-ic-error-code'], 'IS_VALIDATION_ERROR')
    })

    it("keeps a thrown error's own message, the way to name a 404 over HTTP/2 (ctx.message has nowhere to live)", async () => {
      const res = await ask({ ':path': '/no-such-image', accept: 'application/json' })
      assert.deepEqual([res.status, res.headers['x-ic-error-code']], [404, 'IC_NOT_FOUND'])
      assert.equal(JSON.parse(res.body).detail, 'No such image')
    })

    it("answers an error whose own headers hold the connection's fields, which HTTP/2 refuses: dropped, never a hang", async () => {
      const res = await ask({ ':path': '/own-headers' })
      assert.deepEqual(
        [res.status, res.headers['x-ic-error-code'], res.headers['x-ok']],
        [403, 'IC_FORBIDDEN', 'yes'],
      )
      assert.equal(res.headers['keep-alive'], undefined)
    })

    it('answers an error status set without a body, and reads no status message Node would warn about', async () => {
      const res = await ask({ ':path': '/status-only' })
      assert.deepEqual([res.status, res.headers['x-ic-error-code']], [403, 'IC_FORBIDDEN'])
    })

    it("answers an error after the app set the connection's fields, which HTTP/2 refuses: removed, not a reset stream", async () => {
      const res = await ask({ ':path': '/app-headers' })
      assert.deepEqual(
        [res.status, res.headers['x-ic-error-code'], res.headers['x-ok'], res.rstCode],
        [403, 'IC_FORBIDDEN', 'yes', 0],
      )
      for (const field of ['keep-alive', 'upgrade', 'proxy-connection'])
        assert.equal(res.headers[field], undefined)
    })

    it('a client resetting its stream is a 499 client-gone, reported once, and the signal aborts with it', async () => {
      reports.length = 0
      aborted.length = 0
      const pending = ask({ ':path': '/wait' }, (req) => {
        req.end()
        setTimeout(() => req.close(NGHTTP2_CANCEL), 30)
      })
      await pending
      await until(() => reports.length > 0 && aborted.length > 0, 'the report and the abort')
      assert.deepEqual(
        reports.map((r) => [r.status, r.code, r.outcome]),
        [[499, 'IC_CLIENT_CLOSED_REQUEST', 'client-gone']],
      )
      assert.equal((aborted[0] as { code?: unknown }).code, 'IC_CLIENT_CLOSED_REQUEST')
    })

    it("the server's own destroy(err) is no departure: the signal aborts with that error, reported 500 closed", async () => {
      reports.length = 0
      aborted.length = 0
      await ask({ ':path': '/own-destroy' })
      await until(() => aborted.length > 0, 'the abort')
      assert.equal((aborted[0] as Error).message, 'our own failure')
      // As on HTTP/1: Koa hears the response's error, reported as the server's failure.
      await until(() => reports.length > 0, 'the report')
      assert.deepEqual(
        reports.map((r) => [r.status, r.outcome, (r.error as Error).message]),
        [[500, 'closed', 'our own failure']],
      )
    })

    // The backend's ECONNRESET that Koa's piping destroys the response with: the client's
    // session lives on, so no departure, as on HTTP/1.
    it("a backend resetting mid-body is the server's failure (500 headers-sent), not a departure", async () => {
      reports.length = 0
      aborted.length = 0
      const res = await ask({ ':path': '/backend-reset' })
      assert.equal(res.status, 200)
      assert.notEqual(res.rstCode, http2.constants.NGHTTP2_NO_ERROR, 'the client cannot take it for whole')
      await until(() => reports.length > 0, 'the report')
      assert.deepEqual(
        reports.map((r) => [r.status, r.outcome, (r.error as { code?: unknown }).code]),
        [[500, 'headers-sent', 'ECONNRESET']],
      )
      assert.equal(client.destroyed, false)
    })

    it('a response the error handler cuts after its first bytes is reset with an error, and no departure', async () => {
      reports.length = 0
      aborted.length = 0
      const res = await ask({ ':path': '/throw-after-write' })
      assert.deepEqual([res.status, res.body, res.rstCode], [200, 'start', NGHTTP2_INTERNAL_ERROR])
      await until(() => reports.length > 0 && aborted.length > 0, 'the report and the abort')
      assert.deepEqual(
        reports.map((r) => [r.status, r.outcome]),
        [[500, 'headers-sent']],
      )
      assert.equal((aborted[0] as { code?: unknown }).code, 'ERR_STREAM_DESTROYED')
    })

    it('a client whose TCP connection is reset is a 499 client-gone', async () => {
      reports.length = 0
      aborted.length = 0
      let socket: Socket | undefined
      const port = (server.address() as AddressInfo).port
      const raw = http2.connect(`http://127.0.0.1:${port}`, {
        createConnection: () => {
          socket = connect(port, '127.0.0.1')
          return socket
        },
      })
      raw.on('error', () => {})
      const req = raw.request({ ':path': '/wait' })
      req.on('error', () => {})
      req.end()
      await until(() => socket !== undefined && req.sentHeaders !== undefined, 'the request')
      await new Promise((resolve) => setTimeout(resolve, 30))
      socket?.resetAndDestroy()
      await until(() => reports.length > 0 && aborted.length > 0, 'the report and the abort')
      assert.deepEqual(
        reports.map((r) => [r.status, r.code, r.outcome]),
        [[499, 'IC_CLIENT_CLOSED_REQUEST', 'client-gone']],
      )
      raw.destroy()
    })

    it('a client closing its session with an error (GOAWAY) is a 499 reported as IC_CLIENT_CLOSED_REQUEST, not the session error', async () => {
      reports.length = 0
      aborted.length = 0
      const raw = http2.connect(`http://127.0.0.1:${(server.address() as AddressInfo).port}`)
      raw.on('error', () => {})
      const req = raw.request({ ':path': '/wait' })
      req.on('error', () => {})
      req.end()
      await until(() => req.sentHeaders !== undefined, 'the request')
      await new Promise((resolve) => setTimeout(resolve, 30))
      raw.goaway(NGHTTP2_CANCEL)
      await until(() => reports.length > 0 && aborted.length > 0, 'the report and the abort')
      assert.deepEqual(
        reports.map((r) => [r.status, r.outcome, (r.error as { code?: unknown }).code]),
        [[499, 'client-gone', 'IC_CLIENT_CLOSED_REQUEST']],
      )
      raw.destroy()
    })

    it('a deadline answers a HEAD request 504, as a GET', async () => {
      reports.length = 0
      const started = Date.now()
      const res = await ask({ ':path': '/slow', ':method': 'HEAD' })
      assert.deepEqual(
        [res.status, res.headers['x-ic-error-code'], res.body],
        [504, 'IC_BACKEND_TIMEOUT', ''],
      )
      assert.ok(Date.now() - started >= 55, 'not before the 60 ms deadline')
      const get = await ask({ ':path': '/slow' })
      assert.deepEqual([get.status, get.headers['x-ic-error-code']], [504, 'IC_BACKEND_TIMEOUT'])
    })

    it('a deadline cutting a started response resets the stream with an error: the client cannot take it for whole', async () => {
      reports.length = 0
      const res = await ask({ ':path': '/started' })
      assert.equal(res.status, 200)
      assert.equal(res.body, 'start')
      assert.equal(res.rstCode, NGHTTP2_INTERNAL_ERROR)
      await until(() => reports.length > 0, 'the report')
      assert.deepEqual(
        reports.map((r) => [r.status, r.outcome]),
        [[504, 'headers-sent']],
      )
    })

    it('an upload the client resets before its end (no Content-Length) is a 499; the handler never runs', async () => {
      reports.length = 0
      stored = 0
      const res = await ask(
        { ':path': '/upload/a.png', ':method': 'POST', authorization: 'Bearer tok' },
        (req) => {
          // A PNG's first bytes: taken for whole, the body would pass the sniffing and be stored.
          req.write(Buffer.concat([PNG_START, Buffer.alloc(1000, 1)]))
          setTimeout(() => req.close(NGHTTP2_CANCEL), 30)
        },
      )
      assert.equal(res.status, 0, 'no response: the client left')
      await until(() => reports.length > 0, 'the report')
      assert.deepEqual(
        reports.map((r) => [r.status, r.outcome]),
        [[499, 'client-gone']],
      )
      assert.equal(stored, 0)
    })
  })
}

for (const [name, Koa] of [
  ['koa2', Koa2],
  ['koa3', Koa3],
] as const) {
  describe(`${name} over HTTP/2, errorHandler() without clientClosed()`, () => {
    const reports: ErrorReport[] = []
    const emitted: unknown[] = []
    let server: http2.Http2Server
    let client: http2.ClientHttp2Session
    before(async () => {
      const app = new Koa()
      app.silent = true
      app.on('error', (err: { code?: unknown }) => emitted.push(err.code))
      app.use(kx.errorHandler({ onError: (r) => reports.push(r) }) as never)
      app.use((ctx: { body: unknown }) => {
        // Far past the stream's flow-control window: most of it is still queued when the client leaves.
        ctx.body = Buffer.alloc(8 * 1024 * 1024, 7)
      })
      ;({ server, client } = await serveOverHttp2(app))
    })
    after(async () => {
      client.close()
      await new Promise((resolve) => server.close(resolve))
    })

    it('a client cancelling its stream in the middle of a buffered body is a 499 client-gone', async () => {
      const req = client.request({ ':path': '/large' })
      req.on('error', () => {})
      await once(req, 'data')
      req.close(NGHTTP2_CANCEL)
      await until(() => reports.length > 0, 'the report')
      assert.deepEqual(
        reports.map((r) => [r.status, r.code, r.outcome]),
        [[499, 'IC_CLIENT_CLOSED_REQUEST', 'client-gone']],
      )
      // Emitted once, as every departure is: IC_CLIENT_CLOSED_REQUEST.
      assert.deepEqual(emitted, ['IC_CLIENT_CLOSED_REQUEST'])
    })
  })
}
