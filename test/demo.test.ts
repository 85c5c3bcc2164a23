import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { readFileSync } from 'node:fs'
import { request as httpRequest, type IncomingMessage, type ServerResponse } from 'node:http'
import { after, before, describe, test } from 'node:test'
import sharp from 'sharp'
import { demoScenarios } from '../examples/demo/scenarios.ts'
import { type RunningDemo, startDemo } from '../examples/demo/server.ts'
import { createLoadSampler, type ErrorReport, type LoadSample, signQuery } from '../src/index.ts'

const signatures = JSON.parse(
  readFileSync(new URL('../../shared/vectors/signatures.json', import.meta.url), 'utf8'),
) as {
  valid: { secret: string; url: string }[]
}

const CALM: LoadSample = { eventLoopDelayMs: 0, eventLoopUtilization: 0, heapUsedBytes: 0, rssBytes: 0 }
/** A sampler that reads `sample()` instead of the process, so load is what the test says. */
function fixedSampler(sample: () => LoadSample) {
  return createLoadSampler({ source: sample, maxEventLoopDelayMs: 100 })
}

function validationMessages(res: Response): string[] {
  const raw = res.headers.get('x-ic-error-validation')
  if (raw === null) return []
  const parsed = JSON.parse(raw) as { message: string }[]
  assert.ok(Array.isArray(parsed), 'x-ic-error-validation is a JSON array')
  return parsed.map((item) => item.message)
}

/** Resolves with the next report matching `test`. */
function nextReport(
  waiters: ((r: ErrorReport) => boolean)[],
  match: (r: ErrorReport) => boolean,
): Promise<ErrorReport> {
  return new Promise((resolve) => {
    waiters.push((r) => {
      if (!match(r)) return false
      resolve(r)
      return true
    })
  })
}

