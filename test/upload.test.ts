import assert from 'node:assert/strict'
import { once } from 'node:events'
import type { ServerResponse } from 'node:http'
import { connect, type Socket } from 'node:net'
import { after, before, describe, it } from 'node:test'
import { brotliCompressSync, gzipSync } from 'node:zlib'
import { bodyParser } from '@koa/bodyparser'
import express5 from 'express'
import express4 from 'express4'
import sharp from 'sharp'
import {
  type Adapter,
  type Framework,
  frameworks,
  type RouteSpec,
  type RunningApp,
  startApp,
} from './support/harness.ts'
import { BUILT_IMAGES, DISGUISED } from './support/images.ts'
import { REFUSED_UPLOAD_PATHS } from './support/upload-paths.ts'

const TOKEN = 'upl0ad-t0ken'

interface RawAnswer {
  /** The head and body the server sent, as latin1 text. */
  readonly text: string
  /** Whether the server closed the connection before `waitMs` passed. */
  readonly closedByServer: boolean
}

/**
 * Writes `head` and then `parts` on a raw socket (a number is a pause, in ms) and collects
 * what comes back until the server closes the connection or `waitMs` passes.
 */
async function rawExchange(
  url: string,
  head: string,
  parts: readonly (Buffer | string | number)[],
  waitMs: number,
): Promise<RawAnswer> {
  const socket: Socket = connect(Number(new URL(url).port), '127.0.0.1')
  socket.on('error', () => {})
  let text = ''
  let closedByServer = false
  socket.on('data', (chunk: Buffer) => {
    text += chunk.toString('latin1')
  })
  socket.on('end', () => {
    closedByServer = true
  })
  await once(socket, 'connect')
  socket.write(head)
  for (const part of parts) {
    if (typeof part === 'number') await new Promise((resolve) => setTimeout(resolve, part))
    else if (!socket.destroyed && socket.writable) socket.write(part)
  }
  const deadline = Date.now() + waitMs
  while (!closedByServer && !socket.destroyed && Date.now() < deadline)
    await new Promise((resolve) => setTimeout(resolve, 10))
  socket.destroy()
  return { text, closedByServer: closedByServer || socket.readableEnded }
}

function headerOf(text: string, name: string): string | undefined {
  const line = text.split('\r\n').find((l) => l.toLowerCase().startsWith(`${name.toLowerCase()}:`))
  return line?.slice(name.length + 1).trim()
}

/** An 8×8 PNG made by a real encoder. */
const tinyPng = (): Promise<Buffer> =>
  sharp({ create: { width: 8, height: 8, channels: 3, background: '#c33' } })
    .png()
    .toBuffer()

/** An app whose `POST /images/x.png` runs upload(), then `more` (the adapter's or the framework's middlewares), then `handle`. */
function startUploadApp(
  framework: Framework,
  more: (a: Adapter) => readonly unknown[],
  handle: RouteSpec['handle'],
): Promise<RunningApp> {
  return startApp(framework, {
    routes: [
      {
        method: 'POST',
        path: '/images/x.png',
        use: (a) => [a.upload({ enabled: true, tokens: [TOKEN] }), ...more(a)],
        handle,
      },
    ],
  })
}

