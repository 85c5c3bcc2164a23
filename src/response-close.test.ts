import assert from 'node:assert/strict'
import { once } from 'node:events'
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import { type AddressInfo, connect, type Socket } from 'node:net'
import { describe, it } from 'node:test'
import { onResponseClose } from './response-close.ts'

const GET = 'GET / HTTP/1.1\r\nHost: x\r\n\r\n'

/** Resolves on `close`, whatever error came first (a server socket reset by its client). */
function closed(socket: Socket): Promise<void> {
  return new Promise((resolve) => socket.once('close', () => resolve()))
}

/** A node:http server that keeps every exchange unanswered until the test ends it. */
async function start() {
  const exchanges: { req: IncomingMessage; res: ServerResponse; closes: number }[] = []
  let arrived = () => {}
  const server = createServer((req, res) => {
    const exchange = { req, res, closes: 0 }
    exchanges.push(exchange)
    onResponseClose(res, function (this: ServerResponse) {
      assert.equal(this, res)
      exchange.closes++
    })
    arrived()
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const client = connect((server.address() as AddressInfo).port, '127.0.0.1')
  client.on('error', () => {})
  return {
    exchanges,
    client,
    async arrivals(n: number) {
      while (exchanges.length < n) await new Promise<void>((resolve) => (arrived = resolve))
    },
    close() {
      client.destroy()
      server.closeAllConnections()
      server.close()
    },
  }
}

describe('onResponseClose(res, listener)', () => {
  it('calls the listeners of responses queued behind another once when the client leaves, with one socket listener', async () => {
    const app = await start()
    try {
      app.client.write(GET.repeat(20))
      await app.arrivals(20)
      const socket = app.exchanges[0]?.req.socket as Socket
      assert.equal(app.exchanges[1]?.res.socket, null, 'the second response is queued')
      const own = socket.listenerCount('close')
      app.client.destroy()
      await closed(socket)
      assert.deepEqual(
        app.exchanges.map((e) => e.closes),
        Array(20).fill(1),
      )
      // Node's own listeners, plus one for all 19 queued responses.
      assert.ok(own <= 4, `${own} close listeners on the socket`)
      for (const { res } of app.exchanges) res.end('late')
      await new Promise((resolve) => setImmediate(resolve))
      assert.deepEqual(
        app.exchanges.map((e) => e.closes),
        Array(20).fill(1),
        'never called twice',
      )
    } finally {
      app.close()
    }
  })

  it('waits, for a queued response whose body was read, until it closed on its own socket', async () => {
    const app = await start()
    try {
      app.client.write(`${GET}POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi`)
      await app.arrivals(2)
      const [first, queued] = app.exchanges as [(typeof app.exchanges)[0], (typeof app.exchanges)[0]]
      queued.req.resume()
      await once(queued.req, 'close')
      assert.equal(queued.closes, 0, "the request's close says nothing about its response")
      first.res.end('one')
      await once(queued.res, 'socket')
      queued.res.end('two')
      await once(queued.res, 'close')
      assert.deepEqual([first.closes, queued.closes], [1, 1])
      app.client.destroy()
      await closed(first.req.socket)
      assert.deepEqual([first.closes, queued.closes], [1, 1], 'no second call when the connection ends')
    } finally {
      app.close()
    }
  })

  it('calls the listener at once for a response that already closed', async () => {
    const app = await start()
    try {
      app.client.write(GET)
      await app.arrivals(1)
      const { res } = app.exchanges[0] as (typeof app.exchanges)[0]
      app.client.destroy()
      await once(res, 'close')
      let called = 0
      onResponseClose(res, () => called++)
      assert.equal(called, 1)
    } finally {
      app.close()
    }
  })
})
