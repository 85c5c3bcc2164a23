import assert from 'node:assert/strict'
import { once } from 'node:events'
import { createServer, get, type IncomingMessage, type ServerResponse } from 'node:http'
import { type AddressInfo, connect } from 'node:net'
import { describe, it } from 'node:test'
import { slowDownload } from '../../../test/support/slow-download.ts'
import { isIcError } from '../../errors.ts'
import { requestSignal } from '../../request-signal.ts'
import { createDeadline } from './index.ts'

type Handler = (req: IncomingMessage, res: ServerResponse) => void

async function serve(handler: Handler): Promise<{ url: string; close(): Promise<void> }> {
  const server = createServer(handler)
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    async close() {
      server.closeAllConnections()
      server.close()
      await once(server, 'close')
    },
  }
}

async function status(url: string): Promise<number> {
  const req = get(url)
  const [res] = (await once(req, 'response')) as [IncomingMessage]
  res.resume()
  await once(res, 'end')
  return res.statusCode ?? 0
}

describe('createDeadline', () => {
  it('validates its options once', () => {
    const fail = () => {}
    assert.throws(() => createDeadline({ timeoutMs: -1 }, fail), /`timeoutMs`.*got -1/)
    assert.throws(() => createDeadline({} as never, fail), /`timeoutMs`/)
    assert.throws(() => createDeadline(undefined as never, fail), /`timeoutMs`/)
    assert.throws(
      () => createDeadline({ timeoutMs: 1000 }, undefined as never),
      /^TypeError: Expected `fail` to be a function, got undefined$/,
    )
  })

  it('refuses an option it does not know, and takes the documented one', () => {
    const fail = () => {}
    assert.throws(() => createDeadline({ timeoutMs: 1000, timeoutMS: 500 } as never, fail), {
      name: 'TypeError',
      message: /^Unknown option `timeoutMS` of deadline: expected one of timeoutMs$/,
    })
    assert.equal(typeof createDeadline({ timeoutMs: '8s' }, fail), 'function')
  })

  it('aborts the signal with a 504 IcError and fails the request once', async () => {
    const failures: unknown[] = []
    const arm = createDeadline({ timeoutMs: 30 }, (target, err) => {
      failures.push(target)
      const res = target as ServerResponse
      res.statusCode = (err as Error & { status: number }).status
      res.end()
    })
    const app = await serve((req, res) => {
      arm(req, res, res)
    })
    try {
      assert.equal(await status(app.url), 504)
      assert.equal(failures.length, 1)
    } finally {
      await app.close()
    }
  })

  it('lets a handler that fails on the abort report the error itself', async () => {
    let fallbackCalls = 0
    const arm = createDeadline({ timeoutMs: '20ms' }, () => {
      fallbackCalls++
    })
    const app = await serve((req, res) => {
      arm(req, res, undefined)
      requestSignal(req).addEventListener('abort', function onAbort(this: AbortSignal) {
        assert.ok(isIcError(this.reason) && this.reason.code === 'IC_BACKEND_TIMEOUT')
        res.statusCode = 504
        res.end()
      })
    })
    try {
      assert.equal(await status(app.url), 504)
      await new Promise((resolve) => setImmediate(resolve))
      assert.equal(fallbackCalls, 0)
    } finally {
      await app.close()
    }
  })

  it('keeps the earlier of two deadlines', async () => {
    const fired: string[] = []
    let pending: ServerResponse | undefined
    const fail = (name: string) => (target: unknown) => {
      fired.push(`${name} ${target}`)
      pending?.end()
    }
    const long = createDeadline({ timeoutMs: '10s' }, fail('long'))
    const short = createDeadline({ timeoutMs: 20 }, fail('short'))
    const app = await serve((req, res) => {
      pending = res
      long(req, res, 'a')
      short(req, res, 'b')
      long(req, res, 'c')
    })
    try {
      await status(app.url)
      assert.deepEqual(fired, ['short c'])
    } finally {
      await app.close()
    }
  })

  it('does nothing once the response finished in time', async () => {
    let fallbackCalls = 0
    let signal: AbortSignal | undefined
    const arm = createDeadline({ timeoutMs: 30 }, () => {
      fallbackCalls++
    })
    const app = await serve((req, res) => {
      arm(req, res, undefined)
      signal = requestSignal(req)
      res.end('ok')
    })
    try {
      assert.equal(await status(app.url), 200)
      await new Promise((resolve) => setTimeout(resolve, 60))
      assert.equal(signal?.aborted, false)
      assert.equal(fallbackCalls, 0)
    } finally {
      await app.close()
    }
  })
  it('leaves alone a response the handler ended in time, while a slow client downloads it', async () => {
    const image = Buffer.alloc(16 * 1024 * 1024, 1)
    let fallbackCalls = 0
    let flushedAtDeadline: boolean | undefined
    let signal: AbortSignal | undefined
    const arm = createDeadline({ timeoutMs: 50 }, () => {
      fallbackCalls++
    })
    const app = await serve((req, res) => {
      arm(req, res, undefined)
      signal = requestSignal(req)
      res.end(image)
      setTimeout(() => (flushedAtDeadline = res.writableFinished), 100)
    })
    try {
      const got = await slowDownload(app.url, () => new Promise((resolve) => setTimeout(resolve, 300)))
      assert.equal(flushedAtDeadline, false, 'the body was still being flushed when the deadline passed')
      assert.deepEqual([got.status, got.bytes, got.ended], [200, image.length, 'complete'])
      assert.equal(signal?.aborted, false)
      assert.equal(fallbackCalls, 0)
    } finally {
      await app.close()
    }
  })

  it('does not fail a handler that ends the whole response when its signal aborts', async () => {
    const fallback = Buffer.alloc(16 * 1024 * 1024, 2)
    let fallbackCalls = 0
    const arm = createDeadline({ timeoutMs: 30 }, () => {
      fallbackCalls++
    })
    const app = await serve((req, res) => {
      arm(req, res, undefined)
      requestSignal(req).addEventListener('abort', () => res.end(fallback))
    })
    try {
      const got = await slowDownload(app.url, () => new Promise((resolve) => setTimeout(resolve, 200)))
      assert.deepEqual([got.status, got.bytes, got.ended], [200, fallback.length, 'complete'])
      assert.equal(fallbackCalls, 0)
    } finally {
      await app.close()
    }
  })

  it('aborts the signal when the client leaves before the response was ended, and reports nothing', async () => {
    const failures: unknown[] = []
    const arm = createDeadline({ timeoutMs: '10m' }, (_target, err) => failures.push(err))
    let signal: AbortSignal | undefined
    let armed: () => void = () => {}
    const handled = new Promise<void>((resolve) => {
      armed = resolve
    })
    const app = await serve((req, res) => {
      arm(req, res, res)
      signal = requestSignal(req)
      armed()
    })
    try {
      const client = connect(Number(new URL(app.url).port), '127.0.0.1')
      client.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n')
      await handled
      client.destroy()
      await Promise.race([
        once(signal as AbortSignal, 'abort'),
        new Promise((resolve) => setTimeout(resolve, 1000)),
      ])
      assert.equal(signal?.aborted, true, 'the signal was not aborted')
      assert.ok(isIcError(signal.reason) && signal.reason.code === 'IC_CLIENT_CLOSED_REQUEST')
      await new Promise((resolve) => setImmediate(resolve))
      assert.deepEqual(failures, [], 'a departure is clientClosed()’s to report')
    } finally {
      await app.close()
    }
  })
})