for (const framework of frameworks) {
  describe(`upload() on ${framework}`, () => {
    let app: RunningApp
    let image: Buffer
    const stored: string[] = []
    before(async () => {
      image = await tinyPng()
      app = await startApp(framework, {
        routes: [
          {
            method: 'POST',
            path: '/timed/a.png',
            use: (a) => [
              a.deadline({ timeoutMs: 150 }),
              a.upload({ enabled: true, tokens: [TOKEN], maxBytes: 4096 }),
            ],
            handle: ({ req }) => {
              stored.push(req.url ?? '')
              return { status: 201 }
            },
          },
          {
            method: 'POST',
            path: '/plain/a.png',
            use: (a) => [a.upload({ enabled: true, tokens: [TOKEN], maxBytes: 4096 })],
            handle: ({ req }) => {
              stored.push(req.url ?? '')
              return { status: 201 }
            },
          },
          {
            method: 'POST',
            path: '/watched/a.png',
            use: (a) => [a.clientClosed(), a.upload({ enabled: true, tokens: [TOKEN], maxBytes: 4096 })],
            handle: ({ req }) => {
              stored.push(req.url ?? '')
              return { status: 201 }
            },
          },
        ],
      })
    })
    after(() => app.close())

    /** Sends the first 10 bytes of an upload to `path`, then leaves; resolves once it is reported. */
    async function leaveMidUpload(path: string, ending: 'a FIN' | 'a reset'): Promise<void> {
      const reportsBefore = app.reports.length
      const socket = connect(Number(new URL(app.url).port), '127.0.0.1')
      socket.on('error', () => {})
      await once(socket, 'connect')
      socket.write(
        `POST ${path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${TOKEN}\r\nContent-Length: ${image.length}\r\n\r\n`,
      )
      socket.write(image.subarray(0, 10))
      await new Promise((resolve) => setTimeout(resolve, 50))
      if (ending === 'a FIN') socket.end()
      else socket.resetAndDestroy()
      const until = Date.now() + 2000
      while (app.reports.length === reportsBefore && Date.now() < until)
        await new Promise((resolve) => setTimeout(resolve, 10))
      await new Promise((resolve) => setTimeout(resolve, 50))
      socket.destroy()
    }

    // Node's parser fails the body with HPE_INVALID_EOF_STATE: it is the client leaving, not a failure of ours.
    it('reports a client closing its connection mid-upload (a FIN) as the 499 clientClosed() aborted with', async () => {
      stored.length = 0
      await leaveMidUpload('/watched/a.png', 'a FIN')
      assert.deepEqual(stored, [])
      const report = app.reports.at(-1)
      assert.deepEqual(
        [report?.status, report?.code, report?.outcome],
        [499, 'IC_CLIENT_CLOSED_REQUEST', 'client-gone'],
      )
      assert.equal((report?.error as { code?: unknown } | undefined)?.code, 'IC_CLIENT_CLOSED_REQUEST')
    })

    // Koa hears the parser's HPE_INVALID_EOF_STATE (a FIN) or the socket's ECONNRESET before the
    // upload's own rejection: the app must hear the departure, not a server failure.
    for (const ending of ['a FIN', 'a reset'] as const) {
      it(`reports a client leaving mid-upload with ${ending}, without clientClosed(), as a 499, and emits nothing else on Koa`, async () => {
        stored.length = 0
        const reportsBefore = app.reports.length
        const emittedBefore = app.emitted.length
        await leaveMidUpload('/plain/a.png', ending)
        assert.deepEqual(stored, [])
        assert.deepEqual(
          app.reports.slice(reportsBefore).map((r) => [r.status, r.code, r.outcome]),
          [[499, 'IC_CLIENT_CLOSED_REQUEST', 'client-gone']],
        )
        assert.deepEqual(
          app.emitted.slice(emittedBefore).map((e) => (e as { code?: unknown }).code),
          framework.startsWith('koa') ? ['IC_CLIENT_CLOSED_REQUEST'] : [],
        )
      })
    }

    it('stops reading at a deadline mid-upload: 504 with Connection: close, and the handler never runs', async () => {
      stored.length = 0
      const head = `POST /timed/a.png HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${TOKEN}\r\nContent-Length: ${image.length}\r\n\r\n`
      // The rest of the body comes after the deadline: kept alive, the server would read it and store the upload.
      const answer = await rawExchange(app.url, head, [image.subarray(0, 10), 400, image.subarray(10)], 1000)
      await new Promise((resolve) => setTimeout(resolve, 50))
      assert.deepEqual(stored, [])
      assert.match(answer.text, /^HTTP\/1\.1 504 /)
      assert.equal(headerOf(answer.text, 'x-ic-error-code'), 'IC_BACKEND_TIMEOUT')
      assert.equal(headerOf(answer.text, 'connection'), 'close')
      assert.ok(answer.closedByServer, 'the server closes the connection')
      assert.deepEqual(
        app.reports.slice(-1).map((r) => [r.status, r.code]),
        [[504, 'IC_BACKEND_TIMEOUT']],
      )
    })

    it('does not drain a chunked body past maxBytes after a deadline 504', async () => {
      const head = `POST /timed/a.png HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${TOKEN}\r\nTransfer-Encoding: chunked\r\n\r\n`
      const chunk = `4000\r\n${'x'.repeat(0x4000)}\r\n`
      // 10 bytes, the deadline, then 4 MiB: a keep-alive connection would read all of it.
      const answer = await rawExchange(
        app.url,
        head,
        ['a\r\n0123456789\r\n', 300, ...Array.from({ length: 256 }, () => chunk)],
        1000,
      )
      assert.match(answer.text, /^HTTP\/1\.1 504 /)
      assert.equal(headerOf(answer.text, 'connection'), 'close')
      assert.ok(answer.closedByServer, 'the server closes the connection')
    })
  })
}

