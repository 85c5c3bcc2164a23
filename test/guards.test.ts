import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import vm from 'node:vm'
import request from 'supertest'
import { chainGuards, type Guard, icError } from '../src/index.ts'
import { frameworks, type RouteSpec, type RunningApp, startApp } from './support/harness.ts'

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
// A promise made in another realm (node:vm, a test runner's sandbox) is no `instanceof Promise` here.
const OtherRealmPromise = vm.runInNewContext('Promise') as PromiseConstructor
const otherRealmRefuse: Guard = () => OtherRealmPromise.reject(icError('IC_API_KEY_INVALID'))
const otherRealmPublish: Guard = () => OtherRealmPromise.resolve({ checkedAt: 'other realm' })
// Another library's thenable (Bluebird-like): only `then`.
const thenableRefuse = (() => ({
  // biome-ignore lint/suspicious/noThenProperty: a thenable is what this guard must return
  then: (_resolve: unknown, reject: (err: unknown) => void) => reject(icError('IC_API_KEY_INVALID')),
})) as unknown as Guard
const rejectNull: Guard = () => Promise.reject(null)
const throwNull: Guard = () => {
  throw null
}
/** Routes whose guard refuses with null, asynchronously and synchronously. */
const nullRoutes: readonly RouteSpec[] = [
  {
    path: '/reject-null',
    use: (a) => [a.fromGuard(rejectNull, 'rejectNull')],
    handle: () => ({ body: 'no' }),
  },
  { path: '/throw-null', use: (a) => [a.fromGuard(throwNull, 'throwNull')], handle: () => ({ body: 'no' }) },
]

for (const framework of frameworks) {
  describe(`fromGuard(guard) on ${framework}`, () => {
    let app: RunningApp
    const handled: string[] = []
    const bypassed: string[] = []
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
            path: '/other-realm-refuse',
            use: (a) => [a.fromGuard(otherRealmRefuse, 'otherRealmRefuse')],
            handle: () => {
              bypassed.push('other-realm-refuse')
              return { body: 'SECRET' }
            },
          },
          {
            path: '/other-realm-publish',
            use: (a) => [a.fromGuard(otherRealmPublish, 'otherRealmPublish')],
            handle: ({ locals }) => ({ body: JSON.stringify({ checkedAt: locals.checkedAt }) }),
          },
          {
            path: '/thenable-refuse',
            use: (a) => [a.fromGuard(thenableRefuse, 'thenableRefuse')],
            handle: () => {
              bypassed.push('thenable-refuse')
              return { body: 'SECRET' }
            },
          },
          {
            path: '/chained-refuse',
            use: (a) => [a.fromGuard(chainGuards([publishSync, otherRealmRefuse]), 'chained')],
            handle: () => {
              bypassed.push('chained-refuse')
              return { body: 'SECRET' }
            },
          },
          {
            path: '/chained-publish',
            use: (a) => [
              a.fromGuard(chainGuards([publishSync, asyncRefuse, () => ({ tenant: 'acme' })]), 'chained'),
            ],
            handle: ({ locals }) => ({
              body: JSON.stringify({
                width: locals.width,
                checkedAt: locals.checkedAt,
                tenant: locals.tenant,
              }),
            }),
          },
          ...nullRoutes,
        ],
      })
    })
    after(() => app.close())

    it('passes a request the guard accepts and publishes its values to the handler', async () => {
      assert.deepEqual(JSON.parse((await request(app.url).get('/sync')).text), { width: 100 })
      assert.deepEqual(JSON.parse((await request(app.url).get('/async')).text), { checkedAt: 'async' })
    })

    it('publishes what the guards of chainGuards() publish, as the same guards mounted one by one', async () => {
      const r = await request(app.url).get('/chained-publish')
      assert.deepEqual(JSON.parse(r.text), { width: 100, checkedAt: 'async', tenant: 'acme' })
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

    it('refuses with a rejected promise of another realm or a thenable, never lets it pass', async () => {
      for (const path of ['/other-realm-refuse', '/thenable-refuse', '/chained-refuse']) {
        const r = await request(app.url).get(path)
        assert.deepEqual([r.status, r.headers['x-ic-error-code']], [401, 'IC_API_KEY_INVALID'], path)
        assert.doesNotMatch(r.text, /SECRET/, path)
      }
      assert.deepEqual(bypassed, [])
      const r = await request(app.url).get('/other-realm-publish')
      assert.deepEqual(JSON.parse(r.text), { checkedAt: 'other realm' })
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

for (const framework of frameworks) {
  describe(`fromGuard(guard) on ${framework} without errorHandler()`, () => {
    let app: RunningApp
    before(async () => {
      app = await startApp(framework, {
        errorHandler: false,
        routes: nullRoutes,
      })
    })
    after(() => app.close())

    // Koa answers nothing for a thrown null (its onerror returns early): the request would hang.
    it("fails a request refused with null through the framework's own handler: a 500, never a hang", async () => {
      for (const path of ['/reject-null', '/throw-null']) {
        const r = await request(app.url).get(path).timeout(5_000)
        assert.equal(r.status, 500, path)
        assert.doesNotMatch(r.text, /\bno\b/, path)
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

describe('fromGuard(guard, name) arguments', () => {
  it('throws when the middleware is made, naming the argument, on both adapters', async () => {
    for (const adapter of [await import('../src/express.ts'), await import('../src/koa.ts')]) {
      const make = adapter.fromGuard as (guard: unknown, name: unknown) => unknown
      assert.throws(() => make('x', 'x'), {
        name: 'TypeError',
        message: /^Expected the guard of fromGuard\(\) to be a function .*got "x"$/,
      })
      assert.throws(() => make(undefined, 'x'), { message: /guard of fromGuard\(\).*got undefined$/ })
      assert.throws(() => make(() => undefined, undefined), {
        message: /^Expected the name of fromGuard\(\) to be a non-empty string, got undefined$/,
      })
      assert.throws(() => make(() => undefined, ''), { message: /name of fromGuard\(\)/ })
      assert.equal(typeof make(() => undefined, 'ok'), 'function')
    }
  })
})
