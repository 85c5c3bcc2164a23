import { icError } from '../../errors.ts'
import type { Guard } from '../../guard.ts'
import { NameTable } from '../../name-table.ts'
import { knownOptions, recordOption, showValue } from '../../options.ts'
import {
  bracketItem,
  distinctItems,
  isPlainName,
  issueRootName,
  type ParsedQuery,
  parseQuery,
  quoteName,
  rootName,
} from '../../query.ts'
import type { ValidationItem } from '../../validation-header.ts'
import {
  type CompiledRule,
  compileRule,
  Failure,
  type ParamRule,
  type ParamValue,
  type Size,
} from './rules.ts'

export type { ParamRule, ParamValue, Size }

/**
 * Options of `imageParams()`.
 *
 * @example
 * const options: ImageParamsOptions = {
 *   params: { chs: { type: 'size', required: true, maxWidth: 999, maxHeight: 999 } },
 *   imageParamsAllowed: ['width', 'height', 'crop', 'chs'],
 * }
 */
export interface ImageParamsOptions {
  /** Your own parameters, validated beside the built-in ones; a rule named like a built-in replaces it. */
  readonly params?: Readonly<Record<string, ParamRule>>
  /** Validate Imagizer's parameters (`width`, `height`, `dpr`, `quality`, `crop`, `format`, …). @default true */
  readonly builtInParams?: boolean
  /**
   * Imagizer's `imageParamsAllowed`: the only query parameters a request may use; any other
   * is refused with 401 `IC_PARAM_NOT_ALLOWED` naming it (`NAME64` counts as `NAME`, `NAME[]`
   * as `NAME`).
   * Parameters in `paramsExempt` are always allowed. Default: every parameter is allowed.
   */
  readonly imageParamsAllowed?: readonly string[]
  /**
   * Parameters other rules own, never refused by `imageParamsAllowed`.
   * @default ['origin', 'source_url', 'hostname', 'bucket', 'region', 'icac', 'ichm']
   */
  readonly paramsExempt?: readonly string[]
  /** Largest `width`, in pixels. @default 8192 */
  readonly maxWidth?: number
  /** Largest `height`, in pixels. @default 8192 */
  readonly maxHeight?: number
  /** Largest `dpr`. @default 5 */
  readonly maxDpr?: number
  /**
   * Largest output area, `width × height × dpr²` in pixels, checked when both `width` and
   * `height` are given. @default 50_000_000
   */
  readonly maxOutputPixels?: number
}

/**
 * The values `imageParams()` publishes as `imageParams`: the built-in parameters typed,
 * plus your own.
 *
 * @example
 * const { width = 800, crop } = res.locals.imageParams as ImageParamValues
 */
export interface ImageParamValues {
  readonly width?: number
  readonly height?: number
  readonly dpr?: number
  readonly quality?: number
  readonly crop?: 'fit' | 'top' | 'bottom' | 'pad' | 'face' | 'entropy'
  readonly format?: 'auto' | 'jpg' | 'jpeg' | 'png' | 'webp' | 'gif' | 'avif'
  readonly pad_color?: string
  readonly blur?: number
  readonly brightness?: number
  readonly autorotate?: boolean
  readonly [name: string]: ParamValue | undefined
}

/**
 * Names of Imagizer's processing parameters that have a built-in rule; `permissions()`
 * counts a request without any of them as a request for the original image.
 *
 * @example
 * IMAGIZER_PARAMS.includes('width') // true
 */
export const IMAGIZER_PARAMS: readonly string[] = Object.freeze([
  'width',
  'height',
  'dpr',
  'quality',
  'crop',
  'format',
  'pad_color',
  'blur',
  'brightness',
  'autorotate',
  'auto_fix',
  'auto_level',
  'redeye',
  'colorize',
  'face',
  'meta',
  'cache_processed',
])

/**
 * Parameters other rules own, never refused by `imageParamsAllowed`: the default of
 * `paramsExempt`.
 *
 * @example
 * imageParams({ imageParamsAllowed: ['width'], paramsExempt: [...DEFAULT_PARAMS_EXEMPT, 'key'] })
 */
