import type { IncomingMessage } from 'node:http'
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
  readonly values: QueryValues
  /**
   * What an Image-Charts signature covers: `search` without its `ichm` (or `ichm64`) pairs, each
   * with one `&` (the other pairs joined as sent, empty ones included); `search` itself when
   * there is no `ichm`.
   */
  readonly withoutSignature: string
  /** Repeated parameters, malformed percent-encoding, invalid base64: every problem, in order. */
  readonly issues: readonly ValidationItem[]
  /**
   * Whether a name holds a `[`, as sent or percent-encoded (`width[]`, `[origin]`,
   * `width%5B%5D`, also in a name whose decoding fails): under `qs` (Express 4, Express 5's
   * `extended` parser) such a name is the parameter {@link rootName} gives ({@link
   * issueRootName} for the names of `issues`). `false` for most queries, which the rules then need not
   * look at for brackets.
   */
  readonly brackets: boolean
}

/** What `ReadonlyMap<string, string>`'s iterating methods return in the TypeScript lib at hand. */
type MapIteratorOf<K extends 'keys' | 'values' | 'entries'> = ReturnType<ReadonlyMap<string, string>[K]>

/** Past this many names a lookup goes through a `Map`; below it, a scan of the names is cheaper than hashing them. */
const INDEXED_FROM = 16

/**
 * The decoded values of a query, by canonical name, in query order: a read-only `Map` built
 * on two arrays, which is cheaper to make than a `Map` for the few parameters of an image URL.
 *
 * @example
 * const { values } = parseQueryString('width=300&crop=fit')
 * values.get('crop') // 'fit'
 * values.names // ['width', 'crop']
 */
export class QueryValues implements ReadonlyMap<string, string> {
  /** The canonical names, in the order the query gave them. */
  readonly names: readonly string[]
  /** The decoded value of each of `names`, at the same index. */
  readonly texts: readonly string[]
  readonly #index: ReadonlyMap<string, number> | undefined
  /** One bit per {@link nameBit} of the names: a name whose bit is clear is absent, found without a scan. */
  readonly #bits: number

  /** @internal Made by {@link parseQueryString}. */
  constructor(
    names: readonly string[],
    texts: readonly string[],
    bits: number,
    index?: ReadonlyMap<string, number>,
  ) {
    this.names = names
    this.texts = texts
    this.#bits = bits
    this.#index = index
  }

  get size(): number {
    return this.names.length
  }

