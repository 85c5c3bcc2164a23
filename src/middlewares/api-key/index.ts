import { createHash } from 'node:crypto'
import type { IncomingMessage } from 'node:http'
import { icError } from '../../errors.ts'
import type { Guard, Published } from '../../guard.ts'
import { knownOptions, recordOption, showValue } from '../../options.ts'
import { isPlainName, type ParsedQuery, parseQuery } from '../../query.ts'
import { ReadonlySetView } from '../../readonly-set.ts'
import { HEADER_NAME } from '../../validation-header.ts'

/**
 * What a key may do: an id for logs (never the key itself) and its scopes.
 *
 * @example
 * const grant: ApiKeyGrant = { id: 'partner-42', scopes: ['images:read'] }
 */
export interface ApiKeyGrant {
  /** Shown to the handler and in logs. Default: `key-` and the first 12 hex digits of the key's SHA-256. */
  readonly id?: string
  readonly scopes?: readonly string[]
}

/**
 * Options of `apiKey()`.
 *
 * @example
 * const options: ApiKeyOptions = {
 *   keys: { [process.env.PARTNER_KEY as string]: { id: 'partner', scopes: ['images:read'] } },
 *   scopes: ['images:read'],
 * }
 */
export interface ApiKeyOptions {
  /**
   * Known keys and what each may do (a list of scopes is short for `{ scopes }`). A key is 1
   * to 1024 printable ASCII characters without spaces at either end (what a header carries
   * intact); any other throws a `TypeError` naming `keys`.
   */
  readonly keys?: Readonly<Record<string, ApiKeyGrant | readonly string[]>>
  /**
   * Finds a key the `keys` record does not hold (e.g. in a database): a grant, or a list of
   * scopes; `undefined` when unknown. An empty list is an unknown key too, so that
   * `scopesOf[key] ?? []` lets no made-up key in: a known key without scopes is `{ scopes: [] }`.
   */
  readonly lookup?: (
    key: string,
  ) => ApiKeyGrant | readonly string[] | undefined | Promise<ApiKeyGrant | readonly string[] | undefined>
  /** Header carrying the key; `false` to read only the query. @default 'x-api-key' */
  readonly header?: string | false
  /** Query parameter carrying the key; `false` to read only the header. @default false */
  readonly query?: string | false
  /** Scopes this route needs, all of them; a known key without them gets 403 `IC_API_KEY_FORBIDDEN`. @default [] */
  readonly scopes?: readonly string[]
}

/**
 * What `apiKey()` publishes as `apiKey`.
 *
 * @example
 * const { id } = res.locals.apiKey as ApiKeyInfo
 */
export interface ApiKeyInfo {
  readonly id: string
  readonly scopes: ReadonlySet<string>
}

interface Known {
  readonly info: ApiKeyInfo
  readonly published: Published
}

const MAX_KEY_CHARS = 1024
/**
 * What a key can be: 1 to {@link MAX_KEY_CHARS} printable ASCII characters, without spaces at
 * either end. A header carries nothing else intact (Node reads header bytes as Latin-1 and
 * trims them), so a key outside this set would work from the query only.
 */
const KEY = new RegExp(`^[\\x21-\\x7e](?:[\\x20-\\x7e]{0,${MAX_KEY_CHARS - 2}}[\\x21-\\x7e])?$`)

function digest(key: string): string {
  return createHash('sha256').update(key).digest('hex')
}

