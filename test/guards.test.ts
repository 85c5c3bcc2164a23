import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import request from 'supertest'
import { type Guard, icError } from '../src/index.ts'
import { frameworks, type RunningApp, startApp } from './support/harness.ts'

const syncRefuse: Guard = (req) => {
  if (req.url?.includes('refuse')) throw icError('IC_PARAM_NOT_ALLOWED', { message: 'sync refusal' })
  return undefined
}
const asyncRefuse: Guard = async (req) => {
  await new Promise((resolve) => setImmediate(resolve))
  if (req.url?.includes('refuse')) throw icError('IC_HOST_NOT_ALLOWED', { message: 'async refusal' })
  return { checkedAt: 'async' }
}
const slowPass: Guard = async () => {
  await new Promise((resolve) => setTimeout(resolve, 150))
  return { checkedAt: 'slow' }
}
const publishSync: Guard = () => ({ width: 100 })
const rejectNull: Guard = () => Promise.reject(null)
const throwNull: Guard = () => {
  throw null
}

for (const framework of frameworks) {
  describe(`fromGuard(guard) on ${framework}`, () => {
    let app: RunningApp
    const handled: string[] = []
    before(async () => {
      app = await startApp(framework, {
        routes: [
          {
            path: '/slow',
            use: (a) => [a.deadline({ timeoutMs: 50 }), a.fromGuard(slowPass, 'slowPass')],
            handle: ({ locals }) => {
              handled.push(String(locals.checkedAt))
              return { body: 'stored' }
            },
          },
          {
            path: '/sync',
            use: (a) => [a.fromGuard(syncRefuse, 'syncRefuse'), a.fromGuard(publishSync, 'publishSync')],
            handle: ({ locals }) => ({ body: JSON.stringify({ width: locals.width }) }),
          },
          {
            path: '/async',
            use: (a) => [a.fromGuard(asyncRefuse, 'asyncRefuse')],
            handle: ({ locals }) => ({ body: JSON.stringify({ checkedAt: locals.checkedAt }) }),
          },
          {
            path: '/reject-null',
            use: (a) => [a.fromGuard(rejectNull, 'rejectNull')],
            handle: () => ({ body: 'no' }),
          },
          {
            path: '/throw-null',
            use: (a) => [a.fromGuard(throwNull, 'throwNull')],
            handle: () => ({ body: 'no' }),
          },
        ],
      })
    })
    after(() => app.close())

    it('passes a request the guard accepts and publishes its values to the handler', async () => {
      assert.deepEqual(JSON.parse((await request(app.url).get('/sync')).text), { width: 100 })
      assert.deepEqual(JSON.parse((await request(app.url).get('/async')).text), { checkedAt: 'async' })
    })

    it('turns a synchronous throw into the error response', async () => {
      const r = await request(app.url).get('/sync?refuse')
      assert.equal(r.status, 401)
      assert.equal(r.headers['x-ic-error-code'], 'IC_PARAM_NOT_ALLOWED')
    })

    it('turns a rejection into the error response (Express 4 included)', async () => {
      const r = await request(app.url).get('/async?refuse')
      assert.equal(r.status, 401)
      assert.equal(r.headers['x-ic-error-code'], 'IC_HOST_NOT_ALLOWED')
    })

    it('runs no handler when the guard settles after a deadline answered 504', async () => {
      const r = await request(app.url).get('/slow')
      assert.equal(r.status, 504)
      assert.equal(r.headers['x-ic-error-code'], 'IC_BACKEND_TIMEOUT')
      // The guard passes 100 ms after the 504; its handler would run then.
      await new Promise((resolve) => setTimeout(resolve, 200))
      assert.deepEqual(handled, [])
      assert.deepEqual(
        app.reports.slice(-1).map((report) => [report.status, report.code]),
        [[504, 'IC_BACKEND_TIMEOUT']],
      )
    })

    it('treats a guard failing with null as an internal error, never as a pass', async () => {
      for (const path of ['/reject-null', '/throw-null']) {
        const r = await request(app.url).get(path)
        assert.equal(r.status, 500, path)
        assert.equal(r.headers['x-ic-error-code'], 'IC_INTERNAL_ERROR')
      }
    })
  })
}

describe('fromGuard(guard, name)', () => {
  it('names the middleware after the guard, for stack traces and debug output', async () => {
    const express = await import('../src/express.ts')
    const koa = await import('../src/koa.ts')
    assert.equal(express.fromGuard(syncRefuse, 'imageParams').name, 'imageParams')
    assert.equal(koa.fromGuard(syncRefuse, 'imageParams').name, 'imageParams')
  })
})
