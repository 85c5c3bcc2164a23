// Throwing catalogue errors from your own handler, and adding a code of your own. The error
// handler turns each into its status, `x-ic-error-code`, `x-ic-error-validation` and
// `Retry-After`. Run: npx tsx examples/custom-errors.ts, then
//   curl -i http://localhost:3000/quota     (402 ACME_QUOTA_EXCEEDED, your own code)
//   curl -i http://localhost:3000/busy      (503 IC_OVERLOADED, Retry-After: 3)
import { createServer, type RequestListener } from 'node:http'
import { pathToFileURL } from 'node:url'
import express from 'express'
import { defineErrorCode, errorHandler, icError, notFound } from '../src/express.ts'

// Once, at start-up: codes of your own join the catalogue (and the docs generated from it).
defineErrorCode('ACME_QUOTA_EXCEEDED', {
  status: 402,
  title: 'Quota Exceeded',
  description: 'The monthly image quota of the account is used up.',
  retryable: false,
  hint: 'Upgrade the plan, or wait for the first day of next month.',
})

export function createApp(): RequestListener {
  const app = express()
  app.get('/quota', () => {
    throw icError('ACME_QUOTA_EXCEEDED', { details: { account: 'acme', used: 10_000 } })
  })
  app.get('/busy', () => {
    throw icError('IC_OVERLOADED', { retryAfterSeconds: 3 })
  })
  app.get('/image', (req) => {
    const url = new URL(req.url ?? '/', 'http://x')
    const problems = ['width', 'height']
      .filter((name) => url.searchParams.has(name) && !/^\d+$/.test(url.searchParams.get(name) ?? ''))
      .map((name) => ({ message: `"${name}" must be a positive integer`, path: [name] }))
    if (problems.length > 0) throw icError('IS_VALIDATION_ERROR', { validation: problems })
    throw icError('IC_IMAGE_NOT_FOUND', { message: 'No image here yet' })
  })
  app.get('/bug', () => {
    // Anything else becomes 500 IC_INTERNAL_ERROR, its message hidden from the client.
    throw new Error('database password is hunter2')
  })
  app.use(notFound())
  // onError replaces the default logging: the server's own errors (5xx) are printed in full.
  app.use(
    errorHandler({
      onError: (r) => console.warn(r.status, r.code, r.requestId, r.status >= 500 ? r.error : ''),
    }),
  )
  return app as unknown as RequestListener
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const port = Number(process.env.PORT ?? 3000)
  createServer(createApp()).listen(port, () => console.log(`listening on http://localhost:${port}`))
}
