import { parseRetryAfter } from './middlewares/retry/index.ts'

/**
 * One validation failure, in the shape Image-Charts' clients read from
 * `x-ic-error-validation` (`[{ message }]`), with Joi-style `path` and `type` beside it.
 *
 * @example
 * const item: ValidationItem = { message: '"width" must be at most 8192', path: ['width'], type: 'number.max' }
 */
export interface ValidationItem {
  /** Human-readable text; the only member clients rely on. */
  readonly message: string
  /** The parameter it concerns, e.g. `['width']`. */
  readonly path?: readonly (string | number)[]
  /** A machine-readable kind, e.g. `number.max`, `any.required`. */
  readonly type?: string
}

/** An HTTP token (RFC 9110 §5.6.2): what a header name may be. */
export const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/
const HEADER_VALUE = /^[\t\x20-\x7e]*$/
/**
 * The connection's own fields: the writer's to set, never an error's, and refused outright by
 * HTTP/2. Internal.
 *
 * @example
 * CONNECTION_HEADERS.includes('keep-alive') // true
 */
export const CONNECTION_HEADERS: readonly string[] = [
  'connection',
  'http2-settings',
  'keep-alive',
  'proxy-connection',
  'te',
  'transfer-encoding',
  'upgrade',
]
const RESERVED_HEADERS = new Set(['content-length', 'content-type', 'set-cookie', ...CONNECTION_HEADERS])
// What described a success response: its representation, and how long caches (a CDN's
// included: nginx's X-Accel-Expires, Akamai's Edge-Control) may keep it.
const STALE_HEADERS = new Set([
  'content-type',
  'content-length',
  'content-encoding',
  'content-language',
  'content-range',
  'content-disposition',
  'content-digest',
  'repr-digest',
  'digest',
  'accept-ranges',
  'etag',
  'last-modified',
  'expires',
  'age',
  'surrogate-control',
  'cdn-cache-control',
  'surrogate-key',
  'cache-tag',
  'x-accel-expires',
  'edge-control',
  'transfer-encoding',
  'x-ic-error-validation',
])
// What else a foreign error may not bring to our response: the connection's and the
// message's own fields (Node writes those of this response), caching (an error response is
// `no-store`), and policies another origin set for itself (an upstream's CORS grant, HSTS,
// Alt-Svc, Clear-Site-Data would apply to ours).
const FOREIGN_DROPPED = new Set([
  'keep-alive',
  'upgrade',
  'te',
  'trailer',
  'date',
  'server',
  'cache-control',
  'pragma',
  'vary',
  'strict-transport-security',
  'alt-svc',
  'clear-site-data',
  'timing-allow-origin',
  'cross-origin-resource-policy',
  'cross-origin-embedder-policy',
  'cross-origin-opener-policy',
  'content-location',
  'via',
  'nel',
  'report-to',
])
const FOREIGN_DROPPED_PREFIXES = ['proxy-', 'access-control-', 'surrogate-'] as const

/**
 * Whether a header (lower-case) described the representation of a success response or let
 * caches keep it: the error handler removes these from a response it answers instead. Also
 * each CDN's own CDN-Cache-Control (Cloudflare-, Vercel-, Netlify-), which wins over the
 * generic one there. Internal.
 *
 * @example
 * isStaleHeader('etag') // true
 * isStaleHeader('cloudflare-cdn-cache-control') // true
 */
export function isStaleHeader(name: string): boolean {
  return STALE_HEADERS.has(name) || name.endsWith('-cdn-cache-control')
}

/**
 * Whether a foreign error's header (lower-case) may reach the response: not one that
 * {@link isStaleHeader} names (`Content-Range` only on a 416, which needs it), nor a
 * hop-by-hop, caching or origin-policy field (`Proxy-Authenticate` only on a 407, whose
 * challenge it is, as `WWW-Authenticate` is a 401's). An error built from an upstream's response
 * (undici's `ResponseError`) carries all of the upstream's headers.
 */
