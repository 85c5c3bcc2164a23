import assert from 'node:assert/strict'
import { once } from 'node:events'
import { createServer, get, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { describe, it } from 'node:test'
import { requestState } from './request-state.ts'
import { recordEnd, responseEnded } from './response-end.ts'

/** Replaces `res.end` as compression() does: the call returns at once, the real end comes later. */
function deferEnd(res: ServerResponse, ms: number): void {
  const end = res.end as (...args: unknown[]) => ServerResponse
  res.end = ((...args: unknown[]) => {
    setTimeout(() => end.apply(res, args), ms)
    return res
  }) as ServerResponse['end']
}

/** Answers one GET with `handle`, and resolves with what it saw once the client got the body. */
async function exchange<T>(handle: (req: IncomingMessage, res: ServerResponse) => T): Promise<T> {
  let seen: T | undefined
  const server = createServer((req, res) => {
    seen = handle(req, res)
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  try {
    const req = get(`http://127.0.0.1:${(server.address() as AddressInfo).port}/`)
    const [res] = (await once(req, 'response')) as [IncomingMessage]
    res.resume()
    await once(res, 'end')
    return seen as T
  } finally {
    server.close()
  }
}

describe('recordEnd(res, state)', () => {
  it('sees the handler end a response whose real end a middleware mounted before defers', async () => {
    const seen = await exchange((req, res) => {
      const state = requestState(req)
      deferEnd(res, 20)
      recordEnd(res, state)
      assert.equal(responseEnded(res, state), false)
      res.end('done')
      return [res.writableEnded, state.endCalled, responseEnded(res, state)]
    })
    assert.deepEqual(seen, [false, true, true])
  })

  it('is hidden by a middleware that defers end after it, and wraps a response once', async () => {
    const seen = await exchange((req, res) => {
      const state = requestState(req)
      recordEnd(res, state)
      const ours = res.end
      recordEnd(res, state)
      const once = res.end === ours
      deferEnd(res, 20)
      res.end('done')
      return [once, state.endCalled, responseEnded(res, state)]
    })
    assert.deepEqual(seen, [true, false, false])
  })
})
