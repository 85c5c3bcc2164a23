import { ReadStream } from 'node:fs'
import { type IncomingMessage, type ServerResponse, STATUS_CODES } from 'node:http'
import { debuglog } from 'node:util'
import createHttpError from 'http-errors'
import { icError } from './errors.ts'
import { asRefusal, checkGuard, checkHandler, type Guard, isThenable } from './guard.ts'
import * as core from './index.ts'
import { createClientClosed } from './middlewares/client-closed/index.ts'
import { createDeadline, type DeadlineOptions } from './middlewares/deadline/index.ts'
import { type ErrorHandlerOptions, failureOf, makeErrorWriter } from './middlewares/error-handler/index.ts'
import { type LoadSheddingOptions, loadSheddingGuard } from './middlewares/load-shedding/index.ts'
import {
  type ImageChartsRateLimitsOptions,
  imageChartsRateLimitsGuard,
  type RateLimitGuard,
  type RateLimitOptions,
  type RateLimitReset,
  rateLimitGuard,
  withResetKey,
} from './middlewares/rate-limit/index.ts'
import { noOptions, optionsObject, showValue } from './options.ts'
import { type LifecycleFail, publishSignal } from './request-signal.ts'
import { peekRequestState } from './request-state.ts'
import {
  cutResponse,
  http2StreamOf,
  peerLeft,
  responseDestroyed,
  responseFinished,
} from './response-close.ts'
import { responseEnded } from './response-end.ts'

export * from './index.ts'

// A guard's own failure after an abort is not reported (the abort is): NODE_DEBUG=image-api-errors shows it.
const debug = debuglog('image-api-errors')
/**
 * The parts of a Koa context the adapters use, so that they fit Koa 2 and 3 without
 * depending on their type packages.
 *
 * @example
 * const logState = (ctx: KoaContext) => console.log(ctx.state.imageParams)
 */
export interface KoaContext {
  readonly req: IncomingMessage
  readonly res: ServerResponse
  /** The request URL as it arrived, before a mount (koa-mount) rewrote `ctx.url`. */
  readonly originalUrl?: string
  state: Record<string, unknown>
  status: number
  body: unknown
  respond?: boolean | undefined
  onerror(err: unknown): void
  readonly app: { emit(event: 'error', err: unknown, ctx: unknown): boolean }
}
/**
 * Koa's `next`.
 *
 * @example
 * const timed: KoaMiddleware = async (_ctx, next: Next) => {
 *   const start = Date.now()
 *   await next()
 *   console.log(Date.now() - start, 'ms')
 * }
 */
export type Next = () => Promise<unknown>
/**
 * A Koa middleware.
 *
 * @example
 * const noStore: KoaMiddleware = async (ctx, next) => {
 *   await next()
 *   ctx.res.setHeader('cache-control', 'no-store')
 * }
 */
export type KoaMiddleware = (ctx: KoaContext, next: Next) => Promise<void>

/**
 * Why the request was aborted (a deadline passed, the client left), if it was: a guard that
 * settles after that must not run the handler, so this reason is thrown instead.
 */
function abortReasonOf(req: IncomingMessage): Error | undefined {
  return peekRequestState(req)?.abortReason
}

/**
 * Runs a core guard as Koa middleware; a refusal is thrown up to `errorHandler()`, what the
 * guard returns is copied onto `ctx.state`. Any promise or thenable it returns is awaited (one
 * from another realm included).
 * A rate-limit guard's `resetKey()` is kept on the middleware.
 *
 * @example
 * const onlyGet: Guard = (req) => {
 *   if (req.method !== 'GET') throw icError('IC_BAD_REQUEST', { message: 'GET only' })
 * }
 * app.use(fromGuard(onlyGet, 'onlyGet'))
 */
export function fromGuard(guard: RateLimitGuard, name: string): KoaMiddleware & RateLimitReset
export function fromGuard(guard: Guard, name: string): KoaMiddleware
export function fromGuard(guard: Guard, name: string): KoaMiddleware {
  checkGuard(guard, name)
  return withResetKey(guardMiddleware(guard, name, handOn), guard)
}

/** Once the guard passed, a guard's middleware hands on, or runs the route handler in its place. */
const handOn: RouteHandler = (_ctx, next) => next()

