import type { IncomingMessage, ServerResponse } from 'node:http'
import { debuglog } from 'node:util'
import { icError } from './errors.ts'
import { asRefusal, checkGuard, checkHandler, type Guard, isThenable } from './guard.ts'
import * as core from './index.ts'
import { createClientClosed } from './middlewares/client-closed/index.ts'
import { createDeadline, type DeadlineOptions } from './middlewares/deadline/index.ts'
import { createErrorWriter, type ErrorHandlerOptions } from './middlewares/error-handler/index.ts'
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
import { noOptions } from './options.ts'
import { type LifecycleFail, publishSignal } from './request-signal.ts'
import { peekRequestState } from './request-state.ts'
import { http2StreamOf } from './response-close.ts'
import { responseEnded } from './response-end.ts'

export * from './index.ts'

// A guard's own failure after an abort is not reported (the abort is): NODE_DEBUG=image-api-errors shows it.
const debug = debuglog('image-api-errors')
/**
 * Express's `next`.
 *
 * @example
 * const done: NextFunction = (err) => console.log(err === undefined ? 'next' : 'failed')
 */
export type NextFunction = (err?: unknown) => void
/**
 * An Express middleware, typed on `node:http` so that it fits Express 4 and 5 without
 * depending on their type packages.
 *
 * @example
 * const onlyGet: ExpressMiddleware = (req, _res, next) =>
 *   next(req.method === 'GET' ? undefined : icError('IC_BAD_REQUEST', { message: 'GET only' }))
 */
export type ExpressMiddleware = (req: IncomingMessage, res: ServerResponse, next: NextFunction) => void
/**
 * An Express error-handling middleware (four parameters).
 *
 * @example
 * const last: ExpressErrorMiddleware = errorHandler()
 */
export type ExpressErrorMiddleware = (
  err: unknown,
  req: IncomingMessage,
  res: ServerResponse,
  next: NextFunction,
) => void

type WithLocals = ServerResponse & { locals?: Record<string, unknown> }

function publish(res: ServerResponse, values: Readonly<Record<string, unknown>>): void {
  const target = res as WithLocals
  if (target.locals === undefined) target.locals = {}
  Object.assign(target.locals, values)
}

/**
 * A guard that settles after its request was aborted (a deadline passed, the client left)
 * must not run the handler: the abort's reason is reported instead, unless a failure of the
 * request already was.
 */
function settledAfterAbort(req: IncomingMessage, next: NextFunction): boolean {
  const state = peekRequestState(req)
  if (state?.abortReason === undefined) return false
  if (state.failureReported !== true) next(state.abortReason)
  return true
}

/**
 * Runs a core guard as Express middleware: synchronous guards cost no promise; failures go to
 * `next(err)`, which Express 4 needs; what the guard returns is copied onto `res.locals`. Any
 * promise or thenable it returns is awaited (one from another realm included).
 * A rate-limit guard's `resetKey()` is kept on the middleware.
 *
 * @example
 * const onlyGet: Guard = (req) => {
 *   if (req.method !== 'GET') throw icError('IC_BAD_REQUEST', { message: 'GET only' })
 * }
 * app.use(fromGuard(onlyGet, 'onlyGet'))
 */
export function fromGuard(guard: RateLimitGuard, name: string): ExpressMiddleware & RateLimitReset
export function fromGuard(guard: Guard, name: string): ExpressMiddleware
export function fromGuard(guard: Guard, name: string): ExpressMiddleware {
  checkGuard(guard, name)
  return withResetKey(guardMiddleware(guard, name, handOn), guard)
}

/** What a guard's middleware does once the guard passed: hand on, or run the route handler. */
type Passed = (req: IncomingMessage, res: ServerResponse, next: NextFunction) => void
const handOn: Passed = (_req, _res, next) => next()

