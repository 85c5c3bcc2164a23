import assert from 'node:assert/strict'
import { createHmac } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { get, type IncomingMessage, type ServerResponse } from 'node:http'
import { after, before, describe, it } from 'node:test'
import fc from 'fast-check'
import imageChartsModule from 'image-charts'
import { joinedPieces } from '../../../test/support/arbitraries.ts'
import { frameworks, type RunningApp, startApp } from '../../../test/support/harness.ts'
import { errorCatalogue } from '../../catalogue.ts'
import { isIcError } from '../../errors.ts'
import type { Guard } from '../../guard.ts'
import { parseQueryString } from '../../query.ts'
import { imageChartsFeatures, type SignatureOptions, signature, signQuery, verifySignature } from './index.ts'
import { decodedForm, hmacHex, signingKey } from './verify.ts'

interface Vector {
  secret: string
  url: string
  why?: string
}
const vectors = JSON.parse(
  readFileSync(new URL('../../../../shared/vectors/signatures.json', import.meta.url), 'utf8'),
) as { valid: Vector[]; invalid: Vector[] }

// The client is CommonJS (`module.exports = ImageCharts`) while its types declare a default export.
const ImageCharts = imageChartsModule as unknown as typeof imageChartsModule.default
const res = {} as ServerResponse
const queryOf = (url: string) => url.slice(url.indexOf('?') + 1)

async function outcome(guard: Guard, url: string): Promise<string> {
  try {
    const out = (await guard({ url, headers: {} } as IncomingMessage, res)) as
      | { account: { id: string; features: Set<string> } }
      | undefined
    return out === undefined ? 'ok unsigned' : `ok ${out.account.id} [${[...out.account.features].join(',')}]`
  } catch (err) {
    assert.ok(isIcError(err), String(err))
    return `${err.status} ${err.code}`
  }
}

/** URLs signed by Image-Charts' official Node client. */
function officialUrls(secret: string, account: string): string[] {
  const charts = [
    new ImageCharts({ secret }).cht('p').chd('t:1,2,3').chs('100x100'),
    new ImageCharts({ secret })
      .cht('bvs')
      .chd('a:10,20.5,30|5,6,7')
      .chs('700x300')
      .chtt('Ventes été 2026 + 10% & more'),
    new ImageCharts({ secret })
      .cht('lc')
      .chd('t:1,2')
      .chs('300x200')
      .chl('a|b')
      .chdl('Köln|東京')
      .chco('FF0000,00FF00'),
    new ImageCharts({ secret }).cht('qr').chl('https://example.com/?a=1&b=2#x').chs('150x150').choe('UTF-8'),
  ]
  return charts.map((chart) => {
    const url = new URL(chart.icac(account).toURL())
    return `${url.pathname}${url.search}`
  })
}