function foreignHeaderKept(name: string, status: number | undefined): boolean {
  if (name === 'content-range') return status === 416
  if (name === 'proxy-authenticate') return status === 407
  return (
    !isStaleHeader(name) &&
    !FOREIGN_DROPPED.has(name) &&
    !FOREIGN_DROPPED_PREFIXES.some((prefix) => name.startsWith(prefix))
  )
}

/** Default cap of the `x-ic-error-validation` value, in bytes; common proxies refuse headers over 8 KB. */
export const VALIDATION_HEADER_MAX_BYTES = 4096
const MIN_HEADER_BYTES = 256
const NOT_HEADER_SAFE = /[^\x20-\x7e]/g
const ELLIPSIS = '…'

function escapeChar(char: string): string {
  return `\\u${char.charCodeAt(0).toString(16).padStart(4, '0')}`
}

/** JSON text made of printable ASCII only: every other UTF-16 unit becomes a `\uXXXX` escape, so the JSON stays valid. */
function asciiJson(value: unknown): string {
  return JSON.stringify(value).replace(NOT_HEADER_SAFE, escapeChar)
}

/**
 * An item reduced to what clients read: its `message` (a string), its `path` (strings and
 * numbers, at most 8) and its `type`; whatever else another library put on it (Joi's
 * `context`, which may hold a BigInt or a cycle) is left out.
 *
 * @example
 * cleanValidationItem({ message: 'too wide', path: ['width'], context: { limit: 8192n } }) // { message: 'too wide', path: ['width'] }
 */
export function cleanValidationItem(item: ValidationItem): ValidationItem {
  const message = typeof item?.message === 'string' ? item.message : String(item?.message ?? '')
  const out: { message: string; path?: (string | number)[]; type?: string } = { message }
  if (Array.isArray(item?.path)) {
    out.path = item.path.filter((p) => typeof p === 'string' || typeof p === 'number').slice(0, 8)
  }
  if (typeof item?.type === 'string') out.type = item.type
  return out
}

/** The item with every string of its path longer than `max` characters cut to `max` and `…`: the parameter stays named. */
function shortPath(item: ValidationItem, max: number): ValidationItem {
  if (item.path === undefined || !item.path.some((p) => typeof p === 'string' && p.length > max)) return item
  const path = item.path.map((p) => {
    if (typeof p !== 'string' || p.length <= max) return p
    const cut = p.slice(0, max)
    return `${/[\ud800-\udbff]$/.test(cut) ? cut.slice(0, -1) : cut}${ELLIPSIS}`
  })
  return { ...item, path }
}

/**
 * An item that fits `maxBytes`: its message shortened, then the names of its path (64
 * characters, then fewer: a name outside ASCII takes six bytes a character once escaped), then
 * without its type; a bare `…` when nothing else fits.
 */
function fitItem(item: ValidationItem, maxBytes: number): string {
  for (const max of [64, 32, 16, 8]) {
    const encoded = truncateMessage(shortPath(item, max), maxBytes)
    if (encoded.length <= maxBytes) return encoded
  }
  const { type: _type, ...untyped } = shortPath(item, 8)
  const encoded = truncateMessage(untyped, maxBytes)
  return encoded.length <= maxBytes ? encoded : asciiJson({ message: ELLIPSIS })
}

function truncateMessage(item: ValidationItem, maxBytes: number): string {
  let { message } = item
  let encoded = asciiJson({ ...item, message })
  while (encoded.length > maxBytes && message.length > 0) {
    const excess = encoded.length - maxBytes
    const cut = Math.max(1, Math.ceil(excess / 6), Math.floor((message.length * excess) / encoded.length))
    message = message.slice(0, Math.max(0, message.length - cut - 1))
    if (/[\ud800-\udbff]$/.test(message)) message = message.slice(0, -1)
    message += ELLIPSIS
    encoded = asciiJson({ ...item, message })
    if (message === ELLIPSIS) break
  }
  return encoded
}

