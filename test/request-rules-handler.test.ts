// requestRules(options, handler): the rules and the route handler in one layer, on real
// Express 4, Express 5, Koa 2 and Koa 3 servers with @koa/router.
import assert from 'node:assert/strict'
import { after, describe, it } from 'node:test'
import Router, { type RouterContext } from '@koa/router'
import express5 from 'express'
import express4 from 'express4'
import Koa3 from 'koa'
import Koa2 from 'koa2'
import request from 'supertest'
import * as expressAdapter from '../src/express.ts'
import { icError, type RequestRulesOptions, signQuery } from '../src/index.ts'
import * as koaAdapter from '../src/koa.ts'

const SECRET = 'handler-secret'
const rules: RequestRulesOptions = {
  signature: { accounts: { acme: SECRET } },
  permissions: { hostsAllowed: ['images.example.com'], allowOriginalImageRequest: false },
  imageParams: { maxWidth: 4000 },
}
const lookedUp: RequestRulesOptions = {
  signature: {
    lookup: async (id) => {
      await new Promise((resolve) => setTimeout(resolve, 5))
      return id === 'acme' ? SECRET : undefined
    },
  },
  imageParams: { maxWidth: 4000 },
}
/** Each route under test: synchronous rules, and rules waiting for an asynchronous lookup. */
const routes = [
  ['/img', rules],
  ['/async', lookedUp],
] as const
const origin = encodeURIComponent('https://images.example.com/a.jpg')
const signed = (query: string, account = 'acme') => `?${signQuery(`${query}&icac=${account}`, SECRET)}`
const good = signed(`width=300&origin=${origin}`)

/** How the handler under test ends: answers, throws, rejects, or hands on to the next route. */
type Outcome = 'answer' | 'throw' | 'reject' | 'reject-string' | 'next' | 'then-throws'
const outcomes: readonly Outcome[] = ['answer', 'throw', 'reject', 'reject-string', 'next', 'then-throws']
/** A value whose `then` getter throws: reading it is the handler's failure. */
const thenThrows = () => ({
  // biome-ignore lint/suspicious/noThenProperty: a broken thenable, on purpose
  get then(): never {
    throw notFound()
  },
})
const notFound = () => icError('IC_IMAGE_NOT_FOUND', { message: 'No such image' })

const unhandled: unknown[] = []
const onUnhandled = (reason: unknown) => unhandled.push(reason)
process.on('unhandledRejection', onUnhandled)
after(() => {
  process.off('unhandledRejection', onUnhandled)
  assert.deepEqual(unhandled, [], 'no rejection of a handler goes unhandled')
})

interface Calls {
  handler: number
}

function expressApp(make: typeof express4 | typeof express5, calls: Calls) {
  const a = expressAdapter
  // One type for both: the two majors' typings differ in overloads this test does not use.
  const app = make() as unknown as express5.Express
  for (const [path, options] of routes) {
    for (const outcome of outcomes) {
      app.get(
        `${path}/${outcome}`,
        a.requestRules(options, (_req: express5.Request, res: express5.Response, next) => {
          calls.handler++
          if (outcome === 'throw') throw notFound()
          if (outcome === 'reject') return Promise.reject(notFound())
          if (outcome === 'reject-string') return Promise.reject('nope')
          if (outcome === 'next') return next()
          if (outcome === 'then-throws') return thenThrows()
          res.json({ ...res.locals, source: (res.locals.source as { host: string } | undefined)?.host })
        }),
      )
    }
    app.get(`${path}/next`, (_req, res) => {
      res.json({ next: true })
    })
  }
  app.use(a.notFound())
  app.use(a.errorHandler())
  return app
}

function koaApp(Koa: typeof Koa2 | typeof Koa3, calls: Calls) {
  const a = koaAdapter
  const app = new Koa()
  app.silent = true
  const router = new Router()
  for (const [path, options] of routes) {
    for (const outcome of outcomes) {
      router.get(
        `${path}/${outcome}`,
        a.requestRules(options, async (ctx: RouterContext, next) => {
          calls.handler++
          if (outcome === 'throw') throw notFound()
          if (outcome === 'reject') await Promise.reject(notFound())
          if (outcome === 'reject-string') await Promise.reject('nope')
          if (outcome === 'next') {
            await next()
            return
          }
          if (outcome === 'then-throws') await thenThrows()
          const source = ctx.state.source as { host: string } | undefined
          ctx.body = { ...ctx.state, source: source?.host }
        }),
        (ctx) => {
          ctx.body = { next: true }
        },
      )
    }
  }
  app.use(a.errorHandler() as never)
  app.use(router.routes())
  app.use(a.notFound() as never)
  return app
}

const servers = [
  ['express4', (calls: Calls) => expressApp(express4, calls)],
  ['express5', (calls: Calls) => expressApp(express5, calls)],
  ['koa2', (calls: Calls) => koaApp(Koa2, calls).callback()],
  ['koa3', (calls: Calls) => koaApp(Koa3, calls).callback()],
] as const

