import { setTimeout as sleep } from 'node:timers/promises'
import { lookupErrorCode } from '../../catalogue.ts'
import { type Duration, durationMs, knownOptions, showValue } from '../../options.ts'

/**
 * The retry policy: only network errors, 429 and 502 are retried, after a truncated
 * exponential backoff with full jitter and at least `minDelayMs`; `Retry-After` is honoured
 * when it is within `maxDelayMs`, and a longer one stops the retries; nothing is retried
 * once the signal aborted.
 *
 * @example
 * const policy: RetryOptions = { maxAttempts: 4, minDelayMs: '1s', maxDelayMs: '20s' }
 */
export interface RetryOptions {
  /** Attempts in all, the first one included; `1` disables retries. @default 3 */
  readonly maxAttempts?: number
  /**
   * Shortest wait before a retry: milliseconds or an `ms` string; at least 1000 in
   * `fetchWithRetry` (image APIs ask for 1 s), at least 1 elsewhere. @default 1000
   */
  readonly minDelayMs?: Duration
  /** Longest wait before a retry, and the longest `Retry-After` honoured. @default 30000 */
  readonly maxDelayMs?: Duration
  /** Statuses that are retried. @default [429, 502] */
  readonly statuses?: readonly number[]
  /** Source of randomness in [0, 1) for the jitter. @default Math.random */
  readonly random?: () => number
  /** Called before each wait, for logs and metrics. */
  readonly onRetry?: (event: RetryEvent) => void
}

/**
 * What {@link RetryOptions.onRetry} receives before each wait.
 *
 * @example
 * const onRetry = (e: RetryEvent) => console.warn(`retry ${e.attempt} in ${e.delayMs} ms`, e.status ?? e.error)
 */
export interface RetryEvent {
  /** The attempt that just failed, from 1. */
  readonly attempt: number
  /** How long the wait before the next attempt is, in milliseconds. */
  readonly delayMs: number
  /** The retried status, when the attempt got a response. */
  readonly status?: number
  /** The network error, when the attempt got no response. */
  readonly error?: unknown
}

/**
 * The policy with its defaults applied and its durations in milliseconds.
 *
 * @example
 * const policy: RetryPolicy = createRetryPolicy({ maxDelayMs: '10s' })
 * policy.maxDelayMs // 10000
 */
export interface RetryPolicy {
  readonly maxAttempts: number
  readonly minDelayMs: number
  readonly maxDelayMs: number
  readonly statuses: ReadonlySet<number>
  readonly random: () => number
  readonly onRetry: ((event: RetryEvent) => void) | undefined
}

const DEFAULTS = { maxAttempts: 3, minDelayMs: 1000, maxDelayMs: 30_000, statuses: [429, 502] } as const
const RETRY_OPTIONS = [
  'maxAttempts',
  'minDelayMs',
  'maxDelayMs',
  'statuses',
  'random',
  'onRetry',
] as const satisfies readonly (keyof RetryOptions)[]

/**
 * Validates retry options once (a `TypeError` names the bad option, or one it does not know)
 * and applies the defaults.
 *
 * @example
 * const policy = createRetryPolicy({ maxAttempts: 5 })
 * policy.minDelayMs // 1000
 */
export function createRetryPolicy(options: Readonly<RetryOptions> = {}): RetryPolicy {
  return readRetryPolicy(options, 'createRetryPolicy')
}

/**
 * {@link createRetryPolicy} for a caller whose options hold more than the policy (`extra`,
 * known to that caller): `owner` names it in the error for an unknown option, and
 * `shortestDelayMs` is the least `minDelayMs` (and `maxDelayMs`) it accepts.
 *
 * @example
 * readRetryPolicy(options.retry, '`retry`') // createBackendFetch({ retry })
 * readRetryPolicy(options, 'fetchWithRetry', ['fetch'], { shortestDelayMs: 1000 })
 */
