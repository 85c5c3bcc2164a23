import type { IncomingMessage, RequestListener, ServerResponse } from 'node:http'
import express from 'express'
import * as adapter from '../../src/express.ts'
import { CORS_HEADERS, chartReply, type DemoAppConfig, demoRoutes, imageReply } from './app.ts'
import { chartStack, imageStack } from './stack.ts'

type Res = ServerResponse & { locals: Record<string, unknown> }
type Next = (err?: unknown) => void
type Middleware = adapter.ExpressMiddleware

/**
 * The demo on Express: the image route and the chart route, each with its middleware stack,
 * `notFound()` and `errorHandler()` last.
 *
 * @example
 * http.createServer(createExpressDemo(config)).listen(3000)
 */
export function createExpressDemo(config: DemoAppConfig): RequestListener {
  const app = express()
  app.disable('x-powered-by')
  app.use((_req: IncomingMessage, res: ServerResponse, next: Next) => {
    for (const [name, value] of Object.entries(CORS_HEADERS)) res.setHeader(name, value)
    next()
  })
  for (const [path, route] of Object.entries(demoRoutes)) {
    app.get(path, (req: IncomingMessage, res: ServerResponse, next: Next) => {
      Promise.resolve(route(config, req)).then((reply) => {
        res.writeHead(200, { 'content-type': reply.contentType, 'cache-control': 'no-store' })
        res.end(reply.body)
      }, next)
    })
  }

  app.get(
    /^\/image\/.+/,
    ...(imageStack(adapter, config) as Middleware[]),
    (req: IncomingMessage, res: Res, next: Next) => {
      imageReply(config, req, res.locals).then((reply) => {
        res.writeHead(200, {
          ...reply.headers,
          'content-type': reply.contentType,
          'content-length': reply.body.length,
        })
        res.end(reply.body)
      }, next)
    },
  )

  app.get(
    '/chart',
    ...(chartStack(adapter, config) as Middleware[]),
    (req: IncomingMessage, res: ServerResponse, next: Next) => {
      chartReply(req).then((png) => {
        res.writeHead(200, {
          'content-type': 'image/png',
          'content-length': png.length,
          'cache-control': 'public, max-age=60',
        })
        res.end(png)
      }, next)
    },
  )

  app.use(adapter.notFound())
  app.use(
    adapter.errorHandler({
      onError: (report) => {
        config.log.add(report)
        config.onError?.(report)
      },
    }),
  )
  return app as unknown as RequestListener
}
