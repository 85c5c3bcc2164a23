import { createHash } from 'node:crypto'
import { knownOptions, showValue } from '../../options.ts'
import type { ConsumeResult, RateLimitPolicy, RateLimitStore } from './store.ts'

/**
 * Sends one Redis command, given as an array of strings, and resolves with its reply. Any
 * client fits: node-redis `(args) => client.sendCommand(args)`, ioredis
 * `([name, ...rest]) => client.call(name, ...rest)`.
 *
 * @example
 * const sendCommand: SendCommand = (args) => client.sendCommand(args)
 */
export type SendCommand = (args: string[]) => Promise<unknown>

/**
 * Options of {@link RedisStore}.
 *
 * @example
 * const options: RedisStoreOptions = { sendCommand: (args) => client.sendCommand(args), prefix: 'charts:rl:' }
 */
export interface RedisStoreOptions {
  /** Sends a command through your client; see {@link SendCommand}. */
  readonly sendCommand: SendCommand
  /** Prefix of every key this store writes. @default 'ic-rl:' */
  readonly prefix?: string
}

// One round trip per request: read the window, refuse or count, start the block; keys carry their expiry.
// A command Redis runs after its deadline (Redis stalled, the limiter gave up and served) counts nothing.
// Every reply carries Redis's clock, from which the store learns how far it is from ours.
const SCRIPT = `local cost = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local window = tonumber(ARGV[3])
local block = tonumber(ARGV[4])
local deadline = tonumber(ARGV[5])
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
if deadline > 0 and now > deadline then return {-1, 0, 0, now} end
local ttl = redis.call('PTTL', KEYS[1])
local used = 0
if ttl > 0 then
  used = tonumber(redis.call('GET', KEYS[1])) or 0
else
  ttl = window
end
if used < 0 then return {0, limit, ttl, now} end
if used + cost > limit then
  if block > 0 and cost <= limit then
    if block > ttl then ttl = block end
    redis.call('SET', KEYS[1], -1, 'PX', ttl)
    return {0, limit, ttl, now}
  end
  return {0, used, ttl, now}
end
if cost > 0 then
  if used == 0 then
    redis.call('SET', KEYS[1], cost, 'PX', ttl)
  else
    redis.call('INCRBY', KEYS[1], cost)
  end
end
return {1, used + cost, ttl, now}
`
/** How long a sample of the clock offset counts: offsets drift, and NTP steps clocks. */
const OFFSET_WINDOW_MS = 60_000
const SHA = createHash('sha1').update(SCRIPT).digest('hex')

/**
 * What `RedisStore` rejects with when Redis ran the command after the limiter's deadline
 * (Redis stalled): nothing was counted. `onStoreError` hears of it only when the limiter was
 * still waiting. A store of your own may reject with it too, when it counted nothing: after a
 * stall of the event loop the limiter then asks once more, with a new deadline.
 *
 * @example
 * const late = (e: unknown) => e instanceof StoreDeadlineError
 */
export class StoreDeadlineError extends Error {
  override name = 'StoreDeadlineError'
}

function isNoScript(error: unknown): boolean {
  const message = (error as { message?: unknown } | null)?.message
  return typeof message === 'string' && message.includes('NOSCRIPT')
}

/**
 * A rate-limit store in Redis, so that several instances behind a load balancer enforce one
 * limit. Each request is one atomic Lua script (`EVALSHA`, falling back to `EVAL` when Redis
 * lost its script cache), and every key expires in Redis with its window or block. It talks
 * through a `sendCommand` function, so it works with node-redis and ioredis alike; the
 * limiter's `storeTimeoutMs` and `failOpen` decide what a Redis outage does. A command that
 * reaches the script after the limiter's deadline (by Redis's clock) counts nothing and
 * rejects with a `StoreDeadlineError`: the limiter has already served or refused that request.
 *
 * @example
 * import { createClient } from 'redis'
 * import { RedisStore } from 'image-api-errors'
 * const client = await createClient({ url: process.env.REDIS_URL, disableOfflineQueue: true }).connect()
 * const store = new RedisStore({ sendCommand: (args) => client.sendCommand(args) })
 * app.use(rateLimit({ limit: 90, windowMs: '10s', store }))
 */
