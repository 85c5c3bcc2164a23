import { setMaxListeners } from 'node:events'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { dropLateWrites } from './late-writes.ts'
import { peekRequestState, type RequestState, requestState } from './request-state.ts'
import { connectionOf, responseDestroyed } from './response-close.ts'
import { responseEnded } from './response-end.ts'

/** The request state behind each signal `requestSignal()` made, for a fetch handed one. */
const signalStates = new WeakMap<AbortSignal, RequestState>()

/**
 * The single `AbortSignal` of a request: aborted when its deadline passes (reason: an
 * `IcError` with code `IC_BACKEND_TIMEOUT`) or when the client goes away (reason:
 * `IC_CLIENT_CLOSED_REQUEST`), whichever comes first. Pass it to every backend call, so the
 * work stops with the request. `deadline()` and `clientClosed()` also publish it as
 * `signal` on `res.locals` (Express) and `ctx.state` (Koa). Without those middlewares it
 * never aborts. It takes any number of listeners without Node's `MaxListenersExceededWarning`,
 * so a handler may start many backend calls on it at once.
 *
 * @example
 * app.get('/image/:id', deadline({ timeoutMs: '8s' }), async (req, res) => {
 *   const image = await fetchImage(`https://images.example.com/${req.params.id}`, { signal: requestSignal(req) })
 *   res.type(image.format).send(image.body)
 * })
 */
export function requestSignal(req: IncomingMessage): AbortSignal {
  // A Koa context would get a signal of its own that nothing ever aborts.
  if (typeof (req as { on?: unknown } | null)?.on !== 'function')
    throw new TypeError('Expected requestSignal() to get the request (in Koa `ctx.req`, not `ctx`)')
  const state = requestState(req)
  let controller = state.abortController
  if (controller === undefined) {
    controller = new AbortController()
    // Every backend call of the request listens to it until it settles: a handler fetching a
    // dozen tiles at once is no leak, and Node would warn past ten.
    setMaxListeners(0, controller.signal)
    state.abortController = controller
    signalStates.set(controller.signal, state)
    if (state.abortReason !== undefined) controller.abort(state.abortReason)
  }
  return controller.signal
}

/**
 * When the pending `deadline()` of the request whose signal this is passes (ms since the
 * epoch): `undefined` for another signal, or once the deadline was cleared. Internal: a
 * backend fetch handed the signal starts no retry wait the deadline would cut short.
 *
 * @example
 * const dueAt = requestDeadlineAt(requestSignal(req)) ?? Number.POSITIVE_INFINITY
 */
export function requestDeadlineAt(signal: AbortSignal | undefined): number | undefined {
  const state = signal === undefined ? undefined : signalStates.get(signal)
  return state?.deadlineTimer === undefined ? undefined : state.deadlineAt
}

/**
 * Publishes the request's signal as `signal` on `target` (`res.locals`, `ctx.state`) without
 * making it: an `AbortSignal` costs microseconds, so it is made on first read only.
 *
 * @example
 * publishSignal(ctx.state, ctx.req)
 * ctx.state.signal // requestSignal(ctx.req)
 */
export function publishSignal(target: object, req: IncomingMessage): void {
  if (Object.hasOwn(target, 'signal')) return
  Object.defineProperty(target, 'signal', {
    configurable: true,
    enumerable: true,
    get: () => requestSignal(req),
  })
}

/**
 * Aborts the request's signal with `reason`, unless it was already aborted. Returns whether
 * this call aborted it.
 *
 * @example
 * abortRequest(req, icError('IC_BACKEND_TIMEOUT'))
 */
export function abortRequest(req: IncomingMessage, reason: Error): boolean {
  const state = requestState(req)
  if (state.abortReason !== undefined) return false
  state.abortReason = reason
  state.abortController?.abort(reason)
  return true
}

/**
 * How an adapter hands a lifecycle failure to its error handler: Express `next(err)`, Koa
 * `ctx.onerror(err)`. `target` is what the adapter passed when it armed the request; `res`
 * is the request's response.
 *
 * @example
 * const failThroughNext: LifecycleFail = (next, err) => (next as (err: Error) => void)(err)
 */
export type LifecycleFail = (target: unknown, err: Error, res: ServerResponse) => void

/**
 * Reports `err` for the request through the adapter, one turn of the event loop after the
 * abort: a handler that passed the signal to its backend call fails by itself first, and
 * its failure (the same reason) is then the one reported, so the framework never sees a
 * second error for the request. A handler that ignores the signal is failed here, unless it
 * ended the response meanwhile (a large one may still be on its way to the client). With
 * `clientGone`, a response the handler ended meanwhile is still reported: it reached nobody.
 * Once what `fail` reached has answered the failure (ended the response, or closed its
 * connection), the response ignores what the handler still writes to it, whether that was
 * `errorHandler()` or the framework's own handler: a late `res.send()` cannot throw.
 *
 * @example
 * if (abortRequest(req, err)) failAfterAbort(res, err, (next, e) => (next as (e: Error) => void)(e), false)
 */
export function failAfterAbort(
  res: ServerResponse,
  err: Error,
  fail: LifecycleFail,
  clientGone: boolean,
): void {
  setImmediate(failIfPending, res, err, fail, clientGone)
}

function failIfPending(res: ServerResponse, err: Error, fail: LifecycleFail, clientGone: boolean): void {
  const state = peekRequestState(res.req)
  if (state === undefined || state.failureReported === true || (!clientGone && responseEnded(res, state)))
    return
  state.lifecycleFailed = true
  fail(state.lifecycleTarget, err, res)
  // Answered (or cut) by now, unless what took the failure writes later: then on its end().
  if (responseEnded(res, state) || responseDestroyed(res) || connectionOf(res)?.destroyed === true)
    dropLateWrites(res)
}
