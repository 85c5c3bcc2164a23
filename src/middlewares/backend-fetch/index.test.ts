import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { once } from 'node:events'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { createServer as createHttpsServer } from 'node:https'
import {
  type AddressInfo,
  createServer as createNetServer,
  type Server as NetServer,
  type Socket,
} from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it, type MockTracker } from 'node:test'
import zlib from 'node:zlib'
import { type Backend, PNG, startBackend } from '../../../test/support/backends.ts'
import { BUILT_IMAGES, DISGUISED } from '../../../test/support/images.ts'
import { icError, isIcError } from '../../errors.ts'
import {
  type BackendFetchOptions,
  compileHostList,
  createBackendFetch,
  DeflateDecoder,
  type LookupFunction,
} from './index.ts'

/** Resolves every name to `address`, and counts the lookups. */
function resolveTo(address: string, family = 4): LookupFunction & { calls: string[] } {
  const calls: string[] = []
  const lookup = ((hostname, _options, callback) => {
    calls.push(hostname)
    callback(null, [{ address, family }])
  }) as LookupFunction & { calls: string[] }
  lookup.calls = calls
  return lookup
}

async function rejection(promise: Promise<unknown>): Promise<Error & { code?: string; status?: number }> {
  try {
    await promise
  } catch (err) {
    return err as Error & { code?: string; status?: number }
  }
  assert.fail('expected a rejection')
}

async function expectCode(promise: Promise<unknown>, code: string, status?: number): Promise<void> {
  const err = await rejection(promise)
  assert.ok(isIcError(err), `expected an IcError ${code}, got ${err?.stack ?? err}`)
  assert.equal(err.code, code)
  if (status !== undefined) assert.equal(err.status, status)
}