export class RedisStore implements RateLimitStore {
  readonly #send: SendCommand
  readonly #prefix: string
  // Redis's clock minus ours is at most (Redis's time in a reply) − (our time when the command
  // was sent); the smallest such bound of the last one or two windows is kept, and the
  // deadline is moved by it, so a skewed clock never expires a command that ran in time.
  #offsetMs: number | undefined
  #windowMinMs = Number.POSITIVE_INFINITY
  #previousMinMs = Number.POSITIVE_INFINITY
  #windowStartMs = 0

  constructor(options: Readonly<RedisStoreOptions>) {
    knownOptions(options, ['sendCommand', 'prefix'], 'RedisStore')
    if (typeof options.sendCommand !== 'function')
      throw new TypeError(`Expected \`sendCommand\` to be a function, got ${showValue(options.sendCommand)}`)
    const prefix = options.prefix === undefined ? 'ic-rl:' : options.prefix
    if (typeof prefix !== 'string' || prefix.length > 256)
      throw new TypeError(
        `Expected \`prefix\` to be a string of at most 256 characters, got ${showValue(prefix)}`,
      )
    this.#send = options.sendCommand
    this.#prefix = prefix
  }

  consume(key: string, cost: number, policy: RateLimitPolicy, deadlineMs?: number): Promise<ConsumeResult> {
    return this.#consume(key, cost, policy, deadlineMs, false)
  }

  async #consume(
    key: string,
    cost: number,
    policy: RateLimitPolicy,
    deadlineMs: number | undefined,
    relearnt: boolean,
  ): Promise<ConsumeResult> {
    // Until a reply told the clocks' offset, no deadline is checked: better count late than
    // expire every command under a skewed clock.
    const redisDeadlineMs =
      deadlineMs !== undefined && Number.isFinite(deadlineMs) && this.#offsetMs !== undefined
        ? Math.ceil(deadlineMs + this.#offsetMs) + 1
        : 0
    const args = [
      '1',
      this.#prefix + key,
      String(cost),
      String(policy.limit),
      String(policy.windowMs),
      String(policy.blockMs),
      String(redisDeadlineMs),
    ]
    let reply: unknown
    let sentAtMs = Date.now()
    try {
      reply = await this.#send(['EVALSHA', SHA, ...args])
    } catch (error) {
      if (!isNoScript(error)) throw error
      sentAtMs = Date.now()
      reply = await this.#send(['EVAL', SCRIPT, ...args])
    }
    if (!Array.isArray(reply) || reply.length !== 4)
      throw new TypeError(`Unexpected reply from Redis: ${showValue(reply)}`)
    const boundMs = Number(reply[3]) - sentAtMs
    this.#learnOffset(boundMs)
    if (Number(reply[0]) === -1) {
      // Answered before the deadline by our clock, so it ran in time: the learnt offset is stale
      // (a clock was stepped, or another Redis answers). Learn anew, and send it once more,
      // with the same deadline: a command Redis runs after it must still count nothing.
      if (!relearnt && deadlineMs !== undefined && Date.now() <= deadlineMs) {
        this.#restartOffset(boundMs)
        return this.#consume(key, cost, policy, deadlineMs, true)
      }
      throw new StoreDeadlineError(
        `Redis ran the command after its deadline (${redisDeadlineMs}, Unix ms by Redis's clock), and counted nothing`,
      )
    }
    return { allowed: Number(reply[0]) === 1, used: Number(reply[1]), resetMs: Number(reply[2]) }
  }

  #restartOffset(boundMs: number): void {
    this.#previousMinMs = Number.POSITIVE_INFINITY
    this.#windowMinMs = boundMs
    this.#windowStartMs = Date.now()
    this.#offsetMs = boundMs
  }

  #learnOffset(boundMs: number): void {
    if (!Number.isFinite(boundMs)) return
    const nowMs = Date.now()
    if (nowMs - this.#windowStartMs > OFFSET_WINDOW_MS) {
      this.#previousMinMs = this.#windowMinMs
      this.#windowMinMs = Number.POSITIVE_INFINITY
      this.#windowStartMs = nowMs
    }
    if (boundMs < this.#windowMinMs) this.#windowMinMs = boundMs
    this.#offsetMs = Math.min(this.#windowMinMs, this.#previousMinMs)
  }

  async reset(key: string): Promise<void> {
    await this.#send(['DEL', this.#prefix + key])
  }
}
