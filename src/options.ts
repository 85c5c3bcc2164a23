import ms from 'ms'

/**
 * A duration option: milliseconds as a number, or an `ms` string such as `'8s'` or `'1.5m'`.
 *
 * @example
 * const timeoutMs: Duration = '8s'
 */
export type Duration = number | string

/**
 * Reads a duration option: a number of milliseconds or an `ms` string (`'10s'`, `'1m'`).
 * Throws a TypeError naming the option when the value is not a finite duration in range.
 *
 * @example
 * durationMs('windowMs', '10s') // 10000
 */
export function durationMs(name: string, value: unknown, { min = 1, max = 2 ** 31 - 1 } = {}): number {
  // ms() throws on an empty string: that must be the same TypeError as any other bad value.
  const parsed =
    typeof value === 'string' ? (value.trim() === '' ? Number.NaN : ms(value as ms.StringValue)) : value
  if (typeof parsed !== 'number' || !Number.isFinite(parsed) || parsed < min || parsed > max) {
    const range = max === Number.MAX_SAFE_INTEGER ? `of at least ${min} ms` : `of ${min} ms to ${max} ms`
    throw new TypeError(
      `Expected \`${name}\` to be a duration ${range} (a number of milliseconds or an ms string such as '10s'), got ${showValue(value)}`,
    )
  }
  return Math.round(parsed)
}

/**
 * Reads a numeric option; throws a TypeError naming it when it is out of range.
 *
 * @example
 * numberOption('limit', 90, { min: 0, integer: true }) // 90
 */
export function numberOption(
  name: string,
  value: unknown,
  {
    min = 0,
    max = Number.MAX_SAFE_INTEGER,
    integer = false,
    exclusiveMin = false,
    exclusiveMax = false,
  } = {},
): number {
  if (
    typeof value !== 'number' ||
    !Number.isFinite(value) ||
    (exclusiveMin ? value <= min : value < min) ||
    (exclusiveMax ? value >= max : value > max) ||
    (integer && !Number.isInteger(value))
  ) {
    const kind = integer ? 'an integer' : 'a number'
    const from = exclusiveMin ? `greater than ${min}` : `from ${min}`
    const to = exclusiveMax ? `and less than ${max}` : exclusiveMin ? `and at most ${max}` : `to ${max}`
    throw new TypeError(`Expected \`${name}\` to be ${kind} ${from} ${to}, got ${showValue(value)}`)
  }
  return value
}

/**
 * Throws a TypeError naming the option unless the value is a function (or undefined when optional).
 *
 * @example
 * functionOption('cost', options.cost) // the function, or undefined
 */
export function functionOption<T>(name: string, value: T | undefined): T | undefined {
  if (value !== undefined && typeof value !== 'function') {
    throw new TypeError(`Expected \`${name}\` to be a function, got ${showValue(value)}`)
  }
  return value
}

/**
 * Throws a TypeError naming `owner` unless `options` is an object (not `null`, not an array).
 *
 * @example
 * optionsObject(null, 'errorHandler') // throws: Expected the options of `errorHandler` to be an object, got null
 */
export function optionsObject(options: unknown, owner: string): asserts options is object {
  if (typeof options === 'object' && options !== null && !Array.isArray(options)) return
  const got = options === null ? 'null' : Array.isArray(options) ? 'an array' : typeof options
  const name = owner.startsWith('`') ? owner : `\`${owner}\``
  throw new TypeError(`Expected the options of ${name} to be an object, got ${got}`)
}

/**
 * Throws a TypeError naming the first key of `options` outside `known`, own or inherited
 * (enumerable): a misspelt option (`scope` for `scopes`) must fail at start-up, not be ignored.
 * Options that are not an object fail first ({@link optionsObject}).
 *
 * @example
 * knownOptions({ scope: ['admin'] }, ['keys', 'scopes'], 'apiKey') // throws: Unknown option `scope` of apiKey
 */
export function knownOptions(
  options: unknown,
  known: readonly string[],
  owner: string,
): asserts options is object {
  optionsObject(options, owner)
  // for…in, not Object.keys: the factories read inherited options too (`Object.create(defaults)`).
  for (const key in options) {
    if (!known.includes(key))
      throw new TypeError(`Unknown option \`${key}\` of ${owner}: expected one of ${known.join(', ')}`)
  }
}

/**
 * Throws a TypeError when a factory that takes no options was given any: a JavaScript
 * caller's `{ timeoutMs: 5000 }` would otherwise be ignored without a word.
 *
 * @example
 * noOptions([{ status: 410 }], 'notFound') // throws: notFound() takes no options, got {"status":410}
 */
export function noOptions(given: readonly unknown[], owner: string): void {
  if (given.length > 0 && !(given.length === 1 && given[0] === undefined))
    throw new TypeError(`${owner}() takes no options, got ${given.map(showValue).join(', ')}`)
}

/**
 * Throws a TypeError naming the option unless the value is a plain object (a record literal
 * or `Object.create(null)`): a `Map` or an array given for a record would be read as empty.
 *
 * @example
 * recordOption('keys', { k1: ['images:read'] })
 */
export function recordOption(name: string, value: unknown): void {
  const proto = typeof value === 'object' && value !== null ? Object.getPrototypeOf(value) : undefined
  if (proto !== Object.prototype && proto !== null)
    throw new TypeError(
      `Expected \`${name}\` to be a plain object (a record by name), got ${showValue(value)}`,
    )
}

// JSON has no BigInt: one inside an array or an object goes through JSON.stringify as a marked
// string and comes out unquoted (`[429n]`), instead of making the whole value unshowable. A
// string of the marker's form would be shown as a BigInt too: only in a message, and no
// configuration holds a NUL.
const BIGINT_MARK = '\u0000bigint:'
const MARKED_BIGINT = /"\\u0000bigint:(-?\d+)"/g

function markBigInt(_key: string, item: unknown): unknown {
  return typeof item === 'bigint' ? `${BIGINT_MARK}${item}` : item
}

/**
 * A configuration value as an error message shows it: JSON when it has one; `10n`, `NaN`,
 * `Infinity`, symbols and regular expressions as written; a function, or an instance of another
 * class (`a Map`), by its kind. A BigInt inside an array or a plain object is shown as `10n`
 * too; a value JSON cannot write at all (a cycle) by its type.
 *
 * @example
 * showValue(10n) // '10n'
 * showValue([429n]) // '[429n]'
 * showValue(Symbol('ttl')) // 'Symbol(ttl)'
 * showValue(new Map()) // 'a Map'
 */
export function showValue(value: unknown): string {
  if (typeof value === 'bigint') return `${value}n`
  if (typeof value === 'symbol') return value.toString()
  if (typeof value === 'number' && !Number.isFinite(value)) return String(value)
  if (typeof value === 'function') return 'a function'
  if (value instanceof RegExp) return String(value)
  if (typeof value === 'object' && value !== null && !Array.isArray(value)) {
    const proto = Object.getPrototypeOf(value)
    if (proto !== Object.prototype && proto !== null) return `a ${proto?.constructor?.name ?? 'object'}`
  }
  try {
    return JSON.stringify(value, markBigInt)?.replace(MARKED_BIGINT, '$1n') ?? typeof value
  } catch {
    return typeof value
  }
}
