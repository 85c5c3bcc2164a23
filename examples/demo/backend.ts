import { once } from 'node:events'
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo, Socket } from 'node:net'
import sharp from 'sharp'

/**
 * Options of {@link startDemoBackend}.
 *
 * @example
 * const backend = await startDemoBackend({ port: 0, slowMs: 3000 })
 */
export interface DemoBackendOptions {
  /** Port to listen on; `0` picks a free one. @default 0 */
  readonly port?: number
  /** Address to listen on. @default '127.0.0.1' */
  readonly host?: string
  /** How long `/slow.jpg` waits before answering, in milliseconds. @default 5000 */
  readonly slowMs?: number
  /**
   * Where `/redirect-private.jpg` points: an address the image API must refuse to fetch.
   * @default `http://127.0.0.2:<this port>/sample.jpg`, a loopback address outside the
   * API's allow-list (loopback, so that even a broken guard sends nothing off the machine)
   */
  readonly privateRedirectUrl?: string
  /** Called with every request the backend receives (tests watch the backend's side of a fetch). */
  readonly onRequest?: (req: IncomingMessage, res: ServerResponse) => void
}

/**
 * A running demo backend.
 *
 * @example
 * const backend = await startDemoBackend()
 * console.log(backend.url) // http://127.0.0.1:40123
 * await backend.close()
 */
export interface DemoBackend {
  readonly url: string
  /** Stops listening and destroys open sockets, the hanging ones included. */
  close(): Promise<void>
}

/** The paths the demo backend serves, for the page and the README. */
export const backendPaths = {
  jpeg: '/sample.jpg',
  png: '/sample.png',
  webp: '/sample.webp',
  redirect: '/redirect/sample.jpg',
  slow: '/slow.jpg',
  hang: '/hang.jpg',
  notAnImage: '/not-an-image.jpg',
  status: '/status/',
  privateRedirect: '/redirect-private.jpg',
} as const

const SAMPLE_WIDTH = 640
const SAMPLE_HEIGHT = 426

