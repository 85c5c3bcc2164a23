import { createHash } from 'node:crypto'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { isIP, type Socket } from 'node:net'
import { icError } from '../../errors.ts'
import { type Guard, isThenable } from '../../guard.ts'
import { durationMs, functionOption, knownOptions, numberOption, showValue } from '../../options.ts'
import { parseQuery } from '../../query.ts'
import { isBlockedAddress } from '../backend-fetch/address.ts'
import { clientAddress, ipKey, readTrustProxy, type TrustProxy } from './client-key.ts'
import { policyItem, readPolicyName, setRateLimitHeaders, sfString } from './headers.ts'
import { MemoryStore } from './memory-store.ts'
import { StoreDeadlineError } from './redis-store.ts'
import type { ConsumeResult, RateLimitPolicy, RateLimitStore } from './store.ts'

export { ipKey, type TrustProxy } from './client-key.ts'
export { MemoryStore, type MemoryStoreOptions } from './memory-store.ts'
export { RedisStore, type RedisStoreOptions, type SendCommand, StoreDeadlineError } from './redis-store.ts'
export type { ConsumeResult, RateLimitPolicy, RateLimitStore } from './store.ts'

/**
 * What a request is counted under: `'ip'` (the client address; IPv6 grouped by
 * `ipv6Subnet`), `'account'` (the `icac` query parameter, or the IP when there is none), or
 * a function returning the key, or a promise of it (`undefined` skips the limit for that
 * request; anything else but a string fails the request with a `TypeError`).
 *
 * @example
 * const byApiKey: RateLimitKey = (req) => String(req.headers['x-api-key'] ?? '')
 * const byTenant: RateLimitKey = async (req) => (await findTenant(req))?.id
 */
export type RateLimitKey =
  | 'ip'
  | 'account'
  | ((req: IncomingMessage) => string | undefined | PromiseLike<string | undefined>)

/**
 * Options of `rateLimit()`.
 *
 * @example
 * const options: RateLimitOptions = { limit: 90, windowMs: '10s', blockMs: '1m', key: 'ip', trustProxy: 1 }
 */
export interface RateLimitOptions {
  /** Units allowed per window and key (a request costs 1 unless `cost` says otherwise); at most 10¹². */
  readonly limit: number
  /** Length of the window; it starts at a key's first request. Milliseconds or an `ms` string, at most 366 days. */
  readonly windowMs: number | string
  /**
   * What one request costs, e.g. by output area, or a promise of it. A result that is not a
   * number ≥ 0 (`NaN`, a negative, a non-number) counts as 1; fractions are rounded up. A
   * request costing more than `limit` (`Infinity` included) is refused with 403
   * `IC_COST_OVER_LIMIT`, without being counted or blocking its key.
   * @default () => 1
   */
  readonly cost?: (req: IncomingMessage) => number | PromiseLike<number>
  /** What requests are counted under. @default 'ip' */
  readonly key?: RateLimitKey
  /**
   * Which proxies may be believed about the client address (for `'ip'` keys, and `'account'`
   * requests without `icac`). The core sees only the node request, so Express's `trust proxy`
   * and Koa's `app.proxy` are not read: set the same number of hops here. Never trust
   * `X-Forwarded-For` without a proxy that overwrites it.
   * @default false (the socket's peer address)
   */
  readonly trustProxy?: TrustProxy
  /** Prefix length IPv6 clients are grouped by (one subscriber usually holds a /56 or /64). @default 56 */
  readonly ipv6Subnet?: number
  /** Once refused, a key stays refused this long (or to its window's end, if later); at most 366 days. @default 0 */
  readonly blockMs?: number | string
  /**
   * Where counters live: an object with `consume` and `reset` (see {@link RateLimitStore}),
   * checked at construction.
   * @default a new MemoryStore() per limiter
   */
  readonly store?: RateLimitStore
  /** When the store fails or is slower than `storeTimeoutMs`: serve the request (true) or refuse with 503 `IC_STORE_UNAVAILABLE` (false). @default true */
  readonly failOpen?: boolean
  /**
   * Longest wait for the store before it counts as failed. Event-loop lag counts against it;
   * a timer a stall made fire late gives the store this much more, once per request (a
   * `StoreDeadlineError` then is asked again, with the new deadline).
   * @default 200
   */
  readonly storeTimeoutMs?: number | string
  /**
   * Told about every store failure (errors and timeouts), whether the request was then
   * served or refused. It may be `async`: nothing waits for its promise. Errors it throws, and
   * the rejection of the promise it returns, are swallowed.
   * @default prints a warning, at most once every 10 s
   */
  readonly onStoreError?:
    | ((error: unknown, req: IncomingMessage) => void)
    | ((error: unknown, req: IncomingMessage) => PromiseLike<void>)
  /** Skips the limit (no count, no headers) for requests it returns true (or a promise of true) for. */
  readonly skip?: (req: IncomingMessage) => boolean | PromiseLike<boolean>
  /**
   * Policy name in the `RateLimit` headers and the store keys.
   * @default `${limit}-in-${seconds}s` for a whole number of seconds, else `${limit}-in-${windowMs}ms`
   */
  readonly name?: string
  /** Send the IETF `RateLimit` and `RateLimit-Policy` headers. @default true */
  readonly headers?: boolean
}

