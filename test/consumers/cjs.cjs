// CommonJS consumer of the packed tarball: require() of the ESM package (Node >= 20.19), on Koa.
const assert = require('node:assert/strict')
const http = require('node:http')
const Koa = require('koa')
const { errorHandler, icError } = require('image-api-errors/koa')
const core = require('image-api-errors')

const app = new Koa()
app.use(errorHandler({ onError: () => {} }))
app.use(() => {
  throw icError('IC_HOST_NOT_ALLOWED')
})
const server = http.createServer(app.callback()).listen(0, '127.0.0.1', async () => {
  const res = await fetch(`http://127.0.0.1:${server.address().port}/`)
  assert.equal(res.status, 401)
  assert.equal(res.headers.get('x-ic-error-code'), 'IC_HOST_NOT_ALLOWED')
  assert.equal(typeof core.toErrorResponse, 'function')
  server.close()
  console.log('cjs consumer: ok')
})
