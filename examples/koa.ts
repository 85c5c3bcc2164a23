// Koa 2 or 3: the error handler is mounted first; middlewares and handlers simply throw.
// Run: npx tsx examples/koa.ts, then curl -i 'http://localhost:3000/image/logo.png?width=abc'
import { createServer, type RequestListener } from 'node:http'
import { pathToFileURL } from 'node:url'
import Koa from 'koa'
import { errorHandler, fromGuard, icError, notFound } from '../src/koa.ts'

const width = fromGuard((req) => {
  const raw = new URL(req.url ?? '/', 'http://x').searchParams.get('width')
  if (raw === null) return undefined
  if (!/^\d{1,4}$/.test(raw) || Number(raw) < 1 || Number(raw) > 2048) {
    throw icError('IS_VALIDATION_ERROR', {
      validation: [{ message: '"width" must be an integer from 1 to 2048', path: ['width'] }],
    })
  }
  return { width: Number(raw) }
}, 'width')

export function createApp(): RequestListener {
  const app = new Koa()
  app.use(errorHandler({ onError: (r) => console.warn(r.status, r.code, r.requestId) }))
  app.use(notFound())
  // Koa has no per-route mounting of its own: with @koa/router it is
  // router.get('/image/:name', width, handler). Here the check runs for every request.
  app.use(width)
  app.use(async (ctx, next) => {
    if (!ctx.path.startsWith('/image/')) return next()
    if (ctx.path !== '/image/logo.png') throw icError('IC_IMAGE_NOT_FOUND', { message: 'No such image' })
    ctx.body = { image: 'logo.png', width: ctx.state.width ?? 'original' }
  })
  return app.callback()
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const port = Number(process.env.PORT ?? 3000)
  createServer(createApp()).listen(port, () => console.log(`listening on http://localhost:${port}`))
}
