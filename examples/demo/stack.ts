import type * as ExpressAdapter from '../../src/express.ts'
import type * as KoaAdapter from '../../src/koa.ts'
import type { DemoAppConfig } from './app.ts'
import { interimImageParams, interimLifecycle, interimPermissions, interimSignature } from './interim.ts'

/** The package's Express or Koa entry point: both export the same names. */
export type Adapter = typeof ExpressAdapter | typeof KoaAdapter

/**
 * The image route's middlewares, in order, from either adapter: the one place the demo's
 * stack is written, so the Express and Koa versions cannot drift apart.
 *
 * @example
 * app.get(/^\/image\/.+/, ...imageStack(expressAdapter, config), handler)
 */
export function imageStack(a: Adapter, config: DemoAppConfig): readonly unknown[] {
  return [
    // TODO(issue 3): a.requestRules({ imageParams, permissions }) replaces these two.
    a.fromGuard(interimImageParams(), 'imageParams'),
    a.fromGuard(
      interimPermissions({ hostsAllowed: config.hostsAllowed, bucketsAllowed: config.bucketsAllowed }),
      'permissions',
    ),
    // TODO(issue 4): a.clientClosed() first, a.deadline({ timeoutMs }) here.
    a.fromGuard(interimLifecycle({ timeoutMs: config.timeoutMs }), 'deadline'),
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
    // TODO(issue 3): a.signature({ accounts }) replaces this.
    a.fromGuard(interimSignature({ accounts: { [config.account]: config.secret } }), 'signature'),
    // TODO(issue 5): a.imageChartsRateLimits() here, after the signature check.
  ]
}
