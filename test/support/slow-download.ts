import { once } from 'node:events'
import { type IncomingMessage, type OutgoingHttpHeaders, request } from 'node:http'

/** What a client that read late got: the status, the bytes, and how the body ended. */
export interface SlowDownload {
  readonly status: number
  readonly bytes: number
  /** `complete`, or `cut (ECONNRESET)` and the like. */
  readonly ended: string
  /** The response's headers (`content-encoding: gzip` under compression()). */
  readonly headers: IncomingMessage['headers']
  /** The body as it came, still encoded if it came gzip-encoded. */
  readonly body: Buffer
}

/**
 * A GET whose client reads nothing of the body until `until()` settles (a pause, or a
 * condition on the server's side), then all of it: a slow reader, so the server's response
 * is still being flushed meanwhile. `headers` go with the request (`accept-encoding`).
 *
 * @example
 * const got = await slowDownload(`${app.url}/big`, () => new Promise((r) => setTimeout(r, 300)))
 */
export async function slowDownload(
  url: string,
  until: () => Promise<unknown>,
  headers: OutgoingHttpHeaders = {},
): Promise<SlowDownload> {
  const req = request(url, { agent: false, headers })
  req.end()
  const [res] = (await once(req, 'response')) as [IncomingMessage]
  res.pause()
  await until()
  const chunks: Buffer[] = []
  res.on('data', (chunk: Buffer) => chunks.push(chunk))
  const ended = await new Promise<string>((resolve) => {
    res.on('end', () => resolve('complete'))
    res.on('error', (err: NodeJS.ErrnoException) => resolve(`cut (${err.code})`))
    res.resume()
  })
  const body = Buffer.concat(chunks)
  return { status: res.statusCode ?? 0, bytes: body.length, ended, headers: res.headers, body }
}
