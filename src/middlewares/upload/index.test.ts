import assert from 'node:assert/strict'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { Readable } from 'node:stream'
import { describe, it } from 'node:test'
import sharp from 'sharp'
import { REFUSED_UPLOAD_PATHS } from '../../../test/support/upload-paths.ts'
import { isIcError } from '../../errors.ts'
import { type UploadOptions, upload } from './index.ts'
import { dispositionOf, multipartFile, parametersOf } from './multipart.ts'

/** A response that has sent nothing and records the headers set on it. */
function recordingResponse(): { res: ServerResponse; sent: Record<string, string> } {
  const sent: Record<string, string> = {}
  const res = {
    headersSent: false,
    setHeader(name: string, value: string) {
      sent[name] = value
    },
  } as unknown as ServerResponse
  return { res, sent }
}
const { res, sent } = recordingResponse()

async function encode(format: 'jpeg' | 'png' | 'webp' | 'avif' | 'tiff' | 'gif'): Promise<Buffer> {
  return sharp({ create: { width: 8, height: 8, channels: 3, background: '#c33' } })
    .toFormat(format)
    .toBuffer()
}

/** A request whose body is `body`, as the guard reads it (a stream with headers). */
function bodyRequest(body: Buffer | string, headers: Record<string, string>): IncomingMessage {
  return Object.assign(Readable.from([Buffer.from(body)]), {
    url: '/a',
    headers,
  }) as unknown as IncomingMessage
}

describe('upload: the body', () => {
  const options: UploadOptions = { enabled: true, tokens: ['t'] }
  const auth = { authorization: 'Bearer t' }

  for (const format of ['jpeg', 'png', 'gif', 'webp', 'avif', 'tiff'] as const) {
    it(`accepts ${format} made by a real encoder and publishes its bytes`, async () => {
      const image = await encode(format)
      const out = (await upload(options)(bodyRequest(image, auth), res)) as {
        upload: { body: Buffer; type: string }
      }
      assert.equal(out.upload.type, format)
      assert.ok(out.upload.body.equals(image))
    })
  }

  it('accepts a BigTIFF as tiff', async () => {
    const image = await sharp({ create: { width: 8, height: 8, channels: 3, background: '#c33' } })
      .tiff({ bigtiff: true })
      .toBuffer()
    const out = (await upload(options)(bodyRequest(image, auth), res)) as { upload: { type: string } }
    assert.equal(out.upload.type, 'tiff')
  })

  it('refuses formats outside `types`, and bytes that are no image whatever the Content-Type says', async () => {
    const png = await encode('png')
    await assert.rejects(
      Promise.resolve(upload({ ...options, types: ['jpeg'] })(bodyRequest(png, auth), res)),
      (err) => isIcError(err) && err.code === 'IC_UPLOAD_NOT_AN_IMAGE' && /png/.test(err.message),
    )
    for (const body of ['<!doctype html><html>', '{"image":true}', '%PDF-1.7', '']) {
      await assert.rejects(
        Promise.resolve(upload(options)(bodyRequest(body, { ...auth, 'content-type': 'image/png' }), res)),
        (err) => isIcError(err) && err.code === 'IC_UPLOAD_NOT_AN_IMAGE',
        body,
      )
    }
  })
})

