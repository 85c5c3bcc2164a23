// Bench server for the backend lifecycle: Express 5 with or without clientClosed() and
// deadline(). Arguments: <variant: bare | guarded> [deadline ms, default 100].
//   GET /ok             200 at once
//   GET /slow-aware     waits on a backend that never answers, passing the request signal
//   GET /slow-ignoring  ignores the signal and answers (too late) after twice the deadline
//   GET /floor          no deadline(): answers 504 from its own timer, the machine's precision floor
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import express from 'express'
import { clientClosed, createBackendFetch, deadline, errorHandler, requestSignal } from '../../src/express.ts'

const variant = process.argv[2] ?? 'guarded'
const timeoutMs = Number(process.argv[3] ?? 100)
const BODY = '{"status":"ok"}'

const silent = createServer(() => {})
silent.listen(0, '127.0.0.1', () => {
  const backendUrl = `http://127.0.0.1:${(silent.address() as AddressInfo).port}/a.png`
  const fetchImage = createBackendFetch({ allowedAddresses: ['127.0.0.1'], timeoutMs: '1m' })
  const app = express()
  app.disable('x-powered-by')
  app.get('/floor', (_req, res) => {
    setTimeout(() => res.status(504).end(), timeoutMs)
  })
  if (variant === 'guarded') app.use(clientClosed(), deadline({ timeoutMs }))
  app.get('/ok', (_req, res) => {
    res.type('json').send(BODY)
  })
  app.get('/slow-aware', async (req, res, next) => {
    try {
      res.send((await fetchImage(backendUrl, { signal: requestSignal(req) })).body)
    } catch (err) {
      next(err)
    }
  })
  app.get('/slow-ignoring', (_req, res) => {
    setTimeout(() => {
      if (!res.headersSent) res.type('json').send(BODY)
    }, timeoutMs * 2)
  })
  app.use(errorHandler({ onError: () => {} }))
  const server = app.listen(0, '127.0.0.1', () => {
    console.log(`listening ${(server.address() as AddressInfo).port}`)
  })
  process.on('SIGTERM', () => {
    server.closeAllConnections()
    silent.closeAllConnections()
    server.close(() => silent.close(() => process.exit(0)))
  })
})
