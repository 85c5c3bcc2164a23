import type { IncomingMessage, RequestListener, ServerResponse } from 'node:http'
import express from 'express'
import { errorHandler, fromGuard, notFound } from '../../src/express.ts'
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

type Res = ServerResponse & { locals: Record<string, unknown> }
type Next = (err?: unknown) => void

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
  app.get('/', (_req: IncomingMessage, res: ServerResponse) => {
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' })
    res.end(config.page)
  })
  app.get('/demo/log', (_req: IncomingMessage, res: ServerResponse) => {
    res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-store' })
    res.end(JSON.stringify(config.log.entries()))
  })

  app.get(
    /^\/image\/.+/,
    fromGuard(interimImageParams(), 'imageParams'),
    fromGuard(
      interimPermissions({ hostsAllowed: config.hostsAllowed, bucketsAllowed: config.bucketsAllowed }),
      'permissions',
    ),
    fromGuard(interimLifecycle({ timeoutMs: config.timeoutMs }), 'deadline'),
    (req: IncomingMessage, res: Res, next: Next) => {
      const { image, signal } = res.locals as { image: ImageOptions; signal: AbortSignal }
      Promise.resolve()
        .then(() =>
          processImage(config, {
            path: imagePathOf(req.url),
            options: image,
            accept: req.headers.accept,
            signal,
          }),
        )
        .then((reply) => {
          res.writeHead(200, {
            'content-type': reply.contentType,
            'content-length': reply.body.length,
            'cache-control': 'public, max-age=60',
          })
          res.end(reply.body)
        })
        .catch(next)
    },
  )

  app.get(
    '/chart',
    fromGuard(interimSignature({ accounts: { [config.account]: config.secret } }), 'signature'),
    (req: IncomingMessage, res: ServerResponse, next: Next) => {
      Promise.resolve()
        .then(() => renderChart(parseChartQuery(new URLSearchParams((req.url ?? '').split('?')[1] ?? ''))))
        .then((png) => {
          res.writeHead(200, {
            'content-type': 'image/png',
            'content-length': png.length,
            'cache-control': 'public, max-age=60',
          })
          res.end(png)
        })
        .catch(next)
    },
  )

  app.use(notFound())
  app.use(
    errorHandler({
      onError: (report) => {
        config.log.add(report)
        config.onError?.(report)
      },
    }),
  )
  return app as unknown as RequestListener
}
