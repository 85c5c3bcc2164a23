import assert from 'node:assert/strict'
import { once } from 'node:events'
import { createServer, get, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import { type AddressInfo, connect } from 'node:net'
import { describe, it } from 'node:test'
import { isIcError } from '../../errors.ts'
import { requestSignal } from '../../request-signal.ts'
import { createClientClosed } from './index.ts'

function deferred<T>(): { promise: Promise<T>; resolve: (value: T) => void } {
  let resolve!: (value: T) => void
  const promise = new Promise<T>((r) => {
    resolve = r
  })
  return { promise, resolve }
}

/** Runs `body` against a loopback server with `handler`, then closes it and every connection. */
async function withServer(
  handler: (req: IncomingMessage, res: ServerResponse) => void,
  body: (port: number, server: Server) => Promise<void>,
): Promise<void> {
  const server = createServer(handler)
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  try {
    await body((server.address() as AddressInfo).port, server)
  } finally {
    server.closeAllConnections()
    server.close()
  }
}

/** Sends a GET on a raw socket and destroys it once the handler has the response. */
async function requestThenLeave(port: number, seen: Promise<ServerResponse>): Promise<ServerResponse> {
  const client = connect(port, '127.0.0.1')
  client.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n')
  const res = await seen
  client.destroy()
  return res
}

describe('requestSignal', () => {
  it('refuses what is no request, such as a Koa context, instead of a signal nothing aborts', () => {
    const ctx = { req: {}, state: {}, headers: {}, url: '/' }
    assert.throws(() => requestSignal(ctx as never), { name: 'TypeError', message: /ctx\.req/ })
    assert.throws(() => requestSignal(undefined as never), TypeError)
  })
})

describe('createClientClosed', () => {
  it('refuses a fail hook that is not a function', () => {
    assert.throws(() => createClientClosed('next' as never), /`fail`/)
  })

  it('aborts the signal with a 499 IcError when the client leaves, and fails the request once', async () => {
    const failures: [unknown, unknown][] = []
    const watch = createClientClosed((target, err) => failures.push([target, err]))
    let signal: AbortSignal | undefined
    const seen = deferred<ServerResponse>()
    const handler = (req: IncomingMessage, res: ServerResponse) => {
      const listeners = res.listenerCount('close')
      watch(req, res, 'target')
      watch(req, res, 'target')
      signal = requestSignal(req)
      assert.equal(res.listenerCount('close'), listeners + 1, 'one listener, however often it is mounted')
      seen.resolve(res)
    }
    await withServer(handler, async (port) => {
      const res = await requestThenLeave(port, seen.promise)
      await once(signal as AbortSignal, 'abort')
      assert.ok(isIcError(signal?.reason) && signal.reason.code === 'IC_CLIENT_CLOSED_REQUEST')
      assert.equal(requestSignal(res.req), signal)
      await new Promise((resolve) => setImmediate(resolve))
      assert.equal(failures.length, 1)
      assert.deepEqual(failures[0], ['target', signal?.reason])
      assert.equal(res.headersSent, false)
    })
  })

  it('leaves finished responses alone, keep-alive included', async () => {
    const watch = createClientClosed(() => assert.fail('no request failed'))
    const signals: AbortSignal[] = []
    const handler = (req: IncomingMessage, res: ServerResponse) => {
      watch(req, res, undefined)
      signals.push(requestSignal(req))
      res.end('ok')
    }
    await withServer(handler, async (port, server) => {
      for (let i = 0; i < 5; i++) {
        const [res] = (await once(get(`http://127.0.0.1:${port}`), 'response')) as [IncomingMessage]
        res.resume()
        await once(res, 'end')
      }
      server.closeAllConnections()
      await new Promise((resolve) => setImmediate(resolve))
      assert.equal(signals.length, 5)
      assert.ok(signals.every((s) => !s.aborted))
    })
  })

  const died = new Error('backend died')
  for (const [label, destroyWith] of [
    ["with the server's own error when its code destroyed the response with one", died],
    ['with an ERR_STREAM_DESTROYED error when its code destroyed the response without one', undefined],
  ] as const) {
    it(`aborts the signal ${label}, and fails no request`, async () => {
      const failures: unknown[] = []
      const watch = createClientClosed((_target, err) => failures.push(err))
      let signal: AbortSignal | undefined
      const handler = (req: IncomingMessage, res: ServerResponse) => {
        watch(req, res, undefined)
        signal = requestSignal(req)
        res.write('partial')
        // What stream.pipeline() does when the backend fails and the callback swallows it, or
        // the app's own res.destroy().
        setImmediate(() => res.destroy(destroyWith))
      }
      await withServer(handler, async (port) => {
        const client = connect(port, '127.0.0.1')
        client.on('error', () => {})
        client.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n')
        // The server's destroy leaves this client's socket open: wait for the abort itself.
        let waitedMs = 0
        while (signal?.aborted !== true && waitedMs < 1000) {
          await new Promise((resolve) => setTimeout(resolve, 5))
          waitedMs += 5
        }
        const aborted = signal?.aborted === true
        client.destroy()
        assert.ok(aborted, 'the signal is aborted')
        if (destroyWith !== undefined) assert.equal(signal?.reason, destroyWith)
        else {
          assert.ok(!isIcError(signal?.reason), 'not the reason of a client that left')
          assert.equal(((signal as AbortSignal).reason as { code?: unknown }).code, 'ERR_STREAM_DESTROYED')
        }
        await new Promise((resolve) => setImmediate(resolve))
        assert.deepEqual(
          failures,
          [],
          'the handler reports its failure itself: no 499 of a client that stayed',
        )
      })
    })
  }

  it('gives an already aborted signal to a handler that asks after the client left', async () => {
    const watch = createClientClosed(() => {})
    const seen = deferred<ServerResponse>()
    const handler = (req: IncomingMessage, res: ServerResponse) => {
      watch(req, res, undefined)
      seen.resolve(res)
    }
    await withServer(handler, async (port) => {
      const res = await requestThenLeave(port, seen.promise)
      await once(res, 'close')
      await new Promise((resolve) => setImmediate(resolve))
      assert.equal(requestSignal(res.req).aborted, true)
    })
  })
})
