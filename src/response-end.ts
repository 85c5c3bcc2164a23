import type { ServerResponse } from 'node:http'
import { dropLateWrites } from './late-writes.ts'
import { peekRequestState, type RequestState } from './request-state.ts'

/** A response's `end`, called with what it was given. */
export type ResponseEnd = (this: ServerResponse, ...args: unknown[]) => ServerResponse

/**
 * Notes in `state.endCalled` when `res.end()` is first called: the response's `end` becomes
 * one function shared by every response, which records the call and hands it to the `end`
 * it replaced (kept in `state.endBefore`; a closure per response would cost twice as much).
 * A middleware that wrapped `end` before (compression() answers the call at once and calls
 * the real `end` once gzip has flushed, which a slow client may hold back for seconds) is
 * then inside ours, so the handler's call is seen when it is made, while
 * `res.writableEnded` stays false until the flush. One that wraps `end` after this ran hides
 * the call the same way: `deadline()` and `clientClosed()`, which call this, are mounted
 * after compression(). `state` is the state of `res.req`; a second call does nothing.
 *
 * @example
 * recordEnd(res, requestState(res.req))
 * res.end('done')
 * requestState(res.req).endCalled // true
 */
export function recordEnd(res: ServerResponse, state: RequestState): void {
  if (state.endBefore !== undefined) return
  state.endBefore = res.end as ResponseEnd
  state.endCalled = false
  res.end = recordingEnd as ServerResponse['end']
}

function recordingEnd(this: ServerResponse, ...args: unknown[]): ServerResponse {
  const state = peekRequestState(this.req) as RequestState
  // Noted once the call returned: an `end` that throws (`res.end(404)`, a status of 1000,
  // compression's `end(callback)`) sent nothing, and the request must still be answered.
  const result = (state.endBefore as ResponseEnd).apply(this, args)
  state.endCalled = true
  // What answered a deadline's or a departed client's failure may be the framework's own
  // (Express's final handler, Koa's ctx.onerror), which leaves the handler free to write late.
  if (state.lifecycleFailed === true) dropLateWrites(this)
  return result
}

/**
 * Whether the code answering the request ended the response: `res.writableEnded`, or a
 * call of `res.end()` that {@link recordEnd} saw and a middleware has not passed on yet.
 *
 * @example
 * if (responseEnded(res, peekRequestState(res.req))) return
 */
export function responseEnded(res: ServerResponse, state: RequestState | undefined): boolean {
  return res.writableEnded || state?.endCalled === true
}
