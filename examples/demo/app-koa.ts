import type { RequestListener } from 'node:http'
import Koa from 'koa'
import {
  errorHandler,
  fromGuard,
  type KoaContext,
  type KoaMiddleware,
  type Next,
  notFound,
} from '../../src/koa.ts'
import { CORS_HEADERS, type DemoAppConfig, imagePathOf } from './app.ts'
import { parseChartQuery, renderChart } from './chart.ts'
import { processImage } from './image.ts'
import {
  type ImageOptions,
  interimImageParams,
  interimLifecycle,
  interimPermissions,
  interimSignature,
} from './interim.ts'

type Ctx = KoaContext & { path: string; method: string; type: string; set(name: string, value: string): void }
type Middleware = (ctx: Ctx, next: Next) => Promise<unknown>

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
  const use = (mw: KoaMiddleware | Middleware): void => {
    app.use(mw as never)
  }
  use(
    errorHandler({
      onError: (report) => {
        config.log.add(report)
        config.onError?.(report)
      },
    }),
  )
  use(async (ctx: Ctx, next: Next) => {
    for (const [name, value] of Object.entries(CORS_HEADERS)) ctx.set(name, value)
    await next()
  })
  use(notFound())

  const image = chain([
    fromGuard(interimImageParams(), 'imageParams') as Middleware,
    fromGuard(
      interimPermissions({ hostsAllowed: config.hostsAllowed, bucketsAllowed: config.bucketsAllowed }),
      'permissions',
    ) as Middleware,
    fromGuard(interimLifecycle({ timeoutMs: config.timeoutMs }), 'deadline') as Middleware,
    async (ctx) => {
      const { image: options, signal } = ctx.state as { image: ImageOptions; signal: AbortSignal }
      const reply = await processImage(config, {
        path: imagePathOf(ctx.req.url),
        options,
        accept: ctx.req.headers.accept,
        signal,
      })
      ctx.set('cache-control', 'public, max-age=60')
      ctx.type = reply.contentType
      ctx.body = reply.body
    },
  ])
  const chart = chain([
    fromGuard(interimSignature({ accounts: { [config.account]: config.secret } }), 'signature') as Middleware,
    async (ctx) => {
      const png = await renderChart(
        parseChartQuery(new URLSearchParams((ctx.req.url ?? '').split('?')[1] ?? '')),
      )
      ctx.set('cache-control', 'public, max-age=60')
      ctx.type = 'image/png'
      ctx.body = png
    },
  ])

  use(async (ctx: Ctx, next: Next) => {
    if (ctx.method !== 'GET' && ctx.method !== 'HEAD') return next()
    if (ctx.path === '/') {
      ctx.set('cache-control', 'no-store')
      ctx.type = 'text/html; charset=utf-8'
      ctx.body = config.page
      return
    }
    if (ctx.path === '/demo/log') {
      ctx.set('cache-control', 'no-store')
      ctx.body = config.log.entries()
      return
    }
    if (ctx.path.startsWith('/image/') && ctx.path.length > '/image/'.length) return image(ctx, next)
    if (ctx.path === '/chart') return chart(ctx, next)
    return next()
  })
  return app.callback() as unknown as RequestListener
}