function guardMiddleware(guard: Guard, name: string, passed: RouteHandler): KoaMiddleware {
  const middleware: KoaMiddleware = async (ctx, next) => {
    let out: ReturnType<Guard>
    try {
      out = guard(ctx.req, ctx.res)
    } catch (err) {
      throw asRefusal(err, name)
    }
    let values = out
    if (isThenable(out)) {
      try {
        values = await out
      } catch (err) {
        const reason = abortReasonOf(ctx.req)
        if (reason === undefined) throw asRefusal(err, name)
        debug('%s failed after the request was aborted: %O', name, err)
        throw reason
      }
      const reason = abortReasonOf(ctx.req)
      if (reason !== undefined) throw reason
    }
    if (values !== undefined) Object.assign(ctx.state, values)
    await passed(ctx, next)
  }
  Object.defineProperty(middleware, 'name', { value: name })
  return middleware
}

/**
 * The final error handler, mounted **first**: the only writer of error responses. It
 * catches what downstream throws and what Koa reports later (a body stream failing), and
 * writes the response itself, so 499 stays 499 and headers already set (CORS, RateLimit)
 * are kept, where Koa's own handler would turn 499 into 500 and clear them. A file body that
 * is not there (`ctx.body = fs.createReadStream(missing)`) is answered 404 `IC_NOT_FOUND`,
 * as Koa 2's own handler answers it (Koa 3 has already closed the connection when the
 * stream fails, so there the 404 is what `onError` reports); any other `ENOENT` (a missing
 * binary for `spawn`, a config file read) is a 500. The error is
 * also emitted on the app (`app.on('error')`), as Koa expects of error handlers.
 *
 * @example
 * import Koa from 'koa'
 * import { errorHandler, notFound } from 'image-api-errors/koa'
 * const app = new Koa()
 * app.use(errorHandler({ onError: (r) => console.warn(r.status, r.code, r.requestId) }))
 * app.use(notFound())
 * app.use(router.routes())
 */
export function errorHandler(options: Readonly<ErrorHandlerOptions> = {}): KoaMiddleware {
  // Checked before the spread, which would turn `null` into {} and a string into its characters.
  optionsObject(options, 'errorHandler')
  // Koa's own app.on('error') logs: `onError: undefined` (an unset config value) means that default too.
  const onError = options.onError === undefined ? () => {} : options.onError
  const handle = makeErrorWriter({ ...options, onError }, answerAs)
  const fail = (ctx: KoaContext, err: unknown): void => {
    ctx.respond = false
    if (isMissingBodyFile(ctx, err)) missingBodyFiles.add(err)
    // A request fails once: a late error after a 504 or 499 is neither written nor emitted again.
    const failedBefore = peekRequestState(ctx.req)?.failureReported === true
    // Before handle(), which destroys a started response: a socket destroyed by us is no client that left.
    const failure = failureOf(err, ctx.req, ctx.res)
    handle(err, ctx.req, ctx.res)
    if (failedBefore) return
    // Koa's app.onerror throws on non-Errors, and a listener may throw: neither may reach Koa's own catch.
    // showValue, not String(): a null-prototype object or a throwing toString() must still be emitted.
    try {
      const error = failure instanceof Error ? failure : new Error(`non-error thrown: ${showValue(failure)}`)
      ctx.app.emit('error', error, ctx)
    } catch {}
  }
  return async function errorHandler(ctx, next) {
    // Met while its stream is alive, an HTTP/2 session tells a client's reset socket from a
    // backend's ECONNRESET our own code destroyed the response with.
    http2StreamOf(ctx.res)
    ctx.onerror = (err) => {
      if (err !== null && err !== undefined) fail(ctx, err)
      else if (resetMidResponse(ctx)) fail(ctx, streamReset())
    }
    try {
      await next()
    } catch (err) {
      fail(ctx, err)
      return
    }
    // An error status set without a body (@koa/router's allowedMethods() 405, `ctx.status = 401`,
    // `ctx.status = 404` for a missing image) is an error response too; Koa's default 404 is
    // notFound()'s to answer. Nothing was thrown, so nothing is emitted on the app: Koa does
    // not emit these either.
    const { status } = ctx
    if (
      status >= 400 &&
      status <= 599 &&
      (status !== 404 || explicitStatus(ctx)) &&
      ctx.body == null &&
      ctx.respond !== false &&
      !ctx.res.headersSent
    ) {
      // An HTTP/2 response has no status message; reading one makes Node warn.
      const message = http2StreamOf(ctx.res) === undefined ? ctx.res.statusMessage : undefined
      ctx.respond = false
      const custom = message !== undefined && message !== '' && !isStatusText(status, message)
      handle(custom ? createHttpError(status, message) : createHttpError(status), ctx.req, ctx.res)
    }
  }
}