const RATE_LIMIT_OPTIONS = [
  'limit',
  'windowMs',
  'cost',
  'key',
  'trustProxy',
  'ipv6Subnet',
  'blockMs',
  'store',
  'failOpen',
  'storeTimeoutMs',
  'onStoreError',
  'skip',
  'name',
  'headers',
] as const satisfies readonly (keyof RateLimitOptions)[]

const KEY_MAX = 200
// Windows and blocks are compared with the clock, never set as timers: they may pass the 24.8-day timer maximum.
const WINDOW_MAX_MS = 366 * 86_400_000

function hashedKey(key: string): string {
  return key.length <= KEY_MAX ? key : `sha256:${createHash('sha256').update(key).digest('base64url')}`
}

// Exact, so that limiters sharing a store have distinct names unless their policies are the same.
function defaultPolicyName(limit: number, windowMs: number): string {
  return windowMs % 1000 === 0 ? `${limit}-in-${windowMs / 1000}s` : `${limit}-in-${windowMs}ms`
}

let lastWarning = 0
function defaultOnStoreError(error: unknown): void {
  const now = Date.now()
  if (now - lastWarning < 10_000) return
  lastWarning = now
  console.warn('[image-api-errors] rate-limit store failed; further failures are silent for 10 s:', error)
}

/**
 * What `onStoreError` receives when the store did not answer within `storeTimeoutMs`.
 *
 * @example
 * const onStoreError = (e: unknown) => {
 *   if (e instanceof StoreTimeoutError) metrics.increment('rate_limit_store_slow')
 * }
 */
export class StoreTimeoutError extends Error {
  override name = 'StoreTimeoutError'
}

/**
 * What `rateLimit()` (either adapter's), `imageChartsRateLimits()` and their core guards
 * carry besides the check itself.
 *
 * @example
 * const limiter: RateLimitReset = rateLimitGuard({ limit: 90, windowMs: '10s' })
 * await limiter.resetKey('203.0.113.7') // that client may send again at once
 */
export interface RateLimitReset {
  /**
   * Forgets a client's count and block, in the limiter's store, e.g. after a support request.
   * Give what the limiter keys by: the client's IP address for `key: 'ip'` (an IPv6 address
   * resets its whole `/ipv6Subnet` group), an account id (`icac`) or an IP address for
   * `'account'` (an address resets both forms), your function's key for a function. It is
   * turned into the store key as the limiter turns a request into one (policy name, IPv6
   * group, hashing of long keys). Rejects with a `TypeError` for a `'ip'` limiter given
   * something that is not an IP address; otherwise resolves once the store forgot the key.
   */
  readonly resetKey: (keyOrAddress: string) => Promise<void>
}

/**
 * `middleware` with the `resetKey()` of `guard`, when the guard is a limiter's: both
 * adapters' `fromGuard()` keep it, so that `rateLimit()` and `fromGuard(rateLimitGuard(…))`
 * can unblock a client. Internal.
 *
 * @example
 * const guard = rateLimitGuard({ limit: 90, windowMs: '10s' })
 * typeof withResetKey(() => {}, guard).resetKey // 'function'
 */
