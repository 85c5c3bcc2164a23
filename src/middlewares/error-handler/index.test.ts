import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
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
})