/**
 * Whether the client reset an HTTP/2 stream before its response ended, and nothing reported
 * it yet: on-finished hears that as a close without error, which Koa ignores.
 */
function resetMidResponse(ctx: KoaContext): boolean {
  return (
    http2StreamOf(ctx.res) !== undefined &&
    peekRequestState(ctx.req)?.failureReported !== true &&
    !responseFinished(ctx.res) &&
    peerLeft(ctx.res)
  )
}

/** The error Node gives a write to a stream the client reset, for the report and the app's `error` event. */
function streamReset(): Error {
  return Object.assign(new Error('The client reset the stream before the response ended'), {
    code: 'ERR_HTTP2_STREAM_ERROR',
  })
}

/** The errors of file bodies that could not be opened, answered 404 by {@link answerAs}. */
const missingBodyFiles = new WeakSet<object>()

/**
 * Whether `err` is the body's own failure to open its file: `ctx.body` an `fs.ReadStream`,
 * and `err` the `ENOENT` of opening that path. Koa 2's handler answers every `ENOENT` 404,
 * which made a missing `spawn()` binary or config file a 404 that 5xx alerting misses; a
 * thrown `readFile()` failure cannot say whether the file was what the client asked for.
 */
function isMissingBodyFile(ctx: KoaContext, err: unknown): err is object {
  const { body } = ctx
  if (!(body instanceof ReadStream) || typeof err !== 'object' || err === null) return false
  const { code, syscall, path } = err as NodeJS.ErrnoException
  return code === 'ENOENT' && syscall === 'open' && path === String(body.path)
}

/**
 * A file body that is not there is answered 404 `IC_NOT_FOUND` (its message, which names
 * the path on disk, stays hidden), as Koa 2's own handler answers it; on Koa 3 too, whose
 * handler dropped that case. Koa 3 pipes the body after the middlewares have returned, so the
 * client sees that 404 only when a middleware awaited the stream's opening; else it is the report's.
 */
function answerAs(err: unknown): unknown {
  return typeof err === 'object' && err !== null && missingBodyFiles.has(err) ? icError('IC_NOT_FOUND') : err
}

/** Whether the app set `ctx.status` itself, rather than leaving Koa's default 404 (Koa 2 and 3 both keep this flag). */
function explicitStatus(ctx: KoaContext): boolean {
  return (ctx as { response?: { _explicitStatus?: boolean } }).response?._explicitStatus === true
}

// Koa 2 fills the status text from statuses 1.x, whose texts differ from Node's for 418 (case) and 425.
const OLDER_STATUS_TEXT: Readonly<Record<number, string>> = { 425: 'Unordered Collection' }

/** Whether `message` is the default text of `status`, not one the app set with `ctx.message`. */
function isStatusText(status: number, message: string): boolean {
  const lower = message.toLowerCase()
  return lower === STATUS_CODES[status]?.toLowerCase() || lower === OLDER_STATUS_TEXT[status]?.toLowerCase()
}

/**
 * Answers 404 `IC_NOT_FOUND` through the error handler when nothing downstream produced a
 * response, naming the path as the client sent it (`ctx.originalUrl`, not a mount's
 * rewritten `ctx.url`). Mount it right after `errorHandler()`.
 *
 * @example
 * app.use(errorHandler())
 * app.use(notFound())
 */