export function withResetKey<M extends object>(middleware: M, guard: Guard): M & Partial<RateLimitReset> {
  const { resetKey } = guard as Guard & Partial<RateLimitReset>
  return typeof resetKey === 'function' ? Object.assign(middleware, { resetKey }) : middleware
}

/**
 * A rate-limit guard and its {@link RateLimitReset.resetKey}.
 *
 * @example
 * const guard: RateLimitGuard = rateLimitGuard({ limit: 90, windowMs: '10s' })
 */
export type RateLimitGuard = Guard & RateLimitReset

/**
 * The rate-limit guard behind both adapters' `rateLimit()`: counts each request's cost
 * against `limit` per window and key; sets the IETF `RateLimit` / `RateLimit-Policy`
 * headers on every counted response, and refuses with 429 `IC_RATE_LIMITED` and
 * `Retry-After` once the limit is reached. A request it meets twice (mounted app-wide and
 * on a route) is counted once.
 *
 * `resetKey(keyOrAddress)` forgets a client's count and block.
 *
 * @example
 * const guard = rateLimitGuard({ limit: 90, windowMs: '10s' })
 */
export function rateLimitGuard(options: Readonly<RateLimitOptions>): RateLimitGuard {
  return limiterGuard(options, undefined)
}

/**
 * What several limiters made together (`imageChartsRateLimits()`) share: misconfiguration
 * warnings, printed once between them and naming what the app called, not each policy; and
 * each request's wait for their one store, so that it waits `storeTimeoutMs` at most and a
 * store failure is reported once.
 */
interface Shared {
  readonly owner: string
  readonly warned: Set<string>
  /** The wait of a request whose store call an earlier limiter awaited. */
  readonly waits: WeakMap<IncomingMessage, StoreWait>
  /** Requests an earlier limiter's store call failed for (and, failing open, served). */
  readonly failed: WeakSet<IncomingMessage>
}

