import type { RequestListener } from 'node:http'
import Koa from 'koa'
import * as adapter from '../../src/koa.ts'
import { CORS_HEADERS, chartReply, type DemoAppConfig, demoRoutes, imageReply } from './app.ts'
import { chartStack, imageStack } from './stack.ts'

type Ctx = adapter.KoaContext & {
  path: string
  method: string
  type: string
  set(name: string, value: string): void
}
type Middleware = (ctx: Ctx, next: adapter.Next) => Promise<unknown>

function chain(middlewares: readonly Middleware[]): Middleware {
  return (ctx, next) => {
    const dispatch = (i: number): Promise<unknown> =>
      i === middlewares.length ? next() : (middlewares[i] as Middleware)(ctx, () => dispatch(i + 1))
    return dispatch(0)
  }
}

/**
 * The demo on Koa, identical to the Express version: `errorHandler()` and `notFound()` first,
 * then the same middleware stacks per route.
 *
 * @example
 * http.createServer(createKoaDemo(config)).listen(3000)
 */
export function createKoaDemo(config: DemoAppConfig): RequestListener {
  const app = new Koa()
  app.silent = true
  const use = (mw: adapter.KoaMiddleware | Middleware): void => {
    app.use(mw as never)
  }
  use(
    adapter.errorHandler({
      onError: (report) => {
        config.log.add(report)
        config.onError?.(report)
      },
    }),
  )
  use(async (ctx: Ctx, next: adapter.Next) => {
    for (const [name, value] of Object.entries(CORS_HEADERS)) ctx.set(name, value)
    await next()
  })
  use(adapter.notFound())

  const image = chain([
    ...(imageStack(adapter, config) as Middleware[]),
    async (ctx) => {
      const reply = await imageReply(config, ctx.req, ctx.state)
      for (const [name, value] of Object.entries(reply.headers)) ctx.set(name, value)
      ctx.type = reply.contentType
      ctx.body = reply.body
    },
  ])
  const chart = chain([
    ...(chartStack(adapter, config) as Middleware[]),
    async (ctx) => {
      const png = await chartReply(ctx.req)
      ctx.set('cache-control', 'public, max-age=60')
      ctx.type = 'image/png'
      ctx.body = png
    },
  ])

  use(async (ctx: Ctx, next: adapter.Next) => {
    if (ctx.method !== 'GET' && ctx.method !== 'HEAD') return next()
    // As Express routes by default: any case, and a trailing slash is the same path.
    const path = (
      ctx.path.length > 1 && ctx.path.endsWith('/') ? ctx.path.slice(0, -1) : ctx.path
    ).toLowerCase()
    const route = Object.hasOwn(demoRoutes, path) ? demoRoutes[path] : undefined
    if (route !== undefined) {
      const reply = await route(config, ctx.req)
      ctx.set('cache-control', 'no-store')
      ctx.type = reply.contentType
      ctx.body = reply.body
      return
    }
    if (ctx.path.startsWith('/image/') && ctx.path.length > '/image/'.length) return image(ctx, next)
    if (path === '/chart') return chart(ctx, next)
    return next()
  })
  return app.callback() as unknown as RequestListener
}
