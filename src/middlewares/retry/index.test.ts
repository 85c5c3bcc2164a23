import assert from 'node:assert/strict'
import { once } from 'node:events'
import { type AddressInfo, createServer as createNetServer } from 'node:net'
import { Readable } from 'node:stream'
import { describe, it } from 'node:test'
import { type Backend, startBackend } from '../../../test/support/backends.ts'
import { defineErrorCode } from '../../catalogue.ts'
import { createRetryPolicy, fetchWithRetry, parseRetryAfter, type RetryEvent, retryDelay } from './index.ts'

/** A fetch that answers 200 and records the URLs it was asked for. */
function recordingFetch(): { readonly calls: string[]; readonly fetch: typeof globalThis.fetch } {
  const calls: string[] = []
  const fetch = (async (url: string | URL) => {
    calls.push(String(url))
    return new Response('ok')
  }) as typeof globalThis.fetch
  return { calls, fetch }
}

describe('retryDelay', () => {
  it('waits at least 1 s by default, with full jitter up to a doubling ceiling', () => {
    const low = createRetryPolicy({ random: () => 0 })
    const high = createRetryPolicy({ random: () => 0.999999 })
    for (let attempt = 1; attempt <= 8; attempt++) {
      assert.equal(retryDelay(low, attempt), 1000)
      const ceiling = Math.min(30_000, 1000 * 2 ** attempt)
      assert.equal(retryDelay(high, attempt), ceiling - 1)
    }
    assert.equal(retryDelay(createRetryPolicy({ random: () => 0.5 }), 1), 1500)
  })

  it('truncates at maxDelayMs, and spreads the delays', () => {
    const policy = createRetryPolicy({ minDelayMs: '100ms', maxDelayMs: '1s' })
    const delays = Array.from({ length: 200 }, () => retryDelay(policy, 10) as number)
    assert.ok(delays.every((d) => d >= 100 && d < 1000))
    assert.ok(new Set(delays).size > 50, 'jittered')
    assert.equal(retryDelay(createRetryPolicy({ random: () => 0.999999 }), 1000), 29_999)
  })

  it('takes Retry-After as a floor up to the cap, and gives up past it', () => {
    const policy = createRetryPolicy({ random: () => 0 })
    assert.equal(retryDelay(policy, 1, 7000), 7000)
    assert.equal(retryDelay(policy, 1, 0), 1000)
    assert.equal(retryDelay(policy, 1, 30_000), 30_000)
    assert.equal(retryDelay(policy, 1, 30_001), undefined)
    assert.equal(retryDelay(policy, 1, Number.POSITIVE_INFINITY), undefined)
  })

  it('refuses an attempt count or a Retry-After that no retry loop should pass, naming it', () => {
    const policy = createRetryPolicy()
    for (const attempt of [0, -1, 1.5, Number.NaN, '1' as never])
      assert.throws(() => retryDelay(policy, attempt), {
        name: 'TypeError',
        message: /^Expected `attempt` to be an integer of at least 1/,
      })
    for (const retryAfterMs of [-1, Number.NaN, '5' as never])
      assert.throws(() => retryDelay(policy, 1, retryAfterMs), {
        name: 'TypeError',
        message: /^Expected `retryAfterMs` to be a number of at least 0/,
      })
  })
})

