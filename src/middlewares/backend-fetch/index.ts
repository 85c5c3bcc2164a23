import { lookup as dnsLookup, type LookupAddress } from 'node:dns'
import http, { type IncomingHttpHeaders, type IncomingMessage } from 'node:http'
import https from 'node:https'
import { type Readable, Transform, type TransformCallback } from 'node:stream'
import zlib from 'node:zlib'
import { errorCatalogue } from '../../catalogue.ts'
import { type IcError, icError, isIcError } from '../../errors.ts'
import { type Duration, durationMs, knownOptions, recordOption, showValue } from '../../options.ts'
import { requestDeadlineAt } from '../../request-signal.ts'
import { compileHostList as compileHostnameList, hostNameOf } from '../permissions/host-matcher.ts'
import {
  abortableSleep,
  isNetworkError,
  parseRetryAfter,
  type RetryOptions,
  readRetryPolicy,
  retryDelay,
} from '../retry/index.ts'
import { compileAddressList, isBlockedAddress, parseAddress } from './address.ts'
import { type ImageFormat, SNIFF_BYTES, sniffImageFormat } from './sniff.ts'

/**
 * A `dns.lookup`-compatible resolver; inject one to control name resolution (tests,
 * service discovery). It is asked for all addresses of a name, and may call back synchronously.
 *
 * @example
 * const lookup: LookupFunction = (hostname, options, callback) =>
 *   callback(null, [{ address: '127.0.0.1', family: 4 }])
 */
export type LookupFunction = (
  hostname: string,
  options: { all: true; family?: number; hints?: number },
  callback: (err: NodeJS.ErrnoException | null, addresses: LookupAddress[]) => void,
) => void

/**
 * Options of {@link createBackendFetch}.
 *
 * @example
 * const options: BackendFetchOptions = { maxBytes: 20 * 1024 * 1024, maxRedirects: 3, timeoutMs: '10s' }
 */
export interface BackendFetchOptions {
  /**
   * Largest body accepted, in bytes, as sent, once decoded (gzip, deflate, br) and at every
   * layer of stacked codings; reading stops as soon as it is exceeded. @default 33554432 (32 MiB)
   */
  readonly maxBytes?: number
  /** Redirects followed (by hand, each hop checked again); one more is `IC_TOO_MANY_REDIRECTS`. @default 5 */
  readonly maxRedirects?: number
  /** Time one `fetchImage()` call may take, redirects and retries included. @default 30000 */
  readonly timeoutMs?: Duration
  /**
   * Host names that may be fetched: exact names and `*.` wildcards (any subdomain on a label
   * boundary, not the apex); case-insensitive, IDN compared in punycode. A miss is
   * `IC_HOST_NOT_ALLOWED`. Redirect targets are checked too. The host only is matched: any
   * port of an allowed host is fetched. An empty list throws. @default undefined (any host)
   */
  readonly hostsAllowed?: readonly string[]
  /**
   * Connect to loopback, private, link-local and other non-public addresses. Only for
   * trusted sources (a backend on the same host or network). @default false
   */
  readonly allowPrivateAddresses?: boolean
  /**
   * Non-public addresses or CIDR ranges that may still be connected to, e.g. `['10.1.0.0/16']`.
   * IPv4 entries match the IPv4-mapped IPv6 form too, and an entry in that form is the IPv4
   * range it maps (`'::ffff:10.0.0.0/104'` is `'10.0.0.0/8'`). @default []
   */
  readonly allowedAddresses?: readonly string[]
  /** Resolver used at connect time. @default dns.lookup */
  readonly lookup?: LookupFunction
  /**
   * Extra request headers (credentials for a private bucket, a user agent). Once a redirect
   * leaves the first URL's origin (scheme, host or port), only `accept`, `accept-encoding`,
   * `accept-language` and `user-agent` are still sent: any other header may be a credential.
   * The place for credentials: a URL with userinfo (`user:pass@`) is refused, first or redirected to.
   */
  readonly headers?: Readonly<Record<string, string>>
  /**
   * Retry policy for network errors (the codes `fetchWithRetry` retries: not a refused TLS
   * certificate, which fails again) and backend 429 / 502 (see `fetchWithRetry`), or
   * `false`. Retries share `timeoutMs` and stop when the signal aborts; a wait that would
   * end past `timeoutMs`, or past the request's `deadline()` when the signal is
   * `requestSignal(req)`, is not begun: the attempt's own failure is thrown. @default false
   */
  readonly retry?: Readonly<RetryOptions> | false
}

