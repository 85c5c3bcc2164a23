import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { errorHandler as expressErrorHandler } from '../../express.ts'
import { errorHandler as koaErrorHandler } from '../../koa.ts'
import { createErrorWriter } from './index.ts'

describe('createErrorWriter(options)', () => {
  it('refuses bad options at construction, naming the option', () => {
    const cases: [unknown, RegExp][] = [
      [{ onError: 'log' }, /`onError`/],
      [{ requestIdHeader: 'x request id' }, /`requestIdHeader`/],
      [{ requestIdHeader: '' }, /`requestIdHeader`/],
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
