import { STATUS_CODES } from 'node:http'
import {
  defaultCodeForStatus,
  type ErrorCode,
  type ErrorCodeEntry,
  errorCatalogue,
  lookupErrorCode,
} from './catalogue.ts'
import { isIcError } from './errors.ts'
import {
  cleanValidationItem,
  encodeValidationHeader,
  retryAfterValue,
  sanitizeHeaders,
  toValidationItem,
  type ValidationItem,
} from './validation-header.ts'

/**
 * Any thrown value, reduced to what the response needs.
 *
 * @example
 * const n: NormalizedError = normalizeError(new Error('boom')) // { status: 500, code: 'IC_INTERNAL_ERROR', expose: false, … }
 */
export interface NormalizedError {
  readonly status: number
  readonly code: ErrorCode
  readonly entry: ErrorCodeEntry
  readonly message: string
  readonly expose: boolean
  readonly headers: Readonly<Record<string, string>>
  readonly validation: readonly ValidationItem[] | undefined
  readonly details: Readonly<Record<string, unknown>> | undefined
}

function validStatus(status: unknown): number | undefined {
  return typeof status === 'number' && Number.isInteger(status) && status >= 400 && status <= 599
    ? status
    : undefined
}

/** `status`, else `statusCode`, when it is an integer from 400 to 599 (as Express's finalhandler reads them). */
function statusOf(err: { status?: unknown; statusCode?: unknown }): number | undefined {
  return validStatus(err.status) ?? validStatus(err.statusCode)
}

const internal = errorCatalogue.IC_INTERNAL_ERROR

/**
 * Reduces any thrown or rejected value to a status, code, message and headers, following
 * the http-errors contract: an error of this package keeps everything (a `status` set on it
 * afterwards only when it is an integer from 400 to 599, else its code's); a foreign error with
 * `status`/`statusCode` in 400–599 keeps that status, its `expose` and its valid headers,
 * and gets the catalogue's default code for the status (its own `code` is used only when
 * it is a catalogue code, so `ECONNRESET` never leaks); anything else is a 500 whose
 * message stays hidden.
 *
 * @example
 * normalizeError(createError(413)).code // 'IC_PAYLOAD_TOO_LARGE'
 * normalizeError('oops').status         // 500
 */
export function normalizeError(err: unknown): NormalizedError {
  // A branded error without its code or headers (e.g. `new err.constructor()`) is read like any other error.
  if (isIcError(err) && typeof err.headers === 'object' && err.headers !== null) {
    const entry = lookupErrorCode(err.code)
    if (entry !== undefined) {
      return {
        // A status set on the error afterwards is checked like a foreign one's; else the code's.
        status: statusOf(err) ?? entry.status,
        code: err.code,
        entry,
        message: String(err.message),
        expose: err.expose === true,
        headers: err.headers,
        validation: err.validation,
        details: err.details,
      }
    }
  }
  const object = typeof err === 'object' && err !== null ? (err as Record<string, unknown>) : undefined
  const status = object === undefined ? undefined : statusOf(object)
  if (object === undefined || status === undefined) {
    return {
      status: 500,
      code: 'IC_INTERNAL_ERROR',
      entry: internal,
      message: internal.description,
      expose: false,
      headers: {},
      validation: undefined,
      details: undefined,
    }
  }
  const ownCode = typeof object.code === 'string' ? lookupErrorCode(object.code) : undefined
  const code =
    ownCode !== undefined && ownCode.status === status
      ? (object.code as string)
      : defaultCodeForStatus(status)
  const entry = lookupErrorCode(code) ?? internal
  const message =
    typeof object.message === 'string' && object.message !== '' ? object.message : entry.description
  return {
    status,
    code,
    entry,
    message,
    expose: typeof object.expose === 'boolean' ? object.expose : status < 500,
    headers: sanitizeHeaders(object.headers, false, status),
    validation: Array.isArray(object.validation) ? object.validation.map(toValidationItem) : undefined,
    details: undefined,
  }
}

/**
 * Request facts that shape the response.
 *
 * @example
 * const context: ResponseContext = { method: 'GET', accept: 'application/json', requestId: 'abc' }
 */
export interface ResponseContext {
  readonly method?: string | undefined
  readonly accept?: string | undefined
  readonly requestId?: string | undefined
  /** Builds the problem body's `type` from the code. */
  readonly problemType?: ((code: ErrorCode) => string) | undefined
  /** The response already carries a `Retry-After` (e.g. from a rate limiter): do not add the catalogue's. */
  readonly retryAfterAlreadySet?: boolean | undefined
  /** Cap of `x-ic-error-validation` in bytes. */
  readonly validationHeaderMaxBytes?: number | undefined
}

/**
 * The response for an error, before it is written.
 *
 * @example
 * const { status, headers, body } = toErrorResponse(err, { accept: 'application/json' })
 */
export interface ErrorResponse {
  readonly status: number
  readonly statusMessage: string
  readonly code: ErrorCode
  readonly headers: Record<string, string>
  readonly body: string
}

/**
 * RFC 9457 problem details, with this package's extension members.
 *
 * @example
 * const problem: ProblemDetails = JSON.parse(res.text)
 * problem.code // 'IS_VALIDATION_ERROR'
 */