export function readRetryPolicy(
  options: Readonly<RetryOptions>,
  owner: string,
  extra: readonly string[] = [],
  { shortestDelayMs = 1 } = {},
): RetryPolicy {
  knownOptions(options, extra.length === 0 ? RETRY_OPTIONS : [...RETRY_OPTIONS, ...extra], owner)
  const maxAttempts = options.maxAttempts === undefined ? DEFAULTS.maxAttempts : options.maxAttempts
  if (!Number.isInteger(maxAttempts) || maxAttempts < 1 || maxAttempts > 100) {
    throw new TypeError(
      `Expected \`maxAttempts\` to be an integer from 1 to 100, got ${showValue(maxAttempts)}`,
    )
  }
  const minDelayMs = durationMs(
    'minDelayMs',
    options.minDelayMs === undefined ? DEFAULTS.minDelayMs : options.minDelayMs,
    { min: shortestDelayMs },
  )
  const maxDelayMs = durationMs(
    'maxDelayMs',
    options.maxDelayMs === undefined ? DEFAULTS.maxDelayMs : options.maxDelayMs,
    { min: shortestDelayMs },
  )
  if (maxDelayMs < minDelayMs) {
    throw new TypeError(
      `Expected \`maxDelayMs\` to be at least \`minDelayMs\` (${minDelayMs}), got ${maxDelayMs}`,
    )
  }
  const statuses = options.statuses === undefined ? DEFAULTS.statuses : options.statuses
  if (!Array.isArray(statuses) || !statuses.every((s) => Number.isInteger(s) && s >= 400 && s <= 599)) {
    throw new TypeError(
      `Expected \`statuses\` to be an array of 4xx/5xx statuses, got ${showValue(statuses)}`,
    )
  }
  const random = options.random === undefined ? Math.random : options.random
  if (typeof random !== 'function')
    throw new TypeError(`Expected \`random\` to be a function, got ${showValue(random)}`)
  const onRetry = options.onRetry
  if (onRetry !== undefined && typeof onRetry !== 'function') {
    throw new TypeError(`Expected \`onRetry\` to be a function, got ${showValue(onRetry)}`)
  }
  return { maxAttempts, minDelayMs, maxDelayMs, statuses: new Set(statuses), random, onRetry }
}

/**
 * The wait before retry number `attempt` (1 for the first retry): a random point between
 * `minDelayMs` and `min(maxDelayMs, minDelayMs · 2^attempt)` (truncated exponential
 * backoff, full jitter above the floor). A `Retry-After` within `maxDelayMs` is a floor on
 * top of that; a longer one returns `undefined`: do not retry.
 *
 * @example
 * const policy = createRetryPolicy({ random: () => 0.5 })
 * retryDelay(policy, 1) // 1500: halfway between 1 s and 2 s
 * retryDelay(policy, 1, 60_000) // undefined: the server asked for more than the cap
 */
export function retryDelay(policy: RetryPolicy, attempt: number, retryAfterMs?: number): number | undefined {
  if (!Number.isInteger(attempt) || attempt < 1)
    throw new TypeError(
      `Expected \`attempt\` to be an integer of at least 1 (1 for the first retry), got ${showValue(attempt)}`,
    )
  if (retryAfterMs !== undefined && !(typeof retryAfterMs === 'number' && retryAfterMs >= 0))
    throw new TypeError(
      `Expected \`retryAfterMs\` to be a number of at least 0 or undefined, got ${showValue(retryAfterMs)}`,
    )
  if (retryAfterMs !== undefined && retryAfterMs > policy.maxDelayMs) return undefined
  const ceiling = Math.min(policy.maxDelayMs, policy.minDelayMs * 2 ** Math.min(attempt, 52))
  const backoff = policy.minDelayMs + Math.floor(policy.random() * (ceiling - policy.minDelayMs))
  return Math.max(backoff, retryAfterMs ?? 0)
}

const DELTA_SECONDS = /^\d+$/
const MONTHS = ['jan', 'feb', 'mar', 'apr', 'may', 'jun', 'jul', 'aug', 'sep', 'oct', 'nov', 'dec']
const MONTH = '(?<month>Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)'
const TIME = '(?<hours>\\d\\d):(?<minutes>\\d\\d):(?<seconds>\\d\\d)'
/** RFC 9110 §5.6.7: IMF-fixdate, and the obsolete rfc850-date and asctime-date, all GMT. */
const HTTP_DATES = [
  new RegExp(`^(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), (?<day>\\d\\d) ${MONTH} (?<year>\\d{4}) ${TIME} GMT$`, 'i'),
  new RegExp(
    `^(?:Mon|Tues|Wednes|Thurs|Fri|Satur|Sun)day, (?<day>\\d\\d)-${MONTH}-(?<year>\\d\\d) ${TIME} GMT$`,
    'i',
  ),
  new RegExp(`^(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun) ${MONTH} (?<day>[ \\d]\\d) ${TIME} (?<year>\\d{4})$`, 'i'),
]

function parseHttpDate(text: string, now: number): number | undefined {
  let groups: Record<string, string> | undefined
  for (const form of HTTP_DATES) groups ??= form.exec(text)?.groups
  if (groups === undefined) return undefined
  const { day = '', month = '', year = '', hours = '', minutes = '', seconds = '' } = groups
  let fullYear = Number(year)
  if (year.length === 2) {
    // A two-digit year more than 50 years ahead is the most recent past one (RFC 9110 §5.6.7).
    const thisYear = new Date(now).getUTCFullYear()
    fullYear += thisYear - (thisYear % 100)
    if (fullYear > thisYear + 50) fullYear -= 100
  }
  const date = Number(day)
  // setUTCFullYear, unlike Date.UTC, neither maps years 0–99 to 19xx nor hides 31 Feb.
  const midnight = new Date(0).setUTCFullYear(fullYear, MONTHS.indexOf(month.toLowerCase()), date)
  if (new Date(midnight).getUTCDate() !== date) return undefined
  const [h, m, sec] = [Number(hours), Number(minutes), Number(seconds)]
  if (h > 23 || m > 59 || sec > 60) return undefined
  return midnight + ((h * 60 + m) * 60 + sec) * 1000
}

