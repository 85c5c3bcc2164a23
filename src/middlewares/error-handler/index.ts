import { randomUUID } from 'node:crypto'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { debuglog } from 'node:util'
import type { ErrorCode } from '../../catalogue.ts'
import {
  type ErrorResponse,
  type NormalizedError,
  normalizeError,
  responseOf,
  toErrorResponse,
} from '../../error-response.ts'
import { isThenable } from '../../guard.ts'
import { dropLateWrites } from '../../late-writes.ts'
import { knownOptions, showValue } from '../../options.ts'
import { abortRequest } from '../../request-signal.ts'
import { peekRequestState, type RequestState, requestState } from '../../request-state.ts'
import {
  connectionOf,
  cutResponse,
  http2StreamOf,
  peerLeft,
  responseDestroyed,
  responseFinished,
  serverErrorOf,
} from '../../response-close.ts'
import { responseEnded } from '../../response-end.ts'
import {
  CONNECTION_HEADERS,
  HEADER_NAME,
  isStaleHeader,
  sanitizeHeaders,
  VALIDATION_HEADER_MAX_BYTES,
} from '../../validation-header.ts'
import { clientGoneError } from '../client-closed/index.ts'

const debug = debuglog('image-api-errors')

/**
 * What {@link ErrorHandlerOptions.onError} receives, once per failed request.
 *
 * @example
 * const onError = (report: ErrorReport) => logger.warn({ id: report.requestId, status: report.status }, report.code)
 */
export interface ErrorReport {
  /** The thrown value, as it was thrown. */
  readonly error: unknown
  /**
   * The final status: the one sent (for `ended`, the handler's own, `res.statusCode`), or 499
   * when the client had gone. For `headers-sent` and `closed` it is the error's status: the
   * response was cut or never written, so that is the status the request failed with.
   */
  readonly status: number
  readonly code: ErrorCode
  readonly requestId: string
  readonly request: IncomingMessage
  readonly response: ServerResponse
  /**
   * `sent`: a response was written; `client-gone`: nothing could be written (499);
   * `headers-sent`: the response had started but not ended, so the connection was closed;
   * `ended`: the handler had already ended the response (`res.send(image); next(err)`), so
   * it was left to reach the client whole; `closed`: the server's own code had destroyed
   * the response before anything was sent (a body stream that failed through
   * `stream.pipeline`, whatever error the handler then passed on), so nothing could be written.
   */
  readonly outcome: 'sent' | 'client-gone' | 'headers-sent' | 'ended' | 'closed'
}

/**
 * Options of `errorHandler()`.
 *
 * @example
 * app.use(errorHandler({ onError: (r) => log.error(r.error, `request ${r.requestId} failed with ${r.status}`) }))
 */
export interface ErrorHandlerOptions {
  /**
   * Called exactly once per failed request (499 included), for logs and metrics. Errors it
   * throws are swallowed. Default (also when given as `undefined`): on Express, 5xx errors
   * (not 499) and every error that came after the response was ended (outcome `ended`) are
   * printed with `console.error`; on Koa, nothing (Koa's `app.on('error')` logging applies).
   */
  readonly onError?: ((report: ErrorReport) => void) | undefined
  /**
   * Header carrying the request id on every error response. An incoming one is reused when
   * it is 1–128 characters of `A–Z a–z 0–9 _ . ~ -`.
   * @default 'x-request-id'
   */
  readonly requestIdHeader?: string
  /** Makes a request id when the request has none. @default crypto.randomUUID */
  readonly generateRequestId?: () => string
  /** Builds the problem body's `type` from the code. @default code => `urn:image-api-errors:code:${code}` */
  readonly problemType?: (code: ErrorCode) => string
  /**
   * Cap of `x-ic-error-validation`, in bytes: an integer from 256 to 8192 (Node's and
   * undici's clients refuse more than 16 KiB of response headers in all).
   * @default 4096
   */
  readonly validationHeaderMaxBytes?: number
}

const ERROR_HANDLER_OPTIONS = [
  'onError',
  'requestIdHeader',
  'generateRequestId',
  'problemType',
  'validationHeaderMaxBytes',
] as const satisfies readonly (keyof ErrorHandlerOptions)[]
const REQUEST_ID = /^[\w.~-]{1,128}$/
// Node's HTTP parser, undici's and most proxies refuse more than 16 KiB of response headers
// in all: one header of more than half of that leaves too little for the others.
const VALIDATION_HEADER_MAX_CAP = 8192
const EXPOSED = ['x-ic-error-code', 'x-ic-error-validation', 'retry-after', 'ratelimit', 'ratelimit-policy']

