import { NameTable } from '../../name-table.ts'
import { showValue } from '../../options.ts'

/** Options every parameter rule takes. */
interface BaseRule {
  /** Refuse the request when the parameter is absent. @default false */
  readonly required?: boolean
  /** Replaces the message of every failure of this parameter (the `type` stays). */
  readonly message?: string
}

/**
 * How one query parameter is validated and converted. Names ending in `64` are reserved for
 * the base64 forms, which are decoded and validated like the plain name. A `default` is
 * published when the parameter is absent; a `size` default as a new object for each request.
 *
 * @example
 * const rules: Record<string, ParamRule> = {
 *   width: { type: 'integer', min: 1, max: 4000 },
 *   chs: { type: 'size', required: true, maxWidth: 999, maxHeight: 999, maxPixels: 998_001 },
 *   theme: { type: 'enum', values: ['light', 'dark'], default: 'light' },
 * }
 */
export type ParamRule =
  | (BaseRule & {
      readonly type: 'integer' | 'number'
      readonly min?: number
      readonly max?: number
      readonly default?: number
    })
  | (BaseRule & { readonly type: 'enum'; readonly values: readonly string[]; readonly default?: string })
  | (BaseRule & { readonly type: 'boolean'; readonly default?: boolean })
  | (BaseRule & { readonly type: 'colour' | 'color'; readonly default?: string })
  | (BaseRule & {
      readonly type: 'size'
      readonly maxWidth?: number
      readonly maxHeight?: number
      readonly maxPixels?: number
      readonly default?: Size
    })
  | (BaseRule & {
      readonly type: 'pattern'
      readonly pattern: RegExp | string
      readonly maxLength?: number
      readonly default?: string
    })
  | (BaseRule & {
      readonly type: 'string'
      readonly minLength?: number
      readonly maxLength?: number
      readonly default?: string
    })

/**
 * A parsed `WxH` size.
 *
 * @example
 * const size: Size = { width: 300, height: 200 }
 */
export interface Size {
  readonly width: number
  readonly height: number
}

/**
 * A typed, normalised parameter value: integers and numbers as `number`, booleans as
 * `boolean`, colours as lower-case hex without `#` (3 and 4 digits expanded), sizes as
 * `{ width, height }`, enums, patterns and strings as given.
 *
 * @example
 * const value: ParamValue = 300
 */
export type ParamValue = number | string | boolean | Size

/**
 * A failure of one parameter; a class so the success path allocates nothing.
 *
 * @example
 * const failure = new Failure('"width" must be a number', 'number.base')
 */
export class Failure {
  readonly message: string
  readonly type: string
  constructor(message: string, type: string) {
    this.message = message
    this.type = type
  }
}

/**
 * A rule compiled at construction: `parse` returns the value or a {@link Failure}.
 *
 * @example
 * const rule: CompiledRule = compileRule('width', { type: 'integer', max: 10 }, 'params.width')
 * rule.parse('11') instanceof Failure // true
 */
export interface CompiledRule {
  readonly name: string
  readonly required: boolean
  readonly message: string | undefined
  readonly default: ParamValue | undefined
  readonly parse: (raw: string) => ParamValue | Failure
  /** Which factor of the output area the value is: 1 `width`, 2 `height`, 3 `dpr`, 0 none. */
  readonly area: 0 | 1 | 2 | 3
}

const INTEGER = /^[+-]?\d+$/
const NUMBER = /^[+-]?(?:\d+(?:\.\d*)?|\.\d+)$/
const COLOUR = /^#?(?:[0-9a-fA-F]{3,4}|[0-9a-fA-F]{6}|[0-9a-fA-F]{8})$/
const SIZE = /^(\d{1,9})[xX](\d{1,9})$/
const MAX_NUMBER_CHARS = 32
const DEFAULT_MAX_LENGTH = 2048

const DEFAULT_KINDS: Readonly<Record<string, 'number' | 'string' | 'boolean' | 'size'>> = {
  integer: 'number',
  number: 'number',
  enum: 'string',
  boolean: 'boolean',
  colour: 'string',
  color: 'string',
  size: 'size',
  pattern: 'string',
  string: 'string',
}

