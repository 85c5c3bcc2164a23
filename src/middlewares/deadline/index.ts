import type { IncomingMessage, ServerResponse } from 'node:http'
import onFinished from 'on-finished'
import { icError } from '../../errors.ts'
import { type Duration, durationMs, knownOptions, showValue } from '../../options.ts'
import { abortRequest, failAfterAbort, type LifecycleFail } from '../../request-signal.ts'
import { peekRequestState, requestState } from '../../request-state.ts'
import { http2StreamOf, onResponseClose } from '../../response-close.ts'
import { recordEnd, responseEnded } from '../../response-end.ts'
import { abortClosedRequest } from '../client-closed/index.ts'

/**
 * Options of `deadline()`.
 *
 * @example
 * const options: DeadlineOptions = { timeoutMs: '8s' }
 */
export interface DeadlineOptions {
  /**
   * Time the handler has, from the moment the middleware runs until the response is ended
   * (`res.end()`; the client may still be downloading it): milliseconds or an `ms` string
   * (`'8s'`).
   */
  readonly timeoutMs: Duration
}

/**
 * The framework-neutral deadline behind both adapters' `deadline()`: validates the options
 * once and returns `(req, res, target)`, which arms the request's timer (or keeps an earlier
 * one). When the deadline passes before the response was ended (`res.end()` called, seen
 * through a middleware that defers it if that one was mounted earlier), the signal
 * is aborted with an `IC_BACKEND_TIMEOUT` error (504) and, unless the handler failed (or
 * ended the response) by itself, `fail` hands that error to the error handler. The timer is cleared when the response finishes or
 * its client leaves (a pipelined response still queued when its connection closes too). A
 * response that closes before it was ended aborts the signal at once, with the reason
 * `clientClosed()` gives it (`IC_CLIENT_CLOSED_REQUEST` for a client that left, the error of a
 * response the server destroyed); `fail` is not called for it: reporting a 499 is
 * `clientClosed()`'s.
 *
 * @example
 * const arm = createDeadline({ timeoutMs: 2000 }, (next, err) => (next as (e: Error) => void)(err))
 */
export function createDeadline(
  options: Readonly<DeadlineOptions>,
  fail: LifecycleFail,
): (req: IncomingMessage, res: ServerResponse, target: unknown) => void {
  if (options === null || typeof options !== 'object') {
    throw new TypeError(`Expected \`options\` to be an object with \`timeoutMs\`, got ${showValue(options)}`)
  }
  knownOptions(options, ['timeoutMs'], 'deadline')
  const timeoutMs = durationMs('timeoutMs', options.timeoutMs)
  if (typeof fail !== 'function')
    throw new TypeError(`Expected \`fail\` to be a function, got ${typeof fail}`)
  const message = `The response was not ended within the ${timeoutMs} ms deadline`

  function onDeadline(res: ServerResponse): void {
    const state = peekRequestState(res.req)
    if (state === undefined) return
    state.deadlineTimer = undefined
    // Ended by the handler: answered in time, even while a slow client (or a pipelined
    // response ahead of it, or compression() still flushing) holds the bytes back; cutting
    // it now would truncate it.
    if (responseEnded(res, state)) return
    const err = icError('IC_BACKEND_TIMEOUT', { message, details: { timeoutMs }, stack: false })
    if (abortRequest(res.req, err)) failAfterAbort(res, err, fail, false)
  }

  return function createDeadline(req, res, target) {
    const state = requestState(req)
    state.lifecycleTarget = target
    if (state.abortReason !== undefined) return
    const at = Date.now() + timeoutMs
    const armed = state.deadlineTimer !== undefined
    if (armed) {
      // A deadline mounted twice (app-wide and per route): the earlier one wins.
      if ((state.deadlineAt as number) <= at) return
      clearTimeout(state.deadlineTimer)
    }
    state.deadlineAt = at
    state.deadlineTimer = setTimeout(onDeadline, timeoutMs, res)
    if (armed) return
    // After the timer: a listener may run at once (a queued response whose client already left).
    recordEnd(res, state)
    // on-finished takes an HTTP/2 HEAD response for finished at once (Node closes its stream's
    // writable side before anything is sent): there, the response's own close tells.
    if (http2StreamOf(res) !== undefined) {
      onResponseClose(res, clearQueuedDeadline)
      return
    }
    onFinished(res, clearDeadline)
    // on-finished waits for a queued pipelined response's socket, which never comes if the client leaves first.
    if (res.socket === null) onResponseClose(res, clearQueuedDeadline)
  }
}

function clearQueuedDeadline(this: ServerResponse): void {
  clearDeadline(undefined, this)
}

function clearDeadline(_err: unknown, res: ServerResponse): void {
  const state = peekRequestState(res.req)
  if (state?.deadlineTimer === undefined) return
  clearTimeout(state.deadlineTimer)
  state.deadlineTimer = undefined
  // Closed before it was ended: no timer bounds the work now, and it is for no one (a client
  // that left) or for a response already gone.
  if (!responseEnded(res, state)) abortClosedRequest(res, false)
}