for (const framework of frameworks) {
  describe(`upload() storage key on ${framework}`, () => {
    let app: RunningApp
    let image: Buffer
    before(async () => {
      image = await tinyPng()
      // Mounted for every path, as an image store would be: no route pattern stands between the path and the key.
      const answerKey = framework.startsWith('koa')
        ? (ctx: { state: { upload: { key: string } }; status: number; body: unknown }) => {
            ctx.status = 201
            ctx.body = JSON.stringify({ key: ctx.state.upload.key })
          }
        : (_req: unknown, res: ServerResponse & { locals: { upload: { key: string } } }) => {
            res.statusCode = 201
            res.end(JSON.stringify({ key: res.locals.upload.key }))
          }
      app = await startApp(framework, {
        use: (a) => [a.upload({ enabled: true, tokens: [TOKEN] }), answerKey],
        routes: [],
      })
    })
    after(() => app.close())

    const post = (path: string) =>
      rawExchange(
        app.url,
        `POST ${path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${TOKEN}\r\nContent-Length: ${image.length}\r\nConnection: close\r\n\r\n`,
        [image],
        1000,
      )

    it('publishes the decoded path without its leading slash as `key`', async () => {
      const answer = await post('/images/2024/a%20b.png?v=1')
      assert.match(answer.text, /^HTTP\/1\.1 201 /)
      assert.deepEqual(JSON.parse(answer.text.slice(answer.text.indexOf('\r\n\r\n') + 4)), {
        key: 'images/2024/a b.png',
      })
    })

    const postMultipart = (contentType: string, body: Buffer) =>
      rawExchange(
        app.url,
        `POST /images/a.png HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${TOKEN}\r\nContent-Type: ${contentType}\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n`,
        [body],
        3000,
      )

    it('reads the real boundary of a Content-Type whose quoted parameter holds `boundary=`', async () => {
      const body = Buffer.concat([
        Buffer.from('--XyZ\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n\r\n'),
        image,
        Buffer.from('\r\n--XyZ--\r\n'),
      ])
      const answer = await postMultipart('multipart/form-data; x="; boundary=EVIL"; boundary=XyZ', body)
      assert.match(answer.text, /^HTTP\/1\.1 201 /)
    })

    it('refuses a multipart body of more than 100 parts before its file with 400', async () => {
      const tiny = Buffer.from('--XyZ\r\nContent-Disposition: form-data; name="t"\r\n\r\nx\r\n')
      const answer = await postMultipart(
        'multipart/form-data; boundary=XyZ',
        Buffer.concat(Array(101).fill(tiny)),
      )
      assert.match(answer.text, /^HTTP\/1\.1 400 /)
      assert.equal(headerOf(answer.text, 'x-ic-error-code'), 'IC_UPLOAD_NOT_AN_IMAGE')
      assert.match(answer.text, /more than 100 parts/)
    })

    it('refuses paths that would store elsewhere with 400 IS_VALIDATION_ERROR, before reading the body', async () => {
      // Every refused target a raw request line can carry ('' and '*' cannot name a resource).
      for (const path of REFUSED_UPLOAD_PATHS.filter((p) => p !== '' && p !== '*')) {
        const answer = await post(path)
        assert.match(answer.text, /^HTTP\/1\.1 400 /, path)
        assert.equal(headerOf(answer.text, 'x-ic-error-code'), 'IS_VALIDATION_ERROR', path)
        assert.match(headerOf(answer.text, 'x-ic-error-validation') ?? '', /"path":\["path"\]/, path)
      }
    })
  })
}

