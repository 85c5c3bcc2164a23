import assert from 'node:assert/strict'
import { get, type IncomingMessage, type ServerResponse } from 'node:http'
import { after, before, describe, it } from 'node:test'
import fc from 'fast-check'
import { frameworks, type RunningApp, startApp } from '../../../test/support/harness.ts'
import { isIcError } from '../../errors.ts'
import type { Guard } from '../../guard.ts'
import { type ApiKeyOptions, apiKey } from './index.ts'

const res = {} as ServerResponse
async function outcome(guard: Guard, url: string, headers: Record<string, string> = {}): Promise<string> {
  try {
    const out = (await guard({ url, headers } as unknown as IncomingMessage, res)) as {
      apiKey: { id: string; scopes: Set<string> }
    }
    return `ok ${out.apiKey.id} [${[...out.apiKey.scopes].join(',')}]`
  } catch (err) {
    assert.ok(isIcError(err), String(err))
    return `${err.status} ${err.code}`
  }
}

const keys = {
  'k-reader': { id: 'reader', scopes: ['images:read'] },
  'k-admin': ['images:read', 'images:write'],
}

describe('apiKey', () => {
  it('refuses misspelt options and grants at construction, naming them', () => {
    assert.throws(() => apiKey({ keys, scope: ['admin'] } as never), /Unknown option `scope` of apiKey/)
    assert.throws(
      () => apiKey({ keys: { k: { id: 'k', scope: ['admin'] } as never } }),
      /Unknown option `scope` of `keys\[…\]`/,
    )
    assert.throws(() => apiKey({ keys: new Map([['k', []]]) as never }), /`keys` to be a plain object/)
    assert.throws(() => apiKey({ keys: null as never }), /`keys` to be a plain object/)
  })

  it('reads any falsy answer of lookup() as an unknown key: 401, not 500', async () => {
    for (const answer of [false, null, 0, '']) {
      const guard = apiKey({ lookup: () => answer as never })
      assert.equal(await outcome(guard, '/i', { 'x-api-key': 'k' }), '401 IC_API_KEY_INVALID', String(answer))
    }
  })

  it('reads an empty list from lookup() as an unknown key, not a key without scopes', async () => {
    const scopesOf: Record<string, string[]> = { 'k-known': ['images:read'] }
    const guard = apiKey({ lookup: async (key) => scopesOf[key] ?? [] })
    assert.equal(await outcome(guard, '/i', { 'x-api-key': 'made-up' }), '401 IC_API_KEY_INVALID')
    assert.equal(
      await outcome(apiKey({ lookup: async (key) => scopesOf[key] ?? [], scopes: ['images:read'] }), '/i', {
        'x-api-key': 'made-up',
      }),
      '401 IC_API_KEY_INVALID',
    )
    assert.match(
      await outcome(guard, '/i', { 'x-api-key': 'k-known' }),
      /^ok key-[0-9a-f]{12} \[images:read\]$/,
    )
    // A record says so explicitly: a known key without scopes.
    const record = apiKey({ lookup: () => ({ id: 'row', scopes: [] }) })
    assert.equal(await outcome(record, '/i', { 'x-api-key': 'k' }), 'ok row []')
  })

  it('accepts extra fields in a record from lookup(), a database row', async () => {
    const guard = apiKey({ lookup: () => ({ id: 'row', scopes: ['a'], owner: 'x' }) as never })
    assert.equal(await outcome(guard, '/i', { 'x-api-key': 'k' }), 'ok row [a]')
    // A NULL column is no scopes, there; a configured grant with `scopes: null` is refused.
    const nullScopes = apiKey({ lookup: () => ({ id: 'row', scopes: null }) as never })
    assert.equal(await outcome(nullScopes, '/i', { 'x-api-key': 'k' }), 'ok row []')
    // A NULL id is named by the key's digest, as a row without one.
    const nullId = apiKey({ lookup: () => ({ id: null, scopes: null }) as never })
    assert.match(await outcome(nullId, '/i', { 'x-api-key': 'k' }), /^ok key-[0-9a-f]{12} \[\]$/)
  })

  it('publishes scopes a handler cannot add to', async () => {
    const guard = apiKey({ keys, scopes: ['images:read'] })
    const first = (await guard({ url: '/i', headers: { 'x-api-key': 'k-reader' } } as never, res)) as {
      apiKey: { scopes: ReadonlySet<string> & { add?: unknown } }
    }
    assert.equal(first.apiKey.scopes.add, undefined)
    assert.equal(first.apiKey.scopes.has('images:read'), true)
    assert.deepEqual(JSON.parse(JSON.stringify(first.apiKey)).scopes, ['images:read'])
  })

  it('reads the query parameter when the header is blank', async () => {
    const guard = apiKey({ keys, query: 'key' })
    assert.equal(await outcome(guard, '/i?key=k-reader', { 'x-api-key': '   ' }), 'ok reader [images:read]')
    assert.equal(await outcome(guard, '/i', { 'x-api-key': '   ' }), '401 IC_API_KEY_MISSING')
  })

  it('reads the key from the x-api-key header by default', async () => {
    const guard = apiKey({ keys })
    assert.equal(await outcome(guard, '/i', { 'x-api-key': 'k-reader' }), 'ok reader [images:read]')
    assert.equal(await outcome(guard, '/i', { 'x-api-key': ' k-reader ' }), 'ok reader [images:read]')
    assert.equal(await outcome(guard, '/i?key=k-reader'), '401 IC_API_KEY_MISSING')
    assert.equal(await outcome(guard, '/i', { 'x-api-key': '' }), '401 IC_API_KEY_MISSING')
    assert.equal(await outcome(guard, '/i', { 'x-api-key': 'k-readerX' }), '401 IC_API_KEY_INVALID')
  })

  it('never publishes the key itself: the default id is a fingerprint', async () => {
    const result = await outcome(apiKey({ keys }), '/i', { 'x-api-key': 'k-admin' })
    assert.match(result, /^ok key-[0-9a-f]{12} \[images:read,images:write\]$/)
    assert.ok(!result.includes('k-admin'))
  })

  it('reads a query parameter (and its base64 form) when configured, the header first', async () => {
    const guard = apiKey({ keys, query: 'key' })
    assert.equal(await outcome(guard, '/i?key=k-reader'), 'ok reader [images:read]')
    assert.equal(
      await outcome(guard, `/i?key64=${Buffer.from('k-reader').toString('base64')}`),
      'ok reader [images:read]',
    )
    assert.equal(await outcome(guard, '/i?key=nope', { 'x-api-key': 'k-reader' }), 'ok reader [images:read]')
    assert.equal(await outcome(guard, '/i?key=k-reader&key=k-admin'), '400 IS_VALIDATION_ERROR')
    const queryOnly = apiKey({ keys, header: false, query: 'api_key' })
    assert.equal(await outcome(queryOnly, '/i', { 'x-api-key': 'k-reader' }), '401 IC_API_KEY_MISSING')
  })

  it('refuses a known key without the scopes of the route with 403', async () => {
    const guard = apiKey({ keys, scopes: ['images:write'] })
    assert.equal(await outcome(guard, '/i', { 'x-api-key': 'k-reader' }), '403 IC_API_KEY_FORBIDDEN')
    assert.match(await outcome(guard, '/i', { 'x-api-key': 'k-admin' }), /^ok /)
  })

  it('asks an async lookup for keys the record does not hold', async () => {
    const guard = apiKey({
      keys,
      header: 'Authorization-Key',
      lookup: async (key) => (key === 'from-db' ? { id: 'db', scopes: ['x'] } : undefined),
      scopes: ['x'],
    })
    assert.equal(await outcome(guard, '/i', { 'authorization-key': 'from-db' }), 'ok db [x]')
    assert.equal(await outcome(guard, '/i', { 'authorization-key': 'other' }), '401 IC_API_KEY_INVALID')
    assert.equal(await outcome(guard, '/i', { 'authorization-key': 'k-reader' }), '403 IC_API_KEY_FORBIDDEN')
  })

  it('validates its options at construction, naming the option', () => {
    const cases: [ApiKeyOptions, RegExp][] = [
      [{}, /`keys` or `lookup`/],
      [{ keys, header: 'bad header' }, /`header`/],
      [{ keys, query: 'key64' }, /`query`/],
      [
        { keys, query: 'key[]' },
        /`query` to be a parameter name \(not ending in 64, without brackets\) or false, got "key\[\]"/,
      ],
      [{ keys, header: false, query: false }, /both are false/],
      [{ keys, scopes: [''] }, /`scopes`/],
      [{ keys: { k: { scopes: 'all' as never } } }, /scopes/],
      [{ keys: { '': [] } }, /non-empty keys/],
      // `{ [process.env.PARTNER_KEY]: … }` with the variable unset: the word would be a key.
      [{ keys: { [String(process.env.IMAGE_API_ERRORS_UNSET)]: ['upload'] } }, /no key named undefined/],
      [{ keys: { null: ['upload'] } }, /no key named null/],
      [{ keys: {} }, /`keys` to hold a key, or a `lookup`/],
    ]
    for (const [options, message] of cases) {
      assert.throws(
        () => apiKey(options),
        (err: Error) => err instanceof TypeError && message.test(err.message),
      )
    }
  })

  it('never throws anything but a 4xx IcError on arbitrary header values and queries', async () => {
    const guard = apiKey({ keys, query: 'key', scopes: ['images:read'] })
    await fc.assert(
      fc.asyncProperty(
        fc.string({ unit: 'binary' }),
        fc.string({ unit: 'binary' }),
        async (header, query) => {
          const result = await outcome(guard, `/i?${query}`, { 'x-api-key': header })
          assert.match(result, /^(ok|4\d\d) /)
        },
      ),
      { numRuns: 1000 },
    )
  })
})