describe('verifySignature and signQuery', () => {
  it('verifies the published test vector and every valid vector', () => {
    assert.equal(
      signQuery('cht=p&chd=t%3A1%2C2%2C3&chs=100x100&icac=test_fixture', 'plop'),
      'cht=p&chd=t%3A1%2C2%2C3&chs=100x100&icac=test_fixture&ichm=71bd93758b49ed28fdabd23a0ff366fe7bf877296ea888b9aaf4ede7978bdc8d',
    )
    for (const v of vectors.valid) assert.equal(verifySignature(queryOf(v.url), v.secret), true, v.url)
  })

  for (const v of vectors.invalid) {
    it(`refuses the tampered vector: ${v.why}`, () => {
      assert.equal(verifySignature(queryOf(v.url), v.secret), false)
    })
  }

  it('signs records and URLSearchParams the way the official client does', () => {
    const record = { cht: 'p', chd: 't:1,2,3', chs: '100x100', icac: 'test_fixture' }
    const signed = signQuery(record, 'plop')
    assert.equal(signed, signQuery(new URLSearchParams(record), 'plop'))
    assert.ok(signed.endsWith('ichm=71bd93758b49ed28fdabd23a0ff366fe7bf877296ea888b9aaf4ede7978bdc8d'))
    assert.throws(() => signQuery(record, ''), TypeError)
  })

  it('accepts a signature over the decoded query, and ichm anywhere', () => {
    const plain = 'cht=p&chd=t:1,2,3&chtt=Hello world&icac=acme'
    const ichm = signQuery(plain, 's').split('ichm=')[1]
    const encoded = 'cht=p&chd=t%3A1%2C2%2C3&chtt=Hello+world&icac=acme'
    assert.equal(verifySignature(`${encoded}&ichm=${ichm}`, 's'), true)
    assert.equal(verifySignature(`ichm=${ichm}&${encoded}`, 's'), true)
    assert.equal(
      verifySignature(`cht=p&ichm=${ichm}&chd=t%3A1%2C2%2C3&chtt=Hello%20world&icac=acme`, 's'),
      true,
    )
    assert.equal(verifySignature(`${encoded}&ichm=${ichm?.toUpperCase()}`, 's'), false, 'lower-case hex only')
  })

  it('refuses an icac or ichm sent with brackets, which qs reads as the parameter', () => {
    const signed = signQuery('cht=p&icac=acme', 's')
    assert.equal(verifySignature(signed, 's'), true)
    for (const extra of ['icac[]=victim', 'icac%5B%5D=victim', '[icac]=victim', 'ichm[]=x', 'icac64[]=eA'])
      assert.equal(verifySignature(`${extra}&${signed}`, 's'), false, extra)
  })

  it('refuses a decoded form that reads differently from the request: one signature, one query', () => {
    const signed = signQuery('icac=acme&chtt=Hello&chof=.png&icwm=1', 'plop')
    const ichm = signed.split('ichm=')[1]
    assert.equal(verifySignature(signed, 'plop'), true)
    // Signed pairs folded into the value before them: chof and icwm would be gone.
    assert.equal(verifySignature(`icac=acme&chtt=Hello%26chof%3D.png%26icwm%3D1&ichm=${ichm}`, 'plop'), false)
    assert.equal(verifySignature(`icac=acme&chtt%3DHello%26chof=.png&icwm=1&ichm=${ichm}`, 'plop'), false)
    // One more layer of encoding: the signed `a%26b` (a&b) would be read as the text a%26b.
    const layered = signQuery('icac=acme&chtt=a%26b&chl=C%2B%2B', 'plop')
    const layeredIchm = layered.split('ichm=')[1]
    assert.equal(verifySignature(layered, 'plop'), true)
    assert.equal(verifySignature(`icac=acme&chtt=a%2526b&chl=C%2B%2B&ichm=${layeredIchm}`, 'plop'), false)
    assert.equal(verifySignature(`icac=acme&chtt=a%26b&chl=C%252B%252B&ichm=${layeredIchm}`, 'plop'), false)
    assert.equal(verifySignature(`icac=acme&chtt=a%26b&chl=C%2B%2B&ichm=${layeredIchm}`, 'plop'), true)
    // A space signed as +, sent as %2B, would be read as a plus.
    const spaced = signQuery('icac=acme&chtt=x+y', 'plop')
    assert.equal(verifySignature(spaced.replace('x+y', 'x%2By'), 'plop'), false)
    assert.equal(decodedForm('chtt=a%26b'), undefined)
    assert.equal(decodedForm('a%3Db=1'), undefined)
    assert.equal(decodedForm('chd=t%3A1%3D2'), 'chd=t:1=2', 'an = inside a value reads the same')
    // qs splits a pair at its first `]=`: the signed `chtt=v]=w` is `chtt=v]` = `w` there.
    const bracketed = signQuery('icac=acme&chtt=v]=w', 'plop')
    assert.equal(verifySignature(bracketed, 'plop'), true)
    assert.equal(verifySignature(bracketed.replace('v]=w', 'v]%3Dw'), 'plop'), false)
    assert.equal(decodedForm('chtt=v]%3Dw'), undefined)
    assert.equal(decodedForm('chtt=v%5D%3Dw'), undefined)
    assert.equal(decodedForm('chtt=v%5Dw%3D'), 'chtt=v]w=', 'a ] and an = apart read the same')
  })

  it('decodes a signed text with its empty pairs kept', () => {
    assert.equal(decodedForm('&a=%41'), '&a=A')
    assert.equal(decodedForm('&&a=%41&'), '&&a=A&')
    const ichm = signQuery('&a=A b&icac=x', 'k').split('ichm=')[1]
    assert.equal(verifySignature(`&a=A%20b&icac=x&ichm=${ichm}`, 'k'), true)
  })

  it('verifySignature() refuses a repeated or malformed icac or ichm, as signature() does', () => {
    const signed = signQuery('a=1&icac=acme', 'k')
    assert.equal(verifySignature(signed, 'k'), true)
    assert.equal(verifySignature(`${signed}&ichm=junk`, 'k'), false)
    assert.equal(verifySignature(`${signed}&ichm64=anVuaw`, 'k'), false)
    assert.equal(verifySignature(`${signed}&icac=other`, 'k'), false)
    assert.equal(verifySignature(`${signed}&icac64=%%`, 'k'), false)
  })

  it('verifySignature() is false without icac or with an empty one, which signature() answers with 400', async () => {
    const guard = signature({ accounts: { acme: 'k' } })
    for (const query of ['cht=p', 'cht=p&icac=', 'icac=&cht=p', 'cht=p&icac64=']) {
      const signed = signQuery(query, 'k')
      assert.equal(verifySignature(signed, 'k'), false, query)
      assert.equal(await outcome(guard, `/chart?${signed}`), '400 IC_MISSING_ENT_PARAMETER', query)
    }
    assert.equal(verifySignature(signQuery('cht=p&icac=acme', 'k'), 'k'), true)
  })

  it('signQuery() refuses a query signed already: a second ichm would never verify', () => {
    for (const query of [
      'cht=p&icac=a&ichm=00',
      `ichm=${'a'.repeat(64)}&cht=p&icac=a`,
      'cht=p&icac=a&ichm64=MDA',
      'cht=p&icac=a&%69chm=00',
      '?cht=p&icac=a&ichm=',
    ]) {
      assert.throws(() => signQuery(query, 'k'), /`query` without `ichm`/, query)
    }
    assert.throws(() => signQuery({ cht: 'p', icac: 'a', ichm: '00' }, 'k'), TypeError)
    assert.throws(() => signQuery(new URLSearchParams('cht=p&ichm=00'), 'k'), TypeError)
    // Names that only look alike are signed as usual.
    assert.equal(verifySignature(signQuery('cht=p&icac=a&xichm=1&ichmx=2&ICHM=3', 'k'), 'k'), true)
  })

  it('signs and verifies the query as sent, empty pairs and all', () => {
    const signed = signQuery('icac=x&a=1&&b=2&', 'k')
    assert.equal(verifySignature(signed, 'k'), true)
    assert.equal(verifySignature(signed.replace('&&', '&'), 'k'), false)
    const ichm = signed.split('ichm=')[1]
    assert.equal(verifySignature(`%69chm=${ichm}&icac=x&a=1&&b=2&`, 'k'), true, 'a percent-encoded ichm name')
  })

  it('verifies URLs signed by the official image-charts client', () => {
    for (const url of officialUrls('the-secret', 'acme'))
      assert.equal(verifySignature(queryOf(url), 'the-secret'), true, url)
  })

  it('refuses every signed URL with any one byte changed', () => {
    const signed = [
      ...vectors.valid.map((v) => [v.url, v.secret] as const),
      ...officialUrls('k', 'acme').map((u) => [u, 'k'] as const),
    ]
    fc.assert(
      fc.property(
        fc.constantFrom(...signed),
        fc.nat(),
        fc.integer({ min: 0x21, max: 0x7e }),
        ([url, secret], at, code) => {
          const query = queryOf(url)
          const i = at % query.length
          fc.pre(query.charCodeAt(i) !== code)
          const changed = query.slice(0, i) + String.fromCharCode(code) + query.slice(i + 1)
          assert.equal(verifySignature(changed, secret), false, changed)
        },
      ),
      { numRuns: 3000 },
    )
  })

  it('computes the same HMAC-SHA256 as createHmac for any secret and text, ASCII or not', () => {
    const text = fc.oneof(
      fc.string({ unit: 'binary-ascii', maxLength: 300 }),
      fc.string({ unit: 'grapheme', maxLength: 80 }),
      fc.string({ unit: fc.integer({ min: 0x80, max: 0xff }).map((c) => String.fromCharCode(c)) }),
    )
    const secret = fc.oneof(
      fc.string({ unit: 'grapheme', minLength: 1, maxLength: 100 }),
      fc.string({ unit: 'binary-ascii', minLength: 1, maxLength: 70 }),
      fc.integer({ min: 60, max: 70 }).map((n) => 'k'.repeat(n)),
    )
    // One key signs many texts in a server: its prepared block must not carry one signature into the next.
    const shared = signingKey('shared-secret')
    fc.assert(
      fc.property(text, secret, (t, k) => {
        assert.equal(hmacHex(t, signingKey(k)), createHmac('sha256', k).update(t).digest('hex'))
        assert.equal(hmacHex(t, shared), createHmac('sha256', 'shared-secret').update(t).digest('hex'))
      }),
      { numRuns: 2000 },
    )
  })

  it('signs the query without its ichm pairs: every other pair, joined as sent', () => {
    const isSignature = (pair: string) => {
      const name = pair.split('=')[0] as string
      try {
        return ['ichm', 'ichm64'].includes(decodeURIComponent(name.replaceAll('+', ' ')))
      } catch {
        return false
      }
    }
    const query = joinedPieces(
      ['ichm', 'ichm64', 'ich%6D', 'ICHM', 'a', '=', '&', '&&', '%', '+', '64', 'icac=x', '9f'],
      16,
    )
    fc.assert(
      fc.property(query, (search) => {
        const expected = search.split('&').filter((pair) => !isSignature(pair))
        const { withoutSignature } = parseQueryString(search)
        assert.equal(withoutSignature, expected.join('&'), search)
      }),
      { numRuns: 5000 },
    )
  })

  it('verifies a signed query whatever pair ichm stands at, empty pairs and all', () => {
    const pair = fc.constantFrom('a=1', 'chd=t%3A1%2C2', 'b', '', 'chtt=x+y', 'c=%26')
    fc.assert(
      fc.property(fc.array(pair, { minLength: 1, maxLength: 6 }), fc.nat(), (others, at) => {
        const pairs = ['icac=acme', ...others]
        const text = pairs.join('&')
        const ichm = signQuery(text, 'secret').slice(text.length + (text === '' ? 0 : 1))
        const signed: string[] = [...pairs]
        signed.splice(at % (pairs.length + 1), 0, ichm)
        assert.equal(verifySignature(signed.join('&'), 'secret'), true, signed.join('&'))
        assert.equal(verifySignature(signed.join('&'), 'other'), false)
      }),
      { numRuns: 2000 },
    )
  })

  it('refuses a signature in upper-case hex or of the wrong length', () => {
    const [query = '', ichm = ''] = signQuery('cht=p&chs=10x10&icac=x', 's').split('&ichm=')
    assert.equal(verifySignature(`${query}&ichm=${ichm}`, 's'), true)
    assert.equal(verifySignature(`${query}&ichm=${ichm.toUpperCase()}`, 's'), false)
    assert.equal(verifySignature(`${query}&ichm=${ichm.slice(0, 63)}`, 's'), false)
    assert.equal(verifySignature(`${query}&ichm=${ichm}0`, 's'), false)
  })
})

