/**
 * The policy a store applies to one key, passed with every call so that one store can serve
 * several limiters.
 *
 * @example
 * const policy: RateLimitPolicy = { limit: 90, windowMs: 10_000, blockMs: 60_000 }
 */
export interface RateLimitPolicy {
  /** Units allowed per window. */
  readonly limit: number
  /** Length of a window, in ms; it starts at the key's first hit. */
  readonly windowMs: number
  /** Once a request is refused, the key stays refused this long (or to the window's end, if later). 0: no block. */
  readonly blockMs: number
}

/**
 * What a store answers for one request.
 *
 * @example
 * const result: ConsumeResult = { allowed: true, used: 12, resetMs: 4200 }
 */
export interface ConsumeResult {
  /** Whether the request fits: its cost was added to the window. */
  readonly allowed: boolean
  /** Units used in the window, this request included when allowed. */
  readonly used: number
  /** Milliseconds until the window (or the block) ends. */
  readonly resetMs: number
}

/**
 * A rate-limit store: the memory store, the Redis store, or your own. `consume` must be
 * atomic per key: add `cost` when `used + cost <= limit`, else refuse (and start the block
 * when `blockMs > 0`, unless `cost > limit`: such a request could never pass); a refused
 * request adds nothing.
 *
 * @example
 * const store: RateLimitStore = new MemoryStore({ maxKeys: 100_000 })
 */
export interface RateLimitStore {
  /**
   * Counts one request. `deadlineMs` (Unix time in ms) is when the limiter stops waiting and
   * serves or refuses without the answer: a store that can should count nothing it receives
   * later (a stalled server catching up), as `RedisStore` does, and reject with a
   * `StoreDeadlineError`, which the limiter may ask again after a stall of its event loop.
   */
  consume(
    key: string,
    cost: number,
    policy: RateLimitPolicy,
    deadlineMs?: number,
  ): ConsumeResult | Promise<ConsumeResult>
  /** Forgets a key (e.g. after a support request). */
  reset(key: string): void | Promise<void>
}