/**
 * Parses a `Retry-After` value, delta-seconds or an HTTP date (IMF-fixdate, or the obsolete
 * rfc850 and asctime forms RFC 9110 requires recipients to accept, all in GMT), into
 * milliseconds from `now` (never negative; delta-seconds of any length, `Infinity` past what a
 * number holds). Returns `undefined` for a missing or invalid value. Compare the result with
 * a cap of your own before scheduling: `setTimeout()` fires at once for anything over
 * 2,147,483,647 ms (about 24.8 days), `Infinity` included.
 *
 * @example
 * parseRetryAfter('120') // 120000
 * parseRetryAfter('9'.repeat(400)) // Infinity: longer than any cap
 * parseRetryAfter('Wed, 21 Oct 2015 07:28:00 GMT', Date.parse('Wed, 21 Oct 2015 07:27:30 GMT')) // 30000
 */
export function parseRetryAfter(
  value: string | null | undefined,
  now: number = Date.now(),
): number | undefined {
  if (typeof value !== 'string') return undefined
  const text = value.trim()
  if (DELTA_SECONDS.test(text)) return Number(text) * 1000
  const at = parseHttpDate(text, now)
  return at === undefined ? undefined : Math.max(0, at - now)
}

/**
 * Waits `ms`, or rejects with the signal's reason as soon as it aborts.
 *
 * @example
 * await abortableSleep(1000, requestSignal(req))
 */
export function abortableSleep(ms: number, signal: AbortSignal | null | undefined): Promise<void> {
  return sleep(ms, undefined, signal ? { signal } : undefined).catch((err: unknown) => {
    throw signal?.aborted ? signal.reason : err
  })
}

/**
 * Options of {@link fetchWithRetry}: the retry policy, plus the `fetch` to call.
 *
 * @example
 * const options: FetchWithRetryOptions = { maxAttempts: 4, onRetry: (e) => console.warn(e) }
 */
export interface FetchWithRetryOptions extends RetryOptions {
  /** The fetch implementation. @default globalThis.fetch */
  readonly fetch?: typeof globalThis.fetch
  /**
   * Methods retried after a network error or any of `statuses`, compared upper-cased. Any
   * other method (POST, PATCH) is retried only after a 429, which says the request was not
   * processed; after a network error or a 502 it may have been, so it is not sent again.
   * @default ['GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE', 'TRACE'] (the idempotent methods)
   */
  readonly methods?: readonly string[]
}

const DEFAULT_METHODS: ReadonlySet<string> = new Set(['GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE', 'TRACE'])
const METHOD_TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/

function readMethods(methods: unknown): ReadonlySet<string> {
  if (!Array.isArray(methods) || !methods.every((m) => typeof m === 'string' && METHOD_TOKEN.test(m))) {
    throw new TypeError(`Expected \`methods\` to be an array of HTTP method names, got ${showValue(methods)}`)
  }
  return new Set(methods.map((m: string) => m.toUpperCase()))
}

/**
 * `fetch` for clients of image APIs, with the retry policy of {@link RetryOptions}: network
 * errors (by the code of the error, or of the `cause` of Node's `TypeError('fetch failed')`:
 * `ECONNREFUSED`, `ECONNRESET`, `UND_ERR_SOCKET`…; not a refused or looping redirect, which
 * would fail again), 429 and 502 are retried after a jittered exponential backoff of at
 * least 1 s (a method outside `methods`, such as POST, only after a 429: it may have been
 * processed; never a response whose `x-ic-error-code` the catalogue marks not retryable,
 * such as the 502 `IC_TOO_MANY_REDIRECTS`: the same request fails the same way),
 * `Retry-After` (seconds or HTTP date) is honoured up to `maxDelayMs`, and nothing is
 * retried once `init.signal` aborted. It resolves with the last response (a 429
 * or 502 too, once the attempts are spent) and rejects with the last error or the abort
 * reason. A request body that can be read only once (a web or Node stream, any async
 * iterable: anything but a string, `ArrayBuffer`, typed array, `Blob`, `URLSearchParams` or
 * `FormData`) is sent once: that response or error is the result. A `Request` is read as
 * fetch reads it: its method, body (a stream, so sent once) and signal count unless `init`
 * sets them.
 *
 * @example
 * import { fetchWithRetry } from 'image-api-errors'
 * const res = await fetchWithRetry('https://image-charts.com/chart?cht=p&chd=t:1,2&chs=100x100', {
 *   signal: AbortSignal.timeout(20_000),
 * }, { maxAttempts: 4 })
 */