export function notFound(...options: []): KoaMiddleware {
  noOptions(options, 'notFound')
  return async function notFound(ctx, next) {
    await next()
    if (
      ctx.status === 404 &&
      ctx.body == null &&
      !explicitStatus(ctx) &&
      ctx.respond !== false &&
      !ctx.res.headersSent
    ) {
      // The request target is printable ASCII (Node's parser refuses the rest) and stays percent-encoded.
      const url = ctx.originalUrl ?? ctx.req.url
      throw icError('IC_NOT_FOUND', { message: `No route for ${ctx.req.method} ${url?.split('?')[0]}` })
    }
  }
}

// --- Backend lifecycle: deadline and client-closed detection ---

const failThroughContext: LifecycleFail = (ctx, err, res) => {
  ;(ctx as KoaContext).onerror(err)
  // Koa's own ctx.onerror only emits once headers are sent: a started response would stay open
  // forever, its client waiting for the rest. Cut it, as Express's final handler does.
  if (res.headersSent && !responseDestroyed(res) && !responseEnded(res, peekRequestState(res.req)))
    cutResponse(res)
}

/**
 * Without `errorHandler()`, Koa's own `ctx.onerror` takes a lifecycle failure, and it hears it
 * twice when the handler rejects with the abort reason (`await fetch(url, { signal })`): the
 * lifecycle reports it and so does Koa's catch of the handler's rejection, before or after.
 * Each emits it on the app (`app.on('error')`). The request's `ctx.onerror` then passes the
 * abort reason (or the stream error a departed client causes, as `failureOf()` reads it, or
 * Koa 3's `ERR_STREAM_PREMATURE_CLOSE` when the lifecycle cut a started stream) on once,
 * whichever comes first. `errorHandler()`, which took `ctx.onerror` over, reports a
 * request's failure once by itself.
 */
function reportAbortOnce(ctx: KoaContext): void {
  if (Object.hasOwn(ctx, 'onerror')) return
  const onerror = ctx.onerror
  let reported = false
  ctx.onerror = (err) => {
    let error = err
    if (err !== null && err !== undefined) {
      const state = peekRequestState(ctx.req)
      // Koa 3 pipes a stream body: the lifecycle cutting the response fails that pipeline too.
      const cut =
        state?.lifecycleFailed === true &&
        responseDestroyed(ctx.res) &&
        (err as { code?: unknown }).code === 'ERR_STREAM_PREMATURE_CLOSE'
      const failure = cut ? state.abortReason : failureOf(err, ctx.req, ctx.res)
      if (failure === state?.abortReason) {
        if (reported) return
        reported = true
        error = failure
      }
    }
    onerror.call(ctx, error)
  }
}

/**
 * Gives the request a deadline. When it passes before the response was ended (a buffered
 * `ctx.body` is ended as soon as the middlewares return; a stream when it ends), the request's
 * signal ({@link requestSignal}, also `ctx.state.signal`) is aborted and `errorHandler()`
 * answers 504 `IC_BACKEND_TIMEOUT` (or closes the connection if the response had started).
 * A response ended in time is never cut, however long a slow client takes to download it:
 * bound slow readers with `server.timeout` (Node's default is none).
 * A handler that sets `ctx.body` late, or writes to `ctx.res`, changes nothing (without
 * `errorHandler()` too: then Koa's `ctx.onerror` answers the 504, or the response that had
 * started is closed, and the failure is emitted on the app once, also when the handler rejects
 * with the abort reason). The timer is cleared when the
 * response finishes; a client that leaves before it was ended aborts the signal at once (as
 * `clientClosed()` would, without reporting the 499 itself). Mount it after `errorHandler()`; when two deadlines apply, the earlier
 * one wins.
 *
 * @example
 * app.use(errorHandler())
 * app.use(deadline({ timeoutMs: '8s' }))
 * app.use(async (ctx) => {
 *   const image = await fetchImage(url, { signal: ctx.state.signal })
 *   ctx.type = image.format
 *   ctx.body = image.body
 * })
 */
export function deadline(options: Readonly<DeadlineOptions>): KoaMiddleware {
  const arm = createDeadline(options, failThroughContext)
  return function deadline(ctx, next) {
    arm(ctx.req, ctx.res, ctx)
    reportAbortOnce(ctx)
    publishSignal(ctx.state, ctx.req)
    return next() as Promise<void>
  }
}