export interface ProblemDetails {
  readonly type: string
  readonly title: string
  readonly status: number
  readonly detail: string
  readonly instance?: string
  readonly code: ErrorCode
  readonly retryable: boolean
  readonly validation?: readonly ValidationItem[]
  readonly [extension: string]: unknown
}

/** Is JSON preferred over plain text? Only when the client names a JSON type explicitly, with a q-value at least that of text. */
export function prefersJson(accept: string | undefined): boolean {
  const lower = accept?.toLowerCase()
  if (lower === undefined || !lower.includes('json')) return false
  let json = 0
  let text = 0
  for (const part of lower.split(',')) {
    const [rawType = '', ...params] = part.split(';')
    const type = rawType.trim()
    let q = 1
    for (const param of params) {
      const [key, value] = param.split('=')
      if (key?.trim() === 'q') q = Number.parseFloat(value ?? '') || 0
    }
    if (type === 'application/json' || type === 'application/problem+json' || type.endsWith('+json')) {
      json = Math.max(json, q)
    } else if (type === 'text/plain' || type === 'text/*' || type === '*/*') {
      text = Math.max(text, q)
    }
  }
  return json > 0 && json >= text
}

const defaultProblemType = (code: ErrorCode): string => `urn:image-api-errors:code:${code}`

/** The problem as JSON; `details` that cannot be (a BigInt, a cycle) are left out rather than failing the answer. */
function problemJson(problem: Record<string, unknown>): string {
  try {
    return JSON.stringify(problem)
  } catch (err) {
    if (problem.details === undefined) throw err
    const { details: _details, ...rest } = problem
    return JSON.stringify(rest)
  }
}

/** Status line text; Node knows no phrase for 499. */
export function statusMessageOf(status: number): string {
  return STATUS_CODES[status] ?? (status === 499 ? 'Client Closed Request' : 'Unknown')
}

/**
 * Turns any thrown value into the status, headers and body to send: `x-ic-error-code`
 * always, `x-ic-error-validation` when there are validation items, `Retry-After` where the
 * catalogue or the error says so, and a body negotiated from `Accept` (RFC 9457
 * `application/problem+json` for JSON clients, `text/plain` for everyone else, none for
 * HEAD). 5xx messages are replaced by the catalogue description unless the error is
 * `expose`d. Pure: it writes nothing.
 *
 * @example
 * const r = toErrorResponse(icError('IC_RATE_LIMITED'), { accept: 'application/json', requestId: 'r1' })
 * r.status // 429
 * r.headers['retry-after'] // '60'
 */
export function toErrorResponse(err: unknown, context: ResponseContext = {}): ErrorResponse {
  return responseOf(normalizeError(err), context)
}

/**
 * {@link toErrorResponse} for an error already normalised (the error handler normalises once).
 *
 * @example
 * const r = responseOf(normalizeError(err), { accept: req.headers.accept })
 */
export function responseOf(n: NormalizedError, context: ResponseContext = {}): ErrorResponse {
  const headers: Record<string, string> = { ...n.headers, 'x-ic-error-code': n.code }
  const items = n.validation !== undefined && n.validation.length > 0 ? n.validation : undefined
  // A validation error always lists its failures; one thrown without items lists its message.
  const listed =
    items ??
    (n.code === 'IS_VALIDATION_ERROR' ? [{ message: n.expose ? n.message : n.entry.description }] : undefined)
  if (listed !== undefined) {
    headers['x-ic-error-validation'] =
      context.validationHeaderMaxBytes === undefined &&
      items !== undefined &&
      n.headers['x-ic-error-validation'] !== undefined
        ? n.headers['x-ic-error-validation']
        : encodeValidationHeader(listed, context.validationHeaderMaxBytes)
  }
  if (
    headers['retry-after'] === undefined &&
    context.retryAfterAlreadySet !== true &&
    n.entry.retryAfterSeconds !== undefined &&
    n.entry.status === n.status
  ) {
    headers['retry-after'] = retryAfterValue(n.entry.retryAfterSeconds)
  }
  const detail = n.expose ? n.message : n.entry.description
  const head = context.method === 'HEAD'
  let body = ''
  if (prefersJson(context.accept)) {
    headers['content-type'] = 'application/problem+json; charset=utf-8'
    if (!head) {
      const problem: Record<string, unknown> = {
        type: (context.problemType ?? defaultProblemType)(n.code),
        title: n.entry.title,
        status: n.status,
        detail,
      }
      if (context.requestId !== undefined) problem.instance = context.requestId
      problem.code = n.code
      problem.retryable = n.entry.retryable
      if (listed !== undefined) problem.validation = listed.map(cleanValidationItem)
      if (n.expose && n.details !== undefined) problem.details = n.details
      body = problemJson(problem)
    }
  } else {
    headers['content-type'] = 'text/plain; charset=utf-8'
    if (!head) {
      let text = `${n.entry.title} (${n.code}): ${detail}\n`
      if (n.validation !== undefined) for (const item of n.validation) text += `- ${item.message}\n`
      if (context.requestId !== undefined) text += `request id: ${context.requestId}\n`
      body = text
    }
  }
  return { status: n.status, statusMessage: statusMessageOf(n.status), code: n.code, headers, body }
}
