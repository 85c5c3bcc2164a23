/**
 * An image format recognised by its first bytes.
 *
 * @example
 * const format: ImageFormat = 'webp'
 */
export type ImageFormat = 'jpeg' | 'png' | 'gif' | 'webp' | 'avif' | 'heif' | 'tiff' | 'bmp' | 'jxl'

/**
 * Bytes needed to recognise every format below.
 *
 * @example
 * if (head.length >= SNIFF_BYTES) format = sniffImageFormat(head)
 */
export const SNIFF_BYTES = 16

function ascii(bytes: Uint8Array, offset: number, text: string): boolean {
  for (let i = 0; i < text.length; i++) if (bytes[offset + i] !== text.charCodeAt(i)) return false
  return true
}

const AVIF_BRANDS = new Set(['avif', 'avis'])
const HEIF_BRANDS = new Set(['heic', 'heix', 'hevc', 'hevx', 'heim', 'heis', 'mif1', 'msf1'])

/**
 * The image format of a buffer, judged by its magic bytes (never by a `Content-Type`), or
 * `undefined` when the bytes are not an image this package serves: HTML error pages, JSON,
 * SVG (a script carrier) and truncated headers all give `undefined`.
 *
 * @example
 * sniffImageFormat(Buffer.from([0xff, 0xd8, 0xff, 0xe0])) // 'jpeg'
 * sniffImageFormat(Buffer.from('<!doctype html>')) // undefined
 */
export function sniffImageFormat(bytes: Uint8Array): ImageFormat | undefined {
  const b = bytes
  if (b.length >= 3 && b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff) return 'jpeg'
  if (b.length >= 8 && b[0] === 0x89 && ascii(b, 1, 'PNG\r\n\x1a\n')) return 'png'
  if (b.length >= 6 && (ascii(b, 0, 'GIF87a') || ascii(b, 0, 'GIF89a'))) return 'gif'
  if (b.length >= 12 && ascii(b, 0, 'RIFF') && ascii(b, 8, 'WEBP')) return 'webp'
  if (b.length >= 12 && ascii(b, 4, 'ftyp')) {
    const brand = String.fromCharCode(...b.subarray(8, 12))
    if (AVIF_BRANDS.has(brand)) return 'avif'
    if (HEIF_BRANDS.has(brand)) return 'heif'
    return undefined
  }
  if (
    b.length >= 4 &&
    ((ascii(b, 0, 'II') && b[2] === 42 && b[3] === 0) || (ascii(b, 0, 'MM') && b[2] === 0 && b[3] === 42))
  ) {
    return 'tiff'
  }
  if (b.length >= 14 && ascii(b, 0, 'BM')) return 'bmp'
  if (b.length >= 2 && b[0] === 0xff && b[1] === 0x0a) return 'jxl'
  if (b.length >= 12 && b[0] === 0 && b[1] === 0 && b[2] === 0 && b[3] === 0x0c && ascii(b, 4, 'JXL '))
    return 'jxl'
  return undefined
}
