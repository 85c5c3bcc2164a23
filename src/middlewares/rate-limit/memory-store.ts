import { knownOptions, numberOption, showValue } from '../../options.ts'
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
   * growing without bound. At most 16,777,216 (2²⁴), the most entries a JavaScript `Map` holds.
   * @default 1_000_000
   */
  readonly maxKeys?: number
  /** Clock, in ms (tests). Default: a monotonic clock (`performance.timeOrigin + performance.now()`), which no wall-clock step moves. */
  readonly now?: () => number
}

const BLOCKED = -1
// A V8 Map throws "Map maximum size exceeded" past 2^24 entries, and a full store could then take no new key.
const MAX_KEYS = 16_777_216
const INITIAL_SLOTS = 1024

/** Milliseconds on a clock no NTP step or manual change moves. */
const monotonicNow = (): number => performance.timeOrigin + performance.now()

/**
 * The default rate-limit store: one process's counters in memory. Bounded (`maxKeys`), and
 * expired keys are evicted as new ones arrive, with no timer to leak; keys leave in order of
 * their reset (expired first, then the nearest), found in a min-heap, so each call costs
 * O(log n) at most. Counters and the heap live in typed arrays beside one `Map` of
 * key → slot, so a million keys stay well under 200 MB of heap.
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
  #keys: (string | undefined)[] = []
  #used: Float64Array
  #resetAt: Float64Array
  // A binary min-heap of slots by reset time: its root is the key to evict first.
  #heap: Int32Array
  #heapIndex: Int32Array
  #free: number[] = []
  #next = 0

  constructor(options: Readonly<MemoryStoreOptions> = {}) {
    knownOptions(options, ['maxKeys', 'now'], 'MemoryStore')
    this.#maxKeys = numberOption('maxKeys', options.maxKeys === undefined ? 1_000_000 : options.maxKeys, {
      min: 1,
      max: MAX_KEYS,
      integer: true,
    })
    // A monotonic clock by default: a wall clock stepped back an hour stretched every window
    // and block by that hour.
    const now = options.now === undefined ? monotonicNow : options.now
    if (typeof now !== 'function')
      throw new TypeError(`Expected \`now\` to be a function, got ${showValue(now)}`)
    this.#now = now
    const size = Math.min(INITIAL_SLOTS, this.#maxKeys)
    this.#used = new Float64Array(size)
    this.#resetAt = new Float64Array(size)
    this.#heap = new Int32Array(size)
    this.#heapIndex = new Int32Array(size)
  }

  /** Number of keys held, expired ones not yet evicted included. */
  get size(): number {
    return this.#slots.size
  }

  consume(key: string, cost: number, policy: RateLimitPolicy): ConsumeResult {
    const now = this.#now()
    const slot = this.#slots.get(key)
    if (slot === undefined || (this.#resetAt[slot] as number) <= now) {
      if (cost > policy.limit) return { allowed: false, used: 0, resetMs: policy.windowMs }
      if (cost === 0) return { allowed: true, used: 0, resetMs: policy.windowMs }
      const fresh = slot ?? this.#insert(key, now)
      this.#used[fresh] = cost
      this.#schedule(fresh, now + policy.windowMs)
      return { allowed: true, used: cost, resetMs: policy.windowMs }
    }
    const used = this.#used[slot] as number
    const resetAt = this.#resetAt[slot] as number
    if (used === BLOCKED) return { allowed: false, used: policy.limit, resetMs: resetAt - now }
    if (used + cost > policy.limit) {
      if (policy.blockMs <= 0 || cost > policy.limit) return { allowed: false, used, resetMs: resetAt - now }
      const until = Math.max(resetAt, now + policy.blockMs)
      this.#used[slot] = BLOCKED
      this.#schedule(slot, until)
      return { allowed: false, used: policy.limit, resetMs: until - now }
    }
    this.#used[slot] = used + cost
    return { allowed: true, used: used + cost, resetMs: resetAt - now }
  }

  reset(key: string): void {
    const slot = this.#slots.get(key)
    if (slot !== undefined) this.#remove(slot)
  }

  /** Forgets every key. */
  clear(): void {
    this.#slots.clear()
    this.#keys = []
    this.#free = []
    this.#next = 0
  }

  #insert(key: string, now: number): number {
    this.#evict(now)
    let slot = this.#free.pop()
    if (slot === undefined) {
      slot = this.#next++
      if (slot >= this.#used.length) this.#grow()
    }
    this.#slots.set(key, slot)
    this.#keys[slot] = key
    const last = this.#slots.size - 1
    this.#heap[last] = slot
    this.#heapIndex[slot] = last
    // Later than any reset, so that the first #schedule() sifts it up from the bottom.
    this.#resetAt[slot] = Number.POSITIVE_INFINITY
    return slot
  }

  #evict(now: number): void {
    // Bounded: two expired keys per insert leave at the pace new ones arrive; a full store drops the nearest reset.
    for (let i = 0; i < 2 && this.#slots.size > 0; i++) {
      const root = this.#heap[0] as number
      if ((this.#resetAt[root] as number) > now) break
      this.#remove(root)
    }
    if (this.#slots.size >= this.#maxKeys) this.#remove(this.#heap[0] as number)
  }

  #remove(slot: number): void {
    this.#slots.delete(this.#keys[slot] as string)
    this.#keys[slot] = undefined
    this.#free.push(slot)
    const at = this.#heapIndex[slot] as number
    const last = this.#slots.size
    if (at === last) return
    const moved = this.#heap[last] as number
    this.#heap[at] = moved
    this.#heapIndex[moved] = at
    this.#siftUp(at)
    this.#siftDown(this.#heapIndex[moved] as number)
  }

  #schedule(slot: number, resetAt: number): void {
    const before = this.#resetAt[slot] as number
    this.#resetAt[slot] = resetAt
    const at = this.#heapIndex[slot] as number
    if (resetAt < before) this.#siftUp(at)
    else this.#siftDown(at)
  }

  #siftUp(from: number): void {
    const heap = this.#heap
    let at = from
    const slot = heap[at] as number
    const resetAt = this.#resetAt[slot] as number
    while (at > 0) {
      const parentAt = (at - 1) >> 1
      const parent = heap[parentAt] as number
      if ((this.#resetAt[parent] as number) <= resetAt) break
      heap[at] = parent
      this.#heapIndex[parent] = at
      at = parentAt
    }
    heap[at] = slot
    this.#heapIndex[slot] = at
  }

  #siftDown(from: number): void {
    const heap = this.#heap
    const count = this.#slots.size
    let at = from
    const slot = heap[at] as number
    const resetAt = this.#resetAt[slot] as number
    for (;;) {
      let childAt = 2 * at + 1
      if (childAt >= count) break
      const right = childAt + 1
      if (
        right < count &&
        (this.#resetAt[heap[right] as number] as number) < (this.#resetAt[heap[childAt] as number] as number)
      )
        childAt = right
      const child = heap[childAt] as number
      if ((this.#resetAt[child] as number) >= resetAt) break
      heap[at] = child
      this.#heapIndex[child] = at
      at = childAt
    }
    heap[at] = slot
    this.#heapIndex[slot] = at
  }

  #grow(): void {
    const size = Math.min(this.#maxKeys, this.#used.length * 2)
    this.#used = grown(this.#used, new Float64Array(size))
    this.#resetAt = grown(this.#resetAt, new Float64Array(size))
    this.#heap = grown(this.#heap, new Int32Array(size))
    this.#heapIndex = grown(this.#heapIndex, new Int32Array(size))
  }
}

function grown<T extends Float64Array | Int32Array>(from: T, to: T): T {
  to.set(from)
  return to
}
