import assert from 'node:assert/strict'
import type { IncomingMessage } from 'node:http'
import { describe, it } from 'node:test'
import fc from 'fast-check'
import { joinedPieces } from '../test/support/arbitraries.ts'
import {
  decodeBase64Value,
  decodeComponent,
  distinctItems,
  isPlainName,
  issueRootName,
  parseQuery,
  parseQueryString,
  quoteName,
  rootName,
} from './query.ts'

const request = (url: string) => ({ url, headers: {} }) as IncomingMessage

describe('quoteName', () => {
  it('quotes as JSON and cuts at 64 characters, never inside a character outside the BMP', () => {
    assert.equal(quoteName('a\r\nb'), '"a\\r\\nb"')
    assert.equal(quoteName('x'.repeat(64)), `"${'x'.repeat(64)}"`)
    assert.equal(quoteName('x'.repeat(65)), `"${'x'.repeat(64)}…"`)
    assert.equal(quoteName(`${'a'.repeat(63)}😀b`), `"${'a'.repeat(63)}…"`)
    assert.equal(quoteName(`${'a'.repeat(62)}😀b`), `"${'a'.repeat(62)}😀…"`)
  })
})

describe('isPlainName', () => {
  it('is true exactly for the names a query parameter is read under as they are', () => {
    for (const name of ['width', '64', 'a6', 'x46', 'chm']) {
      assert.equal(isPlainName(name), true, name)
      const { values, brackets } = parseQueryString(`${name}=1`)
      assert.deepEqual([values.get(name), brackets], ['1', false], name)
    }
    // NAME64 is stored under NAME.
    for (const name of ['width64', 'x64']) {
      assert.equal(isPlainName(name), false, name)
      assert.equal(parseQueryString(`${name}=MQ`).values.get(name), undefined, name)
    }
    // A bracketed name is the parameter rootName() gives.
    for (const name of ['width[]', '[width]', 'a[0]']) {
      assert.equal(isPlainName(name), false, name)
      assert.equal(parseQueryString(`${name}=1`).brackets, true, name)
    }
    // A lone `]` is refused too: an option name holding one is a typo for a bracketed form.
    assert.equal(isPlainName('chm]'), false)
  })
})

