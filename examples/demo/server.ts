// A first demo: an Express (default) or Koa (`--koa`) server whose routes fail in each way
// the error handler knows. `npm run demo`, then open http://localhost:3000/.
import { createServer } from 'node:http'
import express from 'express'
import createHttpError from 'http-errors'
import Koa from 'koa'
import * as onExpress from '../../src/express.ts'
import * as onKoa from '../../src/koa.ts'

const port = Number(process.env.PORT ?? 3000)
const useKoa = process.argv.includes('--koa') || process.env.DEMO_FRAMEWORK === 'koa'

const failures: Record<string, () => unknown> = {
  '/validation': () =>
    onExpress.icError('IS_VALIDATION_ERROR', {
      validation: [
        { message: '"width" must be less than or equal to 8192', path: ['width'], type: 'number.max' },
        { message: '"chs" is required', path: ['chs'], type: 'any.required' },
      ],
    }),
  '/host-not-allowed': () =>
    onExpress.icError('IC_HOST_NOT_ALLOWED', { message: 'Host evil.example is not allowed' }),
  '/rate-limited': () => onExpress.icError('IC_RATE_LIMITED'),
  '/overloaded': () => onExpress.icError('IC_OVERLOADED', { retryAfterSeconds: 3 }),
  '/timeout': () => onExpress.icError('IC_BACKEND_TIMEOUT'),
  '/foreign-404': () => createHttpError(404, 'No such image'),
  '/crash': () => new Error('an unexpected bug: this text is never shown'),
}

const page = `<!doctype html><meta charset="utf-8"><title>image-api-errors demo</title>
<h1>image-api-errors demo (${useKoa ? 'Koa' : 'Express'})</h1>
<p>Each link fails in its own way. Try them with <code>curl -i</code>, or with <code>-H 'Accept: application/json'</code>.</p>
<ul>${Object.keys(failures)
  .map((p) => `<li><a href="${p}">${p}</a></li>`)
  .join('')}<li><a href="/nowhere">/nowhere</a> (no route)</li></ul>`

const onError = (r: onExpress.ErrorReport) =>
  console.log(
    `${new Date().toISOString()} ${r.status} ${r.code} ${r.request.method} ${r.request.url} id=${r.requestId}`,
  )

let server: ReturnType<typeof createServer>
if (useKoa) {
  const app = new Koa()
  app.silent = true
  app.use(onKoa.errorHandler({ onError }))
  app.use(onKoa.notFound())
  app.use(async (ctx, next) => {
    if (ctx.path === '/') {
      ctx.type = 'html'
      ctx.body = page
      return
    }
    const fail = failures[ctx.path]
    if (fail === undefined) return next()
    throw fail()
  })
  server = createServer(app.callback())
} else {
  const app = express()
  app.get('/', (_req, res) => {
    res.type('html').send(page)
  })
  for (const [path, fail] of Object.entries(failures)) {
    app.get(path, (_req, _res, next) => next(fail()))
  }
  app.use(onExpress.notFound())
  app.use(onExpress.errorHandler({ onError }))
  server = createServer(app)
}

server.listen(port, () => console.log(`demo (${useKoa ? 'Koa' : 'Express'}) on http://localhost:${port}/`))
