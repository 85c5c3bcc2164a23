import type { IncomingMessage } from 'node:http'
import type { ResponseEnd } from './response-end.ts'

/**
 * What the package keeps about one request, in one place, keyed by the raw
 * `IncomingMessage` (Express's `req`, Koa's `ctx.req`), so every middleware and adapter
 * reads the same object and `req` itself is never touched (Express deoptimises it).
 */
export interface RequestState {
  /** The request id the error handler answered with. */
  requestId?: string
  /** Set once the failure of this request was reported; a request fails once. */
  failureReported?: boolean
  /** Values middlewares published for the handler (also mirrored on `res.locals` / `ctx.state`). */
  published?: Record<string, unknown>
  // Backend lifecycle (deadline, client-closed detection): see src/request-signal.ts.
  /** The request's abort controller, made on first use of `requestSignal()`. */
  abortController?: AbortController
  /** Why the request was aborted (504 deadline or 499 client closed); the first cause wins. */
  abortReason?: Error
  /** What the adapter needs to report a lifecycle failure: Express's `next`, or the Koa context. */
  lifecycleTarget?: unknown
  /** The pending deadline timer, and when it fires (ms since the epoch). */
  deadlineTimer?: NodeJS.Timeout | undefined
  deadlineAt?: number
  /** Whether the client-closed listener is attached to the response. */
  watchingClose?: boolean
  /**
   * Whether `res.end()` was called, once `deadline()` or `clientClosed()` watches for it
   * (src/response-end.ts): `true` from the call on, while `res.writableEnded` may still be
   * false (compression() passes the end on once gzip has flushed).
   */
  endCalled?: boolean
  /** The response's `end` that the watching one replaced and calls. */
  endBefore?: ResponseEnd
  /**
   * Set when `deadline()` or `clientClosed()` handed its failure on: once the response is
   * ended (by whatever answered the failure), it ignores later writes (src/late-writes.ts).
   */
  lifecycleFailed?: boolean
}

const states = new WeakMap<IncomingMessage, RequestState>()

/** The state of a request, created on first use. */
export function requestState(req: IncomingMessage): RequestState {
  let state = states.get(req)
  if (state === undefined) {
    state = {}
    states.set(req, state)
  }
  return state
}

/**
 * The state of a request when one exists, without creating it (lifecycle listeners).
 *
 * @example
 * if (peekRequestState(res.req)?.failureReported) return
 */
export function peekRequestState(req: IncomingMessage): RequestState | undefined {
  return states.get(req)
}