/** {@link rateLimitGuard}, sharing warnings and store waits with other limiters when `shared` is given. */
function limiterGuard(options: Readonly<RateLimitOptions>, shared: Shared | undefined): RateLimitGuard {
  knownOptions(options, RATE_LIMIT_OPTIONS, 'rateLimit')
  const limit = numberOption('limit', options.limit, { min: 0, max: 1e12, integer: true })
  const windowMs = durationMs('windowMs', options.windowMs, { max: WINDOW_MAX_MS })
  const blockMs =
    options.blockMs === undefined ? 0 : durationMs('blockMs', options.blockMs, { min: 0, max: WINDOW_MAX_MS })
  const storeTimeoutMs = durationMs(
    'storeTimeoutMs',
    options.storeTimeoutMs === undefined ? 200 : options.storeTimeoutMs,
    { max: 60_000 },
  )
  const cost = functionOption('cost', options.cost)
  const skip = functionOption('skip', options.skip)
  const onStoreError = functionOption('onStoreError', options.onStoreError) ?? defaultOnStoreError
  const trust = readTrustProxy(options.trustProxy)
  const ipv6Subnet = numberOption('ipv6Subnet', options.ipv6Subnet === undefined ? 56 : options.ipv6Subnet, {
    min: 8,
    max: 128,
    integer: true,
  })
  const key = options.key === undefined ? 'ip' : options.key
  if (key !== 'ip' && key !== 'account' && typeof key !== 'function')
    throw new TypeError(`Expected \`key\` to be 'ip', 'account' or a function, got ${showValue(key)}`)
  if (options.failOpen !== undefined && typeof options.failOpen !== 'boolean')
    throw new TypeError(`Expected \`failOpen\` to be a boolean, got ${showValue(options.failOpen)}`)
  const failOpen = options.failOpen !== false
  if (options.headers !== undefined && typeof options.headers !== 'boolean')
    throw new TypeError(`Expected \`headers\` to be a boolean, got ${showValue(options.headers)}`)
  const headers = options.headers !== false
  const store = options.store === undefined ? new MemoryStore() : options.store
  checkStore(store)
  const name = readPolicyName(options.name === undefined ? defaultPolicyName(limit, windowMs) : options.name)
  const quotedName = sfString(name)
  const policyHeader = policyItem(name, limit, windowMs)
  const policy: RateLimitPolicy = Object.freeze({ limit, windowMs, blockMs })
  const prefix = `${name}:`

  // Behind a proxy that is not trusted, every client shares the proxy's key: told once per limiter
  // (or per set of limiters made together) and code.
  const warned = shared?.warned ?? new Set<string>()
  const owner = shared?.owner ?? `rateLimit() "${name}"`
  function warnOnce(code: string, message: string): void {
    if (warned.has(code)) return
    warned.add(code)
    const advice = 'Set trustProxy to the number of proxies in front of the app'
    process.emitWarning(`${owner} ${message}. ${advice}`, { code })
  }

  function warnUntrustedProxy(peer: string | undefined): void {
    if (peer !== undefined && isBlockedAddress(peer))
      warnOnce(
        'IMAGE_API_ERRORS_UNTRUSTED_FORWARDED_FOR',
        `got X-Forwarded-For from ${peer} with trustProxy false: every client behind that proxy shares one limit`,
      )
  }

  function ipOf(req: IncomingMessage): string {
    const remote = req.socket?.remoteAddress
    // Asked of the listener: a TCP client that resets its connection leaves no address either.
    const local = remote === undefined && onUnixListener(req.socket)
    const address = clientAddress(remote, req.headers['x-forwarded-for'], trust, local)
    if (address !== undefined) return `ip:${ipKey(address, ipv6Subnet)}`
    if (trust === false && local)
      warnOnce(
        'IMAGE_API_ERRORS_NO_CLIENT_ADDRESS',
        'got a request from a peer without an address (a Unix socket) with trustProxy false: every client shares one limit',
      )
    return 'ip:unknown'
  }

  // Without a trusted proxy the key depends on the socket alone, so a keep-alive connection computes it once.
  const socketKeys = key === 'ip' && trust === false ? new WeakMap<Socket, string>() : undefined
  // The peer is judged once per connection, on its first request that carries X-Forwarded-For.
  const forwardingSockets = new WeakSet<Socket>()

  // A thenable is the custom key function's pending answer, checked by customKey() once settled.
  function storeKeyOf(req: IncomingMessage): string | undefined | PromiseLike<unknown> {
    const socket = req.socket as Socket | null | undefined
    if (socketKeys !== undefined && socket != null) {
      let cached = socketKeys.get(socket)
      if (cached === undefined) {
        cached = prefix + ipOf(req)
        socketKeys.set(socket, cached)
      }
      if (req.headers['x-forwarded-for'] !== undefined && !forwardingSockets.has(socket)) {
        forwardingSockets.add(socket)
        warnUntrustedProxy(socket.remoteAddress)
      }
      return cached
    }
    if (key === 'ip') return prefix + ipOf(req)
    if (key === 'account') {
      const account = parseQuery(req).values.get('icac')
      if (account !== undefined && account !== '') return hashedKey(`${prefix}account:${account}`)
      if (trust === false && req.headers['x-forwarded-for'] !== undefined)
        warnUntrustedProxy(req.socket?.remoteAddress)
      return prefix + ipOf(req)
    }
    const custom = key(req)
    return isThenable(custom) ? custom : customKey(custom)
  }

  // String()-ing another value would count every request under one key ("[object Object]").
  function customKey(custom: unknown): string | undefined {
    if (custom === undefined) return undefined
    if (typeof custom !== 'string')
      throw new TypeError(
        `Expected the \`key\` function of rateLimit() to return a string or undefined, got ${showValue(custom)}`,
      )
    return hashedKey(prefix + custom)
  }

  function unitsOf(value: unknown): number {
    // Infinity is more than any limit, as 1e300 is; NaN and the like are a malformed input's.
    if (value === Number.POSITIVE_INFINITY) return value
    return typeof value === 'number' && Number.isFinite(value) && value >= 0 ? Math.ceil(value) : 1
  }

  function apply(req: IncomingMessage, res: ServerResponse, result: ConsumeResult): undefined {
    if (
      typeof result !== 'object' ||
      result === null ||
      typeof result.allowed !== 'boolean' ||
      !Number.isFinite(result.used) ||
      !Number.isFinite(result.resetMs)
    )
      return storeFailed(new TypeError(`The rate-limit store answered ${showValue(result)}`), req)
    const resetSeconds = Math.max(0, Math.ceil(result.resetMs / 1000))
    if (headers) {
      const remaining = Math.max(0, Math.min(limit, limit - result.used))
      setRateLimitHeaders(res, quotedName, policyHeader, remaining, resetSeconds)
    }
    if (result.allowed) return undefined
    throw icError('IC_RATE_LIMITED', {
      message: `Rate limit of ${limit} per ${windowMs / 1000} s reached; retry in ${Math.max(1, resetSeconds)} s`,
      retryAfterSeconds: Math.max(1, resetSeconds),
    })
  }

  // Counted nowhere and no block: waiting cannot make it fit, so the message says so.
  function refuseTooCostly(units: number): never {
    throw icError('IC_COST_OVER_LIMIT', {
      message: `This request costs ${units} ${units === 1 ? 'unit' : 'units'}, more than the whole limit of ${limit} per ${windowMs / 1000} s: it can never pass, retrying will not help`,
      // JSON has no Infinity (it would read null).
      details: { cost: Number.isFinite(units) ? units : String(units), limit },
    })
  }

  function storeFailed(error: unknown, req: IncomingMessage): undefined {
    shared?.failed.add(req)
    try {
      const returned: unknown = onStoreError(error, req)
      // An async hook's rejection would otherwise be unhandled, which ends the process.
      if (isThenable(returned)) Promise.resolve(returned).catch(() => {})
    } catch {
      // A failing hook must not turn a served request into a 500.
    }
    if (failOpen) return undefined
    throw icError('IC_STORE_UNAVAILABLE', { cause: error, stack: false })
  }

  // The responses this limiter counted: one a request meets twice (mounted app-wide and on its
  // route) counts it once, and sets its RateLimit items once.
  const counted = new WeakSet<ServerResponse>()

  // skip, key and cost may answer with promises: each is awaited only when it does, so that
  // plain answers and a synchronous store keep the whole check synchronous.
  function keyed(req: IncomingMessage, res: ServerResponse): undefined | Promise<undefined> {
    const storeKey = storeKeyOf(req)
    return isThenable(storeKey)
      ? Promise.resolve(storeKey).then((custom) => priced(req, res, customKey(custom)))
      : priced(req, res, storeKey)
  }

  function priced(
    req: IncomingMessage,
    res: ServerResponse,
    storeKey: string | undefined,
  ): undefined | Promise<undefined> {
    if (storeKey === undefined) return undefined
    const value = cost === undefined ? 1 : cost(req)
    return isThenable(value)
      ? Promise.resolve(value).then((units) => count(req, res, storeKey, unitsOf(units)))
      : count(req, res, storeKey, unitsOf(value))
  }

  function count(
    req: IncomingMessage,
    res: ServerResponse,
    storeKey: string,
    units: number,
  ): undefined | Promise<undefined> {
    if (units > limit) refuseTooCostly(units)
    counted.add(res)
    // The store failed for an earlier limiter of this request, which served it (failing closed,
    // it refused it): asked again, the store would make the request wait, and be reported, twice.
    if (shared?.failed.has(req)) return undefined
    const earlier = shared?.waits.get(req)
    const dueMs = earlier?.dueMs ?? Date.now() + storeTimeoutMs
    if (earlier !== undefined && dueMs <= Date.now())
      return storeFailed(
        new StoreTimeoutError(
          `The rate-limit store was not asked: the request's ${storeTimeoutMs} ms went to the policies before "${name}"`,
        ),
        req,
      )
    let out: ConsumeResult | PromiseLike<ConsumeResult>
    try {
      out = store.consume(storeKey, units, policy, dueMs)
    } catch (error) {
      return storeFailed(error, req)
    }
    if (!isThenable(out)) return apply(req, res, out)
    const wait: StoreWait = earlier ?? { dueMs, timeoutMs: storeTimeoutMs, stalled: false }
    if (earlier === undefined) shared?.waits.set(req, wait)
    const ask = (deadlineMs: number) => store.consume(storeKey, units, policy, deadlineMs)
    return waitForStore(out, wait, ask).then(
      (result) => apply(req, res, result),
      (error: unknown) => storeFailed(error, req),
    )
  }

  function ipStoreKey(address: string): string {
    return `${prefix}ip:${ipKey(address, ipv6Subnet)}`
  }

  // The store keys a request of this client was counted under: the argument read as storeKeyOf() reads a request.
  function storeKeysOf(keyOrAddress: string): string[] {
    if (typeof keyOrAddress !== 'string')
      throw new TypeError(
        `Expected the key or address to reset to be a string, got ${showValue(keyOrAddress)}`,
      )
    const address = isIP(keyOrAddress) !== 0
    if (key === 'ip') {
      if (!address)
        throw new TypeError(
          `rateLimit() "${name}" is keyed by 'ip': expected an IP address to reset, got ${showValue(keyOrAddress)}`,
        )
      return [ipStoreKey(keyOrAddress)]
    }
    if (key === 'account') {
      const account = hashedKey(`${prefix}account:${keyOrAddress}`)
      return address ? [account, ipStoreKey(keyOrAddress)] : [account]
    }
    return [hashedKey(prefix + keyOrAddress)]
  }

  async function resetKey(keyOrAddress: string): Promise<void> {
    const keys = storeKeysOf(keyOrAddress)
    await Promise.all(keys.map((storeKey) => store.reset(storeKey)))
  }

  function rateLimit(req: IncomingMessage, res: ServerResponse): undefined | Promise<undefined> {
    if (counted.has(res)) return undefined
    const skipped = skip?.(req)
    if (isThenable(skipped))
      return Promise.resolve(skipped).then((value) => (value === true ? undefined : keyed(req, res)))
    return skipped === true ? undefined : keyed(req, res)
  }
  return Object.assign(rateLimit, { resetKey })
}

