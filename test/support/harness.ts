import { once } from 'node:events'
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo, Socket } from 'node:net'
import { Readable } from 'node:stream'
import express5 from 'express'
import express4 from 'express4'
import Koa3 from 'koa'
import Koa2 from 'koa2'
import * as expressAdapter from '../../src/express.ts'
import type { ErrorHandlerOptions, ErrorReport } from '../../src/index.ts'
import * as koaAdapter from '../../src/koa.ts'

export type Framework = 'express4' | 'express5' | 'koa2' | 'koa3'
export const frameworks: readonly Framework[] = ['express4', 'express5', 'koa2', 'koa3']

/** A framework and the Express settings an app of it starts with. */
export interface Setup {
  readonly name: string
  readonly framework: Framework
  readonly settings?: Readonly<Record<string, unknown>>
  /** Whether `req.query` comes from `qs`, which reads `a[]`, `a[0]` and `[a]` as `a`. */
  readonly qs: boolean
}
/** Every framework, and Express 5 with `qs` as its query parser (Express 4's default). */
export const querySetups: readonly Setup[] = [
  ...frameworks.map((framework) => ({ name: framework, framework, qs: framework === 'express4' })),
  {
    name: "express5, 'query parser': 'extended'",
    framework: 'express5',
    settings: { 'query parser': 'extended' },
    qs: true,
  },
]
export type Adapter = typeof expressAdapter | typeof koaAdapter

/** What a neutral route handler sees: the node objects plus the values middlewares published. */
export interface RouteContext {
  readonly req: IncomingMessage
  readonly res: ServerResponse
  readonly locals: Record<string, unknown>
}
/** What a neutral route handler answers; throwing rejects the request. */
export interface Reply {
  readonly status?: number
  readonly headers?: Readonly<Record<string, string>>
  readonly body?: string | Buffer | Readable
}
export interface RouteSpec {
  readonly method?: 'GET' | 'POST' | 'HEAD' | 'PUT'
  readonly path: string
  /** Middlewares from the adapter under test, mounted on this route only. */
  readonly use?: (adapter: Adapter) => readonly unknown[]
  readonly handle: (ctx: RouteContext) => Reply | undefined | Promise<Reply | undefined>
}
export interface AppSpec {
  readonly routes: readonly RouteSpec[]
  /** Middlewares mounted on every route, before the routes. */
  readonly use?: (adapter: Adapter) => readonly unknown[]
  readonly errorHandler?: ErrorHandlerOptions | false
  /** Express settings (`app.set(name, value)`), e.g. `{ 'query parser': 'extended' }`; Koa has none. */
  readonly settings?: Readonly<Record<string, unknown>> | undefined
}
/**
 * Where an app listens: a host on loopback, port 0 (`'::'` is dual-stack: IPv4 clients are then
 * seen as `::ffff:127.0.0.1`, as under a default `app.listen(port)`), or a Unix socket.
 */
export type Listen = { readonly host: string } | { readonly socketPath: string }

export interface RunningApp {
  readonly framework: Framework
  readonly server: Server
  /** `http://127.0.0.1:<port>`; for a Unix socket, `http://localhost` (send through `socketPath`). */
  readonly url: string
  readonly socketPath: string | undefined
  readonly reports: ErrorReport[]
  /** What Koa emitted on the app (`app.on('error')`); always empty on Express. */
  readonly emitted: unknown[]
  close(): Promise<void>
}

type Handler = (...args: never[]) => unknown

function expressApp(framework: 'express4' | 'express5', spec: AppSpec, reports: ErrorReport[]) {
  const a = expressAdapter
  type Mount = (...args: unknown[]) => void
  const app = (framework === 'express4' ? express4() : express5()) as unknown as Record<
    'use' | 'get' | 'post' | 'head' | 'put',
    Mount
  > & { disable(name: string): void; set(name: string, value: unknown): void }
  app.disable('x-powered-by')
  if (spec.errorHandler === false) app.set('env', 'test')
  for (const [name, value] of Object.entries(spec.settings ?? {})) app.set(name, value)
  for (const m of spec.use?.(a) ?? []) app.use(m)
  for (const route of spec.routes) {
    const method = (route.method ?? 'GET').toLowerCase() as 'get' | 'post' | 'head' | 'put'
    const final = (
      req: IncomingMessage,
      res: ServerResponse & { locals: Record<string, unknown> },
      next: (e?: unknown) => void,
    ) => {
      Promise.resolve()
        .then(() => route.handle({ req, res, locals: res.locals }))
        .then((reply) => {
          if (reply === undefined || res.headersSent) return
          res.statusCode = reply.status ?? 200
          for (const [k, v] of Object.entries(reply.headers ?? {})) res.setHeader(k, v)
          if (reply.body instanceof Readable) {
            reply.body.on('error', next)
            reply.body.pipe(res)
          } else {
            res.end(reply.body ?? '')
          }
        })
        // Express 5 turns a falsy rejection into an Error; Express 4 user code has to do the same.
        .catch((err: unknown) => next(err ?? new Error('Rejected promise')))
    }
    app[method](route.path, ...(route.use?.(a) ?? []), final)
  }
  if (spec.errorHandler !== false) {
    app.use(a.notFound())
    app.use(a.errorHandler({ ...spec.errorHandler, onError: (r) => reports.push(r) }))
  }
  return createServer(app as never)
}

