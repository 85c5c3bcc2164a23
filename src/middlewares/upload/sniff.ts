/**
 * Image formats `upload()` recognises by their first bytes.
 *
 * @example
 * const types: readonly ImageType[] = ['jpeg', 'png', 'webp']
 */
export type ImageType = 'jpeg' | 'png' | 'gif' | 'webp' | 'avif' | 'heic' | 'tiff' | 'bmp'

/**
 * Every format `upload()` recognises, the default of its `types` option.
 *
 * @example
 * upload({ enabled: true, tokens, types: IMAGE_TYPES.filter((t) => t !== 'bmp') })
 */
export const IMAGE_TYPES: readonly ImageType[] = ['jpeg', 'png', 'gif', 'webp', 'avif', 'heic', 'tiff', 'bmp']

const AVIF_BRANDS = new Set(['avif', 'avis'])
const HEIC_BRANDS = new Set(['heic', 'heix', 'hevc', 'hevx', 'heim', 'heis', 'mif1', 'msf1'])

function ascii(bytes: Buffer, start: number, end: number): string {
  return bytes.toString('latin1', start, end)
}

/**
 * The image format of a buffer by its signature bytes, or `undefined` when it is none of
 * {@link IMAGE_TYPES}. Only the header is read: a truncated image still passes, and the
 * handler's decoder is the final judge.
 *
 * @example
 * sniffImageType(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])) // 'png'
 */
export function sniffImageType(bytes: Buffer): ImageType | undefined {
  if (bytes.length < 4) return undefined
  const [a, b, c, d] = bytes as unknown as [number, number, number, number]
  if (a === 0xff && b === 0xd8 && c === 0xff) return 'jpeg'
  if (bytes.length >= 8 && a === 0x89 && ascii(bytes, 1, 8) === 'PNG\r\n\x1a\n') return 'png'
  if (bytes.length >= 6 && (ascii(bytes, 0, 6) === 'GIF87a' || ascii(bytes, 0, 6) === 'GIF89a')) return 'gif'
  if (bytes.length >= 12 && ascii(bytes, 0, 4) === 'RIFF' && ascii(bytes, 8, 12) === 'WEBP') return 'webp'
  if (bytes.length >= 12 && ascii(bytes, 4, 8) === 'ftyp') {
    const brand = ascii(bytes, 8, 12)
    if (AVIF_BRANDS.has(brand)) return 'avif'
    if (HEIC_BRANDS.has(brand)) return 'heic'
    return undefined
  }
  if (
    (a === 0x49 && b === 0x49 && c === 0x2a && d === 0x00) ||
    (a === 0x4d && b === 0x4d && c === 0x00 && d === 0x2a)
  )
    return 'tiff'
  if (a === 0x42 && b === 0x4d && bytes.length >= 26) return 'bmp'
  return undefined
}

/**
 * The file part of a `multipart/form-data` body: the part named `file`, else the first part
 * with a `filename`. `undefined` when there is none or the body is not well formed.
 *
 * @example
 * const file = multipartFile(body, 'XyZ') // the bytes between the part's headers and the next boundary
 */
export function multipartFile(body: Buffer, boundary: string): Buffer | undefined {
  const delimiter = Buffer.from(`--${boundary}`, 'latin1')
  let first: Buffer | undefined
  let position = body.indexOf(delimiter)
  while (position !== -1) {
    const headerStart = position + delimiter.length
    if (body[headerStart] === 0x2d && body[headerStart + 1] === 0x2d) break
    const headerEnd = body.indexOf('\r\n\r\n', headerStart, 'latin1')
    if (headerEnd === -1) break
    const next = body.indexOf(Buffer.from(`\r\n--${boundary}`, 'latin1'), headerEnd + 4)
    if (next === -1) break
    const headers = body.toString('latin1', headerStart, headerEnd)
    const disposition = /content-disposition:[^\r\n]*/i.exec(headers)?.[0] ?? ''
    const content = body.subarray(headerEnd + 4, next)
    if (/;\s*name="file"/i.test(disposition)) return content
    if (first === undefined && /;\s*filename="/i.test(disposition)) first = content
    position = next + 2
  }
  return first
}