for (const [name, make] of servers) {
  describe(`${name}: requestRules(options, handler)`, () => {
    const calls: Calls = { handler: 0 }
    const app = make(calls)

    it('runs the handler once the rules pass, with what they published', async () => {
      const res = await request(app).get(`/img/answer${good}`).expect(200)
      assert.deepEqual(res.body.imageParams, { width: 300 })
      assert.equal(res.body.account.id, 'acme')
      assert.equal(res.body.source, 'images.example.com')
      const later = await request(app)
        .get(`/async/answer${signed('width=20')}`)
        .expect(200)
      assert.deepEqual(later.body.imageParams, { width: 20 })
      assert.equal(later.body.account.id, 'acme')
    })

    it('never runs the handler for a refused request', async () => {
      calls.handler = 0
      const tampered = good.replace('width=300', 'width=301')
      const refusals = [
        [`/img/answer${tampered}`, 401, 'IC_INVALID_SIGNATURE'],
        [`/img/answer${signed(`width=9000&origin=${origin}`)}`, 400, 'IS_VALIDATION_ERROR'],
        [
          `/img/answer${signed(`width=300&origin=${encodeURIComponent('https://evil.test/a.jpg')}`)}`,
          401,
          'IC_HOST_NOT_ALLOWED',
        ],
        [`/async/answer${signed('width=20', 'nobody')}`, 401, 'IC_ACCOUNT_ID_NOT_FOUND'],
        ['/async/answer?width=20&icac=acme', 400, 'IC_MISSING_ENT_PARAMETER'],
      ] as const
      for (const [path, status, code] of refusals) {
        const res = await request(app).get(path)
        assert.equal(res.status, status, path)
        assert.equal(res.headers['x-ic-error-code'], code, path)
      }
      assert.equal(calls.handler, 0)
    })

    for (const path of ['/img', '/async']) {
      const query = path === '/img' ? good : signed('width=20')
      const when = path === '/img' ? 'synchronous rules' : 'an asynchronous lookup'
      it(`after ${when}: a thrown or rejected error of the handler reaches the error handler`, async () => {
        for (const outcome of ['throw', 'reject', 'then-throws'] as const) {
          const res = await request(app).get(`${path}/${outcome}${query}`)
          assert.equal(res.status, 404, outcome)
          assert.equal(res.headers['x-ic-error-code'], 'IC_IMAGE_NOT_FOUND', outcome)
        }
        const odd = await request(app).get(`${path}/reject-string${query}`)
        assert.equal(odd.status, 500)
        assert.equal(odd.headers['x-ic-error-code'], 'IC_INTERNAL_ERROR')
      })

      it(`after ${when}: the handler's next() hands the request on`, async () => {
        const res = await request(app).get(`${path}/next${query}`).expect(200)
        assert.deepEqual(res.body, { next: true })
      })
    }
  })
}

describe('Koa without errorHandler(): a handler failing with null or undefined', () => {
  for (const [name, Koa] of [
    ['koa2', Koa2],
    ['koa3', Koa3],
  ] as const) {
    it(`${name}: is answered by Koa (500), not left hanging`, async () => {
      const app = new Koa()
      app.silent = true
      const router = new Router()
      router.get(
        '/throw',
        koaAdapter.requestRules({ imageParams: {} }, () => {
          throw null
        }),
      )
      router.get(
        '/reject',
        koaAdapter.requestRules({ imageParams: {} }, () => Promise.reject(undefined)),
      )
      app.use(router.routes())
      for (const path of ['/throw?width=1', '/reject?width=1']) {
        const res = await request(app.callback()).get(path).timeout(1500)
        assert.equal(res.status, 500, path)
      }
    })
  }
})

describe('requestRules(options, handler) is made once, and checked', () => {
  it('refuses a handler that is not a function, naming it', () => {
    for (const handler of [null, 'handler', {}, 42]) {
      assert.throws(
        () => expressAdapter.requestRules(rules, handler as never),
        /^TypeError: Expected the handler of requestRules\(\) to be a function \(req, res, next\), got /,
      )
      assert.throws(
        () => koaAdapter.requestRules(rules, handler as never),
        /^TypeError: Expected the handler of requestRules\(\) to be a function \(ctx, next\), got /,
      )
    }
  })

  it('is a middleware named requestRules, of the arity of each framework', () => {
    const forExpress = expressAdapter.requestRules(rules, () => undefined)
    const forKoa = koaAdapter.requestRules(rules, () => undefined)
    assert.equal(forExpress.name, 'requestRules')
    assert.equal(forExpress.length, 3)
    assert.equal(forKoa.name, 'requestRules')
    assert.equal(forKoa.length, 2)
  })

  it('still refuses bad options first, naming the rule', () => {
    assert.throws(
      () => expressAdapter.requestRules({ imageParams: { maxWidth: -1 } }, () => undefined),
      /In `imageParams` of requestRules/,
    )
  })
})