/**
 * Serialises validation items into a value that is always safe in an HTTP header: valid
 * JSON (an array of objects with `message`), printable ASCII only (CR and LF as JSON's `\r`
 * `\n`, other controls and non-ASCII text as `\u` escapes, never dropped), and at most `maxBytes` long. An item that does not
 * fit has the long names of its path and then its message shortened with `…`; items that do
 * not fit are replaced by one last item saying how many were left out.
 *
 * @example
 * encodeValidationHeader([{ message: 'bad\r\nvalue' }]) // '[{"message":"bad\\r\\nvalue"}]'
 */
export function encodeValidationHeader(
  items: readonly ValidationItem[],
  maxBytes: number = VALIDATION_HEADER_MAX_BYTES,
): string {
  const budget = Math.max(MIN_HEADER_BYTES, maxBytes)
  const itemCap = Math.max(MIN_HEADER_BYTES >> 1, budget >> 2)
  const reserve = 64
  const parts: string[] = []
  let used = 2
  for (let i = 0; i < items.length; i++) {
    const item = cleanValidationItem(items[i] as ValidationItem)
    let encoded = asciiJson(item)
    if (encoded.length > itemCap) encoded = fitItem(item, itemCap)
    const last = i === items.length - 1
    if (used + encoded.length + 1 > budget - (last ? 0 : reserve)) {
      parts.push(asciiJson({ message: `${items.length - i} more validation errors left out` }))
      break
    }
    parts.push(encoded)
    used += encoded.length + 1
  }
  return `[${parts.join(',')}]`
}

/**
 * Makes any text safe as an HTTP header value: printable ASCII kept, everything else
 * percent-encoded as UTF-8, and the result cut to `maxBytes` between whole characters, so
 * that it still decodes (`decodeURIComponent`).
 *
 * @example
 * headerSafeText('café\r\nSet-Cookie: x') // 'caf%C3%A9%0D%0ASet-Cookie: x'
 * headerSafeText('aé', 4) // 'a'
 */
export function headerSafeText(text: string, maxBytes = 512): string {
  const safe = text.replace(/[^\x20-\x24\x26-\x7e]+/g, (run) => encodeURIComponent(run.toWellFormed()))
  if (safe.length <= maxBytes) return safe
  return wholeCharacters(safe.slice(0, maxBytes).replace(/%[0-9A-F]?$/, ''))
}

/**
 * Percent-encoded text without the first bytes of a character cut after them: `a%C3` (the
 * first of `é`'s two bytes) is `a`. Every `%` in it starts an escape (headerSafeText encodes
 * `%` itself), so the bytes are read back from the end: continuation bytes (`%80`–`%BF`),
 * then the byte that says how many the character has.
 */
function wholeCharacters(cut: string): string {
  let continuation = 0
  for (let end = cut.length; end >= 3 && cut[end - 3] === '%'; end -= 3) {
    const byte = Number.parseInt(cut.slice(end - 2, end), 16)
    if (byte >= 0x80 && byte < 0xc0) {
      continuation++
      continue
    }
    const length = byte >= 0xf0 ? 4 : byte >= 0xe0 ? 3 : byte >= 0xc0 ? 2 : 1
    return continuation + 1 === length ? cut : cut.slice(0, end - 3)
  }
  return cut
}

/** Delta-seconds above this are sent as this: what RFC 9111 asks every recipient to handle. Internal. */
export const MAX_DELTA_SECONDS = 2_147_483_647

/**
 * A number of seconds as `Retry-After` delta-seconds: whole, not negative, capped, never in
 * exponent notation (`1e21` seconds is sent as 2147483647).
 *
 * @example
 * retryAfterValue(1.2) // '2'
 * retryAfterValue(1e21) // '2147483647'
 */
export function retryAfterValue(seconds: number): string {
  return String(Math.min(MAX_DELTA_SECONDS, Math.max(0, Math.ceil(seconds))))
}