/**
 * What {@link BackendFetch} resolves with: a complete image.
 *
 * @example
 * const { body, format } = await fetchImage(url)
 * res.type(format).send(body)
 */
export interface BackendResponse {
  /** The backend's status (2xx). */
  readonly status: number
  /** As the backend sent them (`content-encoding` and `content-length` describe the bytes sent). */
  readonly headers: IncomingHttpHeaders
  /** The image, decoded when the backend sent it with a `Content-Encoding`. */
  readonly body: Buffer
  /** The backend's `Content-Type`, as sent (not trusted: see `format`). */
  readonly contentType: string | undefined
  /** The format recognised from the body's first bytes. */
  readonly format: ImageFormat
  /** The URL finally fetched, after redirects. */
  readonly url: string
}

/**
 * The function {@link createBackendFetch} returns.
 *
 * @example
 * const image = await fetchImage('https://images.example.com/a.jpg', { signal: requestSignal(req) })
 */
export type BackendFetch = (
  url: string | URL,
  init?: { readonly signal?: AbortSignal | undefined },
) => Promise<BackendResponse>

const DEFAULTS = { maxBytes: 32 * 1024 * 1024, maxRedirects: 5, timeoutMs: 30_000 } as const
const BACKEND_FETCH_OPTIONS = [
  'maxBytes',
  'maxRedirects',
  'timeoutMs',
  'hostsAllowed',
  'allowPrivateAddresses',
  'allowedAddresses',
  'lookup',
  'headers',
  'retry',
] as const satisfies readonly (keyof BackendFetchOptions)[]
const REDIRECTS = new Set([301, 302, 303, 307, 308])
const STATUS_CODES = {
  400: 'IC_BACKEND_BAD_REQUEST',
  401: 'IC_BACKEND_UNAUTHORIZED',
  403: 'IC_BACKEND_FORBIDDEN',
  404: 'IC_IMAGE_NOT_FOUND',
  410: 'IC_IMAGE_NOT_FOUND',
  429: 'IC_BACKEND_UNAVAILABLE',
  503: 'IC_BACKEND_UNAVAILABLE',
  504: 'IC_BACKEND_GATEWAY_TIMEOUT',
} as const satisfies Record<number, keyof typeof errorCatalogue>
const MAX_RETRY_AFTER_SECONDS = 86_400
/**
 * The connection pool of one fetcher. `timeout` is an idle timeout: Node's agent destroys a
 * socket on it only while the socket waits in the free list (an active fetch keeps its own
 * `timeoutMs`), so a host, wildcard names included, holds no connection past 4 s idle
 * (under the 5 s keep-alive of Node servers, which would otherwise reset a reused one). No
 * `maxTotalSockets`: a global cap queues fetches, and a slow host would make every other
 * host's fetch wait for it; concurrency is the server's to bound (`loadShedding()`).
 */
const AGENT_OPTIONS = { keepAlive: true, timeout: 4000, maxFreeSockets: 32, scheduling: 'lifo' } as const
/** Headers that describe the connection or the target, which the fetch sets from the URL. */
const TRANSPORT_HEADERS = new Set([
  'host',
  'content-length',
  'transfer-encoding',
  'connection',
  'keep-alive',
  'upgrade',
  'te',
  'expect',
])
/**
 * The configured headers still sent once a redirect leaves the first URL's origin (with
 * `accept-encoding`, which keeps the next hop to codings the fetch decodes): any other
 * may be a credential (`authorization`, a cookie, `x-api-key`, `x-amz-security-token`), so
 * none follows the redirect to a host that did not get it in the first place.
 */
const CROSS_ORIGIN_HEADERS = new Set(['accept', 'accept-encoding', 'accept-language', 'user-agent'])

