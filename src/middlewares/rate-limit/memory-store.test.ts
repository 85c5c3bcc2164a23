import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { MemoryStore } from './memory-store.ts'

const policy = { limit: 3, windowMs: 1000, blockMs: 0 }

function clock(start = 1_000_000) {
  const c = { t: start, now: () => c.t }
  return c
}

describe('MemoryStore', () => {
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
