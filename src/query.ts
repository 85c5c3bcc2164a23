import type { IncomingMessage } from 'node:http'
import { requestState } from './request-state.ts'
import type { ValidationItem } from './validation-header.ts'

/**
 * A request's query string, parsed once and shared by every rule that reads it
 * (`imageParams`, `permissions`, `signature`, `apiKey`).
 *
 * @example
 * const query = parseQuery(req)
 * if (query.issues.length > 0) throw icError('IS_VALIDATION_ERROR', { validation: query.issues })
 * query.values.get('width') // '300', also when the request said `width64=MzAw`
 */
export interface ParsedQuery {
  /** The `req.url` this was parsed from. */
  readonly url: string
  /** The raw query string, without `?`; `''` when there is none. */
  readonly search: string
  /**
   * Decoded values by canonical name: `NAME64` (base64 or base64url) is decoded and stored
   * under `NAME`. The first value wins when a parameter is repeated (a repetition is also an issue).
   */
  readonly values: ReadonlyMap<string, string>
  /** Repeated parameters, malformed percent-encoding, invalid base64: every problem, in order. */
  readonly issues: readonly ValidationItem[]
}

const NO_ISSUES: readonly ValidationItem[] = Object.freeze([])
const BASE64 = /^[A-Za-z0-9+/_-]*={0,2}$/
const utf8 = new TextDecoder('utf-8', { fatal: true })

/** `+` is a space in a query string; percent-decoding that never throws (`undefined` when malformed). */
function decodeComponent(text: string): string | undefined {
  const plus = text.indexOf('+')
  const spaced = plus === -1 ? text : text.replaceAll('+', ' ')
  if (spaced.indexOf('%') === -1) return spaced
  try {
    return decodeURIComponent(spaced)
  } catch {
    return undefined
  }
}

/**
 * Decodes the value of a `NAME64` parameter (base64 or base64url, UTF-8 text); `undefined`
 * when it is not. Spaces are read as `+`: a client that did not percent-encode `+` in base64
 * text had it turned into a space by form decoding, and a space is never valid base64.
 *
 * @example
 * decodeBase64Value('Pj4 ') // '>>>'
 */
export function decodeBase64Value(value: string): string | undefined {
  const text = value.indexOf(' ') === -1 ? value : value.replaceAll(' ', '+')
  if (!BASE64.test(text) || text.length % 4 === 1) return undefined
  try {
    return utf8.decode(Buffer.from(text, 'base64'))
  } catch {
    return undefined
  }
}

function describe(name: string): string {
  return JSON.stringify(name.length > 64 ? `${name.slice(0, 64)}…` : name)
}

/**
 * Parses a query string: pairs split on `&`, names and values percent-decoded (`+` is a
 * space), `NAME64` values base64-decoded under `NAME`. Never throws: every problem becomes an
 * item of `issues` (`query.repeated`, `query.encoding`, `string.base64`). Empty pairs (`a=1&&b=2`)
 * and pairs without a name are ignored.
 *
 * @example
 * parseQueryString('width=300&crop64=Zml0', '/img?width=300&crop64=Zml0').values.get('crop') // 'fit'
 */
export function parseQueryString(search: string, url = `?${search}`): ParsedQuery {
  const values = new Map<string, string>()
  let issues: ValidationItem[] | undefined
  let broken: Set<string> | undefined
  const length = search.length
  let start = 0
  while (start <= length) {
    let end = search.indexOf('&', start)
    if (end === -1) end = length
    if (end > start) {
      const eq = search.indexOf('=', start)
      const split = eq === -1 || eq > end ? end : eq
      const rawName = search.slice(start, split)
      const rawValue = split === end ? '' : search.slice(split + 1, end)
      const name = decodeComponent(rawName)
      const decoded = decodeComponent(rawValue)
      if (name === undefined || decoded === undefined) {
        issues ??= []
        const shown = name ?? rawName
        issues.push({
          message: `${describe(shown)} is not valid percent-encoding`,
          path: [shown],
          type: 'query.encoding',
        })
      } else if (name !== '') {
        let key = name
        let value: string | undefined = decoded
        if (name.length > 2 && name.endsWith('64')) {
          key = name.slice(0, -2)
          value = decodeBase64Value(decoded)
          if (value === undefined) {
            issues ??= []
            issues.push({
              message: `${describe(name)} must be a valid base64 string`,
              path: [name],
              type: 'string.base64',
            })
          }
        }
        if (values.has(key) || broken?.has(key) === true) {
          issues ??= []
          issues.push({
            message: `${describe(key)} must not be repeated`,
            path: [key],
            type: 'query.repeated',
          })
        } else if (value !== undefined) {
          values.set(key, value)
        } else {
          broken ??= new Set()
          broken.add(key)
        }
      }
    }
    start = end + 1
  }
  return { url, search, values, issues: issues ?? NO_ISSUES }
}

/**
 * The parsed query of a request: `req.url` is parsed once and the result is kept in the
 * request state, so every rule of the package reads the same values.
 *
 * @example
 * const { values, issues } = parseQuery(req)
 */
export function parseQuery(req: IncomingMessage): ParsedQuery {
  const state = requestState(req)
  const url = req.url ?? ''
  const cached = state.parsedQuery
  if (cached !== undefined && cached.url === url) return cached
  const mark = url.indexOf('?')
  let search = mark === -1 ? '' : url.slice(mark + 1)
  const hash = search.indexOf('#')
  if (hash !== -1) search = search.slice(0, hash)
  const parsed = parseQueryString(search, url)
  state.parsedQuery = parsed
  return parsed
}