describe('parseRetryAfter', () => {
  it('reads delta-seconds and HTTP dates', () => {
    assert.equal(parseRetryAfter('120'), 120_000)
    assert.equal(parseRetryAfter(' 0 '), 0)
    // Longer than any cap, not absent: retrying on the normal backoff would come back too early.
    assert.equal(parseRetryAfter('12345678901'), 12_345_678_901_000)
    assert.equal(parseRetryAfter('9'.repeat(400)), Number.POSITIVE_INFINITY)
    const now = Date.parse('Wed, 21 Oct 2015 07:27:30 GMT')
    assert.equal(parseRetryAfter('Wed, 21 Oct 2015 07:28:00 GMT', now), 30_000)
    assert.equal(parseRetryAfter('Wed, 21 Oct 2015 07:27:00 GMT', now), 0, 'a date in the past means now')
  })

  it('reads the three HTTP-date forms of RFC 9110 as GMT, whatever the local time zone', () => {
    const zone = process.env.TZ
    // Node reads TZ again when it changes: asctime read as local time would be 5 h off here.
    process.env.TZ = 'America/New_York'
    try {
      const now = Date.UTC(1994, 10, 6, 8, 49, 0)
      for (const date of [
        'Sun, 06 Nov 1994 08:49:37 GMT',
        'Sunday, 06-Nov-94 08:49:37 GMT',
        'Sun Nov  6 08:49:37 1994',
        'sun, 06 nov 1994 08:49:37 gmt',
      ])
        assert.equal(parseRetryAfter(date, now), 37_000, date)
      assert.equal(parseRetryAfter('Sun Nov 16 08:49:37 1994', now), Date.UTC(1994, 10, 16, 8, 49, 37) - now)
    } finally {
      if (zone === undefined) delete process.env.TZ
      else process.env.TZ = zone
    }
  })

  it('puts a two-digit rfc850 year at most 50 years ahead, else in the century before', () => {
    const now = Date.UTC(2026, 0, 1)
    assert.equal(parseRetryAfter('Thursday, 01-Jan-70 00:00:10 GMT', 0), 10_000, '1970 seen from 1970')
    const in2076 = Date.UTC(2076, 0, 1)
    assert.equal(parseRetryAfter('Wednesday, 01-Jan-76 00:00:00 GMT', now), in2076 - now, '50 years ahead')
    assert.equal(parseRetryAfter('Thursday, 01-Jan-77 00:00:00 GMT', now), 0, '1977, in the past')
    assert.equal(
      parseRetryAfter('Friday, 01-Jan-77 00:00:00 GMT', Date.UTC(2027, 0, 1)),
      Date.UTC(2077, 0, 1) - Date.UTC(2027, 0, 1),
      'seen from 2027, 77 is 2077',
    )
  })

  it('ignores what is neither', () => {
    for (const bad of [
      undefined,
      null,
      '',
      '-1',
      '1.5',
      'soon',
      '2015-10-21',
      'Wed, 99 Foo 2015',
      'Wed, 21 Oct 2015 07:28:00 PST',
      'Wed, 21 Oct 2015 07:28:00 +0000',
      'Wed, 31 Feb 2015 07:28:00 GMT',
      'Wed, 21 Oct 2015 24:28:00 GMT',
      'Wed, 21-Oct-15 07:28:00 GMT',
      'Wednesday, 21 Oct 2015 07:28:00 GMT',
      'Wed Oct 21 07:28:00 2015 GMT',
    ]) {
      assert.equal(parseRetryAfter(bad), undefined, String(bad))
    }
  })
})

describe('createRetryPolicy', () => {
  it('throws a TypeError naming the option', () => {
    assert.throws(() => createRetryPolicy({ maxAttempts: 0 }), /`maxAttempts`/)
    assert.throws(() => createRetryPolicy({ maxAttempts: 2.5 }), /`maxAttempts`/)
    assert.throws(() => createRetryPolicy({ minDelayMs: -1 }), /`minDelayMs`/)
    assert.throws(() => createRetryPolicy({ minDelayMs: 0, maxDelayMs: 0 }), /`minDelayMs`/)
    assert.throws(() => createRetryPolicy({ maxDelayMs: 0 }), /`maxDelayMs`/)
    assert.throws(() => createRetryPolicy({ maxDelayMs: 'later' }), /`maxDelayMs`/)
    assert.throws(() => createRetryPolicy({ minDelayMs: 2000, maxDelayMs: 1000 }), /`maxDelayMs`/)
    assert.throws(() => createRetryPolicy({ statuses: [200] }), /`statuses`/)
    assert.throws(() => createRetryPolicy({ random: 4 as never }), /`random`/)
    assert.throws(() => createRetryPolicy({ onRetry: 'log' as never }), /`onRetry`/)
  })

  it('refuses an option it does not know, `fetch` included, and takes every documented one', () => {
    for (const name of ['maxRetries', 'fetch'])
      assert.throws(() => createRetryPolicy({ [name]: 3 } as never), {
        name: 'TypeError',
        message: new RegExp(`^Unknown option \`${name}\` of createRetryPolicy: expected one of maxAttempts,`),
      })
    const random = () => 0.5
    const onRetry = () => {}
    assert.deepEqual(
      createRetryPolicy({
        maxAttempts: 4,
        minDelayMs: '1s',
        maxDelayMs: '20s',
        statuses: [429, 502, 503],
        random,
        onRetry,
      }),
      {
        maxAttempts: 4,
        minDelayMs: 1000,
        maxDelayMs: 20_000,
        statuses: new Set([429, 502, 503]),
        random,
        onRetry,
      },
    )
    assert.equal(createRetryPolicy().maxAttempts, 3)
  })
})