type KoaCtx = koaAdapter.KoaContext & { path: string; method: string; set(k: string, v: string): void }
type KoaMw = (ctx: KoaCtx, next: () => Promise<unknown>) => Promise<unknown>

function compose(middlewares: readonly KoaMw[]): KoaMw {
  return (ctx, next) => {
    const dispatch = (i: number): Promise<unknown> =>
      i === middlewares.length
        ? next()
        : Promise.resolve((middlewares[i] as KoaMw)(ctx, () => dispatch(i + 1)))
    return dispatch(0)
  }
}

function koaApp(framework: 'koa2' | 'koa3', spec: AppSpec, reports: ErrorReport[], emitted: unknown[]) {
  const a = koaAdapter
  const app = framework === 'koa2' ? new Koa2() : new Koa3()
  app.silent = true
  app.on('error', (err: unknown) => emitted.push(err))
  if (spec.errorHandler !== false) {
    app.use(a.errorHandler({ ...spec.errorHandler, onError: (r) => reports.push(r) }) as never)
    app.use(a.notFound() as never)
  }
  for (const m of spec.use?.(a) ?? []) app.use(m as never)
  const routes = spec.routes.map((route) => ({
    route,
    chain: compose([
      ...((route.use?.(a) ?? []) as KoaMw[]),
      async (ctx) => {
        const reply = await route.handle({ req: ctx.req, res: ctx.res, locals: ctx.state })
        if (reply === undefined) return
        ctx.status = reply.status ?? 200
        for (const [k, v] of Object.entries(reply.headers ?? {})) ctx.set(k, v)
        ctx.body = reply.body ?? ''
      },
    ]),
  }))
  app.use(async (ctx: KoaCtx, next: () => Promise<unknown>) => {
    const method = ctx.method === 'HEAD' ? 'GET' : ctx.method
    const found = routes.find((r) => (r.route.method ?? 'GET') === method && r.route.path === ctx.path)
    if (found === undefined) return next()
    return found.chain(ctx, next)
  })
  return createServer(app.callback() as never)
}

/** Starts an app of the given framework on loopback, port 0, or on `listen`; `close()` also destroys open sockets. */
export async function startApp(
  framework: Framework,
  spec: AppSpec,
  listen: Listen = { host: '127.0.0.1' },
): Promise<RunningApp> {
  const reports: ErrorReport[] = []
  const emitted: unknown[] = []
  const server =
    framework === 'express4' || framework === 'express5'
      ? expressApp(framework, spec, reports)
      : koaApp(framework, spec, reports, emitted)
  const sockets = new Set<Socket>()
  server.on('connection', (socket) => {
    sockets.add(socket)
    socket.on('close', () => sockets.delete(socket))
  })
  if ('socketPath' in listen) server.listen(listen.socketPath)
  else server.listen(0, listen.host)
  await once(server, 'listening')
  const address = server.address() as AddressInfo | string
  return {
    framework,
    server,
    url: typeof address === 'string' ? 'http://localhost' : `http://127.0.0.1:${address.port}`,
    socketPath: typeof address === 'string' ? address : undefined,
    reports,
    emitted,
    async close() {
      for (const socket of sockets) socket.destroy()
      server.close()
      await once(server, 'close')
    },
  }
}

export type { Handler }

/**
 * Waits until `done()` holds (at most `ms`), then 50 ms more, for what must not follow (a
 * second report): a loaded machine may take longer than a fixed pause.
 */
export async function settled(done: () => boolean, ms = 2000): Promise<void> {
  for (const until = Date.now() + ms; !done() && Date.now() < until; )
    await new Promise((resolve) => setTimeout(resolve, 5))
  await new Promise((resolve) => setTimeout(resolve, 50))
}