/** A `Retry-After` another library set, as whole delta-seconds; undefined when it is neither seconds nor an HTTP date. */
function deltaSecondsOf(text: string): string | undefined {
  const waitMs = parseRetryAfter(text)
  return waitMs === undefined ? undefined : retryAfterValue(waitMs / 1000)
}

/**
 * A header value as one field line: a string or a number, or an array of them (a field sent
 * as several lines, like two `WWW-Authenticate` challenges) joined with `, `, which RFC 9110
 * §5.3 makes the same field; undefined when it is none of these or any part is not
 * header-safe.
 */
function headerLine(value: unknown): string | undefined {
  if (typeof value === 'number') return String(value)
  if (typeof value === 'string') return HEADER_VALUE.test(value) ? value : undefined
  if (!Array.isArray(value) || value.length === 0) return undefined
  const parts: string[] = []
  for (const part of value) {
    const line = typeof part === 'number' || typeof part === 'string' ? headerLine(part) : undefined
    if (line === undefined) return undefined
    parts.push(line)
  }
  return parts.join(', ')
}

/**
 * Keeps the headers of an error whose names and values are valid and harmless: never
 * `Content-Length`, `Content-Type`, `Transfer-Encoding`, `Connection` or `Set-Cookie`. When
 * not `own` (a foreign error, whose `status` is given), also never `x-ic-*` (a foreign error
 * cannot forge our code), nor what described another response or its connection: the
 * representation and caching fields, `Cache-Control` and `Vary` included, hop-by-hop
 * fields, `Date`, `Server`, `Via`, `Proxy-*`, `Access-Control-*` and other origin policies;
 * `Content-Range` only on a 416, `Proxy-Authenticate` only on a 407. A value may be an array
 * of safe strings (`WWW-Authenticate: ['Basic', 'Bearer']`): it is sent as one line, joined
 * with `, `. `Retry-After` is kept as whole delta-seconds (an HTTP date is converted), or
 * dropped when it is neither.
 *
 * @example
 * sanitizeHeaders({ 'X-Ok': 'yes', 'x-bad': 'a\r\nb' }, false) // { 'x-ok': 'yes' }
 * sanitizeHeaders({ 'WWW-Authenticate': ['Basic realm="img"', 'Bearer'] }, false) // { 'www-authenticate': 'Basic realm="img", Bearer' }
 * sanitizeHeaders({ 'Retry-After': 'soon' }, false) // {}
 * sanitizeHeaders({ 'Cache-Control': 'public, max-age=31536000', ETag: '"a"' }, false, 404) // {}
 */
export function sanitizeHeaders(headers: unknown, own: boolean, status?: number): Record<string, string> {
  const out: Record<string, string> = {}
  if (typeof headers !== 'object' || headers === null) return out
  for (const [name, value] of Object.entries(headers)) {
    const lower = name.toLowerCase()
    if (
      !HEADER_NAME.test(name) ||
      RESERVED_HEADERS.has(lower) ||
      (!own && (lower.startsWith('x-ic-') || !foreignHeaderKept(lower, status)))
    )
      continue
    const text = headerLine(value)
    if (text === undefined || (!own && text.length > 1024)) continue
    if (lower !== 'retry-after') out[lower] = text
    else {
      const seconds = deltaSecondsOf(text)
      if (seconds !== undefined) out[lower] = seconds
    }
  }
  return out
}

/**
 * A validation item from what other code throws: an object with a string `message` is kept,
 * a bare string becomes `{ message }`, anything else is stringified.
 *
 * @example
 * toValidationItem('width must be a number') // { message: 'width must be a number' }
 */
export function toValidationItem(item: unknown): ValidationItem {
  if (typeof item === 'object' && item !== null && typeof (item as ValidationItem).message === 'string') {
    return item as ValidationItem
  }
  const message = typeof item === 'object' && item !== null ? (item as { message?: unknown }).message : item
  return { message: safeString(message) }
}

/** `String(value)`, or `''` for a value that refuses to become one (`Object.create(null)`, a throwing `toString`). */
function safeString(value: unknown): string {
  try {
    return String(value)
  } catch {
    return ''
  }
}