/**
 * Compiles `hostsAllowed` into a matcher of WHATWG hostnames (`URL#hostname`: lower-case,
 * punycode, IPv6 in brackets), with the same rules as `permissions()`' list: exact names and
 * `*.domain` wildcards on a label boundary, never the apex, one `Set` probe per wildcard depth.
 *
 * @example
 * const isAllowed = compileHostList(['*.cdn.example.net'])
 * isAllowed('a.cdn.example.net') // true
 * isAllowed('cdn.example.net') // false: a wildcard does not cover the apex
 */
export function compileHostList(
  hosts: readonly string[],
  name = 'hostsAllowed',
): (hostname: string) => boolean {
  if (!Array.isArray(hosts) || hosts.length === 0) {
    throw new TypeError(`Expected \`${name}\` to be a non-empty array of host names, got ${showValue(hosts)}`)
  }
  const matches = compileHostnameList(hosts, name)
  return function isHostAllowed(hostname) {
    const host = hostNameOf(hostname)
    return host !== undefined && matches(host)
  }
}

/**
 * Makes `fetchImage(url, { signal })`: an SSRF-safe GET of a source image that resolves
 * with the whole body once it is known to be an image, or rejects with an `IcError` the
 * error handler can send as is. The address is checked **at connect time** (a resolver that
 * refuses non-public addresses, plus IP-literal hosts before connecting), so names that
 * resolve to private addresses and DNS rebinding are caught (`IC_SOURCE_ADDRESS_BLOCKED`,
 * distinct from `IC_HOST_NOT_ALLOWED` for allow-list misses). Redirects are followed by hand
 * and every hop is checked again. Backend 400/401/403/404 keep their meaning, 5xx → 502,
 * 503 → 503, 504 → 504, refused/reset/DNS or a refused TLS certificate → 502
 * `IC_BACKEND_UNREACHABLE`, an invalid or
 * truncated response → 502 `IC_BACKEND_INVALID_RESPONSE`, a deadline → 504, a body that
 * is not an image by its bytes → 400 `IC_IMAGE_MALFORMED`, more than `maxBytes` → 400
 * `IC_IMAGE_TOO_LARGE` (reading stops at the limit). It asks for `identity` and decodes a
 * gzip, deflate or br body while it streams; another `Content-Encoding` → 502.
 *
 * @example
 * import { createBackendFetch, requestSignal } from 'image-api-errors/express'
 * const fetchImage = createBackendFetch({ hostsAllowed: ['images.example.com'], maxBytes: 20e6 })
 * app.get('/image/:id', deadline({ timeoutMs: '8s' }), async (req, res) => {
 *   const image = await fetchImage(`https://images.example.com/${req.params.id}`, { signal: requestSignal(req) })
 *   res.type(image.format).send(image.body)
 * })
 */