function defaultOnError(report: ErrorReport): void {
  // A failure after the response was ended reached no client: the log is its only trace.
  if (report.status >= 500 || report.outcome === 'ended')
    console.error(`[image-api-errors] request ${report.requestId} failed:`, report.error)
}

function exposeHeaders(res: ServerResponse, headers: Record<string, string>, requestIdHeader: string): void {
  // Headers a limiter already set on the response count too (Retry-After, RateLimit).
  const origin = res.getHeader('access-control-allow-origin')
  if (origin === undefined) return
  const current = res.getHeader('access-control-expose-headers')
  const names = new Set(
    String(current ?? '')
      .split(',')
      .map((name) => name.trim().toLowerCase())
      .filter((name) => name !== ''),
  )
  // `*` exposes every header only to requests without credentials (Fetch standard); to a
  // credentialed one, which a specific Allow-Origin may answer, it is a header named `*`.
  if (names.has('*') && String(origin).trim() === '*') return
  for (const name of EXPOSED) if (headers[name] !== undefined || res.hasHeader(name)) names.add(name)
  names.add(requestIdHeader)
  headers['access-control-expose-headers'] = [...names].join(', ')
}

/**
 * The response's `Vary` (what the app set, then what the error brings) with `Accept` added once,
 * since the body is chosen by it; a `*` already says that the response varies on everything.
 */
function varyOnAccept(sent: unknown, own: string | undefined): string {
  const names = new Map<string, string>()
  for (const value of [Array.isArray(sent) ? sent.join(',') : sent, own]) {
    if (value === undefined) continue
    for (const raw of String(value).split(',')) {
      const name = raw.trim()
      if (name !== '' && !names.has(name.toLowerCase())) names.set(name.toLowerCase(), name)
    }
  }
  if (!names.has('*') && !names.has('accept')) names.set('accept', 'Accept')
  return [...names.values()].join(', ')
}

/**
 * Headers an error response writes itself, or keeps from the error and the middlewares before
 * it (a 401's challenge, a 405's `Allow`, a 429's `RateLimit`): a request id there would
 * replace them.
 */
const OWN_HEADERS = new Set([
  'allow',
  'cache-control',
  'date',
  'location',
  'proxy-authenticate',
  'ratelimit',
  'ratelimit-policy',
  'retry-after',
  'set-cookie',
  'vary',
  'www-authenticate',
  'x-content-type-options',
  ...CONNECTION_HEADERS,
])

function isOwnHeader(name: string): boolean {
  return (
    OWN_HEADERS.has(name) ||
    name.startsWith('x-ic-') ||
    name.startsWith('content-') ||
    name.startsWith('access-control-')
  )
}

const DISCONNECT_CODES = new Set([
  // HTTP/2: the client reset the stream, or closed the session (GOAWAY with an error code).
  'ERR_HTTP2_STREAM_ERROR',
  'ERR_HTTP2_SESSION_ERROR',
  'ECONNRESET',
  'EPIPE',
  'ECONNABORTED',
  'ERR_STREAM_PREMATURE_CLOSE',
  'IC_CLIENT_CLOSED_REQUEST',
])

function codeOf(err: unknown): unknown {
  if (typeof err !== 'object' || err === null) return undefined
  try {
    return (err as { code?: unknown }).code
  } catch {
    // A thrown value whose getters throw (a hostile Proxy) has no code to read.
    return undefined
  }
}

/**
 * An error that says the client went away, as opposed to a failure of ours mid-response. Node's
 * HTTP parser refusing the client's bytes (`HPE_*`: a malformed chunk in the body) destroys
 * its connection too; Koa hears that error itself, where Express hears the request's ECONNRESET.
 */
function isDisconnectError(err: unknown): boolean {
  const code = codeOf(err)
  return typeof code === 'string' && (DISCONNECT_CODES.has(code) || code.startsWith('HPE_'))
}

/**
 * Whether the failure of a started response came after its client left: an error that says
 * so, or any error once `clientClosed()` saw the departure (a handler failing in the same turn
 * as the response's `close`, its error of its own).
 */
