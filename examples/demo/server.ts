import { once } from 'node:events'
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { pathToFileURL } from 'node:url'
import { createBackendFetch, createLoadSampler, type ErrorReport, type LoadSampler } from '../../src/index.ts'
import { ErrorLog } from './app.ts'
import { createExpressDemo } from './app-express.ts'
import { createKoaDemo } from './app-koa.ts'
import { startDemoBackend } from './backend.ts'
import { EncodeSlots } from './image.ts'
import { renderPage } from './page.ts'
import { demoScenarios } from './scenarios.ts'

/**
 * Options of {@link startDemo}. Every one has a default; the command line reads them from
 * the environment.
 *
 * @example
 * const demo = await startDemo({ port: 0, framework: 'koa' })
 */
export interface DemoOptions {
  /** Port of the API and the page; `0` picks a free one. @default 3000 */
  readonly port?: number
  /** @default '127.0.0.1' */
  readonly host?: string
  /** @default 'express' */
  readonly framework?: 'express' | 'koa'
  /** Image-Charts account id accepted in `icac`. @default 'demo' */
  readonly account?: string
  /** Its secret, the HMAC key of `ichm`. @default 'demo-secret' */
  readonly secret?: string
  /** Port of the embedded backend. @default 0 (a free port) */
  readonly backendPort?: number
  /** Deadline of an image request. @default 2000 */
  readonly timeoutMs?: number
  /** How long the backend's `/slow.jpg` takes. @default 5000 */
  readonly slowMs?: number
  /** Where the page's scripts send their requests: `''` (same origin) unless the page is served elsewhere. @default '' */
  readonly apiBase?: string
  /**
   * Load sampler of the shedding middlewares (tests inject one with a fixed `source`).
   * @default a sampler refusing over 250 ms of event-loop delay (p99), closed with the demo
   */
  readonly sampler?: LoadSampler
  /** Image requests in flight before 503 `IC_OVERLOADED`. @default 32 */
  readonly maxInFlight?: number
  /**
   * Image encodes running at once before 503 `IC_OVERLOADED`, counted until sharp is done:
   * an encode outlives a request answered 504 at its deadline.
   * @default 4 (the size of libuv's thread pool, where sharp runs)
   */
  readonly maxEncodes?: number
  /** Rate limit of `/image/…` per client IP. @default { limit: 300, windowMs: '1m' } */
  readonly imageRateLimit?: { readonly limit: number; readonly windowMs: number | string }
  /** Called with every request the embedded backend receives. */
  readonly onBackendRequest?: (req: IncomingMessage, res: ServerResponse) => void
  /** Called once per failed request, after the demo's own log. */
  readonly onError?: (report: ErrorReport) => void
}

/**
 * A running demo.
 *
 * @example
 * const { url, close } = await startDemo({ port: 0 })
 */
export interface RunningDemo {
  /** The API and page, e.g. `http://127.0.0.1:3000`. */
  readonly url: string
  readonly backendUrl: string
  readonly framework: 'express' | 'koa'
  readonly account: string
  readonly secret: string
  /** Stops both servers and closes every open connection. */
  close(): Promise<void>
}

/**
 * Starts the demo: the embedded backend on its own port, then the image API (`/image/…`,
 * `/chart`, the page at `/`) on Express or Koa. Nothing heavy runs at start-up; sample
 * images are made on first request.
 *
 * @example
 * const demo = await startDemo({ port: 0, framework: 'express' })
 * const res = await fetch(`${demo.url}/chart?cht=p&chd=t:1,2,3`)
 * res.headers.get('x-ic-error-code') // 'IS_VALIDATION_ERROR'
 * await demo.close()
 */