async function startRaw(onSocket: (socket: Socket) => void): Promise<{ server: NetServer; url: string }> {
  const server = createNetServer((socket) => {
    socket.on('error', () => {})
    onSocket(socket)
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  return { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}` }
}

const loopback: BackendFetchOptions = { allowedAddresses: ['127.0.0.1', '::1'] }

/** A gzip member of about `size` bytes of empty stored deflate blocks (5 bytes each): it decodes to nothing. */
function emptyBlocksGzip(size: number): Buffer {
  const blocks = Buffer.alloc(size - (size % 5)).fill(Buffer.from([0, 0, 0, 0xff, 0xff]))
  // A last empty fixed block, then the CRC-32 and length of no bytes.
  return Buffer.concat([
    Buffer.from('1f8b0800000000000003', 'hex'),
    blocks,
    Buffer.from('03000000000000000000', 'hex'),
  ])
}

const DECODER_FACTORIES = [
  'createGunzip',
  'createInflate',
  'createInflateRaw',
  'createBrotliDecompress',
] as const

/** Spies on the zlib decoders made from now on; `taken()` is what they took in, together, since the last call. */
function watchDecoders(mock: MockTracker): { taken(): number } {
  const spies = DECODER_FACTORIES.map((name) => mock.method(zlib, name))
  return {
    taken() {
      let bytes = 0
      for (const spy of spies) {
        for (const call of spy.mock.calls) bytes += (call.result as zlib.Zlib).bytesWritten
        spy.mock.resetCalls()
      }
      return bytes
    },
  }
}

/** Bodies the backend serves at `/bytes?name=…`, as image/png. */
const SERVED: Readonly<Record<string, Buffer>> = {
  ...DISGUISED,
  ...Object.fromEntries(Object.entries(BUILT_IMAGES).map(([name, image]) => [name, image.bytes])),
  // Its first 32 bytes could start a TIFF whose directory comes later; the whole body has none.
  'II*\\0 + PHP, 4 KiB (tiff)': Buffer.from('II*\0<?php system($_GET[c]); ?>'.padEnd(4096, ' ')),
}

/** A self-signed key and certificate made by `openssl` (no fixture to expire); undefined without it. */
function selfSignedCert(): { key: Buffer; cert: Buffer } | undefined {
  const dir = mkdtempSync(join(tmpdir(), 'image-api-errors-tls-'))
  try {
    const made = spawnSync('openssl', [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:prime256v1',
      '-nodes',
      '-keyout',
      join(dir, 'key.pem'),
      '-out',
      join(dir, 'cert.pem'),
      '-days',
      '1',
      '-subj',
      '/CN=localhost',
    ])
    if (made.status !== 0) return undefined
    return { key: readFileSync(join(dir, 'key.pem')), cert: readFileSync(join(dir, 'cert.pem')) }
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

describe('createBackendFetch', () => {
  let backend: Backend
  before(async () => {
    backend = await startBackend((req, res) => {
      const url = new URL(req.url ?? '/', 'http://x')
      const status = Number(url.searchParams.get('status') ?? 200)
      const location = url.searchParams.get('location')
      if (location !== null) {
        res.writeHead(302, { location })
        res.end()
        return
      }
      if (url.pathname === '/html') {
        res.setHeader('content-type', 'image/png')
        res.end('<!doctype html><title>Not found</title>'.padEnd(4096, ' '))
        return
      }
      const served = url.pathname === '/bytes' ? SERVED[url.searchParams.get('name') ?? ''] : undefined
      if (served !== undefined) {
        res.setHeader('content-type', 'image/png')
        // The first 32 bytes, then the rest: the check of the first bytes runs on its own.
        res.write(served.subarray(0, 32))
        setTimeout(() => res.end(served.subarray(32)), 20)
        return
      }
      if (url.pathname === '/hops') {
        const left = Number(url.searchParams.get('n'))
        res.writeHead(
          left === 0 ? 200 : 301,
          left === 0 ? { 'content-type': 'image/png' } : { location: `/hops?n=${left - 1}` },
        )
        res.end(left === 0 ? PNG : undefined)
        return
      }
      if (url.searchParams.has('retryAfter'))
        res.setHeader('retry-after', url.searchParams.get('retryAfter') as string)
      res.statusCode = status
      res.setHeader('content-type', 'image/png')
      res.end(status === 200 ? PNG : `status ${status}`)
    })
  })
  after(() => backend.close())

  it('resolves with the image, its format and the backend headers', async () => {
    const fetchImage = createBackendFetch(loopback)
    const image = await fetchImage(`${backend.url}/a.png`)
    assert.equal(image.status, 200)
    assert.equal(image.format, 'png')
    assert.equal(image.contentType, 'image/png')
    assert.deepEqual(image.body, PNG)
    assert.equal(image.url, `${backend.url}/a.png`)
    assert.equal(backend.requests.at(-1)?.headers.accept, 'image/*')
  })

  it('maps every backend status to its own code', async () => {
    const fetchImage = createBackendFetch(loopback)
    const table = [
      [400, 'IC_BACKEND_BAD_REQUEST', 400],
      [401, 'IC_BACKEND_UNAUTHORIZED', 401],
      [403, 'IC_BACKEND_FORBIDDEN', 403],
      [404, 'IC_IMAGE_NOT_FOUND', 404],
      [410, 'IC_IMAGE_NOT_FOUND', 404],
      [418, 'IC_BACKEND_BAD_REQUEST', 400],
      [429, 'IC_BACKEND_UNAVAILABLE', 503],
      [500, 'IC_BACKEND_ERROR', 502],
      [501, 'IC_BACKEND_ERROR', 502],
      [502, 'IC_BACKEND_ERROR', 502],
      [503, 'IC_BACKEND_UNAVAILABLE', 503],
      [504, 'IC_BACKEND_GATEWAY_TIMEOUT', 504],
      [599, 'IC_BACKEND_ERROR', 502],
      [204, 'IC_IMAGE_MALFORMED', 400],
      [304, 'IC_BACKEND_INVALID_RESPONSE', 502],
    ] as const
    for (const [backendStatus, code, status] of table) {
      const err = await rejection(fetchImage(`${backend.url}/s?status=${backendStatus}`))
      assert.ok(isIcError(err), `${backendStatus}: ${err}`)
      assert.equal(err.code, code, `backend ${backendStatus}`)
      assert.equal(err.status, status, `backend ${backendStatus}`)
      assert.equal(err.details?.backendStatus, backendStatus === 204 ? undefined : backendStatus)
    }
  })

  it("passes a backend 503's Retry-After on, in seconds", async () => {
    const fetchImage = createBackendFetch(loopback)
    const err = await rejection(fetchImage(`${backend.url}/s?status=503&retryAfter=12`))
    assert.ok(isIcError(err))
    assert.equal(err.headers['retry-after'], '12')
    const noHint = await rejection(fetchImage(`${backend.url}/s?status=503&retryAfter=soon`))
    assert.ok(isIcError(noHint))
    assert.equal(noHint.headers['retry-after'], '5')
    for (const now of ['0', encodeURIComponent('Thu, 01 Jan 1970 00:00:00 GMT')]) {
      const err = await rejection(fetchImage(`${backend.url}/s?status=503&retryAfter=${now}`))
      assert.ok(isIcError(err))
      assert.equal(err.headers['retry-after'], '1', 'never 0: clients would all come back at once')
    }
    // A maintenance window past a day: passed on as a day, not shortened to the default 5 s.
    for (const [status, retryAfter, sent] of [
      [503, '86400', '86400'],
      [503, '86401', '86400'],
      [429, '604800', '86400'],
      [503, '9'.repeat(400), '86400'],
    ]) {
      const err = await rejection(fetchImage(`${backend.url}/s?status=${status}&retryAfter=${retryAfter}`))
      assert.ok(isIcError(err))
      assert.equal(err.headers['retry-after'], sent, `${status} Retry-After: ${retryAfter}`)
    }
  })

  it('retries no backend 429 whose Retry-After is past maxDelayMs, however many digits it has', async () => {
    const retries: unknown[] = []
    const fetchImage = createBackendFetch({
      ...loopback,
      retry: { minDelayMs: 1, maxDelayMs: 5, onRetry: (e) => retries.push(e) },
    })
    for (const retryAfter of ['1', '99999999999', '9'.repeat(400)]) {
      const before = backend.requests.length
      await expectCode(
        fetchImage(`${backend.url}/s?status=429&retryAfter=${retryAfter}`),
        'IC_BACKEND_UNAVAILABLE',
        503,
      )
      assert.equal(backend.requests.length - before, 1, `Retry-After: ${retryAfter}`)
    }
    assert.deepEqual(retries, [])
    const forbidden = await rejection(fetchImage(`${backend.url}/s?status=403&retryAfter=${'9'.repeat(400)}`))
    assert.ok(isIcError(forbidden))
    assert.deepEqual(
      forbidden.details,
      { backendStatus: 403, retryAfterMs: Number.MAX_SAFE_INTEGER },
      'no Infinity, which JSON sends as null',
    )
  })

  it('refuses an HTML page served as image/png, judged by its bytes', async () => {
    const fetchImage = createBackendFetch(loopback)
    await expectCode(fetchImage(`${backend.url}/html`), 'IC_IMAGE_MALFORMED', 400)
  })

  it('refuses bodies that only start like an image (BMP, TIFF, bare JPEG XL first bytes, then text)', async () => {
    const fetchImage = createBackendFetch(loopback)
    for (const name of [...Object.keys(DISGUISED), 'II*\\0 + PHP, 4 KiB (tiff)']) {
      const err = await rejection(fetchImage(`${backend.url}/bytes?name=${encodeURIComponent(name)}`))
      assert.ok(isIcError(err), name)
      assert.equal(`${err.status} ${err.code}`, '400 IC_IMAGE_MALFORMED', name)
    }
  })

  it('serves real BMP, TIFF, HEIF and JPEG XL (container) files, sent in two pieces', async () => {
    const fetchImage = createBackendFetch(loopback)
    for (const [name, { bytes, format }] of Object.entries(BUILT_IMAGES)) {
      const image = await fetchImage(`${backend.url}/bytes?name=${encodeURIComponent(name)}`)
      assert.equal(image.format, format, name)
      assert.deepEqual(image.body, bytes)
    }
  })

  it('follows redirects by hand, up to maxRedirects', async () => {
    const fetchImage = createBackendFetch({ ...loopback, maxRedirects: 3 })
    const image = await fetchImage(`${backend.url}/hops?n=3`)
    assert.equal(image.url, `${backend.url}/hops?n=0`)
    await expectCode(fetchImage(`${backend.url}/hops?n=4`), 'IC_TOO_MANY_REDIRECTS', 502)
    await expectCode(
      createBackendFetch({ ...loopback, maxRedirects: 0 })(`${backend.url}/hops?n=1`),
      'IC_TOO_MANY_REDIRECTS',
    )
  })

  it('checks every redirect hop again: a redirect to 127.0.0.1 is refused', async () => {
    const v6 = await startBackend((req, res) => {
      res.writeHead(302, { location: `${backend.url}/a.png?from=${req.url}` })
      res.end()
    }, '::1')
    try {
      const before = backend.requests.length
      const fetchImage = createBackendFetch({ allowedAddresses: ['::1'] })
      await expectCode(fetchImage(`${v6.url}/start`), 'IC_SOURCE_ADDRESS_BLOCKED', 403)
      assert.equal(v6.requests.length, 1)
      assert.equal(backend.requests.length, before, 'the blocked hop was never requested')
    } finally {
      await v6.close()
    }
  })

  it('checks redirect targets against hostsAllowed and the scheme', async () => {
    const lookup = resolveTo('127.0.0.1')
    const fetchImage = createBackendFetch({ ...loopback, lookup, hostsAllowed: ['images.test'] })
    const { port } = backend
    const image = await fetchImage(
      `http://images.test:${port}/s?location=${encodeURIComponent(`http://IMAGES.test.:${port}/a.png`)}`,
    )
    assert.equal(image.format, 'png')
    await expectCode(
      fetchImage(
        `http://images.test:${port}/s?location=${encodeURIComponent(`http://evil.test:${port}/a.png`)}`,
      ),
      'IC_HOST_NOT_ALLOWED',
      401,
    )
    await expectCode(
      fetchImage(`http://images.test:${port}/s?location=${encodeURIComponent('file:///etc/passwd')}`),
      'IC_BACKEND_INVALID_RESPONSE',
    )
    await expectCode(
      fetchImage(`http://images.test:${port}/s?location=${encodeURIComponent('http://[not-an-address/')}`),
      'IC_BACKEND_INVALID_RESPONSE',
    )
    await expectCode(fetchImage(`http://other.test:${port}/a.png`), 'IC_HOST_NOT_ALLOWED', 401)
    assert.equal(lookup.calls.includes('other.test'), false, 'an allow-list miss is never resolved')
  })

  it('refuses credentials in the URL or a redirect Location, which node:http would send as Basic auth', async () => {
    const fetchImage = createBackendFetch(loopback)
    const { port } = backend
    const before = backend.requests.length
    for (const userinfo of ['u:p@', 'u@', ':p@']) {
      const url = `http://${userinfo}127.0.0.1:${port}/a.png`
      const err = await rejection(fetchImage(url))
      assert.deepEqual([err.code, err.status], ['IC_BAD_REQUEST', 400])
      assert.equal(err.message, 'The source URL must not contain credentials', 'no word of the server side')
      await expectCode(
        fetchImage(`${backend.url}/s?location=${encodeURIComponent(url)}`),
        'IC_BACKEND_INVALID_RESPONSE',
        502,
      )
    }
    const sent = backend.requests.slice(before)
    assert.equal(sent.length, 3, 'only the redirects were requested')
    assert.ok(sent.every((req) => req.headers.authorization === undefined))
  })

  it('refuses port 0 in the URL or a redirect Location, which node:http would fetch from port 80', async () => {
    const fetchImage = createBackendFetch(loopback)
    const before = backend.requests.length
    const err = await rejection(fetchImage('http://127.0.0.1:0/a.png'))
    assert.deepEqual(
      [err.code, err.status, err.message],
      ['IC_BAD_REQUEST', 400, 'The source URL must not have port 0'],
    )
    await expectCode(
      fetchImage(`${backend.url}/s?location=${encodeURIComponent('http://127.0.0.1:0/a.png')}`),
      'IC_BACKEND_INVALID_RESPONSE',
      502,
    )
    assert.equal(backend.requests.length, before + 1, 'only the redirect was requested')
  })

  it('sends its headers, but accept, accept-encoding, accept-language and user-agent, only until a redirect leaves the origin', async () => {
    const credentials = {
      Authorization: 'Bearer t',
      'proxy-authorization': 'Basic p',
      cookie: 's=1',
      'X-Api-Key': 'k',
      'x-amz-security-token': 'tok',
      'accept-language': 'fr',
    }
    const other = await startBackend((req, res) => {
      const back = new URL(req.url ?? '/', 'http://x').searchParams.get('back')
      res.writeHead(
        back === null ? 200 : 302,
        back === null ? { 'content-type': 'image/png' } : { location: back },
      )
      res.end(back === null ? PNG : undefined)
    })
    const sent = (req: { headers: Record<string, unknown> } | undefined) => ({
      authorization: req?.headers.authorization,
      proxy: req?.headers['proxy-authorization'],
      cookie: req?.headers.cookie,
      key: req?.headers['x-api-key'],
      token: req?.headers['x-amz-security-token'],
      language: req?.headers['accept-language'],
      encoding: req?.headers['accept-encoding'],
      agent: req?.headers['user-agent'],
    })
    const kept = {
      authorization: 'Bearer t',
      proxy: 'Basic p',
      cookie: 's=1',
      key: 'k',
      token: 'tok',
      language: 'fr',
      encoding: 'identity',
      agent: 'image-api-errors',
    }
    // Any configured header may be a credential: only accept, accept-language and user-agent cross.
    const dropped = {
      authorization: undefined,
      proxy: undefined,
      cookie: undefined,
      key: undefined,
      token: undefined,
      language: 'fr',
      encoding: 'identity',
      agent: 'image-api-errors',
    }
    try {
      const lookup = resolveTo('127.0.0.1')
      const fetchImage = createBackendFetch({ ...loopback, lookup, headers: credentials })
      const { port } = backend
      await fetchImage(`http://images.test:${port}/s?location=${encodeURIComponent('/a.png')}`)
      assert.deepEqual(sent(backend.requests.at(-1)), kept, 'same origin: kept')
      await fetchImage(
        `http://images.test:${port}/s?location=${encodeURIComponent(`http://cdn.test:${port}/a.png`)}`,
      )
      assert.deepEqual(sent(backend.requests.at(-1)), dropped, 'another host')
      assert.deepEqual(sent(backend.requests.at(-2)), kept, 'the first hop had them')
      await fetchImage(`${backend.url}/s?location=${encodeURIComponent(`${other.url}/a.png`)}`)
      assert.deepEqual(sent(other.requests.at(-1)), dropped, 'another port')
      const back = encodeURIComponent(`${backend.url}/a.png`)
      await fetchImage(`${backend.url}/s?location=${encodeURIComponent(`${other.url}/b?back=${back}`)}`)
      assert.deepEqual(sent(backend.requests.at(-1)), dropped, 'not given back when the chain returns')
    } finally {
      await other.close()
    }
  })

  it('refuses a host name that resolves to 127.0.0.1, at connect time, without connecting', async () => {
    const lookup = resolveTo('127.0.0.1')
    const before = backend.requests.length
    const err = await rejection(createBackendFetch({ lookup })(`http://images.test:${backend.port}/a.png`))
    assert.ok(isIcError(err))
    assert.equal(err.code, 'IC_SOURCE_ADDRESS_BLOCKED')
    assert.equal(err.status, 403)
    // A 4xx's details reach the client: the address a name resolves to must not.
    assert.equal((err as { details?: unknown }).details, undefined)
    assert.doesNotMatch(err.message, /127\.0\.0\.1/)
    assert.match(String((err.cause as Error | undefined)?.message), /resolved to 127\.0\.0\.1/)
    assert.deepEqual(lookup.calls, ['images.test'])
    assert.equal(backend.requests.length, before)
    const image = await createBackendFetch({ lookup, allowedAddresses: ['127.0.0.0/8'] })(
      `http://images.test:${backend.port}/a.png`,
    )
    assert.equal(image.format, 'png')
    const open = await createBackendFetch({ lookup, allowPrivateAddresses: true })(
      `http://images.test:${backend.port}/a.png`,
    )
    assert.equal(open.format, 'png')
  })

  it('connects to an address listed in IPv4-mapped IPv6 form, whichever form the resolver answers', async () => {
    const url = `http://images.test:${backend.port}/a.png`
    for (const entry of ['::ffff:127.0.0.1', '::ffff:7f00:1', '::ffff:127.0.0.0/104', '::ffff:0:0/96']) {
      for (const answer of [resolveTo('127.0.0.1'), resolveTo('::ffff:127.0.0.1', 6)]) {
        const image = await createBackendFetch({ lookup: answer, allowedAddresses: [entry] })(url)
        assert.equal(image.format, 'png', entry)
      }
      const literal = await createBackendFetch({ allowedAddresses: [entry] })(`${backend.url}/a.png`)
      assert.equal(literal.format, 'png', entry)
    }
    const before = backend.requests.length
    for (const entry of ['::ffff:127.0.0.2', '::ffff:10.0.0.0/104'])
      await expectCode(
        createBackendFetch({ lookup: resolveTo('::ffff:127.0.0.1', 6), allowedAddresses: [entry] })(url),
        'IC_SOURCE_ADDRESS_BLOCKED',
        403,
      )
    assert.equal(backend.requests.length, before)
  })

  it('refuses a name with any non-public address among its answers (rebinding with several records)', async () => {
    const lookup: LookupFunction = (_hostname, _options, callback) =>
      callback(null, [
        { address: '::1', family: 6 },
        { address: '127.0.0.1', family: 4 },
      ])
    await expectCode(
      createBackendFetch({ lookup, allowedAddresses: ['::1'] })(`http://images.test:${backend.port}/a.png`),
      'IC_SOURCE_ADDRESS_BLOCKED',
    )
  })

  it('refuses every loopback spelling of the address vectors', async () => {
    const { urls } = JSON.parse(
      readFileSync(new URL('../../../../shared/vectors/addresses.json', import.meta.url), 'utf8'),
    ) as {
      urls: { refuse: string[] }
    }
    const fetchImage = createBackendFetch({ lookup: resolveTo('127.0.0.1') })
    const listed = createBackendFetch({ hostsAllowed: ['allowed.example'] })
    for (const url of urls.refuse) {
      await expectCode(fetchImage(url), 'IC_SOURCE_ADDRESS_BLOCKED')
      await expectCode(listed(url), 'IC_HOST_NOT_ALLOWED')
    }
  })

  it('answers IC_BACKEND_UNREACHABLE for refused connections, DNS failures and hang-ups', async () => {
    const closed = await startBackend(() => {})
    const refusedUrl = closed.url
    await closed.close()
    await expectCode(createBackendFetch(loopback)(`${refusedUrl}/a.png`), 'IC_BACKEND_UNREACHABLE', 502)
    const failingDns: LookupFunction = (hostname, _options, callback) =>
      callback(Object.assign(new Error(`getaddrinfo ENOTFOUND ${hostname}`), { code: 'ENOTFOUND' }), [])
    await expectCode(
      createBackendFetch({ lookup: failingDns })('http://nowhere.test/a.png'),
      'IC_BACKEND_UNREACHABLE',
      502,
    )
    const hangUp = await startRaw((socket) => socket.destroy())
    try {
      await expectCode(createBackendFetch(loopback)(`${hangUp.url}/a.png`), 'IC_BACKEND_UNREACHABLE', 502)
    } finally {
      hangUp.server.close()
    }
  })

  it('answers IC_BACKEND_UNREACHABLE for a connect that fails at once after a synchronous lookup, without crashing', async () => {
    // A TCP connect to multicast (ENETUNREACH) or to a link-local address without a scope
    // (EINVAL) fails inside the lookup's callback, before the request has its socket.
    for (const [address, family] of [
      ['224.0.0.1', 4],
      ['fe80::1', 6],
    ] as const) {
      const fetchImage = createBackendFetch({
        lookup: resolveTo(address, family),
        allowPrivateAddresses: true,
      })
      await expectCode(fetchImage('http://images.test/a.png'), 'IC_BACKEND_UNREACHABLE', 502)
    }
  })

  it('closes idle keep-alive connections, one per host, but never a slow active fetch', {
    timeout: 30_000,
  }, async () => {
    let open = 0
    let idleClosed: () => void = () => {}
    const allIdleClosed = new Promise<void>((resolve) => {
      idleClosed = resolve
    })
    const hosts = 20
    const keepAlive = await startBackend((req, res) => {
      res.writeHead(200, { 'content-type': 'image/png' })
      if (req.url !== '/slow') return void res.end(PNG)
      // Silent for longer than the pool's idle timeout while the fetch is active.
      res.write(PNG)
      void allIdleClosed.then(() => res.end(PNG))
    })
    // Like a backend an attacker runs: it never closes an idle connection itself.
    keepAlive.server.keepAliveTimeout = 0
    keepAlive.server.on('connection', (socket) => {
      open++
      socket.on('close', () => {
        if (--open === 1) idleClosed()
      })
    })
    try {
      const fetchImage = createBackendFetch({ ...loopback, lookup: resolveTo('127.0.0.1') })
      const slow = fetchImage(`http://slow.test:${keepAlive.port}/slow`)
      await keepAlive.nextRequest()
      const images = await Promise.all(
        Array.from({ length: hosts }, (_, i) => fetchImage(`http://img${i}.test:${keepAlive.port}/a.png`)),
      )
      assert.equal(images.length, hosts)
      assert.equal(open, hosts + 1, 'one connection per host, kept alive')
      await allIdleClosed
      const image = await slow
      assert.deepEqual(image.body, Buffer.concat([PNG, PNG]))
    } finally {
      await keepAlive.close()
    }
  })

  it('answers IC_BACKEND_INVALID_RESPONSE for garbage and for a body cut short', async () => {
    const garbage = await startRaw((socket) => socket.end('NOT HTTP AT ALL\r\n\r\n'))
    const cut = await startRaw((socket) => {
      socket.once('data', () => {
        socket.write('HTTP/1.1 200 OK\r\ncontent-type: image/png\r\ncontent-length: 1000\r\n\r\n')
        socket.write(PNG)
        setImmediate(() => socket.destroy())
      })
    })
    const cutChunked = await startRaw((socket) => {
      socket.once('data', () => {
        socket.write('HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n')
        socket.write(`${PNG.length.toString(16)}\r\n`)
        socket.write(PNG)
        socket.write('\r\n')
        setImmediate(() => socket.destroy())
      })
    })
    try {
      const fetchImage = createBackendFetch(loopback)
      await expectCode(fetchImage(`${garbage.url}/a.png`), 'IC_BACKEND_INVALID_RESPONSE', 502)
      await expectCode(fetchImage(`${cut.url}/a.png`), 'IC_BACKEND_INVALID_RESPONSE', 502)
      await expectCode(fetchImage(`${cutChunked.url}/a.png`), 'IC_BACKEND_INVALID_RESPONSE', 502)
    } finally {
      garbage.server.close()
      cut.server.close()
      cutChunked.server.close()
    }
  })

  it('times out a backend that never answers, and closes the connection', async () => {
    const silent = await startBackend(() => {})
    try {
      const closed = silent.nextSocketClose()
      await expectCode(
        createBackendFetch({ ...loopback, timeoutMs: 50 })(`${silent.url}/a.png`),
        'IC_BACKEND_TIMEOUT',
        504,
      )
      await closed
    } finally {
      await silent.close()
    }
  })

  it('times out a slow body too, and stops on the caller signal with its reason', async () => {
    const slow = await startBackend((_req, res) => {
      res.writeHead(200, { 'content-type': 'image/png' })
      res.write(PNG)
    })
    try {
      const fetchImage = createBackendFetch({ ...loopback, timeoutMs: 60 })
      await expectCode(fetchImage(`${slow.url}/a.png`), 'IC_BACKEND_TIMEOUT')
      const unlimited = createBackendFetch(loopback)
      const reason = icError('IC_CLIENT_CLOSED_REQUEST')
      const controller = new AbortController()
      const pending = unlimited(`${slow.url}/a.png`, { signal: controller.signal })
      await slow.nextRequest()
      controller.abort(reason)
      assert.equal(await rejection(pending), reason)
      await expectCode(
        unlimited(`${slow.url}/a.png`, { signal: AbortSignal.timeout(30) }),
        'IC_BACKEND_TIMEOUT',
        504,
      )
      const aborted = new AbortController()
      aborted.abort(reason)
      assert.equal(await rejection(unlimited(`${slow.url}/a.png`, { signal: aborted.signal })), reason)
    } finally {
      await slow.close()
    }
  })

  it('refuses a declared 2 GB body at once, and stops a streamed 2 GB body at maxBytes', async () => {
    const twoGB = 2 * 1024 ** 3
    let written = 0
    const huge = await startBackend((req, res) => {
      const chunk = Buffer.alloc(64 * 1024, 1)
      PNG.copy(chunk)
      if (req.url === '/declared') res.setHeader('content-length', twoGB)
      const pump = (): void => {
        while (written < twoGB && !res.destroyed) {
          written += chunk.length
          if (!res.write(chunk)) return void res.once('drain', pump)
        }
        res.end()
      }
      pump()
    })
    try {
      const maxBytes = 1024 * 1024
      const fetchImage = createBackendFetch({ ...loopback, maxBytes })
      const heapBefore = process.memoryUsage().heapUsed
      const closed = huge.nextSocketClose()
      await expectCode(fetchImage(`${huge.url}/declared`), 'IC_IMAGE_TOO_LARGE', 400)
      await closed
      written = 0
      const closedAgain = huge.nextSocketClose()
      await expectCode(fetchImage(`${huge.url}/streamed`), 'IC_IMAGE_TOO_LARGE', 400)
      await closedAgain
      assert.ok(written < 64 * 1024 * 1024, `the backend managed to write ${written} bytes`)
      assert.ok(process.memoryUsage().heapUsed - heapBefore < 64 * 1024 * 1024)
    } finally {
      await huge.close()
    }
  })

  it('asks for identity, and decodes gzip, x-gzip, deflate and br bodies (stacked too)', async () => {
    const encoders: Record<string, (b: Buffer) => Buffer> = {
      gzip: (b) => zlib.gzipSync(b),
      'x-gzip': (b) => zlib.gzipSync(b),
      deflate: (b) => zlib.deflateSync(b),
      'raw-deflate': (b) => zlib.deflateRawSync(b),
      // Bytes after the end of the deflate data, which zlib ignores.
      'deflate-trailing': (b) => Buffer.concat([zlib.deflateSync(b), Buffer.from('\r\n')]),
      'raw-deflate-trailing': (b) => Buffer.concat([zlib.deflateRawSync(b), Buffer.from('\r\n')]),
      br: (b) => zlib.brotliCompressSync(b),
      identity: (b) => b,
    }
    const encoded = await startBackend((req, res) => {
      const codings = (new URL(req.url ?? '/', 'http://x').searchParams.get('ce') ?? '').split(', ')
      const body = codings.reduce<Buffer>((b, coding) => (encoders[coding] as (b: Buffer) => Buffer)(b), PNG)
      // Raw deflate is sent as `deflate`, as the servers that send it do.
      const sent = codings.map((coding) => (coding.includes('deflate') ? 'deflate' : coding))
      res.writeHead(200, { 'content-type': 'image/png', 'content-encoding': sent.join(', ') })
      res.end(body)
    })
    try {
      const fetchImage = createBackendFetch(loopback)
      for (const ce of [
        'gzip',
        'x-gzip',
        'deflate',
        'raw-deflate',
        'br',
        'identity',
        'gzip, br',
        'raw-deflate, br',
        'deflate-trailing',
        'raw-deflate-trailing',
        'GZIP',
      ]) {
        const image = await fetchImage(`${encoded.url}/a.png?ce=${encodeURIComponent(ce.toLowerCase())}`)
        assert.deepEqual(image.body, PNG, ce)
        assert.equal(image.format, 'png', ce)
      }
      assert.equal(encoded.requests.at(-1)?.headers['accept-encoding'], 'identity')
      const own = createBackendFetch({ ...loopback, headers: { 'Accept-Encoding': 'gzip, br' } })
      assert.deepEqual((await own(`${encoded.url}/a.png?ce=br`)).body, PNG)
      const sent = encoded.requests.at(-1)?.rawHeaders ?? []
      const names = sent.filter((name, i) => i % 2 === 0 && name.toLowerCase() === 'accept-encoding')
      assert.equal(names.length, 1, "the caller's Accept-Encoding replaces the default")
      assert.equal(encoded.requests.at(-1)?.headers['accept-encoding'], 'gzip, br')
    } finally {
      await encoded.close()
    }
  })

  it('answers 502 for a coding it cannot decode and for a corrupt or cut compressed body', async () => {
    const broken = await startBackend((req, res) => {
      const gzipped = zlib.gzipSync(Buffer.concat([PNG, Buffer.alloc(4096, 3)]))
      const bodies: Record<string, [string, Buffer]> = {
        '/zstd': ['zstd', PNG],
        '/compress': ['compress', PNG],
        '/too-many': ['gzip, gzip, gzip, gzip', PNG],
        '/corrupt': ['gzip', Buffer.concat([gzipped.subarray(0, 10), Buffer.alloc(200, 0xff)])],
        '/cut': ['gzip', gzipped.subarray(0, gzipped.length - 12)],
        '/not-brotli': ['br', PNG],
        '/not-deflate': ['deflate', PNG],
        '/deflate-cut': [
          'deflate',
          zlib.deflateSync(Buffer.concat([PNG, Buffer.alloc(4096, 3)])).subarray(0, 30),
        ],
        '/deflate-one-byte': ['deflate', Buffer.from([0x78])],
        '/deflate-empty': ['deflate', Buffer.alloc(0)],
      }
      const [ce, body] = bodies[req.url ?? ''] as [string, Buffer]
      res.writeHead(200, { 'content-type': 'image/png', 'content-encoding': ce })
      res.end(body)
    })
    try {
      const fetchImage = createBackendFetch(loopback)
      for (const path of [
        '/zstd',
        '/compress',
        '/too-many',
        '/corrupt',
        '/cut',
        '/not-brotli',
        '/not-deflate',
        '/deflate-cut',
        '/deflate-one-byte',
        '/deflate-empty',
      ])
        await expectCode(fetchImage(`${broken.url}${path}`), 'IC_BACKEND_INVALID_RESPONSE', 502)
    } finally {
      await broken.close()
    }
  })

  it('applies maxBytes to the decoded size, and stops reading a decompression bomb at once', async () => {
    let fed = 0
    const bomb = await startBackend((req, res) => {
      res.writeHead(200, { 'content-type': 'image/png', 'content-encoding': 'gzip' })
      const gzip = zlib.createGzip()
      gzip.pipe(res)
      if (req.url === '/small') return void gzip.end(Buffer.concat([PNG, Buffer.alloc(2048)]))
      const zeros = Buffer.alloc(1024 * 1024)
      PNG.copy(zeros)
      const pump = (): void => {
        while (!res.destroyed && fed < 2 * 1024 ** 3) {
          fed += zeros.length
          if (!gzip.write(zeros)) return void gzip.once('drain', pump)
        }
        gzip.end()
      }
      res.on('close', () => gzip.destroy())
      pump()
    })
    try {
      const maxBytes = 1024 * 1024
      const fetchImage = createBackendFetch({ ...loopback, maxBytes })
      const closed = bomb.nextSocketClose()
      await expectCode(fetchImage(`${bomb.url}/bomb`), 'IC_IMAGE_TOO_LARGE', 400)
      await closed
      assert.ok(fed < 64 * 1024 * 1024, `the backend compressed ${fed} bytes before the fetch stopped`)
      const tight = createBackendFetch({ ...loopback, maxBytes: PNG.length + 1024 })
      await expectCode(tight(`${bomb.url}/small`), 'IC_IMAGE_TOO_LARGE', 400)
      const fits = createBackendFetch({ ...loopback, maxBytes: PNG.length + 2048 })
      assert.equal((await fits(`${bomb.url}/small`)).body.length, PNG.length + 2048)
    } finally {
      await bomb.close()
    }
  })

  it('holds every layer of stacked codings to maxBytes: an inner layer that decodes to nothing is no bomb', async (t) => {
    const maxBytes = 64 * 1024
    // 8 MiB that decode to nothing, sent in 40 bytes to 12 KB: under maxBytes both as sent and
    // once decoded, so only the layers in between can stop it.
    const inner = emptyBlocksGzip(8 * 1024 * 1024)
    const brotli = { params: { [zlib.constants.BROTLI_PARAM_QUALITY]: 5 } }
    const image = Buffer.concat([PNG, randomBytes(maxBytes / 2)])
    const bodies: Record<string, [string, Buffer]> = {
      '/br': ['gzip, br', zlib.brotliCompressSync(inner, brotli)],
      '/gzip3': ['gzip, gzip, gzip', zlib.gzipSync(zlib.gzipSync(inner))],
      '/deflate': ['gzip, deflate', zlib.deflateSync(inner)],
      '/image': ['gzip, br', zlib.brotliCompressSync(zlib.gzipSync(image), brotli)],
    }
    const bombs = await startBackend((req, res) => {
      const [ce, body] = bodies[req.url ?? ''] as [string, Buffer]
      res.writeHead(200, {
        'content-type': 'image/png',
        'content-encoding': ce,
        'content-length': body.length,
      })
      res.end(body)
    })
    try {
      const fetchImage = createBackendFetch({ ...loopback, maxBytes })
      const decoders = watchDecoders(t.mock)
      for (const path of ['/br', '/gzip3', '/deflate']) {
        await expectCode(fetchImage(`${bombs.url}${path}`), 'IC_IMAGE_TOO_LARGE', 400)
        const taken = decoders.taken()
        assert.ok(taken < 8 * maxBytes, `${path}: the decoders took in ${taken} bytes`)
      }
      // An image compressed twice has no layer larger than itself, random bytes included.
      assert.deepEqual((await fetchImage(`${bombs.url}/image`)).body, image)
    } finally {
      await bombs.close()
    }
  })

  it('retries network errors, 429 and 502 when asked, and nothing else', async () => {
    let calls = 0
    const flaky = await startBackend((req, res) => {
      calls++
      const statuses = (new URL(req.url ?? '/', 'http://x').searchParams.get('seq') ?? '').split(',')
      const status = Number(statuses[calls - 1] ?? 200)
      if (status === 0) return void req.socket.destroy()
      if (status === 429) res.setHeader('retry-after', '0')
      res.writeHead(status, { 'content-type': 'image/png' })
      res.end(status === 200 ? PNG : 'nope')
    })
    const retries: unknown[] = []
    const fetchImage = createBackendFetch({
      ...loopback,
      retry: {
        maxAttempts: 4,
        minDelayMs: 1,
        maxDelayMs: 5,
        onRetry: (e) => retries.push(e.status ?? 'network'),
      },
    })
    try {
      calls = 0
      assert.equal((await fetchImage(`${flaky.url}/a.png?seq=502,429,0,200`)).format, 'png')
      assert.equal(calls, 4)
      assert.deepEqual(retries, [502, 429, 'network'])
      calls = 0
      await expectCode(fetchImage(`${flaky.url}/a.png?seq=500,200`), 'IC_BACKEND_ERROR')
      assert.equal(calls, 1)
      calls = 0
      await expectCode(fetchImage(`${flaky.url}/a.png?seq=503,200`), 'IC_BACKEND_UNAVAILABLE')
      assert.equal(calls, 1)
      calls = 0
      await expectCode(fetchImage(`${flaky.url}/a.png?seq=502,502,502,502,200`), 'IC_BACKEND_ERROR')
      assert.equal(calls, 4)
      calls = 0
      const controller = new AbortController()
      const slowRetry = createBackendFetch({ ...loopback, retry: { minDelayMs: '10s', maxDelayMs: '20s' } })
      const pending = slowRetry(`${flaky.url}/a.png?seq=502,200`, { signal: controller.signal })
      await flaky.nextRequest()
      setImmediate(() => controller.abort(icError('IC_BACKEND_TIMEOUT')))
      await expectCode(pending, 'IC_BACKEND_TIMEOUT')
      assert.equal(calls, 1, 'no retry once the signal aborted')
      calls = 0
      const started = Date.now()
      const shortDeadline = createBackendFetch({ ...loopback, timeoutMs: 2000, retry: { minDelayMs: '5s' } })
      await expectCode(shortDeadline(`${flaky.url}/a.png?seq=502,200`), 'IC_BACKEND_ERROR', 502)
      assert.equal(calls, 1, 'no wait the deadline would cut short')
      assert.ok(
        Date.now() - started < 1000,
        `answered at once, not at the deadline (${Date.now() - started} ms)`,
      )
    } finally {
      await flaky.close()
    }
  })

  const tls = selfSignedCert()
  it('answers a backend whose TLS certificate is refused at once: a certificate error is no network error to retry', {
    skip: tls === undefined ? 'openssl is not installed' : false,
  }, async () => {
    const server = createHttpsServer(tls as { key: Buffer; cert: Buffer }, (_req, res) => res.end(PNG))
    let connections = 0
    server.on('connection', () => connections++)
    server.on('tlsClientError', () => {})
    server.listen(0, '127.0.0.1')
    await once(server, 'listening')
    const retries: unknown[] = []
    const fetchImage = createBackendFetch({
      ...loopback,
      retry: { maxAttempts: 3, minDelayMs: 1, maxDelayMs: 5, onRetry: (e) => retries.push(e) },
    })
    try {
      const err = await rejection(
        fetchImage(`https://127.0.0.1:${(server.address() as AddressInfo).port}/a.png`),
      )
      assert.deepEqual([err.status, err.code], [502, 'IC_BACKEND_UNREACHABLE'])
      assert.match(String((err.cause as { code?: unknown } | undefined)?.code), /CERT/)
      assert.deepEqual(retries, [])
      assert.equal(connections, 1, 'one attempt')
    } finally {
      server.close()
    }
  })

  it('answers a 101 Switching Protocols as an invalid response at once, not at the deadline', async () => {
    const raw = await startRaw((socket) => {
      socket.once('data', () =>
        socket.write('HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n'),
      )
    })
    try {
      const started = Date.now()
      await expectCode(
        createBackendFetch({ ...loopback, timeoutMs: 5000 })(`${raw.url}/a.png`),
        'IC_BACKEND_INVALID_RESPONSE',
        502,
      )
      assert.ok(Date.now() - started < 2000, `${Date.now() - started} ms`)
    } finally {
      raw.server.close()
    }
  })

  it('refuses bad URLs and schemes with 400', async () => {
    const fetchImage = createBackendFetch()
    await expectCode(fetchImage('not a url'), 'IC_BAD_REQUEST', 400)
    await expectCode(fetchImage('file:///etc/passwd'), 'IC_BAD_REQUEST', 400)
    await expectCode(fetchImage('data:image/png;base64,AAAA'), 'IC_BAD_REQUEST', 400)
  })

  it('throws a TypeError naming the option for bad configuration', () => {
    const cases: [BackendFetchOptions, RegExp][] = [
      [{ maxBytes: 0 }, /`maxBytes`/],
      [{ maxBytes: 1.5 }, /`maxBytes`/],
      [{ maxRedirects: -1 }, /`maxRedirects`/],
      [{ timeoutMs: 'soon' }, /`timeoutMs`/],
      [{ timeoutMs: -1 }, /`timeoutMs`/],
      [{ hostsAllowed: [] }, /`hostsAllowed`/],
      [{ hostsAllowed: ['*'] }, /`hostsAllowed`/],
      // The same rules as permissions(): no port, path, empty label or character no DNS name holds.
      [{ hostsAllowed: ['a.com:80'] }, /`hostsAllowed`/],
      [{ hostsAllowed: ['a..example.com'] }, /`hostsAllowed`/],
      [{ hostsAllowed: ['a"b.example.com'] }, /`hostsAllowed`/],
      [{ allowPrivateAddresses: 'yes' as never }, /`allowPrivateAddresses`/],
      [{ allowedAddresses: ['10.0.0.0/40'] }, /`allowedAddresses`/],
      [{ allowedAddresses: ['10.0.0.0/8/1'] }, /`allowedAddresses`/],
      [{ allowedAddresses: ['fd00::/8/'] }, /`allowedAddresses`/],
      [{ headers: 'abc' as never }, /Expected `headers` to be a plain object/],
      [{ headers: ['x-a: 1'] as never }, /Expected `headers` to be a plain object/],
      [
        { headers: new Headers({ authorization: 'Bearer t' }) as never },
        /Expected `headers` to be a plain object/,
      ],
      [{ headers: { 'x-a': 1 as never } }, /`headers.x-a`/],
      [{ retry: { minDelayMs: 0 } }, /`minDelayMs`/],
      [{ lookup: 'dns' as never }, /`lookup`/],
      [{ headers: { 'x-a': 'a\r\nb' } }, /`headers.x-a`/],
      [{ headers: { 'bad name': 'a' } }, /`headers` names/],
      [{ headers: { Host: 'internal.example' } }, /`headers` to leave `Host` to the fetch/],
      [{ headers: { 'content-length': '0' } }, /`headers` to leave `content-length`/],
      [{ headers: { 'Transfer-Encoding': 'chunked' } }, /`headers` to leave `Transfer-Encoding`/],
      [{ retry: { maxAttempts: 0 } }, /`maxAttempts`/],
    ]
    for (const [options, message] of cases) assert.throws(() => createBackendFetch(options), message)
  })

  it('refuses an option it does not know, in `retry` too, and takes every documented one', () => {
    for (const [options, message] of [
      [{ timeoutMS: 1000 }, /^Unknown option `timeoutMS` of createBackendFetch: expected one of maxBytes,/],
      [{ allowPrivateAddress: true }, /^Unknown option `allowPrivateAddress` of createBackendFetch/],
      [
        { retry: { maxAttempt: 3 } },
        /^Unknown option `maxAttempt` of `retry` of createBackendFetch: expected one of maxAttempts,/,
      ],
      [{ retry: { fetch } }, /^Unknown option `fetch` of `retry` of createBackendFetch/],
    ] as const)
      assert.throws(() => createBackendFetch(options as never), { name: 'TypeError', message })
    const fetchImage = createBackendFetch({
      maxBytes: 1024,
      maxRedirects: 0,
      timeoutMs: '10s',
      hostsAllowed: ['images.example.com'],
      allowPrivateAddresses: false,
      allowedAddresses: ['10.1.0.0/16'],
      lookup: (_host, _options, cb) => cb(null, [{ address: '10.1.2.3', family: 4 }]),
      headers: { authorization: 'Bearer t' },
      retry: {
        maxAttempts: 2,
        minDelayMs: 1,
        maxDelayMs: 5,
        statuses: [429, 502],
        random: () => 0,
        onRetry: () => {},
      },
    })
    assert.equal(typeof fetchImage, 'function')
    assert.equal(typeof createBackendFetch({ retry: false }), 'function')
  })
})