for (const framework of ['express', 'koa'] as const) {
  describe(`demo on ${framework}`, () => {
    let demo: RunningDemo
    const reports: ErrorReport[] = []
    const waiters: ((r: ErrorReport) => boolean)[] = []
    const backendRequests: { req: IncomingMessage; res: ServerResponse }[] = []
    const backendWaiters: ((req: IncomingMessage, res: ServerResponse) => boolean)[] = []

    const sampler = fixedSampler(() => CALM)
    before(async () => {
      demo = await startDemo({
        port: 0,
        framework,
        sampler,
        timeoutMs: 1500,
        slowMs: 3000,
        onError: (r) => {
          reports.push(r)
          for (let i = waiters.length - 1; i >= 0; i--) if (waiters[i]?.(r)) waiters.splice(i, 1)
        },
        onBackendRequest: (req, res) => {
          backendRequests.push({ req, res })
          for (let i = backendWaiters.length - 1; i >= 0; i--)
            if (backendWaiters[i]?.(req, res)) backendWaiters.splice(i, 1)
        },
      })
    })
    after(async () => {
      await demo.close()
      sampler.close()
    })

    for (const scenario of demoScenarios({ account: 'demo', secret: 'demo-secret' })) {
      test(`${scenario.id}: ${scenario.status} ${scenario.code ?? ''}`, async () => {
        const res = await fetch(demo.url + scenario.path, { headers: { origin: 'http://page.example' } })
        const body = Buffer.from(await res.arrayBuffer())
        assert.equal(
          res.status,
          scenario.status,
          `status of ${scenario.path}: ${body.toString().slice(0, 200)}`,
        )
        assert.equal(res.headers.get('access-control-allow-origin'), '*')
        // The chart limits run before the signature check, so its refusals are counted too.
        const limited = scenario.path.startsWith('/image/') || scenario.kind === 'chart'
        assert.equal(res.headers.get('ratelimit') !== null, limited, `RateLimit header on ${scenario.path}`)
        if (limited) assert.ok(res.headers.get('access-control-expose-headers')?.includes('ratelimit'))
        if (scenario.status === 200) {
          assert.equal(res.headers.get('x-ic-error-code'), null)
          assert.match(res.headers.get('content-type') ?? '', /^image\/(png|jpeg|webp)$/)
          const meta = await sharp(body).metadata()
          assert.ok((meta.width ?? 0) > 0 && (meta.height ?? 0) > 0)
          if (scenario.kind === 'chart') {
            const chs = /chs=(\d+)x(\d+)/.exec(scenario.path)
            assert.equal(meta.format, 'png')
            assert.deepEqual([meta.width, meta.height], [Number(chs?.[1]), Number(chs?.[2])])
          }
          return
        }
        assert.equal(res.headers.get('x-ic-error-code'), scenario.code)
        const exposed = (res.headers.get('access-control-expose-headers') ?? '').split(/,\s*/)
        assert.ok(exposed.includes('x-ic-error-code'), `exposed: ${exposed.join(',')}`)
        assert.ok(res.headers.get('x-request-id'))
        assert.equal(res.headers.get('cache-control'), 'no-store')
        const messages = validationMessages(res)
        if (scenario.code === 'IS_VALIDATION_ERROR') {
          assert.ok(messages.length > 0)
          assert.ok(exposed.includes('x-ic-error-validation'))
        }
        if (scenario.validation !== undefined) {
          assert.ok(
            messages.some((m) => m.includes(scenario.validation as string)),
            `${JSON.stringify(messages)} has ${scenario.validation}`,
          )
        }
        if (scenario.status === 503 || scenario.status === 429)
          assert.match(res.headers.get('retry-after') ?? '', /^\d+$/)
        const report = reports.find(
          (r) => r.response.getHeader('x-request-id') === res.headers.get('x-request-id'),
        )
        assert.equal(report?.status, scenario.status)
        assert.equal(report?.code, scenario.code)
      })
    }

    test('encodes every format imageParams accepts, as asked', async () => {
      const expected = { jpg: 'jpeg', jpeg: 'jpeg', png: 'png', webp: 'webp', avif: 'heif', gif: 'gif' }
      for (const [format, decoded] of Object.entries(expected)) {
        const res = await fetch(`${demo.url}/image/sample.jpg?width=64&format=${format}`)
        assert.equal(res.status, 200, format)
        const meta = await sharp(Buffer.from(await res.arrayBuffer())).metadata()
        assert.equal(meta.format, decoded, format)
        assert.equal(
          res.headers.get('content-type'),
          `image/${decoded === 'heif' ? 'avif' : decoded}`,
          format,
        )
      }
    })

    test("routes the demo's own pages as Express does by default, on both frameworks: any case, a trailing slash", async () => {
      for (const path of ['/DEMO/HEALTH', '/demo/health/', '/Demo/Log/']) {
        const res = await fetch(`${demo.url}${path}`)
        await res.arrayBuffer()
        assert.equal(res.status, 200, `${path}: ${res.headers.get('x-ic-error-code')}`)
      }
    })

    test('a dpr that scales a side below one pixel gives a one-pixel side, not a decode error', async () => {
      for (const query of ['width=1&dpr=0.1', 'height=1&dpr=0.4', 'width=2&height=2&dpr=0.2&crop=fit']) {
        const res = await fetch(`${demo.url}/image/sample.jpg?${query}`)
        assert.equal(res.status, 200, `${query}: ${res.headers.get('x-ic-error-code')}`)
        const meta = await sharp(Buffer.from(await res.arrayBuffer())).metadata()
        assert.ok(meta.width === 1 || meta.height === 1, `${query}: ${meta.width}x${meta.height}`)
      }
    })

    test('format=auto chooses by Accept and says so in Vary, for shared caches', async () => {
      const auto = `${demo.url}/image/sample.jpg?width=64&format=auto`
      const webp = await fetch(auto, { headers: { accept: 'image/webp,image/*' } })
      assert.equal(webp.headers.get('content-type'), 'image/webp')
      assert.equal(webp.headers.get('vary'), 'Accept')
      const plain = await fetch(auto, { headers: { accept: 'image/*' } })
      assert.equal(plain.headers.get('content-type'), 'image/jpeg')
      assert.equal(plain.headers.get('vary'), 'Accept')
      const fixed = await fetch(`${demo.url}/image/sample.jpg?width=64&format=webp`)
      assert.equal(fixed.headers.get('vary'), null, 'an explicit format does not depend on Accept')
      assert.equal(fixed.headers.get('cache-control'), 'public, max-age=60')
      await Promise.all([webp, plain, fixed].map((r) => r.arrayBuffer()))
    })

    test('the page lists every scenario and reads the API from the same origin', async () => {
      const res = await fetch(`${demo.url}/`)
      assert.equal(res.status, 200)
      assert.match(res.headers.get('content-type') ?? '', /^text\/html/)
      const html = await res.text()
      for (const s of demoScenarios({ account: 'demo', secret: 'demo-secret' }))
        assert.ok(html.includes(`data-id="${s.id}"`), s.id)
      assert.ok(html.includes('data-api=""'))
    })

    test('Image-Charts signature vectors for the demo account verify', async () => {
      const vectors = signatures.valid.filter((v) => v.secret === 'demo-secret')
      assert.ok(vectors.length > 0)
      for (const vector of vectors) {
        const res = await fetch(demo.url + vector.url)
        assert.equal(res.status, 200, vector.url)
        assert.equal(res.headers.get('content-type'), 'image/png')
      }
      const tampered = (vectors[0] as { url: string }).url.replace('chs=300x200', 'chs=300x201')
      const res = await fetch(demo.url + tampered)
      assert.equal(res.status, 401)
      assert.equal(res.headers.get('x-ic-error-code'), 'IC_INVALID_SIGNATURE')
    })

    test('a URL the parser cannot decode is a 400, not a 500', async () => {
      for (const path of [
        '/image/%E0%A4%A?width=10',
        '/image/sample.jpg?width=10&width=20',
        '/chart?cht=p&chd=t%3A1&chs=10x10&chs=20x20',
      ]) {
        const res = await fetch(demo.url + path)
        await res.arrayBuffer()
        assert.equal(res.status, 400, path)
        assert.equal(res.headers.get('x-ic-error-code'), 'IS_VALIDATION_ERROR', path)
      }
    })

    test('an image path that would leave the backend (//host, dot segments) is a 400, never fetched', async () => {
      const before = backendRequests.length
      // Sent as written: fetch(), and http.request() given a URL, resolve the dot segments.
      const { hostname, port } = new URL(demo.url)
      const get = (path: string) =>
        new Promise<IncomingMessage>((resolve, reject) => {
          const req = httpRequest({ hostname, port, path }, resolve)
          req.on('error', reject)
          req.end()
        })
      for (const path of [
        '/image///127.0.0.1/secret.jpg?width=10',
        '/image///a%3Ab/x.jpg?width=10',
        '/image/../status/200?width=10',
        '/image/%2e%2e/status/200?width=10',
        '/image/a/./sample.jpg?width=10',
        '/image/sample.jpg/?width=10',
      ]) {
        const res = await get(path)
        res.resume()
        assert.deepEqual([res.statusCode, res.headers['x-ic-error-code']], [400, 'IS_VALIDATION_ERROR'], path)
      }
      assert.equal(backendRequests.length, before, 'no backend request')
      const ok = await fetch(`${demo.url}/image/sample.jpg?width=10`)
      await ok.arrayBuffer()
      assert.equal(ok.status, 200)
    })

    test("a chart whose title holds a '?' is read whole, as the rules read it", async () => {
      const res = await fetch(`${demo.url}/chart?chtt=Why?&cht=bvs&chd=t:10,20&chs=300x200`)
      assert.equal(res.status, 200, res.headers.get('x-ic-error-validation') ?? '')
      assert.equal(res.headers.get('content-type'), 'image/png')
      await res.arrayBuffer()
    })

    test('a chart draws nothing past a `#` in the request target, which the signature does not cover', async () => {
      // Sent as written: fetch() would drop the fragment.
      const { hostname, port } = new URL(demo.url)
      const get = (path: string) =>
        new Promise<{ status: number | undefined; body: Buffer }>((resolve, reject) => {
          const req = httpRequest({ hostname, port, path }, (res) => {
            const chunks: Buffer[] = []
            res.on('data', (c: Buffer) => chunks.push(c))
            res.on('end', () => resolve({ status: res.statusCode, body: Buffer.concat(chunks) }))
          })
          req.on('error', reject)
          req.end()
        })
      const signed = `/chart?${signQuery('cht=bvs&chd=t:10,20&chs=300x200&icac=demo', 'demo-secret')}`
      const plain = await get(signed)
      assert.equal(plain.status, 200)
      for (const extra of ['#&chtt=NOT-SIGNED', `#&chtt=${'x'.repeat(300)}`]) {
        const tampered = await get(signed + extra)
        assert.equal(tampered.status, 200, extra)
        assert.ok(tampered.body.equals(plain.body), `${extra}: the signed chart, nothing more`)
      }
    })

    test('a HEAD request gets the error headers and no body', async () => {
      const res = await fetch(`${demo.url}/chart?cht=p&chd=t%3A1`, { method: 'HEAD' })
      assert.equal(res.status, 400)
      assert.equal(res.headers.get('x-ic-error-code'), 'IS_VALIDATION_ERROR')
      assert.deepEqual(validationMessages(res), ['"chs" is required'])
      assert.equal((await res.arrayBuffer()).byteLength, 0)
    })

    test('a JSON client gets problem details', async () => {
      const res = await fetch(`${demo.url}/chart?cht=p&chs=10x10`, {
        headers: { accept: 'application/json' },
      })
      assert.equal(res.status, 400)
      assert.match(res.headers.get('content-type') ?? '', /^application\/problem\+json/)
      const problem = (await res.json()) as {
        status: number
        code: string
        validation: { message: string }[]
      }
      assert.equal(problem.status, 400)
      assert.equal(problem.code, 'IS_VALIDATION_ERROR')
      assert.deepEqual(
        problem.validation.map((v) => v.message),
        ['"chd" is required'],
      )
    })

    test('a client that leaves is recorded as 499, and the backend fetch is aborted', async () => {
      const reached = new Promise<ServerResponse>((resolve) => {
        backendWaiters.push((req, res) => {
          if (!req.url?.startsWith('/hang.jpg')) return false
          resolve(res)
          return true
        })
      })
      const reported = nextReport(waiters, (r) => r.status === 499)
      const client = httpRequest(`${demo.url}/image/hang.jpg?width=10`)
      client.on('error', () => {})
      client.end()
      const backendRes = await reached
      const backendClosed = once(backendRes, 'close')
      client.destroy()
      const report = await reported
      assert.equal(report.code, 'IC_CLIENT_CLOSED_REQUEST')
      assert.equal(report.outcome, 'client-gone')
      await backendClosed
      const log = (await (await fetch(`${demo.url}/demo/log`)).json()) as { status: number; path: string }[]
      assert.ok(log.some((e) => e.status === 499 && e.path === '/image/hang.jpg'))
    })

    test('the slow backend is cut off by the deadline: 504, backend connection closed', async () => {
      const reached = new Promise<ServerResponse>((resolve) => {
        backendWaiters.push((req, res) => {
          if (!req.url?.startsWith('/slow.jpg')) return false
          resolve(res)
          return true
        })
      })
      const pending = fetch(`${demo.url}/image/slow.jpg?width=10`)
      const backendRes = await reached
      const backendClosed = once(backendRes, 'close')
      const res = await pending
      assert.equal(res.status, 504)
      assert.equal(res.headers.get('x-ic-error-code'), 'IC_BACKEND_TIMEOUT')
      await backendClosed
      assert.equal(backendRes.writableFinished, false)
    })
  })
}