function resolve(key: string, grant: unknown, option: string, configured: boolean): Known {
  const value: ApiKeyGrant = Array.isArray(grant) ? { scopes: grant as string[] } : (grant as ApiKeyGrant)
  if (typeof value !== 'object' || value === null)
    throw new TypeError(
      `Expected \`${option}\` to be { id?, scopes? } or a list of scopes, got ${showValue(grant)}`,
    )
  // A record from lookup() may be a database row with fields of its own; a configured grant may not.
  if (configured) knownOptions(value, ['id', 'scopes'], `\`${option}\``)
  // A lookup() row may hold a database NULL for no scopes; a configured grant leaves `scopes` out.
  const scopes = value.scopes === undefined || (value.scopes === null && !configured) ? [] : value.scopes
  if (!Array.isArray(scopes) || scopes.some((s) => typeof s !== 'string'))
    throw new TypeError(`Expected \`${option}.scopes\` to be an array of strings, got ${showValue(scopes)}`)
  // Likewise a NULL id: the key's own digest names it, as when the id is left out.
  const id = value.id === null && !configured ? undefined : value.id
  if (id !== undefined && (typeof id !== 'string' || id === ''))
    throw new TypeError(`Expected \`${option}.id\` to be a non-empty string, got ${showValue(id)}`)
  const info: ApiKeyInfo = Object.freeze({
    id: id ?? `key-${digest(key).slice(0, 12)}`,
    scopes: new ReadonlySetView(new Set(scopes)),
  })
  return { info, published: Object.freeze({ apiKey: info }) }
}

/** Why `key` is not a valid key, without showing it (it is a secret). */
function keyProblem(key: string): string {
  if (key.length > MAX_KEY_CHARS)
    return `keys of at most ${MAX_KEY_CHARS} characters, got one of ${key.length}`
  if (key.trim() !== key) return 'keys without surrounding whitespace, got one with it'
  return 'keys of printable ASCII characters only, got one with a non-ASCII or control character'
}

/**
 * The check `apiKey()` and `requestRules()` run; `query` is the parsed query when the caller
 * has it already.
 *
 * @example
 * const check: ApiKeyCheck = compileApiKey({ keys: { 'k-123': ['images:read'] } })
 */
export type ApiKeyCheck = (req: IncomingMessage, query?: ParsedQuery) => Published | Promise<Published>

/**
 * Validates the options and returns the check `apiKey()` and `requestRules()` run.
 *
 * @example
 * const check = compileApiKey({ keys: { 'k-123': ['images:read'] } })
 * check(req)
 */
