// TypeScript (module: nodenext) consumer of the packed tarball: types resolve and check.
import assert from 'node:assert/strict'
import express from 'express'
import {
  type ApiKeyInfo,
  type ErrorCode,
  type ErrorReport,
  type Guard,
  type IcError,
  type ImageParamValues,
  type ImageSource,
  icError,
  isIcError,
  type SignedAccount,
  type UploadedImage,
} from 'image-api-errors'
import { errorHandler, fromGuard, requestRules } from 'image-api-errors/express'
import { errorHandler as koaErrorHandler, requestRules as koaRequestRules } from 'image-api-errors/koa'
import Koa from 'koa'

// The declarations docs/frameworks.md gives for typed res.locals and ctx.state.
interface RequestRuleValues {
  imageParams?: ImageParamValues
  source?: ImageSource
  account?: SignedAccount
  apiKey?: ApiKeyInfo
  upload?: UploadedImage
  signal?: AbortSignal
}
declare global {
  namespace Express {
    interface Locals extends RequestRuleValues {}
  }
}
declare module 'koa' {
  interface DefaultState extends RequestRuleValues {}
}
type IsAny<T> = 0 extends 1 & T ? true : false
const typed = <T,>(value: T, _notAny: IsAny<T> extends true ? never : true): T => value
const koaState = (ctx: Koa.Context) => typed(ctx.state.imageParams?.width, true)
assert.equal(typeof koaState, 'function')

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
app.get('/img', requestRules({ imageParams: {} }), (_req, res) => {
  const width: number | undefined = typed(res.locals.imageParams?.width, true)
  const host: string | undefined = typed(res.locals.source?.host, true)
  res.json({ width, host, aborted: typed(res.locals.signal?.aborted, true) })
})
// The rules inside the handler's own layer, the handler typed on Express's and Koa's own objects.
app.get(
  '/rules',
  requestRules({ imageParams: {} }, (req: express.Request, res: express.Response) => {
    res.json({ width: typed(res.locals.imageParams?.width, true), path: req.path })
  }),
)
// Unannotated and using node:http's members only, as TypeScript before 5.9 types it (inferred.mts
// checks what 5.9 and later infer from the route).
app.get(
  '/plain',
  requestRules({ imageParams: {} }, (req, res) => {
    res.setHeader('content-type', 'text/plain')
    res.end(req.url)
  }),
)
app.use(errorHandler({ onError: (r) => reports.push(r) }))
assert.equal(typeof koaErrorHandler(), 'function')
const koaApp = new Koa()
koaApp.use(koaErrorHandler())
koaApp.use(
  koaRequestRules({ imageParams: {} }, (ctx: Koa.Context) => {
    ctx.body = { width: typed(ctx.state.imageParams?.width, true) }
  }),
)
const server = app.listen(0, '127.0.0.1', async () => {
  const address = server.address()
  const port = typeof address === 'object' && address !== null ? address.port : 0
  const res = await fetch(`http://127.0.0.1:${port}/`)
  assert.equal(res.status, 504)
  assert.equal(reports[0]?.code, 'IC_BACKEND_TIMEOUT')
  assert.deepEqual(await (await fetch(`http://127.0.0.1:${port}/rules?width=5`)).json(), {
    width: 5,
    path: '/rules',
  })
  assert.equal(await (await fetch(`http://127.0.0.1:${port}/plain?width=6`)).text(), '/plain?width=6')
  server.close()
  const koaServer = koaApp.listen(0, '127.0.0.1')
  await new Promise((resolve) => koaServer.once('listening', resolve))
  const koaAddress = koaServer.address()
  const koaPort = typeof koaAddress === 'object' && koaAddress !== null ? koaAddress.port : 0
  assert.deepEqual(await (await fetch(`http://127.0.0.1:${koaPort}/?width=7`)).json(), { width: 7 })
  const refused = await fetch(`http://127.0.0.1:${koaPort}/?width=-1`)
  assert.equal(refused.headers.get('x-ic-error-code'), 'IS_VALIDATION_ERROR')
  koaServer.close()
  console.log('typescript consumer: ok')
})