describe('upload: a body that cannot be read any more', () => {
  const guard = upload({ enabled: true, tokens: ['t'] })
  const auth = { authorization: 'Bearer t' }
  async function codeOf(req: IncomingMessage): Promise<string> {
    try {
      await guard(req, res)
    } catch (err) {
      assert.ok(isIcError(err))
      return `${err.status} ${err.code}`
    }
    return 'accepted'
  }

  it('answers 400 naming the cause when a body parser read the body first, instead of waiting forever', async () => {
    const req = bodyRequest(await encode('png'), auth)
    for await (const _ of req) {
      // a body parser before upload()
    }
    assert.equal(await codeOf(req), '400 IC_UPLOAD_NOT_AN_IMAGE')
    const flowing = bodyRequest(await encode('png'), auth)
    flowing.on('data', () => {})
    assert.equal(await codeOf(flowing), '400 IC_UPLOAD_NOT_AN_IMAGE')
  })

  it('answers 499 when the request stream is already gone', async () => {
    const req = bodyRequest(await encode('png'), auth)
    req.destroy()
    assert.equal(await codeOf(req), '499 IC_CLIENT_CLOSED_REQUEST')
  })

  it('reads a stream paused on purpose', async () => {
    const req = bodyRequest(await encode('png'), auth)
    req.pause()
    assert.equal(await codeOf(req), 'accepted')
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

  it('reads the disposition parameters quoted or not, in any case, and only where they are', () => {
    const only = (headers: string) =>
      multipartFile(Buffer.concat([part(headers, 'data'), Buffer.from('\r\n--XyZ--\r\n')]), 'XyZ')?.toString()
    assert.equal(only('Content-Disposition: form-data; name=file'), 'data')
    assert.equal(only('content-disposition: form-data; NAME="file"'), 'data')
    assert.equal(only('Content-Disposition: form-data; name=pic; filename=a.png'), 'data')
    assert.equal(only("Content-Disposition: form-data; name=pic; filename*=UTF-8''%C3%A9.png"), 'data')
    assert.equal(only('Content-Disposition: form-data; name="title"'), undefined)
    // A `; name="file"` inside another parameter's quoted value, or in another header, is not the name.
    assert.equal(only('Content-Disposition: form-data; name="title"; x="; name=\\"file\\""'), undefined)
    assert.equal(
      only('X-Content-Disposition: form-data; name="file"\r\nContent-Disposition: form-data; name="t"'),
      undefined,
    )
    assert.equal(only('Content-Disposition: form-data; name="FILE"'), undefined)
    // As a browser sends a field named `photo\`: the backslash is not an escape of the closing quote.
    assert.equal(only('Content-Disposition: form-data; name="photo\\"; filename="a.png"'), 'data')
    assert.equal(dispositionOf('Content-Disposition: form-data; name="x\\"')?.get('name'), 'x\\')
    const named = Buffer.concat([
      part('Content-Disposition: form-data; name="pic"; filename="a; name=\\"file\\""', 'first'),
      Buffer.from('\r\n'),
      part('Content-Disposition: form-data; name="file"', 'named'),
      Buffer.from('\r\n--XyZ--\r\n'),
    ])
    assert.equal(multipartFile(named, 'XyZ')?.toString(), 'named')
    assert.deepEqual(
      [...(dispositionOf('Content-Disposition: form-data; name="a\\"b"; filename=c.png; name=dup') ?? [])],
      [
        ['name', 'a"b'],
        ['filename', 'c.png'],
      ],
    )
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
      [{ types: [] }, /`types` to be a non-empty array/],
      [{ enable: true } as never, /Unknown option `enable` of upload/],
      [{ types: 'png' as never }, /`types` to be a non-empty array/],
      [{ maxBytes: null as never }, /`maxBytes` to be a positive integer, got null/],
      [{ maxBytes: 10n as never }, /`maxBytes` to be a positive integer, got 10n/],
      [{ maxBytes: Number.NaN }, /`maxBytes` to be a positive integer, got NaN/],
      [{ enabled: 1n as never }, /`enabled` to be a boolean, got 1n/],
      [{ tokens: null as never }, /`tokens` to be an array .*got null/],
      [{ maxBytes: 2 ** 53 - 1 }, /`maxBytes` to be at most \d+ \(buffer\.constants\.MAX_LENGTH\)/],
    ]
    for (const [options, message] of cases) {
      assert.throws(
        () => upload(options),
        (err: Error) => err instanceof TypeError && message.test(err.message),
      )
    }
  })
})

describe('upload: the storage key', () => {
  const guard = upload({ enabled: true, tokens: ['t'] })
  async function keyOf(url: string): Promise<string> {
    const req = Object.assign(bodyRequest(await encode('png'), { authorization: 'Bearer t' }), { url })
    try {
      const out = (await guard(req, res)) as { upload: { key: string } }
      return out.upload.key
    } catch (err) {
      assert.ok(isIcError(err))
      const items = err.headers['x-ic-error-validation']
      assert.equal(err.code, 'IS_VALIDATION_ERROR', url)
      assert.match(String(items), /"path":\["path"\],"type":"upload.path"/)
      return 'refused'
    }
  }

  it('is the request path, decoded, without its leading slash or its query', async () => {
    assert.equal(await keyOf('/a.png'), 'a.png')
    assert.equal(await keyOf('/images/2024/a%20b.png?width=10'), 'images/2024/a b.png')
    assert.equal(await keyOf('/images/%C3%A9t%C3%A9.png'), 'images/été.png')
    assert.equal(await keyOf('/images/a..b/.hidden/x.y.png'), 'images/a..b/.hidden/x.y.png')
    assert.equal(await keyOf('http://host/images/a.png?v=1'), 'images/a.png', 'an absolute-form target')
    assert.equal(await keyOf('/images/100%25.png'), 'images/100%.png')
  })

  it('refuses a path that names no file or could name another one', async () => {
    for (const url of REFUSED_UPLOAD_PATHS) {
      assert.equal(await keyOf(url), 'refused', url)
    }
  })
})

describe('upload: a verifyToken that fails', () => {
  it('fails the request with its error and closes the connection when a body is on its way', async () => {
    const down = new Error('token database unreachable')
    const verifiers = [
      () => {
        throw down
      },
      () => Promise.reject(down),
    ]
    for (const verifyToken of verifiers) {
      const { res: response, sent: headers } = recordingResponse()
      const req = bodyRequest(await encode('png'), { authorization: 'Bearer db', 'content-length': '100' })
      let out: unknown
      assert.doesNotThrow(() => {
        out = upload({ enabled: true, verifyToken })(req, response)
      }, String(verifyToken))
      await assert.rejects(Promise.resolve(out), down)
      assert.equal(headers.connection, 'close', String(verifyToken))
    }
  })
})

describe('multipart limits and the boundary parameter', () => {
  const tiny = '--XyZ\r\nContent-Disposition: form-data; name="t"\r\n\r\nx\r\n'
  const filePart = '--XyZ\r\nContent-Disposition: form-data; name="file"\r\n\r\nthe-file\r\n--XyZ--\r\n'
  const refused = (body: string, message: RegExp) =>
    assert.throws(
      () => multipartFile(Buffer.from(body), 'XyZ'),
      (err) =>
        isIcError(err) &&
        err.status === 400 &&
        err.code === 'IC_UPLOAD_NOT_AN_IMAGE' &&
        message.test(err.message),
    )

  it('reads up to 100 parts before the file part, and refuses more', () => {
    assert.equal(multipartFile(Buffer.from(tiny.repeat(99) + filePart), 'XyZ')?.toString(), 'the-file')
    refused(tiny.repeat(100) + filePart, /more than 100 parts/)
  })

  it('takes a file part found before the cap, whatever follows it', () => {
    const unnamed =
      '--XyZ\r\nContent-Disposition: form-data; name="photo"; filename="a.png"\r\n\r\nthe-photo\r\n'
    assert.equal(multipartFile(Buffer.from(unnamed + tiny.repeat(120)), 'XyZ')?.toString(), 'the-photo')
  })

  it('refuses a part with more than 8 KiB of headers', () => {
    const long = `--XyZ\r\nContent-Disposition: form-data; name="file"\r\nX-Pad: ${'a'.repeat(8200)}\r\n\r\nthe-file\r\n--XyZ--\r\n`
    refused(long, /more than 8192 bytes of headers/)
  })

  it('takes the boundary parameter, not a `boundary=` inside another quoted parameter', () => {
    assert.equal(
      parametersOf('multipart/form-data; x="; boundary=EVIL"; boundary=XyZ').get('boundary'),
      'XyZ',
    )
    assert.equal(parametersOf('multipart/form-data; BOUNDARY="a b;c"').get('boundary'), 'a b;c')
    assert.equal(parametersOf('multipart/form-data;boundary=XyZ; boundary=second').get('boundary'), 'XyZ')
    assert.equal(parametersOf('multipart/form-data').get('boundary'), undefined)
    assert.equal(
      parametersOf('multipart/form-data; charset; boundary=B').get('boundary'),
      'B',
      'a malformed one skipped',
    )
  })
})