/**
 * Detects a client that goes away before its response finished (the response closes before
 * `writableFinished`): the request's signal is aborted, so the backend work stops, nothing
 * is written, and `errorHandler()`'s `onError` reports 499 `IC_CLIENT_CLOSED_REQUEST` once
 * (without `errorHandler()`, it is emitted on the app once).
 * Keep-alive and pipelined connections are unaffected. Mount it right after `errorHandler()`.
 *
 * @example
 * app.use(errorHandler())
 * app.use(clientClosed())
 * app.use(async (ctx) => {
 *   ctx.body = (await fetchImage(url, { signal: requestSignal(ctx.req) })).body
 * })
 */
export function clientClosed(...options: []): KoaMiddleware {
  noOptions(options, 'clientClosed')
  const watch = createClientClosed(failThroughContext)
  return function clientClosed(ctx, next) {
    watch(ctx.req, ctx.res, ctx)
    reportAbortOnce(ctx)
    publishSignal(ctx.state, ctx.req)
    return next() as Promise<void>
  }
}

// Load protection: overload shedding and rate limiting (issue 5).

/**
 * Sheds load: refuses with 503 `IC_OVERLOADED` while event-loop delay, utilisation, heap,
 * RSS or requests in flight are over their thresholds, with a `Retry-After` (plus jitter)
 * that grows with the pressure while consecutive samples are over (a single stall gets the
 * minimum). Mount it early, globally or per route.
 *
 * @example
 * const sampler = createLoadSampler({ maxEventLoopDelayMs: 200 })
 * app.use(loadShedding({ sampler, maxInFlight: 100, softThresholdRatio: 0.8 }))
 */
export function loadShedding(options: Readonly<LoadSheddingOptions>): KoaMiddleware {
  return fromGuard(loadSheddingGuard(options), 'loadShedding')
}

/**
 * Limits requests per window and key (IP, account or your function), with a per-request
 * cost; sets the IETF `RateLimit` and `RateLimit-Policy` headers on every counted response
 * and refuses with 429 `IC_RATE_LIMITED` and `Retry-After` once the limit is reached.
 * Its `resetKey(keyOrAddress)` forgets a client's count and block (see `RateLimitReset`).
 *
 * @example
 * app.use(rateLimit({ limit: 90, windowMs: '10s', blockMs: '1m', trustProxy: 1 }))
 */
export function rateLimit(options: Readonly<RateLimitOptions>): KoaMiddleware & RateLimitReset {
  return fromGuard(rateLimitGuard(options), 'rateLimit')
}

/**
 * Image-Charts' published limits: 90 requests per 10 s per IP, and 10 per minute for
 * unsigned requests; a client over either stays blocked for one minute.
 * `resetKey(address)` forgets a client's counts and blocks in both.
 *
 * @example
 * app.use(imageChartsRateLimits({ trustProxy: 1 }))
 */
export function imageChartsRateLimits(
  options: Readonly<ImageChartsRateLimitsOptions> = {},
): KoaMiddleware & RateLimitReset {
  return fromGuard(imageChartsRateLimitsGuard(options), 'imageChartsRateLimits')
}

// Request rules (issue 3): the core guards as Koa middleware.

/**
 * Image-parameter validation as Koa middleware; see the core `imageParams`.
 * Publishes `imageParams` on `ctx.state`.
 *
 * @example
 * router.get('/img/:path', imageParams({ maxWidth: 4000 }), (ctx) => { ctx.body = ctx.state.imageParams })
 */
export function imageParams(options: Readonly<core.ImageParamsOptions> = {}): KoaMiddleware {
  return fromGuard(core.imageParamsGuard(options), 'imageParams')
}

/**
 * Imagizer's permission rules as Koa middleware; see the core `permissions`.
 * Publishes `source` when the request chose one.
 *
 * @example
 * router.get('/img/:path', permissions({ hostsAllowed: ['*.example.com'] }), handler)
 */
export function permissions(options: Readonly<core.PermissionsOptions> = {}): KoaMiddleware {
  return fromGuard(core.permissionsGuard(options), 'permissions')
}

/**
 * Image-Charts signed requests (`icac` / `ichm`) as Koa middleware; see the core
 * `signature`. Publishes `account` for signed requests.
 *
 * @example
 * router.get('/chart', signature({ accounts: { acme: ['new-secret', 'old-secret'] } }), handler)
 */
