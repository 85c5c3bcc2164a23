import sharp from 'sharp'
import { icError } from '../../src/index.ts'

/**
 * The parameters the image route reads from `imageParams` (what the package's
 * `imageParams()` publishes, typed and validated).
 */
export interface DemoImageParams {
  readonly width?: number
  readonly height?: number
  readonly dpr?: number
  readonly quality?: number
  readonly crop?: 'fit' | 'top' | 'bottom' | 'pad' | 'face' | 'entropy'
  readonly format?: string
  readonly pad_color?: string
}

/** Where the request asked the image to come from (what `permissions()` publishes as `source`). */
export type DemoImageSource =
  | { readonly kind: 'url'; readonly url: URL }
  | { readonly kind: 'host'; readonly host: string }
  | { readonly kind: 'bucket'; readonly bucket: string }
  | { readonly kind: 'data'; readonly url: string }

/** Fetches the original image bytes; rejects with a catalogue error (404, 502, 504, …). */
export type FetchImage = (
  url: string,
  init: { readonly signal: AbortSignal },
) => Promise<{ readonly body: Buffer }>

/** What the image route needs beside the request. */
export interface ImageRouteConfig {
  /** The configured backend, e.g. `http://127.0.0.1:4000`; also stands for every allowed bucket. */
  readonly backendUrl: string
  readonly fetchImage: FetchImage
  /** The encodes that may run at once. */
  readonly encodes: EncodeSlots
}

/**
 * Image encodes that may run at once, counted until sharp settles. libvips cannot be stopped
 * mid-encode: a request answered 504 at its deadline leaves its encode running, so the
 * response's end (where `loadShedding()` counts a request out) says nothing of the CPU still
 * in use. Past `max`, a request is refused 503 `IC_OVERLOADED` before any work.
 *
 * @example
 * const encodes = new EncodeSlots(4)
 * const png = await encodes.run(() => sharp(input).png().toBuffer())
 */
export class EncodeSlots {
  readonly max: number
  #running = 0

  constructor(max: number) {
    if (!Number.isInteger(max) || max < 1)
      throw new TypeError(`Expected \`maxEncodes\` to be an integer of at least 1, got ${String(max)}`)
    this.max = max
  }

  /** Encodes running now, those whose requests have been answered included. */
  get running(): number {
    return this.#running
  }

  async run<T>(encode: () => Promise<T>): Promise<T> {
    if (this.#running >= this.max)
      throw icError('IC_OVERLOADED', {
        message: `${this.max} image encodes are already running`,
        retryAfterSeconds: 1,
      })
    this.#running++
    try {
      return await encode()
    } finally {
      this.#running--
    }
  }
}

/** One image request, framework-neutral. */
export interface ImageRequest {
  /** The path under `/image/`, e.g. `sample.jpg`. */
  readonly path: string
  readonly params: DemoImageParams
  readonly source: DemoImageSource | undefined
  readonly accept: string | undefined
  readonly signal: AbortSignal
}

/** An encoded image. */
export interface ImageReply {
  readonly body: Buffer
  readonly contentType: string
  /** The response headers beside the type: caching, and `Vary: Accept` when `format=auto` chose by `Accept`. */
  readonly headers: Readonly<Record<string, string>>
}

const OUTPUT = {
  jpeg: 'image/jpeg',
  png: 'image/png',
  webp: 'image/webp',
  avif: 'image/avif',
  gif: 'image/gif',
} as const
type Output = keyof typeof OUTPUT

function outputFormat(
  requested: string | undefined,
  source: string | undefined,
  accept: string | undefined,
): Output {
  if (requested === 'jpg' || requested === 'jpeg') return 'jpeg'
  if (requested !== undefined && requested !== 'auto' && Object.hasOwn(OUTPUT, requested))
    return requested as Output
  if (requested === 'auto' && accept?.includes('image/webp')) return 'webp'
  if (source !== undefined && source !== 'jpeg' && Object.hasOwn(OUTPUT, source)) return source as Output
  return 'jpeg'
}

function sourceUrl(config: ImageRouteConfig, request: ImageRequest): string {
  const { source } = request
  let base = config.backendUrl
  if (source?.kind === 'url') base = source.url.href
  else if (source?.kind === 'host') base = `http://${source.host}`
  else if (source?.kind === 'data') throw icError('IC_DATA_URL_NOT_ALLOWED')
  const path = request.path
    .split('/')
    .map((segment) => encodeURIComponent(segment))
    .join('/')
  return new URL(path, base.endsWith('/') ? base : `${base}/`).href
}

/**
 * Imagizer-style processing: fetch `<path>` from the backend (or an allowed dynamic origin),
 * resize it for `width` / `height` / `crop` / `dpr`, encode it as `format` with `quality`.
 * A source sharp cannot decode is `IC_IMAGE_MALFORMED` (400).
 *
 * @example
 * const reply = await processImage(config, { path: 'sample.jpg', params: { width: 100 }, source: undefined, accept: undefined, signal })
 */
export async function processImage(config: ImageRouteConfig, request: ImageRequest): Promise<ImageReply> {
  const { params: options, signal } = request
  const { body: original } = await config.fetchImage(sourceUrl(config, request), { signal })
  const { body, format } = await config.encodes.run(() => encode(original, request))
  if (signal.aborted) throw signal.reason
  const headers: Record<string, string> = { 'cache-control': 'public, max-age=60' }
  // A shared cache must not hand the WebP it stored for one client to a client without WebP.
  if (options.format === 'auto') headers.vary = 'Accept'
  return { body, contentType: OUTPUT[format], headers }
}

async function encode(original: Buffer, request: ImageRequest): Promise<{ body: Buffer; format: Output }> {
  const { params: options, signal } = request
  const dpr = options.dpr ?? 1
  try {
    const image = sharp(original, { limitInputPixels: 40_000_000, failOn: 'error' })
    const meta = await image.metadata()
    // At least one pixel: `width=1&dpr=0.1` is a valid request, not a 0-pixel resize.
    const width = options.width === undefined ? undefined : Math.max(1, Math.round(options.width * dpr))
    const height = options.height === undefined ? undefined : Math.max(1, Math.round(options.height * dpr))
    if (width !== undefined || height !== undefined) {
      const { crop } = options
      image.resize({
        ...(width === undefined ? {} : { width }),
        ...(height === undefined ? {} : { height }),
        fit: crop === undefined ? 'inside' : crop === 'pad' ? 'contain' : 'cover',
        position:
          crop === 'top' ? 'top' : crop === 'bottom' ? 'bottom' : crop === 'entropy' ? 'entropy' : 'centre',
        background: `#${options.pad_color ?? 'fff'}`,
        withoutEnlargement: crop === undefined,
      })
    }
    const format = outputFormat(options.format, meta.format, request.accept)
    const quality = options.quality ?? 90
    // AVIF at sharp's default effort takes many seconds for a large image here: a lower
    // effort keeps one request's encode near its deadline.
    const body = await image
      .rotate()
      .toFormat(format, format === 'avif' ? { quality, effort: 2 } : { quality })
      .toBuffer()
    return { body, format }
  } catch (err) {
    if (signal.aborted) throw signal.reason
    throw icError('IC_IMAGE_MALFORMED', { message: 'The original image could not be decoded', cause: err })
  }
}