export async function startDemo(options: Readonly<DemoOptions> = {}): Promise<RunningDemo> {
  const {
    port = 3000,
    host = '127.0.0.1',
    framework = 'express',
    account = 'demo',
    secret = 'demo-secret',
    backendPort = 0,
    timeoutMs = 2000,
    slowMs = 5000,
    apiBase = '',
    onError,
    onBackendRequest,
    maxInFlight = 32,
    maxEncodes = 4,
    imageRateLimit = { limit: 300, windowMs: '1m' },
  } = options
  if (framework !== 'express' && framework !== 'koa')
    throw new TypeError(`Expected \`framework\` to be 'express' or 'koa', got ${JSON.stringify(framework)}`)
  if (account === '' || secret === '') throw new TypeError('Expected `account` and `secret` to be non-empty')
  const encodes = new EncodeSlots(maxEncodes)
  const backend = await startDemoBackend({
    port: backendPort,
    host,
    slowMs,
    ...(onBackendRequest === undefined ? {} : { onRequest: onBackendRequest }),
  })
  const sampler = options.sampler ?? createLoadSampler({ maxEventLoopDelayMs: 250 })
  try {
    // A host list takes an IPv6 address in brackets (`[::1]`), an address list without them.
    const backendHost = new URL(backend.url).hostname
    const backendAddress = backendHost.replace(/^\[|\]$/g, '')
    const config = {
      backendUrl: backend.url,
      account,
      secret,
      timeoutMs,
      hostsAllowed: [backendHost, 'images.example.com'],
      bucketsAllowed: ['demo-bucket'],
      // The embedded backend is on loopback: allow exactly its address, nothing else private.
      fetchImage: createBackendFetch({ allowedAddresses: [backendAddress], maxBytes: 20 * 1024 * 1024 }),
      encodes,
      sampler,
      maxInFlight,
      imageRateLimit,
      page: renderPage({ apiBase, scenarios: demoScenarios({ account, secret }), framework, account }),
      log: new ErrorLog(),
      ...(onError === undefined ? {} : { onError }),
    }
    const server = createServer(framework === 'koa' ? createKoaDemo(config) : createExpressDemo(config))
    server.listen(port, host)
    await Promise.race([
      once(server, 'listening'),
      once(server, 'error').then(([err]) => Promise.reject(err)),
    ])
    const address = server.address() as AddressInfo
    const shown = address.family === 'IPv6' ? `[${address.address}]` : address.address
    return {
      url: `http://${shown}:${address.port}`,
      backendUrl: backend.url,
      framework,
      account,
      secret,
      async close() {
        const closed = once(server, 'close')
        server.close()
        server.closeAllConnections()
        await Promise.all([closed, backend.close()])
        if (options.sampler === undefined) sampler.close()
      },
    }
  } catch (err) {
    if (options.sampler === undefined) sampler.close()
    await backend.close()
    throw err
  }
}

async function main(): Promise<void> {
  const env = process.env
  const framework = process.argv.includes('--koa') || env.DEMO_FRAMEWORK === 'koa' ? 'koa' : 'express'
  const port = env.PORT === undefined || env.PORT === '' ? 3000 : Number(env.PORT)
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    console.error(
      `PORT must be a port number (0 to 65535, 0 for any free one); got ${JSON.stringify(env.PORT)}`,
    )
    process.exit(2)
  }
  const demo = await startDemo({
    port,
    framework,
    ...(env.HOST ? { host: env.HOST } : {}),
    ...(env.DEMO_ACCOUNT ? { account: env.DEMO_ACCOUNT } : {}),
    ...(env.DEMO_SECRET ? { secret: env.DEMO_SECRET } : {}),
    onError: (r) => {
      console.log(`${r.status} ${r.code} ${r.request.method} ${r.request.url} (${r.requestId})`)
      // onError replaces the default logging: a server error's stack is ours to print.
      if (r.status === 500) console.error(r.error)
    },
  }).catch((err: NodeJS.ErrnoException) => {
    if (err.code !== 'EADDRINUSE') throw err
    console.error(
      `Port ${port} is in use: stop what listens there, or start the demo with PORT=<another port>.`,
    )
    process.exit(2)
  })
  console.log(`image-api-errors demo on ${framework}: ${demo.url}/`)
  console.log(`  images:  ${demo.url}/image/sample.jpg?width=320`)
  console.log(`  charts:  ${demo.url}/chart?cht=bvs&chd=t:10,20,30&chs=300x200`)
  console.log(`  backend: ${demo.backendUrl}`)
  console.log(
    `  signed charts: account (icac) "${demo.account}", secret "${demo.secret}" (DEMO_ACCOUNT, DEMO_SECRET)`,
  )
  const stop = (): void => {
    demo.close().then(() => process.exit(0))
  }
  process.once('SIGINT', stop)
  process.once('SIGTERM', stop)
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().catch((err: unknown) => {
    console.error(err)
    process.exit(1)
  })
}