for (const framework of frameworks) {
  describe(`upload() image check on ${framework}`, () => {
    let app: RunningApp
    before(async () => {
      app = await startApp(framework, {
        routes: [
          {
            method: 'POST',
            path: '/images/x.png',
            use: (a) => [a.upload({ enabled: true, tokens: [TOKEN] })],
            handle: ({ locals }) => ({ status: 201, body: (locals.upload as { type: string }).type }),
          },
        ],
      })
    })
    after(() => app.close())

    // The Content-Type is not trusted: these are sent as the image they claim to be.
    const send = (body: Buffer, contentType = 'image/png') =>
      rawExchange(
        app.url,
        `POST /images/x.png HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${TOKEN}\r\nContent-Type: ${contentType}\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n`,
        [body],
        2000,
      )

    for (const [name, body] of Object.entries(DISGUISED)) {
      it(`refuses ${name}: first bytes of an image, then text: 400 IC_UPLOAD_NOT_AN_IMAGE`, async () => {
        const answer = await send(body)
        assert.match(answer.text, /^HTTP\/1\.1 400 /)
        assert.equal(headerOf(answer.text, 'x-ic-error-code'), 'IC_UPLOAD_NOT_AN_IMAGE')
      })
    }

    it('accepts real BMP, TIFF (both byte orders), HEIF and JPEG XL (container) files', async () => {
      for (const [name, { bytes, format }] of Object.entries(BUILT_IMAGES)) {
        const answer = await send(bytes, 'application/octet-stream')
        assert.match(answer.text, /^HTTP\/1\.1 201 /, name)
        assert.ok(answer.text.endsWith(`\r\n\r\n${format}`), answer.text)
      }
    })

    it('refuses a compressed upload with 415 IC_UPLOAD_ENCODING_UNSUPPORTED and Accept-Encoding: identity, before reading it', async () => {
      const bmp = (BUILT_IMAGES['bmp (info header)'] as { bytes: Buffer }).bytes
      const sendEncoded = (encoding: string, body: Buffer) =>
        rawExchange(
          app.url,
          `POST /images/x.png HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${TOKEN}\r\nContent-Encoding: ${encoding}\r\nContent-Length: ${body.length}\r\n\r\n`,
          [body],
          2000,
        )
      // Compressed, or raw bytes claiming to be: neither is read as the image.
      for (const [encoding, body] of [
        ['gzip', gzipSync(bmp)],
        ['br', brotliCompressSync(bmp)],
        ['GZIP, identity', gzipSync(bmp)],
        ['deflate', bmp],
      ] as const) {
        const answer = await sendEncoded(encoding, body)
        assert.match(answer.text, /^HTTP\/1\.1 415 /, encoding)
        assert.equal(headerOf(answer.text, 'x-ic-error-code'), 'IC_UPLOAD_ENCODING_UNSUPPORTED', encoding)
        assert.equal(headerOf(answer.text, 'accept-encoding'), 'identity', encoding)
        // The body is on its way and left unread: kept alive, Node would read all of it.
        assert.equal(headerOf(answer.text, 'connection'), 'close', encoding)
        assert.ok(answer.closedByServer, encoding)
      }
      for (const encoding of ['identity', 'Identity ']) {
        const answer = await sendEncoded(encoding, bmp)
        assert.match(answer.text, /^HTTP\/1\.1 201 /, encoding)
      }
      // A transfer coding Node leaves undecoded is the same: raw bytes labelled gzip, or gzip bytes.
      for (const body of [bmp, gzipSync(bmp)]) {
        const answer = await rawExchange(
          app.url,
          `POST /images/x.png HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${TOKEN}\r\nTransfer-Encoding: gzip, chunked\r\n\r\n`,
          [`${body.length.toString(16)}\r\n`, body, '\r\n0\r\n\r\n'],
          2000,
        )
        assert.match(answer.text, /^HTTP\/1\.1 415 /)
        assert.equal(headerOf(answer.text, 'x-ic-error-code'), 'IC_UPLOAD_ENCODING_UNSUPPORTED')
      }
      const chunked = await rawExchange(
        app.url,
        `POST /images/x.png HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${TOKEN}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n`,
        [`${bmp.length.toString(16)}\r\n`, bmp, '\r\n0\r\n\r\n'],
        2000,
      )
      assert.match(chunked.text, /^HTTP\/1\.1 201 /)
    })
  })
}

