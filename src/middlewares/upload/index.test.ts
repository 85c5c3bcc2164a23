import assert from 'node:assert/strict'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { describe, it } from 'node:test'
import sharp from 'sharp'
import { isIcError } from '../../errors.ts'
import { type UploadOptions, upload } from './index.ts'
import { type ImageType, multipartFile, sniffImageType } from './sniff.ts'

const sent: Record<string, string> = {}
const res = {
  headersSent: false,
  setHeader(name: string, value: string) {
    sent[name] = value
  },
} as unknown as ServerResponse

async function encode(format: 'jpeg' | 'png' | 'gif' | 'webp' | 'avif' | 'tiff'): Promise<Buffer> {
  return sharp({ create: { width: 8, height: 8, channels: 3, background: '#c33' } })
    .toFormat(format)
    .toBuffer()
}

function bmp(): Buffer {
  const out = Buffer.alloc(58)
  out.write('BM', 0, 'latin1')
  out.writeUInt32LE(58, 2)
  out.writeUInt32LE(54, 10)
  out.writeUInt32LE(40, 14)
  return out
}

describe('sniffImageType', () => {
  for (const format of ['jpeg', 'png', 'gif', 'webp', 'avif', 'tiff'] as const) {
    it(`recognises ${format} made by a real encoder`, async () => {
      assert.equal(sniffImageType(await encode(format)), format as ImageType)
    })
  }

  it('recognises BMP and HEIC headers', () => {
    assert.equal(sniffImageType(bmp()), 'bmp')
    const heic = Buffer.from('\0\0\0\x18ftypheic\0\0\0\0mif1heic', 'latin1')
    assert.equal(sniffImageType(heic), 'heic')
  })

  it('refuses what is not an image, whatever it claims', () => {
    for (const bytes of [
      Buffer.from('<!doctype html><html>'),
      Buffer.from('{"image":true}'),
      Buffer.from('%PDF-1.7'),
      Buffer.from('\0\0\0\x18ftypisom\0\0\0\0', 'latin1'),
      Buffer.from('RIFF\0\0\0\0WAVEfmt ', 'latin1'),
      Buffer.from('BM'),
      Buffer.from([0xff, 0xd8]),
      Buffer.alloc(0),
    ]) {
      assert.equal(sniffImageType(bytes), undefined, bytes.toString('latin1'))
    }
  })
})

describe('multipartFile', () => {
  const part = (headers: string, body: string | Buffer) =>
    Buffer.concat([Buffer.from(`--XyZ\r\n${headers}\r\n\r\n`), Buffer.from(body)])
  it('takes the part named file, else the first part with a filename', () => {
    const body = Buffer.concat([
      part('Content-Disposition: form-data; name="title"', 'hello'),
      Buffer.from('\r\n'),
      part('Content-Disposition: form-data; name="other"; filename="a.txt"', 'first'),
      Buffer.from('\r\n'),
      part(
        'Content-Disposition: form-data; name="file"; filename="b.png"\r\nContent-Type: image/png',
        'the-file',
      ),
      Buffer.from('\r\n--XyZ--\r\n'),
    ])
    assert.equal(multipartFile(body, 'XyZ')?.toString(), 'the-file')
    const noNamed = Buffer.concat([
      part('Content-Disposition: form-data; name="x"; filename="a"', 'first'),
      Buffer.from('\r\n--XyZ--\r\n'),
    ])
    assert.equal(multipartFile(noNamed, 'XyZ')?.toString(), 'first')
  })

  it('gives nothing for a body without a file or a well-formed part', () => {
    assert.equal(
      multipartFile(
        Buffer.from('--XyZ\r\nContent-Disposition: form-data; name="t"\r\n\r\nx\r\n--XyZ--'),
        'XyZ',
      ),
      undefined,
    )
    assert.equal(multipartFile(Buffer.from('--XyZ\r\nbroken'), 'XyZ'), undefined)
    assert.equal(multipartFile(Buffer.from('no boundary here'), 'XyZ'), undefined)
  })
})

describe('upload: refusals before the body is read', () => {
  function refusal(options: UploadOptions, headers: Record<string, string>) {
    try {
      upload(options)({ url: '/a.png', headers } as unknown as IncomingMessage, res)
    } catch (err) {
      assert.ok(isIcError(err))
      return err
    }
    assert.fail('refused')
  }

  it('is disabled by default: 403 IC_UPLOAD_DISABLED', () => {
    const err = refusal({}, { authorization: 'Bearer t' })
    assert.equal(err.status, 403)
    assert.equal(err.code, 'IC_UPLOAD_DISABLED')
  })

  it('needs a Bearer token it accepts: 401 IC_UPLOAD_UNAUTHORIZED with WWW-Authenticate', () => {
    const options = { enabled: true, tokens: ['t0ken'] }
    for (const authorization of [
      '',
      'Basic dDBrZW4=',
      'Bearer',
      'Bearer wrong',
      'Bearer t0ken extra',
      'bearer t0ke',
    ]) {
      const err = refusal(options, { authorization })
      assert.equal(err.code, 'IC_UPLOAD_UNAUTHORIZED', authorization)
      assert.match(err.headers['www-authenticate'] as string, /^Bearer/)
    }
  })

  it('refuses a declared Content-Length over maxBytes without reading: 413', () => {
    const err = refusal(
      { enabled: true, tokens: ['t'], maxBytes: 10 },
      { authorization: 'Bearer t', 'content-length': '11' },
    )
    assert.equal(err.status, 413)
    assert.equal(err.code, 'IC_UPLOAD_TOO_LARGE')
    assert.equal(sent.connection, 'close', 'the connection is closed rather than drained')
  })

  it('validates its options at construction, naming the option', () => {
    const cases: [UploadOptions, RegExp][] = [
      [{ enabled: true }, /`tokens` or `verifyToken`/],
      [{ enabled: 'yes' as never }, /`enabled`/],
      [{ maxBytes: 0 }, /`maxBytes` to be a positive integer, got 0/],
      [{ tokens: ['has space'] }, /`tokens`/],
      [{ types: ['svg' as never] }, /`types`/],
      [{ verifyToken: 'x' as never }, /`verifyToken`/],
    ]
    for (const [options, message] of cases) {
      assert.throws(
        () => upload(options),
        (err: Error) => err instanceof TypeError && message.test(err.message),
      )
    }
  })
})
