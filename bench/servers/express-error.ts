// Bench server: one Express 5 route, answering 200 or failing with a 400, by variant.
//   ok            bare route, res.type('json').send(body)
//   fail-ours     the route fails; errorHandler() answers
//   fail-default  the route fails; Express's default handler (finalhandler) answers
import express from 'express'
import { errorHandler, icError } from '../../src/express.ts'

const variant = process.argv[2] ?? 'ok'
const BODY = '{"status":"ok"}'
const app = express()

app.get('/img', (_req, res, next) => {
  if (variant === 'ok') {
    res.type('json').send(BODY)
    return
  }
  next(
    icError('IS_VALIDATION_ERROR', {
      validation: [{ message: `"w" must be less than or equal to 8192`, path: ['w'], type: 'number.max' }],
    }),
  )
})
if (variant === 'fail-ours') app.use(errorHandler({ onError: () => {} }))

const server = app.listen(0, '127.0.0.1', () => {
  const address = server.address()
  console.log(`listening ${typeof address === 'object' && address !== null ? address.port : 0}`)
})
process.on('SIGTERM', () => server.close(() => process.exit(0)))