export const DEFAULT_PARAMS_EXEMPT: readonly string[] = Object.freeze([
  'origin',
  'source_url',
  'hostname',
  'bucket',
  'region',
  'icac',
  'ichm',
])
const NAME = /^[^\s]{1,64}$/

/** A cloud region as `bucket`'s companion names one: `us-east-1`, `eu-central-2`. Internal. */
export const REGION = /^[a-z]{2}(?:-[a-z]+)+-\d{1,2}$/

function builtInRules(maxWidth: number, maxHeight: number, maxDpr: number): Record<string, ParamRule> {
  return {
    width: { type: 'integer', min: 1, max: maxWidth },
    height: { type: 'integer', min: 1, max: maxHeight },
    dpr: { type: 'number', min: 0.1, max: maxDpr },
    quality: { type: 'integer', min: 1, max: 100 },
    crop: { type: 'enum', values: ['fit', 'top', 'bottom', 'pad', 'face', 'entropy'] },
    format: { type: 'enum', values: ['auto', 'jpg', 'jpeg', 'png', 'webp', 'gif', 'avif'] },
    pad_color: { type: 'colour' },
    blur: { type: 'number', min: 0, max: 100 },
    brightness: { type: 'number', min: -1, max: 1 },
    autorotate: { type: 'boolean' },
    auto_fix: { type: 'boolean' },
    auto_level: { type: 'boolean' },
    redeye: { type: 'boolean' },
    colorize: {
      type: 'pattern',
      pattern: /^(?:#?(?:[0-9a-fA-F]{3,4}|[0-9a-fA-F]{6}|[0-9a-fA-F]{8})|[a-zA-Z]{1,20})$/,
    },
    face: { type: 'boolean' },
    meta: { type: 'boolean' },
    cache_processed: { type: 'boolean' },
    region: { type: 'pattern', pattern: REGION },
  }
}

function positive(option: string, value: unknown, fallback: number): number {
  if (value === undefined) return fallback
  if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0)
    throw new TypeError(`Expected \`${option}\` to be a positive number, got ${showValue(value)}`)
  return value
}

function atLeast(option: string, value: number, min: number): number {
  if (value < min) throw new TypeError(`Expected \`${option}\` to be at least ${min}, got ${value}`)
  return value
}

/** A width or height limit: a whole number of pixels, so that it names itself rather than the built-in rule it becomes. */
function pixels(option: string, value: number): number {
  if (!Number.isInteger(value))
    throw new TypeError(`Expected \`${option}\` to be a whole number of pixels, got ${value}`)
  return value
}

function nameList(option: string, value: unknown): Set<string> | undefined {
  if (value === undefined) return undefined
  if (!Array.isArray(value)) throw new TypeError(`Expected \`${option}\` to be an array of parameter names`)
  const names = new Set<string>()
  for (const name of value) {
    checkName(option, name)
    names.add(name)
  }
  return names
}

function checkName(option: string, name: unknown): asserts name is string {
  if (typeof name !== 'string' || !NAME.test(name) || name === '__proto__') {
    throw new TypeError(
      `Expected \`${option}\` to hold parameter names (1 to 64 characters, no spaces), got ${showValue(name)}`,
    )
  }
  // The query's `width64` and `width[]` are judged as `width`: such a name here would skip that rule.
  if (!isPlainName(name)) {
    throw new TypeError(
      name.endsWith('64')
        ? `Expected \`${option}\` to hold parameter names not ending in 64 (NAME64 is the base64 form of NAME), got ${showValue(name)}`
        : `Expected \`${option}\` to hold parameter names without brackets (\`width[]\` is read as \`width\`), got ${showValue(name)}`,
    )
  }
}

/**
 * The compiled form of {@link ImageParamsOptions}, shared by `imageParams()` and `requestRules()`.
 *
 * @example
 * const compiled: CompiledImageParams = compileImageParams({ maxWidth: 4000 })
 */
