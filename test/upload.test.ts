import assert from 'node:assert/strict'
import { once } from 'node:events'
import { connect, type Socket } from 'node:net'
import { after, before, describe, it } from 'node:test'
import sharp from 'sharp'
import { frameworks, type RunningApp, startApp } from './support/harness.ts'

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

for (const framework of frameworks) {
  describe(`upload() on ${framework}`, () => {
    let app: RunningApp
    let image: Buffer
    const stored: string[] = []
    before(async () => {
      image = await sharp({ create: { width: 8, height: 8, channels: 3, background: '#c33' } })
        .png()
        .toBuffer()
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
        ],
      })
    })
    after(() => app.close())

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
