import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { after, before, describe, it } from 'node:test'
import { inspect } from 'node:util'
import fc from 'fast-check'
import request from 'supertest'
import { joinedPieces } from '../../../test/support/arbitraries.ts'
import { querySetups, type RunningApp, startApp } from '../../../test/support/harness.ts'
import { isIcError } from '../../errors.ts'
import type { Guard } from '../../guard.ts'
import { createHostMatcher, type PermissionsOptions, permissions, plainHttpHost } from './index.ts'

const vectors = JSON.parse(
  readFileSync(new URL('../../../../shared/vectors/hosts.json', import.meta.url), 'utf8'),
) as {
  allowed: string[]
  cases: { url: string; match: boolean; why?: string }[]
}

const res = {} as ServerResponse
function run(guard: Guard, query: string): unknown {
  return guard({ url: `/img?${query}`, headers: {} } as IncomingMessage, res)
}
function outcome(options: PermissionsOptions, query: string): string {
  try {
    const out = run(permissions(options), query) as { source?: unknown } | undefined
    return out === undefined ? 'ok' : `ok ${JSON.stringify(out.source)}`
  } catch (err) {
    assert.ok(isIcError(err), String(err))
    return `${err.status} ${err.code}`
  }
}

describe('createHostMatcher', () => {
  const matches = createHostMatcher(vectors.allowed)
  for (const c of vectors.cases) {
    it(`${c.match ? 'matches' : 'refuses'} ${c.url}${c.why ? ` (${c.why})` : ''}`, () => {
      assert.equal(matches(c.url), c.match)
    })
  }

  it('takes bare hosts, with or without a port, and URL objects', () => {
    assert.equal(matches('images.example.com'), true)
    assert.equal(matches('images.example.com:8443'), true)
    assert.equal(matches(new URL('https://x.cdn.example.net/a')), true)
    assert.equal(matches(new URL('ftp://x.cdn.example.net/a')), false)
    assert.equal(matches('MÜNCHEN.example'), true)
    assert.equal(matches(''), false)
    assert.equal(matches(42 as never), false)
  })

  it('refuses bad entries at construction, naming the option', () => {
    for (const entry of [
      'https://a.com',
      'a.com:80',
      'a.com/x',
      'u@a.com',
      '*',
      '*.',
      'a.*.com',
      '',
      '*.1.2.3.4',
      'a b.com',
      '.example.com',
      'a..example.com',
      '*..example.com',
      'a"b.example.com',
      '*.a{b}.example.com',
    ]) {
      assert.throws(
        () => createHostMatcher([entry]),
        (err: Error) => err instanceof TypeError && err.message.includes('`hostsAllowed`'),
        entry,
      )
    }
    assert.throws(() => createHostMatcher('a.com' as never), TypeError)
    const wildcard = createHostMatcher(['*.cdn.example.net'])
    for (const input of ['https://*.cdn.example.net/', '*.cdn.example.net', 'http://a"b.cdn.example.net'])
      assert.equal(wildcard(input), false, input)
    assert.equal(wildcard('https://A_1.cdn.example.net./x'), true)
  })

  it('never matches a host outside the list, whatever the string (the host a URL parser would fetch decides)', () => {
    const piece = fc.constantFrom(
      'images.example.com',
      'cdn.example.net',
      'a.cdn.example.net',
      'evil.net',
      'xn--mnchen-3ya.example',
      'münchen.example',
      '@',
      '#',
      '\\',
      '/',
      ':',
      '.',
      '%2E',
      '%40',
      '?',
      ' ',
      '\t',
      '*',
      '..',
      '[::1]',
      '127.0.0.1',
      'evil',
      '-',
    )
    const prefix = fc.constantFrom(
      '',
      'http://',
      'https://',
      'HTTPS://',
      'ftp://',
      '//',
      'https:',
      'https:\\\\',
      ' https://',
    )
    fc.assert(
      fc.property(prefix, fc.array(fc.oneof(piece, fc.string()), { maxLength: 7 }), (scheme, parts) => {
        const input = scheme + parts.join('')
        if (!matches(input)) return
        const fetched = new URL(
          /^[a-zA-Z][a-zA-Z0-9+.-]*:\/\//.test(input.trimStart()) ? input : `http://${input}`,
        )
        assert.ok(fetched.protocol === 'http:' || fetched.protocol === 'https:', input)
        const host = fetched.hostname.replace(/\.$/, '')
        assert.ok(
          /^[a-z0-9_-]+(?:\.[a-z0-9_-]+)*$/.test(host),
          `${input} matched ${host}, which no DNS name can be (an empty label, or a character like *)`,
        )
        assert.ok(
          host === 'images.example.com' ||
            host === 'xn--mnchen-3ya.example' ||
            host.endsWith('.cdn.example.net'),
          `${input} matched, but the host is ${host}`,
        )
      }),
      { numRuns: 5000 },
    )
  })

  it('looks up 100,000 hosts with as many Set probes as 10: one exact, one per wildcard depth', () => {
    const big = Array.from({ length: 100_000 }, (_, i) =>
      i % 2 === 0 ? `host${i}.example.org` : `*.zone${i}.example.org`,
    )
    const small = big.slice(0, 10)
    const inBig = createHostMatcher(big)
    const inSmall = createHostMatcher(small)
    assert.equal(inBig('https://host99998.example.org/x'), true)
    assert.equal(inBig('https://a.b.zone99999.example.org/x'), true)
    assert.equal(inBig('https://zone99999.example.org/x'), false)
    assert.equal(inSmall('https://host99998.example.org/x'), false)
    // Count the Set probes of each lookup: the cost is in probes, and their number must not
    // depend on the size of the list (the timing is measured by bench/request-rules.ts).
    const probes = (matcher: typeof inBig, input: string) => {
      const has = Set.prototype.has
      let count = 0
      Set.prototype.has = function (this: Set<unknown>, value: unknown) {
        count++
        return has.call(this, value)
      }
      try {
        matcher(input)
      } finally {
        Set.prototype.has = has
      }
      return count
    }
    for (const host of [
      'a.b.c.d.e.f.g.host1.example.org',
      'host99998.example.org',
      'x.zone7.example.org',
      'evil.net',
    ]) {
      const inputs = [`https://${host}/x`, host]
      for (const input of inputs) {
        assert.equal(probes(inBig, input), probes(inSmall, input), input)
        assert.ok(probes(inBig, input) <= 2, input)
      }
    }
  })
})