for (const framework of ['express', 'koa'] as const) {
  test(`${framework}: an encode still running after its 504 holds its slot: the next image request is 503 until it ends`, async () => {
    const sampler = fixedSampler(() => CALM)
    const demo = await startDemo({ port: 0, framework, sampler, timeoutMs: 400, maxEncodes: 1 })
    try {
      // The backend makes its sample on the first request (seconds under coverage): made now,
      // straight from the backend, the demo's fetch below takes milliseconds.
      const warm = await fetch(`${demo.backendUrl}/sample.jpg`)
      await warm.arrayBuffer()
      assert.equal(warm.status, 200)
      // Fetched in a few ms, then seconds to encode; libvips cannot be stopped once it started.
      const heavy = await fetch(
        `${demo.url}/image/sample.jpg?width=2048&height=2048&crop=fit&format=avif&quality=100`,
      )
      await heavy.arrayBuffer()
      assert.deepEqual([heavy.status, heavy.headers.get('x-ic-error-code')], [504, 'IC_BACKEND_TIMEOUT'])
      const health = (await (await fetch(`${demo.url}/demo/health`)).json()) as { encodes: number }
      assert.equal(health.encodes, 1)
      const refused = await fetch(`${demo.url}/image/sample.jpg?width=16`)
      await refused.arrayBuffer()
      assert.deepEqual([refused.status, refused.headers.get('x-ic-error-code')], [503, 'IC_OVERLOADED'])
      assert.equal(refused.headers.get('retry-after'), '1')
      let status = 0
      for (let tries = 0; tries < 600 && status !== 200; tries++) {
        await new Promise((resolve) => setTimeout(resolve, 50))
        const res = await fetch(`${demo.url}/image/sample.jpg?width=16`)
        await res.arrayBuffer()
        status = res.status
      }
      assert.equal(status, 200, 'served once the encode ended')
    } finally {
      await demo.close()
      sampler.close()
    }
  })
}