function cameAfterDeparture(err: unknown, state: RequestState, res: ServerResponse): boolean {
  if (isDisconnectError(err)) return true
  // A write to a destroyed response, or any error after the close clientClosed() saw: a
  // departure only when the peer left, not when the app's own code destroyed the response.
  return (
    (codeOf(err) === 'ERR_STREAM_DESTROYED' || codeOf(state.abortReason) === 'IC_CLIENT_CLOSED_REQUEST') &&
    peerLeft(res)
  )
}

/** What Node may read and discard of an unread body after the response, on a kept-alive connection. */
const DRAIN_BUDGET_BYTES = 64 * 1024

/** Whether the request's unread body may be more than the drain budget: chunked, or declared larger. */
function mayOverrunDrain(req: IncomingMessage): boolean {
  const { headers } = req
  const length = headers['content-length']
  return (
    headers['transfer-encoding'] !== undefined ||
    (length !== undefined && Number(length) > DRAIN_BUDGET_BYTES)
  )
}

/**
 * What a failure is reported (and on Koa emitted) as: the stream error a departed client
 * causes (`ERR_STREAM_PREMATURE_CLOSE` from Koa 3's pipeline, an `ECONNRESET`, the parser's
 * `HPE_*` for a body cut short) is the `IC_CLIENT_CLOSED_REQUEST` the request was aborted
 * with, by `clientClosed()` or, once its connection is gone, here.
 * Internal, shared with the Koa adapter.
 *
 * @example
 * ctx.app.emit('error', failureOf(err, ctx.req, ctx.res), ctx)
 */
export function failureOf(err: unknown, req: IncomingMessage, res: ServerResponse): unknown {
  if (!isDisconnectError(err)) return err
  // Koa hears a reset or half-closed socket (on-finished) before the response's close, with or
  // without clientClosed(): the departure is then known here first, and recorded, so the app
  // hears the 499 and not the parser's or the socket's error. A response our own code
  // destroyed with an error (Koa 3's pipeline, on a backend stream's reset) is no departure.
  if (
    peekRequestState(req)?.abortReason === undefined &&
    req.socket?.destroyed === true &&
    serverErrorOf(res) == null &&
    peerLeft(res)
  )
    abortRequest(req, clientGoneError())
  const reason = peekRequestState(req)?.abortReason
  return codeOf(reason) === 'IC_CLIENT_CLOSED_REQUEST' ? reason : err
}

/**
 * A client that left while its response, ended by the handler, was still being flushed: a
 * large buffered body (`ctx.body = image`). Koa hears the socket's ECONNRESET through
 * on-finished; the response is ended, so `isClientGone` cannot tell.
 */
function leftMidBody(res: ServerResponse, err: unknown, destroyedByServer: boolean): boolean {
  return (
    res.headersSent &&
    !destroyedByServer &&
    isDisconnectError(err) &&
    // A pipelined response queued behind another has no socket yet, its connection alive.
    connectionOf(res)?.destroyed !== false
  )
}

/**
 * A response that can no longer reach anyone: the client closed the connection before it ended.
 *
 * @example
 * res.on('close', () => {
 *   if (isClientGone(res)) metrics.increment('client_closed')
 * })
 */
export function isClientGone(res: ServerResponse): boolean {
  // An HTTP/2 response reads as ended once its stream closed: the stream tells.
  if (http2StreamOf(res) !== undefined) return !responseFinished(res) && responseDestroyed(res)
  return !res.writableEnded && (res.destroyed || connectionOf(res)?.destroyed === true)
}

/**
 * The framework-neutral error writer behind both adapters' `errorHandler()`: it validates
 * the options once and returns `(err, req, res) => void`, the only writer of error
 * responses.
 *
 * @example
 * const handle = createErrorWriter({ onError: console.log })
 * http.createServer((req, res) => handle(new Error('boom'), req, res))
 */
export function createErrorWriter(
  options: Readonly<ErrorHandlerOptions> = {},
): (err: unknown, req: IncomingMessage, res: ServerResponse) => void {
  return makeErrorWriter(options)
}

/**
 * {@link createErrorWriter} for an adapter that answers some errors as another: the response
 * is made from `answerAs(err)`, while `err` itself is what `onError` reports and what is
 * compared with the response's own error. Internal, shared with the Koa adapter.
 *
 * @example
 * const handle = makeErrorWriter({ onError: () => {} }, (err) => (err === 'gone' ? icError('IC_NOT_FOUND') : err))
 */