/**
 * Runs guards one after the other, each only when the previous one let the request through
 * (an asynchronous one once it resolved), and publishes what they publish, merged in order
 * (a later guard's value of a name wins), as the same guards mounted one by one would;
 * `undefined` when none publishes anything; nothing is published when a guard refuses (one
 * by one, what the earlier guards published would already be on `res.locals`). Synchronous
 * while every guard is. Not atomic
 * across guards: what an earlier limiter counted stays counted when a later one refuses, so
 * put the limiter that refuses most often first.
 *
 * @example
 * const checks = chainGuards([apiKeyGuard({ keys: { [key]: ['images:read'] } }), rateLimitGuard(a), rateLimitGuard(b)])
 * app.use(fromGuard(checks, 'checks')) // the handler gets res.locals.apiKey
 */
export function chainGuards(guards: readonly Guard[]): Guard {
  const run = (
    req: IncomingMessage,
    res: ServerResponse,
    from: number,
    published: Record<string, unknown> | undefined,
  ): ReturnType<Guard> => {
    let merged = published
    for (let i = from; i < guards.length; i++) {
      const out = (guards[i] as Guard)(req, res)
      if (isThenable(out))
        return Promise.resolve(out).then((values) => run(req, res, i + 1, mergeValues(merged, values)))
      merged = mergeValues(merged, out)
    }
    return merged
  }
  return (req, res) => run(req, res, 0, undefined)
}

