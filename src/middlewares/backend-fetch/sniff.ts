/**
 * An image format recognised by its first bytes.
 *
 * @example
 * const format: ImageFormat = 'webp'
 */
export type ImageFormat = 'jpeg' | 'png' | 'gif' | 'webp' | 'avif' | 'heif' | 'tiff' | 'bmp' | 'jxl'

/**
 * Options of {@link sniffImageFormat}.
 *
 * @example
 * const options: SniffOptions = { complete: true }
 */
export interface SniffOptions {
  /**
   * `bytes` is the whole file, not its first bytes: the offsets a header gives must then
   * point inside it (a TIFF's first directory, a BMP's pixel data, an `ftyp` box's end).
   * @default false
   */
  readonly complete?: boolean
}

/**
 * Bytes needed to recognise every format below from a prefix (a BMP's bit count is at 28–29).
 *
 * @example
 * if (head.length >= SNIFF_BYTES) format = sniffImageFormat(head)
 */
export const SNIFF_BYTES = 32

function ascii(bytes: Uint8Array, offset: number, text: string): boolean {
  for (let i = 0; i < text.length; i++) if (bytes[offset + i] !== text.charCodeAt(i)) return false
  return true
}

function u16(b: Uint8Array, offset: number, littleEndian: boolean): number {
  const first = b[offset] as number
  const second = b[offset + 1] as number
  return littleEndian ? first | (second << 8) : (first << 8) | second
}

function u32(b: Uint8Array, offset: number, littleEndian: boolean): number {
  const low = u16(b, offset + (littleEndian ? 0 : 2), littleEndian)
  const high = u16(b, offset + (littleEndian ? 2 : 0), littleEndian)
  return high * 0x10000 + low
}

const AVIF_BRANDS = new Set(['avif', 'avis'])
const HEIF_BRANDS = new Set(['heic', 'heix', 'hevc', 'hevx', 'heim', 'heis', 'mif1', 'msf1'])
const WEBP_CHUNKS = new Set(['VP8 ', 'VP8L', 'VP8X'])
/** BITMAPCOREHEADER, BITMAPINFOHEADER, the two Adobe extensions, OS/2 2.x, V4, V5. */
const BMP_HEADER_SIZES = new Set([12, 40, 52, 56, 64, 108, 124])
const BMP_BIT_COUNTS = new Set([1, 2, 4, 8, 16, 24, 32, 64])
/** JPEG XL's container signature box (ISO/IEC 18181-2). */
const JXL_SIGNATURE = [0, 0, 0, 0x0c, 0x4a, 0x58, 0x4c, 0x20, 0x0d, 0x0a, 0x87, 0x0a]

/**
 * AVIF when the major brand or a compatible brand (those within the first bytes) says so (an
 * AVIF may carry `mif1` as its major brand), else HEIF likewise, else none.
 */
function ftypBrand(b: Uint8Array, size: number): ImageFormat | undefined {
  const brands: string[] = [String.fromCharCode(...b.subarray(8, 12))]
  for (let i = 16; i + 4 <= Math.min(size, b.length); i += 4)
    brands.push(String.fromCharCode(...b.subarray(i, i + 4)))
  if (brands.some((brand) => AVIF_BRANDS.has(brand))) return 'avif'
  if (brands.some((brand) => HEIF_BRANDS.has(brand))) return 'heif'
  return undefined
}

/**
 * An ISOBMFF `ftyp` box first: its size (16 bytes and 4 per compatible brand), then its major
 * brand, then another box (a `meta`): a size of 0 (to the end), 1 (64-bit) or at least 8, and
 * a four-character type. In a complete file that box is there and ends inside it.
 */
function ftypFormat(b: Uint8Array, complete: boolean): ImageFormat | undefined {
  const size = u32(b, 0, false)
  if (size < 16 || size % 4 !== 0 || (complete && size > b.length)) return undefined
  const format = ftypBrand(b, size)
  if (format === undefined) return undefined
  if (size + 8 > b.length) return complete ? undefined : format
  const next = u32(b, size, false)
  if ((next > 1 && next < 8) || (complete && next > b.length - size)) return undefined
  for (let i = size + 4; i < size + 8; i++) {
    const c = b[i] as number
    if (c < 0x20 || c > 0x7e) return undefined
  }
  return format
}

/**
 * `FF D8 FF` and a marker (`C0`–`FE`: an APPn, a table, a frame), after any fill bytes (`FF`)
 * the format allows before it; in a complete file, that segment's length (at least 2) ends
 * inside it, with the next marker's `FF` there or a few stray bytes later, as decoders
 * tolerate (text never holds an `FF` byte).
 */
function isJpeg(b: Uint8Array, complete: boolean): boolean {
  let at = 3
  while (b[at] === 0xff) at++
  if (at >= b.length) return false
  const marker = b[at] as number
  if (marker < 0xc0) return false
  if (!complete) return true
  if (at + 3 > b.length) return false
  const end = at + 1 + u16(b, at + 1, false)
  if (end < at + 3) return false
  for (let i = end; i < Math.min(b.length, end + JPEG_STRAY_BYTES + 1); i++) if (b[i] === 0xff) return true
  return false
}

