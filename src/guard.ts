import type { IncomingMessage, ServerResponse } from 'node:http'
import { showValue } from './options.ts'

/**
 * Values a guard hands to the route handler; the adapters copy them onto `res.locals`
 * (Express) or `ctx.state` (Koa).
 *
 * @example
 * const published: Published = { account: { id: 'acme' } } // res.locals.account in the handler
 */
export type Published = Readonly<Record<string, unknown>>

/**
 * The framework-neutral shape of every request check: it throws (or rejects with) an
 * `IcError` to refuse the request, and may return values to publish. Express's `req`/`res`
 * and Koa's `ctx.req`/`ctx.res` are the `node:http` objects it takes.
 *
 * @example
 * const onlyGet: Guard = (req) => {
 *   if (req.method !== 'GET') throw icError('IC_BAD_REQUEST', { message: 'GET only' })
 * }
 */
export type Guard = (
  req: IncomingMessage,
  res: ServerResponse,
  // biome-ignore lint/suspicious/noConfusingVoidType: a guard written `(req) => { ... }` returns void, which TypeScript 5 does not take for undefined
) => void | Published | Promise<void | Published>

/**
 * Whether a guard (or a hook) answered with a promise of any kind: a native one, one made in
 * another realm (`node:vm`, a test runner's sandbox) or another library's thenable. Checked
 * with `instanceof Promise`, the last two would be taken for a synchronous pass and their
 * refusal ignored. Internal.
 *
 * @example
 * isThenable(Promise.resolve()) // true
 * isThenable({ then: (resolve: (v: unknown) => void) => resolve(1) }) // true
 * isThenable({ width: 100 }) // false
 */
export function isThenable(value: unknown): value is PromiseLike<unknown> {
  return (
    (typeof value === 'object' || typeof value === 'function') &&
    value !== null &&
    typeof (value as { then?: unknown }).then === 'function'
  )
}

/**
 * Throws a TypeError unless `guard` is a function and `name` a non-empty string: both
 * adapters' `fromGuard()` check this when the middleware is made, so a wrong argument
 * fails at start-up rather than as a 500 on every request. Internal.
 *
 * @example
 * checkGuard((req) => undefined, 'onlyGet') // passes
 */
export function checkGuard(guard: unknown, name: unknown): void {
  if (typeof guard !== 'function')
    throw new TypeError(
      `Expected the guard of fromGuard() to be a function (req, res) => values | undefined, got ${showValue(guard)}`,
    )
  if (typeof name !== 'string' || name === '')
    throw new TypeError(`Expected the name of fromGuard() to be a non-empty string, got ${showValue(name)}`)
}

/**
 * Throws a TypeError unless `handler` (the route handler given to a middleware factory, e.g.
 * `requestRules(options, handler)`) is a function: it is checked when the middleware is
 * made, not on the first request. Internal.
 *
 * @example
 * checkHandler((req, res) => res.end(), 'requestRules', '(req, res, next)') // passes
 */
export function checkHandler(handler: unknown, factory: string, parameters: string): void {
  if (typeof handler !== 'function')
    throw new TypeError(
      `Expected the handler of ${factory}() to be a function ${parameters}, got ${showValue(handler)}`,
    )
}

/**
 * What a guard's middleware reports for a refusal: the thrown value when it is an object,
 * otherwise an `Error` saying what was thrown. Express reads a falsy `next()` argument as
 * success and `'route'`/`'router'` as routing, and Koa answers nothing at all for a thrown
 * `null` or `undefined` (the request hangs), so a refusal must be an object. Internal.
 *
 * @example
 * asRefusal(null, 'onlyGet') // Error: onlyGet failed with null
 * asRefusal(icError('IC_BAD_REQUEST'), 'onlyGet') // the IcError itself
 */
export function asRefusal(err: unknown, name: string): unknown {
  return typeof err === 'object' && err !== null ? err : new Error(`${name} failed with ${String(err)}`)
}
