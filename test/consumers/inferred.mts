// Type-checked only, with TypeScript 5.9 and later (next to consumer.mts, whose declarations
// type res.locals and ctx.state): an unannotated requestRules(rules, handler) takes the types
// of the route it is mounted on. Before 5.9 the route's own type parameters leak in instead.
import express from 'express'
import { requestRules } from 'image-api-errors/express'
import { requestRules as koaRequestRules } from 'image-api-errors/koa'
import Koa from 'koa'

type IsAny<T> = 0 extends 1 & T ? true : false
const typed = <T,>(value: T, _notAny: IsAny<T> extends true ? never : true): T => value

const app = express()
app.get(
  '/inferred/:id',
  requestRules({ imageParams: {} }, (req, res) => {
    res.json({ width: typed(res.locals.imageParams?.width, true), id: typed(req.params.id, true) })
  }),
)
express.Router().use(
  requestRules({ imageParams: {} }, async (_req, res, next) => {
    typed(res.locals.source?.host, true)
    next()
  }),
)
new Koa().use(
  koaRequestRules({ imageParams: {} }, async (ctx, next) => {
    ctx.body = { width: typed(ctx.state.imageParams?.width, true) }
    await next()
  }),
)
