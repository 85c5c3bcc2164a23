import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import sharp from 'sharp'
import { sniffImageFormat } from './sniff.ts'

describe('sniffImageFormat', () => {
  const pixel = () => sharp({ create: { width: 4, height: 4, channels: 3, background: '#c0ffee' } })

  for (const format of ['jpeg', 'png', 'webp', 'gif', 'tiff', 'avif'] as const) {
    it(`recognises a real ${format} file`, async () => {
      const bytes = await pixel().toFormat(format).toBuffer()
      assert.equal(sniffImageFormat(bytes), format)
    })
  }

  it('recognises BMP, HEIF and JPEG XL headers', () => {
    const bmp = Buffer.concat([Buffer.from('BM'), Buffer.alloc(60)])
    assert.equal(sniffImageFormat(bmp), 'bmp')
    const heif = Buffer.concat([Buffer.from([0, 0, 0, 24]), Buffer.from('ftypheic'), Buffer.alloc(12)])
    assert.equal(sniffImageFormat(heif), 'heif')
    assert.equal(sniffImageFormat(Buffer.from([0xff, 0x0a, 1, 2])), 'jxl')
    const jxlBox = Buffer.concat([
      Buffer.from([0, 0, 0, 0x0c]),
      Buffer.from('JXL '),
      Buffer.from([0x0d, 0x0a, 0x87, 0x0a]),
    ])
    assert.equal(sniffImageFormat(jxlBox), 'jxl')
  })

  it('refuses what is not an image, whatever it claims', () => {
    for (const text of [
      '<!doctype html><html><body>404</body></html>',
      '{"error":"not found"}',
      '<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>',
      '',
      'GIF8',
    ]) {
      assert.equal(sniffImageFormat(Buffer.from(text)), undefined, text)
    }
    const mp4 = Buffer.concat([Buffer.from([0, 0, 0, 24]), Buffer.from('ftypisom'), Buffer.alloc(12)])
    assert.equal(sniffImageFormat(mp4), undefined)
    assert.equal(sniffImageFormat(Buffer.from([0xff, 0xd8])), undefined, 'a truncated JPEG marker')
  })
})