function guardMiddleware(guard: Guard, name: string, passed: Passed): ExpressMiddleware {
  const middleware: ExpressMiddleware = (req, res, next) => {
    let out: ReturnType<Guard>
    try {
      out = guard(req, res)
    } catch (err) {
      next(asRefusal(err, name))
      return
    }
    if (out === undefined) {
      passed(req, res, next)
    } else if (isThenable(out)) {
      // Promise.resolve() adopts a foreign promise or thenable, and settles once whatever it does.
      Promise.resolve(out).then(
        (values) => {
          if (settledAfterAbort(req, next)) return
          if (values !== undefined) publish(res, values as core.Published)
          passed(req, res, next)
        },
        (err: unknown) => {
          if (!settledAfterAbort(req, next)) next(asRefusal(err, name))
          else debug('%s failed after the request was aborted: %O', name, err)
        },
      )
    } else {
      publish(res, out)
      passed(req, res, next)
    }
  }
  Object.defineProperty(middleware, 'name', { value: name })
  return middleware
}

/**
 * The final error handler, mounted **last**: the only writer of error responses. Every
 * thrown or rejected value becomes the right status, `x-ic-error-code`,
 * `x-ic-error-validation` and `Retry-After` where they apply, a request id, and a body
 * negotiated from `Accept` (with `Vary: Accept`). An error after the handler ended the response is reported
 * (outcome `ended`) and the response left whole; under compression(), which ends it only
 * once gzip has flushed, that is known when `clientClosed()` or `deadline()` is mounted
 * after compression(), and otherwise the response looks started and is closed.
 *
 * @example
 * import express from 'express'
 * import { errorHandler, notFound } from 'image-api-errors/express'
 * const app = express()
 * app.get('/image/:id', handler)
 * app.use(notFound())
 * app.use(errorHandler({ onError: (r) => console.warn(r.status, r.code, r.requestId) }))
 */
export function errorHandler(options: Readonly<ErrorHandlerOptions> = {}): ExpressErrorMiddleware {
  const handle = createErrorWriter(options)
  const middleware: ExpressErrorMiddleware = function errorHandler(err, req, res, _next) {
    handle(err, req, res)
  }
  errorWriters.set(middleware, handle)
  return middleware
}

type ErrorWriter = (err: unknown, req: IncomingMessage, res: ServerResponse) => void

/** The writer of each `errorHandler()` middleware, to find it in an app's stack. */
const errorWriters = new WeakMap<object, ErrorWriter>()

interface AppLike {
  readonly _router?: { readonly stack?: unknown }
  readonly router?: { readonly stack?: unknown }
  readonly parent?: unknown
}

interface LayerLike {
  readonly handle?: unknown
  /** A route's own layers (`app.get(path, ..., errorHandler())`). */
  readonly route?: { readonly stack?: unknown }
  /** Express 5 (router 2): mounted at `/` for every path. */
  readonly slash?: boolean
  /** Express 4: the same. */
  readonly regexp?: { readonly fast_slash?: boolean }
}

/** Whether a router stack holds an `errorHandler()` at any depth (sub-routers and routes included). */
function holdsErrorHandler(stack: unknown, depth = 0): boolean {
  if (!Array.isArray(stack) || depth > 8) return false
  return stack.some((layer: LayerLike | null) => {
    const handle = layer?.handle
    return (
      (typeof handle === 'function' &&
        (errorWriters.has(handle) || holdsErrorHandler((handle as { stack?: unknown }).stack, depth + 1))) ||
      holdsErrorHandler(layer?.route?.stack, depth + 1)
    )
  })
}

/**
 * The writer of the one `errorHandler()` mounted for every path at the top of the request's
 * app (or of an app it is mounted in). Undefined — the failure then goes through
 * `next(err)`, whose path Express knows — when there is none, several, one mounted at a
 * path, one inside a router or on a route, or the app's router cannot be read. Express 4 keeps the router
 * in `app._router` (its `app.router` throws), Express 5 in `app.router`.
 */
function mountedErrorWriter(req: IncomingMessage): ErrorWriter | undefined {
  for (let app = (req as { app?: unknown }).app; typeof app === 'function'; app = (app as AppLike).parent) {
    let stack: unknown
    try {
      stack = ((app as AppLike)._router ?? (app as AppLike).router)?.stack
    } catch {
      return undefined
    }
    if (!Array.isArray(stack)) return undefined
    let found: ErrorWriter | undefined
    for (const layer of stack as (LayerLike | null)[]) {
      const handle = layer?.handle
      if (typeof handle !== 'function') continue
      const write = errorWriters.get(handle)
      if (write === undefined) {
        if (
          holdsErrorHandler((handle as { stack?: unknown }).stack) ||
          holdsErrorHandler(layer?.route?.stack)
        )
          return undefined
        continue
      }
      const everyPath = layer?.slash === true || layer?.regexp?.fast_slash === true
      if (!everyPath || (found !== undefined && found !== write)) return undefined
      found = write
    }
    if (found !== undefined) return found
  }
  return undefined
}