/** A numeric default whose text has an exponent: within the rule's range, finite, an integer for `integer`. */
function numberDefault(rule: ParamRule, value: number): number | Failure {
  const { min, max } = rule as { min?: number; max?: number }
  if (!Number.isFinite(value) || (rule.type === 'integer' && !Number.isSafeInteger(value)))
    return new Failure(rule.type === 'integer' ? 'a safe integer' : 'a finite number', 'number.base')
  if (min !== undefined && value < min) return new Failure(`at least ${min}`, 'number.min')
  if (max !== undefined && value > max) return new Failure(`at most ${max}`, 'number.max')
  return value
}

function fail(option: string, expected: string, got: unknown): never {
  throw new TypeError(`Expected \`${option}\` to be ${expected}, got ${showValue(got)}`)
}

function optionalFinite(option: string, value: unknown): number | undefined {
  if (value === undefined) return undefined
  if (typeof value !== 'number' || !Number.isFinite(value)) fail(option, 'a finite number', value)
  return value
}

/** A count option; `least` is 1 for the limits that would refuse every value at 0 (a width, a maximum length). */
function optionalCount(option: string, value: unknown, least: 0 | 1 = 0): number | undefined {
  if (value === undefined) return undefined
  if (!Number.isSafeInteger(value) || (value as number) < least)
    fail(option, least === 0 ? 'a non-negative integer' : 'a positive integer', value)
  return value as number
}

/** The value of 1 to 9 ASCII digits (the usual width or quality), or -1: spares the common case two regexes and a string-to-number call. */
function smallInteger(raw: string): number {
  const length = raw.length
  if (length === 0 || length > 9) return -1
  let value = 0
  for (let i = 0; i < length; i++) {
    const digit = raw.charCodeAt(i) - 48
    if (digit < 0 || digit > 9) return -1
    value = value * 10 + digit
  }
  return value
}

function parseBoolean(raw: string): boolean | undefined {
  switch (raw) {
    case '':
    case 'true':
    case '1':
      return true
    case 'false':
    case '0':
      return false
    default:
      return undefined
  }
}

function normaliseColour(raw: string): string {
  const hex = (raw.charCodeAt(0) === 35 ? raw.slice(1) : raw).toLowerCase()
  if (hex.length > 4) return hex
  let out = ''
  for (const digit of hex) out += digit + digit
  return out
}

const KNOWN_KEYS: Readonly<Record<ParamRule['type'], readonly string[]>> = {
  integer: ['min', 'max'],
  number: ['min', 'max'],
  enum: ['values'],
  boolean: [],
  colour: [],
  color: [],
  size: ['maxWidth', 'maxHeight', 'maxPixels'],
  pattern: ['pattern', 'maxLength'],
  string: ['minLength', 'maxLength'],
}

/**
 * Checks a rule and compiles it into a parser. Throws a `TypeError` naming the option
 * (`params.width.max`) when the rule is wrong: unknown type, min > max, invalid pattern…
 *
 * @example
 * compileRule('chs', { type: 'size', maxWidth: 999 }, 'params.chs').parse('300x200') // { width: 300, height: 200 }
 */