export function createBackendFetch(options: Readonly<BackendFetchOptions> = {}): BackendFetch {
  knownOptions(options, BACKEND_FETCH_OPTIONS, 'createBackendFetch')
  const maxBytes = options.maxBytes === undefined ? DEFAULTS.maxBytes : options.maxBytes
  if (!Number.isSafeInteger(maxBytes) || maxBytes < 1) {
    throw new TypeError(`Expected \`maxBytes\` to be a positive integer, got ${showValue(maxBytes)}`)
  }
  const maxRedirects = options.maxRedirects === undefined ? DEFAULTS.maxRedirects : options.maxRedirects
  if (!Number.isInteger(maxRedirects) || maxRedirects < 0 || maxRedirects > 20) {
    throw new TypeError(
      `Expected \`maxRedirects\` to be an integer from 0 to 20, got ${showValue(maxRedirects)}`,
    )
  }
  const timeoutMs = durationMs(
    'timeoutMs',
    options.timeoutMs === undefined ? DEFAULTS.timeoutMs : options.timeoutMs,
  )
  const isHostAllowed = options.hostsAllowed === undefined ? undefined : compileHostList(options.hostsAllowed)
  const allowPrivate = options.allowPrivateAddresses === undefined ? false : options.allowPrivateAddresses
  if (typeof allowPrivate !== 'boolean') {
    throw new TypeError(`Expected \`allowPrivateAddresses\` to be a boolean, got ${showValue(allowPrivate)}`)
  }
  const isListed = compileAddressList(
    options.allowedAddresses === undefined ? [] : options.allowedAddresses,
    'allowedAddresses',
  )
  const resolve = options.lookup === undefined ? (dnsLookup as unknown as LookupFunction) : options.lookup
  if (typeof resolve !== 'function')
    throw new TypeError(`Expected \`lookup\` to be a function, got ${showValue(resolve)}`)
  if (options.headers !== undefined) recordOption('headers', options.headers)
  // identity: a source stored compressed (S3 or GCS Content-Encoding metadata) is then sent
  // as is by servers that honour it; the codings below are decoded for those that do not.
  const headers: Record<string, string> = {
    accept: 'image/*',
    'accept-encoding': 'identity',
    'user-agent': 'image-api-errors',
  }
  for (const [key, value] of Object.entries(options.headers ?? {})) {
    if (!/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(key)) {
      throw new TypeError(`Expected \`headers\` names to be header tokens, got ${showValue(key)}`)
    }
    if (typeof value !== 'string' || /[\r\n\0]/.test(value)) {
      throw new TypeError(`Expected \`headers.${key}\` to be a header-safe string, got ${showValue(value)}`)
    }
    if (TRANSPORT_HEADERS.has(key.toLowerCase())) {
      throw new TypeError(
        `Expected \`headers\` to leave \`${key}\` to the fetch (it follows the URL and the connection)`,
      )
    }
    headers[key.toLowerCase()] = value
  }
  const crossOriginHeaders = Object.fromEntries(
    Object.entries(headers).filter(([key]) => CROSS_ORIGIN_HEADERS.has(key)),
  )
  const retry =
    options.retry === undefined || options.retry === false
      ? undefined
      : readRetryPolicy(options.retry, '`retry` of createBackendFetch')
  const tooLargeError = (): IcError =>
    icError('IC_IMAGE_TOO_LARGE', { message: `The source image is larger than ${maxBytes} bytes` })
  const httpAgent = new http.Agent(AGENT_OPTIONS)
  const httpsAgent = new https.Agent(AGENT_OPTIONS)

  function refuseAddress(address: string): IcError | undefined {
    if (allowPrivate || !isBlockedAddress(address) || isListed(address)) return undefined
    // The address stays out of `details`, which a 4xx body shows: a client could read back
    // what internal names resolve to. Operators find it in the cause, which is never sent.
    return icError('IC_SOURCE_ADDRESS_BLOCKED', {
      message: 'The source host resolves to an address that is not public',
      cause: new Error(`The source host resolved to ${address}`),
    })
  }

  // Runs for every new connection, so the address checked is the one connected to.
  const guardedLookup = (
    hostname: string,
    lookupOptions: { all?: boolean; family?: number; hints?: number },
    answer: (err: Error | null, address: string | LookupAddress[], family?: number) => void,
  ): void => {
    // Never synchronously, even when `lookup` is: net connects from this callback, and a
    // connect failing at once (ENETUNREACH, EINVAL, EMFILE) would be emitted on the socket
    // before the request listens to it, an uncaught 'error' that ends the process.
    const callback: typeof answer = (...args) => process.nextTick(() => answer(...args))
    resolve(hostname, { ...lookupOptions, all: true }, (err, found) => {
      if (err) return callback(err, [])
      const addresses: LookupAddress[] = Array.isArray(found)
        ? found
        : [{ address: String(found), family: String(found).includes(':') ? 6 : 4 }]
      if (addresses.length === 0)
        return callback(Object.assign(new Error(`No address for ${hostname}`), { code: 'ENOTFOUND' }), [])
      for (const { address } of addresses) {
        const refused = refuseAddress(address)
        if (refused !== undefined) return callback(refused, [])
      }
      if (lookupOptions.all === true) return callback(null, addresses)
      const [first] = addresses as [LookupAddress]
      callback(null, first.address, first.family)
    })
  }

  function checkUrl(url: URL, hop: number): void {
    if (url.protocol !== 'http:' && url.protocol !== 'https:') {
      throw hop === 0
        ? icError('IC_BAD_REQUEST', { message: 'Only http and https sources can be fetched' })
        : icError('IC_BACKEND_INVALID_RESPONSE', {
            message: 'The backend redirected to a URL that is not http or https',
          })
    }
    if (isHostAllowed !== undefined && !isHostAllowed(url.hostname)) {
      throw icError('IC_HOST_NOT_ALLOWED', {
        message:
          hop === 0
            ? 'The source host is not allowed'
            : 'The backend redirected to a host that is not allowed',
      })
    }
    const host = url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname
    if (parseAddress(host) !== undefined) {
      const refused = refuseAddress(host)
      if (refused !== undefined) throw refused
    }
    // node:http reads port 0 as no port, and would connect to 80 or 443 instead.
    if (url.port === '0') {
      throw hop === 0
        ? icError('IC_BAD_REQUEST', { message: 'The source URL must not have port 0' })
        : icError('IC_BACKEND_INVALID_RESPONSE', { message: 'The backend redirected to a URL with port 0' })
    }
    // After the host's refusals, which say more. node:http would send userinfo as
    // `Authorization: Basic`, a redirect's in place of the credentials it drops; WHATWG fetch
    // refuses such URLs too.
    if (url.username !== '' || url.password !== '') {
      throw hop === 0
        ? // The client reads this message: where the app's own credentials go is the docs' to say.
          icError('IC_BAD_REQUEST', { message: 'The source URL must not contain credentials' })
        : icError('IC_BACKEND_INVALID_RESPONSE', {
            message: 'The backend redirected to a URL that contains credentials',
          })
    }
  }

  function request(
    url: URL,
    hopHeaders: Readonly<Record<string, string>>,
    signal: AbortSignal,
  ): Promise<IncomingMessage> {
    return new Promise((resolvePromise, reject) => {
      const secure = url.protocol === 'https:'
      const req = (secure ? https : http).request(url, {
        agent: secure ? httpsAgent : httpAgent,
        headers: hopHeaders,
        lookup: guardedLookup as never,
      })
      // Reject at once: the socket's own error arrives a loop turn later, after the
      // deadline's fallback would have reported the request a second time.
      const onAbort = (): void => {
        req.destroy()
        reject(signal.reason)
      }
      signal.addEventListener('abort', onAbort, { once: true })
      req.on('response', (res) => {
        signal.removeEventListener('abort', onAbort)
        resolvePromise(res)
      })
      // A 101 comes as 'upgrade', not 'response': without this, the fetch waited for its deadline.
      req.on('upgrade', (_res, socket) => {
        signal.removeEventListener('abort', onAbort)
        socket.destroy()
        reject(
          icError('IC_BACKEND_INVALID_RESPONSE', { message: 'The backend answered 101 Switching Protocols' }),
        )
      })
      req.on('error', (err) => {
        signal.removeEventListener('abort', onAbort)
        reject(err)
      })
      req.end()
    })
  }

  function readImage(
    res: IncomingMessage,
    codings: readonly Coding[],
    signal: AbortSignal,
  ): Promise<{ body: Buffer; format: ImageFormat }> {
    return new Promise((resolvePromise, reject) => {
      // Content-Encoding lists the codings in the order they were applied.
      const decoders = codings.map(createDecoder).reverse()
      let body: Readable = res
      for (const decoder of decoders) body = body.pipe(decoder)
      const chunks: Buffer[] = []
      let received = 0
      let format: ImageFormat | undefined
      let settled = false
      const finish = (err: unknown, value?: { body: Buffer; format: ImageFormat }): void => {
        if (settled) return
        settled = true
        signal.removeEventListener('abort', onAbort)
        body.off('data', onData)
        if (err === undefined) resolvePromise(value as { body: Buffer; format: ImageFormat })
        else {
          res.destroy()
          for (const decoder of decoders) decoder.destroy()
          reject(err)
        }
      }
      const onAbort = (): void => finish(signal.reason)
      const tooLarge = (): void => finish(tooLargeError())
      const truncated = (cause?: unknown): void =>
        finish(
          icError('IC_BACKEND_INVALID_RESPONSE', {
            message: 'The backend response was truncated',
            ...(cause === undefined ? {} : { cause }),
          }),
        )
      // Judged on the first bytes while the body streams (so a page that is no image stops
      // early), then again on the whole body, whose end the offsets of a header must stay within.
      const sniff = (bytes: Buffer, complete: boolean): boolean => {
        format = sniffImageFormat(bytes, { complete })
        if (format !== undefined) return true
        finish(
          icError('IC_IMAGE_MALFORMED', {
            message: 'The backend response is not an image (checked by its bytes)',
          }),
        )
        return false
      }
      const onData = (chunk: Buffer): void => {
        received += chunk.length
        if (received > maxBytes) tooLarge()
        else {
          chunks.push(chunk)
          if (format === undefined && received >= SNIFF_BYTES) sniff(Buffer.concat(chunks), false)
        }
      }
      signal.addEventListener('abort', onAbort, { once: true })
      body.on('data', onData)
      // `onData` bounds what is kept; every stream before the last is held to maxBytes too:
      // the bytes sent (codings that expand nothing), and each inner layer's input, which an
      // inner layer of empty deflate blocks (it decodes to nothing) would leave unbounded.
      for (const stream of [res, ...decoders].slice(0, -1)) {
        let bytes = 0
        stream.on('data', (chunk: Buffer) => {
          bytes += chunk.length
          if (bytes > maxBytes) tooLarge()
        })
      }
      res.on('end', () => {
        if (!res.complete) truncated()
      })
      res.on('error', truncated)
      res.on('close', () => {
        if (!res.complete) truncated()
      })
      for (const decoder of decoders) {
        decoder.on('error', (err) =>
          finish(
            icError('IC_BACKEND_INVALID_RESPONSE', {
              message: `The backend body cannot be decoded as its Content-Encoding (${codings.join(', ')}) says`,
              cause: err,
            }),
          ),
        )
      }
      body.on('end', () => {
        if (settled) return
        const image = Buffer.concat(chunks, received)
        if (!sniff(image, true)) return
        finish(undefined, { body: image, format: format as ImageFormat })
      })
      body.on('close', () => truncated())
    })
  }

  async function attempt(start: URL, signal: AbortSignal): Promise<BackendResponse> {
    let url = start
    let hopHeaders = headers
    for (let hop = 0; ; hop++) {
      checkUrl(url, hop)
      let res: IncomingMessage
      try {
        res = await request(url, hopHeaders, signal)
      } catch (err) {
        throw signal.aborted ? signal.reason : toNetworkError(err)
      }
      const { statusCode: status = 0 } = res
      if (REDIRECTS.has(status) && res.headers.location !== undefined) {
        res.destroy()
        if (hop >= maxRedirects) {
          throw icError('IC_TOO_MANY_REDIRECTS', {
            message: `The backend redirected more than ${maxRedirects} times`,
          })
        }
        let next: URL
        try {
          next = new URL(res.headers.location, url)
        } catch (err) {
          throw icError('IC_BACKEND_INVALID_RESPONSE', {
            message: 'The backend redirected to an invalid URL',
            cause: err,
          })
        }
        // Once another origin (or an https → http downgrade) has been asked, the credentials
        // stay off for the rest of the chain, even if it comes back.
        if (next.origin !== url.origin) hopHeaders = crossOriginHeaders
        url = next
        continue
      }
      if (status < 200 || status > 299) {
        res.destroy()
        throw statusError(status, res.headers)
      }
      const length = Number(res.headers['content-length'])
      if (length > maxBytes) {
        res.destroy()
        throw tooLargeError()
      }
      const codings = contentCodings(res.headers['content-encoding'])
      if (codings === undefined) {
        res.destroy()
        throw icError('IC_BACKEND_INVALID_RESPONSE', {
          message: `The backend sent a Content-Encoding that cannot be decoded (${res.headers['content-encoding']})`,
        })
      }
      const { body, format } = await readImage(res, codings, signal)
      return {
        status,
        headers: res.headers,
        body,
        contentType: res.headers['content-type'],
        format,
        url: url.href,
      }
    }
  }

  return async function createBackendFetch(input, init = {}) {
    let url: URL
    try {
      url = new URL(input)
    } catch {
      throw icError('IC_BAD_REQUEST', { message: 'The source URL is not a valid URL' })
    }
    const outer = init.signal
    if (outer?.aborted) throw fromAbortReason(outer.reason)
    const controller = new AbortController()
    const onOuterAbort = (): void => controller.abort(outer?.reason)
    outer?.addEventListener('abort', onOuterAbort, { once: true })
    const deadlineAt = Date.now() + timeoutMs
    const timer = setTimeout(
      () =>
        controller.abort(
          icError('IC_BACKEND_TIMEOUT', { message: `The backend fetch took more than ${timeoutMs} ms` }),
        ),
      timeoutMs,
    )
    const { signal } = controller
    try {
      for (let n = 1; ; n++) {
        try {
          return await attempt(url, signal)
        } catch (err) {
          if (signal.aborted) throw fromAbortReason(signal.reason)
          const delayMs = retry === undefined || n >= retry.maxAttempts ? undefined : retryDelayFor(err, n)
          // A wait the fetch's or the request's deadline would cut short ends in a 504: this
          // attempt's answer says more.
          const dueAt = Math.min(deadlineAt, requestDeadlineAt(outer) ?? Number.POSITIVE_INFINITY)
          if (delayMs === undefined || delayMs >= dueAt - Date.now()) throw err
          retry?.onRetry?.({ attempt: n, delayMs, ...retryFacts(err) })
          try {
            await abortableSleep(delayMs, signal)
          } catch {
            throw fromAbortReason(signal.reason)
          }
        }
      }
    } finally {
      clearTimeout(timer)
      outer?.removeEventListener('abort', onOuterAbort)
    }
  }

  function retryDelayFor(err: unknown, n: number): number | undefined {
    if (retry === undefined || !isIcError(err)) return undefined
    const backendStatus = err.details?.backendStatus as number | undefined
    if (backendStatus === undefined) {
      // As fetchWithRetry: a refused certificate or another failure that is no network code fails again.
      return err.code === 'IC_BACKEND_UNREACHABLE' && isNetworkError(err.cause)
        ? retryDelay(retry, n)
        : undefined
    }
    if (!retry.statuses.has(backendStatus)) return undefined
    return retryDelay(retry, n, err.details?.retryAfterMs as number | undefined)
  }
}

