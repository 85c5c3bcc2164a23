import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import sharp from 'sharp'
import { BUILT_IMAGES, bmp, DISGUISED, heifHeader, tiff } from '../../../test/support/images.ts'
import { SNIFF_BYTES, sniffImageFormat } from './sniff.ts'

describe('sniffImageFormat', () => {
  const pixel = () => sharp({ create: { width: 4, height: 4, channels: 3, background: '#c0ffee' } })

  for (const format of ['jpeg', 'png', 'webp', 'gif', 'tiff', 'avif'] as const) {
    it(`recognises a real ${format} file, whole or by its first bytes`, async () => {
      const bytes = await pixel().toFormat(format).toBuffer()
      assert.equal(sniffImageFormat(bytes, { complete: true }), format)
      assert.equal(sniffImageFormat(bytes.subarray(0, SNIFF_BYTES)), format)
    })
  }

  it('recognises real BMP, TIFF (both byte orders), HEIF and JPEG XL (container and bare codestream) files, whole or by their first bytes', () => {
    for (const [name, { bytes, format }] of Object.entries(BUILT_IMAGES)) {
      assert.equal(sniffImageFormat(bytes, { complete: true }), format, name)
      assert.equal(sniffImageFormat(bytes), format, name)
      assert.equal(sniffImageFormat(bytes.subarray(0, SNIFF_BYTES)), format, name)
    }
  })

  it('refuses bodies that only start like an image: first bytes of a format before text, or alone', () => {
    for (const [name, body] of Object.entries(DISGUISED)) {
      assert.equal(sniffImageFormat(body, { complete: true }), undefined, name)
      // As first bytes only, a TIFF's directory, a JPEG's first segment and the box after an
      // ftyp may lie past them: the whole body decides.
      const firstBytesPass = /\((tiff|avif)\)$/.test(name) || name === 'FF D8 FF + HTML (jpeg)'
      const format = /\((\w+)\)$/.exec(name)?.[1]
      assert.equal(sniffImageFormat(body), firstBytesPass ? format : undefined, name)
    }
  })

  it('checks each field of a BMP header', () => {
    assert.equal(sniffImageFormat(bmp(), { complete: true }), 'bmp')
    const broken: [why: string, edit: (file: Buffer) => void, headerSize?: 12][] = [
      ['reserved bytes not zero', (f) => f.writeUInt8(1, 7)],
      ['no DIB header is 20 bytes', (f) => f.writeUInt32LE(20, 14)],
      ['pixels inside the file header', (f) => f.writeUInt32LE(25, 10)],
      ['pixels inside the DIB header', (f) => f.writeUInt32LE(53, 10)],
      ['pixels past the end of the file', (f) => f.writeUInt32LE(58, 10)],
      ['two planes', (f) => f.writeUInt16LE(2, 26)],
      ['7 bits a pixel', (f) => f.writeUInt16LE(7, 28)],
      ['a core header with no plane', (f) => f.writeUInt16LE(0, 22), 12],
    ]
    for (const [why, edit, headerSize] of broken) {
      const file = bmp(headerSize)
      edit(file)
      assert.equal(sniffImageFormat(file, { complete: true }), undefined, why)
    }
    // Only the whole file shows where it ends.
    const far = bmp()
    far.writeUInt32LE(1 << 20, 10)
    assert.equal(sniffImageFormat(far), 'bmp')
    assert.equal(sniffImageFormat(far, { complete: true }), undefined)
    assert.equal(sniffImageFormat(bmp().subarray(0, 29)), undefined, 'a header cut before its bit count')
  })

  it('checks a TIFF first directory: past the header, not empty, inside a whole file', () => {
    for (const littleEndian of [true, false]) {
      const at = (file: Buffer, offset: number) =>
        littleEndian ? file.writeUInt32LE(offset, 4) : file.writeUInt32BE(offset, 4)
      const inHeader = tiff(littleEndian)
      at(inHeader, 4)
      assert.equal(sniffImageFormat(inHeader), undefined, 'a directory inside the header')
      const empty = tiff(littleEndian)
      empty.writeUInt16LE(0, 8)
      assert.equal(sniffImageFormat(empty), undefined, 'a directory of no entry')
      const far = tiff(littleEndian)
      at(far, 1 << 20)
      assert.equal(sniffImageFormat(far), 'tiff', 'a prefix: the directory may be further on')
      assert.equal(sniffImageFormat(far, { complete: true }), undefined, 'a whole file without it')
      const cut = tiff(littleEndian).subarray(0, 40)
      assert.equal(sniffImageFormat(cut), 'tiff')
      assert.equal(sniffImageFormat(cut, { complete: true }), undefined, 'entries past the end')
    }
  })

  it('recognises BigTIFF as tiff, from a real encoder and in both byte orders, and checks its header', async () => {
    const real = await pixel().tiff({ bigtiff: true }).toBuffer()
    assert.equal(real.readUInt16LE(2), 43, 'sharp wrote a BigTIFF')
    assert.equal(sniffImageFormat(real, { complete: true }), 'tiff')
    assert.equal(sniffImageFormat(real.subarray(0, SNIFF_BYTES)), 'tiff')
    /** A BigTIFF of one directory entry: 16-byte header, 8-byte count, a 20-byte entry, 8-byte next offset. */
    const bigTiff = (littleEndian: boolean) => {
      const file = Buffer.alloc(52)
      const u16 = (v: number, at: number) =>
        littleEndian ? file.writeUInt16LE(v, at) : file.writeUInt16BE(v, at)
      const u64 = (v: number, at: number) =>
        littleEndian ? file.writeBigUInt64LE(BigInt(v), at) : file.writeBigUInt64BE(BigInt(v), at)
      file.write(littleEndian ? 'II' : 'MM', 0, 'latin1')
      u16(43, 2)
      u16(8, 4)
      u64(16, 8)
      u64(1, 16)
      u16(256, 24) // ImageWidth
      return { file, u16, u64 }
    }
    for (const littleEndian of [true, false]) {
      const order = littleEndian ? 'II' : 'MM'
      assert.equal(sniffImageFormat(bigTiff(littleEndian).file, { complete: true }), 'tiff', order)
      const broken: [why: string, edit: (b: ReturnType<typeof bigTiff>) => void][] = [
        ['an offset size of 4', (b) => b.u16(4, 4)],
        ['a non-zero word after the offset size', (b) => b.u16(1, 6)],
        ['a directory inside the header', (b) => b.u64(8, 8)],
        ['a directory of no entry', (b) => b.u64(0, 16)],
      ]
      for (const [why, edit] of broken) {
        const b = bigTiff(littleEndian)
        edit(b)
        assert.equal(sniffImageFormat(b.file, { complete: true }), undefined, `${order}: ${why}`)
        assert.equal(sniffImageFormat(b.file), undefined, `${order}: ${why}, as first bytes`)
      }
      const far = bigTiff(littleEndian)
      far.u64(2 ** 40, 8)
      assert.equal(sniffImageFormat(far.file), 'tiff', `${order}: a prefix: the directory may be further on`)
      assert.equal(
        sniffImageFormat(far.file, { complete: true }),
        undefined,
        `${order}: a whole file without it`,
      )
      const many = bigTiff(littleEndian)
      many.u64(3, 16)
      assert.equal(sniffImageFormat(many.file), 'tiff', `${order}: entries past the first bytes`)
      assert.equal(
        sniffImageFormat(many.file, { complete: true }),
        undefined,
        `${order}: entries past the end`,
      )
      assert.equal(
        sniffImageFormat(bigTiff(littleEndian).file.subarray(0, 15)),
        undefined,
        `${order}: a cut header`,
      )
    }
    assert.equal(
      sniffImageFormat(Buffer.from('II+\u0000<?php system($_GET[1]); ?>')),
      undefined,
      'text behind the first bytes',
    )
  })

  it("checks a JPEG's first marker, after any fill bytes, and in a whole file its first segment", async () => {
    const jpeg = await pixel().jpeg().toBuffer()
    const filled = Buffer.concat([jpeg.subarray(0, 2), Buffer.from([0xff, 0xff]), jpeg.subarray(2)])
    assert.equal(sniffImageFormat(filled, { complete: true }), 'jpeg', 'fill bytes before the first marker')
    assert.equal(sniffImageFormat(filled.subarray(0, SNIFF_BYTES)), 'jpeg')
    assert.equal(sniffImageFormat(Buffer.from([0xff, 0xd8, 0xff, 0xff, 0xff])), undefined, 'fill bytes only')
    assert.equal(sniffImageFormat(Buffer.from([0xff, 0xd8, 0xff, 0x3c, 0x68])), undefined, 'no marker')
    const cut = Buffer.from(jpeg.subarray(0, 20))
    assert.equal(sniffImageFormat(cut, { complete: true }), undefined, 'a first segment past the end')
    const first = 4 + jpeg.readUInt16BE(4)
    const stray = (n: number) =>
      Buffer.concat([jpeg.subarray(0, first), Buffer.alloc(n), jpeg.subarray(first)])
    assert.equal(sniffImageFormat(stray(2), { complete: true }), 'jpeg', 'stray bytes a decoder skips')
    assert.equal(sniffImageFormat(stray(17), { complete: true }), undefined, 'more than 16 stray bytes')
    const longer = Buffer.from(jpeg)
    longer.writeUInt16BE(longer.readUInt16BE(4) + 1, 4)
    assert.equal(sniffImageFormat(longer, { complete: true }), undefined, 'no marker where the segment ends')
  })

  it('checks a GIF block, a PNG IHDR and a WebP frame header', async () => {
    const gif = await pixel().gif().toBuffer()
    assert.equal(sniffImageFormat(gif.subarray(0, 13)), 'gif', 'the block may lie past the first bytes')
    assert.equal(
      sniffImageFormat(gif.subarray(0, 13), { complete: true }),
      undefined,
      'a whole file reaches it',
    )
    // A 1×1 GIF87a without a global colour table: an image with a local one, its LZW data, the trailer.
    const noTable = Buffer.from(
      '474946383761010001000000002c000000000100010080000000ffffff02024c01003b',
      'hex',
    )
    assert.equal(sniffImageFormat(noTable, { complete: true }), 'gif', 'GIF87a without a global colour table')
    assert.equal((await sharp(noTable).metadata()).format, 'gif', 'a GIF libvips reads')
    const lzw = noTable.indexOf(Buffer.from('02024c', 'hex'))
    for (const bits of [0, 1, 9, 0x3b]) {
      const broken = Buffer.from(noTable)
      broken.writeUInt8(bits, lzw)
      assert.equal(sniffImageFormat(broken, { complete: true }), undefined, `an LZW code size of ${bits}`)
    }
    const trailerFirst = Buffer.concat([noTable.subarray(0, 13), Buffer.from(';')])
    assert.equal(sniffImageFormat(trailerFirst, { complete: true }), undefined, 'no image, only the trailer')
    const png = await pixel().png().toBuffer()
    const renamed = Buffer.from(png)
    renamed.write('IHDX', 12, 'latin1')
    assert.equal(sniffImageFormat(renamed), undefined, 'no IHDR first')
    assert.equal(sniffImageFormat(png.subarray(0, 32), { complete: true }), undefined, 'IHDR cut')
    for (const options of [{}, { lossless: true }, { alphaQuality: 50 }] as const) {
      const webp = await sharp({ create: { width: 4, height: 4, channels: 4, background: '#c0ffee80' } })
        .webp(options)
        .toBuffer()
      assert.equal(sniffImageFormat(webp, { complete: true }), 'webp', JSON.stringify(options))
      const broken = Buffer.from(webp)
      broken.writeUInt8(0x41, 20)
      broken.writeUInt8(0x41, 21)
      broken.writeUInt8(0x41, 23)
      assert.equal(sniffImageFormat(broken), undefined, `${JSON.stringify(options)}: its frame header broken`)
      const cut = webp.subarray(0, webp.length - 1)
      assert.equal(sniffImageFormat(cut, { complete: true }), undefined, 'a RIFF size past the end')
    }
  })

  it('reads an AVIF by a compatible brand too: its major brand may be mif1', async () => {
    const avif = Buffer.from(await pixel().avif().toBuffer())
    assert.equal(avif.toString('latin1', 8, 12), 'avif')
    avif.write('mif1', 8, 'latin1')
    assert.ok(avif.subarray(16, avif.readUInt32BE(0)).includes('avif'), 'avif among the compatible brands')
    assert.equal(sniffImageFormat(avif, { complete: true }), 'avif')
    assert.equal(sniffImageFormat(avif.subarray(0, SNIFF_BYTES)), 'avif')
    // A HEIF whose brands name no AVIF stays a HEIF.
    assert.equal(sniffImageFormat(heifHeader(), { complete: true }), 'heif')
  })

  it('checks the first WebP chunk and the size of an ftyp box', async () => {
    const webp = await pixel().webp().toBuffer()
    const renamed = Buffer.from(webp)
    renamed.write('<htm', 12, 'latin1')
    assert.equal(sniffImageFormat(renamed), undefined)
    const heif = heifHeader()
    for (const size of [8, 15, 23]) {
      heif.writeUInt32BE(size, 0)
      assert.equal(sniffImageFormat(heif), undefined, `an ftyp box of ${size} bytes`)
    }
    heif.writeUInt32BE(64, 0)
    assert.equal(sniffImageFormat(heif), 'heif')
    assert.equal(sniffImageFormat(heif, { complete: true }), undefined, 'an ftyp box past the end')
  })

  it('refuses what is not an image, whatever it claims', () => {
    for (const text of [
      '<!doctype html><html><body>404</body></html>',
      '{"error":"not found"}',
      '<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>',
      '',
      'GIF8',
      'RIFF\0\0\0\0WEBP',
    ]) {
      assert.equal(sniffImageFormat(Buffer.from(text)), undefined, text)
    }
    const mp4 = Buffer.concat([Buffer.from([0, 0, 0, 24]), Buffer.from('ftypisom'), Buffer.alloc(12)])
    assert.equal(sniffImageFormat(mp4), undefined)
    assert.equal(sniffImageFormat(Buffer.from([0xff, 0xd8])), undefined, 'a truncated JPEG marker')
    assert.equal(
      sniffImageFormat(Buffer.from([0xff, 0x0a, 0xfa, 0x17, 0, 0])),
      undefined,
      'a truncated JPEG XL codestream',
    )
    assert.equal(
      sniffImageFormat(Buffer.from('\xff\x0a#!/bin/sh\nrm -rf ~\n', 'latin1')),
      undefined,
      'FF 0A before text',
    )
  })
})