export function makeErrorWriter(
  options: Readonly<ErrorHandlerOptions>,
  answerAs?: (err: unknown) => unknown,
): (err: unknown, req: IncomingMessage, res: ServerResponse) => void {
  knownOptions(options, ERROR_HANDLER_OPTIONS, 'errorHandler')
  const {
    onError = defaultOnError,
    requestIdHeader = 'x-request-id',
    generateRequestId = randomUUID,
    problemType,
    validationHeaderMaxBytes = VALIDATION_HEADER_MAX_BYTES,
  } = options
  if (typeof onError !== 'function')
    throw new TypeError(`Expected \`onError\` to be a function, got ${typeof onError}`)
  if (typeof requestIdHeader !== 'string' || !HEADER_NAME.test(requestIdHeader)) {
    throw new TypeError(`Expected \`requestIdHeader\` to be a header name, got ${showValue(requestIdHeader)}`)
  }
  if (isOwnHeader(requestIdHeader.toLowerCase()))
    throw new TypeError(
      `Expected \`requestIdHeader\` to be a header the error response neither writes nor keeps, got ${showValue(requestIdHeader)}`,
    )
  if (typeof generateRequestId !== 'function') {
    throw new TypeError(`Expected \`generateRequestId\` to be a function, got ${typeof generateRequestId}`)
  }
  if (problemType !== undefined && typeof problemType !== 'function') {
    throw new TypeError(`Expected \`problemType\` to be a function, got ${typeof problemType}`)
  }
  if (
    !Number.isInteger(validationHeaderMaxBytes) ||
    validationHeaderMaxBytes < 256 ||
    validationHeaderMaxBytes > VALIDATION_HEADER_MAX_CAP
  ) {
    throw new TypeError(
      `Expected \`validationHeaderMaxBytes\` to be an integer from 256 to ${VALIDATION_HEADER_MAX_CAP}, got ${showValue(validationHeaderMaxBytes)}`,
    )
  }
  const headerName = requestIdHeader.toLowerCase()
  const customCap = options.validationHeaderMaxBytes === undefined ? undefined : validationHeaderMaxBytes

  function requestIdOf(req: IncomingMessage, res: ServerResponse): string {
    const sent = res.getHeader(headerName)
    if (typeof sent === 'string' && REQUEST_ID.test(sent)) return sent
    const incoming = req.headers[headerName]
    if (typeof incoming === 'string' && REQUEST_ID.test(incoming)) return incoming
    let made: string
    try {
      made = String(generateRequestId())
    } catch (idError) {
      debug('generateRequestId threw: %O', idError)
      return randomUUID()
    }
    return REQUEST_ID.test(made) ? made : randomUUID()
  }

  function report(
    error: unknown,
    status: number,
    code: ErrorCode,
    requestId: string,
    req: IncomingMessage,
    res: ServerResponse,
    outcome: ErrorReport['outcome'],
  ): void {
    try {
      const returned: unknown = onError({
        error,
        status,
        code,
        requestId,
        request: req,
        response: res,
        outcome,
      })
      // An async hook's rejection would otherwise be unhandled, which ends the process.
      if (isThenable(returned))
        Promise.resolve(returned).catch((hookError: unknown) => debug('onError rejected: %O', hookError))
    } catch (hookError) {
      debug('onError threw: %O', hookError)
    }
  }

  return function handleError(err: unknown, req: IncomingMessage, res: ServerResponse): void {
    const state = requestState(req)
    if (state.failureReported === true) {
      debug('a second error for a request that already failed was ignored: %O', err)
      if (res.headersSent && !res.writableEnded) cutResponse(res)
      return
    }
    state.failureReported = true
    const requestId = requestIdOf(req, res)
    state.requestId = requestId
    // A response our own code destroyed (stream.pipeline, Koa 3's respond) is not a client that
    // left, whatever the handler then passes on (a 502 wrapping the backend's failure): Node
    // sets `res.errored` only when code calls `res.destroy(err)`, never for a departed client.
    const destroyedByServer = serverErrorOf(res) != null
    let normalized: NormalizedError
    try {
      normalized = normalizeError(answerAs === undefined ? err : answerAs(err))
    } catch (readError) {
      // A thrown value whose getters throw (a hostile Proxy): answered as an internal error.
      debug('could not read the thrown value: %O', readError)
      normalized = normalizeError(undefined)
    }
    // A 499 with the client still there (another request's departure passed on, a
    // createError(499)) is our mistake, not a departure: never written, and not hidden as one.
    if (normalized.status === 499 && !peerLeft(res)) normalized = normalizeError(undefined)
    if (
      (isClientGone(res) &&
        !destroyedByServer &&
        (res.headersSent ? cameAfterDeparture(err, state, res) : peerLeft(res))) ||
      (!res.headersSent && normalized.status === 499) ||
      leftMidBody(res, err, destroyedByServer)
    ) {
      if (!res.headersSent) res.statusCode = 499
      if (!responseDestroyed(res)) res.destroy()
      if (state.abortReason !== undefined) dropLateWrites(res)
      report(failureOf(err, req, res), 499, 'IC_CLIENT_CLOSED_REQUEST', requestId, req, res, 'client-gone')
      return
    }
    if (responseEnded(res, state)) {
      // The handler ended the response before failing: destroying it would cut a complete
      // response the client is still receiving (or compression() is still flushing).
      report(err, res.statusCode, normalized.code, requestId, req, res, 'ended')
      if (state.abortReason !== undefined) dropLateWrites(res)
      return
    }
    if (res.headersSent || responseDestroyed(res)) {
      const { status, code } = normalized
      report(err, status, code, requestId, req, res, res.headersSent ? 'headers-sent' : 'closed')
      cutResponse(res)
      if (state.abortReason !== undefined) dropLateWrites(res)
      return
    }
    const context = {
      accept: req.headers.accept,
      requestId,
      problemType,
      validationHeaderMaxBytes: customCap,
      retryAfterAlreadySet: res.hasHeader('retry-after'),
    }
    let out: ErrorResponse
    try {
      out = write(responseOf(normalized, context), req, res, requestId)
    } catch (writeError) {
      // A problemType that throws, a header Node refuses (ERR_INVALID_CHAR): the same status and
      // code, without what may have failed.
      debug('could not write the error response: %O', writeError)
      const plain = { ...normalized, headers: sanitizeHeaders(normalized.headers, true), details: undefined }
      try {
        out = write(responseOf(plain, { ...context, problemType: undefined }), req, res, requestId)
      } catch (plainError) {
        debug('could not write the error response without its extras either: %O', plainError)
        try {
          out = write(toErrorResponse(undefined, { ...context, problemType: undefined }), req, res, requestId)
        } catch (lastError) {
          // Nothing can be written (a header the response holds is refused): closed, not left hanging.
          debug('could not write even a plain 500: %O', lastError)
          report(err, normalized.status, normalized.code, requestId, req, res, 'closed')
          cutResponse(res)
          return
        }
      }
    }
    if (state.abortReason !== undefined) dropLateWrites(res)
    report(err, out.status, out.code, requestId, req, res, 'sent')
  }

  function write(
    out: ErrorResponse,
    req: IncomingMessage,
    res: ServerResponse,
    requestId: string,
  ): ErrorResponse {
    // What described the success response a route had begun, and let caches keep it; its
    // Cache-Control is replaced below.
    for (const name of res.getHeaderNames()) if (isStaleHeader(name)) res.removeHeader(name)
    const { headers } = out
    // A body still on its way: kept alive, Node would read and discard all of it after the
    // response, however much the client sends. `complete` is false for every request until
    // its parse ends, a turn after it arrived (a GET, or a small POST whose bytes are all
    // here, refused at once), so the declared size decides: a small body is cheaper to
    // drain than a new connection.
    // HTTP/2 has no Connection header: the stream's end leaves the rest of its body unread.
    const http2 = http2StreamOf(res) !== undefined
    // Node's HTTP/2 takes these from the app, then refuses them at writeHead and resets the stream.
    if (http2) for (const name of CONNECTION_HEADERS) res.removeHeader(name)
    if (req.complete === false && mayOverrunDrain(req) && !http2) headers.connection = 'close'
    headers[headerName] = requestId
    headers['content-length'] = String(Buffer.byteLength(out.body))
    headers['x-content-type-options'] = 'nosniff'
    // Only an error of this package brings a Cache-Control of its own: a foreign error's is dropped.
    if (headers['cache-control'] === undefined) headers['cache-control'] = 'no-store'
    // Said whatever the Cache-Control: a CDN's own rules may keep a no-store error too.
    headers.vary = varyOnAccept(res.getHeader('vary'), headers.vary)
    exposeHeaders(res, headers, headerName)
    // HTTP/2 has no status message (Node warns about one).
    if (http2) res.writeHead(out.status, headers)
    else res.writeHead(out.status, out.statusMessage, headers)
    // Node drops the body of a HEAD response; its Content-Length stays that of GET (RFC 9110 §8.6).
    res.end(out.body)
    return out
  }
}