test('startDemo refuses a maxEncodes below one before it starts anything', async () => {
  for (const maxEncodes of [0, 1.5])
    await assert.rejects(startDemo({ port: 0, maxEncodes }), {
      name: 'TypeError',
      message: /`maxEncodes` to be an integer of at least 1/,
    })
})

test('the demo runs on IPv6 loopback: its backend, allow-listed as [::1], serves the images', async () => {
  const sampler = fixedSampler(() => CALM)
  const demo = await startDemo({ port: 0, host: '::1', sampler })
  try {
    assert.match(demo.url, /^http:\/\/\[::1\]:\d+$/)
    const res = await fetch(`${demo.url}/image/sample.jpg?width=40`)
    assert.equal(res.status, 200, res.headers.get('x-ic-error-code') ?? '')
    assert.equal(res.headers.get('content-type'), 'image/jpeg')
    await res.arrayBuffer()
  } finally {
    await demo.close()
    sampler.close()
  }
})

test('startDemo refuses a bad framework and frees the port it took', async () => {
  await assert.rejects(startDemo({ port: 0, framework: 'hapi' as never }), /`framework`/)
})

for (const args of [[], ['--koa']]) {
  test(`npm run demo ${args.join(' ')} starts, prints its URLs, sheds load after /demo/busy, stops on SIGTERM`, async () => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'examples/demo/server.ts', ...args], {
      env: { ...process.env, PORT: '0', DEMO_SECRET: 'other-secret' },
      // Not the runner's stderr: a child this test failed to stop must hold none of its pipes.
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let out = ''
    let errors = ''
    child.stderr.on('data', (chunk: Buffer) => {
      errors += chunk.toString()
    })
    try {
      const url = await new Promise<string>((resolve, reject) => {
        child.stdout.on('data', (chunk: Buffer) => {
          out += chunk.toString()
          const found = /demo on (\w+): (http:\/\/[\d.:]+)\//.exec(out)
          if (found !== null && out.includes('secret')) resolve(found[2] as string)
        })
        child.once('exit', (code) => reject(new Error(`exited with ${code}: ${out}${errors}`)))
      })
      assert.ok(out.includes(args.length > 0 ? 'demo on koa' : 'demo on express'))
      assert.ok(out.includes('"other-secret"'))
      const res = await fetch(`${url}/chart?cht=p&chd=t%3A1%2C2&chs=50x50`)
      assert.equal(res.status, 200)
      await res.arrayBuffer()
      // The page's overload tile: block the event loop, the real sampler notices, the next image is shed.
      // After the sampler's first reading: its first window, the demo's start-up, is not judged.
      const health = async () =>
        (await (await fetch(`${url}/demo/health`)).json()) as { heapUsedBytes: number }
      while ((await health()).heapUsedBytes === 0) await new Promise((resolve) => setTimeout(resolve, 50))
      const busy = (await (await fetch(`${url}/demo/busy?ms=500`)).json()) as { overloaded: boolean }
      assert.equal(busy.overloaded, true, JSON.stringify(busy))
      const shed = await fetch(`${url}/image/sample.jpg?width=10`)
      await shed.arrayBuffer()
      assert.equal(shed.status, 503)
      assert.equal(shed.headers.get('x-ic-error-code'), 'IC_OVERLOADED')
    } catch (err) {
      // A failed check must not leave the server running, nor the test waiting on it.
      child.kill('SIGKILL')
      throw err
    }
    const exited = once(child, 'exit')
    child.kill('SIGTERM')
    const [code] = await exited
    assert.equal(code, 0, errors)
  })
}

