import sharp from 'sharp'
import { icError } from '../../src/index.ts'
import type { ImageOptions } from './interim.ts'

/** Fetches the original image bytes; rejects with a catalogue error (404, 502, 504, …). */
export type FetchImage = (url: string, init: { readonly signal: AbortSignal }) => Promise<Buffer>

/** What the image route needs beside the request. */
export interface ImageRouteConfig {
  /** The configured backend, e.g. `http://127.0.0.1:4000`. */
  readonly backendUrl: string
  readonly fetchImage: FetchImage
}

/** One image request, framework-neutral. */
export interface ImageRequest {
  /** The path under `/image/`, e.g. `sample.jpg`. */
  readonly path: string
  readonly options: ImageOptions
  readonly accept: string | undefined
  readonly signal: AbortSignal
}

/** An encoded image. */
export interface ImageReply {
  readonly body: Buffer
  readonly contentType: string
}

const OUTPUT = { jpeg: 'image/jpeg', png: 'image/png', webp: 'image/webp' } as const
type Output = keyof typeof OUTPUT

function outputFormat(
  requested: string | undefined,
  source: string | undefined,
  accept: string | undefined,
): Output {
  if (requested === 'jpg' || requested === 'jpeg') return 'jpeg'
  if (requested === 'png' || requested === 'webp') return requested
  if (requested === 'auto' && accept?.includes('image/webp')) return 'webp'
  if (source === 'png' || source === 'webp') return source
  return 'jpeg'
}

function sourceUrl(config: ImageRouteConfig, request: ImageRequest): string {
  const { origin } = request.options
  const base = origin === undefined ? config.backendUrl : origin.includes('://') ? origin : `http://${origin}`
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
 * const reply = await processImage(config, { path: 'sample.jpg', options: { dpr: 1, quality: 80, width: 100 }, accept: undefined, signal })
 */
export async function processImage(config: ImageRouteConfig, request: ImageRequest): Promise<ImageReply> {
  const { options, signal } = request
  const original = await config.fetchImage(sourceUrl(config, request), { signal })
  try {
    const image = sharp(original, { limitInputPixels: 40_000_000, failOn: 'error' })
    const meta = await image.metadata()
    const width = options.width === undefined ? undefined : Math.round(options.width * options.dpr)
    const height = options.height === undefined ? undefined : Math.round(options.height * options.dpr)
    if (width !== undefined || height !== undefined) {
      const { crop } = options
      image.resize({
        ...(width === undefined ? {} : { width }),
        ...(height === undefined ? {} : { height }),
        fit: crop === undefined ? 'inside' : crop === 'pad' ? 'contain' : 'cover',
        position:
          crop === 'top' ? 'top' : crop === 'bottom' ? 'bottom' : crop === 'entropy' ? 'entropy' : 'centre',
        background: `#${options.padColor ?? 'fff'}`,
        withoutEnlargement: crop === undefined,
      })
    }
    const format = outputFormat(options.format, meta.format, request.accept)
    const body = await image.rotate().toFormat(format, { quality: options.quality }).toBuffer()
    if (signal.aborted) throw signal.reason
    return { body, contentType: OUTPUT[format] }
  } catch (err) {
    if (signal.aborted) throw signal.reason
    throw icError('IC_IMAGE_MALFORMED', { message: 'The original image could not be decoded', cause: err })
  }
}