describe('permissions', () => {
  it('refuses a misspelt option at construction, naming it', () => {
    assert.throws(
      () => permissions({ hostAllowed: ['a.com'] } as never),
      (err: Error) =>
        err instanceof TypeError && /Unknown option `hostAllowed` of permissions/.test(err.message),
    )
  })

  it('passes requests without a dynamic source and publishes nothing', () => {
    assert.equal(outcome({}, 'width=10'), 'ok')
  })

  it('refuses every dynamic source while dynamic origins are disabled', () => {
    for (const param of ['origin', 'source_url', 'hostname', 'bucket', 'origin64', 'bucket64']) {
      assert.equal(
        outcome({ allowDynamicOrigin: false }, `${param}=aW1hZ2VzLmV4YW1wbGUuY29t`),
        '401 IC_DYNAMIC_ORIGIN_DISABLED',
        param,
      )
    }
  })

  it('publishes the source', () => {
    assert.equal(
      outcome({ hostsAllowed: ['images.example.com'] }, 'origin=https://IMAGES.example.com./a.jpg&width=1'),
      'ok {"kind":"url","param":"origin","url":"https://images.example.com./a.jpg","host":"images.example.com"}',
    )
    assert.equal(
      outcome({}, 'origin=images.example.com:8080'),
      'ok {"kind":"url","param":"origin","url":"http://images.example.com:8080/","host":"images.example.com"}',
    )
    assert.equal(
      outcome({}, 'hostname=Images.Example.com'),
      'ok {"kind":"host","param":"hostname","host":"images.example.com"}',
    )
    assert.equal(
      outcome({ bucketsAllowed: ['photos'] }, 'bucket=photos&region=eu-west-1'),
      'ok {"kind":"bucket","param":"bucket","bucket":"photos","region":"eu-west-1"}',
    )
    assert.equal(
      outcome({}, `source_url64=${Buffer.from('https://a.example/x.png').toString('base64url')}`),
      'ok {"kind":"url","param":"source_url","url":"https://a.example/x.png","host":"a.example"}',
    )
  })

  it('strips the C0 controls and spaces at both ends, and the tabs and newlines inside, as the URL parser does', () => {
    const edge = fc.string({ unit: fc.constantFrom(' ', '\t', '\n', '\r', '\0', '\x1f'), maxLength: 4 })
    const inside = fc.string({ unit: fc.constantFrom(' ', '\t', 'a', '+', '/'), maxLength: 12 })
    fc.assert(
      fc.property(edge, inside, edge, (before, path, after) => {
        // The tab makes the value noisy: the clean-up path, not the plain-host fast path.
        const value = `${before}\thttps://a.example/${path}x${after}`
        const out = run(
          permissions({ hostsAllowed: ['a.example'] }),
          `origin=${encodeURIComponent(value)}`,
        ) as {
          source: { url: URL }
        }
        assert.equal(out.source.url.href, new URL(value).href, JSON.stringify(value))
      }),
    )
    // Spaces inside a noisy value (here 16,000 of them): stripped at the ends only.
    const long = `\thttps://a.example/${' '.repeat(16_000)}x`
    const out = run(permissions({}), `origin=${encodeURIComponent(long)}`) as { source: { url: URL } }
    assert.equal(out.source.url.href, new URL(long).href)
  })

  it('publishes a url source whose URL is the parsed value, plain host or not', () => {
    for (const value of [
      'https://a.example/x.png?w=1',
      'https://A.example:443/x.png',
      '  https://a.example/x\t.png ',
    ]) {
      const out = run(
        permissions({ hostsAllowed: ['a.example'] }),
        `origin=${encodeURIComponent(value)}`,
      ) as {
        source: { kind: string; param: string; url: URL; host: string }
      }
      const { source } = out
      assert.ok(source.url instanceof URL, value)
      assert.equal(source.url.href, new URL(value.trim().replace('\t', '')).href, value)
      assert.equal(source.url, source.url, 'made once')
      assert.equal(source.host, 'a.example')
      assert.deepEqual(JSON.parse(JSON.stringify(source)), {
        kind: 'url',
        param: 'origin',
        url: source.url.href,
        host: 'a.example',
      })
      assert.match(inspect(source), /url: URL \{/)
      assert.deepEqual(
        { ...source, url: source.url },
        { kind: 'url', param: 'origin', host: 'a.example', url: source.url },
      )
    }
  })

  // The host-matching bypass table: every row must be refused.
  const bypasses = [
    'https://images.example.com@evil.net/a.jpg',
    'https://images.example.com:pass@evil.net/a.jpg',
    'https://evil.net#@images.example.com/a.jpg',
    'https://evil.net?@images.example.com/a.jpg',
    'https://evil.net\\@images.example.com/a.jpg',
    'https://evil.net%2F@images.example.com/a.jpg',
    'https://images.example.com.evil.net/a.jpg',
    'https://evil-images.example.com/a.jpg',
    'https://imagesXexample.com/a.jpg',
    'https://cdn.example.net/a.jpg',
    'https://evilcdn.example.net/a.jpg',
    'https://a.cdn.example.net.evil.net/',
    'https://evil.net/images.example.com',
    'https://evil.net/.cdn.example.net',
    '//evil.net/images.example.com',
    'evil.net/@images.example.com',
    'images.example.com@evil.net',
    'https://127.0.0.1/a.jpg',
    'https://[::1]/a.jpg',
    'https://0x7f.1/a.jpg',
    'https://localhost/a.jpg',
    'https://images%2Eexample%2Ecom%2Eevil%2Enet/a.jpg',
    'https://ımages.example.com/a.jpg',
    'https://images.example.com%00.evil.net/',
    'https://images.example.com\t.evil.net/',
    'http://images.example.com..evil.net/',
    'https://.cdn.example.net/a.jpg',
    'https://a..cdn.example.net/a.jpg',
    'https://..cdn.example.net/a.jpg',
  ]
  for (const url of bypasses) {
    it(`refuses the bypass ${JSON.stringify(url)}`, () => {
      const result = outcome({ hostsAllowed: vectors.allowed }, `origin=${encodeURIComponent(url)}`)
      assert.match(result, /^(401 IC_HOST_NOT_ALLOWED|400 IS_VALIDATION_ERROR)$/)
      assert.match(
        outcome({ hostsAllowed: vectors.allowed }, `source_url=${encodeURIComponent(url)}`),
        /^40[01] /,
      )
    })
  }

  it('refuses schemes other than http(s) as an invalid source', () => {
    for (const url of [
      'ftp://images.example.com/a.jpg',
      'file:///etc/passwd',
      'javascript:alert(1)',
      'gopher://images.example.com/',
    ]) {
      assert.equal(outcome({}, `origin=${encodeURIComponent(url)}`), '400 IS_VALIDATION_ERROR', url)
    }
  })

  it('refuses hostname values that are not a bare host', () => {
    for (const host of [
      'evil.net/x',
      'a@evil.net',
      'images.example.com:80',
      'evil.net\\@images.example.com',
      '',
    ]) {
      assert.match(
        outcome({ hostsAllowed: vectors.allowed }, `hostname=${encodeURIComponent(host)}`),
        /^400 IS_VALIDATION_ERROR$/,
        host,
      )
    }
    assert.equal(outcome({ hostsAllowed: vectors.allowed }, 'hostname=evil.net'), '401 IC_HOST_NOT_ALLOWED')
    // The URL parser keeps these characters in a host; no DNS name holds them, so no wildcard covers them.
    const wildcard = { hostsAllowed: ['*.cdn.example.net'] }
    for (const host of ['*.cdn.example.net', 'a"{}`&=.cdn.example.net', 'a*b.cdn.example.net', '*']) {
      for (const options of [wildcard, {}])
        assert.equal(
          outcome(options, `hostname=${encodeURIComponent(host)}`),
          '400 IS_VALIDATION_ERROR',
          host,
        )
      assert.equal(
        outcome(wildcard, `origin=${encodeURIComponent(`https://${host}/a.jpg`)}`),
        '400 IS_VALIDATION_ERROR',
        host,
      )
    }
    for (const host of ['img_1.cdn.example.net', 'xn--bcher-kva.cdn.example.net', '[::1]', '10.0.0.1'])
      assert.match(outcome({}, `hostname=${encodeURIComponent(host)}`), /^ok /, host)
    assert.equal(outcome(wildcard, 'origin=https://IMG_1.cdn.example.net./a.jpg').slice(0, 3), 'ok ')
    assert.equal(
      outcome({ hostsAllowed: vectors.allowed }, 'hostname=a.cdn.example.net'),
      'ok {"kind":"host","param":"hostname","host":"a.cdn.example.net"}',
    )
  })

  it('refuses buckets outside bucketsAllowed, exactly', () => {
    assert.equal(outcome({ bucketsAllowed: ['photos'] }, 'bucket=Photos'), '401 IC_BUCKET_NOT_ALLOWED')
    assert.equal(outcome({ bucketsAllowed: ['photos'] }, 'bucket=photos2'), '401 IC_BUCKET_NOT_ALLOWED')
    assert.equal(outcome({ bucketsAllowed: ['photos'] }, 'bucket='), '400 IS_VALIDATION_ERROR')
  })

  it('publishes only bucket and region names that cannot re-route the URL a handler builds of them', () => {
    for (const bucket of [
      'evil.net%2Fx%23',
      'a%0D%0Ab',
      'a..b',
      '-a',
      'a-',
      'a%40b',
      'a%3Ab',
      'x'.repeat(223),
    ])
      assert.equal(outcome({}, `width=1&bucket=${bucket}`), '400 IS_VALIDATION_ERROR', bucket)
    for (const region of ['evil.net%2F', 'us-east-1%23', 'US-EAST-1', ''])
      assert.equal(outcome({}, `width=1&bucket=photos&region=${region}`), '400 IS_VALIDATION_ERROR', region)
    assert.equal(
      outcome({}, 'bucket=My_Photos.2024&region=eu-central-2'),
      'ok {"kind":"bucket","param":"bucket","bucket":"My_Photos.2024","region":"eu-central-2"}',
    )
    assert.equal(outcome({}, 'bucket=b'), 'ok {"kind":"bucket","param":"bucket","bucket":"b"}')
    assert.throws(
      () => permissions({ bucketsAllowed: ['a/b'] }),
      /`bucketsAllowed` to hold bucket names.*"a\/b"/,
    )
  })

  it('refuses a host no DNS name can be: a label over 63 characters, a name over 253', () => {
    const wildcard = { hostsAllowed: ['*.cdn.example.net'] }
    const longLabel = `${'a'.repeat(64)}.cdn.example.net`
    const longName = `${'abcdefghi.'.repeat(24)}cdn.example.net`
    for (const host of [longLabel, longName, `${'a'.repeat(300)}.cdn.example.net`]) {
      for (const options of [wildcard, {}]) {
        assert.equal(outcome(options, `hostname=${host}`), '400 IS_VALIDATION_ERROR', host)
        assert.equal(outcome(options, `origin=https://${host}/a.png`), '400 IS_VALIDATION_ERROR', host)
      }
    }
    // The longest of each, with and without the final dot, is a name.
    const longest = `${'a'.repeat(63)}.${'b'.repeat(63)}.${'c'.repeat(63)}.${'d'.repeat(45)}.cdn.example.net`
    assert.equal(longest.length, 253)
    for (const host of [longest, `${longest}.`, `${'a'.repeat(63)}.cdn.example.net`])
      assert.match(outcome(wildcard, `origin=https://${host}/a.png`), /^ok /, host)
    assert.throws(
      () => permissions({ hostsAllowed: [`${'a'.repeat(64)}.example.com`] }),
      /`hostsAllowed` to hold host names/,
    )
  })

  it('refuses a hostname with a space or a control character at either end or inside', () => {
    for (const host of ['%20a.com', 'a.com%20', 'a.com%09', 'a.%00com'])
      assert.equal(outcome({}, `hostname=${host}`), '400 IS_VALIDATION_ERROR', host)
  })

  it('refuses data: URLs unless allowDataUrls', () => {
    const data = encodeURIComponent('data:image/png;base64,iVBORw0KGgo=')
    assert.equal(outcome({}, `origin=${data}`), '401 IC_DATA_URL_NOT_ALLOWED')
    assert.equal(
      outcome({}, `source_url=${encodeURIComponent(' DATA:image/png,x')}`),
      '401 IC_DATA_URL_NOT_ALLOWED',
    )
    assert.equal(
      outcome({}, `source_url=${encodeURIComponent('da\tta:image/png,x')}`),
      '401 IC_DATA_URL_NOT_ALLOWED',
    )
    assert.match(
      outcome({ allowDataUrls: true, hostsAllowed: ['a.com'] }, `origin=${data}`),
      /^ok \{"kind":"data"/,
    )
    for (const text of [
      'data:',
      'data:x',
      'data:image/png;base64',
      'data:text/plain#,hi',
      'data:x;base64#,eA',
    ])
      assert.equal(
        outcome({ allowDataUrls: true }, `origin=${encodeURIComponent(text)}`),
        '400 IS_VALIDATION_ERROR',
        text,
      )
  })

  it('publishes a data: URL that fetch() reads: its comma before any fragment, in its query too', async () => {
    for (const [text, body] of [
      ['data:text/plain,a#b', 'a'],
      ['data:text/plain?x,hi', 'hi'],
    ] as const) {
      const result = outcome({ allowDataUrls: true }, `origin=${encodeURIComponent(text)}`)
      assert.match(result, /^ok \{"kind":"data"/, text)
      assert.equal(await (await fetch(text)).text(), body, text)
    }
    await assert.rejects(fetch('data:text/plain#,hi'), TypeError, 'the fragment is no data: refused above')
  })

  it('refuses original-image requests when they are disabled', () => {
    assert.equal(outcome({ allowOriginalImageRequest: false }, ''), '401 IC_ORIGINAL_IMAGE_NOT_ALLOWED')
    assert.equal(
      outcome({ allowOriginalImageRequest: false }, 'origin=a.com&utm=1'),
      '401 IC_ORIGINAL_IMAGE_NOT_ALLOWED',
    )
    assert.match(outcome({ allowOriginalImageRequest: false }, 'width64=MTA'), /^ok/)
    assert.match(outcome({ allowOriginalImageRequest: false, processingParams: ['chs'] }, 'chs=1x1'), /^ok/)
    assert.equal(
      outcome({ allowOriginalImageRequest: false, processingParams: ['chs'] }, 'width=1'),
      '401 IC_ORIGINAL_IMAGE_NOT_ALLOWED',
    )
  })

  it('judges the source before the original-image rule: a refused source is named, processing or not', () => {
    const options = {
      allowOriginalImageRequest: false,
      hostsAllowed: ['images.example.com'],
      bucketsAllowed: ['photos'],
    }
    const cases: [string, string][] = [
      ['origin=https://evil.net/a.jpg', '401 IC_HOST_NOT_ALLOWED'],
      ['origin=https://images.example.com@evil.net/', '400 IS_VALIDATION_ERROR'],
      ['origin=data:image/png;base64,iVBORw0KGgo=', '401 IC_DATA_URL_NOT_ALLOWED'],
      ['bucket=other', '401 IC_BUCKET_NOT_ALLOWED'],
      ['origin=https://images.example.com/a.jpg', '401 IC_ORIGINAL_IMAGE_NOT_ALLOWED'],
      ['bucket=photos', '401 IC_ORIGINAL_IMAGE_NOT_ALLOWED'],
    ]
    for (const [query, expected] of cases) {
      assert.equal(outcome(options, query), expected, query)
      if (expected.endsWith('IC_ORIGINAL_IMAGE_NOT_ALLOWED'))
        assert.match(outcome(options, `${query}&width=100`), /^ok/, `${query}&width=100`)
      else assert.equal(outcome(options, `${query}&width=100`), expected, `${query}&width=100`)
    }
  })

  it('refuses two sources at once, and repeated or malformed parameters', () => {
    assert.equal(outcome({}, 'origin=a.com&bucket=b'), '400 IS_VALIDATION_ERROR')
    assert.equal(outcome({}, 'origin=a.com&origin=b.com'), '400 IS_VALIDATION_ERROR')
    assert.equal(outcome({}, 'origin=a.com&origin64=Yi5jb20'), '400 IS_VALIDATION_ERROR')
    assert.equal(outcome({}, 'origin=%E0%A4%A'), '400 IS_VALIDATION_ERROR')
    assert.equal(outcome({}, 'width=1&crop=a&crop=b'), '400 IS_VALIDATION_ERROR')
  })

  it('lists one item per parameter and problem, however many times the query repeats it', () => {
    const items = (query: string) => {
      try {
        run(permissions({}), query)
      } catch (err) {
        assert.ok(isIcError(err), String(err))
        return err.validation?.map((i) => `${i.path?.[0]}:${i.type}`)
      }
      return assert.fail(`${query} passed`)
    }
    assert.deepEqual(items('width=%ZZ&width=%ZZ'), ['width:query.encoding'])
    assert.deepEqual(items('origin=a.example&origin64=YQ&origin=b.example'), ['origin:query.repeated'])
    assert.deepEqual(items('origin[]=a.example&origin[0]=b.example&[origin]=c'), ['origin:query.brackets'])
  })

  it("judges a malformed region sent with brackets as a malformed region: before the bucket's 401", () => {
    const options = { bucketsAllowed: ['photos'] }
    for (const query of ['bucket=other&region=%ZZ', 'bucket=other&region[]=%ZZ', 'bucket=other&[region]=%ZZ'])
      assert.equal(outcome(options, query), '400 IS_VALIDATION_ERROR', query)
  })

  it('refuses a source parameter whatever its value while dynamic origins are disabled', () => {
    for (const query of [
      'origin=%ZZ',
      'origin64=!!',
      'bucket=a&bucket=b',
      'hostname64=%ZZ',
      'origin=https://a.example.com/x.jpg&region=%ZZ',
      'bucket=photos&region=a&region=b',
    ])
      assert.equal(outcome({ allowDynamicOrigin: false }, query), '401 IC_DYNAMIC_ORIGIN_DISABLED', query)
  })

  it('counts a processing parameter with a broken value as processing: a 400, not an original-image request', () => {
    for (const query of ['width=%ZZ', 'width64=!!', 'width=1&width=2'])
      assert.equal(outcome({ allowOriginalImageRequest: false }, query), '400 IS_VALIDATION_ERROR', query)
  })

  it('counts a processing parameter sent with brackets as processing: the parameter qs reads it as', () => {
    const options = { allowOriginalImageRequest: false }
    for (const query of [
      'width[]=300',
      '[width]=300',
      'width%5B%5D=300',
      'height64[]=MzAw',
      'cache_processed[0]=1',
    ])
      assert.equal(outcome(options, query), 'ok', query)
    for (const query of ['width[]=%ZZ', '[width]=%ZZ'])
      assert.equal(outcome(options, query), '400 IS_VALIDATION_ERROR', query)
    for (const query of ['tags[]=1', '[widths]=1', 'widths[]=1'])
      assert.equal(outcome(options, query), '401 IC_ORIGINAL_IMAGE_NOT_ALLOWED', query)
  })

  it('names the parameter in x-ic-error-validation', () => {
    try {
      run(permissions({ hostsAllowed: ['a.com'] }), 'source_url=https://b.com/')
      assert.fail('refused')
    } catch (err) {
      assert.ok(isIcError(err))
      assert.deepEqual(JSON.parse(err.headers['x-ic-error-validation'] as string)[0].path, ['source_url'])
    }
  })

  it('validates its options at construction', () => {
    assert.throws(
      () => permissions({ allowDynamicOrigin: 'no' as never }),
      /`allowDynamicOrigin` to be a boolean/,
    )
    assert.throws(() => permissions({ bucketsAllowed: [''] }), /`bucketsAllowed`/)
    assert.throws(() => permissions({ hostsAllowed: ['https://a.com'] }), /`hostsAllowed`/)
    assert.throws(() => permissions({ processingParams: 'width' as never }), /`processingParams`/)
  })

  it('reads a host without the URL parser only where the parser finds the same host', () => {
    // Characters where URL parsers differ (case, dots, digits, hex, ports, userinfo, slashes, escapes, punycode).
    const pieces = [
      ...'abcxyzXN0179-.:@/\\?#%_~'.split(''),
      'xn--',
      'xn--nxasmq6b',
      '0x7f',
      '..',
      '%2e',
      '[::1]',
      '\t',
      ' ',
      'é',
    ]
    const scheme = fc.constantFrom('http://', 'https://', 'HTTP://', 'ftp://', '')
    const plainLabel = fc.string({ unit: fc.constantFrom(...'az09-'.split('')), minLength: 1, maxLength: 6 })
    const label = fc.oneof(
      { arbitrary: plainLabel, weight: 8 },
      plainLabel.map((l) => `xn--${l}`),
      plainLabel.map((l) => `xn-${l}`),
    )
    const text = fc.oneof(
      fc.tuple(scheme, joinedPieces(pieces)).map(([s, rest]) => s + rest),
      {
        // Hosts that look plain, then anything.
        weight: 4,
        arbitrary: fc
          .tuple(
            fc.oneof(fc.constantFrom('http://', 'https://'), scheme),
            fc.array(label, { minLength: 1, maxLength: 4 }),
            fc.constantFrom('', '/', '?', '#', '.', './'),
            joinedPieces(pieces, 8),
          )
          .map(([s, labels, end, rest]) => s + labels.join('.') + end + rest),
      },
    )
    let plain = 0
    fc.assert(
      fc.property(text, (input) => {
        const host = plainHttpHost(input)
        if (host === undefined) return
        plain++
        const url = new URL(input)
        assert.ok(url.protocol === 'http:' || url.protocol === 'https:', input)
        assert.equal(url.username + url.password + url.port, '', input)
        assert.equal(url.hostname, host, input)
      }),
      { numRuns: 20_000 },
    )
    assert.ok(plain > 2000, `only ${plain} inputs took the plain path`)
  })

  it('never throws anything but an IcError on arbitrary source values', () => {
    const listed = permissions({ hostsAllowed: vectors.allowed, bucketsAllowed: ['b'] })
    // Without a list, most hosts are published: the check on published hosts below bites.
    const open = permissions({ bucketsAllowed: ['b'] })
    let published = 0
    fc.assert(
      fc.property(
        fc.constantFrom('origin', 'source_url', 'hostname', 'bucket', 'origin64'),
        fc.oneof(
          fc.string({ unit: 'binary' }),
          // Host-like text, with the characters the URL parser keeps in a host and DNS does not.
          fc
            .tuple(
              fc.constantFrom('', 'https://', 'http://'),
              fc.array(
                fc.constantFrom(
                  'a',
                  'Z',
                  '0',
                  '-',
                  '_',
                  '.',
                  '*',
                  '"',
                  '{',
                  '&',
                  '=',
                  '%2A',
                  'ß',
                  '。',
                  '1',
                  '0x7f',
                ),
                { minLength: 1, maxLength: 10 },
              ),
            )
            .map(([scheme, parts]) => `${scheme}${parts.join('')}`),
        ),
        fc.boolean(),
        (param, value, withList) => {
          const guard = withList ? listed : open
          let out: { source?: { host?: string } } | undefined
          try {
            out = run(guard, `${param}=${encodeURIComponent(value.toWellFormed())}`) as typeof out
          } catch (err) {
            assert.ok(isIcError(err) && err.status < 500, String(err))
          }
          // A published host is one a fetch could resolve: DNS labels or an IP literal.
          const host = out?.source?.host
          if (host === undefined) return
          published++
          assert.match(host, /^(?:[a-z0-9_-]+(?:\.[a-z0-9_-]+)*|\[[0-9a-f:.]+\])$/, value)
        },
      ),
      { numRuns: 3000 },
    )
    assert.ok(published > 30, `only ${published} hosts published`)
  })
})

for (const setup of querySetups) {
  describe(`permissions on ${setup.name}: names with brackets`, () => {
    let app: RunningApp
    before(async () => {
      const echo = ({ req, locals }: { req: unknown; locals: Record<string, unknown> }) => ({
        body: JSON.stringify({ source: locals.source ?? null, query: (req as { query?: unknown }).query }),
      })
      app = await startApp(setup.framework, {
        settings: setup.settings,
        routes: [
          { path: '/off', use: (a) => [a.permissions({ allowDynamicOrigin: false })], handle: echo },
          {
            path: '/on',
            use: (a) => [a.permissions({ hostsAllowed: ['images.example.com'] })],
            handle: echo,
          },
          { path: '/query', handle: echo },
          // `region` without imageParams' built-in rule for it: the permission rules judge it alone.
          {
            path: '/processed',
            use: (a) => [a.permissions({ allowOriginalImageRequest: false }), a.imageParams()],
            handle: echo,
          },
          {
            path: '/bucket',
            use: (a) => [a.permissions({ bucketsAllowed: ['photos'] })],
            handle: echo,
          },
          {
            path: '/bucket-rules',
            use: (a) => [a.requestRules({ permissions: { bucketsAllowed: ['photos'] } })],
            handle: echo,
          },
          {
            path: '/bucket-layers',
            use: (a) => [
              a.permissions({ bucketsAllowed: ['photos'] }),
              a.imageParams({ builtInParams: false }),
            ],
            handle: echo,
          },
        ],
      })
    })
    after(() => app.close())

    const metadata = encodeURIComponent('http://169.254.169.254/latest/meta-data/')
    const bracketed = [
      `[origin]=${metadata}`,
      `origin[]=${metadata}`,
      `origin%5B%5D=${metadata}`,
      `source_url[0]=${metadata}`,
      'hostname[]=169.254.169.254',
      '[bucket]=secrets',
      `origin64[]=${Buffer.from('http://169.254.169.254/').toString('base64url')}`,
      'origin[]=%ZZ',
      // A name that does not decode: qs reads its %5B and %5D as brackets, `origin` still.
      `origin%5B%5D%ZZ=${metadata}`,
      `%5Bhostname%5D%ZZ=169.254.169.254`,
    ]

    it('refuses a source sent with brackets while dynamic origins are disabled: 401, as the plain name', async () => {
      for (const query of bracketed) {
        const r = await request(app.url).get(`/off?width=1&${query}`)
        assert.equal(r.status, 401, `${query}: ${r.text}`)
        assert.equal(r.headers['x-ic-error-code'], 'IC_DYNAMIC_ORIGIN_DISABLED', query)
      }
      if (setup.qs) {
        // What the handler would have read: qs gives it the address under the plain name.
        const seen = JSON.parse((await request(app.url).get(`/query?[origin]=${metadata}`)).text)
        assert.equal(seen.query.origin, 'http://169.254.169.254/latest/meta-data/')
        const broken = JSON.parse((await request(app.url).get(`/query?origin%5B%5D%ZZ=${metadata}`)).text)
        assert.deepEqual(broken.query.origin, ['http://169.254.169.254/latest/meta-data/'])
      }
    })

    it('refuses a source sent with brackets otherwise, even beside a plain one: 400 query.brackets', async () => {
      for (const query of [
        ...bracketed.slice(0, 6),
        `origin=https://images.example.com/a.jpg&[origin]=${metadata}`,
      ]) {
        const r = await request(app.url).get(`/on?width=1&${query}`)
        assert.equal(r.status, 400, `${query}: ${r.text}`)
        const items = JSON.parse(r.headers['x-ic-error-validation'] as string) as {
          path: string[]
          type: string
        }[]
        assert.equal(items[0]?.type, 'query.brackets', query)
        assert.match(items[0]?.path[0] ?? '', /^(?:origin|source_url|hostname|bucket)$/, query)
      }
    })

    it("refuses the bucket's region sent with brackets: 400 query.brackets, as plain region is judged", async () => {
      const evil = encodeURIComponent('evil.example.com/')
      for (const path of ['/bucket', '/bucket-rules', '/bucket-layers']) {
        for (const query of [
          `[region]=${evil}`,
          `region[]=${evil}`,
          `region%5B%5D=${evil}`,
          'region[0]=us-east-1',
        ]) {
          const r = await request(app.url).get(`${path}?bucket=photos&${query}`)
          assert.equal(r.status, 400, `${path}?${query}: ${r.text}`)
          const items = JSON.parse(r.headers['x-ic-error-validation'] as string) as {
            path: string[]
            type: string
          }[]
          assert.deepEqual(
            items.map((i) => `${i.path[0]}:${i.type}`),
            ['region:query.brackets'],
            `${path}?${query}`,
          )
        }
        const plain = await request(app.url).get(`${path}?bucket=photos&region=us-east-1`)
        assert.equal(plain.status, 200, `${path}: ${plain.text}`)
        assert.deepEqual(JSON.parse(plain.text).source, {
          kind: 'bucket',
          param: 'bucket',
          bucket: 'photos',
          region: 'us-east-1',
        })
      }
      if (setup.qs) {
        // What the handler would have read: qs gives it the text under the plain name.
        const seen = JSON.parse((await request(app.url).get(`/query?bucket=photos&[region]=${evil}`)).text)
        assert.equal(seen.query.region, 'evil.example.com/')
      }
    })

    it('counts a processing parameter sent with brackets as processing: 400 query.brackets, not 401', async () => {
      for (const query of ['width[]=300', '[width]=300', 'width%5B%5D=300']) {
        const r = await request(app.url).get(`/processed?${query}`)
        assert.equal(r.status, 400, `${query}: ${r.text}`)
        const items = JSON.parse(r.headers['x-ic-error-validation'] as string) as {
          path: string[]
          type: string
        }[]
        assert.deepEqual(
          items.map((i) => `${i.path[0]}:${i.type}`),
          ['width:query.brackets'],
          query,
        )
      }
      assert.equal((await request(app.url).get('/processed?width=300')).status, 200)
      assert.equal(
        (await request(app.url).get('/processed?tags[]=1')).headers['x-ic-error-code'],
        'IC_ORIGINAL_IMAGE_NOT_ALLOWED',
      )
    })

    it('serves plain names as before, and brackets on names it does not own', async () => {
      const plain = await request(app.url).get('/on?origin=https://images.example.com/a.jpg&width=1')
      assert.equal(plain.status, 200, plain.text)
      assert.equal(JSON.parse(plain.text).source.host, 'images.example.com')
      assert.equal((await request(app.url).get('/off?width=1&tags[]=a&[x]=1')).status, 200)
      assert.equal(
        (await request(app.url).get('/on?origin=http://[::1]/a.jpg')).headers['x-ic-error-code'],
        'IC_HOST_NOT_ALLOWED',
      )
    })
  })
}