/**
 * Answers 404 `IC_NOT_FOUND` through the error handler for requests no route matched, naming
 * the path as the client sent it (`req.originalUrl`, not the part a router's mount left).
 * Mount it after the routes and before `errorHandler()`.
 *
 * @example
 * app.use(notFound())
 * app.use(errorHandler())
 */
export function notFound(...options: []): ExpressMiddleware {
  noOptions(options, 'notFound')
  return function notFound(req, _res, next) {
    // The request target is printable ASCII (Node's parser refuses the rest) and stays percent-encoded.
    const url = (req as { originalUrl?: string }).originalUrl ?? req.url
    next(icError('IC_NOT_FOUND', { message: `No route for ${req.method} ${url?.split('?')[0]}` }))
  }
}

// --- Backend lifecycle: deadline and client-closed detection ---

/**
 * A deadline or a client that left is answered by the app's `errorHandler()` directly when
 * it can be found: through `next(err)`, Express's router would move past the error handler,
 * and the handler's own late `next(err)` (a backend call that failed after the 504) would
 * then reach Express's final handler, which logs it and destroys the keep-alive socket.
 * Answered directly, the late error reaches `errorHandler()`, which ignores it.
 */
const failThroughNext: LifecycleFail = (next, err, res) => {
  const write = mountedErrorWriter(res.req)
  if (write !== undefined) write(err, res.req, res)
  else
    setImmediate(
      failThroughRouter,
      next as NextFunction,
      err,
      res,
      responseEnded(res, peekRequestState(res.req)),
      res.statusCode,
    )
}

/**
 * Hands a lifecycle failure to Express's router when there is no `errorHandler()` to find:
 * one more turn later, since the router hands an error that reached its end to the final
 * handler in a `setImmediate()`. A handler that rejected with the abort reason in the turn of
 * the abort has by then been answered — the final handler (or an error middleware) ended the
 * response, or, for a client that left, whose writes are dropped, gave it the failure's
 * status — and its failure is the one reported: the router is not sent a second error that it
 * would log and answer again. A handler that forwards the reason later still reaches the final
 * handler a second time (the router is past every layer), which logs it again and destroys
 * the socket of a response already sent: a 504 handed on here therefore says `Connection:
 * close`, so that the client does not reuse a connection about to be cut.
 */
function failThroughRouter(
  next: NextFunction,
  err: Error,
  res: ServerResponse,
  endedBefore: boolean,
  statusBefore: number,
): void {
  const answered =
    (!endedBefore && responseEnded(res, peekRequestState(res.req))) ||
    (res.statusCode !== statusBefore && res.statusCode === (err as { status?: unknown }).status)
  if (answered) return
  if (!res.headersSent && !res.destroyed && http2StreamOf(res) === undefined)
    res.setHeader('connection', 'close')
  next(err)
}

function publishSignalOn(req: IncomingMessage, res: ServerResponse): void {
  const target = res as WithLocals
  if (target.locals === undefined) target.locals = {}
  publishSignal(target.locals, req)
}

