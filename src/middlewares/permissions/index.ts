import { type InspectOptions, inspect } from 'node:util'
import { icError, isIcError } from '../../errors.ts'
import type { Guard } from '../../guard.ts'
import { NameTable } from '../../name-table.ts'
import { knownOptions, showValue } from '../../options.ts'
import {
  bracketItem,
  distinctItems,
  issueRootName,
  type ParsedQuery,
  parseQuery,
  type QueryValues,
  rootName,
} from '../../query.ts'
import type { ValidationItem } from '../../validation-header.ts'
import { IMAGIZER_PARAMS, REGION } from '../image-params/index.ts'
import { compileHostList, type HostnameMatcher, hostNameOf, trimDot } from './host-matcher.ts'

export { createHostMatcher, type HostMatcher } from './host-matcher.ts'

/**
 * Options of `permissions()`, named after Imagizer's configuration keys.
 *
 * @example
 * const options: PermissionsOptions = {
 *   hostsAllowed: ['images.example.com', '*.cdn.example.net'],
 *   bucketsAllowed: ['my-photos'],
 *   allowOriginalImageRequest: false,
 * }
 */
export interface PermissionsOptions {
  /** Let the request choose its source with `origin`, `source_url`, `hostname` or `bucket`. @default true */
  readonly allowDynamicOrigin?: boolean
  /** Serve a request that has no processing parameter (the original image); `width[]` counts as `width`. @default true */
  readonly allowOriginalImageRequest?: boolean
  /**
   * Hosts `origin`, `source_url` and `hostname` may name: exact names and `*.domain` wildcards.
   * Default: any host; `[]` refuses every host. The host only is matched, never the port:
   * `images.example.com:6379` is accepted with `images.example.com`, and `source.url` keeps
   * the port. Refuse other ports in the handler, and fetch with `createBackendFetch()`, whose
   * SSRF guard refuses private and loopback addresses whatever the port.
   */
  readonly hostsAllowed?: readonly string[]
  /** Buckets `bucket` may name, exactly. Default: any bucket. */
  readonly bucketsAllowed?: readonly string[]
  /** Accept a `data:` URL as `origin` or `source_url`. @default false */
  readonly allowDataUrls?: boolean
  /** Parameters that make a request processed rather than original. @default IMAGIZER_PARAMS */
  readonly processingParams?: readonly string[]
}

/**
 * Where the request asked the image to come from, published as `source` when it chose one.
 *
 * @example
 * const source = res.locals.source as ImageSource | undefined
 * if (source?.kind === 'url') await fetch(source.url, { signal })
 */
export type ImageSource =
  | {
      readonly kind: 'url'
      readonly param: 'origin' | 'source_url'
      readonly url: URL
      readonly host: string
    }
  | { readonly kind: 'host'; readonly param: 'hostname'; readonly host: string }
  | {
      readonly kind: 'bucket'
      readonly param: 'bucket'
      readonly bucket: string
      readonly region?: string
      /** None: so that `source?.host` reads on every kind. */
      readonly host?: undefined
    }
  | {
      readonly kind: 'data'
      readonly param: 'origin' | 'source_url'
      readonly url: string
      /** None: so that `source?.host` reads on every kind. */
      readonly host?: undefined
    }

const SOURCE_PARAMS = ['origin', 'source_url', 'hostname', 'bucket'] as const

/**
 * The query parameters the permission rules read whatever their options: the four that name
 * a source, and the bucket's `region`. Internal (`requestRules()` keeps its API key out of them).
 *
 * @example
 * PERMISSION_PARAMS.includes('origin') // true
 */
