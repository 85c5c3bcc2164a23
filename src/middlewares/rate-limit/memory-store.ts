import { knownOptions, numberOption } from '../../options.ts'
import type { ConsumeResult, RateLimitPolicy, RateLimitStore } from './store.ts'

/**
 * Options of {@link MemoryStore}.
 *
 * @example
 * const options: MemoryStoreOptions = { maxKeys: 100_000 }
 */
export interface MemoryStoreOptions {
  /**
   * Most keys held at once. When full, expired keys go first, then the key closest to its
   * reset: under a flood of distinct keys, some counters restart early rather than memory
   * growing without bound.
   * @default 1_000_000
   */
  readonly maxKeys?: number
  /** Clock, in ms (tests). @default Date.now */
  readonly now?: () => number
}

const BLOCKED = -1
const INITIAL_SLOTS = 1024

/**
 * The default rate-limit store: one process's counters in memory. Bounded (`maxKeys`), and
 * expired keys are evicted as new ones arrive, with no timer to leak. Counters live in typed
 * arrays beside one `Map` of key → slot, so a million keys stay well under 200 MB of heap.
 * Use {@link RedisStore} when several instances must share one limit.
 *
 * @example
 * import { MemoryStore } from 'image-api-errors'
 * app.use(rateLimit({ limit: 90, windowMs: '10s', store: new MemoryStore({ maxKeys: 200_000 }) }))
 */
export class MemoryStore implements RateLimitStore {
  readonly #maxKeys: number
  readonly #now: () => number
  readonly #slots = new Map<string, number>()
  #used: Float64Array
  #resetAt: Float64Array
  #free: number[] = []
  #next = 0

  constructor(options: Readonly<MemoryStoreOptions> = {}) {
    knownOptions(options, ['maxKeys', 'now'], 'MemoryStore')
    this.#maxKeys = numberOption('maxKeys', options.maxKeys ?? 1_000_000, {
      min: 1,
      max: 100_000_000,
      integer: true,
    })
    const now = options.now ?? Date.now
    if (typeof now !== 'function') throw new TypeError(`Expected \`now\` to be a function, got ${typeof now}`)
    this.#now = now
    const size = Math.min(INITIAL_SLOTS, this.#maxKeys)
    this.#used = new Float64Array(size)
    this.#resetAt = new Float64Array(size)
  }

  /** Number of keys held, expired ones not yet evicted included. */
  get size(): number {
    return this.#slots.size
  }

  consume(key: string, cost: number, policy: RateLimitPolicy): ConsumeResult {
    const now = this.#now()
    let slot = this.#slots.get(key)
    if (slot !== undefined && (this.#resetAt[slot] as number) <= now) {
      // Re-inserting a restarted key keeps the Map roughly ordered by reset time, which the eviction relies on.
      this.#slots.delete(key)
      this.#free.push(slot)
      slot = undefined
    }
    if (slot === undefined) {
      if (cost > policy.limit) return { allowed: false, used: 0, resetMs: policy.windowMs }
      if (cost === 0) return { allowed: true, used: 0, resetMs: policy.windowMs }
      slot = this.#insert(key, now + policy.windowMs, now)
      this.#used[slot] = cost
      return { allowed: true, used: cost, resetMs: policy.windowMs }
    }
    const used = this.#used[slot] as number
    const resetAt = this.#resetAt[slot] as number
    if (used === BLOCKED) return { allowed: false, used: policy.limit, resetMs: resetAt - now }
    if (used + cost > policy.limit) {
      if (policy.blockMs <= 0 || cost > policy.limit) return { allowed: false, used, resetMs: resetAt - now }
      this.#slots.delete(key)
      this.#free.push(slot)
      return this.#refuseNew(key, used, now, policy, resetAt)
    }
    this.#used[slot] = used + cost
    return { allowed: true, used: used + cost, resetMs: resetAt - now }
  }

  reset(key: string): void {
    const slot = this.#slots.get(key)
    if (slot === undefined) return
    this.#slots.delete(key)
    this.#free.push(slot)
  }

  /** Forgets every key. */
  clear(): void {
    this.#slots.clear()
    this.#free = []
    this.#next = 0
  }

  #refuseNew(
    key: string,
    used: number,
    now: number,
    policy: RateLimitPolicy,
    resetAt = now + policy.windowMs,
  ): ConsumeResult {
    if (policy.blockMs <= 0) return { allowed: false, used, resetMs: resetAt - now }
    const until = Math.max(resetAt, now + policy.blockMs)
    const slot = this.#insert(key, until, now)
    this.#used[slot] = BLOCKED
    return { allowed: false, used: policy.limit, resetMs: until - now }
  }

  #insert(key: string, resetAt: number, now: number): number {
    this.#evict(now)
    let slot = this.#free.pop()
    if (slot === undefined) {
      slot = this.#next++
      if (slot >= this.#used.length) this.#grow()
    }
    this.#slots.set(key, slot)
    this.#resetAt[slot] = resetAt
    return slot
  }

  #evict(now: number): void {
    // Amortised: each insert looks at the two oldest keys, so expired keys leave at the pace new ones arrive.
    let looked = 0
    for (const [key, slot] of this.#slots) {
      const full = this.#slots.size >= this.#maxKeys
      if (!full && (looked++ >= 2 || (this.#resetAt[slot] as number) > now)) break
      this.#slots.delete(key)
      this.#free.push(slot)
      if (full && this.#slots.size < this.#maxKeys && (this.#resetAt[slot] as number) > now) break
    }
  }

  #grow(): void {
    const size = Math.min(this.#maxKeys, this.#used.length * 2)
    const used = new Float64Array(size)
    used.set(this.#used)
    this.#used = used
    const resetAt = new Float64Array(size)
    resetAt.set(this.#resetAt)
    this.#resetAt = resetAt
  }
}
