import assert from 'node:assert/strict'
import { once } from 'node:events'
import { createServer, get, type IncomingMessage } from 'node:http'
import type { AddressInfo } from 'node:net'
import { describe, it } from 'node:test'
import { icError } from '../../errors.ts'
import { errorHandler as expressErrorHandler } from '../../express.ts'
import { errorHandler as koaErrorHandler } from '../../koa.ts'
import { createErrorWriter } from './index.ts'

describe('createErrorWriter(options)', () => {
  it('refuses bad options at construction, naming the option', () => {
    const cases: [unknown, RegExp][] = [
      [{ onError: 'log' }, /`onError`/],
      [{ requestIdHeader: 'x request id' }, /`requestIdHeader`/],
      [{ requestIdHeader: '' }, /`requestIdHeader`/],
      // A header the error response writes or keeps: the id would replace the code, no-store,
      // a 401's challenge, a 429's RateLimit.
      ...[
        'X-IC-Error-Code',
        'x-ic-error-validation',
        'Cache-Control',
        'retry-after',
        'vary',
        'content-type',
        'WWW-Authenticate',
        'allow',
        'ratelimit',
        'ratelimit-policy',
        'Location',
        'set-cookie',
        'keep-alive',
        'upgrade',
        'te',
        'proxy-connection',
        'date',
      ].map((name): [unknown, RegExp] => [
        { requestIdHeader: name },
        /`requestIdHeader` to be a header the error response neither writes nor keeps/,
      ]),
      [{ generateRequestId: 5 }, /`generateRequestId`/],
      [{ problemType: 'https://x' }, /`problemType`/],
      [{ validationHeaderMaxBytes: 100 }, /`validationHeaderMaxBytes`/],
      [{ validationHeaderMaxBytes: 1e6 }, /`validationHeaderMaxBytes`/],
      [{ validationHeaderMaxBytes: 1000.5 }, /`validationHeaderMaxBytes`/],
    ]
    for (const [options, message] of cases) {
      assert.throws(() => createErrorWriter(options as never), { name: 'TypeError', message })
    }
  })

  it('caps validationHeaderMaxBytes at 8192, a header the clients still read; a larger cap throws', async () => {
    for (const cap of [8193, 16384]) {
      assert.throws(() => createErrorWriter({ validationHeaderMaxBytes: cap }), {
        name: 'TypeError',
        message: `Expected \`validationHeaderMaxBytes\` to be an integer from 256 to 8192, got ${cap}`,
      })
    }
    const write = createErrorWriter({ onError: () => {}, validationHeaderMaxBytes: 8192 })
    const validation = Array.from({ length: 400 }, (_, i) => ({
      message: `parameter p${i} must be a number between 1 and 8192`,
      path: [`p${i}`],
    }))
    const server = createServer((req, res) => write(icError('IS_VALIDATION_ERROR', { validation }), req, res))
    server.listen(0, '127.0.0.1')
    await once(server, 'listening')
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`
    try {
      const [res] = (await once(get(url), 'response')) as [IncomingMessage]
      res.resume()
      const header = res.headers['x-ic-error-validation'] as string
      assert.equal(res.statusCode, 400)
      assert.ok(header.length > 8000 && header.length <= 8192, `${header.length} bytes`)
      assert.equal((await fetch(url)).status, 400)
    } finally {
      server.closeAllConnections()
      server.close()
    }
  })

  it('accepts no options', () => {
    assert.equal(typeof createErrorWriter(), 'function')
  })

  it('refuses an option it does not know, and takes every documented one', () => {
    for (const name of ['onerror', 'requestIdHeaderName'])
      assert.throws(() => createErrorWriter({ [name]: () => {} } as never), {
        name: 'TypeError',
        message: new RegExp(`^Unknown option \`${name}\` of errorHandler: expected one of onError,`),
      })
    for (const make of [createErrorWriter, expressErrorHandler, koaErrorHandler]) {
      assert.throws(() => make(null as never), {
        name: 'TypeError',
        message: /^Expected the options of `errorHandler` to be an object, got null/,
      })
      assert.throws(() => make('x' as never), {
        message: /^Expected the options of `errorHandler` to be an object, got string/,
      })
      assert.throws(() => make({ onerror: () => {} } as never), { message: /^Unknown option `onerror`/ })
    }
    const handle = createErrorWriter({
      onError: () => {},
      requestIdHeader: 'x-correlation-id',
      generateRequestId: () => 'id-1',
      problemType: (code) => `https://errors.example.com/${code}`,
      validationHeaderMaxBytes: 1024,
    })
    assert.equal(typeof handle, 'function')
  })
})
