// Express 4: it does not catch rejected promises, so async handlers pass errors to `next`.
// In your app, import from 'express' (version 4); this repository installs it as 'express4'.
// Run: npx tsx examples/express4.ts, then curl -i http://localhost:3000/image/missing.jpg
import { createServer, type RequestListener } from 'node:http'
import { pathToFileURL } from 'node:url'
import express from 'express4'
import { errorHandler, icError, notFound } from '../src/express.ts'

const images = new Map([['logo.png', Buffer.from('89504e470d0a1a0a', 'hex')]])

async function loadImage(name: string): Promise<Buffer> {
  const image = images.get(name)
  if (image === undefined) throw icError('IC_IMAGE_NOT_FOUND', { message: `No image ${name}` })
  return image
}

export function createApp(): RequestListener {
  const app = express()
  app.get('/image/:name', (req, res, next) => {
    // Express 4: hand the rejection to next(), or the request hangs.
    loadImage(req.params.name).then((body) => res.type('png').send(body), next)
  })
  app.use(notFound())
  app.use(errorHandler({ onError: (r) => console.warn(r.status, r.code, r.requestId) }))
  return app as unknown as RequestListener
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const port = Number(process.env.PORT ?? 3000)
  createServer(createApp()).listen(port, () => console.log(`listening on http://localhost:${port}`))
}
