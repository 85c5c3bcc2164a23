// TypeScript (module: nodenext) consumer of the packed tarball: types resolve and check.
import assert from 'node:assert/strict'
import express from 'express'
import {
  type ErrorCode,
  type ErrorReport,
  type Guard,
  type IcError,
  icError,
  isIcError,
} from 'image-api-errors'
import { errorHandler, fromGuard } from 'image-api-errors/express'
import { errorHandler as koaErrorHandler } from 'image-api-errors/koa'

const code: ErrorCode = 'IC_BACKEND_TIMEOUT'
const err: IcError = icError(code, { message: 'slow backend' })
assert.equal(err.status, 504)
assert.equal(isIcError(err), true)
const reports: ErrorReport[] = []
// A guard written as the docs show it: a body that only throws (its return type is void).
const onlyGet: Guard = (req) => {
  if (req.method !== 'GET') throw icError('IC_BAD_REQUEST', { message: 'GET only' })
}
const app = express()
app.get('/', fromGuard(onlyGet, 'onlyGet'), (_req, _res, next) => next(err))
app.use(errorHandler({ onError: (r) => reports.push(r) }))
assert.equal(typeof koaErrorHandler(), 'function')
const server = app.listen(0, '127.0.0.1', async () => {
  const address = server.address()
  const port = typeof address === 'object' && address !== null ? address.port : 0
  const res = await fetch(`http://127.0.0.1:${port}/`)
  assert.equal(res.status, 504)
  assert.equal(reports[0]?.code, 'IC_BACKEND_TIMEOUT')
  server.close()
  console.log('typescript consumer: ok')
})