for (const framework of ['express', 'koa'] as const) {
  describe(`demo on ${framework}: load protection`, () => {
    test('unsigned charts get the stricter limit: 429 on the 11th in a minute; signed ones are still served', async () => {
      const sampler = fixedSampler(() => CALM)
      const demo = await startDemo({ port: 0, framework, sampler })
      try {
        for (let i = 1; i <= 10; i++) {
          const res = await fetch(`${demo.url}/chart?cht=p&chd=t%3A1%2C${i}&chs=40x40`)
          await res.arrayBuffer()
          assert.equal(res.status, 200, `request ${i}`)
        }
        const res = await fetch(`${demo.url}/chart?cht=p&chd=t%3A1%2C11&chs=40x40`, {
          headers: { origin: 'http://page.example' },
        })
        assert.equal(res.status, 429)
        assert.equal(res.headers.get('x-ic-error-code'), 'IC_RATE_LIMITED')
        assert.ok(Number(res.headers.get('retry-after')) >= 1)
        assert.ok(res.headers.get('ratelimit'))
        const exposed = res.headers.get('access-control-expose-headers') ?? ''
        for (const name of ['x-ic-error-code', 'retry-after', 'ratelimit'])
          assert.ok(exposed.includes(name), exposed)
        await res.arrayBuffer()
        const signed = await fetch(
          `${demo.url}${signatures.valid.find((v) => v.secret === 'demo-secret')?.url}`,
        )
        await signed.arrayBuffer()
        assert.equal(signed.status, 200)
      } finally {
        await demo.close()
        sampler.close()
      }
    })

    test('the image route has its own per-IP limit', async () => {
      const sampler = fixedSampler(() => CALM)
      const demo = await startDemo({
        port: 0,
        framework,
        sampler,
        imageRateLimit: { limit: 2, windowMs: '1m' },
      })
      try {
        const statuses: number[] = []
        for (let i = 0; i < 3; i++) {
          const res = await fetch(`${demo.url}/image/status/404?width=10`)
          await res.arrayBuffer()
          statuses.push(res.status)
          if (res.status === 429) assert.equal(res.headers.get('x-ic-error-code'), 'IC_RATE_LIMITED')
        }
        assert.deepEqual(statuses, [404, 404, 429])
      } finally {
        await demo.close()
        sampler.close()
      }
    })

    test('overloaded: images and charts are shed with 503 IC_OVERLOADED and Retry-After', async () => {
      const sampler = fixedSampler(() => ({ ...CALM, eventLoopDelayMs: 400 }))
      const reports: ErrorReport[] = []
      const demo = await startDemo({ port: 0, framework, sampler, onError: (r) => reports.push(r) })
      try {
        for (const path of ['/image/sample.jpg?width=10', '/chart?cht=p&chd=t%3A1&chs=10x10']) {
          const res = await fetch(demo.url + path)
          await res.arrayBuffer()
          assert.equal(res.status, 503, path)
          assert.equal(res.headers.get('x-ic-error-code'), 'IC_OVERLOADED')
          assert.match(res.headers.get('retry-after') ?? '', /^[1-9]\d*$/)
        }
        assert.deepEqual(
          reports.map((r) => [r.status, r.code]),
          [
            [503, 'IC_OVERLOADED'],
            [503, 'IC_OVERLOADED'],
          ],
        )
      } finally {
        await demo.close()
        sampler.close()
      }
    })
  })
}