export function compileRule(name: string, rule: ParamRule, option: string): CompiledRule {
  if (typeof rule !== 'object' || rule === null) fail(option, 'a rule object', rule)
  const type = (rule as { type?: unknown }).type
  if (typeof type !== 'string' || !Object.hasOwn(KNOWN_KEYS, type)) {
    fail(`${option}.type`, `one of ${Object.keys(KNOWN_KEYS).join(', ')}`, type)
  }
  const allowed = new Set([
    'type',
    'required',
    'message',
    'default',
    ...KNOWN_KEYS[type as ParamRule['type']],
  ])
  for (const key of Object.keys(rule)) {
    if (!allowed.has(key))
      throw new TypeError(`Unknown option \`${option}.${key}\` for a rule of type ${type}`)
  }
  if (rule.required !== undefined && typeof rule.required !== 'boolean')
    fail(`${option}.required`, 'a boolean', rule.required)
  if (rule.message !== undefined && (typeof rule.message !== 'string' || rule.message === ''))
    fail(`${option}.message`, 'a non-empty string', rule.message)
  const label = JSON.stringify(name)
  const empty = new Failure(`${label} is not allowed to be empty`, 'string.empty')
  let parse: (raw: string) => ParamValue | Failure
  switch (rule.type) {
    case 'integer':
    case 'number': {
      const integer = rule.type === 'integer'
      const min = optionalFinite(`${option}.min`, rule.min)
      const max = optionalFinite(`${option}.max`, rule.max)
      for (const [key, bound] of [
        ['min', min],
        ['max', max],
      ] as const) {
        if (integer && bound !== undefined && !Number.isInteger(bound))
          fail(`${option}.${key}`, 'an integer (the rule is of type integer)', bound)
      }
      if (min !== undefined && max !== undefined && min > max)
        fail(`${option}.min`, `at most \`${option}.max\` (${max})`, min)
      const base = new Failure(`${label} must be a number`, 'number.base')
      const notInteger = new Failure(`${label} must be an integer`, 'number.integer')
      const unsafe = new Failure(`${label} must be a safe number`, 'number.unsafe')
      const tooSmall =
        min === undefined
          ? undefined
          : new Failure(`${label} must be greater than or equal to ${min}`, 'number.min')
      const tooLarge =
        max === undefined
          ? undefined
          : new Failure(`${label} must be less than or equal to ${max}`, 'number.max')
      parse = (raw) => {
        const small = smallInteger(raw)
        if (small !== -1) {
          if (tooSmall !== undefined && small < (min as number)) return tooSmall
          if (tooLarge !== undefined && small > (max as number)) return tooLarge
          return small
        }
        if (raw === '') return empty
        if (raw.length > MAX_NUMBER_CHARS || !NUMBER.test(raw)) return base
        if (integer && !INTEGER.test(raw)) return notInteger
        const value = Number(raw)
        if (integer ? !Number.isSafeInteger(value) : !Number.isFinite(value)) return unsafe
        if (tooSmall !== undefined && value < (min as number)) return tooSmall
        if (tooLarge !== undefined && value > (max as number)) return tooLarge
        // `-0` reads as 0: a handler should not meet a negative zero.
        return value === 0 ? 0 : value
      }
      break
    }
    case 'enum': {
      if (!Array.isArray(rule.values) || rule.values.length === 0)
        fail(`${option}.values`, 'a non-empty array of strings', rule.values)
      for (const value of rule.values) {
        if (typeof value !== 'string') fail(`${option}.values`, 'a non-empty array of strings', rule.values)
      }
      const values = new NameTable(rule.values.map((value) => [value, true]))
      const notOne = new Failure(`${label} must be one of [${rule.values.join(', ')}]`, 'any.only')
      parse = (raw) => (values.has(raw) ? raw : raw === '' ? empty : notOne)
      break
    }
    case 'boolean': {
      const notBoolean = new Failure(`${label} must be a boolean`, 'boolean.base')
      parse = (raw) => parseBoolean(raw) ?? notBoolean
      break
    }
    case 'colour':
    case 'color': {
      const notColour = new Failure(`${label} must be a hex colour of 3, 4, 6 or 8 digits`, 'string.colour')
      parse = (raw) => (raw === '' ? empty : COLOUR.test(raw) ? normaliseColour(raw) : notColour)
      break
    }
    case 'size': {
      const maxWidth = optionalCount(`${option}.maxWidth`, rule.maxWidth, 1)
      const maxHeight = optionalCount(`${option}.maxHeight`, rule.maxHeight, 1)
      const maxPixels = optionalCount(`${option}.maxPixels`, rule.maxPixels, 1)
      const base = new Failure(`${label} must be a size WIDTHxHEIGHT, e.g. 300x200`, 'size.base')
      const zero = new Failure(`${label} width and height must be greater than or equal to 1`, 'size.min')
      const wide =
        maxWidth === undefined
          ? undefined
          : new Failure(`${label} width must be less than or equal to ${maxWidth}`, 'size.maxWidth')
      const tall =
        maxHeight === undefined
          ? undefined
          : new Failure(`${label} height must be less than or equal to ${maxHeight}`, 'size.maxHeight')
      const large =
        maxPixels === undefined
          ? undefined
          : new Failure(
              `${label} width × height must be less than or equal to ${maxPixels} pixels`,
              'size.maxPixels',
            )
      parse = (raw) => {
        if (raw === '') return empty
        const match = SIZE.exec(raw)
        if (match === null) return base
        const width = Number(match[1])
        const height = Number(match[2])
        if (width < 1 || height < 1) return zero
        if (wide !== undefined && width > (maxWidth as number)) return wide
        if (tall !== undefined && height > (maxHeight as number)) return tall
        if (large !== undefined && width * height > (maxPixels as number)) return large
        return { width, height }
      }
      break
    }
    case 'pattern': {
      let pattern: RegExp
      if (rule.pattern instanceof RegExp) {
        // A global or sticky regex keeps `lastIndex` between tests: drop those flags.
        pattern = new RegExp(rule.pattern.source, rule.pattern.flags.replace(/[gy]/g, ''))
      } else if (typeof rule.pattern === 'string') {
        try {
          pattern = new RegExp(rule.pattern, 'u')
        } catch (err) {
          throw new TypeError(
            `Expected \`${option}.pattern\` to be a valid regular expression, got ${showValue(rule.pattern)}: ${(err as Error).message}`,
          )
        }
      } else {
        fail(`${option}.pattern`, 'a RegExp or a string', rule.pattern)
      }
      const maxLength = optionalCount(`${option}.maxLength`, rule.maxLength, 1) ?? DEFAULT_MAX_LENGTH
      const tooLong = new Failure(
        `${label} length must be less than or equal to ${maxLength} characters long`,
        'string.max',
      )
      const mismatch = new Failure(
        `${label} fails to match the required pattern: ${pattern}`,
        'string.pattern.base',
      )
      parse = (raw) =>
        raw.length > maxLength ? tooLong : pattern.test(raw) ? raw : raw === '' ? empty : mismatch
      break
    }
    case 'string': {
      const minLength = optionalCount(`${option}.minLength`, rule.minLength) ?? 1
      const maxLength = optionalCount(`${option}.maxLength`, rule.maxLength, 1) ?? DEFAULT_MAX_LENGTH
      if (minLength > maxLength)
        fail(`${option}.minLength`, `at most \`${option}.maxLength\` (${maxLength})`, minLength)
      const tooShort = new Failure(
        `${label} length must be at least ${minLength} characters long`,
        'string.min',
      )
      const tooLong = new Failure(
        `${label} length must be less than or equal to ${maxLength} characters long`,
        'string.max',
      )
      parse = (raw) =>
        raw.length > maxLength ? tooLong : raw.length >= minLength ? raw : raw === '' ? empty : tooShort
      break
    }
  }
  let fallback: ParamValue | undefined
  if (rule.default !== undefined && rule.required === true)
    throw new TypeError(
      `Expected \`${option}\` to be required or to have a \`default\`, not both: a required parameter's default is never used`,
    )
  if (rule.default !== undefined) {
    const sample = rule.default as unknown
    const kind = DEFAULT_KINDS[type]
    const isSize =
      typeof sample === 'object' &&
      sample !== null &&
      typeof (sample as Size).width === 'number' &&
      typeof (sample as Size).height === 'number'
    if (kind === 'size' ? !isSize : typeof sample !== kind)
      fail(`${option}.default`, kind === 'size' ? 'a { width, height } size' : `a ${kind}`, sample)
    const asText =
      typeof sample === 'object' && sample !== null && 'width' in sample && 'height' in sample
        ? `${(sample as Size).width}x${(sample as Size).height}`
        : String(sample)
    // A number the text form cannot show (1e-7, 1e21) is checked as a number.
    const value =
      typeof sample === 'number' && /e/i.test(asText) ? numberDefault(rule, sample) : parse(asText)
    if (value instanceof Failure)
      fail(`${option}.default`, `a value the rule accepts (${value.message})`, sample)
    fallback = value
  }
  const area = name === 'width' ? 1 : name === 'height' ? 2 : name === 'dpr' ? 3 : 0
  return { name, required: rule.required === true, message: rule.message, default: fallback, parse, area }
}