describe('signature guard', () => {
  const accounts = { test_fixture: 'plop', demo: 'demo-secret', acme: ['n3w', 's3cr3t'] }

  it('refuses misspelt options, accounts and features at construction, naming them', () => {
    assert.throws(
      () => signature({ accounts, require: true } as never),
      /Unknown option `require` of signature/,
    )
    assert.throws(
      () => signature({ accounts: { a: { secrets: ['s'], plans: 'pro' } as never } }),
      /Unknown option `plans` of `accounts\.a`/,
    )
    assert.throws(
      () => signature({ accounts, features: { x: { parms: ['a'] } as never } }),
      /Unknown option `parms` of `features\.x`/,
    )
    assert.throws(
      () => signature({ accounts, features: { x: { test: () => true, param: '' } } }),
      /Expected `features\.x\.param` to be a parameter name, got ""/,
    )
    assert.throws(() => signature({ accounts: new Map() as never }), /`accounts` to be a plain object/)
  })

  it('reads any falsy answer of lookup(), or one without secrets, as an unknown account: 401, not 500', async () => {
    for (const answer of [
      false,
      null,
      0,
      '',
      [],
      [null],
      { secrets: [] },
      { secrets: null },
      { secrets: [null, null] },
      { secrets: [], plan: 'pro' },
    ]) {
      const guard = signature({ lookup: () => answer as never })
      assert.equal(
        await outcome(guard, `/chart?${signQuery('cht=p&icac=who', 's')}`),
        '401 IC_ACCOUNT_ID_NOT_FOUND',
        JSON.stringify(answer),
      )
    }
  })

  it('skips the NULL secrets of a lookup() answer (a LEFT JOIN) and verifies with the others', async () => {
    for (const answer of [[null, 's'], { secrets: [null, 's'] }]) {
      const guard = signature({ lookup: () => answer as never })
      assert.equal(await outcome(guard, `/chart?${signQuery('cht=p&icac=acme', 's')}`), 'ok acme []')
    }
    // A model whose plan is a getter of its class keeps it.
    class AccountRow {
      secrets = [null, 's']
      get plan() {
        return 'pro'
      }
    }
    const guard = signature({
      lookup: () => new AccountRow() as never,
      features: imageChartsFeatures,
      plans: { pro: ['retina'] },
    })
    assert.equal(await outcome(guard, `/chart?${signQuery('cht=p&icac=acme', 's')}`), 'ok acme [retina]')
  })

  it('reads a database NULL in a lookup() row as no plan and no features of its own', async () => {
    const rows = [
      { secrets: ['s'], plan: null },
      { secrets: ['s'], features: null },
    ]
    for (const row of rows) {
      const guard = signature({
        lookup: () => row as never,
        features: imageChartsFeatures,
        plans: { pro: ['retina'] },
      })
      assert.equal(await outcome(guard, `/chart?${signQuery('cht=p&icac=acme', 's')}`), 'ok acme []')
    }
    // A configured account still refuses it, at construction.
    assert.throws(
      () => signature({ accounts: { acme: { secrets: ['s'], plan: null as never } }, plans: { pro: [] } }),
      /Unknown plan null in `accounts\.acme\.plan`/,
    )
  })

  it('publishes features a handler cannot add to', async () => {
    const guard = signature({
      accounts: { acme: { secrets: ['s'], features: [] } },
      features: imageChartsFeatures,
    })
    const out = (await guard(
      { url: `/chart?${signQuery('cht=p&icac=acme', 's')}`, headers: {} } as never,
      {} as ServerResponse,
    )) as { account: { features: ReadonlySet<string> & { add?: unknown } } }
    assert.equal(out.account.features.add, undefined)
    assert.equal(out.account.features.size, 0)
  })

  it('accepts every valid vector and publishes the account', async () => {
    const guard = signature({ accounts })
    for (const v of vectors.valid) assert.match(await outcome(guard, v.url), /^ok /, v.url)
  })

  it('refuses signed pairs folded into another value through percent-encoding', async () => {
    const guard = signature({ accounts })
    const signed = signQuery('icac=acme&chtt=Hello&chof=.png&icwm=1', 'n3w')
    const ichm = signed.split('ichm=')[1]
    assert.match(await outcome(guard, `/chart?${signed}`), /^ok /)
    assert.equal(
      await outcome(guard, `/chart?icac=acme&chtt=Hello%26chof%3D.png%26icwm%3D1&ichm=${ichm}`),
      '401 IC_INVALID_SIGNATURE',
    )
  })

  it('answers the tampered vectors with the Image-Charts codes', async () => {
    const guard = signature({ accounts: { ...accounts, other: 'plop' } })
    const codes = await Promise.all(vectors.invalid.map((v) => outcome(guard, v.url)))
    assert.deepEqual(codes, [
      '401 IC_INVALID_SIGNATURE',
      '401 IC_INVALID_SIGNATURE',
      '401 IC_INVALID_SIGNATURE',
      '401 IC_INVALID_SIGNATURE',
      '401 IC_INVALID_SIGNATURE',
      '401 IC_INVALID_SIGNATURE',
    ])
  })

  it('tells a missing half from an unknown account', async () => {
    const guard = signature({ accounts })
    assert.equal(await outcome(guard, '/chart?cht=p&icac=acme'), '400 IC_MISSING_ENT_PARAMETER')
    assert.equal(await outcome(guard, '/chart?cht=p&ichm=00'), '400 IC_MISSING_ENT_PARAMETER')
    assert.equal(await outcome(guard, '/chart?cht=p&icac=&ichm=00'), '400 IC_MISSING_ENT_PARAMETER')
    assert.equal(
      await outcome(guard, `/chart?${signQuery('cht=p&icac=nobody', 'x')}`),
      '401 IC_ACCOUNT_ID_NOT_FOUND',
    )
    assert.equal(
      await outcome(guard, `/chart?${signQuery('cht=p&icac=__proto__', 'x')}`),
      '401 IC_ACCOUNT_ID_NOT_FOUND',
    )
    assert.equal(await outcome(guard, '/chart?cht=p&icac=acme&icac=demo&ichm=00'), '400 IS_VALIDATION_ERROR')
    assert.equal(await outcome(guard, '/chart?cht=p'), 'ok unsigned')
    assert.equal(
      await outcome(signature({ accounts, required: true }), '/chart?cht=p'),
      '400 IC_MISSING_ENT_PARAMETER',
    )
  })

  it('sends the catalogue description as the validation message of IC_MISSING_ENT_PARAMETER, naming what is missing', () => {
    const items = (url: string, options: SignatureOptions = { accounts }) => {
      try {
        signature(options)({ url, headers: {} } as IncomingMessage, res)
      } catch (err) {
        assert.ok(isIcError(err))
        return JSON.parse(err.headers['x-ic-error-validation'] as string) as unknown[]
      }
      return assert.fail('refused')
    }
    const half = errorCatalogue.IC_MISSING_ENT_PARAMETER.description
    assert.deepEqual(items('/chart?icac=acme'), [{ message: half, path: ['ichm'], type: 'any.required' }])
    assert.deepEqual(items('/chart?ichm=00'), [{ message: half, path: ['icac'], type: 'any.required' }])
    assert.deepEqual(items('/chart?icac=&ichm=00'), [{ message: half, path: ['icac'], type: 'any.required' }])
    assert.deepEqual(items('/chart?icac='), [
      { message: 'icac and ichm must be sent together', path: ['icac'], type: 'any.required' },
      { message: 'icac and ichm must be sent together', path: ['ichm'], type: 'any.required' },
    ])
    const both = 'This route needs a signed request: send icac and ichm'
    assert.deepEqual(items('/chart', { accounts, required: true }), [
      { message: both, path: ['icac'], type: 'any.required' },
      { message: both, path: ['ichm'], type: 'any.required' },
    ])
    // The refusals of a signed request name the parameter too.
    assert.deepEqual(items(`/c?${signQuery('a=1&icac=nobody', 'x')}`), [
      { message: 'Unknown account "nobody"', path: ['icac'], type: 'account.unknown' },
    ])
    assert.deepEqual(items(`/c?${signQuery('a=1&icac=acme', 'wrong')}`), [
      { message: 'The ichm signature does not match the query', path: ['ichm'], type: 'signature.invalid' },
    ])
  })

  it('accepts every secret of an account while a secret rotates', async () => {
    const guard = signature({ accounts })
    assert.equal(await outcome(guard, `/c?${signQuery('a=1&icac=acme', 'n3w')}`), 'ok acme []')
    assert.equal(await outcome(guard, `/c?${signQuery('a=1&icac=acme', 's3cr3t')}`), 'ok acme []')
    assert.equal(await outcome(guard, `/c?${signQuery('a=1&icac=acme', 'old')}`), '401 IC_INVALID_SIGNATURE')
  })

  it('looks secrets up with an async function when the record does not have them', async () => {
    const asked: string[] = []
    const guard = signature({
      accounts: { static: 'a' },
      lookup: async (id) => {
        asked.push(id)
        return id === 'db' ? { secrets: ['from-db', 'older'], features: ['retina'] } : undefined
      },
      features: imageChartsFeatures,
    })
    assert.equal(await outcome(guard, `/c?${signQuery('icretina=2&icac=db', 'older')}`), 'ok db [retina]')
    assert.equal(await outcome(guard, `/c?${signQuery('icac=ghost', 'x')}`), '401 IC_ACCOUNT_ID_NOT_FOUND')
    assert.equal(await outcome(guard, `/c?${signQuery('icac=static', 'a')}`), 'ok static []')
    assert.deepEqual(asked, ['db', 'ghost'])
  })

  it('passes lookup failures on (a 500 through the error handler), and refuses a lookup giving an empty secret', async () => {
    const failing = signature({ lookup: () => Promise.reject(new Error('db down')) })
    await assert.rejects(
      Promise.resolve(
        failing({ url: `/c?${signQuery('icac=a', 'x')}`, headers: {} } as IncomingMessage, res),
      ),
      /db down/,
    )
    const empty = signature({ lookup: () => [''] })
    await assert.rejects(
      Promise.resolve(empty({ url: `/c?${signQuery('icac=a', 'x')}`, headers: {} } as IncomingMessage, res)),
      TypeError,
    )
  })

  it('refuses features the account plan lacks, with the Image-Charts codes', async () => {
    const options: SignatureOptions = {
      accounts: {
        free: 'f',
        pro: { secrets: ['p'], plan: 'enterprise' },
        plus: { secrets: ['q'], plan: 'enterprise', features: ['retina'] },
      },
      features: { ...imageChartsFeatures, watermarkOff: { params: ['icwm'] } },
      plans: {
        enterprise: [
          'locale',
          'fontStyle',
          'fontFamily',
          'titleStyle',
          'multiAxis',
          'compoundChart',
          'watermarkOff',
        ],
      },
      unsignedFeatures: ['locale'],
    }
    const guard = signature(options)
    const cases: [string, string, string][] = [
      ['icretina=2&icac=free', 'f', '403 IC_RETINA_ERROR'],
      // What unsigned requests may use, a signed account may use too.
      ['iclocale=fr-FR&icac=free', 'f', 'ok free [locale]'],
      ['icfs=italic&icac=free', 'f', '403 IC_UNAUTHORIZED_FONT_STYLE_ERROR'],
      ['icff=Abel&icac=free', 'f', '403 IC_UNAUTHORIZED_FONT_FAMILY_ERROR'],
      ['chts=FF0000,20&icac=free', 'f', '403 IC_UNAUTHORIZED_STYLE_TITLE_ERROR'],
      ['chxt=x,y&icac=free', 'f', 'ok free [locale]'],
      ['chxt=x,y,r&icac=free', 'f', '403 IC_UNAUTHORIZED_MULTI_AXIS_ERROR'],
      ['cht=bvs&chm=D,FF0000,0,0,5&icac=free', 'f', '403 IC_UNAUTHORIZED_COMPOUND_CHART_ERROR'],
      ['cht=bvs&chm=N,000000,0,-1,11&icac=free', 'f', 'ok free [locale]'],
      ['icwm=0&icac=free', 'f', '403 IC_FEATURE_NOT_ALLOWED'],
      ['icretina=2&icac=pro', 'p', '403 IC_RETINA_ERROR'],
      [
        'iclocale=fr&chxt=x,y,r&icwm=0&icac=pro',
        'p',
        'ok pro [locale,fontStyle,fontFamily,titleStyle,multiAxis,compoundChart,watermarkOff]',
      ],
      [
        'icretina=2&icac=plus',
        'q',
        'ok plus [locale,fontStyle,fontFamily,titleStyle,multiAxis,compoundChart,watermarkOff,retina]',
      ],
    ]
    for (const [query, secret, expected] of cases) {
      assert.equal(await outcome(guard, `/c?${signQuery(query, secret)}`), expected, query)
    }
    assert.equal(await outcome(guard, '/c?iclocale=fr'), 'ok unsigned')
    assert.equal(await outcome(guard, '/c?icretina=2'), '403 IC_RETINA_ERROR')
    // A refusal found by a feature's test names the parameter the test read.
    try {
      guard({ url: '/c?chxt=x,y,r&chm=D,0,1', headers: {} } as IncomingMessage, {} as ServerResponse)
      assert.fail('refused')
    } catch (err) {
      assert.deepEqual(
        (err as { validation: { path: string[] }[] }).validation.map((item) => item.path),
        [['chxt'], ['chm']],
      )
    }
  })

  it('names each root repeated by bracketed names once, in query order, however many there are', () => {
    const guard = signature({ accounts, features: imageChartsFeatures })
    const roots = Array.from({ length: 1500 }, (_, i) => `p${i.toString(36)}`)
    const query = roots.map((root) => `${root}[]=1&${root}[0]=2&[${root}]=3`).join('&')
    try {
      guard({ url: `/c?${query}`, headers: {} } as IncomingMessage, res)
      assert.fail('refused')
    } catch (err) {
      assert.ok(isIcError(err))
      assert.equal(err.code, 'IS_VALIDATION_ERROR')
      assert.deepEqual(
        err.validation?.map((item) => `${item.path?.[0]}:${item.type}`),
        roots.map((root) => `${root}:query.repeated`),
      )
    }
  })

  it('validates its options at construction, naming the option', () => {
    const cases: [SignatureOptions, RegExp][] = [
      [{}, /`accounts` or `lookup`/],
      [{ accounts: { a: '' } }, /`accounts\.a\.secrets`/],
      [{ accounts: { a: [] } }, /`accounts\.a`/],
      // No request could name these: signature() refuses such an icac before looking for it.
      [
        { accounts: { '': 's' } },
        /`accounts` ids to be 1 to 128 printable ASCII characters, without spaces or control characters, got ""/,
      ],
      [{ accounts: { 'a b': 's' } }, /`accounts` ids .* got "a b"/],
      [{ accounts: { 'a\0': 's' } }, /`accounts` ids .* got "a\\u0000"/],
      [{ accounts: { [`${'x'.repeat(129)}`]: 's' } }, /`accounts` ids .* got "x{64}…"/],
      [{ accounts: { café: 's' } }, /`accounts` ids .* got "café"/],
      [{ accounts: { a: { secrets: ['x'], plan: 'gold' } } }, /Unknown plan "gold" in `accounts\.a\.plan`/],
      [{ accounts: {}, plans: { gold: ['teleport'] } }, /Unknown feature "teleport" in `plans\.gold`/],
      [{ accounts: {}, features: { f: {} } }, /`features\.f`/],
      [{ accounts: {}, features: { f: { params: ['x'], code: 'NOPE_CODE' } } }, /`features\.f\.code`/],
      // Read as icretina and chm, so the feature would never be gated.
      [
        { accounts: {}, features: { retina: { params: ['icretina64'] } } },
        /`features\.retina\.params` to hold plain parameter names .* got "icretina64"/,
      ],
      [
        { accounts: {}, features: { f: { params: ['chm', 'chm[]'] } } },
        /`features\.f\.params` .* got "chm\[\]"/,
      ],
      [{ accounts: {}, lookup: 'db' as never }, /`lookup`/],
      [{ accounts: {}, required: 1 as never }, /`required`/],
      // Iterated as they were, 5 threw "not iterable" and 'retina' was read letter by letter.
      [
        { accounts: {}, features: imageChartsFeatures, unsignedFeatures: 5 as never },
        /`unsignedFeatures` to be an array of feature names, got 5/,
      ],
      [
        { accounts: {}, features: imageChartsFeatures, unsignedFeatures: 'retina' as never },
        /`unsignedFeatures` to be an array of feature names, got "retina"/,
      ],
    ]
    for (const [options, message] of cases) {
      assert.throws(
        () => signature(options),
        (err: Error) => err instanceof TypeError && message.test(err.message),
      )
    }
  })
})