type Coding = 'gzip' | 'deflate' | 'br'
const CODINGS: Readonly<Record<string, Coding>> = {
  gzip: 'gzip',
  'x-gzip': 'gzip',
  deflate: 'deflate',
  br: 'br',
}
const MAX_CODINGS = 3

/** The codings of a `Content-Encoding` value, `identity` left out; `undefined` when one is unknown. */
function contentCodings(header: string | undefined): Coding[] | undefined {
  const codings: Coding[] = []
  for (const token of (header ?? '').split(',')) {
    const name = token.trim().toLowerCase()
    if (name === '' || name === 'identity') continue
    const coding = CODINGS[name]
    if (coding === undefined || codings.length === MAX_CODINGS) return undefined
    codings.push(coding)
  }
  return codings
}

function createDecoder(coding: Coding): Transform {
  if (coding === 'gzip') return zlib.createGunzip()
  if (coding === 'deflate') return new DeflateDecoder()
  return zlib.createBrotliDecompress()
}

/**
 * `deflate` as servers send it: the zlib format RFC 9110 names, or raw deflate, which some
 * servers send and browsers and undici accept. The first two bytes tell them apart (a zlib
 * header has method 8 and is a multiple of 31). Exported for its tests.
 *
 * @example
 * res.pipe(new DeflateDecoder()).on('data', (image) => chunks.push(image))
 */