export interface CompiledImageParams {
  /**
   * Every name a request may use, with its rule (`null`: allowed, no rule); with no
   * `imageParamsAllowed`, the names that have a rule. One lookup per parameter of a request.
   */
  readonly known: NameTable<CompiledRule | null>
  /** Whether a name outside `known` is refused (`imageParamsAllowed` is set). */
  readonly restricted: boolean
  readonly required: readonly CompiledRule[]
  readonly defaults: readonly CompiledRule[]
  /** The widest output, `width × dpr`, in pixels: `maxWidth`, or the `max` of a `width` rule of your own. */
  readonly maxWidth: number
  /** The tallest output, `height × dpr`, in pixels: `maxHeight`, or the `max` of a `height` rule of your own. */
  readonly maxHeight: number
  readonly maxOutputPixels: number
}

/**
 * Validates the options and compiles every rule; throws a `TypeError` naming the bad option.
 * `alsoExempt` is one more name `imageParamsAllowed` lets through (`requestRules()` passes
 * its API key's query parameter).
 *
 * @example
 * const compiled = compileImageParams({ params: { chs: { type: 'size', required: true } } })
 */
export function compileImageParams(
  options: Readonly<ImageParamsOptions> = {},
  alsoExempt?: string,
): CompiledImageParams {
  knownOptions(
    options,
    [
      'params',
      'builtInParams',
      'imageParamsAllowed',
      'paramsExempt',
      'maxWidth',
      'maxHeight',
      'maxDpr',
      'maxOutputPixels',
    ],
    'imageParams',
  )
  // The built-in rules' lower bounds: a maximum below them would refuse every value.
  const maxWidth = pixels('maxWidth', positive('maxWidth', options.maxWidth, 8192))
  const maxHeight = pixels('maxHeight', positive('maxHeight', options.maxHeight, 8192))
  const maxDpr = atLeast('maxDpr', positive('maxDpr', options.maxDpr, 5), 0.1)
  const maxOutputPixels = positive('maxOutputPixels', options.maxOutputPixels, 50_000_000)
  if (options.builtInParams !== undefined && typeof options.builtInParams !== 'boolean')
    throw new TypeError(`Expected \`builtInParams\` to be a boolean, got ${showValue(options.builtInParams)}`)
  if (options.params !== undefined) recordOption('params', options.params)
  const declared = options.params ?? {}
  const rules = new Map<string, CompiledRule>()
  if (options.builtInParams !== false) {
    for (const [name, rule] of Object.entries(builtInRules(maxWidth, maxHeight, maxDpr))) {
      rules.set(name, compileRule(name, rule, `params.${name}`))
    }
  }
  for (const [name, rule] of Object.entries(declared)) {
    checkName('params', name)
    const compiledRule = compileRule(name, rule, `params.${name}`)
    // The output limits multiply these three: a string value would pass them unchecked.
    if (isSize(name) && rule.type !== 'integer' && rule.type !== 'number')
      throw new TypeError(
        `Expected \`params.${name}.type\` to be 'integer' or 'number' (the output limits multiply it), got ${showValue(rule.type)}`,
      )
    rules.set(name, compiledRule)
  }
  const compiled = [...rules.values()]
  const allowed = nameList('imageParamsAllowed', options.imageParamsAllowed)
  const exempt = nameList('paramsExempt', options.paramsExempt) ?? new Set(DEFAULT_PARAMS_EXEMPT)
  if (alsoExempt !== undefined) exempt.add(alsoExempt)
  const known = new NameTable<CompiledRule | null>(
    allowed === undefined ? rules : [...allowed, ...exempt].map((name) => [name, rules.get(name) ?? null]),
  )
  if (allowed !== undefined) {
    // A required or defaulted parameter the allow-list refuses would fail every request, or
    // publish a value no request may send.
    for (const rule of compiled) {
      if ((rule.required || rule.default !== undefined) && !allowed.has(rule.name) && !exempt.has(rule.name))
        throw new TypeError(
          `Expected \`params.${rule.name}\`, which is ${rule.required ? 'required' : 'defaulted'}, to be in \`imageParamsAllowed\``,
        )
    }
  }
  const result: CompiledImageParams = {
    known,
    restricted: allowed !== undefined,
    required: compiled.filter((rule) => rule.required),
    defaults: compiled.filter((rule) => rule.default !== undefined),
    maxWidth: sideLimit(declared, 'width', maxWidth),
    maxHeight: sideLimit(declared, 'height', maxHeight),
    maxOutputPixels,
  }
  // Defaults the output limits refuse would fail every request that leaves them out.
  const byDefault = (name: string) => rules.get(name)?.default as ParamValue | undefined
  const refused = checkOutput(result, byDefault('width'), byDefault('height'), byDefault('dpr'), undefined)
  if (refused !== undefined)
    throw new TypeError(
      `Expected the defaults of \`params.width\`, \`params.height\` and \`params.dpr\` to pass the output limits: ${refused.map((item) => item.message).join('; ')}`,
    )
  return result
}