export async function fetchWithRetry(
  url: string | URL | Request,
  init: RequestInit | null = {},
  options: Readonly<FetchWithRetryOptions> = {},
): Promise<Response> {
  // fetch(url, null) is fetch(url): so is this.
  const given: RequestInit = init ?? {}
  // Image-Charts asks its clients to wait at least 1 s before a retry (its "Error retries").
  const policy = readRetryPolicy(options, 'fetchWithRetry', ['fetch', 'methods'], { shortestDelayMs: 1000 })
  const doFetch = options.fetch === undefined ? globalThis.fetch : options.fetch
  if (typeof doFetch !== 'function')
    throw new TypeError(`Expected \`fetch\` to be a function, got ${showValue(doFetch)}`)
  const methods = options.methods === undefined ? DEFAULT_METHODS : readMethods(options.methods)
  // fetch reads what `init` leaves out from a Request: so does the policy.
  const request = typeof url === 'string' || url instanceof URL ? undefined : url
  const idempotent = methods.has(String(given.method ?? request?.method ?? 'GET').toUpperCase())
  // An explicit `signal: null` drops the Request's, as fetch reads it; `undefined` does not.
  const signal = given.signal === undefined ? request?.signal : (given.signal ?? undefined)
  const replayable = isReplayable(given.body ?? request?.body)
  for (let attempt = 1; ; attempt++) {
    signal?.throwIfAborted()
    const last = attempt >= policy.maxAttempts || !replayable
    let response: Response
    try {
      response = await doFetch(url, given)
    } catch (error) {
      if (last || !idempotent || signal?.aborted || !isNetworkError(error))
        throw signal?.aborted ? signal.reason : error
      const delayMs = retryDelay(policy, attempt) as number
      policy.onRetry?.({ attempt, delayMs, error })
      await abortableSleep(delayMs, signal)
      continue
    }
    if (last || !policy.statuses.has(response.status)) return response
    if (!idempotent && response.status !== 429) return response
    // The server's own word: a code its catalogue marks non-retryable (a redirect loop) fails again.
    if (lookupErrorCode(response.headers.get('x-ic-error-code')?.trim() ?? '')?.retryable === false)
      return response
    const delayMs = retryDelay(policy, attempt, parseRetryAfter(response.headers.get('retry-after')))
    if (delayMs === undefined) return response
    await response.body?.cancel().catch(() => {})
    // Aborted while answered: no retry is made, so none is reported.
    signal?.throwIfAborted()
    policy.onRetry?.({ attempt, delayMs, status: response.status })
    await abortableSleep(delayMs, signal)
  }
}

/** Bodies fetch can send again: any other (a web or Node stream, an async iterable) is read once. */
function isReplayable(body: unknown): boolean {
  return (
    body === undefined ||
    body === null ||
    typeof body === 'string' ||
    body instanceof ArrayBuffer ||
    ArrayBuffer.isView(body) ||
    body instanceof Blob ||
    body instanceof URLSearchParams ||
    body instanceof FormData
  )
}

const NETWORK_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ENOTFOUND',
  'EAI_AGAIN',
  'ETIMEDOUT',
  'EPIPE',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'UND_ERR_SOCKET',
  'UND_ERR_CONNECT_TIMEOUT',
  'UND_ERR_HEADERS_TIMEOUT',
])

/**
 * A failure of the network, by its code: what a second try may get past. Node's fetch
 * (undici) rejects every failure with `TypeError('fetch failed')` and puts what failed in
 * `cause`: a refused or looping redirect, a bad `Location`, an answer that is not HTTP fail
 * there too, and fail again on every try. Other fetches, and `node:http`, reject with the
 * system error itself; a TLS certificate refused (`DEPTH_ZERO_SELF_SIGNED_CERT`) is no
 * network code either. Internal, shared with `createBackendFetch()`'s retry.
 *
 * @example
 * isNetworkError(Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' })) // true
 * isNetworkError(Object.assign(new Error('self-signed certificate'), { code: 'DEPTH_ZERO_SELF_SIGNED_CERT' })) // false
 */
export function isNetworkError(error: unknown): boolean {
  const failure = error instanceof TypeError && error.message === 'fetch failed' ? error.cause : error
  const code = (failure as { code?: unknown } | null | undefined)?.code
  return typeof code === 'string' && NETWORK_CODES.has(code)
}
