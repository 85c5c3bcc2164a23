import createHttpError, { type HttpError } from 'http-errors'
import { type ErrorCode, lookupErrorCode } from './catalogue.ts'
import { showValue } from './options.ts'
import {
  encodeValidationHeader,
  MAX_DELTA_SECONDS,
  retryAfterValue,
  sanitizeHeaders,
  toValidationItem,
  type ValidationItem,
} from './validation-header.ts'

const BRAND: unique symbol = Symbol.for('image-api-errors.error') as never

/**
 * An error of this package: an http-errors error (`status`, `statusCode`, `expose`,
 * `headers`) that also carries a catalogue `code`, and the validation items when there are
 * any. `headers` already holds `x-ic-error-code` (plus `Retry-After` and
 * `x-ic-error-validation` where they apply), so Express's and Koa's default handlers send
 * the code even without {@link errorHandler}.
 *
 * @example
 * const err: IcError = icError('IC_HOST_NOT_ALLOWED')
 * err.status // 401
 */
export type IcError = Error & {
  // Spelt out rather than taken from `HttpError`: the published types would otherwise need
  // @types/http-errors, which a consumer without @types/express or @types/koa lacks.
  readonly status: number
  readonly statusCode: number
  readonly expose: boolean
  readonly code: ErrorCode
  readonly headers: Readonly<Record<string, string>>
  readonly validation?: readonly ValidationItem[]
  readonly retryAfterSeconds?: number
  /** Extra facts for logs and for the problem body (e.g. the overload reason); never put in headers. */
  readonly details?: Readonly<Record<string, unknown>>
  readonly [BRAND]: true
}

/**
 * Options of {@link icError}.
 *
 * @example
 * const options: IcErrorOptions = { message: 'Host evil.net is not allowed', cause: err }
 */
export interface IcErrorOptions {
  /** Text of the error; defaults to the catalogue description. Shown to clients when `expose`. */
  readonly message?: string
  /**
   * Validation failures, sent in `x-ic-error-validation` and as the problem body's
   * `validation`; a string is the item `{ message }`.
   */
  readonly validation?: readonly (ValidationItem | string)[]
  /**
   * Overrides the catalogue's `Retry-After`, in seconds (rounded up in the header). A
   * negative value is 0, `Infinity` the header's cap (2147483647), `NaN` the catalogue's.
   */
  readonly retryAfterSeconds?: number
  /** Whether the message may be shown to the client; defaults to `status < 500`. */
  readonly expose?: boolean
  /** The error that caused this one, kept for logs. */
  readonly cause?: unknown
  /** Extra facts for logs and the problem body; never sent in headers. */
  readonly details?: Readonly<Record<string, unknown>>
  /** Extra response headers, not `x-ic-error-code` or `x-ic-error-validation` (a `TypeError`); values must already be header-safe. */
  readonly headers?: Readonly<Record<string, string>>
  /** Capture a stack trace. Defaults to `true` for 5xx only: expected client errors need none, and it is a large share of their cost. */
  readonly stack?: boolean
}

const NAMES: Readonly<Record<number, string>> = { 499: 'ClientClosedRequestError' }
const constructors = createHttpError as unknown as Readonly<
  Record<number, (abstract new (message?: string) => HttpError) | undefined>
>

type StatusErrorClass = new (message: string) => HttpError
const classes = new Map<number, StatusErrorClass>()

/**
 * The error class of one status, made once: its prototype inherits from http-errors' class of
 * that status (or of its class, 4xx or 5xx), so `instanceof`, `isHttpError`, `status`,
 * `statusCode`, `expose` and `name` are those of http-errors, while an instance is a plain
 * `Error` subclass: http-errors' constructors swap each new error's prototype and redefine
 * its properties, which costs more than the rest of an error together.
 */
function classOf(status: number): StatusErrorClass {
  const made = classes.get(status)
  if (made !== undefined) return made
  const Base = constructors[status] ?? constructors[status >= 500 ? 500 : 400] ?? createHttpError.HttpError
  // No http-errors class has this status (499): the error carries it itself, as createHttpError's do.
  const Class =
    constructors[status] === undefined
      ? class extends Error {
          status = status
          statusCode = status
        }
      : class extends Error {}
  Object.setPrototypeOf(Class.prototype, Base.prototype)
  // Enumerable like http-errors' own prototype fields, so `for…in` loggers (pino) still list them.
  const field = (value: unknown) => ({ value, writable: true, configurable: true, enumerable: true })
  const constant = (value: unknown) => ({ value, writable: true, configurable: true })
  const name = NAMES[status] ?? Base.name
  // Loggers name an error after its constructor (pino's `type`): keep http-errors' names.
  Object.defineProperty(Class, 'name', { value: name, configurable: true })
  Object.defineProperties(Class.prototype, {
    constructor: { value: Class, writable: true, configurable: true },
    name: constant(name),
    status: field(status),
    statusCode: field(status),
    expose: field(status < 500),
    [BRAND]: { value: true },
  })
  classes.set(status, Class as unknown as StatusErrorClass)
  return Class as unknown as StatusErrorClass
}

