import type * as ExpressAdapter from '../../src/express.ts'
import type * as KoaAdapter from '../../src/koa.ts'
import type { DemoAppConfig } from './app.ts'

/** The package's Express or Koa entry point: both export the same names. */
export type Adapter = typeof ExpressAdapter | typeof KoaAdapter

/** Imagizer parameters the demo's image route accepts; any other is 401 `IC_PARAM_NOT_ALLOWED`. */
export const demoImageParams = ['width', 'height', 'crop', 'dpr', 'quality', 'format', 'pad_color'] as const

/**
 * The image route's middlewares, in order, from either adapter: the one place the demo's
 * stack is written, so the Express and Koa versions cannot drift apart.
 *
 * @example
 * app.get(/^\/image\/.+/, ...imageStack(expressAdapter, config), handler)
 */
export function imageStack(a: Adapter, config: DemoAppConfig): readonly unknown[] {
  return [
    // First: a client that leaves aborts the request's signal, and is reported as 499.
    a.clientClosed(),
    // Cheap refusals before any work: overload (503), then the rate limit (429).
    a.loadShedding({ sampler: config.sampler, maxInFlight: config.maxInFlight }),
    a.rateLimit({ name: 'images', ...config.imageRateLimit }),
    // Parameters (400, 401 for one not allowed) and permissions (401), as one layer.
    a.requestRules({
      imageParams: { imageParamsAllowed: demoImageParams, maxWidth: 2048, maxHeight: 2048, maxDpr: 4 },
      permissions: { hostsAllowed: config.hostsAllowed, bucketsAllowed: config.bucketsAllowed },
    }),
    // Last before the handler: fetch and processing must end within the deadline (504).
    a.deadline({ timeoutMs: config.timeoutMs }),
  ]
}

/**
 * The chart route's middlewares, in order, from either adapter.
 *
 * @example
 * app.get('/chart', ...chartStack(expressAdapter, config), handler)
 */
export function chartStack(a: Adapter, config: DemoAppConfig): readonly unknown[] {
  return [
    a.loadShedding({ sampler: config.sampler }),
    // Image-Charts' limits: 10 per minute for unsigned requests; 90 per 10 s per IP. Before the
    // signature check, so bad signatures count per IP too (a forged one skips the unsigned
    // quota, and is then refused by the check).
    a.imageChartsRateLimits(),
    a.signature({ accounts: { [config.account]: config.secret } }),
  ]
}
