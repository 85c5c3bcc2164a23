// ESM consumer of the packed tarball: an Express 5 app answering through errorHandler().
import assert from 'node:assert/strict'
import express from 'express'
import { errorCatalogue, icError, isIcError } from 'image-api-errors'
import { errorHandler, notFound } from 'image-api-errors/express'

const app = express()
app.get('/fail', (_req, _res, next) => next(icError('IC_RATE_LIMITED')))
app.use(notFound())
app.use(errorHandler({ onError: () => {} }))
const server = app.listen(0, '127.0.0.1')
await new Promise((resolve) => server.once('listening', resolve))
const res = await fetch(`http://127.0.0.1:${server.address().port}/fail`, {
  headers: { accept: 'application/json' },
})
assert.equal(res.status, 429)
assert.equal(res.headers.get('x-ic-error-code'), 'IC_RATE_LIMITED')
assert.equal((await res.json()).code, 'IC_RATE_LIMITED')
assert.equal(isIcError(icError('IC_NOT_FOUND')), true)
assert.equal(errorCatalogue.IC_RATE_LIMITED.status, 429)
server.close()
console.log('esm consumer: ok')