/**
 * The framework's own body parsers, told to take any Content-Type: mounted after upload(),
 * each must see the body as read, not try to read it again.
 */
function bodyParsersOf(framework: Framework): readonly unknown[] {
  if (framework === 'koa2' || framework === 'koa3') return [bodyParser({ detectJSON: () => true })]
  const express = framework === 'express4' ? express4 : express5
  return [
    express.json({ type: () => true }),
    express.raw({ type: () => true }),
    express.text({ type: () => true }),
  ]
}

for (const framework of frameworks) {
  describe(`upload() before a body parser, and Expect: 100-continue, on ${framework}`, () => {
    let parsed: RunningApp
    let app: RunningApp
    let image: Buffer
    before(async () => {
      image = await tinyPng()
      parsed = await startUploadApp(
        framework,
        () => bodyParsersOf(framework),
        ({ locals }) => ({ status: 201, body: String((locals.upload as { body: Buffer }).body.length) }),
      )
      app = await startUploadApp(
        framework,
        () => [],
        () => ({ status: 201 }),
      )
    })
    after(async () => {
      await parsed.close()
      await app.close()
    })

    // The client chooses the Content-Type: a JSON label on image bytes must not turn into a 500.
    for (const contentType of ['application/json', 'text/plain', 'image/png']) {
      it(`leaves the body upload() read to it (Content-Type: ${contentType}): 201, not the parser's 500`, async () => {
        const response = await fetch(`${parsed.url}/images/x.png`, {
          method: 'POST',
          headers: { authorization: `Bearer ${TOKEN}`, 'content-type': contentType },
          body: image,
        })
        assert.equal(response.status, 201, await response.clone().text())
        assert.equal(await response.text(), String(image.length))
        assert.deepEqual(parsed.reports, [])
      })
    }

    /** Sends the head, waits as a client waiting for 100 Continue would, then sends the body. */
    const send = (token: string) =>
      rawExchange(
        app.url,
        `POST /images/x.png HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}\r\nExpect: 100-continue\r\nContent-Length: ${image.length}\r\n\r\n`,
        [300, image],
        2000,
      )

    it('sends 100 Continue once the upload is authorised, when the app decides on it (checkContinue)', async () => {
      const decide = (req: unknown, res: unknown) => app.server.emit('request', req, res)
      app.server.on('checkContinue', decide)
      try {
        const accepted = await send(TOKEN)
        assert.match(accepted.text, /^HTTP\/1\.1 100 Continue\r\n\r\nHTTP\/1\.1 201 /)
        // Refused before the body: no 100, so a waiting client never sends it; the connection closes.
        const refused = await send('wrong')
        assert.match(refused.text, /^HTTP\/1\.1 401 /)
        assert.ok(refused.closedByServer)
        const tooLarge = await rawExchange(
          app.url,
          `POST /images/x.png HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${TOKEN}\r\nExpect: 100-continue\r\nContent-Length: 99999999999\r\n\r\n`,
          [],
          2000,
        )
        assert.match(tooLarge.text, /^HTTP\/1\.1 413 /)
        assert.ok(tooLarge.closedByServer)
      } finally {
        app.server.off('checkContinue', decide)
      }
    })

    it('sends one 100 Continue when Node sent it already (no checkContinue listener)', async () => {
      const answer = await send(TOKEN)
      assert.match(answer.text, /^HTTP\/1\.1 100 Continue\r\n\r\nHTTP\/1\.1 201 /)
      assert.equal(answer.text.split('100 Continue').length, 2)
    })
  })
}
