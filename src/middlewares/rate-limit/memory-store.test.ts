import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { MemoryStore } from './memory-store.ts'

const policy = { limit: 3, windowMs: 1000, blockMs: 0 }

function clock(start = 1_000_000) {
  const c = { t: start, now: () => c.t }
  return c
}

describe('MemoryStore', () => {
  it('keeps its windows on a monotonic clock: a wall clock stepped back stretches no block', () => {
    const realNow = Date.now
    let stepMs = 0
    Date.now = () => realNow() - stepMs
    try {
      const store = new MemoryStore()
      const blocking = { limit: 1, windowMs: 60_000, blockMs: 60_000 }
      store.consume('k', 1, blocking)
      assert.equal(store.consume('k', 1, blocking).allowed, false)
      stepMs = 3_600_000
      const refused = store.consume('k', 1, blocking)
      assert.equal(refused.allowed, false)
      assert.ok(refused.resetMs <= 60_000, `still blocked for ${refused.resetMs} ms`)
    } finally {
      Date.now = realNow
    }
  })

  it('counts costs per key and refuses without counting once the limit would be passed', () => {
    const c = clock()
    const store = new MemoryStore({ now: c.now })
    assert.deepEqual(store.consume('a', 1, policy), { allowed: true, used: 1, resetMs: 1000 })
    c.t += 400
    assert.deepEqual(store.consume('a', 2, policy), { allowed: true, used: 3, resetMs: 600 })
    assert.deepEqual(store.consume('a', 1, policy), { allowed: false, used: 3, resetMs: 600 })
    assert.deepEqual(store.consume('b', 1, policy), { allowed: true, used: 1, resetMs: 1000 })
    c.t += 600
    assert.deepEqual(store.consume('a', 1, policy), { allowed: true, used: 1, resetMs: 1000 }, 'a new window')
  })

  it('refuses a cost larger than the limit, and lets a zero cost through without storing it', () => {
    const store = new MemoryStore({ now: clock().now })
    assert.equal(store.consume('a', 4, policy).allowed, false)
    assert.deepEqual(store.consume('a', 0, policy), { allowed: true, used: 0, resetMs: 1000 })
    assert.equal(store.size, 0)
  })

  it('keeps a refused key blocked for blockMs, or to the window end if later', () => {
    const c = clock()
    const store = new MemoryStore({ now: c.now })
    const blocking = { limit: 1, windowMs: 1000, blockMs: 5000 }
    store.consume('a', 1, blocking)
    assert.deepEqual(store.consume('a', 1, blocking), { allowed: false, used: 1, resetMs: 5000 })
    c.t += 4000
    assert.deepEqual(store.consume('a', 0, blocking), { allowed: false, used: 1, resetMs: 1000 })
    c.t += 1000
    assert.equal(store.consume('a', 1, blocking).allowed, true)
    const long = { limit: 1, windowMs: 60_000, blockMs: 1000 }
    store.consume('b', 1, long)
    assert.equal(store.consume('b', 1, long).resetMs, 60_000)
    assert.deepEqual(store.consume('c', 1, blocking), { allowed: true, used: 1, resetMs: 1000 })
    assert.deepEqual(
      store.consume('c', 1, blocking),
      { allowed: false, used: 1, resetMs: 5000 },
      'then blocks',
    )
  })

  it('refuses a cost over the limit without blocking: it could never pass', () => {
    const store = new MemoryStore({ now: clock().now })
    const blocking = { limit: 10, windowMs: 10_000, blockMs: 60_000 }
    assert.deepEqual(store.consume('new', 11, blocking), { allowed: false, used: 0, resetMs: 10_000 })
    assert.equal(store.size, 0, 'a new key is not stored')
    assert.deepEqual(store.consume('new', 1, blocking), { allowed: true, used: 1, resetMs: 10_000 })
    assert.deepEqual(store.consume('new', 11, blocking), { allowed: false, used: 1, resetMs: 10_000 })
    assert.deepEqual(
      store.consume('new', 9, blocking),
      { allowed: true, used: 10, resetMs: 10_000 },
      'not blocked',
    )
  })

  it('evicts expired keys as new ones arrive', () => {
    const c = clock()
    const store = new MemoryStore({ now: c.now })
    for (let i = 0; i < 100; i++) store.consume(`old-${i}`, 1, policy)
    c.t += 1001
    for (let i = 0; i < 60; i++) store.consume(`new-${i}`, 1, policy)
    assert.equal(store.size, 60, 'each insert evicted up to two expired keys')
  })

  it('stays within maxKeys, dropping the key closest to its reset', () => {
    const c = clock()
    const store = new MemoryStore({ maxKeys: 10, now: c.now })
    for (let i = 0; i < 25; i++) {
      store.consume(`k${i}`, 1, policy)
      c.t += 1
      assert.ok(store.size <= 10)
    }
    assert.equal(store.size, 10)
    assert.equal(store.consume('k24', 1, policy).used, 2, 'the newest keys are kept')
    assert.equal(store.consume('k0', 1, policy).used, 1, 'the oldest was dropped')
  })

  it('evicts by reset time, not by arrival: a blocked key outlives live keys nearer their reset', () => {
    const c = clock()
    const store = new MemoryStore({ maxKeys: 5, now: c.now })
    const imageCharts = { limit: 2, windowMs: 10_000, blockMs: 60_000 }
    for (let i = 0; i < 3; i++) store.consume('attacker', 1, imageCharts)
    c.t += 1000
    for (let i = 0; i < 4; i++) store.consume(`k${i}`, 1, imageCharts)
    c.t += 1000
    store.consume('new', 1, imageCharts)
    assert.deepEqual(store.consume('attacker', 0, imageCharts), { allowed: false, used: 2, resetMs: 58_000 })
    assert.equal(store.size, 5)
  })

  it('evicts expired keys of one policy before live keys of another', () => {
    const c = clock()
    const store = new MemoryStore({ maxKeys: 5, now: c.now })
    const hour = { limit: 3, windowMs: 3_600_000, blockMs: 0 }
    const second = { limit: 100, windowMs: 1000, blockMs: 0 }
    store.consume('hour', 3, hour)
    for (let i = 0; i < 4; i++) store.consume(`s${i}`, 1, second)
    c.t += 5000
    for (let i = 0; i < 4; i++) store.consume(`t${i}`, 1, second)
    assert.equal(store.consume('hour', 1, hour).allowed, false, 'the live hour key kept its count')
  })

  it('keeps evicting expired keys behind one long-lived key', () => {
    const c = clock()
    const store = new MemoryStore({ now: c.now })
    store.consume('long', 1, { limit: 10, windowMs: 3_600_000, blockMs: 0 })
    for (let i = 0; i < 100_000; i++) {
      store.consume(`x${i}`, 1, policy)
      c.t += 1
    }
    assert.ok(store.size <= 1002, `about 1000 live keys held, not 100,000 (${store.size})`)
  })

  it('answers as a plain model, evicting only the live keys nearest their reset when full', () => {
    const c = clock()
    const maxKeys = 8
    const store = new MemoryStore({ maxKeys, now: c.now })
    const policies = [
      { limit: 3, windowMs: 1000, blockMs: 0 },
      { limit: 2, windowMs: 500, blockMs: 4000 },
      { limit: 5, windowMs: 3000, blockMs: 0 },
    ]
    const model = new Map<string, { used: number; resetAt: number; policy: (typeof policies)[number] }>()
    let seed = 42
    const random = (n: number) => {
      seed ^= seed << 13
      seed ^= seed >>> 17
      seed ^= seed << 5
      return (seed >>> 0) % n
    }
    for (let step = 0; step < 5000; step++) {
      c.t += random(120)
      const key = `k${random(40)}`
      const policy = model.get(key)?.policy ?? (policies[random(3)] as (typeof policies)[number])
      const cost = random(4)
      if (random(50) === 0) {
        store.reset(key)
        model.delete(key)
        continue
      }
      let entry = model.get(key)
      if (entry !== undefined && entry.resetAt <= c.t) entry = undefined
      let expected: { allowed: boolean; used: number; resetMs: number }
      if (entry === undefined) {
        if (cost > policy.limit || cost === 0)
          expected = { allowed: cost === 0, used: 0, resetMs: policy.windowMs }
        else {
          model.set(key, { used: cost, resetAt: c.t + policy.windowMs, policy })
          expected = { allowed: true, used: cost, resetMs: policy.windowMs }
        }
      } else if (entry.used === -1)
        expected = { allowed: false, used: policy.limit, resetMs: entry.resetAt - c.t }
      else if (entry.used + cost > policy.limit) {
        if (policy.blockMs > 0 && cost <= policy.limit) {
          entry.used = -1
          entry.resetAt = Math.max(entry.resetAt, c.t + policy.blockMs)
          expected = { allowed: false, used: policy.limit, resetMs: entry.resetAt - c.t }
        } else expected = { allowed: false, used: entry.used, resetMs: entry.resetAt - c.t }
      } else {
        entry.used += cost
        expected = { allowed: true, used: entry.used, resetMs: entry.resetAt - c.t }
      }
      assert.deepEqual(store.consume(key, cost, policy), expected, `step ${step}`)
      assert.ok(store.size <= maxKeys)
      const live = [...model].filter(([, e]) => e.resetAt > c.t)
      const evicted = live.filter(([k, e]) => {
        const probe = store.consume(k, 0, e.policy)
        return probe.allowed && probe.used === 0
      })
      for (const [k, e] of evicted) {
        // The key of this step arrived after the eviction made room for it.
        const kept = live.filter(([other]) => other !== key && !evicted.some(([gone]) => gone === other))
        assert.ok(
          kept.every(([, other]) => other.resetAt >= e.resetAt),
          `step ${step}: ${k} was evicted before a key nearer its reset`,
        )
        model.delete(k)
      }
    }
  })

  it('reuses slots of deleted keys, and forgets keys on reset() and clear()', () => {
    const store = new MemoryStore({ now: clock().now })
    for (let i = 0; i < 3000; i++) store.consume(`k${i}`, 1, policy)
    store.reset('k1')
    store.reset('missing')
    assert.equal(store.consume('k1', 1, policy).used, 1)
    assert.equal(store.consume('k2', 1, policy).used, 2)
    store.clear()
    assert.equal(store.size, 0)
    assert.equal(store.consume('k2', 1, policy).used, 1)
  })

  it('validates its options', () => {
    for (const maxKeys of [0, 1.5, -1, 'many'])
      assert.throws(() => new MemoryStore({ maxKeys: maxKeys as number }), {
        name: 'TypeError',
        message: /^Expected `maxKeys`/,
      })
    assert.throws(() => new MemoryStore({ maxKeys: 2 ** 24 + 1 }), {
      name: 'TypeError',
      message: /^Expected `maxKeys` to be an integer from 1 to 16777216, got 16777217/,
    })
    assert.equal(new MemoryStore({ maxKeys: 2 ** 24 }).size, 0, "a Map's most entries")
    assert.throws(() => new MemoryStore({ now: 5 as never }), {
      name: 'TypeError',
      message: /^Expected `now`/,
    })
  })

  it('refuses an option it does not know, and takes every documented one', () => {
    assert.throws(() => new MemoryStore({ maxkeys: 10 } as never), {
      name: 'TypeError',
      message: /^Unknown option `maxkeys` of MemoryStore: expected one of maxKeys, now$/,
    })
    assert.throws(() => new MemoryStore(null as never), {
      name: 'TypeError',
      message: /^Expected the options of `MemoryStore` to be an object, got null/,
    })
    const c = clock()
    const store = new MemoryStore({ maxKeys: 10, now: c.now })
    assert.equal(store.consume('k', 1, policy).used, 1)
    assert.equal(new MemoryStore().size, 0)
  })
})