describe('DeflateDecoder', () => {
  it('inflates no further than its reader reads: one small chunk does not fill memory', async () => {
    const zeros = 64 * 1024 * 1024
    for (const encode of [zlib.deflateSync, zlib.deflateRawSync]) {
      const decoder = new DeflateDecoder()
      decoder.write(encode(Buffer.alloc(zeros)))
      await new Promise((resolve) => setTimeout(resolve, 200))
      assert.ok(
        decoder.readableLength <= 1024 * 1024,
        `${decoder.readableLength} bytes buffered, nobody reading`,
      )
      let decoded = 0
      decoder.on('data', (chunk: Buffer) => {
        decoded += chunk.length
      })
      decoder.end()
      await once(decoder, 'end')
      assert.equal(decoded, zeros, 'all of it, once read')
    }
  })
})

describe('hostsAllowed', () => {
  interface HostVectors {
    allowed: string[]
    cases: { url: string; match: boolean }[]
  }
  const vectors = JSON.parse(
    readFileSync(new URL('../../../../shared/vectors/hosts.json', import.meta.url), 'utf8'),
  ) as HostVectors

  it('compiles to a matcher that follows the host vectors', () => {
    const isAllowed = compileHostList(vectors.allowed)
    for (const { url, match } of vectors.cases) {
      const { protocol, hostname } = new URL(url)
      assert.equal(isAllowed(hostname) && (protocol === 'http:' || protocol === 'https:'), match, url)
    }
  })

  it('matches no host a DNS name cannot be, and IPv6 entries in brackets', () => {
    const isAllowed = compileHostList(['*.cdn.example.net', '[::1]', 'Images.Example.com.'])
    for (const hostname of [
      '*.cdn.example.net',
      '.cdn.example.net',
      'a..cdn.example.net',
      'a"b.cdn.example.net',
    ])
      assert.equal(isAllowed(hostname), false, hostname)
    for (const hostname of ['a.cdn.example.net', 'a.cdn.example.net.', '[::1]', 'images.example.com'])
      assert.equal(isAllowed(hostname), true, hostname)
  })

  it('follows the host vectors: a miss is IC_HOST_NOT_ALLOWED, a match reaches the resolver', async () => {
    const lookup = resolveTo('127.0.0.1')
    const fetchImage = createBackendFetch({ hostsAllowed: vectors.allowed, lookup })
    for (const { url, match } of vectors.cases) {
      const err = await rejection(fetchImage(url))
      assert.ok(isIcError(err), url)
      const http = url.startsWith('http:') || url.startsWith('https:')
      // A scheme other than http(s) is refused before the host is looked at.
      const refusal = http ? 'IC_HOST_NOT_ALLOWED' : 'IC_BAD_REQUEST'
      assert.equal(err.code, match ? 'IC_SOURCE_ADDRESS_BLOCKED' : refusal, url)
    }
  })
})