/**
 * Gives the request a deadline. When it passes before the handler ended the response, the
 * request's signal ({@link requestSignal}, also `res.locals.signal`) is aborted and the error
 * handler answers 504 `IC_BACKEND_TIMEOUT` (or closes the connection if the response had
 * started). A response the handler ended in time is never cut, however long a slow client
 * takes to download it: bound slow readers with `server.timeout` (Node's default is none).
 * A handler that writes late neither crashes nor sends a second
 * response, also when Express's final handler wrote the 504 (no `errorHandler()`: the failure
 * then goes to `next(err)` a turn later, so that a handler rejecting with the abort reason in
 * the turn of the abort is answered alone; the 504 says `Connection: close`, since a later
 * rejection reaches the final handler again, which destroys the socket). The timer is cleared when the response finishes; a client
 * that leaves before it was ended aborts the signal at once (as `clientClosed()` would, without
 * reporting the 499 itself). Mount it before the handlers
 * it covers, app-wide or per route, and after compression(), which ends the response only
 * once gzip has flushed: after it, the handler's own `res.end()` counts. When two deadlines
 * apply, the earlier one wins.
 *
 * @example
 * app.get('/image/:id', deadline({ timeoutMs: '8s' }), async (req, res) => {
 *   const image = await fetchImage(url, { signal: res.locals.signal })
 *   res.type(image.format).send(image.body)
 * })
 */
export function deadline(options: Readonly<DeadlineOptions>): ExpressMiddleware {
  const arm = createDeadline(options, failThroughNext)
  return function deadline(req, res, next) {
    arm(req, res, next)
    publishSignalOn(req, res)
    next()
  }
}

/**
 * Detects a client that goes away before its response finished (the response closes before
 * `writableFinished`): the request's signal is aborted, so the backend work stops, nothing
 * is written, and the error handler's `onError` reports 499 `IC_CLIENT_CLOSED_REQUEST` once.
 * Keep-alive and pipelined connections are unaffected. Mount it first, but after
 * compression(): it then also lets `errorHandler()` know that a handler which fails after
 * `res.send()` had ended its compressed response, left whole (outcome `ended`).
 *
 * @example
 * app.use(clientClosed())
 * app.get('/image/:id', async (req, res) => {
 *   const image = await fetchImage(url, { signal: requestSignal(req) })
 *   res.send(image.body)
 * })
 */