describe('apiKey() keys: what a header can carry, read alike from the header and the query', () => {
  it('refuses at construction, naming `keys`, a key no request could present', () => {
    const refused: [string, RegExp][] = [
      ['k'.repeat(1025), /at most 1024 characters, got one of 1025/],
      [' padded', /surrounding whitespace/],
      ['padded\t', /surrounding whitespace/],
      ['clé', /printable ASCII/],
      ['a\r\nb', /printable ASCII/],
      ['a\x00b', /printable ASCII/],
    ]
    for (const [key, message] of refused) {
      assert.throws(
        () => apiKey({ keys: { [key]: [] } }),
        (err: Error) => err instanceof TypeError && /`keys`/.test(err.message) && message.test(err.message),
        JSON.stringify(key),
      )
      assert.throws(
        () => apiKey({ keys: { [key]: [] } }),
        (err: Error) => !err.message.includes(key),
      )
    }
    apiKey({ keys: { ['k'.repeat(1024)]: [], 'a b': [], '~!#$%&*+/=?^_`{|}': [] } })
  })
})

for (const framework of frameworks) {
  describe(`apiKey() on ${framework}: header and query read alike`, () => {
    let app: RunningApp
    const asked: string[] = []
    const long = 'k'.repeat(1024)
    before(async () => {
      app = await startApp(framework, {
        routes: [
          {
            path: '/i',
            use: (a) => [
              a.apiKey({
                keys: { 'k-good': { id: 'good' }, [long]: { id: 'long' } },
                query: 'key',
                // `?? []`, a natural "no scopes found": an unknown key all the same.
                lookup: (key) => {
                  asked.push(key)
                  return [] as string[]
                },
              }),
            ],
            handle: ({ locals }) => ({ body: (locals.apiKey as { id: string }).id }),
          },
        ],
      })
    })
    after(() => app.close())

    const send = (path: string, headers: Record<string, string> = {}) =>
      new Promise<string>((resolve, reject) => {
        get(`${app.url}${path}`, { headers }, (response) => {
          let body = ''
          response.setEncoding('utf8')
          response.on('data', (chunk: string) => {
            body += chunk
          })
          response.on('end', () =>
            resolve(`${response.statusCode} ${response.headers['x-ic-error-code'] ?? body}`),
          )
        }).on('error', reject)
      })

    it('trims a query value as it trims a header: surrounding spaces are not part of a key', async () => {
      assert.equal(await send('/i', { 'x-api-key': '  k-good ' }), '200 good')
      assert.equal(await send('/i?key=+k-good+'), '200 good')
      assert.equal(await send('/i?key=%20k-good%09'), '200 good')
      assert.equal(await send('/i?key=+++'), '401 IC_API_KEY_MISSING')
    })

    it('takes a key of 1024 characters from either; a longer or non-ASCII one is unknown without a lookup', async () => {
      assert.equal(await send('/i', { 'x-api-key': long }), '200 long')
      assert.equal(await send(`/i?key=${long}`), '200 long')
      asked.length = 0
      assert.equal(await send('/i?key=cl%C3%A9'), '401 IC_API_KEY_INVALID')
      assert.equal(
        await send('/i', { 'x-api-key': Buffer.from('clé').toString('latin1') }),
        '401 IC_API_KEY_INVALID',
      )
      assert.equal(await send(`/i?key=${long}k`), '401 IC_API_KEY_INVALID')
      assert.equal(await send('/i?key=a%01b'), '401 IC_API_KEY_INVALID')
      assert.deepEqual(asked, [], 'no such key can exist, so lookup() is not asked')
      assert.equal(await send('/i?key=other'), '401 IC_API_KEY_INVALID')
      assert.deepEqual(asked, ['other'])
    })
  })
}
