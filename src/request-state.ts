import type { IncomingMessage } from 'node:http'
import type { ParsedQuery } from './query.ts'

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
  /** Parsed query, cached for the guards that read it. */
  query?: URLSearchParams
  /** The query as `imageParams`, `permissions`, `signature` and `apiKey` read it (`parseQuery()`). */
  parsedQuery?: ParsedQuery
  /** Values middlewares published for the handler (also mirrored on `res.locals` / `ctx.state`). */
  published?: Record<string, unknown>
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
