// Per-route configuration in an existing Express app: only the image routes get the checks;
// the rest of the app is untouched, and one error handler answers for all of it.
// Run: npx tsx examples/express-per-route.ts, then
//   curl -i 'http://localhost:3000/avatar/42?size=9000'
import { createServer, type IncomingMessage, type RequestListener, type ServerResponse } from 'node:http'
import { pathToFileURL } from 'node:url'
import express from 'express'
import { errorHandler, fromGuard, icError, notFound } from '../src/express.ts'

/** Avatars: `size` must be one of a few values. A rule written as a guard: throw to refuse, return values to publish. */
const avatarSize = fromGuard((req) => {
  const size = new URL(req.url ?? '/', 'http://x').searchParams.get('size') ?? '64'
  if (!['32', '64', '128', '256'].includes(size)) {
    throw icError('IS_VALIDATION_ERROR', {
      validation: [{ message: '"size" must be one of [32, 64, 128, 256]', path: ['size'] }],
    })
  }
  return { size: Number(size) }
}, 'avatarSize')

/** Thumbnails: only for signed-in users (a header stands in for your session check). */
const signedIn = fromGuard((req) => {
  if (req.headers['x-user'] === undefined) throw icError('IC_UNAUTHORIZED', { message: 'Sign in first' })
}, 'signedIn')

export function createApp(): RequestListener {
  const app = express()
  // The existing app: routes that know nothing about image-api-errors.
  app.get('/health', (_req, res) => {
    res.json({ ok: true })
  })
  // Per route: each image route gets its own checks, in order.
  app.get('/avatar/:id', avatarSize, (req, res) => {
    res.json({ id: req.params.id, size: res.locals.size })
  })
  app.get('/thumb/:id', signedIn, avatarSize, (req, res) => {
    res.json({ id: req.params.id, size: res.locals.size, user: req.headers['x-user'] })
  })
  // Last: unmatched paths become IC_NOT_FOUND, then the one error handler.
  app.use(notFound())
  app.use(errorHandler())
  return app as unknown as (req: IncomingMessage, res: ServerResponse) => void
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const port = Number(process.env.PORT ?? 3000)
  createServer(createApp()).listen(port, () => console.log(`listening on http://localhost:${port}`))
}
