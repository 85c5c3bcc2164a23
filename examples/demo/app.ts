import type { IncomingMessage } from 'node:http'
import type { ErrorReport, LoadSampler } from '../../src/index.ts'
import { icError, parseQuery } from '../../src/index.ts'
import { parseChartQuery, renderChart } from './chart.ts'
import {
  type DemoImageParams,
  type DemoImageSource,
  type EncodeSlots,
  type FetchImage,
  type ImageReply,
  processImage,
} from './image.ts'

/** Everything the Express and Koa versions of the demo are built from; both read it the same way. */
export interface DemoAppConfig {
  readonly backendUrl: string
  readonly account: string
  readonly secret: string
  /** Deadline of an image request (fetch + processing). */
  readonly timeoutMs: number
  /** Hosts `origin=` may name. */
  readonly hostsAllowed: readonly string[]
  /** Buckets `bucket=` may name. */
  readonly bucketsAllowed: readonly string[]
  readonly fetchImage: FetchImage
  /** Image encodes that may run at once, those of requests already answered included. */
  readonly encodes: EncodeSlots
  /** Shared load sampler of both routes' shedding, and of `GET /demo/health`. */
  readonly sampler: LoadSampler
  /** Image requests in flight before 503. */
  readonly maxInFlight: number
  /** Rate limit of the image route, per client IP. */
  readonly imageRateLimit: { readonly limit: number; readonly windowMs: number | string }
  /** The page at `GET /`. */
  readonly page: string
  /** Recent failures, shown by the page (`GET /demo/log`): 499s are only visible there. */
  readonly log: ErrorLog
  readonly onError?: (report: ErrorReport) => void
}

/** One line of the error log. */
export interface ErrorLogEntry {
  readonly time: string
  readonly status: number
  readonly code: string
  readonly method: string
  readonly path: string
  readonly requestId: string
}

/** The last failures the error handler reported, newest first, bounded. */
export class ErrorLog {
  readonly #entries: ErrorLogEntry[] = []
  readonly #max: number
  constructor(max = 50) {
    this.#max = max
  }
  add(report: ErrorReport): void {
    this.#entries.unshift({
      time: new Date().toISOString(),
      status: report.status,
      code: report.code,
      method: report.request.method ?? 'GET',
      path: (report.request.url ?? '/').split('?')[0] ?? '/',
      requestId: report.requestId,
    })
    if (this.#entries.length > this.#max) this.#entries.length = this.#max
  }
  entries(): readonly ErrorLogEntry[] {
    return this.#entries
  }
}

/**
 * The image path under `/image/`, decoded; a malformed escape is a validation error, not a 500.
 * So is an empty, `.` or `..` segment: resolved against the backend's URL, `//host/x.jpg`
 * would name another host, and `..` climb out of an allowed origin's directory.
 */
export function imagePathOf(url: string | undefined): string {
  const raw = (url ?? '/').split('?')[0]?.slice('/image/'.length) ?? ''
  try {
    const path = decodeURIComponent(raw)
    if (!path.includes('\0') && path.split('/').every((s) => s !== '' && s !== '.' && s !== '..')) return path
  } catch {}
  throw icError('IS_VALIDATION_ERROR', {
    validation: [{ message: '"path" must be a valid image path', path: ['path'] }],
  })
}

/** Response headers of every API response: any page may read the API, error headers included. */
export const CORS_HEADERS: Readonly<Record<string, string>> = {
  'access-control-allow-origin': '*',
  // On success responses too; errorHandler() adds the error headers to this list.
  'access-control-expose-headers': 'ratelimit, ratelimit-policy, x-request-id',
}

/**
 * The image route's handler, framework-neutral: reads what the middlewares published
 * (`imageParams`, `source`, `signal`) and processes the image.
 *
 * @example
 * const reply = await imageReply(config, req, res.locals)
 */
export function imageReply(
  config: DemoAppConfig,
  req: IncomingMessage,
  locals: Readonly<Record<string, unknown>>,
): Promise<ImageReply> {
  return processImage(config, {
    path: imagePathOf(req.url),
    params: (locals.imageParams ?? {}) as DemoImageParams,
    source: locals.source as DemoImageSource | undefined,
    accept: req.headers.accept,
    signal: locals.signal as AbortSignal,
  })
}

/**
 * The chart route's handler, framework-neutral: validates the query and renders the PNG.
 *
 * @example
 * const png = await chartReply(req)
 */
export function chartReply(req: IncomingMessage): Promise<Buffer> {
  // The query exactly as the rules read it (and the signature covers): after the first `?`
  // (a title may hold one, `chtt=Why?`), up to a `#`.
  return renderChart(parseChartQuery(new URLSearchParams(parseQuery(req).search)))
}

/** A response of one of the demo's own routes (`/`, `/demo/…`). */
export interface PlainReply {
  readonly contentType: string
  readonly body: string
}

const json = (value: unknown): PlainReply => ({
  contentType: 'application/json',
  body: JSON.stringify(value),
})

function busyFor(ms: number): void {
  const end = performance.now() + ms
  while (performance.now() < end) {
    // Spin: this is the CPU-heavy route the load sampler is there to notice.
  }
}

/**
 * The demo's own routes, the same on both frameworks: the page, the error log, the load
 * reading, and a route that blocks the event loop on purpose (at most 1 s) so the page can
 * show load shedding.
 *
 * @example
 * const reply = await demoRoutes['/demo/log']?.(config, req)
 */
export const demoRoutes: Readonly<
  Record<string, (config: DemoAppConfig, req: IncomingMessage) => PlainReply | Promise<PlainReply>>
> = {
  '/': (config) => ({ contentType: 'text/html; charset=utf-8', body: config.page }),
  '/demo/log': (config) => json(config.log.entries()),
  '/demo/health': (config) =>
    json({
      overloaded: config.sampler.isOverloaded(),
      ...config.sampler.current,
      encodes: config.encodes.running,
    }),
  '/demo/busy': async (config, req) => {
    const asked = Number(new URL(req.url ?? '/', 'http://demo').searchParams.get('ms') ?? 600)
    busyFor(Number.isFinite(asked) ? Math.min(Math.max(asked, 0), 1000) : 600)
    // The sampler notices at its next sample (the delay is recorded once the loop is free):
    // answer then, so the next request meets the overload.
    for (let waited = 0; waited < 2500 && !config.sampler.isOverloaded(); waited += 20)
      await new Promise((resolve) => setTimeout(resolve, 20))
    return json({ overloaded: config.sampler.isOverloaded(), ...config.sampler.current })
  },
}