describe('fetchWithRetry', { concurrency: true }, () => {
  /** A backend that answers the statuses of `?seq=` in turn (0: drop the connection). */
  async function sequenceBackend(
    headers: Record<string, string> = {},
  ): Promise<Backend & { calls: () => number }> {
    let calls = 0
    const backend = await startBackend((req, res) => {
      calls++
      const seq = (new URL(req.url ?? '/', 'http://x').searchParams.get('seq') ?? '').split(',')
      const status = Number(seq[calls - 1] ?? 200)
      if (status === 0) return void req.socket.destroy()
      res.writeHead(status, headers)
      res.end(`answer ${calls}`)
    })
    return Object.assign(backend, { calls: () => calls })
  }
  // fetchWithRetry waits at least 1 s: each retry below costs a second, so the tests of this
  // suite run concurrently (each has its own backend).
  const fast = { minDelayMs: 1000, maxDelayMs: 1000 }

  it('retries 429, 502 and network errors, then resolves with the answer', async () => {
    const backend = await sequenceBackend()
    const events: RetryEvent[] = []
    try {
      const res = await fetchWithRetry(
        `${backend.url}/?seq=429,502,0,200`,
        {},
        {
          ...fast,
          maxAttempts: 5,
          onRetry: (e) => events.push(e),
        },
      )
      assert.equal(res.status, 200)
      assert.equal(await res.text(), 'answer 4')
      assert.deepEqual(
        events.map((e) => [e.attempt, e.status ?? 'network']),
        [
          [1, 429],
          [2, 502],
          [3, 'network'],
        ],
      )
      assert.ok(events.every((e) => e.delayMs === 1000))
    } finally {
      await backend.close()
    }
  })

  it('never retries other statuses, and returns the last answer when the attempts are spent', async () => {
    const backend = await sequenceBackend()
    try {
      for (const status of [400, 404, 500, 503, 504]) {
        const before = backend.calls()
        const res = await fetchWithRetry(`${backend.url}/?seq=${','.repeat(before)}${status},200`, {}, fast)
        assert.equal(res.status, status)
        assert.equal(backend.calls() - before, 1, `status ${status} was retried`)
      }
      const before = backend.calls()
      const res = await fetchWithRetry(`${backend.url}/?seq=${','.repeat(before)}502,502,502,200`, {}, fast)
      assert.equal(res.status, 502)
      assert.equal(backend.calls() - before, 3)
    } finally {
      await backend.close()
    }
  })

  it("follows the response's x-ic-error-code: a catalogue code marked non-retryable is not retried", async () => {
    defineErrorCode('ACME_DAILY_QUOTA_SPENT', {
      status: 429,
      title: 'Daily Quota Spent',
      description: 'The daily quota is spent until midnight UTC.',
      retryable: false,
      hint: 'Wait for midnight UTC.',
    })
    // Each path answers its status and code the first time, then 200.
    const answers: Record<string, readonly [number, string]> = {
      '/redirects': [502, 'IC_TOO_MANY_REDIRECTS'],
      '/quota': [429, ' ACME_DAILY_QUOTA_SPENT '],
      '/backend-error': [502, 'IC_BACKEND_ERROR'],
      '/newer-server': [502, 'IC_FROM_A_NEWER_SERVER'],
      '/rate-limited': [429, 'IC_RATE_LIMITED'],
    }
    const calls = new Map<string, number>()
    const backend = await startBackend((req, res) => {
      const path = req.url ?? ''
      calls.set(path, (calls.get(path) ?? 0) + 1)
      const [status, code] = answers[path] ?? [404, 'IC_NOT_FOUND']
      if (calls.get(path) === 1) res.writeHead(status, { 'x-ic-error-code': code })
      res.end(`answer ${calls.get(path)}`)
    })
    try {
      const events: RetryEvent[] = []
      const seen = await Promise.all(
        Object.keys(answers).map(async (path) => {
          const res = await fetchWithRetry(
            `${backend.url}${path}`,
            {},
            {
              ...fast,
              onRetry: (e) => events.push(e),
            },
          )
          return `${path} ${res.status} ${await res.text()}`
        }),
      )
      assert.deepEqual(seen, [
        '/redirects 502 answer 1',
        '/quota 429 answer 1',
        '/backend-error 200 answer 2',
        '/newer-server 200 answer 2',
        '/rate-limited 200 answer 2',
      ])
      assert.equal(events.length, 3, 'onRetry only for the retried ones')
    } finally {
      await backend.close()
    }
  })

  it('honours Retry-After in seconds', async () => {
    const backend = await sequenceBackend({ 'retry-after': '2' })
    try {
      const started = performance.now()
      const res = await fetchWithRetry(
        `${backend.url}/?seq=429,200`,
        {},
        { maxDelayMs: '3s', random: () => 0 },
      )
      assert.equal(res.status, 200)
      assert.ok(performance.now() - started >= 1990, 'waited the 2 s the server asked for, not the 1 s floor')
    } finally {
      await backend.close()
    }
  })

  it('returns a 429 whose Retry-After is past the cap instead of retrying early', async () => {
    for (const retryAfter of ['120', '99999999999', '9'.repeat(400)]) {
      const backend = await sequenceBackend({ 'retry-after': retryAfter })
      try {
        const res = await fetchWithRetry(`${backend.url}/?seq=429,200`, {}, fast)
        assert.equal(res.status, 429)
        assert.equal(res.headers.get('retry-after'), retryAfter)
        assert.equal(backend.calls(), 1, `Retry-After: ${retryAfter}`)
      } finally {
        await backend.close()
      }
    }
  })

  it('rejects with the last network error once the attempts are spent', async () => {
    const gone = await startBackend(() => {})
    const url = gone.url
    await gone.close()
    const events: RetryEvent[] = []
    const err = await fetchWithRetry(url, {}, { ...fast, onRetry: (e) => events.push(e) }).catch(
      (e: unknown) => e,
    )
    assert.ok(err instanceof TypeError)
    assert.equal(events.length, 2)
  })

  it('does not retry once the signal aborted, even while waiting', async () => {
    const backend = await sequenceBackend()
    try {
      const controller = new AbortController()
      const reason = new Error('deadline')
      const pending = fetchWithRetry(
        `${backend.url}/?seq=502,200`,
        { signal: controller.signal },
        {
          minDelayMs: '10s',
          maxDelayMs: '20s',
          onRetry: () => setImmediate(() => controller.abort(reason)),
        },
      )
      assert.equal(await pending.catch((e: unknown) => e), reason)
      assert.equal(backend.calls(), 1)
      assert.equal(
        await fetchWithRetry(backend.url, { signal: controller.signal }).catch((e: unknown) => e),
        reason,
      )
      assert.equal(backend.calls(), 1, 'an aborted signal sends nothing')
    } finally {
      await backend.close()
    }
  })

  it('reports no retry for an answer that came as the signal aborted', async () => {
    const controller = new AbortController()
    const reason = new Error('gone')
    const retries: unknown[] = []
    const pending = fetchWithRetry(
      'http://127.0.0.1:9/',
      { signal: controller.signal },
      {
        fetch: async () => {
          controller.abort(reason)
          return new Response('busy', { status: 429 })
        },
        onRetry: (event) => retries.push(event),
      },
    )
    assert.equal(await pending.catch((e: unknown) => e), reason)
    assert.deepEqual(retries, [])
  })

  it('takes a null init as fetch does: as none', async () => {
    const backend = await sequenceBackend()
    try {
      const res = await fetchWithRetry(`${backend.url}/?seq=200`, null)
      assert.equal(res.status, 200)
      assert.equal(await res.text(), 'answer 1')
    } finally {
      await backend.close()
    }
  })

  it('sends a body that can be read once (web stream, Node Readable, async iterable) once', async () => {
    const backend = await sequenceBackend()
    const bodies = {
      'web stream': () =>
        new ReadableStream({
          start(controller) {
            controller.enqueue(new TextEncoder().encode('chart data'))
            controller.close()
          },
        }),
      'Node Readable': () => Readable.from(['chart ', 'data']),
      'async generator': () =>
        (async function* () {
          yield new TextEncoder().encode('chart data')
        })(),
    }
    try {
      for (const [kind, body] of Object.entries(bodies)) {
        for (const status of [502, 0]) {
          const before = backend.calls()
          const init = { method: 'PUT', body: body(), duplex: 'half' } as RequestInit
          const url = `${backend.url}/?seq=${','.repeat(before)}${status},200`
          const result = await fetchWithRetry(url, init, fast).catch((e: unknown) => e)
          if (status === 0) assert.ok(result instanceof TypeError, `${kind}: ${result}`)
          else assert.equal((result as Response).status, 502, kind)
          assert.equal(backend.calls() - before, 1, `${kind} after ${status || 'a network error'}`)
        }
      }
      const before = backend.calls()
      const replayable = [
        'a=1',
        new TextEncoder().encode('a=1'),
        new TextEncoder().encode('a=1').buffer,
        new Blob(['a=1']),
        new URLSearchParams('a=1'),
      ]
      for (const body of replayable) {
        const url = `${backend.url}/?seq=${','.repeat(backend.calls())}502,200`
        assert.equal((await fetchWithRetry(url, { method: 'PUT', body }, fast)).status, 200)
      }
      assert.equal(backend.calls() - before, 2 * replayable.length, 'buffered bodies are sent again')
    } finally {
      await backend.close()
    }
  })

  it('retries a POST only after a 429, never after a 502 or a network error', async () => {
    const backend = await sequenceBackend()
    try {
      const post = (seq: string, options = {}) =>
        fetchWithRetry(
          `${backend.url}/?seq=${','.repeat(backend.calls())}${seq}`,
          {
            method: 'post',
            body: 'cht=p&chd=t:1,2',
          },
          { ...fast, ...options },
        )
      let before = backend.calls()
      assert.equal((await post('502,200')).status, 502)
      assert.equal(backend.calls() - before, 1, 'a 502 POST is not sent again')
      before = backend.calls()
      await assert.rejects(post('0,200'), TypeError)
      assert.equal(backend.calls() - before, 1, 'a POST cut off is not sent again')
      before = backend.calls()
      assert.equal((await post('429,200')).status, 200)
      assert.equal(backend.calls() - before, 2, 'a 429 POST was not processed: retried')
      before = backend.calls()
      assert.equal((await post('502,200', { methods: ['get', 'Post'] })).status, 200)
      assert.equal(backend.calls() - before, 2, '`methods` makes POST retryable')
      before = backend.calls()
      const res = await fetchWithRetry(
        `${backend.url}/?seq=${','.repeat(before)}502,200`,
        { method: 'PUT', body: 'x' },
        { ...fast, methods: ['GET'] },
      )
      assert.equal(res.status, 502)
      assert.equal(backend.calls() - before, 1, 'a PUT left out of `methods` is not')
      before = backend.calls()
      for (const method of ['put', 'DELETE', 'options']) {
        const seq = `${','.repeat(backend.calls())}502,200`
        assert.equal((await fetchWithRetry(`${backend.url}/?seq=${seq}`, { method }, fast)).status, 200)
      }
      assert.equal(backend.calls() - before, 6, 'the idempotent methods are retried by default')
    } finally {
      await backend.close()
    }
  })

  it('reads the method, body and signal of a Request as fetch does, unless init sets them', async () => {
    const backend = await sequenceBackend()
    try {
      const request = (seq: string, init: RequestInit = {}) =>
        new Request(`${backend.url}/?seq=${','.repeat(backend.calls())}${seq}`, init)
      let before = backend.calls()
      assert.equal((await fetchWithRetry(request('502,200', { method: 'POST' }), {}, fast)).status, 502)
      assert.equal(backend.calls() - before, 1, 'a POST Request is not sent again after a 502')
      before = backend.calls()
      const put = request('502,200', { method: 'PUT', body: 'chart data' })
      assert.equal((await fetchWithRetry(put, {}, fast)).status, 502)
      assert.equal(backend.calls() - before, 1, "a Request's body is a stream, read once")
      before = backend.calls()
      const post = request('502,200', { method: 'POST' })
      assert.equal((await fetchWithRetry(post, { method: 'GET' }, fast)).status, 200)
      assert.equal(backend.calls() - before, 2, "init's method wins")
      before = backend.calls()
      assert.equal((await fetchWithRetry(request('502,200'), {}, fast)).status, 200)
      assert.equal(backend.calls() - before, 2, 'a GET Request is retried')
    } finally {
      await backend.close()
    }
    const reason = new Error('deadline')
    let calls = 0
    // `signal: undefined` (a JavaScript caller's, or without exactOptionalPropertyTypes) leaves
    // the Request's signal in place, as fetch reads it.
    for (const init of [{}, { signal: undefined } as unknown as RequestInit]) {
      const controller = new AbortController()
      calls = 0
      const pending = fetchWithRetry(
        new Request('http://images.test/', { signal: controller.signal }),
        init,
        {
          ...fast,
          maxAttempts: 2,
          fetch: (async () => {
            calls++
            return new Response('', { status: 502 })
          }) as typeof globalThis.fetch,
          onRetry: () => controller.abort(reason),
        },
      )
      await assert.rejects(pending, (err) => err === reason)
      assert.equal(calls, 1, `the Request's signal ends the wait (init ${JSON.stringify(init)})`)
    }
    const dropped = new AbortController()
    calls = 0
    const response = await fetchWithRetry(
      new Request('http://images.test/', { signal: dropped.signal }),
      { signal: null },
      {
        ...fast,
        maxAttempts: 2,
        fetch: (async () => {
          calls++
          return new Response('', { status: calls === 1 ? 502 : 200 })
        }) as typeof globalThis.fetch,
        onRetry: () => dropped.abort(reason),
      },
    )
    assert.deepEqual([response.status, calls], [200, 2], "init's signal: null drops the Request's")
  })

  it('refuses a backoff shorter than 1 s, before fetching', async () => {
    const { calls, fetch } = recordingFetch()
    for (const options of [
      { minDelayMs: 0 },
      { minDelayMs: 999 },
      { minDelayMs: '10ms' },
      { maxDelayMs: 500 },
    ])
      await assert.rejects(fetchWithRetry('http://x.test/', {}, { ...options, fetch }), {
        name: 'TypeError',
        message: /^Expected `(minDelayMs|maxDelayMs)` to be a duration of 1000 ms/,
      })
    assert.deepEqual(calls, [])
  })

  it('refuses `methods` that is not an array of method names, before fetching', async () => {
    for (const methods of ['GET', [''], ['GET POST'], [1], null]) {
      await assert.rejects(fetchWithRetry('http://127.0.0.1:1/', {}, { methods: methods as never }), {
        name: 'TypeError',
        message: /^Expected `methods` to be/,
      })
    }
  })

  it('refuses an option it does not know, and takes every documented one, `fetch` included', async () => {
    const { calls, fetch } = recordingFetch()
    await assert.rejects(fetchWithRetry('http://x.test/', {}, { fetch, maxAttempt: 2 } as never), {
      name: 'TypeError',
      message:
        /^Unknown option `maxAttempt` of fetchWithRetry: expected one of maxAttempts, .*, fetch, methods$/,
    })
    assert.deepEqual(calls, [], 'nothing is fetched with a misspelt option')
    const res = await fetchWithRetry(
      'http://x.test/',
      {},
      {
        maxAttempts: 2,
        minDelayMs: 1000,
        maxDelayMs: 1000,
        statuses: [429],
        random: () => 0,
        onRetry: () => {},
        fetch,
        methods: ['GET'],
      },
    )
    assert.equal(await res.text(), 'ok')
    assert.deepEqual(calls, ['http://x.test/'])
  })

  it('does not retry a fetch that failed on what it was answered: a refused redirect, a redirect loop, a bad Location, no HTTP', async () => {
    let hits = 0
    const redirects = await startBackend((req, res) => {
      hits++
      res.writeHead(302, { location: req.url === '/ftp' ? 'ftp://images.example.com/a.png' : '/again' })
      res.end()
    })
    const notHttp = createNetServer((socket) => {
      hits++
      socket.on('error', () => {})
      socket.end('SSH-2.0-OpenSSH_9.6\r\n')
    })
    notHttp.listen(0, '127.0.0.1')
    await once(notHttp, 'listening')
    const notHttpUrl = `http://127.0.0.1:${(notHttp.address() as AddressInfo).port}/`
    const events: RetryEvent[] = []
    try {
      for (const [url, init, expectedHits] of [
        [`${redirects.url}/`, { redirect: 'error' }, 1],
        [`${redirects.url}/`, {}, 21], // undici follows 20 redirects, then fails
        [`${redirects.url}/ftp`, {}, 1],
        [notHttpUrl, {}, 1],
      ] as const) {
        hits = 0
        const err = await fetchWithRetry(url, init, { ...fast, onRetry: (e) => events.push(e) }).catch(
          (e: unknown) => e,
        )
        assert.ok(err instanceof TypeError, `${url} ${JSON.stringify(init)}: ${err}`)
        assert.equal(hits, expectedHits, `${url} ${JSON.stringify(init)}: sent again`)
      }
      assert.deepEqual(events, [])
    } finally {
      notHttp.close()
      await redirects.close()
    }
  })

  it('does not retry a TypeError that is not a network failure', async () => {
    const events: RetryEvent[] = []
    await assert.rejects(
      fetchWithRetry('http://[not-an-address/', {}, { ...fast, onRetry: (e) => events.push(e) }),
      TypeError,
    )
    assert.equal(events.length, 0)
  })
})