export function signature(options: Readonly<core.SignatureOptions>): KoaMiddleware {
  return fromGuard(core.signatureGuard(options), 'signature')
}

/**
 * API keys as Koa middleware; see the core `apiKey`. Publishes `apiKey`.
 *
 * @example
 * router.get('/img/:path', apiKey({ keys: { [key]: ['images:read'] }, scopes: ['images:read'] }), handler)
 */
export function apiKey(options: Readonly<core.ApiKeyOptions>): KoaMiddleware {
  return fromGuard(core.apiKeyGuard(options), 'apiKey')
}

/**
 * Imagizer-style uploads as Koa middleware; see the core `upload`. Publishes `upload`
 * (`{ key, body, type }`: store at `key`, the checked request path). Mount it before any
 * body parser.
 *
 * @example
 * router.post('/images/*path', upload({ enabled: true, tokens: [token] }), handler) // @koa/router 13+; before, '/images/(.*)'
 */
export function upload(options: Readonly<core.UploadOptions> = {}): KoaMiddleware {
  const guard = core.uploadGuard(options)
  checkGuard(guard, 'upload')
  return guardMiddleware(guard, 'upload', leaveBodyRead)
}

/**
 * Koa's body parsers (@koa/bodyparser, koa-bodyparser) skip a request whose
 * `ctx.request.body` is set; unset, they would read the ended stream again and fail with a
 * 500. It becomes the uploaded image's bytes.
 */
const leaveBodyRead: RouteHandler = (ctx, next) => {
  const request = (ctx as KoaContext & { request?: { body?: unknown } }).request
  if (request !== undefined && request.body === undefined)
    request.body = (ctx.state.upload as core.UploadedImage).body
  return next()
}

/**
 * A route handler as {@link requestRules} takes it: Koa's `(ctx, next)`, typed on what you
 * annotate (`Koa.Context`, a router's context), {@link KoaContext} otherwise.
 *
 * @example
 * const handler: RouteHandler = (ctx) => {
 *   ctx.body = ctx.state.imageParams
 * }
 */
export type RouteHandler<Ctx extends KoaContext = KoaContext> = (ctx: Ctx, next: Next) => unknown

/**
 * What `requestRules(options, handler)` accepts: a handler on {@link KoaContext} or on a
 * context of Koa's or a router's own, which extend it (a method's parameters compare both ways).
 */
type AnyRouteHandler = { handler(ctx: KoaContext, next: Next): unknown }['handler']

/**
 * Several request rules as ONE Koa middleware; see the core `requestRules`. Given the route
 * handler as well, it is the rules and the handler in one middleware, as with Express: the
 * handler runs when the rules pass, with `ctx.state` filled, and a refusal never reaches it.
 * The result is typed as the handler (and as a middleware), so an unannotated handler gets the
 * context of the app or router it is mounted on (`ctx.state` as your `DefaultState` declares
 * it), and {@link KoaContext} where nothing gives one.
 *
 * @example
 * router.get('/img/:path', requestRules({ permissions: { hostsAllowed: ['*.example.com'] }, imageParams: {} }), handler)
 * router.get('/img', requestRules({ imageParams: { maxWidth: 4000 } }, (ctx) => {
 *   ctx.body = ctx.state.imageParams
 * }))
 */
export function requestRules(options: Readonly<core.RequestRulesOptions>): KoaMiddleware
export function requestRules<Handler extends AnyRouteHandler>(
  options: Readonly<core.RequestRulesOptions>,
  handler: Handler,
): Handler & KoaMiddleware
export function requestRules(
  options: Readonly<core.RequestRulesOptions>,
  handler?: RouteHandler,
): KoaMiddleware {
  const guard = core.requestRulesGuard(options)
  if (handler === undefined) return fromGuard(guard, 'requestRules')
  checkHandler(handler, 'requestRules', '(ctx, next)')
  // As on Express: a handler failing with null or undefined fails with an Error, which Koa
  // answers; the value itself it would leave unanswered.
  const run: RouteHandler = async (ctx, next) => {
    try {
      await handler(ctx, next)
    } catch (err) {
      throw asRefusal(err, 'The route handler')
    }
  }
  return guardMiddleware(guard, 'requestRules', run)
}