/** A GET of `path` exactly as written (no client normalises it): status, code and validation paths. */
function rawGet(app: RunningApp, path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    get(`${app.url}${path}`, (response) => {
      response.resume()
      response.on('end', () => {
        const code = response.headers['x-ic-error-code']
        const items = response.headers['x-ic-error-validation']
        const paths =
          typeof items === 'string'
            ? ` ${(JSON.parse(items) as { path: string[]; type: string }[]).map((i) => `${i.path[0]}:${i.type}`).join(',')}`
            : ''
        resolve(`${response.statusCode}${code === undefined ? '' : ` ${code}`}${paths}`)
      })
    }).on('error', reject)
  })
}

for (const framework of frameworks) {
  describe(`signature({ features }) on ${framework}: gated on the strict parse`, () => {
    let app: RunningApp
    const accounts = { acme: { secrets: ['acme-secret'], features: [] } }
    const gated: SignatureOptions = { accounts, features: imageChartsFeatures }
    before(async () => {
      app = await startApp(framework, {
        routes: [
          { path: '/chart', use: (a) => [a.signature(gated)], handle: () => ({ body: 'served' }) },
          {
            path: '/ungated',
            use: (a) => [a.signature({ accounts })],
            handle: () => ({ body: 'served' }),
          },
        ],
      })
    })
    after(() => app.close())

    // Each of these reached the handler (200) before: the strict parse dropped the malformed
    // value or kept the first of a repetition, while req.query / ctx.query kept or merged them.
    const refused: [string, string][] = [
      ['icretina=%ZZ', '400 IS_VALIDATION_ERROR icretina:query.encoding'],
      ['icretina=1%', '400 IS_VALIDATION_ERROR icretina:query.encoding'],
      ['icretina64=!&icretina=1', '400 IS_VALIDATION_ERROR icretina64:string.base64,icretina:query.repeated'],
      ['chxt=x,y&chxt=x,y,r', '400 IS_VALIDATION_ERROR chxt:query.repeated'],
      ['chxt=x,y,r%', '400 IS_VALIDATION_ERROR chxt:query.encoding'],
      ['chm=D,FF0000,0,0,5%', '400 IS_VALIDATION_ERROR chm:query.encoding'],
      // An unrelated parameter's problem refuses too: a feature's test may read any value.
      ['chtt=%ZZ&icretina=1', '400 IS_VALIDATION_ERROR chtt:query.encoding'],
      // Bracketed names are the parameter under Express 4's qs parser (an array or object there).
      ['icretina[]=1', '403 IC_RETINA_ERROR icretina:feature.notAllowed'],
      ['icretina%5B%5D=1', '403 IC_RETINA_ERROR icretina:feature.notAllowed'],
      ['[icretina]=1', '403 IC_RETINA_ERROR icretina:feature.notAllowed'],
      ['chxt[]=x,y,r', '403 IC_UNAUTHORIZED_MULTI_AXIS_ERROR chxt:feature.notAllowed'],
      ['chxt=x,y&chxt[0]=r', '400 IS_VALIDATION_ERROR chxt:query.repeated'],
      // One item per parameter and problem, however many times the query repeats it.
      ['chxt=x,y&chxt=x,y&chxt[]=r', '400 IS_VALIDATION_ERROR chxt:query.repeated'],
      ['chtt=%ZZ&chtt=%ZZ', '400 IS_VALIDATION_ERROR chtt:query.encoding'],
    ]
    for (const [query, expected] of refused) {
      it(`refuses ${query}, unsigned and signed by an account without the feature`, async () => {
        assert.equal(await rawGet(app, `/chart?cht=p&${query}`), expected)
        assert.equal(
          await rawGet(app, `/chart?${signQuery(`cht=p&${query}&icac=acme`, 'acme-secret')}`),
          expected,
        )
      })
    }

    it('serves a query without problems or gated parameters, and checks who is asking first', async () => {
      assert.equal(await rawGet(app, '/chart?cht=p&chxt=x,y&chtt=a%20b'), '200')
      assert.equal(await rawGet(app, '/chart?cht=p&chs[]=1'), '200', 'a bracketed name of no feature')
      assert.equal(
        await rawGet(app, `/chart?${signQuery('cht=p&chtt=%ZZ&icac=acme', 'wrong')}`),
        '401 IC_INVALID_SIGNATURE ichm:signature.invalid',
      )
    })

    it("refuses a signed value's `]=` sent as `]%3D`, which qs reads as another parameter", async () => {
      const signed = signQuery('cht=p&chtt=v]=w&icac=acme', 'acme-secret')
      assert.equal(await rawGet(app, `/ungated?${signed}`), '200')
      assert.equal(
        await rawGet(app, `/ungated?${signed.replace('v]=w', 'v]%3Dw')}`),
        '401 IC_INVALID_SIGNATURE ichm:signature.invalid',
      )
    })

    it('leaves other parameters to their own rules without features, as before', async () => {
      assert.equal(await rawGet(app, '/ungated?cht=p&chtt=%ZZ&chxt=x&chxt=y'), '200')
      assert.equal(
        await rawGet(app, '/ungated?cht=p&icac=acme&icac=x&ichm=0'),
        '400 IS_VALIDATION_ERROR icac:query.repeated',
      )
    })
  })
}