  /** The position of `name` in {@link names}, or -1. */
  indexOf(name: string): number {
    if (typeof name !== 'string' || name.length === 0 || (this.#bits & nameBit(name)) === 0) return -1
    if (this.#index !== undefined) return this.#index.get(name) ?? -1
    const { names } = this
    const { length } = name
    for (let i = 0; i < names.length; i++) {
      const candidate = names[i] as string
      if (candidate.length === length && candidate === name) return i
    }
    return -1
  }

  get(name: string): string | undefined {
    const i = this.indexOf(name)
    return i === -1 ? undefined : this.texts[i]
  }

  has(name: string): boolean {
    return this.indexOf(name) !== -1
  }

  forEach(
    callback: (value: string, name: string, map: ReadonlyMap<string, string>) => void,
    thisArg?: unknown,
  ): void {
    const { names, texts } = this
    for (let i = 0; i < names.length; i++)
      callback.call(thisArg, texts[i] as string, names[i] as string, this)
  }

  // Typed by the lib's own ReadonlyMap: IterableIterator before TypeScript 5.6, MapIterator after.
  keys(): MapIteratorOf<'keys'> {
    return this.names[Symbol.iterator]()
  }

  values(): MapIteratorOf<'values'> {
    return this.texts[Symbol.iterator]()
  }

  entries(): MapIteratorOf<'entries'> {
    return this.names.map((name, i): [string, string] => [name, this.texts[i] as string])[Symbol.iterator]()
  }

  [Symbol.iterator](): MapIteratorOf<'entries'> {
    return this.entries()
  }

  get [Symbol.toStringTag](): string {
    return 'QueryValues'
  }
}

/** A bit for the length and first character of a (non-empty) name: two names with different bits differ. */
function nameBit(name: string): number {
  return 1 << ((name.length + name.charCodeAt(0)) & 31)
}

const NO_ISSUES: readonly ValidationItem[] = Object.freeze([])
/** `%5B` or `%5D`, either case: what `qs` reads as a bracket before it decodes a name. */
const ENCODED_BRACKET = /%5[bd]/i
const BASE64 = /^[A-Za-z0-9+/_-]*={0,2}$/
// ignoreBOM keeps a leading BOM in the text, so `width64` refuses it as `width` does.
const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true })

/**
 * `+` is a space in a query string; percent-decoding that never throws (`undefined` when malformed).
 *
 * @example
 * decodeComponent('a+b%2Fc') // 'a b/c'
 */
export function decodeComponent(text: string): string | undefined {
  const plus = text.indexOf('+')
  const spaced = plus === -1 ? text : text.replaceAll('+', ' ')
  if (spaced.indexOf('%') === -1) return spaced
  try {
    return decodeURIComponent(spaced)
  } catch {
    return undefined
  }
}

/** The 6-bit value of a base64 or base64url character (the caller has checked that it is one). */
function sextet(code: number): number {
  if (code >= 97) return code - 71
  if (code >= 65 && code <= 90) return code - 65
  if (code >= 48 && code <= 57) return code + 4
  return code === 43 || code === 45 ? 62 : 63
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
  if (!BASE64.test(text)) return undefined
  let data = text.length
  while (data > 0 && text.charCodeAt(data - 1) === 61) data--
  const rest = data % 4
  // One character left over is never a byte; padding must complete the last quantum; and the
  // bits after the last byte must be zero, so that each value has one encoding (RFC 4648 3.5).
  if (rest === 1 || (data < text.length && text.length % 4 !== 0)) return undefined
  if (rest !== 0 && (sextet(text.charCodeAt(data - 1)) & (rest === 2 ? 0x0f : 0x03)) !== 0) return undefined
  try {
    return utf8.decode(Buffer.from(text, 'base64'))
  } catch {
    return undefined
  }
}

/**
 * A parameter name (or another text of the client's, an account id) as a message shows it:
 * quoted and escaped as JSON, cut at 64 characters, never between the two halves of a
 * character outside the BMP (an emoji), whose lone half JSON would show as `\ud83d`.
 *
 * @example
 * quoteName('a\r\nb') // '"a\\r\\nb"'
 */
export function quoteName(name: string): string {
  if (name.length <= 64) return JSON.stringify(name)
  const last = name.charCodeAt(63)
  return JSON.stringify(`${name.slice(0, last >= 0xd800 && last <= 0xdbff ? 63 : 64)}…`)
}

/**
 * The parameter a name stands for under a `qs`-style parser (Express 4's default, Express 5's
 * `extended`): `chxt[]`, `chxt[0]` and `chxt[a][b]` (and `chxt%5B%5D`, decoded already) are
 * `chxt`, and so is `[chxt]`, since qs takes the first bracket's text as the name when nothing
 * comes before it. A name without such a bracket is itself. It may find a root where qs keeps
 * the name whole (`a[` is `a` here): the rules then refuse a name no parser needed, never the
 * reverse.
 *
 * @example
 * rootName('width[]') // 'width'
 * rootName('[origin]') // 'origin'
 * rootName('width') // 'width'
 */
export function rootName(name: string): string {
  const open = name.indexOf('[')
  if (open === -1) return name
  if (open > 0) return name.slice(0, open)
  const close = name.indexOf(']', 1)
  return close > 1 ? name.slice(1, close) : name
}

/**
 * Whether a query parameter is read under `name` exactly, so that an option naming a
 * parameter (an allow-list, a feature's `params`) can name it so: not a `NAME64` (its value
 * is stored under `NAME`), and no bracket (`width[]` is the parameter `width`, see
 * {@link rootName}). Internal.
 *
 * @example
 * isPlainName('width') // true
 * isPlainName('width64') // false: the base64 form of width
 * isPlainName('width[]') // false: width, sent with brackets
 */
export function isPlainName(name: string): boolean {
  return !isBase64Name(name) && !name.includes('[') && !name.includes(']')
}

/** `NAME64`: a name of three characters or more ending in `64`. */
function isBase64Name(name: string): boolean {
  const last = name.length - 1
  return last > 1 && name.charCodeAt(last) === 52 && name.charCodeAt(last - 1) === 54
}

/**
 * {@link rootName} of the name an item of `issues` names. A name whose percent-decoding failed
 * is named as sent, and `qs` turns `%5B` and `%5D` into brackets before it decodes (it hands
 * `origin%5B%5D%ZZ=…` to the handler as `origin`), so they are read as brackets here too. A
 * name that did decode holds a `%5B` of its own only when it was sent as `%255B`: then a root
 * is found where qs keeps the name whole, and a query already refused gets another refusal,
 * never none.
 *
 * @example
 * issueRootName('origin%5B%5D%ZZ') // 'origin'
 * issueRootName('[width]') // 'width'
 * issueRootName('width%ZZ') // 'width%ZZ'
 */
export function issueRootName(name: string): string {
  return rootName(ENCODED_BRACKET.test(name) ? name.replace(/%5b/gi, '[').replace(/%5d/gi, ']') : name)
}

/**
 * The item of a name with brackets standing for `root`, a parameter a rule judges: it must be
 * sent as a plain `name=value`, whatever the query parser of the app would make of it.
 *
 * @example
 * bracketItem('width[]', 'width').path // ['width']
 */
export function bracketItem(sent: string, root: string): ValidationItem {
  return {
    message: `${quoteName(sent)} must be sent without brackets, as a plain ${quoteName(`${root}=value`)}`,
    path: [root],
    type: 'query.brackets',
  }
}

/**
 * The items of a refusal, one per parameter and `type`: the first of each kept, in order. A
 * query that sends a broken name twice (`width=%ZZ&width=%ZZ`), repeats one three times
 * (`width=1&width64=MQ&width=2`) or sends two bracketed forms of it, and two rules finding
 * the same problem, give one item. `items` itself when no item comes twice.
 *
 * @example
 * const twice = { message: '"width" must not be repeated', path: ['width'], type: 'query.repeated' }
 * distinctItems([twice, { ...twice }]).length // 1
 */
export function distinctItems(items: readonly ValidationItem[]): readonly ValidationItem[] {
  if (items.length < 2) return items
  const seen = new Set<string>()
  let kept: ValidationItem[] | undefined
  for (let i = 0; i < items.length; i++) {
    const item = items[i] as ValidationItem
    const key = `${item.type ?? ''}\u0000${JSON.stringify(item.path ?? [])}`
    if (!seen.has(key)) {
      seen.add(key)
      kept?.push(item)
    } else kept ??= items.slice(0, i)
  }
  return kept ?? items
}

/** The first index of `char` in `text` at or after `from`, reusing `known` when it is still ahead; past the end when there is none. */
function nextIndex(text: string, char: string, from: number, known: number): number {
  if (known >= from) return known
  const at = text.indexOf(char, from)
  return at === -1 ? text.length + 1 : at
}

/**
 * Parses a query string: pairs split on `&`, names and values percent-decoded (`+` is a
 * space), `NAME64` values base64-decoded under `NAME`. Never throws: every problem becomes an
 * item of `issues` (`query.repeated`, `query.encoding`, `string.base64`). Empty pairs (`a=1&&b=2`)
 * and pairs without a name are ignored. Linear in the length of the query, however many pairs.
 *
 * @example
 * parseQueryString('width=300&crop64=Zml0', '/img?width=300&crop64=Zml0').values.get('crop') // 'fit'
 */
export function parseQueryString(search: string, url = `?${search}`): ParsedQuery {
  const names: string[] = []
  const texts: string[] = []
  let index: Map<string, number> | undefined
  let issues: ValidationItem[] | undefined
  let broken: Set<string> | undefined
  let signed: number[] | undefined
  let bits = 0
  let brackets = false
  const length = search.length
  // Where the next `=`, `%` and `+` are: found once and reused, so no pair rescans the rest of the query.
  let eq = -1
  let percent = -1
  let plus = -1
  // The same for `[`, searched once for the whole query: past the end (no pair looks) when there is none.
  let bracket = search.indexOf('[')
  if (bracket === -1) bracket = length + 1
  let start = 0
  while (start <= length) {
    let end = search.indexOf('&', start)
    if (end === -1) end = length
    if (end > start) {
      eq = nextIndex(search, '=', start, eq)
      percent = nextIndex(search, '%', start, percent)
      plus = nextIndex(search, '+', start, plus)
      const split = Math.min(eq, end)
      const rawName = search.slice(start, split)
      let name: string | undefined = rawName
      if (percent < split || plus < split) {
        name = decodeComponent(rawName)
        // A name that does not decode is read by qs with its %5B and %5D as brackets (see issueRootName).
        if (
          !brackets &&
          percent < split &&
          (name === undefined ? ENCODED_BRACKET.test(rawName) : name.includes('['))
        )
          brackets = true
      }
      if (!brackets && bracket < split) {
        bracket = nextIndex(search, '[', start, bracket)
        if (bracket < split) brackets = true
      }
      let decoded: string | undefined = ''
      if (split < end) {
        percent = nextIndex(search, '%', split + 1, percent)
        plus = nextIndex(search, '+', split + 1, plus)
        const rawValue = search.slice(split + 1, end)
        decoded = percent < end || plus < end ? decodeComponent(rawValue) : rawValue
      }
      if ((name?.length === 4 && name === 'ichm') || (name?.length === 6 && name === 'ichm64')) {
        signed ??= []
        signed.push(start, end)
      }
      if (name === undefined || decoded === undefined) {
        issues ??= []
        const shown = name ?? rawName
        issues.push({
          message: `${quoteName(shown)} is not valid percent-encoding`,
          path: [shown],
          type: 'query.encoding',
        })
      } else if (name !== '') {
        let key = name
        let value: string | undefined = decoded
        if (isBase64Name(name)) {
          key = name.slice(0, -2)
          value = decodeBase64Value(decoded)
          if (value === undefined) {
            issues ??= []
            issues.push({
              message: `${quoteName(name)} must be a valid base64 string`,
              path: [name],
              type: 'string.base64',
            })
          }
        }
        const bit = nameBit(key)
        const seen = (bits & bit) !== 0 && (index !== undefined ? index.has(key) : names.includes(key))
        if (seen || broken?.has(key) === true) {
          issues ??= []
          issues.push({
            message: `${quoteName(key)} must not be repeated`,
            path: [key],
            type: 'query.repeated',
          })
        } else if (value !== undefined) {
          if (index !== undefined) index.set(key, names.length)
          bits |= bit
          names.push(key)
          texts.push(value)
          if (index === undefined && names.length === INDEXED_FROM)
            index = new Map(names.map((n, i) => [n, i]))
        } else {
          broken ??= new Set()
          broken.add(key)
        }
      }
    }
    start = end + 1
  }
  return {
    url,
    search,
    values: new QueryValues(names, texts, bits, index),
    withoutSignature: signed === undefined ? search : withoutPairs(search, signed),
    issues: issues ?? NO_ISSUES,
    brackets,
  }
}

/**
 * `search` without the pairs at `[start, end)` in `ranges` (in order), each with one `&`: the
 * query's other pairs, joined as they were (empty ones included).
 */
function withoutPairs(search: string, ranges: readonly number[]): string {
  // Concatenated rather than joined: with the usual single `ichm` at the end, this is one slice.
  let kept: string | undefined
  let from = 0
  for (let i = 0; i < ranges.length; i += 2) {
    const start = ranges[i] as number
    if (start > from) kept = keep(kept, search.slice(from, start - 1))
    from = (ranges[i + 1] as number) + 1
  }
  if (from <= search.length) kept = keep(kept, search.slice(from))
  return kept ?? ''
}

function keep(kept: string | undefined, part: string): string {
  return kept === undefined ? part : `${kept}&${part}`
}

let lastRequest: IncomingMessage | undefined
let lastQuery: ParsedQuery | undefined
let forgetting = false

// Kept until the event loop's next turn at most: holding it longer would keep the last request
// (and what its handler published, an upload's body included) alive while the server is idle.
// One immediate per turn, however many requests it parses; the rules of a request that run in a
// later turn (after an asynchronous lookup) parse again.
function forget(): void {
  lastRequest = undefined
  lastQuery = undefined
  forgetting = false
}

/**
 * The parsed query of a request: `req.url` is parsed once, so every rule of the package that
 * runs for the request reads the same values. The result of the request being handled is kept
 * until the event loop's next turn (one request, not one per request: the rules of a request
 * run one after the other, and keeping it needs no per-request entry); a request whose rules
 * interleave with another's is parsed again, never answered with another request's values.
 *
 * @example
 * const { values, issues } = parseQuery(req)
 */
export function parseQuery(req: IncomingMessage): ParsedQuery {
  const url = req.url ?? ''
  if (req === lastRequest && lastQuery !== undefined && lastQuery.url === url) return lastQuery
  const mark = url.indexOf('?')
  // `/img??origin=…`: Koa 3's URLSearchParams drops a second `?` too, and reads `origin`.
  let search = mark === -1 ? '' : url.slice(url.charCodeAt(mark + 1) === 63 ? mark + 2 : mark + 1)
  const hash = search.indexOf('#')
  if (hash !== -1) search = search.slice(0, hash)
  const parsed = parseQueryString(search, url)
  lastRequest = req
  lastQuery = parsed
  if (!forgetting) {
    forgetting = true
    setImmediate(forget).unref()
  }
  return parsed
}