/** `values` added to `merged`, a copy made on the first: a guard's own object is not changed. */
function mergeValues(
  merged: Record<string, unknown> | undefined,
  values: unknown,
): Record<string, unknown> | undefined {
  if (values === undefined || values === null) return merged
  return Object.assign(merged ?? {}, values)
}

/**
 * Options of the Image-Charts presets: the store and proxy settings both of its limits share.
 *
 * @example
 * const options: ImageChartsRateLimitsOptions = { trustProxy: 1, store: new RedisStore({ sendCommand }) }
 */
export type ImageChartsRateLimitsOptions = Pick<
  RateLimitOptions,
  'store' | 'trustProxy' | 'ipv6Subnet' | 'failOpen' | 'storeTimeoutMs' | 'onStoreError' | 'headers'
>

const IMAGE_CHARTS_RATE_LIMITS_OPTIONS = [
  'store',
  'trustProxy',
  'ipv6Subnet',
  'failOpen',
  'storeTimeoutMs',
  'onStoreError',
  'headers',
] as const satisfies readonly (keyof ImageChartsRateLimitsOptions)[]

/**
 * Image-Charts' published limits, as two policies: 10 per minute per IP for unsigned requests
 * (`ic-unsigned`: no `icac` and `ichm`), then 90 requests per 10 s per IP (`ic-per-ip`); a
 * client over either stays blocked for one minute. A request refused by `ic-unsigned` counts
 * in neither; one refused by `ic-per-ip` has used its unsigned unit (two keys: no atomic
 * count across both). Mount it before the signature check, so that forged signatures count
 * per IP too: they skip the unsigned quota, but the signature check then refuses them.
 * Both policies share one `storeTimeoutMs` per request; once the store failed for the first,
 * the second does not ask it, and the failure is reported once.
 *
 * `resetKey(address)` forgets a client's counts and blocks in both policies.
 *
 * @example
 * const guard = imageChartsRateLimitsGuard({ trustProxy: 1 })
 */
