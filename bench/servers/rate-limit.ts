// Bench server: one Express 5 route answering 200, by variant.
//   bare      no limiter
//   memory    rateLimit() with the default memory store (limit never reached)
//   redis     rateLimit() with the Redis store (node-redis client), URL in argv[3]
import express from 'express'
import { createClient } from 'redis'
import { errorHandler, type RateLimitStore, RedisStore, rateLimit } from '../../src/express.ts'

const variant = process.argv[2] ?? 'bare'
const BODY = '{"status":"ok"}'
const app = express()

let store: RateLimitStore | undefined
if (variant === 'redis') {
  const client = await createClient({ url: process.argv[3] ?? '', disableOfflineQueue: true }).connect()
  store = new RedisStore({ sendCommand: (args) => client.sendCommand(args) })
}
if (variant !== 'bare') {
  app.use(rateLimit({ limit: 1_000_000_000, windowMs: '1m', ...(store === undefined ? {} : { store }) }))
}
app.get('/img', (_req, res) => {
  res.type('json').send(BODY)
})
app.use(errorHandler({ onError: () => {} }))

const server = app.listen(0, '127.0.0.1', () => {
  const address = server.address()
  console.log(`listening ${typeof address === 'object' && address !== null ? address.port : 0}`)
})
process.on('SIGTERM', () => server.close(() => process.exit(0)))
