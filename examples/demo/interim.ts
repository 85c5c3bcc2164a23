/**
 * Stand-ins for package middlewares that are still being built on other branches. Each one
 * is a plain `Guard` (or a fetch function) with the same place in the stack and the same
 * error codes as the export that replaces it, so swapping is a one-line change in
 * `app-express.ts` / `app-koa.ts`. Built only from the public API.
 */
import { createHmac, timingSafeEqual } from 'node:crypto'
import type { IncomingMessage } from 'node:http'
import { type Guard, icError, type ValidationItem } from '../../src/index.ts'
import type { DemoImageParams, DemoImageSource } from './image.ts'

export const CROPS = ['fit', 'top', 'bottom', 'pad', 'entropy'] as const
export const FORMATS = ['auto', 'jpeg', 'jpg', 'png', 'webp'] as const
const ALLOWED = new Set([
  'width',
  'height',
  'crop',
  'dpr',
  'quality',
  'format',
  'pad_color',
  'origin',
  'bucket',
])

function queryOf(req: IncomingMessage): URLSearchParams {
  const url = req.url ?? '/'
  const q = url.indexOf('?')
  return new URLSearchParams(q === -1 ? '' : url.slice(q + 1))
}

/** Stand-in for `imageParams()` (issue 3): 401 for a parameter not allowed, 400 with every failure at once. */
export function interimImageParams(): Guard {
  return function imageParams(req) {
    const query = queryOf(req)
    for (const name of query.keys()) {
      const base = name.endsWith('64') ? name.slice(0, -2) : name
      if (!ALLOWED.has(base))
        throw icError('IC_PARAM_NOT_ALLOWED', {
          message: `Parameter "${name}" is not allowed`,
          validation: [{ message: `"${name}" is not allowed`, path: [name], type: 'object.unknown' }],
        })
    }
    const problems: ValidationItem[] = []
    const one = (name: string): string | undefined => {
      const all = query.getAll(name)
      if (all.length > 1) problems.push({ message: `"${name}" must not be repeated`, path: [name] })
      return all[0]
    }
    const int = (name: string, min: number, max: number): number | undefined => {
      const raw = one(name)
      if (raw === undefined) return undefined
      const n = Number(raw)
      if (!/^\d+$/.test(raw) || n < min || n > max) {
        problems.push({ message: `"${name}" must be an integer from ${min} to ${max}`, path: [name] })
        return undefined
      }
      return n
    }
    const pick = (name: string, values: readonly string[]): string | undefined => {
      const raw = one(name)
      if (raw !== undefined && !values.includes(raw)) {
        problems.push({ message: `"${name}" must be one of [${values.join(', ')}]`, path: [name] })
        return undefined
      }
      return raw
    }
    const width = int('width', 1, 2048)
    const height = int('height', 1, 2048)
    const quality = int('quality', 1, 100)
    const crop = pick('crop', CROPS)
    const format = pick('format', FORMATS)
    const rawDpr = one('dpr')
    let dpr: number | undefined
    if (rawDpr !== undefined) {
      dpr = Number(rawDpr)
      if (!(dpr > 0 && dpr <= 4))
        problems.push({ message: '"dpr" must be a number greater than 0, at most 4', path: ['dpr'] })
    }
    const padColor = one('pad_color')
    if (padColor !== undefined && !/^([0-9a-f]{3}|[0-9a-f]{6})$/i.test(padColor))
      problems.push({ message: '"pad_color" must be a hex colour (abc or aabbcc)', path: ['pad_color'] })
    if (problems.length > 0) throw icError('IS_VALIDATION_ERROR', { validation: problems })
    const imageParams: DemoImageParams = {
      ...(width === undefined ? {} : { width }),
      ...(height === undefined ? {} : { height }),
      ...(dpr === undefined ? {} : { dpr }),
      ...(quality === undefined ? {} : { quality }),
      ...(crop === undefined ? {} : { crop: crop as NonNullable<DemoImageParams['crop']> }),
      ...(format === undefined ? {} : { format }),
      ...(padColor === undefined ? {} : { pad_color: padColor }),
    }
    return { imageParams }
  }
}

/** Stand-in for `permissions()` (issue 3): `hostsAllowed` and `bucketsAllowed`, 401 each. */
export function interimPermissions(options: {
  readonly hostsAllowed: readonly string[]
  readonly bucketsAllowed: readonly string[]
}): Guard {
  const hosts = new Set(options.hostsAllowed.map((h) => h.toLowerCase()))
  const buckets = new Set(options.bucketsAllowed)
  return function permissions(req) {
    const query = queryOf(req)
    const origin = query.get('origin')
    let source: DemoImageSource | undefined
    if (origin !== null) {
      let url: URL | undefined
      try {
        url = new URL(origin.includes('://') ? origin : `http://${origin}`)
      } catch {}
      if (url === undefined || !hosts.has(url.hostname.toLowerCase()))
        throw icError('IC_HOST_NOT_ALLOWED', { message: 'The origin host is not allowed' })
      source = { kind: 'url', url }
    }
    const bucket = query.get('bucket')
    if (bucket !== null) {
      if (!buckets.has(bucket))
        throw icError('IC_BUCKET_NOT_ALLOWED', { message: 'The bucket is not allowed' })
      source = { kind: 'bucket', bucket }
    }
    return source === undefined ? undefined : { source }
  }
}

/** Stand-in for `signature()` (issue 3): Image-Charts' `icac` / `ichm` scheme; unsigned requests pass. */
export function interimSignature(options: { readonly accounts: Readonly<Record<string, string>> }): Guard {
  return function signature(req) {
    const url = req.url ?? '/'
    const q = url.indexOf('?')
    const raw = q === -1 ? '' : url.slice(q + 1)
    const query = new URLSearchParams(raw)
    const icac = query.get('icac')
    const ichm = query.get('ichm')
    if (icac === null && ichm === null) return { signed: false }
    if (icac === null || ichm === null)
      throw icError('IC_MISSING_ENT_PARAMETER', {
        validation: [{ message: 'A signed request needs both `icac` (account id) and `ichm` (signature).' }],
      })
    const secret = options.accounts[icac]
    if (secret === undefined) throw icError('IC_ACCOUNT_ID_NOT_FOUND')
    const signed = raw
      .split('&')
      .filter((pair) => !pair.startsWith('ichm='))
      .join('&')
    const decoded = signed
      .split('&')
      .map((pair) =>
        pair
          .split('=')
          .map((part) => decodeURIComponent(part.replace(/\+/g, ' ')))
          .join('='),
      )
      .join('&')
    const given = Buffer.from(ichm.toLowerCase(), 'utf8')
    for (const text of [signed, decoded]) {
      const expected = Buffer.from(createHmac('sha256', secret).update(text).digest('hex'), 'utf8')
      if (expected.length === given.length && timingSafeEqual(expected, given))
        return { signed: true, account: icac }
    }
    throw icError('IC_INVALID_SIGNATURE')
  }
}