for (const framework of frameworks) {
  describe(`signature() on ${framework}: only a well-formed icac and ichm cost a lookup`, () => {
    let app: RunningApp
    const secrets: Record<string, string> = Object.fromEntries(
      vectors.valid.map((v) => [queryOf(v.url).match(/icac=([^&]+)/)?.[1], v.secret]),
    )
    const asked: string[] = []
    // Modelled on a Postgres-backed store: NUL is not valid text there, and a long key overflows an index.
    const lookup = async (id: string) => {
      asked.push(id)
      if (id.includes('\0')) throw new Error('invalid byte sequence for encoding "UTF8": 0x00')
      if (id.length > 2704) throw new Error('index row size exceeds btree maximum')
      // `rows.map((r) => r.secret)` of no rows: an unknown account, not a 500.
      return secrets[id] === undefined ? [] : [secrets[id]]
    }
    before(async () => {
      app = await startApp(framework, {
        routes: [
          { path: '/db', use: (a) => [a.signature({ lookup })], handle: () => ({ body: 'served' }) },
          {
            path: '/static',
            use: (a) => [a.signature({ accounts: secrets })],
            handle: () => ({ body: 'served' }),
          },
        ],
      })
    })
    after(() => app.close())

    const hex = 'a'.repeat(64)
    const published = vectors.valid[0] as Vector
    const [publishedQuery = '', publishedIchm = ''] = queryOf(published.url).split('&ichm=')
    const refused: [string, string][] = [
      [`icac=%00&ichm=${hex}`, '401 IC_ACCOUNT_ID_NOT_FOUND icac:account.unknown'],
      [`icac=acme%00&ichm=${hex}`, '401 IC_ACCOUNT_ID_NOT_FOUND icac:account.unknown'],
      [`icac=${'x'.repeat(8000)}&ichm=${hex}`, '401 IC_ACCOUNT_ID_NOT_FOUND icac:account.unknown'],
      [`icac=${'x'.repeat(129)}&ichm=${hex}`, '401 IC_ACCOUNT_ID_NOT_FOUND icac:account.unknown'],
      [`icac=%0D%0A&ichm=${hex}`, '401 IC_ACCOUNT_ID_NOT_FOUND icac:account.unknown'],
      [`icac=ac%09me&ichm=${hex}`, '401 IC_ACCOUNT_ID_NOT_FOUND icac:account.unknown'],
      [`icac=a+b&ichm=${hex}`, '401 IC_ACCOUNT_ID_NOT_FOUND icac:account.unknown'],
      [`icac=%C3%A9&ichm=${hex}`, '401 IC_ACCOUNT_ID_NOT_FOUND icac:account.unknown'],
      [`icac=%7F&ichm=${hex}`, '401 IC_ACCOUNT_ID_NOT_FOUND icac:account.unknown'],
      [
        `icac64=${Buffer.from('\0').toString('base64')}&ichm=${hex}`,
        '401 IC_ACCOUNT_ID_NOT_FOUND icac:account.unknown',
      ],
      // An id no account can have comes first, whatever ichm holds.
      [`icac=%00&ichm=71bd93`, '401 IC_ACCOUNT_ID_NOT_FOUND icac:account.unknown'],
      // An ichm no HMAC can be is a wrong signature, for a known account or an unknown one.
      [
        `${publishedQuery}&ichm=${publishedIchm.slice(0, 6)}`,
        '401 IC_INVALID_SIGNATURE ichm:signature.invalid',
      ],
      [`${publishedQuery}&ichm=`, '401 IC_INVALID_SIGNATURE ichm:signature.invalid'],
      [
        `${publishedQuery}&ichm=${publishedIchm.toUpperCase()}`,
        '401 IC_INVALID_SIGNATURE ichm:signature.invalid',
      ],
      [`${publishedQuery}&ichm=${publishedIchm}0`, '401 IC_INVALID_SIGNATURE ichm:signature.invalid'],
      [`${publishedQuery}&ichm=${'z'.repeat(64)}`, '401 IC_INVALID_SIGNATURE ichm:signature.invalid'],
      [
        `${publishedQuery}&ichm=${publishedIchm.slice(1)}%00`,
        '401 IC_INVALID_SIGNATURE ichm:signature.invalid',
      ],
      ['cht=p&icac=nobody&ichm=71bd93', '401 IC_INVALID_SIGNATURE ichm:signature.invalid'],
    ]
    for (const [query, expected] of refused) {
      it(`answers ${query.length > 80 ? `${query.slice(0, 80)}…` : query} with ${expected.split(' ', 2).join(' ')} without a lookup, from accounts or lookup alike`, async () => {
        asked.length = 0
        assert.equal(await rawGet(app, `/db?${query}`), expected)
        assert.deepEqual(asked, [])
        assert.equal(await rawGet(app, `/static?${query}`), expected)
      })
    }

    it('names the unknown icac as sent: JSON-quoted, cut to 64 characters, printable ASCII in the header', async () => {
      const answer = (path: string) =>
        new Promise<{ header: string; detail: string; cookie: unknown }>((resolve, reject) => {
          get(`${app.url}${path}`, { headers: { accept: 'application/json' } }, (response) => {
            let body = ''
            response.setEncoding('utf8')
            response.on('data', (chunk) => {
              body += chunk
            })
            response.on('end', () =>
              resolve({
                header: String(response.headers['x-ic-error-validation']),
                detail: (JSON.parse(body) as { detail: string }).detail,
                cookie: response.headers['set-cookie'],
              }),
            )
          }).on('error', reject)
        })
      for (const [icac, message] of [
        ['acme-prdo', 'Unknown account "acme-prdo"'],
        ['%00', 'Unknown account "\\u0000"'],
        ['%0D%0ASet-Cookie:%20a=1', 'Unknown account "\\r\\nSet-Cookie: a=1"'],
        ['%3Cscript%3E%22', 'Unknown account "<script>\\""'],
        ['%C3%A9', 'Unknown account "é"'],
        ['x'.repeat(8000), `Unknown account "${'x'.repeat(64)}…"`],
        // Cut before the emoji the 64th character would split: no lone `\ud83d` shown.
        [`${'a'.repeat(63)}%F0%9F%98%80`, `Unknown account "${'a'.repeat(63)}…"`],
      ] as const) {
        const seen = await answer(`/static?icac=${icac}&ichm=${hex}`)
        assert.match(seen.header, /^[\x20-\x7e]+$/, icac)
        assert.equal((JSON.parse(seen.header) as { message: string }[])[0]?.message, message, icac)
        assert.equal(seen.detail, message, icac)
        assert.equal(seen.cookie, undefined)
      }
    })

    it('looks up well-formed ids only, and every published vector still verifies', async () => {
      asked.length = 0
      for (const v of vectors.valid) {
        assert.equal(await rawGet(app, v.url.replace('/chart', '/db')), '200', v.url)
        assert.equal(await rawGet(app, v.url.replace('/chart', '/static')), '200', v.url)
      }
      assert.deepEqual(
        asked,
        vectors.valid.map((v) => queryOf(v.url).match(/icac=([^&]+)/)?.[1]),
      )
      asked.length = 0
      const longest = 'x'.repeat(128)
      for (const path of ['/db', '/static'])
        assert.equal(
          await rawGet(app, `${path}?${signQuery(`cht=p&icac=${longest}`, 's')}`),
          '401 IC_ACCOUNT_ID_NOT_FOUND icac:account.unknown',
        )
      assert.deepEqual(asked, [longest])
    })
  })
}