export function clientClosed(...options: []): ExpressMiddleware {
  noOptions(options, 'clientClosed')
  const watch = createClientClosed(failThroughNext)
  return function clientClosed(req, res, next) {
    watch(req, res, next)
    publishSignalOn(req, res)
    next()
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
export function loadShedding(options: Readonly<LoadSheddingOptions>): ExpressMiddleware {
  return fromGuard(loadSheddingGuard(options), 'loadShedding')
}

/**
 * Limits requests per window and key (IP, account or your function), with a per-request
 * cost; sets the IETF `RateLimit` and `RateLimit-Policy` headers on every counted response
 * and refuses with 429 `IC_RATE_LIMITED` and `Retry-After` once the limit is reached.
 * Its `resetKey(keyOrAddress)` forgets a client's count and block (see `RateLimitReset`).
 *
 * @example
 * app.use('/chart', rateLimit({ limit: 90, windowMs: '10s', blockMs: '1m', trustProxy: 1 }))
 */
export function rateLimit(options: Readonly<RateLimitOptions>): ExpressMiddleware & RateLimitReset {
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
): ExpressMiddleware & RateLimitReset {
  return fromGuard(imageChartsRateLimitsGuard(options), 'imageChartsRateLimits')
}

// Request rules (issue 3): the core guards as Express middleware.

/**
 * Image-parameter validation as Express middleware; see the core `imageParams`.
 * Publishes `imageParams` on `res.locals`.
 *
 * @example
 * app.get('/img/:path', imageParams({ maxWidth: 4000 }), (req, res) => res.json(res.locals.imageParams))
 */
export function imageParams(options: Readonly<core.ImageParamsOptions> = {}): ExpressMiddleware {
  return fromGuard(core.imageParamsGuard(options), 'imageParams')
}

/**
 * Imagizer's permission rules as Express middleware; see the core `permissions`.
 * Publishes `source` when the request chose one.
 *
 * @example
 * app.get('/img/:path', permissions({ hostsAllowed: ['*.example.com'] }), handler)
 */
export function permissions(options: Readonly<core.PermissionsOptions> = {}): ExpressMiddleware {
  return fromGuard(core.permissionsGuard(options), 'permissions')
}

/**
 * Image-Charts signed requests (`icac` / `ichm`) as Express middleware; see the core
 * `signature`. Publishes `account` for signed requests.
 *
 * @example
 * app.get('/chart', signature({ accounts: { acme: ['new-secret', 'old-secret'] } }), handler)
 */
export function signature(options: Readonly<core.SignatureOptions>): ExpressMiddleware {
  return fromGuard(core.signatureGuard(options), 'signature')
}

/**
 * API keys as Express middleware; see the core `apiKey`. Publishes `apiKey`.
 *
 * @example
 * app.get('/img/:path', apiKey({ keys: { [key]: ['images:read'] }, scopes: ['images:read'] }), handler)
 */
export function apiKey(options: Readonly<core.ApiKeyOptions>): ExpressMiddleware {
  return fromGuard(core.apiKeyGuard(options), 'apiKey')
}

/**
 * Imagizer-style uploads as Express middleware; see the core `upload`. Publishes `upload`
 * (`{ key, body, type }`: store at `key`, the checked request path). Mount it before any
 * body parser.
 *
 * @example
 * app.post('/images/*path', upload({ enabled: true, tokens: [token] }), handler)
 */
export function upload(options: Readonly<core.UploadOptions> = {}): ExpressMiddleware {
  return fromGuard(core.uploadGuard(options), 'upload')
}

/**
 * A route handler as {@link requestRules} takes it: Express's `(req, res, next)`, typed on
 * what you annotate (`express.Request`, `express.Response`), `node:http` otherwise. A
 * returned promise that rejects goes to `next(err)`, under Express 4 too.
 *
 * @example
 * const handler: RouteHandler<express.Request, express.Response> = (req, res) => {
 *   res.json(res.locals.imageParams)
 * }
 */
export type RouteHandler<
  Req extends IncomingMessage = IncomingMessage,
  Res extends ServerResponse = ServerResponse,
> = (req: Req, res: Res, next: NextFunction) => unknown

/**
 * What `requestRules(options, handler)` accepts: a handler on `node:http`'s objects or on
 * Express's own, which extend them (a method's parameters compare both ways).
 */
type AnyRouteHandler = {
  handler(req: IncomingMessage, res: ServerResponse, next: NextFunction): unknown
}['handler']

/**
 * Several request rules as ONE Express middleware; see the core `requestRules`. Given the
 * route handler as well, it is the rules and the handler in one layer, so the rules add no
 * layer to the route: the handler runs when the rules pass, with `res.locals` filled, and a
 * refusal never reaches it. The result is typed as the handler (and as a middleware), so an
 * unannotated handler gets the types of the route it is mounted on (`express.Request`,
 * `express.Response`, the route's params), and `node:http`'s where nothing gives them.
 *
 * @example
 * app.get('/img/:path', requestRules({ permissions: { hostsAllowed: ['*.example.com'] }, imageParams: {} }), handler)
 * app.get('/img', requestRules({ imageParams: { maxWidth: 4000 } }, (req, res) => {
 *   res.json(res.locals.imageParams)
 * }))
 */
export function requestRules(options: Readonly<core.RequestRulesOptions>): ExpressMiddleware
export function requestRules<Handler extends AnyRouteHandler>(
  options: Readonly<core.RequestRulesOptions>,
  handler: Handler,
): Handler & ExpressMiddleware
export function requestRules(
  options: Readonly<core.RequestRulesOptions>,
  handler?: RouteHandler,
): ExpressMiddleware {
  const guard = core.requestRulesGuard(options)
  if (handler === undefined) return fromGuard(guard, 'requestRules')
  checkHandler(handler, 'requestRules', '(req, res, next)')
  return guardMiddleware(guard, 'requestRules', (req, res, next) => runHandler(handler, req, res, next))
}

/** Runs a route handler as Express 5 would, also under Express 4: a throw or a rejection goes to `next(err)`. */
function runHandler(
  handler: RouteHandler,
  req: IncomingMessage,
  res: ServerResponse,
  next: NextFunction,
): void {
  try {
    const out = handler(req, res, next)
    // Inside the try: a `then` getter that throws is the handler's failure too.
    if (isThenable(out))
      Promise.resolve(out).then(undefined, (err: unknown) => next(asRefusal(err, 'The route handler')))
  } catch (err) {
    next(asRefusal(err, 'The route handler'))
  }
}
