import { once } from 'node:events'
import { type IncomingMessage, request } from 'node:http'

/** What a client that read late got: the status, the bytes, and how the body ended. */
export interface SlowDownload {
  readonly status: number
  readonly bytes: number
  /** `complete`, or `cut (ECONNRESET)` and the like. */
  readonly ended: string
}

/**
 * A GET whose client reads nothing of the body until `until()` settles (a pause, or a
 * condition on the server's side), then all of it: a slow reader, so the server's response
 * is still being flushed meanwhile.
 *
 * @example
 * const got = await slowDownload(`${app.url}/big`, () => new Promise((r) => setTimeout(r, 300)))
 */
export async function slowDownload(url: string, until: () => Promise<unknown>): Promise<SlowDownload> {
  const req = request(url, { agent: false })
  req.end()
  const [res] = (await once(req, 'response')) as [IncomingMessage]
  res.pause()
  await until()
  let bytes = 0
  res.on('data', (chunk: Buffer) => {
    bytes += chunk.length
  })
  const ended = await new Promise<string>((resolve) => {
    res.on('end', () => resolve('complete'))
    res.on('error', (err: NodeJS.ErrnoException) => resolve(`cut (${err.code})`))
    res.resume()
  })
  return { status: res.statusCode ?? 0, bytes, ended }
}