/** Stray bytes a decoder skips (with a warning) between a JPEG segment and the next marker. */
const JPEG_STRAY_BYTES = 16

/**
 * The signature, then the `IHDR` chunk every PNG starts with (13 bytes of data); a complete
 * file holds that chunk whole.
 */
function isPng(b: Uint8Array, complete: boolean): boolean {
  if (u32(b, 8, false) !== 13 || !ascii(b, 12, 'IHDR')) return false
  return !complete || b.length >= 33
}

/** The size of the colour table a GIF's packed field announces: none, or 3 × 2^(n+1) bytes. */
function colourTableBytes(flags: number): number {
  return flags & 0x80 ? 3 << ((flags & 7) + 1) : 0
}

/** The labels of GIF89a's extensions: plain text, graphic control, comment, application. */
const GIF_EXTENSIONS = new Set([0x01, 0xf9, 0xfe, 0xff])

/**
 * `GIF87a`/`GIF89a`, the logical screen descriptor, its global colour table when its flags say
 * so, then the first block: an extension (`!` and a known label) or an image (`,`, its
 * descriptor and local colour table, an LZW code size of 2 to 8). Each of those holds a byte
 * no text has, so a script behind `GIF89a` (`GIF89a=1;alert(…)//`) is no GIF. A complete
 * file reaches what is checked; first bytes may stop before.
 */
function isGif(b: Uint8Array, complete: boolean): boolean {
  const block = 13 + colourTableBytes(b[10] as number)
  if (block + 1 >= b.length) return !complete
  if (b[block] === 0x21) return GIF_EXTENSIONS.has(b[block + 1] as number)
  if (b[block] !== 0x2c) return false
  if (block + 10 > b.length) return !complete
  const codeSize = block + 10 + colourTableBytes(b[block + 9] as number)
  if (codeSize >= b.length) return !complete
  const bits = b[codeSize] as number
  return bits >= 2 && bits <= 8
}

/**
 * `RIFF`, a size holding at least the `WEBP` tag and a chunk (inside a complete file), and a
 * first chunk of a kind WebP has, whose own header holds: a lossy frame's start code
 * (`9D 01 2A`), a lossless one's signature (`2F`), the extended header's reserved zeros.
 */
function isWebp(b: Uint8Array, complete: boolean): boolean {
  const size = u32(b, 4, true)
  if (size < 12 || (complete && size + 8 > b.length)) return false
  const chunk = String.fromCharCode(...b.subarray(12, 16))
  if (!WEBP_CHUNKS.has(chunk)) return false
  const need = chunk === 'VP8 ' ? 26 : chunk === 'VP8L' ? 21 : 24
  if (b.length < need) return !complete
  if (chunk === 'VP8 ') return b[23] === 0x9d && b[24] === 0x01 && b[25] === 0x2a
  if (chunk === 'VP8L') return b[20] === 0x2f
  return b[21] === 0 && b[22] === 0 && b[23] === 0
}

/**
 * `II*\0` or `MM\0*`, then the first directory's offset: past the 8-byte header, holding at
 * least one entry, and inside the file when it is complete.
 */
function isTiff(b: Uint8Array, complete: boolean): boolean {
  const littleEndian = b[0] === 0x49
  const offset = u32(b, 4, littleEndian)
  if (offset < 8) return false
  if (offset + 2 > b.length) return !complete
  const entries = u16(b, offset, littleEndian)
  return entries > 0 && (!complete || offset + 2 + entries * 12 <= b.length)
}

/** A 64-bit unsigned integer as a number: exact below 2^53, and larger ones only need to compare as large. */
function u64(b: Uint8Array, offset: number, littleEndian: boolean): number {
  const low = u32(b, offset + (littleEndian ? 0 : 4), littleEndian)
  const high = u32(b, offset + (littleEndian ? 4 : 0), littleEndian)
  return high * 0x1_0000_0000 + low
}

/**
 * BigTIFF (`II+\0` or `MM\0+`, libtiff's format for files past 4 GiB): an offset size of 8
 * and a zero, then the first directory's 64-bit offset, past the 16-byte header, its 64-bit
 * entry count not zero, and its entries (20 bytes each) inside the file when it is complete.
 */
function isBigTiff(b: Uint8Array, complete: boolean): boolean {
  const littleEndian = b[0] === 0x49
  if (u16(b, 4, littleEndian) !== 8 || u16(b, 6, littleEndian) !== 0) return false
  const offset = u64(b, 8, littleEndian)
  if (offset < 16) return false
  if (offset + 8 > b.length) return !complete
  const entries = u64(b, offset, littleEndian)
  return entries > 0 && (!complete || offset + 8 + entries * 20 <= b.length)
}

/**
 * `BM`, zero reserved bytes, a DIB header of a known size with one plane and a known bit
 * count, and pixel data starting after the headers (inside the file when it is complete).
 */
