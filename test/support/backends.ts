import { once } from 'node:events'
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo, Socket } from 'node:net'

/** A tiny PNG header (the signature and a 16×16 RGBA `IHDR` chunk) plus padding: enough bytes for the sniffer. */
export const PNG = Buffer.concat([
  Buffer.from('89504e470d0a1a0a0000000d49484452000000100000001008060000001ff3ff61', 'hex'),
  Buffer.alloc(31, 7),
])

export interface Backend {
  readonly server: Server
  readonly url: string
  readonly port: number
  /** Requests received, in order. */
  readonly requests: IncomingMessage[]
  /** Resolves with the next request the backend receives. */
  nextRequest(): Promise<IncomingMessage>
  /** Resolves when a socket of the backend closes. */
  nextSocketClose(): Promise<void>
  close(): Promise<void>
}

/** A real HTTP backend on loopback (127.0.0.1 unless `host` says otherwise). */
export async function startBackend(
  handle: (req: IncomingMessage, res: ServerResponse) => void,
  host = '127.0.0.1',
): Promise<Backend> {
  const requests: IncomingMessage[] = []
  const sockets = new Set<Socket>()
  const server = createServer((req, res) => {
    requests.push(req)
    server.emit('backend-request', req)
    res.on('error', () => {})
    handle(req, res)
  })
  server.on('connection', (socket) => {
    sockets.add(socket)
    socket.on('error', () => {})
    socket.on('close', () => {
      sockets.delete(socket)
      server.emit('backend-socket-close')
    })
  })
  server.listen(0, host)
  await once(server, 'listening')
  const { port } = server.address() as AddressInfo
  return {
    server,
    port,
    url: `http://${host.includes(':') ? `[${host}]` : host}:${port}`,
    requests,
    nextRequest: async () => (await once(server, 'backend-request'))[0] as IncomingMessage,
    nextSocketClose: async () => {
      await once(server, 'backend-socket-close')
    },
    async close() {
      for (const socket of sockets) socket.destroy()
      server.close()
      await once(server, 'close')
    },
  }
}