export const PERMISSION_PARAMS: readonly string[] = Object.freeze([...SOURCE_PARAMS, 'region'])
type SourceParam = (typeof SOURCE_PARAMS)[number]
// A bucket name as S3 and Cloud Storage allow it, or shorter (legacy upper case and `_`
// included): it goes into a host name or a path, so nothing that could end or re-route either.
const BUCKET_NAME = /^[a-zA-Z0-9](?:[a-zA-Z0-9._-]{0,220}[a-zA-Z0-9])?$/
const HAS_SCHEME = /^[a-zA-Z][a-zA-Z0-9+.-]*:/
const HOST_AND_PORT = /^[^:/?#\\@]+:\d+(?:[/?#\\]|$)/
// biome-ignore lint/suspicious/noControlCharactersInRegex: no host has a space or a control character, at either end or inside
const NOT_IN_HOST = /[/\\@?#\x00-\x20]/
const IPV6_LITERAL = /^\[[^\]]*\]/
const URL_NOISE = /[\t\n\r]/g
// biome-ignore lint/suspicious/noControlCharactersInRegex: see trimEdges()
const NOISY = /[\t\n\r]|^[\x00-\x20]|[\x00-\x20]$/

/**
 * `text` without C0 controls and spaces at either end, as the URL parser strips them. A loop,
 * not `/[\x00-\x20]+$/`: that regex starts again at every space inside the text, quadratic in
 * a value of spaces followed by a letter.
 */
function trimEdges(text: string): string {
  let start = 0
  let end = text.length
  while (start < end && text.charCodeAt(start) <= 0x20) start++
  while (end > start && text.charCodeAt(end - 1) <= 0x20) end--
  return text.slice(start, end)
}

function flag(option: string, value: unknown, fallback: boolean): boolean {
  if (value === undefined) return fallback
  if (typeof value !== 'boolean')
    throw new TypeError(`Expected \`${option}\` to be a boolean, got ${showValue(value)}`)
  return value
}

function bucketName(name: string): boolean {
  return BUCKET_NAME.test(name) && !name.includes('..')
}

function stringSet(option: string, value: unknown): Set<string> | undefined {
  if (value === undefined) return undefined
  if (!Array.isArray(value)) throw new TypeError(`Expected \`${option}\` to be an array of strings`)
  for (const entry of value) {
    if (typeof entry !== 'string' || entry === '')
      throw new TypeError(`Expected \`${option}\` to hold non-empty strings, got ${showValue(entry)}`)
  }
  return new Set(value as string[])
}

function bucketSet(value: unknown): Set<string> | undefined {
  const buckets = stringSet('bucketsAllowed', value)
  for (const name of buckets ?? []) {
    if (!bucketName(name))
      throw new TypeError(
        `Expected \`bucketsAllowed\` to hold bucket names (1 to 222 letters, digits, ".", "-" or "_"), got ${showValue(name)}`,
      )
  }
  return buckets
}

function refuse(code: string, param: string, message: string, type: string): never {
  throw icError(code, { message, validation: [{ message, path: [param], type }] })
}

/**
 * The compiled form of {@link PermissionsOptions}, shared by `permissions()` and `requestRules()`.
 *
 * @example
 * const compiled: CompiledPermissions = compilePermissions({ hostsAllowed: ['*.example.com'] })
 */
export interface CompiledPermissions {
  readonly allowDynamicOrigin: boolean
  readonly allowOriginalImageRequest: boolean
  readonly allowDataUrls: boolean
  readonly hosts: HostnameMatcher | undefined
  readonly buckets: ReadonlySet<string> | undefined
  readonly processing: NameTable<true>
}

/**
 * Validates the options and compiles the allow-lists; throws a `TypeError` naming the bad option.
 *
 * @example
 * const compiled = compilePermissions({ allowDynamicOrigin: false })
 */
export function compilePermissions(options: Readonly<PermissionsOptions> = {}): CompiledPermissions {
  knownOptions(
    options,
    [
      'allowDynamicOrigin',
      'allowOriginalImageRequest',
      'hostsAllowed',
      'bucketsAllowed',
      'allowDataUrls',
      'processingParams',
    ],
    'permissions',
  )
  return {
    allowDynamicOrigin: flag('allowDynamicOrigin', options.allowDynamicOrigin, true),
    allowOriginalImageRequest: flag('allowOriginalImageRequest', options.allowOriginalImageRequest, true),
    allowDataUrls: flag('allowDataUrls', options.allowDataUrls, false),
    hosts:
      options.hostsAllowed === undefined ? undefined : compileHostList(options.hostsAllowed, 'hostsAllowed'),
    buckets: bucketSet(options.bucketsAllowed),
    processing: new NameTable(
      [...(stringSet('processingParams', options.processingParams) ?? IMAGIZER_PARAMS)].map((name) => [
        name,
        true,
      ]),
    ),
  }
}

/**
 * The `hostname` of `http://host…` or `https://host…` when it is one the WHATWG URL parser
 * keeps exactly as written (a trailing dot included): lower-case ASCII letters, digits and
 * hyphens in labels of 1 to 63 characters, 253 in all, the last one starting with a letter (so it is no IPv4
 * address), no punycode, no port, no userinfo, ended by `/`, `?`, `#` or the end. Anything
 * else is `undefined`, and the full parser decides: this only spares the common case a `URL`.
 * Internal (tested beside it).
 *
 * @example
 * plainHttpHost('https://images.example.com/a.jpg') // 'images.example.com'
 * plainHttpHost('https://IMAGES.example.com/a.jpg') // undefined: the URL parser decides
 */
export function plainHttpHost(text: string): string | undefined {
  const from = text.startsWith('https://') ? 8 : text.startsWith('http://') ? 7 : 0
  if (from === 0) return undefined
  let labelStart = from
  let lastLabel = from
  let end = from
  for (; end < text.length; end++) {
    const c = text.charCodeAt(end)
    if ((c >= 97 && c <= 122) || (c >= 48 && c <= 57)) continue
    if (c === 45) {
      // `xn--`: punycode, which the parser checks and may refuse.
      if (
        end === labelStart + 2 &&
        text.charCodeAt(labelStart) === 120 &&
        text.charCodeAt(labelStart + 1) === 110
      )
        return undefined
      continue
    }
    if (c === 46) {
      if (end === labelStart || end - labelStart > 63) return undefined
      lastLabel = labelStart
      labelStart = end + 1
      continue
    }
    if (c === 47 || c === 63 || c === 35) break
    return undefined
  }
  if (end === labelStart) {
    // Empty, or a trailing dot: the same host, whose last label is the one before the dot.
    if (end === from) return undefined
  } else {
    if (end - labelStart > 63) return undefined
    lastLabel = labelStart
  }
  // Past 253 characters (a final dot aside) no DNS name: hostNameOf() refuses it.
  if ((end === labelStart ? end - 1 : end) - from > 253) return undefined
  const first = text.charCodeAt(lastLabel)
  return first >= 97 && first <= 122 ? text.slice(from, end) : undefined
}

/**
 * A `url` source. Its `URL` is made when the handler first reads it (the rules decide on the
 * host alone), so `url` is a getter: JSON and `util.inspect` show it, a spread copy does not.
 */
class UrlSource {
  readonly kind = 'url'
  readonly param: 'origin' | 'source_url'
  readonly host: string
  #text: string
  #url: URL | undefined

  constructor(param: 'origin' | 'source_url', text: string, host: string, url?: URL) {
    this.param = param
    this.host = host
    this.#text = text
    this.#url = url
  }

  get url(): URL {
    if (this.#url === undefined) this.#url = new URL(this.#text)
    return this.#url
  }

  toJSON(): { kind: 'url'; param: 'origin' | 'source_url'; url: string; host: string } {
    return { kind: this.kind, param: this.param, url: this.url.href, host: this.host }
  }

  [inspect.custom](_depth: number, options: InspectOptions, show: typeof inspect): string {
    return `UrlSource ${show({ kind: this.kind, param: this.param, url: this.url, host: this.host }, options)}`
  }
}

function urlSource(
  compiled: CompiledPermissions,
  param: 'origin' | 'source_url',
  value: string,
): ImageSource {
  // A value whose host is plain needs no clean-up: the URL parser drops noise after the host itself.
  const plain = plainHttpHost(value)
  if (plain !== undefined) {
    const host = trimDot(plain)
    if (compiled.hosts !== undefined && !compiled.hosts(host)) notAllowed(param)
    return new UrlSource(param, value, host)
  }
  const text = NOISY.test(value) ? trimEdges(value.replace(URL_NOISE, '')) : value
  let url: URL | undefined
  if (HAS_SCHEME.test(text) && !HOST_AND_PORT.test(text)) {
    try {
      url = new URL(text)
    } catch {
      url = undefined
    }
    if (url?.protocol === 'data:') {
      if (!compiled.allowDataUrls)
        refuse('IC_DATA_URL_NOT_ALLOWED', param, `"${param}" must not be a data: URL`, 'any.invalid')
      // fetch() reads a data: URL without its fragment: a comma after the `#` is no data's.
      if (!url.href.slice(0, url.href.length - url.hash.length).includes(','))
        refuse(
          'IS_VALIDATION_ERROR',
          param,
          `"${param}" must be a data: URL with a comma before its data`,
          'string.dataUri',
        )
      return { kind: 'data', param, url: text }
    }
    if (url !== undefined && url.protocol !== 'http:' && url.protocol !== 'https:') url = undefined
  } else {
    try {
      url = new URL(`http://${text}`)
    } catch {
      url = undefined
    }
  }
  if (url === undefined || url.hostname === '') {
    refuse('IS_VALIDATION_ERROR', param, `"${param}" must be an http or https URL`, 'string.uri')
  }
  if (url.username !== '' || url.password !== '') {
    // Credentials in a source URL are never needed, and are where URL parsers disagree.
    refuse('IS_VALIDATION_ERROR', param, `"${param}" must not contain credentials`, 'string.uriCredentials')
  }
  const host = hostNameOf(url.hostname)
  if (host === undefined)
    refuse('IS_VALIDATION_ERROR', param, `"${param}" must have a valid host name`, 'string.hostname')
  if (compiled.hosts !== undefined && !compiled.hosts(host)) notAllowed(param)
  return new UrlSource(param, text, host, url)
}

function notAllowed(param: string): never {
  refuse('IC_HOST_NOT_ALLOWED', param, `"${param}" names a host that is not allowed`, 'host.notAllowed')
}

/**
 * Runs compiled permission rules over a parsed query; throws the refusal or returns the source.
 * Alone, the first refusal wins. With `othersReported` (`requestRules()` with `imageParams`),
 * the query's problems are left to the rule after this one, and this rule's own 400s wait for
 * its 401s, then go out as one `IS_VALIDATION_ERROR` for that rule to list with its findings.
 *
 * @example
 * const source = checkPermissions(compiled, parseQuery(req)) // undefined: the configured backend
 */
export function checkPermissions(
  compiled: CompiledPermissions,
  query: ParsedQuery,
  othersReported = false,
): ImageSource | undefined {
  const { values, issues } = query
  let processed = compiled.allowOriginalImageRequest
  let ours: ValidationItem[] | undefined
  // A source sent malformed, repeated, with brackets or twice is not judged: which one would be a guess.
  let unknownSource = false
  if (issues.length > 0) {
    for (const issue of issues) {
      const name = issueParam(issue)
      const param = query.brackets ? canonicalName(issueRootName(name)) : name
      if (isSourceParam(param)) {
        // The parameter is refused whatever its value, as an allowed one is.
        if (!compiled.allowDynamicOrigin) dynamicOriginDisabled(param)
        unknownSource = true
        if (!othersReported) {
          ours ??= []
          ours.push(issue)
        }
      } else if (param === 'region') {
        if (!othersReported) {
          ours ??= []
          ours.push(issue)
        }
      } else if (compiled.processing.has(param)) processed = true
    }
  }
  // `origin[]`, `[origin]`: `origin` to qs, which gives the handler its value in `req.query.origin`.
  // `region[]` likewise: the bucket's companion, judged here whether or not imageParams has a rule for it.
  if (query.brackets) {
    for (const name of values.names) {
      const root = name.includes('[') ? canonicalName(rootName(name)) : name
      if (root === name) continue
      if (isSourceParam(root)) {
        if (!compiled.allowDynamicOrigin) dynamicOriginDisabled(root)
        unknownSource = true
      } else if (root !== 'region') continue
      ours ??= []
      ours.push(bracketItem(name, root))
    }
  }
  if (ours !== undefined && !othersReported) {
    // A source sent while dynamic origins are off is refused before any problem of region.
    if (!compiled.allowDynamicOrigin)
      for (const param of SOURCE_PARAMS) if (values.has(param)) dynamicOriginDisabled(param)
    invalid(ours)
  }
  let chosen: SourceParam | undefined
  for (const param of SOURCE_PARAMS) {
    if (!values.has(param)) continue
    if (!compiled.allowDynamicOrigin) dynamicOriginDisabled(param)
    if (chosen !== undefined) {
      const message = `"${chosen}" and "${param}" must not be used together`
      ours ??= []
      ours.push({ message, path: [param], type: 'object.oxor' })
      if (!othersReported) invalid(ours)
      unknownSource = true
      continue
    }
    chosen = param
  }
  // The source is judged first: a host or bucket refused says more than a missing parameter.
  let source: ImageSource | undefined
  if (chosen !== undefined && !unknownSource) {
    if (!othersReported) source = sourceOf(compiled, chosen, values)
    else {
      try {
        source = sourceOf(compiled, chosen, values)
      } catch (err) {
        // Its 401s go out now; its 400 waits for the refusals that outrank it.
        if (!isIcError(err) || err.status !== 400 || err.validation === undefined) throw err
        ours ??= []
        ours.push(...err.validation)
      }
    }
  }
  if (!processed) {
    processed = query.brackets ? hasProcessingRoot(compiled, values) : hasProcessing(compiled, values)
    if (!processed) {
      throw icError('IC_ORIGINAL_IMAGE_NOT_ALLOWED', {
        message: 'Requests for the original image are not allowed: add a processing parameter',
      })
    }
  }
  if (ours !== undefined) invalid(ours)
  // Refused here unless a rule after this one reports them with its own findings.
  if (issues.length > 0 && !othersReported) invalid(issues)
  return source
}

/** Whether one of the query's names is a processing parameter. */
function hasProcessing(compiled: CompiledPermissions, values: QueryValues): boolean {
  for (const name of values.names) if (compiled.processing.has(name)) return true
  return false
}

/**
 * {@link hasProcessing} for a query with brackets: `width[]` is `width` to qs, a processing
 * parameter (which imageParams then refuses with 400 `query.brackets`), not an original-image request.
 */
function hasProcessingRoot(compiled: CompiledPermissions, values: QueryValues): boolean {
  for (const name of values.names) {
    if (compiled.processing.has(name.includes('[') ? canonicalName(rootName(name)) : name)) return true
  }
  return false
}

function invalid(found: readonly ValidationItem[]): never {
  const items = distinctItems(found)
  throw icError('IS_VALIDATION_ERROR', {
    message: items.length === 1 ? (items[0] as ValidationItem).message : `${items.length} invalid parameters`,
    validation: items,
  })
}

function dynamicOriginDisabled(param: string): never {
  refuse(
    'IC_DYNAMIC_ORIGIN_DISABLED',
    param,
    `"${param}" is not allowed: dynamic origins are disabled`,
    'any.unknown',
  )
}

/** The parameter a query problem concerns, `NAME` for `NAME64`. */
function issueParam(issue: ValidationItem): string {
  return canonicalName(String(issue.path?.[0] ?? ''))
}

function canonicalName(name: string): string {
  return name.length > 2 && name.endsWith('64') ? name.slice(0, -2) : name
}

function isSourceParam(name: string): name is SourceParam {
  return (SOURCE_PARAMS as readonly string[]).includes(name)
}

function sourceOf(compiled: CompiledPermissions, chosen: SourceParam, values: QueryValues): ImageSource {
  const value = values.get(chosen) as string
  switch (chosen) {
    case 'origin':
    case 'source_url':
      return urlSource(compiled, chosen, value)
    case 'hostname': {
      const bare = !NOT_IN_HOST.test(value) && !value.replace(IPV6_LITERAL, '').includes(':')
      const url = bare ? safeUrl(`http://${value}`) : undefined
      const host = url === undefined ? undefined : hostNameOf(url.hostname)
      if (host === undefined)
        refuse('IS_VALIDATION_ERROR', chosen, '"hostname" must be a valid host name', 'string.hostname')
      if (compiled.hosts !== undefined && !compiled.hosts(host)) notAllowed(chosen)
      return { kind: 'host', param: chosen, host }
    }
    case 'bucket': {
      if (value === '')
        refuse('IS_VALIDATION_ERROR', chosen, '"bucket" is not allowed to be empty', 'string.empty')
      if (!bucketName(value))
        refuse(
          'IS_VALIDATION_ERROR',
          chosen,
          '"bucket" must be a bucket name: 1 to 222 letters, digits, ".", "-" or "_"',
          'string.bucket',
        )
      if (compiled.buckets !== undefined && !compiled.buckets.has(value))
        refuse(
          'IC_BUCKET_NOT_ALLOWED',
          chosen,
          '"bucket" names a bucket that is not allowed',
          'bucket.notAllowed',
        )
      const region = values.get('region')
      if (region !== undefined && !REGION.test(region))
        refuse(
          'IS_VALIDATION_ERROR',
          'region',
          `"region" must be a region name such as "us-east-1"`,
          'string.region',
        )
      return region === undefined
        ? { kind: 'bucket', param: chosen, bucket: value }
        : { kind: 'bucket', param: chosen, bucket: value, region }
    }
  }
}

function safeUrl(text: string): URL | undefined {
  try {
    return new URL(text)
  } catch {
    return undefined
  }
}

/**
 * Imagizer's permission rules. With `allowDynamicOrigin: false`, `origin`, `source_url`,
 * `hostname` and `bucket` are refused (401 `IC_DYNAMIC_ORIGIN_DISABLED`), also with brackets
 * (`origin[]`, `[origin]`: `origin` to `qs`), which are otherwise a 400, as is `region[]`
 * (the bucket's companion); a host outside `hostsAllowed` (401 `IC_HOST_NOT_ALLOWED`,
 * matched by {@link createHostMatcher}); a bucket outside `bucketsAllowed` (401
 * `IC_BUCKET_NOT_ALLOWED`); a request without processing parameters while
 * `allowOriginalImageRequest` is `false` (401 `IC_ORIGINAL_IMAGE_NOT_ALLOWED`); a `data:` URL
 * unless `allowDataUrls` (401 `IC_DATA_URL_NOT_ALLOWED`). Publishes `source` when the request
 * chose one.
 *
 * @example
 * import { permissions } from 'image-api-errors/express'
 * app.get('/img/:path', permissions({ hostsAllowed: ['*.example.com'], allowOriginalImageRequest: false }), handler)
 */
export function permissions(options: Readonly<PermissionsOptions> = {}): Guard {
  const compiled = compilePermissions(options)
  return function permissions(req) {
    const source = checkPermissions(compiled, parseQuery(req))
    return source === undefined ? undefined : { source }
  }
}