/**
 * Whether `items` already holds a problem of the parameter `name` (or of `NAME64`, or, in a
 * query with brackets, of a name qs reads as `name`: `chs[]=%ZZ`).
 */
function reported(items: readonly ValidationItem[] | undefined, name: string, brackets: boolean): boolean {
  if (items === undefined) return false
  for (const found of items) {
    const param = found.path?.[0]
    if (param === name || param === `${name}64`) return true
    if (brackets && typeof param === 'string' && canonicalName(issueRootName(param)) === name) return true
  }
  return false
}

/** The parameters `imageParamsAllowed` refuses, each named once. */
class Refusals {
  readonly items: ValidationItem[] = []
  // Rather than a search of `items`: a query of thousands of broken names must not compare each with every other.
  readonly #names = new Set<string>()

  add(name: string): void {
    if (this.#names.has(name)) return
    this.#names.add(name)
    this.items.push({ message: `${quoteName(name)} is not allowed`, path: [name], type: 'any.unknown' })
  }
}

/**
 * The parameter imageParams judges a name with brackets as (`width[]`, `[width]` and
 * `width%5B%5D` are `width` to `qs`; `root` is what {@link rootName} or, for the name of an
 * issue, {@link issueRootName} gives): that root when it has a rule, or whenever
 * `imageParamsAllowed` is set (the root is then allowed, exempt or refused as the parameter
 * it is); `undefined` otherwise, and the name is left alone.
 */
function bracketRoot(compiled: CompiledImageParams, name: string, root: string): string | undefined {
  if (root === name) return undefined
  const param = canonicalName(root)
  return compiled.restricted || compiled.known.get(param) !== undefined ? param : undefined
}

/** The parameters `items` concern. */
function pathsOf(items: readonly ValidationItem[]): Set<string> {
  const paths = new Set<string>()
  for (const found of items) paths.add(String(found.path?.[0] ?? ''))
  return paths
}

/** `NAME` for `NAME64`: an option may not name a `NAME64` form, so every such name is one. */
function canonicalName(name: string): string {
  return name.length > 2 && name.endsWith('64') ? name.slice(0, -2) : name
}

/** The output side's limit: the `max` of a `width` / `height` rule of the user's own, else the option. */
function sideLimit(declared: Readonly<Record<string, ParamRule>>, name: string, fallback: number): number {
  const max = Object.hasOwn(declared, name) ? (declared[name] as { max?: unknown }).max : undefined
  return typeof max === 'number' ? max : fallback
}

function isSize(name: string | number | undefined): boolean {
  if (typeof name !== 'string') return false
  const base = canonicalName(name)
  return base === 'width' || base === 'height' || base === 'dpr'
}

/**
 * The output's limits: `width × dpr` at most `maxWidth`, `height × dpr` at most `maxHeight`
 * (checked with one side or both), and with both sides the area at most `maxOutputPixels`.
 */
function checkOutput(
  compiled: CompiledImageParams,
  width: ParamValue | undefined,
  height: ParamValue | undefined,
  dpr: ParamValue | undefined,
  items: ValidationItem[] | undefined,
): ValidationItem[] | undefined {
  const { maxWidth, maxHeight, maxOutputPixels } = compiled
  const scale = typeof dpr === 'number' ? dpr : 1
  let found = sideItem(items, 'width', width, scale, maxWidth)
  found = sideItem(found, 'height', height, scale, maxHeight)
  if (
    typeof width === 'number' &&
    typeof height === 'number' &&
    width * height * scale * scale > maxOutputPixels
  )
    found = withItem(
      found,
      'width',
      'output.area',
      `"width" × "height"${typeof dpr === 'number' ? ' × "dpr"²' : ''} must be less than or equal to ${maxOutputPixels} pixels`,
    )
  return found
}

/**
 * `side × dpr` over its limit is an `output.width` / `output.height` item. Without `dpr` only
 * a rule of your own with no `max` lets a side past the limit.
 */
function sideItem(
  items: ValidationItem[] | undefined,
  param: 'width' | 'height',
  value: ParamValue | undefined,
  scale: number,
  limit: number,
): ValidationItem[] | undefined {
  if (typeof value !== 'number' || value * scale <= limit) return items
  return withItem(
    items,
    param,
    `output.${param}`,
    `"${param}"${scale > 1 ? ' × "dpr"' : ''} must be less than or equal to ${limit}`,
  )
}

function withItem(
  items: ValidationItem[] | undefined,
  param: string,
  type: string,
  message: string,
): ValidationItem[] {
  const list = items ?? []
  list.push({ message, path: [param], type })
  return list
}

function item(rule: CompiledRule, failure: Failure): ValidationItem {
  return { message: rule.message ?? failure.message, path: [rule.name], type: failure.type }
}

/**
 * Runs compiled rules over a parsed query: throws 401 `IC_PARAM_NOT_ALLOWED` or 400
 * `IS_VALIDATION_ERROR` (every failure listed), or returns the typed values. `found` is what
 * a rule before this one refused with 400 (`requestRules()`' permissions): listed first in
 * the 400, behind this rule's 401, and its parameters are not judged a second time.
 *
 * @example
 * const { width } = checkImageParams(compiled, parseQuery(req))
 */
export function checkImageParams(
  compiled: CompiledImageParams,
  query: ParsedQuery,
  found?: readonly ValidationItem[],
): ImageParamValues {
  const { known, restricted } = compiled
  const judged = found === undefined || found.length === 0 ? undefined : pathsOf(found)
  const { brackets } = query
  const { names, texts } = query.values
  let refused: Refusals | undefined
  let items: ValidationItem[] | undefined
  for (const issue of query.issues) {
    // A parameter the allow-list refuses is refused as such, even when its value is broken.
    const sent = String(issue.path?.[0] ?? '')
    const root = brackets ? bracketRoot(compiled, sent, issueRootName(sent)) : undefined
    const name = root ?? canonicalName(sent)
    if (restricted && name !== '' && known.get(name) === undefined) {
      // The loop below refuses the names the query kept, this the ones it dropped.
      if (!query.values.has(name)) {
        refused ??= new Refusals()
        refused.add(name)
      }
    } else {
      items ??= []
      items.push(issue)
    }
  }
  const values: Record<string, ParamValue> = {}
  let width: ParamValue | undefined
  let height: ParamValue | undefined
  let dpr: ParamValue | undefined
  let sizeFailed = items?.some((i) => isSize(i.path?.[0])) === true
  for (let i = 0; i < names.length; i++) {
    const name = names[i] as string
    const rule = known.get(name)
    if (rule === undefined) {
      const root = brackets && name.includes('[') ? bracketRoot(compiled, name, rootName(name)) : undefined
      const rootRule = root === undefined ? undefined : known.get(root)
      if (root !== undefined && rootRule) {
        // Never a value, even beside a plain `width=`: qs would hand the handler an array or the bracket's value.
        if (judged?.has(root) !== true) {
          items ??= []
          items.push(bracketItem(name, root))
        }
        if (rootRule.area !== 0) sizeFailed = true
      } else if (restricted && rootRule === undefined) {
        // Allowed or exempt without a rule (`tags[]`, `origin[]`), the root passes as its plain name does.
        refused ??= new Refusals()
        refused.add(root ?? name)
      }
      continue
    }
    if (rule === null || refused !== undefined) continue
    const value = rule.parse(texts[i] as string)
    if (value instanceof Failure) {
      if (judged?.has(rule.name) !== true) {
        items ??= []
        items.push(item(rule, value))
      }
      if (rule.area !== 0) sizeFailed = true
      continue
    }
    // The rule's own name, made once, rather than the query's copy: V8 stores under it without looking it up.
    values[rule.name] = value
    if (rule.area === 1) width = value
    else if (rule.area === 2) height = value
    else if (rule.area === 3) dpr = value
  }
  if (refused !== undefined) {
    const list = refused.items
    throw icError('IC_PARAM_NOT_ALLOWED', {
      message: `Parameter${list.length > 1 ? 's' : ''} not allowed: ${list
        .slice(0, 10)
        .map((r) => quoteName(String(r.path?.[0])))
        .join(', ')}${list.length > 10 ? ` and ${list.length - 10} more` : ''}`,
      validation: list,
    })
  }
  for (const rule of compiled.required) {
    if (
      !query.values.has(rule.name) &&
      !reported(items, rule.name, brackets) &&
      judged?.has(rule.name) !== true
    ) {
      items ??= []
      items.push({
        message: rule.message ?? `"${rule.name}" is required`,
        path: [rule.name],
        type: 'any.required',
      })
    }
  }
  for (const rule of compiled.defaults) {
    // Own properties only: a rule named `constructor` must not see the one of Object.prototype.
    if (Object.hasOwn(values, rule.name)) continue
    const fallback = rule.default as ParamValue
    // A size is an object: each request gets its own, so a handler scaling it in place changes no other request.
    values[rule.name] =
      typeof fallback === 'object' ? { width: fallback.width, height: fallback.height } : fallback
    if (rule.area === 1) width = rule.default
    else if (rule.area === 2) height = rule.default
    else if (rule.area === 3) dpr = rule.default
  }
  // With a size parameter refused, the output is not known: a second failure would be a guess.
  if (!sizeFailed) items = checkOutput(compiled, width, height, dpr, items)
  if (found !== undefined && found.length > 0) items = items === undefined ? [...found] : [...found, ...items]
  if (items !== undefined) {
    const listed = distinctItems(items)
    throw icError('IS_VALIDATION_ERROR', {
      message:
        listed.length === 1 ? (listed[0] as ValidationItem).message : `${listed.length} invalid parameters`,
      validation: listed,
    })
  }
  return values
}

/**
 * Validates image parameters (Imagizer's `imageParamValidations` and `imageParamsAllowed`):
 * the built-in rules for Imagizer's parameters plus your own. Every failure of a request is
 * reported at once: 400 `IS_VALIDATION_ERROR`, one `x-ic-error-validation` item each
 * (`{ message, path: [param], type }`). A parameter outside `imageParamsAllowed`: 401
 * `IC_PARAM_NOT_ALLOWED`. Repeated parameters and malformed percent-encoding are 400s;
 * `NAME64` is decoded from base64 and validated as `NAME`. A name with brackets is judged as
 * the parameter `qs` reads it as (`width[]`, `[width]`: `width`): refused with 400
 * `query.brackets` when that parameter has a rule, as that parameter when the allow-list
 * leaves it out, and let through when the list (or `paramsExempt`) holds it without a rule.
 * Publishes `imageParams`: the typed, normalised values.
 *
 * @example
 * import { imageParams } from 'image-api-errors/express'
 * app.get('/img/:path', imageParams({ maxWidth: 4000, imageParamsAllowed: ['width', 'height', 'crop'] }), (req, res) => {
 *   const { width, height, crop } = res.locals.imageParams
 * })
 */
export function imageParams(options: Readonly<ImageParamsOptions> = {}): Guard {
  const compiled = compileImageParams(options)
  return function imageParams(req) {
    return { imageParams: checkImageParams(compiled, parseQuery(req)) }
  }
}
