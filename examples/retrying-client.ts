// A client of an image API that retries the way Image-Charts asks its clients to: only
// network errors, 429 and 502, unless x-ic-error-code names a code the catalogue marks not
// retryable; truncated exponential backoff with jitter, at least 1 s; `Retry-After` honoured.
// Everything else (400, 401, 404, …) is final: fix the request.
// Run: npx tsx examples/retrying-client.ts (it starts the demo on free ports and calls it).
import { pathToFileURL } from 'node:url'
import { fetchWithRetry, type RetryEvent } from '../src/index.ts'
import { startDemo } from './demo/server.ts'

/** What one call ended with. */
export interface ImageResult {
  readonly status: number
  /** `x-ic-error-code` of a failure. */
  readonly code: string | null
  /** The messages of `x-ic-error-validation`, one per failure. */
  readonly messages: readonly string[]
  readonly bytes: number
  readonly retries: readonly RetryEvent[]
}

/**
 * Fetches one image or chart, retrying what is worth retrying, within one overall deadline.
 *
 * @example
 * const result = await getImage('http://localhost:3000/image/sample.jpg?width=320')
 * if (result.code !== null) console.error(result.status, result.code, result.messages)
 */
export async function getImage(
  url: string,
  options: { readonly maxDelayMs?: number; readonly timeoutMs?: number } = {},
): Promise<ImageResult> {
  const retries: RetryEvent[] = []
  const res = await fetchWithRetry(
    url,
    { signal: AbortSignal.timeout(options.timeoutMs ?? 20_000) },
    {
      maxAttempts: 3,
      maxDelayMs: options.maxDelayMs ?? 8000,
      onRetry: (e) => retries.push(e),
    },
  )
  const body = await res.arrayBuffer()
  const validation = res.headers.get('x-ic-error-validation')
  return {
    status: res.status,
    code: res.headers.get('x-ic-error-code'),
    messages:
      validation === null ? [] : (JSON.parse(validation) as { message: string }[]).map((v) => v.message),
    bytes: body.byteLength,
    retries,
  }
}

async function main(): Promise<void> {
  const demo = await startDemo({ port: 0 })
  try {
    for (const path of [
      '/image/sample.jpg?width=320', // 200
      '/image/status/500?width=100', // 502: retried twice, then given up
      '/image/missing.jpg?width=100', // 404: not retried
      '/chart?cht=p&chd=t:1,2,3', // 400 IS_VALIDATION_ERROR: not retried, messages say why
    ]) {
      const r = await getImage(demo.url + path)
      const retried = r.retries.map((e) => `${e.status ?? 'network error'} → wait ${e.delayMs} ms`).join(', ')
      console.log(
        `${path}\n  ${r.status} ${r.code ?? ''} ${r.messages.join('; ')}${retried ? `\n  retries: ${retried}` : ''}`,
      )
    }
  } finally {
    await demo.close()
  }
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().catch((err: unknown) => {
    console.error(err)
    process.exit(1)
  })
}