describe('parseQueryString', () => {
  it('decodes names and values, + as a space', () => {
    const { values, issues } = parseQueryString('a=1&chtt=Ventes+%C3%A9t%C3%A9&empty=&flag&&=x')
    assert.deepEqual(
      [...values],
      [
        ['a', '1'],
        ['chtt', 'Ventes été'],
        ['empty', ''],
        ['flag', ''],
      ],
    )
    assert.deepEqual(issues, [])
  })

  it('reports repeated parameters instead of merging them', () => {
    const { values, issues } = parseQueryString('width=1&width=2&crop=fit')
    assert.equal(values.get('width'), '1')
    assert.deepEqual(issues, [
      { message: '"width" must not be repeated', path: ['width'], type: 'query.repeated' },
    ])
  })

  it('decodes NAME64 (base64 and base64url) under NAME', () => {
    const url = Buffer.from('https://a.example/é?x=1&y=~~~').toString('base64')
    const urlSafe = Buffer.from('https://a.example/é?x=1&y=~~~').toString('base64url')
    assert.equal(
      parseQueryString(`origin64=${encodeURIComponent(url)}`).values.get('origin'),
      'https://a.example/é?x=1&y=~~~',
    )
    assert.equal(
      parseQueryString(`origin64=${urlSafe}`).values.get('origin'),
      'https://a.example/é?x=1&y=~~~',
    )
    // A `+` that was not percent-encoded arrives as a space: read it back as `+`.
    assert.equal(Buffer.from('>>>').toString('base64'), 'Pj4+')
    assert.equal(parseQueryString('crop64=Pj4+').values.get('crop'), '>>>')
    assert.equal(decodeBase64Value(Buffer.from([0xfb, 0xef]).toString('base64')), undefined, 'not UTF-8 text')
    assert.equal(parseQueryString('width64=MzAw').values.get('width'), '300')
  })

  it('refuses base64 with a stray character, wrong padding or bits after the last byte', () => {
    // '300' is MzAw: a fifth character, padding past a whole quantum, 'MzB' (bits set after '30').
    for (const text of ['MzAwM=', 'MzAw==', 'MzA==', 'M==', 'MzB=', 'MzB', 'QQ=', 'QR'])
      assert.equal(decodeBase64Value(text), undefined, text)
    for (const [text, decoded] of [
      ['MzA=', '30'],
      ['MzA', '30'],
      ['QQ==', 'A'],
      ['QQ', 'A'],
      ['Pz8_', '???'],
      ['', ''],
    ])
      assert.equal(decodeBase64Value(text as string), decoded, text)
  })

  it('counts NAME and NAME64 as the same parameter', () => {
    const { issues } = parseQueryString('width=1&width64=MzAw')
    assert.equal(issues[0]?.type, 'query.repeated')
    assert.deepEqual(issues[0]?.path, ['width'])
  })

  it('reports invalid base64 and malformed percent-encoding without throwing', () => {
    const { values, issues } = parseQueryString('width64=***&a=%E0%A4%A&%zz=1&ok=1')
    assert.equal(values.has('width'), false)
    assert.deepEqual(
      issues.map((i) => i.type),
      ['string.base64', 'query.encoding', 'query.encoding'],
    )
    assert.equal(values.get('ok'), '1')
  })

  it('reads the same names and values as URLSearchParams wherever it reports no issue', () => {
    const query = joinedPieces([
      ...'ab=&+%2%41%C3%A9%zz64'.split(''),
      'width',
      'crop64',
      'Zml0',
      '%26',
      '%3D',
    ])
    fc.assert(
      fc.property(query, (search) => {
        const parsed = parseQueryString(search)
        if (parsed.issues.length > 0) return
        const expected = new Map<string, string>()
        for (const [name, value] of new URLSearchParams(search)) {
          if (name === '') continue
          const base64 = name.length > 2 && name.endsWith('64')
          const key = base64 ? name.slice(0, -2) : name
          if (!expected.has(key)) expected.set(key, base64 ? (decodeBase64Value(value) as string) : value)
        }
        assert.deepEqual([...parsed.values], [...expected], search)
        assert.equal(parsed.values.size, expected.size)
        for (const [key, value] of expected) assert.equal(parsed.values.get(key), value)
      }),
      { numRuns: 5000 },
    )
  })

  it('agrees with URLSearchParams past the 16 names where lookups go through an index', () => {
    const name = fc.integer({ min: 0, max: 40 }).map((i) => `p${i}`)
    const pair = fc.tuple(name, fc.constantFrom('1', '2', '%41', '+')).map(([n, v]) => `${n}=${v}`)
    fc.assert(
      fc.property(fc.array(pair, { minLength: 10, maxLength: 60 }), (pairs) => {
        const search = pairs.join('&')
        const { values, issues } = parseQueryString(search)
        const expected = new Map<string, string>()
        for (const [n, v] of new URLSearchParams(search)) if (!expected.has(n)) expected.set(n, v)
        assert.deepEqual([...values], [...expected])
        for (const i of Array.from({ length: 41 }, (_, k) => k))
          assert.equal(values.get(`p${i}`), expected.get(`p${i}`))
        assert.equal(issues.length, pairs.length - expected.size)
      }),
      { numRuns: 500 },
    )
  })

  it('finds every repeated name, many names or few', () => {
    for (const count of [3, 15, 16, 17, 40]) {
      const names = Array.from({ length: count }, (_, i) => `p${i}`)
      const { values, issues } = parseQueryString(
        [...names, names[count - 1], names[0]].map((n) => `${n}=1`).join('&'),
      )
      assert.equal(values.size, count)
      assert.deepEqual(
        issues.map((i) => i.path?.[0]),
        [names[count - 1], names[0]],
      )
      for (const name of names) assert.equal(values.get(name), '1')
    }
  })

  it('flags a query whose names hold a bracket, sent as is or percent-encoded, and no other', () => {
    const cases: [string, boolean][] = [
      ['width=1&crop=fit', false],
      ['width[]=1', true],
      ['width%5B%5D=1', true],
      ['width%5b0%5d=1', true],
      ['[origin]=a.example', true],
      ['width=1&x[=%ZZ', true],
      ['origin=http://[::1]/&width=1', false],
      ['width=[1]&chd=%5B', false],
      // qs reads the %5B of a name that does not decode as a bracket: `width[%ZZ` is `width`.
      ['width%5B%ZZ=1', true],
      ['origin%5B%5D%ZZ=1', true],
      ['%5dx%ZZ=1', true],
      ['width%ZZ=1&a=%5B%ZZ', false],
    ]
    for (const [search, brackets] of cases) assert.equal(parseQueryString(search).brackets, brackets, search)
    const query = joinedPieces(['[', ']', '%5B', '%5b', '=', '&', 'a', '%ZZ', '+'])
    fc.assert(
      fc.property(query, (search) => {
        const named = search.split('&').some((pair) => {
          const cut = pair.indexOf('=')
          const raw = cut === -1 ? pair : pair.slice(0, cut)
          return (decodeComponent(raw) ?? raw.replace(/%5b/gi, '[').replace(/%5d/gi, ']')).includes('[')
        })
        assert.equal(parseQueryString(search).brackets, named, search)
      }),
      { numRuns: 3000 },
    )
  })

  it('never throws, whatever the query string', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary', maxLength: 200 }), (text) => {
        const parsed = parseQueryString(text)
        for (const item of parsed.issues) assert.equal(typeof item.message, 'string')
      }),
      { numRuns: 2000 },
    )
  })
})

