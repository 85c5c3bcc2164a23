import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { createBackendFetch } from './middlewares/backend-fetch/index.ts'
import { durationMs, functionOption, knownOptions, numberOption, showValue } from './options.ts'

describe('durationMs(name, value, range)', () => {
  it('takes milliseconds or ms strings', () => {
    assert.equal(durationMs('timeoutMs', 250), 250)
    assert.equal(durationMs('timeoutMs', '8s'), 8000)
    assert.equal(durationMs('timeoutMs', '1.5m'), 90_000)
    assert.equal(durationMs('minDelayMs', 0, { min: 0 }), 0)
  })

  it('throws a TypeError naming the option', () => {
    for (const bad of [
      0,
      -1,
      Number.NaN,
      Number.POSITIVE_INFINITY,
      '',
      '  ',
      'soon',
      '-5s',
      null,
      {},
      2 ** 31,
    ]) {
      assert.throws(
        () => durationMs('timeoutMs', bad),
        /^TypeError: Expected `timeoutMs` to be a duration of 1 ms/,
      )
    }
  })

  it('shows a BigInt or a symbol it was given, instead of failing to', () => {
    assert.throws(() => durationMs('timeoutMs', 5n), {
      name: 'TypeError',
      message: /^Expected `timeoutMs` to be a duration of 1 ms to 2147483647 ms .*, got 5n$/,
    })
    assert.throws(() => durationMs('timeoutMs', Symbol('ttl')), {
      name: 'TypeError',
      message: /, got Symbol\(ttl\)$/,
    })
    assert.throws(() => durationMs('delayMs', 0, { max: Number.MAX_SAFE_INTEGER }), {
      name: 'TypeError',
      message: /^Expected `delayMs` to be a duration of at least 1 ms \(/,
    })
  })
})

describe('numberOption(name, value, range) and functionOption(name, value)', () => {
  it('throw a TypeError naming the option', () => {
    assert.equal(numberOption('limit', 90, { min: 0, integer: true }), 90)
    assert.throws(
      () => numberOption('limit', 1.5, { integer: true }),
      /^TypeError: Expected `limit` to be an integer/,
    )
    assert.throws(
      () => numberOption('ratio', 0, { exclusiveMin: true }),
      /^TypeError: Expected `ratio` to be a number greater than 0/,
    )
    assert.equal(numberOption('ratio', 0.999, { max: 1, exclusiveMax: true }), 0.999)
    assert.throws(
      () => numberOption('ratio', 1, { min: 0, max: 1, exclusiveMin: true, exclusiveMax: true }),
      /^TypeError: Expected `ratio` to be a number greater than 0 and less than 1, got 1$/,
    )
    assert.throws(
      () => functionOption('cost', 'area'),
      /^TypeError: Expected `cost` to be a function, got "area"/,
    )
  })
})

describe('knownOptions(options, known, owner)', () => {
  it('refuses an unknown key, own or inherited, and ignores symbols and non-enumerable keys', () => {
    const known = ['timeoutMs', 'maxBytes']
    knownOptions({ timeoutMs: 1 }, known, 'f')
    assert.throws(() => knownOptions({ timeoutMS: 1 }, known, 'f'), {
      name: 'TypeError',
      message: 'Unknown option `timeoutMS` of f: expected one of timeoutMs, maxBytes',
    })
    assert.throws(() => knownOptions(Object.create({ timeoutMS: 1 }), known, 'f'), /`timeoutMS`/)
    // The factories read inherited options: a misspelt inherited one must not keep a default.
    assert.throws(
      () => createBackendFetch(Object.create({ timeoutMS: 5 })),
      /`timeoutMS` of createBackendFetch/,
    )
    knownOptions(Object.create({ timeoutMs: 1 }), known, 'f')
    const hidden = Object.defineProperty({ [Symbol('tag')]: 1 }, 'extra', { value: 1, enumerable: false })
    knownOptions(hidden, known, 'f')
    class Options {
      maxBytes = 10
      get timeoutMs(): number {
        return 5
      }
    }
    knownOptions(new Options(), known, 'f')
  })
})

describe('showValue(value)', () => {
  it('shows what was given, JSON where it can, and never throws', () => {
    const cycle: unknown[] = []
    cycle.push(cycle)
    for (const [value, shown] of [
      ['per-ip', '"per-ip"'],
      [[429, 'GET'], '[429,"GET"]'],
      [{ status: 410 }, '{"status":410}'],
      [10n, '10n'],
      [Symbol('ttl'), 'Symbol(ttl)'],
      [Number.NaN, 'NaN'],
      [() => {}, 'a function'],
      [new Map(), 'a Map'],
      [undefined, 'undefined'],
      [cycle, 'object'],
    ] as const) {
      assert.equal(showValue(value), shown)
    }
  })

  it('shows a BigInt inside an array or an object as written, not the whole value as "object"', () => {
    assert.equal(showValue([429n, 502]), '[429n,502]')
    assert.equal(
      showValue({ allowed: true, used: -1n, resetMs: 0 }),
      '{"allowed":true,"used":-1n,"resetMs":0}',
    )
    assert.equal(showValue([{ limit: [2n] }]), '[{"limit":[2n]}]')
  })
})