export function imageChartsRateLimitsGuard(
  options: Readonly<ImageChartsRateLimitsOptions> = {},
): RateLimitGuard {
  // Checked here too: rateLimitGuard would take a `limit` or `key`, which the presets below override.
  knownOptions(options, IMAGE_CHARTS_RATE_LIMITS_OPTIONS, 'imageChartsRateLimits')
  // Read by name, not spread: a spread would drop options inherited from a prototype.
  const given: { -readonly [K in keyof ImageChartsRateLimitsOptions]?: ImageChartsRateLimitsOptions[K] } = {}
  for (const name of IMAGE_CHARTS_RATE_LIMITS_OPTIONS)
    if (options[name] !== undefined) (given as Record<string, unknown>)[name] = options[name]
  const shared = {
    ...given,
    store: options.store === undefined ? new MemoryStore() : options.store,
    key: 'ip' as const,
    blockMs: 60_000,
  }
  // Both policies see the same requests: a misconfiguration is told once, not once per policy.
  const together: Shared = {
    owner: 'imageChartsRateLimits()',
    warned: new Set(),
    waits: new WeakMap(),
    failed: new WeakSet(),
  }
  const limiters = [
    limiterGuard(
      {
        ...shared,
        name: 'ic-unsigned',
        limit: 10,
        windowMs: 60_000,
        skip: (req) => {
          const { values } = parseQuery(req)
          return values.has('icac') && values.has('ichm')
        },
      },
      together,
    ),
    limiterGuard({ ...shared, name: 'ic-per-ip', limit: 90, windowMs: 10_000 }, together),
  ]
  // The unsigned quota first: it refuses far more often, and what it refuses then counts in neither policy.
  return Object.assign(chainGuards(limiters), {
    resetKey: async (address: string) => {
      await Promise.all(limiters.map((limiter) => limiter.resetKey(address)))
    },
  })
}

/** How long a request still waits for its store: one deadline, and one more window after a stall. */
interface StoreWait {
  /** Unix ms: when the limiter stops waiting (the deadline each store call carries). */
  dueMs: number
  readonly timeoutMs: number
  /** Whether the one more window that a stall of the event loop grants was given. */
  stalled: boolean
}

/**
 * Waits for `first` until `wait.dueMs`, then rejects with a `StoreTimeoutError`. Two things
 * keep a stall of the event loop (GC, synchronous work of another request) from being taken
 * for a slow store:
 * - the rejection waits one turn of the loop: timers run before the poll phase that reads
 *   sockets, so a reply received during the stall is read first, and wins;
 * - a timer the loop ran late by a stall gives the store `timeoutMs` more, once per request.
 *   A command the client wrote only after the stall carried a deadline already past: a
 *   `StoreDeadlineError` says it counted nothing, so it is sent once more with the new
 *   deadline, and cannot count twice. Any other answer of the first call is waited for.
 */
