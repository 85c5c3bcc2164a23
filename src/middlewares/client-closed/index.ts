import type { IncomingMessage, ServerResponse } from 'node:http'
import { icError } from '../../errors.ts'
import { abortRequest, failAfterAbort, type LifecycleFail } from '../../request-signal.ts'
import { peekRequestState, requestState } from '../../request-state.ts'
import { onResponseClose, peerLeft, responseFinished, serverErrorOf } from '../../response-close.ts'
import { recordEnd } from '../../response-end.ts'

/**
 * The reason a request whose client left is aborted with. Internal, shared with the error
 * writer, which can hear of the departure first (Koa passes it the socket's reset).
 *
 * @example
 * abortRequest(req, clientGoneError())
 */
export function clientGoneError(): Error {
  return icError('IC_CLIENT_CLOSED_REQUEST', {
    message: 'The client closed the connection before the response finished',
  })
}

/** The reason a request is aborted with when the server's own code destroyed its response without an error. */
function responseDestroyedError(): Error {
  return Object.assign(new Error('The response was destroyed before it finished'), {
    code: 'ERR_STREAM_DESTROYED',
  })
}

// Departures `deadline()` alone aborted a request for: it reports none, so a `clientClosed()`
// on the same request, which may hear of the close later, still reports it.
const unreportedDepartures = new WeakSet<Error>()

/**
 * Aborts the signal of a request whose response closed before it finished, with what the close
 * shows: the error the server's own code destroyed it with (`res.errored`, which
 * `stream.pipeline` sets when the backend stream fails; Node never sets it for a client that
 * left), an `ERR_STREAM_DESTROYED` error for the app's own `res.destroy()` without one (the
 * peer still connected), else the client's departure (`clientGoneError()`). With `report`,
 * returns that departure when it is still to be reported (`clientClosed()` reports it);
 * without (`deadline()`), nothing is done for a response a `clientClosed()` watches, and a
 * departure is left for a `clientClosed()` armed later to report. Internal, shared by the two,
 * so that both judge a close alike.
 *
 * @example
 * const gone = abortClosedRequest(res, true)
 * if (gone !== undefined) failAfterAbort(res, gone, fail, true)
 */
export function abortClosedRequest(res: ServerResponse, report: boolean): Error | undefined {
  const state = requestState(res.req)
  const before = state.abortReason
  if (before !== undefined) return report && unreportedDepartures.delete(before) ? before : undefined
  // A `clientClosed()` watching the response judges it on its `close`, which may come later (a
  // socket's reset is heard first): aborted now, the handler could end the response in between,
  // and the departure would go unreported.
  if (!report && state.watchingClose === true) return undefined
  const errored = serverErrorOf(res)
  if (errored != null) {
    abortRequest(res.req, errored)
    return undefined
  }
  if (!peerLeft(res)) {
    abortRequest(res.req, responseDestroyedError())
    return undefined
  }
  const err = clientGoneError()
  abortRequest(res.req, err)
  if (report) return err
  unreportedDepartures.add(err)
  return undefined
}

/**
 * The framework-neutral client-closed detection behind both adapters' `clientClosed()`. It
 * returns `(req, res, target)`, which listens for the response's `close`. A response that
 * closes before it finished (`!res.writableFinished`: the only test that works on Node ≥ 16;
 * the request's own `close` fires on every request) and that no code destroyed with an error
 * (`res.errored`, which `stream.pipeline` sets when the backend stream fails) means the
 * client went away, and so does
 * the connection closing under a pipelined response still queued behind another (Node never
 * closes that one): the signal is aborted with an `IC_CLIENT_CLOSED_REQUEST` error and,
 * unless the handler failed by itself, `fail` reports it (499, nothing written). A response
 * destroyed with an error aborts the signal with that error, and one the server's code
 * destroyed without an error (the peer still connected) with an `ERR_STREAM_DESTROYED` error;
 * `fail` is not called for either: the handler reports its own failure.
 *
 * @example
 * const watch = createClientClosed((next, err) => (next as (e: Error) => void)(err))
 */
export function createClientClosed(
  fail: LifecycleFail,
): (req: IncomingMessage, res: ServerResponse, target: unknown) => void {
  if (typeof fail !== 'function')
    throw new TypeError(`Expected \`fail\` to be a function, got ${typeof fail}`)

  function onClose(this: ServerResponse): void {
    if (responseFinished(this) || peekRequestState(this.req) === undefined) return
    // A response destroyed with an error, or by the app's own `res.destroy()`, is no
    // departure: no 499, the handler reports its own failure, but the signal stops the work.
    const gone = abortClosedRequest(this, true)
    if (gone !== undefined) failAfterAbort(this, gone, fail, true)
  }

  return function createClientClosed(req, res, target) {
    const state = requestState(req)
    state.lifecycleTarget = target
    if (state.watchingClose !== true) {
      state.watchingClose = true
      recordEnd(res, state)
      onResponseClose(res, onClose)
    }
  }
}