export class DeflateDecoder extends Transform {
  #inner: zlib.Inflate | zlib.InflateRaw | undefined
  #head = Buffer.alloc(0)
  // The inflater ends its output at the end of the deflate data, even with bytes left over,
  // and then answers no more writes: whatever waits for it is released on its 'end'.
  #ended = false
  #waiting: (() => void) | undefined

  override _transform(chunk: Buffer, _encoding: BufferEncoding, done: TransformCallback): void {
    if (this.#ended) done()
    else if (this.#inner !== undefined) this.#write(this.#inner, chunk, done)
    else {
      this.#head = Buffer.concat([this.#head, chunk])
      if (this.#head.length < 2) done()
      else this.#write(this.#start(), this.#head, done)
    }
  }

  override _flush(done: TransformCallback): void {
    let inner = this.#inner
    if (inner === undefined) {
      if (this.#head.length === 0) {
        done(new Error('unexpected end of file'))
        return
      }
      // A body shorter than the two bytes that tell the forms apart.
      inner = this.#start()
      inner.write(this.#head)
    }
    if (this.#ended) done()
    else {
      this.#waiting = () => done()
      inner.end()
    }
  }

  override _read(size: number): void {
    this.#inner?.resume()
    super._read(size)
  }

  override _destroy(error: Error | null, done: (error?: Error | null) => void): void {
    this.#inner?.destroy()
    done(error)
  }

  #write(inner: zlib.Inflate | zlib.InflateRaw, data: Buffer, done: TransformCallback): void {
    let called = false
    const release = (): void => {
      if (called) return
      called = true
      this.#waiting = undefined
      done()
    }
    this.#waiting = release
    inner.write(data, release)
  }

  #start(): zlib.Inflate | zlib.InflateRaw {
    const [first = 0, second = 0] = this.#head
    const wrapped = (first & 0x0f) === 8 && ((first << 8) | second) % 31 === 0
    const inner = wrapped ? zlib.createInflate() : zlib.createInflateRaw()
    // Inflating one chunk can make a thousand times its size: the inflater waits for readers.
    inner.on('data', (data: Buffer) => {
      if (!this.push(data)) inner.pause()
    })
    inner.on('error', (error) => this.destroy(error))
    inner.once('end', () => {
      this.#ended = true
      this.#waiting?.()
    })
    this.#inner = inner
    return inner
  }
}

function retryFacts(err: unknown): { status: number } | { error: unknown } {
  const backendStatus = isIcError(err) ? (err.details?.backendStatus as number | undefined) : undefined
  return backendStatus === undefined ? { error: err } : { status: backendStatus }
}

function statusError(status: number, headers: IncomingHttpHeaders): IcError {
  const code =
    (STATUS_CODES as Record<number, keyof typeof errorCatalogue>)[status] ??
    (status >= 500
      ? 'IC_BACKEND_ERROR'
      : status >= 400
        ? 'IC_BACKEND_BAD_REQUEST'
        : 'IC_BACKEND_INVALID_RESPONSE')
  const parsed = parseRetryAfter(headers['retry-after'])
  // Capped: Infinity would reach a JSON client as null, and still reads as past every cap.
  const retryAfterMs = parsed === undefined ? undefined : Math.min(parsed, Number.MAX_SAFE_INTEGER)
  const passRetryAfter = errorCatalogue[code].status === 503 && retryAfterMs !== undefined
  return icError(code, {
    message: `The backend answered ${status}${http.STATUS_CODES[status] ? ` ${http.STATUS_CODES[status]}` : ''}`,
    details: retryAfterMs === undefined ? { backendStatus: status } : { backendStatus: status, retryAfterMs },
    // At least 1: a `Retry-After: 0` (or a date past) passed on would invite every client back
    // at once. At most a day: a backend's ten years is no promise to hand on.
    ...(passRetryAfter
      ? { retryAfterSeconds: Math.min(MAX_RETRY_AFTER_SECONDS, Math.max(1, Math.ceil(retryAfterMs / 1000))) }
      : {}),
  })
}

function toNetworkError(err: unknown): IcError {
  if (isIcError(err)) return err
  const code = String((err as { code?: unknown } | null)?.code ?? '')
  if (code.startsWith('HPE_')) {
    return icError('IC_BACKEND_INVALID_RESPONSE', {
      message: 'The backend sent an invalid HTTP response',
      cause: err,
    })
  }
  return icError('IC_BACKEND_UNREACHABLE', {
    message: `The backend could not be reached${code === '' ? '' : ` (${code})`}`,
    cause: err,
  })
}

/** The error for an aborted fetch: the request's own reason (504 deadline, 499 client closed), or a 504 for a plain timeout. */
function fromAbortReason(reason: unknown): unknown {
  if (isIcError(reason)) return reason
  const name = (reason as { name?: unknown } | null)?.name
  if (name === 'TimeoutError' || name === 'AbortError') {
    return icError('IC_BACKEND_TIMEOUT', { message: 'The backend fetch was aborted', cause: reason })
  }
  return reason
}
