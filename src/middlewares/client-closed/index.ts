import type { IncomingMessage, ServerResponse } from 'node:http'
import { icError } from '../../errors.ts'
import { abortRequest, failAfterAbort, type LifecycleFail } from '../../request-signal.ts'
import { peekRequestState, requestState } from '../../request-state.ts'
import { onResponseClose, peerLeft } from '../../response-close.ts'
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
    if (this.writableFinished) return
    const state = peekRequestState(this.req)
    if (state === undefined || state.abortReason !== undefined) return
    const { errored } = this
    if (errored != null) {
      // Destroyed by the server's own code (`stream.pipeline` on a backend stream's failure;
      // Node sets `errored` only on `res.destroy(err)`, never when the client leaves): no 499,
      // and the handler reports its failure itself (a 502 of its own, say), but the request is
      // over: its signal stops the work still tied to it.
      abortRequest(this.req, errored)
      return
    }
    if (!peerLeft(this)) {
      // The app's own `res.destroy()` (no error recorded): the client is still there, so no
      // 499, but the response is gone and the work tied to it must stop.
      abortRequest(this.req, responseDestroyedError())
      return
    }
    const err = clientGoneError()
    if (abortRequest(this.req, err)) failAfterAbort(this, err, fail, true)
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
