import assert from 'node:assert/strict'
import { EventEmitter } from 'node:events'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { describe, it } from 'node:test'
import { type IcError, isIcError } from '../../errors.ts'
import { createLoadSampler, type LoadSample, type LoadSheddingOptions, loadSheddingGuard } from './index.ts'

const calm: LoadSample = { eventLoopDelayMs: 5, eventLoopUtilization: 0.2, heapUsedBytes: 1e6, rssBytes: 5e6 }
const req = {} as IncomingMessage

function fakeResponse(): ServerResponse {
  return new EventEmitter() as unknown as ServerResponse
}

/** A sampler on an injected source, and a setter that takes a new sample at once. */
function injected(thresholds: LoadSheddingOptions = {}) {
  let sample = calm
  const sampler = createLoadSampler({ source: () => sample, ...thresholds })
  return {
    sampler,
    set(next: Partial<LoadSample>) {
      sample = { ...calm, ...next }
      sampler.refresh()
    },
  }
}

function refusal(run: () => unknown): IcError {
  try {
    run()
  } catch (err) {
    assert.ok(isIcError(err))
    return err
  }
  assert.fail('expected the request to be refused')
}

describe('loadSheddingGuard(options)', () => {
  const cases = [
    ['maxEventLoopDelayMs', 100, { eventLoopDelayMs: 150 }, 'eventLoopDelay'],
    ['maxEventLoopUtilization', 0.9, { eventLoopUtilization: 0.99 }, 'eventLoopUtilization'],
    ['maxHeapUsedBytes', 2e6, { heapUsedBytes: 3e6 }, 'heapUsed'],
    ['maxRssBytes', 6e6, { rssBytes: 9e6 }, 'rss'],
  ] as const
  for (const [option, threshold, over, type] of cases) {
    it(`refuses with 503 IC_OVERLOADED while ${option} is exceeded, and serves again after`, () => {
      const { sampler, set } = injected()
      try {
        const guard = loadSheddingGuard({ sampler, [option]: threshold, random: () => 0 })
        assert.equal(guard(req, fakeResponse()), undefined)
        set(over)
        const err = refusal(() => guard(req, fakeResponse()))
        assert.equal(err.status, 503)
        assert.equal(err.code, 'IC_OVERLOADED')
        assert.equal(err.details?.reason, type)
        assert.equal(err.details?.threshold, threshold)
        assert.ok(typeof err.headers['retry-after'] === 'string')
        assert.match(err.message, /^Overloaded: /)
        set({})
        assert.equal(guard(req, fakeResponse()), undefined)
      } finally {
        sampler.close()
      }
    })
  }

  it('serves at exactly the threshold and refuses just over it', () => {
    const { sampler, set } = injected()
    try {
      const guard = loadSheddingGuard({ sampler, maxEventLoopDelayMs: 100 })
      set({ eventLoopDelayMs: 100 })
      assert.equal(guard(req, fakeResponse()), undefined)
      set({ eventLoopDelayMs: 100.5 })
      assert.equal(refusal(() => guard(req, fakeResponse())).code, 'IC_OVERLOADED')
    } finally {
      sampler.close()
    }
  })

  it('sends a Retry-After that grows with the pressure, in whole seconds, plus jitter', () => {
    const { sampler, set } = injected()
    let r = 0
    try {
      const guard = loadSheddingGuard({
        sampler,
        maxEventLoopDelayMs: 100,
        minRetryAfterSeconds: 2,
        maxRetryAfterSeconds: 22,
        retryAfterJitterRatio: 0.5,
        random: () => r,
      })
      const retryAfter = (delay: number, random: number) => {
        r = random
        set({ eventLoopDelayMs: delay })
        const err = refusal(() => guard(req, fakeResponse()))
        assert.match(err.headers['retry-after'] as string, /^\d+$/)
        return Number(err.headers['retry-after'])
      }
      assert.equal(retryAfter(100.001, 0), 2, 'just over the threshold: the minimum')
      assert.equal(retryAfter(103, 0), 3) // 2 + 20 × 0.03 = 2.6, to the nearest second
      assert.equal(retryAfter(150, 0), 12) // half-way to twice the threshold
      assert.equal(retryAfter(200, 0), 22)
      assert.equal(retryAfter(900, 0), 22, 'capped at twice the threshold')
      assert.equal(retryAfter(150, 0.999), 18, 'jitter adds up to half')
      assert.equal(retryAfter(200, 0.5), 28)
    } finally {
      sampler.close()
    }
  })

  it('gives the minimum Retry-After to an overload seen in one sample only, the scaled one while it lasts', () => {
    const { sampler, set } = injected()
    try {
      const guard = loadSheddingGuard({
        sampler,
        maxEventLoopDelayMs: 100,
        maxHeapUsedBytes: 2e6,
        retryAfterJitterRatio: 0,
      })
      const retryAfter = () => refusal(() => guard(req, fakeResponse())).headers['retry-after']
      set({ eventLoopDelayMs: 900 })
      assert.equal(retryAfter(), '1', 'one window over, nine times the threshold')
      set({ eventLoopDelayMs: 150 })
      assert.equal(retryAfter(), '16', 'the second in a row: scaled by its own pressure')
      set({ heapUsedBytes: 4e6 })
      assert.equal(retryAfter(), '30', 'over another threshold is still over')
      set({})
      assert.equal(guard(req, fakeResponse()), undefined)
      set({ eventLoopDelayMs: 900 })
      assert.equal(retryAfter(), '1', 'after a calm window, one window over again')
    } finally {
      sampler.close()
    }
  })

  it('spreads the Retry-After of refusals at the threshold too: 1 or 2 s, not always 2', () => {
    let r = 0
    const guard = loadSheddingGuard({ maxInFlight: 1, random: () => r })
    guard(req, fakeResponse())
    const seen = new Set<string>()
    for (r = 0.05; r < 1; r += 0.1)
      seen.add(refusal(() => guard(req, fakeResponse())).headers['retry-after'] as string)
    assert.deepEqual([...seen].sort(), ['1', '2'])
    const steady = loadSheddingGuard({ maxInFlight: 1, retryAfterJitterRatio: 0 })
    steady(req, fakeResponse())
    assert.equal(
      refusal(() => steady(req, fakeResponse())).headers['retry-after'],
      '1',
      'no jitter: the minimum',
    )
  })

  it('sheds a growing share between the soft point and the threshold (gradual shedding)', () => {
    const { sampler, set } = injected()
    let r = 0
    try {
      const guard = loadSheddingGuard({
        sampler,
        maxEventLoopUtilization: 0.9,
        softThresholdRatio: 0.5,
        random: () => r,
      })
      set({ eventLoopUtilization: 0.45 }) // at the soft point: nobody is refused
      r = 0
      assert.equal(guard(req, fakeResponse()), undefined)
      set({ eventLoopUtilization: 0.675 }) // half-way: a request is refused when random() < 0.5
      r = 0.49
      assert.equal(refusal(() => guard(req, fakeResponse())).details?.reason, 'eventLoopUtilization')
      r = 0.51
      assert.equal(guard(req, fakeResponse()), undefined)
      set({ eventLoopUtilization: 0.9 }) // at the threshold: everyone
      r = 0.999
      assert.equal(refusal(() => guard(req, fakeResponse())).code, 'IC_OVERLOADED')
      // Over 10 000 requests with a real random source, the refused share follows the pressure.
      const real = loadSheddingGuard({ sampler, maxEventLoopUtilization: 0.9, softThresholdRatio: 0.5 })
      set({ eventLoopUtilization: 0.81 }) // 80 % of the way from soft to hard
      let refused = 0
      for (let i = 0; i < 10_000; i++) {
        try {
          real(req, fakeResponse())
        } catch {
          refused++
        }
      }
      assert.ok(refused > 7500 && refused < 8500, `refused ${refused} of 10000`)
    } finally {
      sampler.close()
    }
  })

  it('counts requests in flight, released once on finish or on close (client gone)', () => {
    const guard = loadSheddingGuard({ maxInFlight: 2, random: () => 0 })
    const a = fakeResponse()
    const b = fakeResponse()
    guard(req, a)
    guard(req, b)
    const err = refusal(() => guard(req, fakeResponse()))
    assert.equal(err.details?.reason, 'inFlight')
    assert.equal(err.details?.value, 2)
    a.emit('finish')
    a.emit('close')
    a.emit('close')
    const c = fakeResponse()
    guard(req, c)
    assert.equal(refusal(() => guard(req, fakeResponse())).details?.reason, 'inFlight', 'released once only')
    b.emit('close')
    c.emit('close')
    guard(req, fakeResponse())
    guard(req, fakeResponse())
    assert.throws(() => guard(req, fakeResponse()))
  })

  it('judges and counts a request once when the same instance runs twice for it (app-wide and on its route)', () => {
    const guard = loadSheddingGuard({ maxInFlight: 2, random: () => 0 })
    const a = fakeResponse()
    assert.equal(guard(req, a), undefined)
    assert.equal(guard(req, a), undefined, 'its own slot does not count against it')
    guard(req, fakeResponse())
    assert.equal(refusal(() => guard(req, fakeResponse())).details?.value, 2, 'a counted once')
    a.emit('finish')
    a.emit('close')
    guard(req, fakeResponse())
    assert.equal(refusal(() => guard(req, fakeResponse())).details?.value, 2, 'and released once')

    const { sampler, set } = injected()
    try {
      const rolls = [0.9, 0.1]
      const soft = loadSheddingGuard({
        sampler,
        maxEventLoopDelayMs: 100,
        softThresholdRatio: 0.5,
        random: () => rolls.shift() ?? 0,
      })
      set({ eventLoopDelayMs: 75 })
      const b = fakeResponse()
      assert.equal(soft(req, b), undefined, 'admitted by the first roll (0.9 ≥ 0.5)')
      assert.equal(soft(req, b), undefined, 'not rolled for again')
      assert.equal(
        refusal(() => soft(req, fakeResponse())).code,
        'IC_OVERLOADED',
        'another request rolls 0.1',
      )
    } finally {
      sampler.close()
    }
  })

  it('sheds gradually on requests in flight too, and serves up to the limit without it', () => {
    let r = 0
    const gradual = loadSheddingGuard({ maxInFlight: 4, softThresholdRatio: 0.5, random: () => r })
    gradual(req, fakeResponse())
    gradual(req, fakeResponse())
    r = 0
    assert.equal(gradual(req, fakeResponse()), undefined, '2 of 4 in flight: at the soft point')
    r = 0.49
    assert.equal(refusal(() => gradual(req, fakeResponse())).details?.pressure, 0.75)
    r = 0.51
    assert.equal(gradual(req, fakeResponse()), undefined)
    r = 0.999
    const full = refusal(() => gradual(req, fakeResponse()))
    assert.equal(full.details?.value, 4)
    assert.equal(full.headers['retry-after'], '2', 'the minimum, plus jitter, at the limit')
    const cliff = loadSheddingGuard({ maxInFlight: 3, random: () => 0 })
    for (let i = 0; i < 3; i++) assert.equal(cliff(req, fakeResponse()), undefined, `request ${i + 1} of 3`)
    assert.throws(() => cliff(req, fakeResponse()), { code: 'IC_OVERLOADED' })
  })

  it("falls back to the sampler's thresholds, and its own options win", () => {
    const { sampler, set } = injected({ maxEventLoopDelayMs: 100 })
    try {
      const inherits = loadSheddingGuard({ sampler })
      const overrides = loadSheddingGuard({ sampler, maxEventLoopDelayMs: 500 })
      set({ eventLoopDelayMs: 200 })
      assert.throws(() => inherits(req, fakeResponse()), { code: 'IC_OVERLOADED' })
      assert.equal(overrides(req, fakeResponse()), undefined)
    } finally {
      sampler.close()
    }
  })

  it('uses a shared process sampler when none is given', () => {
    const guard = loadSheddingGuard({ maxEventLoopDelayMs: 10_000 })
    assert.equal(guard(req, fakeResponse()), undefined)
  })

  for (const [options, message] of [
    [{}, /^Expected at least one of `maxEventLoopDelayMs`/],
    [{ maxInFlight: 0 }, /^Expected `maxInFlight` to be an integer from 1/],
    [{ maxInFlight: 1.5 }, /^Expected `maxInFlight`/],
    [{ maxInFlight: 1, softThresholdRatio: 0 }, /^Expected `softThresholdRatio`/],
    [{ maxInFlight: 1, softThresholdRatio: 1.2 }, /^Expected `softThresholdRatio`/],
    [{ maxInFlight: 1, minRetryAfterSeconds: 0 }, /^Expected `minRetryAfterSeconds`/],
    [
      { maxInFlight: 1, minRetryAfterSeconds: 10, maxRetryAfterSeconds: 5 },
      /^Expected `maxRetryAfterSeconds`/,
    ],
    [{ maxInFlight: 1, retryAfterJitterRatio: -1 }, /^Expected `retryAfterJitterRatio`/],
    [{ maxInFlight: 1, random: 'no' }, /^Expected `random` to be a function/],
    [{ maxInFlight: 1, sampler: {} }, /^Expected `sampler` to be a sampler/],
    // Accepted, it failed every request: the guard reads `current`.
    [
      { maxEventLoopDelayMs: 100, sampler: { isOverloaded: () => false } },
      /^Expected `sampler` to be a sampler made by createLoadSampler\(\), with `current` \(the latest sample\) and `isOverloaded\(\)`, got an object without them$/,
    ],
    [{ maxEventLoopDelayMs: 100, sampler: 'default' }, /, got "default"$/],
    [{ maxEventLoopDelayMs: Number.NaN }, /^Expected `maxEventLoopDelayMs`/],
    [{ maxEventLoopDelayMs: 'soon' }, /^Expected `maxEventLoopDelayMs` to be a duration of at least 1 ms/],
    // A utilisation never exceeds 1: a threshold of 1 could never refuse.
    [
      { maxEventLoopUtilization: 1 },
      /^Expected `maxEventLoopUtilization` to be a number greater than 0 and less than 1, got 1$/,
    ],
  ] as const) {
    it(`throws a TypeError for ${JSON.stringify(options)}`, () => {
      assert.throws(() => loadSheddingGuard(options as never), { name: 'TypeError', message })
    })
  }
  it('refuses an option it does not know, and takes every documented one', () => {
    assert.throws(() => loadSheddingGuard({ maxInFlight: 10, maxEventLoopDelay: 200 } as never), {
      name: 'TypeError',
      message: /^Unknown option `maxEventLoopDelay` of loadShedding: expected one of maxEventLoopDelayMs,/,
    })
    assert.throws(() => loadSheddingGuard({ maxInflight: 10 } as never), {
      name: 'TypeError',
      message: /^Unknown option `maxInflight` of loadShedding/,
    })
    const { sampler } = injected()
    const guard = loadSheddingGuard({
      sampler,
      maxEventLoopDelayMs: 200,
      maxEventLoopUtilization: 0.98,
      maxHeapUsedBytes: 1e9,
      maxRssBytes: 2e9,
      maxInFlight: 10,
      softThresholdRatio: 0.8,
      minRetryAfterSeconds: 1,
      maxRetryAfterSeconds: 30,
      retryAfterJitterRatio: 0.5,
      random: () => 0,
    })
    assert.equal(guard(req, fakeResponse()), undefined)
    sampler.close()
  })
  it('raises the default maxRetryAfterSeconds to a minRetryAfterSeconds set above it', () => {
    const guard = loadSheddingGuard({ maxInFlight: 1, minRetryAfterSeconds: 40, retryAfterJitterRatio: 0 })
    guard(req, fakeResponse())
    assert.equal(refusal(() => guard(req, fakeResponse())).headers['retry-after'], '40')
  })

  it('takes the event-loop delay threshold as an ms string, like every other duration', () => {
    const { sampler, set } = injected()
    try {
      const guard = loadSheddingGuard({ sampler, maxEventLoopDelayMs: '0.2s' })
      set({ eventLoopDelayMs: 200 })
      assert.equal(guard(req, fakeResponse()), undefined)
      set({ eventLoopDelayMs: 201 })
      assert.equal(refusal(() => guard(req, fakeResponse())).details?.threshold, 200)
    } finally {
      sampler.close()
    }
  })

  it('throws a TypeError when options are missing', () => {
    assert.throws(() => loadSheddingGuard(undefined as never), {
      name: 'TypeError',
      message: /^Expected the options of `loadShedding` to be an object/,
    })
  })
})