function resourceCounts(): Map<string, number> {
  const counts = new Map<string, number>()
  for (const name of process.getActiveResourcesInfo()) counts.set(name, (counts.get(name) ?? 0) + 1)
  return counts
}

for (const framework of ['express', 'koa'] as const) {
  test(`close() on ${framework} leaves no server, socket or timer behind, a hanging backend request included`, async () => {
    const before = resourceCounts()
    const demo = await startDemo({ port: 0, framework })
    for (const path of [
      '/image/sample.jpg?width=10',
      '/chart?cht=p&chd=t%3A1&chs=10x10',
      '/image/status/500',
    ]) {
      await (await fetch(demo.url + path)).arrayBuffer()
    }
    const hanging = fetch(`${demo.url}/image/hang.jpg?width=10`).then(
      (res) => res.arrayBuffer(),
      () => undefined,
    )
    await demo.close()
    await hanging
    // Handles are released a few turns of the loop after their 'close' events.
    let leaked: string[] = []
    for (let turn = 0; turn < 2000; turn++) {
      const now = resourceCounts()
      leaked = [...now].filter(([name, n]) => n > (before.get(name) ?? 0)).map(([name, n]) => `${name}×${n}`)
      if (leaked.length === 0) break
      await new Promise((resolve) => setImmediate(resolve))
    }
    assert.deepEqual(leaked, [])
  })
}
