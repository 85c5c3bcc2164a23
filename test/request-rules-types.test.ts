// Compile-time checks of the request-rule option types: `tsc --noEmit` fails when one stops holding.
import assert from 'node:assert/strict'
import { it } from 'node:test'
import Router, { type RouterContext } from '@koa/router'
import express5 from 'express'
import Koa from 'koa'
import * as express from '../src/express.ts'
import * as core from '../src/index.ts'
import {
  type ImageSource,
  imageParamsGuard as imageParams,
  type ParamRule,
  permissionsGuard as permissions,
  requestRulesGuard as requestRules,
  signatureGuard as signature,
} from '../src/index.ts'
import * as koa from '../src/koa.ts'

// Never called: only compiled.
export function typeChecks(): void {
  const rules: Record<string, ParamRule> = {
    w: { type: 'integer', min: 1, max: 10 },
    chs: { type: 'size', maxWidth: 999, default: { width: 1, height: 1 } },
    // @ts-expect-error an enum needs its values
    crop: { type: 'enum' },
    // @ts-expect-error min belongs to numbers, not to booleans
    flag: { type: 'boolean', min: 1 },
    // @ts-expect-error the default of an integer is a number
    q: { type: 'integer', default: '90' },
  }
  imageParams({ params: rules, imageParamsAllowed: ['w'] })
  // @ts-expect-error hostsAllowed is a list of host names
  permissions({ hostsAllowed: 'example.com' })
  // @ts-expect-error secrets are strings
  signature({ accounts: { acme: { secrets: [42] } } })
  // @ts-expect-error requestRules only takes the four rules
  requestRules({ upload: {} })
  const source = undefined as ImageSource | undefined
  if (source?.kind === 'url') void source.url.href
  // @ts-expect-error a bucket source has no URL
  if (source?.kind === 'bucket') void source.url
  express.requestRules({ imageParams: {} })
  koa.requestRules({ imageParams: {} })
  // The rules and the handler in one layer, typed on the framework's own request and context.
  const app = express5()
  app.get(
    '/img',
    express.requestRules({ imageParams: {} }, (req: express5.Request, res: express5.Response) => {
      res.json({ path: req.path, imageParams: res.locals.imageParams })
    }),
  )
  // Unannotated, the handler gets the types of the route it is mounted on.
  app.get(
    '/raw/:id',
    express.requestRules({ imageParams: {} }, (req, res) => {
      res.json({ id: req.params.id, imageParams: res.locals.imageParams })
    }),
  )
  app.use(
    express.requestRules({ imageParams: {} }, async (_req, res, next) => {
      res.locals.seen = true
      next()
    }),
  )
  express5.Router().get(
    '/r',
    express.requestRules({ imageParams: {} }, (req, res) => res.json(req.query)),
  )
  // With nothing to give them, node:http's objects.
  const alone = express.requestRules({ imageParams: {} }, (_req, res) => {
    // @ts-expect-error node:http's response has no json()
    res.json({})
  })
  app.get('/alone', alone)
  new Koa().use(
    koa.requestRules({ imageParams: {} }, async (ctx, next) => {
      ctx.body = ctx.state.imageParams
      ctx.throw(400)
      await next()
    }),
  )
  // @koa/router's generic get() gives no context to infer from: its handler is annotated (below).
  const router = new Router()
  router.get(
    '/img/:id',
    koa.requestRules({ imageParams: {} }, (ctx: RouterContext) => {
      ctx.body = { id: ctx.params.id, imageParams: ctx.state.imageParams }
    }),
  )
  new Koa().use(
    koa.requestRules({ imageParams: {} }, async (ctx: Koa.Context, next) => {
      ctx.body = ctx.state.imageParams
      await next()
    }),
  )
  // Typed as a middleware too: called by hand, it takes (ctx, next) and returns a promise.
  const wrapped = koa.requestRules({ imageParams: {} }, (ctx: Koa.Context) => {
    ctx.body = ctx.state.imageParams
  })
  new Koa().use(async (ctx, next) => {
    await wrapped(ctx, next).then(() => undefined)
  })
  // @ts-expect-error the handler is a function
  express.requestRules({ imageParams: {} }, 'handler')
  // @ts-expect-error a Koa handler takes a context, not Express's (req, res)
  koa.requestRules({ imageParams: {} }, (_req: express5.Request, res: express5.Response) => res.end())
}

it('both adapters make every request rule a middleware named after it', () => {
  const keys = { keys: { k: [] } }
  const made = [
    [express.imageParams({}), koa.imageParams({}), 'imageParams'],
    [express.permissions({}), koa.permissions({}), 'permissions'],
    [express.signature({ accounts: {} }), koa.signature({ accounts: {} }), 'signature'],
    [express.apiKey(keys), koa.apiKey(keys), 'apiKey'],
    [express.upload({}), koa.upload({}), 'upload'],
    [express.requestRules({ imageParams: {} }), koa.requestRules({ imageParams: {} }), 'requestRules'],
  ] as const
  for (const name of ['imageParams', 'permissions', 'signature', 'apiKey', 'upload', 'requestRules']) {
    // The root's guards are named apart: a guard mounted as a middleware would never call next().
    assert.equal(name in core, false, name)
    assert.equal(typeof (core as Record<string, unknown>)[`${name}Guard`], 'function', `${name}Guard`)
  }
  for (const [forExpress, forKoa, name] of made) {
    assert.equal(forExpress.name, name)
    assert.equal(forExpress.length, 3, `${name}: (req, res, next)`)
    assert.equal(forKoa.name, name)
    assert.equal(forKoa.length, 2, `${name}: (ctx, next)`)
  }
})