function waitForStore(
  first: PromiseLike<ConsumeResult>,
  wait: StoreWait,
  ask: (deadlineMs: number) => ConsumeResult | PromiseLike<ConsumeResult>,
): Promise<ConsumeResult> {
  // Late by less is the jitter of a busy loop; a retry then would double the wait of every
  // request while a loaded server's store is down.
  const stallMs = Math.max(20, wait.timeoutMs / 10)
  return new Promise((resolve, reject) => {
    let settled = false
    let granted = false
    let resent = false
    let timer: ReturnType<typeof setTimeout> | undefined
    // On the monotonic clock: a stepped wall clock is no stall.
    let firesAt = 0
    const finish = (settle: () => void) => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      settle()
    }
    const overdue = () => performance.now() - firesAt > stallMs
    const arm = () => {
      const delayMs = Math.max(0, wait.dueMs - Date.now())
      firesAt = performance.now() + delayMs
      const armed = setTimeout(() => {
        // Granted at once, even if the answer is read in the turn below: a later limiter of
        // the same request (imageChartsRateLimits()) then waits within the new deadline.
        const extend = overdue() && !wait.stalled
        if (extend) grant()
        setImmediate(() => {
          // A deadline error read in between may have armed the timer anew.
          if (settled || timer !== armed) return
          if (extend) {
            arm()
            return
          }
          const more = wait.stalled
            ? `, nor within ${wait.timeoutMs} ms more after the event loop stalled`
            : ''
          finish(() =>
            reject(
              new StoreTimeoutError(`The rate-limit store did not answer within ${wait.timeoutMs} ms${more}`),
            ),
          )
        })
      }, delayMs)
      timer = armed
    }
    const grant = () => {
      wait.stalled = true
      granted = true
      wait.dueMs = Date.now() + wait.timeoutMs
    }
    const listen = (pending: PromiseLike<ConsumeResult>) => {
      Promise.resolve(pending).then(
        (result) => finish(() => resolve(result)),
        (error: unknown) => {
          if (settled) return
          // The deadline error of a command written after a stall can be read before the late timer runs.
          if (!granted && error instanceof StoreDeadlineError && !wait.stalled && overdue()) {
            grant()
            clearTimeout(timer)
            arm()
          }
          if (!(error instanceof StoreDeadlineError) || resent || !granted) {
            finish(() => reject(error))
            return
          }
          resent = true
          let second: ConsumeResult | PromiseLike<ConsumeResult>
          try {
            second = ask(wait.dueMs)
          } catch (askError) {
            finish(() => reject(askError))
            return
          }
          if (isThenable(second)) listen(second)
          else finish(() => resolve(second))
        },
      )
    }
    arm()
    listen(first)
  })
}

// Both methods are checked here: a store of another interface would otherwise be accepted and
// then fail open on every request, so that nothing is ever limited.
function checkStore(store: unknown): asserts store is RateLimitStore {
  let got = showValue(store)
  if (typeof store === 'object' && store !== null) {
    const missing = (['consume', 'reset'] as const).filter(
      (method) => typeof (store as Record<string, unknown>)[method] !== 'function',
    )
    if (missing.length === 0) return
    const proto: unknown = Object.getPrototypeOf(store)
    const kind = proto === Object.prototype || proto === null ? 'an object' : got
    got = `${kind} without ${missing.map((method) => `${method}()`).join(' or ')}`
  }
  throw new TypeError(
    `Expected \`store\` to be a rate-limit store (an object with consume(key, cost, policy, deadlineMs) and reset(key), as MemoryStore and RedisStore; express-rate-limit's and rate-limiter-flexible's stores have another interface and do not fit), got ${got}`,
  )
}

/** Whether the connection came in on a Unix-socket listener, whose address is a path, not a host and port. */
function onUnixListener(socket: Socket | undefined): boolean {
  const server = (socket as { server?: { address?: () => unknown } } | undefined)?.server
  return typeof server?.address === 'function' && typeof server.address() === 'string'
}