function sampleSvg(): string {
  const stripes = Array.from(
    { length: 8 },
    (_, i) =>
      `<rect x="${i * 80}" y="330" width="80" height="96" fill="hsl(${i * 45} 70% 55%)"/>` +
      `<text x="${i * 80 + 40}" y="385" font-size="22" text-anchor="middle" fill="#fff">${i + 1}</text>`,
  ).join('')
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${SAMPLE_WIDTH}" height="${SAMPLE_HEIGHT}">
  <defs><linearGradient id="sky" x1="0" y1="0" x2="1" y2="1">
    <stop offset="0" stop-color="#1e3c72"/><stop offset="1" stop-color="#2a9d8f"/></linearGradient></defs>
  <rect width="100%" height="100%" fill="url(#sky)"/>
  <circle cx="500" cy="110" r="60" fill="#f4d35e"/>
  <path d="M0 330 L160 170 L260 260 L380 120 L640 330 Z" fill="#264653"/>
  <text x="32" y="72" font-family="DejaVu Sans, sans-serif" font-size="44" font-weight="bold" fill="#fff">sample</text>
  <text x="32" y="108" font-family="DejaVu Sans, sans-serif" font-size="20" fill="#e9f5f2">${SAMPLE_WIDTH}×${SAMPLE_HEIGHT} from the demo backend</text>
  ${stripes}
</svg>`
}

type SampleFormat = 'jpeg' | 'png' | 'webp'
const CONTENT_TYPES: Readonly<Record<SampleFormat, string>> = {
  jpeg: 'image/jpeg',
  png: 'image/png',
  webp: 'image/webp',
}

/**
 * Starts the embedded demo backend: sample images made with sharp on first request (nothing
 * heavy at boot), and paths that misbehave on purpose so the image API has every failure to
 * show: `/slow.jpg`, `/hang.jpg` (never answers), `/not-an-image.jpg` (HTML),
 * `/status/NNN` (any status), `/redirect-private.jpg` (a redirect into a private address).
 *
 * @example
 * const backend = await startDemoBackend({ port: 0 })
 * const res = await fetch(`${backend.url}/sample.png`)
 * await backend.close()
 */
export async function startDemoBackend(options: Readonly<DemoBackendOptions> = {}): Promise<DemoBackend> {
  const { port = 0, host = '127.0.0.1', slowMs = 5000, onRequest } = options
  let privateRedirectUrl = options.privateRedirectUrl ?? ''
  const samples = new Map<SampleFormat, Promise<Buffer>>()
  const sample = (format: SampleFormat): Promise<Buffer> => {
    let made = samples.get(format)
    if (made === undefined) {
      made = sharp(Buffer.from(sampleSvg())).toFormat(format, { quality: 85 }).toBuffer()
      samples.set(format, made)
    }
    return made
  }

  const sendSample = (res: ServerResponse, format: SampleFormat): void => {
    sample(format).then(
      (body) => {
        if (res.destroyed) return
        res.writeHead(200, {
          'content-type': CONTENT_TYPES[format],
          'content-length': body.length,
          'cache-control': 'public, max-age=3600',
        })
        res.end(body)
      },
      (err: unknown) => {
        res.writeHead(500, { 'content-type': 'text/plain' })
        res.end(`could not make the sample: ${String(err)}`)
      },
    )
  }

  const handle = (req: IncomingMessage, res: ServerResponse): void => {
    onRequest?.(req, res)
    const path = (req.url ?? '/').split('?')[0] ?? '/'
    const text = (status: number, body: string, type = 'text/plain; charset=utf-8'): void => {
      res.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(body) })
      res.end(body)
    }
    switch (path) {
      case backendPaths.jpeg:
        sendSample(res, 'jpeg')
        return
      case backendPaths.png:
        sendSample(res, 'png')
        return
      case backendPaths.webp:
        sendSample(res, 'webp')
        return
      case backendPaths.redirect:
        res.writeHead(302, { location: backendPaths.jpeg, 'content-length': 0 })
        res.end()
        return
      case backendPaths.slow: {
        const timer = setTimeout(() => sendSample(res, 'jpeg'), slowMs)
        res.on('close', () => clearTimeout(timer))
        return
      }
      case backendPaths.hang:
        // Never answers: the socket stays open until the client or close() ends it.
        return
      case backendPaths.notAnImage:
        text(
          200,
          '<!doctype html><html><head><title>Welcome</title></head><body><h1>Maintenance</h1></body></html>',
          'text/html; charset=utf-8',
        )
        return
      case backendPaths.privateRedirect:
        res.writeHead(302, { location: privateRedirectUrl, 'content-length': 0 })
        res.end()
        return
    }
    if (path.startsWith(backendPaths.status)) {
      const status = Number(path.slice(backendPaths.status.length).replace(/\.\w+$/, ''))
      if (Number.isInteger(status) && status >= 200 && status <= 599) {
        const headers: Record<string, string> = { 'content-type': 'text/plain; charset=utf-8' }
        if (status === 503) headers['retry-after'] = '7'
        if (status >= 300 && status < 400) headers.location = backendPaths.jpeg
        res.writeHead(status, headers)
        res.end(`the demo backend answered ${status}`)
        return
      }
    }
    text(404, `no such image: ${path}`)
  }

  const server = createServer(handle)
  const sockets = new Set<Socket>()
  server.on('connection', (socket) => {
    sockets.add(socket)
    socket.on('close', () => sockets.delete(socket))
  })
  server.listen(port, host)
  await once(server, 'listening')
  const address = server.address() as AddressInfo
  privateRedirectUrl = options.privateRedirectUrl ?? `http://127.0.0.2:${address.port}${backendPaths.jpeg}`
  const shown = address.family === 'IPv6' ? `[${address.address}]` : address.address
  return {
    url: `http://${shown}:${address.port}`,
    async close() {
      const closed = once(server, 'close')
      server.close()
      for (const socket of sockets) socket.destroy()
      await closed
    },
  }
}