describe('rootName', () => {
  it('reads a name as qs does: the text before the first bracket, or inside a leading one', () => {
    const cases: [string, string][] = [
      ['width', 'width'],
      ['width[]', 'width'],
      ['width[0]', 'width'],
      ['width[a][b]', 'width'],
      ['[width]', 'width'],
      ['[width][0]', 'width'],
      ['[]', '[]'],
      ['[width', '[width'],
      ['width]', 'width]'],
    ]
    for (const [name, root] of cases) assert.equal(rootName(name), root, name)
  })
})

describe('distinctItems', () => {
  it('keeps the first item of each parameter and type, in order, and the list itself when nothing is twice', () => {
    const item = (path: string, type: string, message = `${path} ${type}`) => ({
      message,
      path: [path],
      type,
    })
    const once = [
      item('width', 'query.repeated'),
      item('width', 'number.base'),
      item('height', 'query.repeated'),
    ]
    assert.equal(distinctItems(once), once)
    assert.deepEqual(
      distinctItems([
        item('width', 'query.brackets', 'first'),
        ...once,
        item('width', 'query.brackets', 'second'),
        item('height', 'query.repeated'),
      ]),
      [item('width', 'query.brackets', 'first'), ...once],
    )
  })
})

describe('issueRootName', () => {
  it("reads an issue's name as qs does, the %5B and %5D of a name that does not decode as brackets", () => {
    const cases: [string, string][] = [
      ['origin%5B%5D%ZZ', 'origin'],
      ['%5Borigin%5D%ZZ', 'origin'],
      ['width%5b%ZZ', 'width'],
      ['width[]', 'width'],
      ['width%ZZ', 'width%ZZ'],
      ['width', 'width'],
    ]
    for (const [name, root] of cases) assert.equal(issueRootName(name), root, name)
    // The name an issue of such a query gives.
    const { issues, brackets } = parseQueryString('origin%5B%5D%ZZ=http://169.254.169.254/')
    assert.equal(brackets, true)
    assert.equal(issueRootName(String(issues[0]?.path?.[0])), 'origin')
  })
})

describe('parseQuery', () => {
  it('parses req.url once for the request being handled, and again when it changes', () => {
    const req = request('/img?width=300#frag')
    const first = parseQuery(req)
    assert.equal(first.search, 'width=300')
    assert.equal(parseQuery(req), first)
    req.url = '/other?width=400'
    assert.equal(parseQuery(req).values.get('width'), '400')
  })

  it('reads a second `?` before the query as Koa 3 does (URLSearchParams drops it): `origin`, not `?origin`', () => {
    const query = parseQuery(request('/img??origin=https://evil.net/a.jpg&width=1'))
    assert.deepEqual(
      [query.values.get('origin'), query.values.get('width'), query.values.get('?origin')],
      ['https://evil.net/a.jpg', '1', undefined],
    )
    assert.equal(query.search, 'origin=https://evil.net/a.jpg&width=1')
    assert.equal(parseQuery(request('/img???width=1')).values.get('?width'), '1', 'one `?` dropped, as there')
    assert.equal(parseQuery(request('/img?')).search, '')
    assert.equal(parseQuery(request('/img??')).search, '')
  })

  it('never answers a request with the values of another one parsed in between', () => {
    const a = request('/img?width=1')
    const b = request('/img?width=2')
    const c = request('/img?width=1')
    assert.equal(parseQuery(a).values.get('width'), '1')
    assert.equal(parseQuery(b).values.get('width'), '2')
    assert.equal(parseQuery(a).values.get('width'), '1')
    assert.equal(parseQuery(c).values.get('width'), '1')
    assert.notEqual(parseQuery(c), parseQuery(a), 'the same URL, another request: parsed again')
  })

  it('lets go of the request by the next turn of the event loop', async () => {
    const req = request('/img?width=1')
    const first = parseQuery(req)
    assert.equal(parseQuery(req), first)
    await new Promise((resolve) => setImmediate(resolve))
    await new Promise((resolve) => setImmediate(resolve))
    assert.notEqual(parseQuery(req), first, 'parsed again: nothing kept the request')
  })

  it('answers lookups of anything but a name as absent, as a Map does', () => {
    const { values } = parseQuery(request('/img?a=1&undefined=2'))
    for (const key of [undefined, null, 1, {}] as unknown as string[]) {
      assert.equal(values.get(key), undefined)
      assert.equal(values.has(key), false)
    }
  })

  it('has no values without a query', () => {
    assert.equal(parseQuery(request('/img')).values.size, 0)
  })
})