export function compileApiKey(options: Readonly<ApiKeyOptions>): ApiKeyCheck {
  knownOptions(options, ['keys', 'lookup', 'header', 'query', 'scopes'], 'apiKey')
  const { lookup } = options
  if (lookup !== undefined && typeof lookup !== 'function')
    throw new TypeError(`Expected \`lookup\` to be a function, got ${typeof lookup}`)
  if (options.keys === undefined && lookup === undefined)
    throw new TypeError('Expected `keys` or `lookup`: apiKey() needs a way to know keys')
  if (options.keys !== undefined) recordOption('keys', options.keys)
  const header = options.header === undefined ? 'x-api-key' : options.header
  if (header !== false && (typeof header !== 'string' || !HEADER_NAME.test(header)))
    throw new TypeError(`Expected \`header\` to be a header name or false, got ${showValue(header)}`)
  const param = options.query === undefined ? false : options.query
  if (param !== false && (typeof param !== 'string' || param === '' || !isPlainName(param)))
    throw new TypeError(
      `Expected \`query\` to be a parameter name (not ending in 64, without brackets) or false, got ${showValue(param)}`,
    )
  if (header === false && param === false) throw new TypeError('Expected `header` or `query`: both are false')
  const needed = options.scopes === undefined ? [] : options.scopes
  if (!Array.isArray(needed) || needed.some((s) => typeof s !== 'string' || s === ''))
    throw new TypeError(`Expected \`scopes\` to be an array of non-empty strings, got ${showValue(needed)}`)
  const keys = new Map<string, Known>()
  const entries = Object.entries(options.keys ?? {})
  if (entries.length === 0 && lookup === undefined)
    throw new TypeError(
      'Expected `keys` to hold a key, or a `lookup`: without either every request is refused',
    )
  for (const [key, grant] of entries) {
    if (key === '') throw new TypeError('Expected `keys` to have non-empty keys')
    // What `{ [process.env.KEY]: … }` makes of an unset variable: a key anyone can guess.
    if (key === 'undefined' || key === 'null')
      throw new TypeError(
        `Expected \`keys\` to hold no key named ${key}: an unset variable in \`{ [process.env.KEY]: … }\` gives that name`,
      )
    if (!KEY.test(key)) throw new TypeError(`Expected \`keys\` to hold ${keyProblem(key)}`)
    keys.set(digest(key), resolve(key, grant, 'keys[…]', true))
  }
  const headerName = header === false ? undefined : header.toLowerCase()
  const where = [
    headerName === undefined ? '' : `the ${headerName} header`,
    param === false ? '' : `the ${param} parameter`,
  ]
    .filter(Boolean)
    .join(' or ')

  const finish = (known: Known | undefined): Published => {
    if (known === undefined) throw icError('IC_API_KEY_INVALID', { message: 'The API key is not known' })
    for (const scope of needed) {
      if (!known.info.scopes.has(scope))
        throw icError('IC_API_KEY_FORBIDDEN', {
          message: `The API key ${known.info.id} lacks the scope ${scope}`,
        })
    }
    return known.published
  }

  return (req, parsed) => {
    let key: string | undefined
    if (headerName !== undefined) {
      const value = req.headers[headerName]
      // A blank header is no key: the query parameter, when there is one, may still carry it.
      const trimmed = typeof value === 'string' ? value.trim() : ''
      if (trimmed !== '') key = trimmed
    }
    if (key === undefined && param !== false) {
      const query = parsed ?? parseQuery(req)
      for (const issue of query.issues) {
        if (issue.path?.[0] === param || issue.path?.[0] === `${param}64`)
          throw icError('IS_VALIDATION_ERROR', { message: issue.message, validation: [issue] })
      }
      // Read as the header is: trimmed, blank meaning absent.
      const value = query.values.get(param)?.trim()
      if (value !== undefined && value !== '') key = value
    }
    if (key === undefined || key === '')
      throw icError('IC_API_KEY_MISSING', { message: `Send the API key in ${where}` })
    // No key can be outside KEY: unknown without asking lookup(), from the header or the query alike.
    if (!KEY.test(key)) return finish(undefined)
    const hashed = digest(key)
    const known = keys.get(hashed)
    if (known !== undefined || lookup === undefined) return finish(known)
    return Promise.resolve(lookup(key)).then((grant) =>
      // Any falsy answer (`false` from a `row !== undefined && row` lookup) means an unknown key,
      // and so does an empty list: `scopesOf[key] ?? []` must not let every made-up key in.
      finish(
        !grant || (Array.isArray(grant) && grant.length === 0)
          ? undefined
          : resolve(key, grant, 'lookup()', false),
      ),
    )
  }
}

/**
 * API keys, from a header (`x-api-key` by default) or a query parameter: missing → 401
 * `IC_API_KEY_MISSING`, unknown → 401 `IC_API_KEY_INVALID`, known but without the scopes
 * this route needs → 403 `IC_API_KEY_FORBIDDEN`. Header and query are read alike: trimmed,
 * blank meaning absent, and a key no key can be (over 1024 characters, non-ASCII, a control
 * character) unknown without asking `lookup`. Keys are kept and looked up by their
 * SHA-256, so the lookup time does not depend on how much of a key is right. Publishes
 * `apiKey` (`{ id, scopes }`, never the key).
 *
 * @example
 * import { apiKey } from 'image-api-errors/express'
 * const keys = { [process.env.PARTNER_KEY as string]: { id: 'partner', scopes: ['upload'] } }
 * app.post('/upload/*path', apiKey({ keys, scopes: ['upload'] }), handler) // Express 5; on Express 4, '/upload/*'
 */
export function apiKey(options: Readonly<ApiKeyOptions>): Guard {
  const check = compileApiKey(options)
  return function apiKey(req) {
    return check(req)
  }
}