/**
 * Makes the error for a catalogue code. Throw it (Koa, Express 5) or pass it to `next`
 * (Express 4) from any handler; the error handler turns it into the response.
 *
 * @example
 * app.get('/image/:id', (req, res, next) => {
 *   if (!found) return next(icError('IC_IMAGE_NOT_FOUND', { message: `No image ${req.params.id}` }))
 * })
 */
export function icError(code: ErrorCode, options: IcErrorOptions = {}): IcError {
  const entry = lookupErrorCode(code)
  if (entry === undefined)
    throw new TypeError(`Unknown error code ${showValue(code)}: define it with defineErrorCode()`)
  checkIcErrorOptions(options)
  const { status } = entry
  const headers: Record<string, string> = {
    ...sanitizeHeaders(options.headers, true),
    'x-ic-error-code': code,
  }
  const retryAfterSeconds = retryAfterOf(options.retryAfterSeconds, entry.retryAfterSeconds)
  if (retryAfterSeconds !== undefined) headers['retry-after'] = retryAfterValue(retryAfterSeconds)
  const validation = options.validation?.map(toValidationItem)
  if (validation !== undefined && validation.length > 0) {
    headers['x-ic-error-validation'] = encodeValidationHeader(validation)
  }
  const Class = classOf(status)
  const withStack = options.stack === undefined ? status >= 500 : options.stack
  const limit = Error.stackTraceLimit
  if (!withStack) Error.stackTraceLimit = 0
  let err: Error & Record<string, unknown>
  try {
    err = new Class(options.message ?? entry.description) as unknown as Error & Record<string, unknown>
  } finally {
    Error.stackTraceLimit = limit
  }
  err.code = code
  err.headers = headers
  if (options.expose !== undefined) err.expose = options.expose
  if (validation !== undefined) err.validation = validation
  if (retryAfterSeconds !== undefined) err.retryAfterSeconds = retryAfterSeconds
  if (options.details !== undefined) err.details = options.details
  if (options.cause !== undefined) err.cause = options.cause
  return err as unknown as IcError
}

/**
 * The `Retry-After` seconds of an error: a computed wait that came out negative (a window
 * that reset while the refusal was made) is 0, an infinite one the header's cap, and NaN
 * (a failed computation) the catalogue's default, so the refusal still goes out as meant.
 */
function retryAfterOf(given: number | undefined, fallback: number | undefined): number | undefined {
  if (given === undefined || Number.isNaN(given)) return fallback
  return Math.min(MAX_DELTA_SECONDS, Math.max(0, given))
}

// icError() runs in request handlers, often from JavaScript: an option of the wrong type fails
// there, by name, rather than sending a client `[{"message":"undefined"}]` or silently losing
// a header. Values of the right type but out of range are made usable instead (retryAfterOf):
// refusing them would turn the 429 or 400 the handler meant into a 500.
function checkIcErrorOptions(options: IcErrorOptions): void {
  if (typeof options !== 'object' || options === null)
    throw new TypeError(
      `Expected the options of icError() to be an object such as { message }, got ${showValue(options)}`,
    )
  const { message, validation, retryAfterSeconds, stack, expose } = options
  if (message !== undefined && typeof message !== 'string')
    throw new TypeError(`Expected \`message\` of icError() to be a string, got ${showValue(message)}`)
  if (stack !== undefined && typeof stack !== 'boolean')
    throw new TypeError(`Expected \`stack\` of icError() to be a boolean, got ${showValue(stack)}`)
  if (expose !== undefined && typeof expose !== 'boolean')
    throw new TypeError(`Expected \`expose\` of icError() to be a boolean, got ${showValue(expose)}`)
  if (validation !== undefined) {
    if (!Array.isArray(validation))
      throw new TypeError(
        `Expected \`validation\` of icError() to be an array of strings or { message }, got ${showValue(validation)}`,
      )
    validation.forEach((item: unknown, i) => {
      if (typeof item !== 'string' && typeof (item as ValidationItem | null)?.message !== 'string')
        throw new TypeError(
          `Expected \`validation[${i}]\` of icError() to be a string or { message: string }, got ${showValue(item)}`,
        )
    })
  }
  if (retryAfterSeconds !== undefined && typeof retryAfterSeconds !== 'number')
    throw new TypeError(
      `Expected \`retryAfterSeconds\` of icError() to be a number of seconds, got ${showValue(retryAfterSeconds)}`,
    )
  if (typeof options.headers === 'object' && options.headers !== null)
    for (const name of Object.keys(options.headers)) {
      const own = CONTRACT_HEADERS.get(name.toLowerCase())
      if (own !== undefined)
        throw new TypeError(
          `Expected \`headers\` of icError() to leave ${showValue(name)} to the error handler: pass ${own} instead`,
        )
    }
}

/** The contract's headers, written from the error's code and items; what to pass instead of each. */
const CONTRACT_HEADERS: ReadonlyMap<string, string> = new Map([
  ['x-ic-error-code', 'the code'],
  ['x-ic-error-validation', '`validation`'],
])

/**
 * Tells whether a value is an error of this package, even one made by another installed
 * copy of it (the check is a `Symbol.for` brand, not `instanceof`).
 *
 * @example
 * if (isIcError(err) && err.code === 'IC_RATE_LIMITED') metrics.increment('rate_limited')
 */
export function isIcError(value: unknown): value is IcError {
  return typeof value === 'object' && value !== null && (value as { [BRAND]?: unknown })[BRAND] === true
}