function isBmp(b: Uint8Array, complete: boolean): boolean {
  if (b[6] !== 0 || b[7] !== 0 || b[8] !== 0 || b[9] !== 0) return false
  const header = u32(b, 14, true)
  if (!BMP_HEADER_SIZES.has(header)) return false
  // BITMAPCOREHEADER has 16-bit dimensions, so its planes and bit count come 4 bytes earlier.
  const planes = header === 12 ? 22 : 26
  if (b.length < planes + 4) return false
  if (u16(b, planes, true) !== 1 || !BMP_BIT_COUNTS.has(u16(b, planes + 2, true))) return false
  const pixels = u32(b, 10, true)
  return pixels >= 14 + header && (!complete || pixels < b.length)
}

/**
 * The image format of a buffer, judged by its header bytes (never by a `Content-Type`), or
 * `undefined` when the bytes are not an image this package serves: HTML error pages, JSON,
 * SVG (a script carrier), truncated headers, and text behind a format's first bytes all give
 * `undefined`. A format's header must hold together, not just start right: a BMP's reserved
 * bytes, DIB header size, planes, bit count and pixel offset; a TIFF's first directory
 * offset and entry count (BigTIFF's too, as `'tiff'`); a JPEG's first marker and segment; a
 * PNG's `IHDR`; a GIF's screen descriptor and first block; a WebP's RIFF size, first chunk and
 * its header; an AVIF/HEIF `ftyp` box's size and the box after it. JPEG XL in
 * its container form (`00 00 00 0C 'JXL ' 0D 0A 87 0A`), or as a bare codestream (`FF 0A`,
 * what `cjxl` and libvips write by default) whose next bytes are not all text: any bits may
 * follow `FF 0A`, so those two bytes alone prove nothing.
 * With `complete`, `bytes` is the whole file and the offsets must point inside it; without,
 * `bytes` may be its first {@link SNIFF_BYTES} or more.
 *
 * @example
 * sniffImageFormat(Buffer.from([0xff, 0xd8, 0xff, 0xe0])) // 'jpeg'
 * sniffImageFormat(Buffer.from('<!doctype html>')) // undefined
 * sniffImageFormat(Buffer.from('BM<html><script>alert(1)</script></html>')) // undefined
 * sniffImageFormat(await readFile('a.tiff'), { complete: true }) // 'tiff'
 */
export function sniffImageFormat(
  bytes: Uint8Array,
  options: Readonly<SniffOptions> = {},
): ImageFormat | undefined {
  const b = bytes
  const complete = options.complete === true
  if (b.length >= 4 && b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff)
    return isJpeg(b, complete) ? 'jpeg' : undefined
  if (b.length >= 16 && b[0] === 0x89 && ascii(b, 1, 'PNG\r\n\x1a\n'))
    return isPng(b, complete) ? 'png' : undefined
  if (b.length >= 13 && (ascii(b, 0, 'GIF87a') || ascii(b, 0, 'GIF89a')))
    return isGif(b, complete) ? 'gif' : undefined
  if (b.length >= 16 && ascii(b, 0, 'RIFF') && ascii(b, 8, 'WEBP'))
    return isWebp(b, complete) ? 'webp' : undefined
  if (b.length >= 12 && ascii(b, 4, 'ftyp')) return ftypFormat(b, complete)
  if (
    b.length >= 8 &&
    ((ascii(b, 0, 'II') && b[2] === 42 && b[3] === 0) || (ascii(b, 0, 'MM') && b[2] === 0 && b[3] === 42))
  )
    return isTiff(b, complete) ? 'tiff' : undefined
  if (
    b.length >= 16 &&
    ((ascii(b, 0, 'II') && b[2] === 43 && b[3] === 0) || (ascii(b, 0, 'MM') && b[2] === 0 && b[3] === 43))
  )
    return isBigTiff(b, complete) ? 'tiff' : undefined
  if (b.length >= 18 && ascii(b, 0, 'BM')) return isBmp(b, complete) ? 'bmp' : undefined
  if (b.length >= 12 && JXL_SIGNATURE.every((byte, i) => b[i] === byte)) return 'jxl'
  if (b.length >= 12 && b[0] === 0xff && b[1] === 0x0a) return isBinary(b, 2) ? 'jxl' : undefined
  return undefined
}

/**
 * Whether a byte of `b` from `start` (within its first {@link SNIFF_BYTES}) is no text
 * character. Any bits may follow a bare JPEG XL codestream's `FF 0A`, but its header and
 * entropy-coded data are binary; text behind those two bytes is a script or markup.
 */
function isBinary(b: Uint8Array, start: number): boolean {
  const end = Math.min(b.length, SNIFF_BYTES)
  for (let i = start; i < end; i++) {
    const c = b[i] as number
    if (c > 0x7e || (c < 0x20 && c !== 0x09 && c !== 0x0a && c !== 0x0d)) return true
  }
  return false
}
