// Compile-time checks of the public types: `tsc --noEmit` fails when one of these stops holding.
import assert from 'node:assert/strict'
import { it } from 'node:test'
import * as express from '../src/express.ts'
import { type ErrorReport, errorCatalogue, type IcError, icError } from '../src/index.ts'
import * as koa from '../src/koa.ts'

// Never called: only compiled.
export function typeChecks(): void {
  const err: IcError = icError('IC_RATE_LIMITED', { retryAfterSeconds: 5 })
  // @ts-expect-error retryAfterSeconds is a number of seconds, not a string
  icError('IC_RATE_LIMITED', { retryAfterSeconds: '5' })
  // @ts-expect-error validation items need a message
  icError('IS_VALIDATION_ERROR', { validation: [{ path: ['width'] }] })
  assert.equal(err.headers['x-ic-error-code'], 'IC_RATE_LIMITED')
  // @ts-expect-error the catalogue is read-only
  errorCatalogue.IC_RATE_LIMITED.status = 400
  const onError = (report: ErrorReport): number => report.status
  // @ts-expect-error onError receives one report object
  express.errorHandler({ onError: (status: number, code: string) => status + code })
  // @ts-expect-error the request id header is a string
  koa.errorHandler({ requestIdHeader: 42 })
  const names: (keyof typeof express)[] = Object.keys(koa) as (keyof typeof koa)[]
  void names
  void onError
}

it('both adapters export the same names', () => {
  assert.deepEqual(Object.keys(express).sort(), Object.keys(koa).sort())
})

// Load protection (issue 5).
export function loadProtectionTypeChecks(): void {
  // @ts-expect-error a limit needs its window
  express.rateLimit({ limit: 90 })
  // @ts-expect-error key is 'ip', 'account' or a function
  koa.rateLimit({ limit: 90, windowMs: '10s', key: 'cookie' })
  // @ts-expect-error cost is a function of the request
  express.rateLimit({ limit: 90, windowMs: '10s', cost: 2 })
  koa.rateLimit({
    limit: 90,
    windowMs: '10s',
    key: async () => 'tenant',
    skip: async () => false,
    cost: async () => 2,
  })
  const resets: Promise<void>[] = [
    express.rateLimit({ limit: 90, windowMs: '10s' }).resetKey('203.0.113.7'),
    koa.imageChartsRateLimits().resetKey('203.0.113.7'),
    express.fromGuard(express.rateLimitGuard({ limit: 90, windowMs: '10s' }), 'limit').resetKey('k'),
  ]
  void resets
  // @ts-expect-error only a limiter's middleware has resetKey()
  koa.fromGuard(() => undefined, 'plain').resetKey('k')
  // @ts-expect-error a key is a string (or undefined), also when awaited
  express.rateLimit({ limit: 90, windowMs: '10s', key: async () => 42 })
  // onStoreError may be async (its rejection is swallowed), and a plain hook may return anything.
  const failures: unknown[] = []
  koa.imageChartsRateLimits({ onStoreError: async (e) => void (await Promise.resolve(failures.push(e))) })
  express.rateLimit({ limit: 90, windowMs: '10s', onStoreError: (e, req) => failures.push(e, req.url) })
  // @ts-expect-error onStoreError gets the error and the request
  express.rateLimit({ limit: 90, windowMs: '10s', onStoreError: (_e: unknown, req: string) => req })
  // @ts-expect-error trustProxy never accepts true (every client could pick its key)
  express.rateLimit({ limit: 90, windowMs: '10s', trustProxy: true })
  // @ts-expect-error sendCommand takes the command as one array
  new express.RedisStore({ sendCommand: (name: string, arg: string) => Promise.resolve([name, arg]) })
  const sampler = express.createLoadSampler({ maxEventLoopDelayMs: 200 })
  // @ts-expect-error thresholds are numbers
  koa.loadShedding({ sampler, maxHeapUsedBytes: '1GB' })
  const reason = sampler.reason()
  if (reason !== undefined) {
    // @ts-expect-error the reason type is a closed set
    const other: typeof reason.type = 'cpu'
    void other
  }
}
