import assert from 'node:assert/strict'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { describe, it } from 'node:test'
import { isIcError } from '../../errors.ts'
import type { PermissionsOptions } from '../permissions/index.ts'
import { imageChartsFeatures, signQuery } from '../signature/index.ts'
import { type RequestRulesOptions, requestRules } from './index.ts'

const res = {} as ServerResponse
async function outcome(options: RequestRulesOptions, url: string, headers: Record<string, string> = {}) {
  try {
    return await requestRules(options)({ url, headers } as unknown as IncomingMessage, res)
  } catch (err) {
    assert.ok(isIcError(err), String(err))
    return `${err.status} ${err.code}`
  }
}

describe('requestRules: permissions and imageParams together', () => {
  const rules: RequestRulesOptions = {
    permissions: { hostsAllowed: ['a.example'] },
    imageParams: { imageParamsAllowed: ['width', 'crop'] },
  }
  async function refusal(url: string) {
    try {
      await requestRules(rules)({ url, headers: {} } as unknown as IncomingMessage, res)
    } catch (err) {
      assert.ok(isIcError(err), String(err))
      return err
    }
    return assert.fail(`${url} passed`)
  }

  it('lists every failure of the query at once, as imageParams alone does', async () => {
    const err = await refusal('/i?width=abc&crop=fit&crop=top')
    assert.equal(err.code, 'IS_VALIDATION_ERROR')
    assert.deepEqual(err.validation?.map((i) => i.path?.[0]).sort(), ['crop', 'width'])
  })

  it('refuses a parameter outside the allow-list with 401 even when it is repeated', async () => {
    const err = await refusal('/i?width=abc&zz=1&zz=2')
    assert.equal(err.code, 'IC_PARAM_NOT_ALLOWED')
  })

  it('leaves the query problems a gated signature would refuse to imageParams, keeping its 401', async () => {
    const gated: RequestRulesOptions = {
      signature: { accounts: { acme: 's' }, features: imageChartsFeatures },
      imageParams: { builtInParams: false, imageParamsAllowed: ['chs'], params: { chs: { type: 'size' } } },
    }
    const outcomeOf = (query: string) => outcome(gated, `/chart?${query}`)
    assert.equal(await outcomeOf('chs=abc&zz=1&zz=2'), '401 IC_PARAM_NOT_ALLOWED')
    assert.equal(await outcomeOf('chs=abc&chs=1x1'), '400 IS_VALIDATION_ERROR')
    assert.equal(await outcomeOf('icretina=%ZZ&chs=1x1'), '401 IC_PARAM_NOT_ALLOWED')
    assert.equal(await outcomeOf('icretina[]=1&chs=1x1'), '403 IC_RETINA_ERROR')
  })

  it('lists the repetitions a gated signature finds in names with brackets with every 400, after the 401s', async () => {
    const gated = (permissions: PermissionsOptions): RequestRulesOptions => ({
      signature: { accounts: { acme: 's' }, features: imageChartsFeatures },
      permissions,
      imageParams: { maxWidth: 4000 },
    })
    const off = gated({ allowDynamicOrigin: false })
    const on = gated({ hostsAllowed: ['images.example.com'] })
    for (const query of [
      'origin[]=http://169.254.169.254/&origin=http://169.254.169.254/',
      'width[]=1&width=2&origin=http://169.254.169.254/',
    ])
      assert.equal(await outcome(off, `/i?${query}`), '401 IC_DYNAMIC_ORIGIN_DISABLED', query)
    assert.equal(
      await outcome(on, '/i?width[]=1&width=2&origin=http://evil.example/&quality=0'),
      '401 IC_HOST_NOT_ALLOWED',
    )
    const listed = async (options: RequestRulesOptions, query: string) => {
      try {
        await requestRules(options)({ url: `/i?${query}`, headers: {} } as unknown as IncomingMessage, res)
      } catch (err) {
        assert.ok(isIcError(err), String(err))
        assert.equal(err.code, 'IS_VALIDATION_ERROR', query)
        return err.validation?.map((i) => `${i.path?.[0]}:${i.type}`)
      }
      return assert.fail(`${query} passed`)
    }
    // The same list as the query without brackets gets.
    for (const [query, expected] of [
      ['width[]=1&width=2&quality=0', ['width:query.repeated', 'quality:number.min']],
      ['width=1&width=2&quality=0', ['width:query.repeated', 'quality:number.min']],
      // The signature's repetition and the query's own are one item.
      ['width[]=1&width=2&width=3&quality=0', ['width:query.repeated', 'quality:number.min']],
      [
        'width[]=1&width=2&hostname=&quality=0',
        ['hostname:string.hostname', 'width:query.repeated', 'quality:number.min'],
      ],
    ] as const)
      assert.deepEqual(await listed(on, query), expected, query)
    // An account found by an asynchronous lookup: the same answer, once the lookup has settled.
    const looked: RequestRulesOptions = {
      signature: { lookup: async () => 's', features: imageChartsFeatures },
      imageParams: { maxWidth: 4000 },
    }
    assert.deepEqual(await listed(looked, signQuery('width[]=1&width=2&quality=0&icac=db', 's')), [
      'width:query.repeated',
      'quality:number.min',
    ])
  })

  it("lists a broken source with the parameters' failures: every 400 of the request at once", async () => {
    const items = async (url: string) =>
      (await refusal(url)).validation?.map((i) => `${i.path?.[0]}:${i.type}`)
    assert.deepEqual(await items('/i?width=abc&origin=%ZZ'), ['origin:query.encoding', 'width:number.base'])
    const open: RequestRulesOptions = {
      permissions: { bucketsAllowed: ['photos'] },
      imageParams: { maxWidth: 4000 },
    }
    const listed = async (query: string) => {
      try {
        await requestRules(open)({ url: `/i?${query}`, headers: {} } as unknown as IncomingMessage, res)
      } catch (err) {
        assert.ok(isIcError(err), String(err))
        assert.equal(err.code, 'IS_VALIDATION_ERROR', query)
        assert.deepEqual(JSON.parse(err.headers['x-ic-error-validation'] as string), err.validation)
        return err.validation?.map((i) => `${i.path?.[0]}:${i.type}`)
      }
      return assert.fail(`${query} passed`)
    }
    const cases: [string, string[]][] = [
      [
        'hostname=&width=abc&quality=0',
        ['hostname:string.hostname', 'width:number.base', 'quality:number.min'],
      ],
      ['bucket=a..b&width=99999&crop=zoom', ['bucket:string.bucket', 'width:number.max', 'crop:any.only']],
      ['origin=https://a.example/x&bucket=photos&width=0', ['bucket:object.oxor', 'width:number.min']],
      ['origin=https://u:p@a.example/x&width=abc', ['origin:string.uriCredentials', 'width:number.base']],
      ['origin[]=a.example&dpr=abc', ['origin:query.brackets', 'dpr:number.base']],
      // `region` is judged by both rules: listed once, by the permission rules.
      ['bucket=photos&region=evil.net%2F&width=abc', ['region:string.region', 'width:number.base']],
      ['bucket=photos&region[]=us-east-1&width=abc', ['region:query.brackets', 'width:number.base']],
      // One item per parameter and problem, whichever rule finds it and however often it is sent.
      ['hostname=&width=%ZZ&width=%ZZ', ['hostname:string.hostname', 'width:query.encoding']],
      ['width=1&width64=MQ&width=2&quality=0', ['width:query.repeated', 'quality:number.min']],
      [
        'origin[]=a.example&[origin]=b.example&width[]=1&width[0]=2',
        ['origin:query.brackets', 'width:query.brackets'],
      ],
    ]
    for (const [query, expected] of cases) assert.deepEqual(await listed(query), expected, query)
  })

  it("keeps the 401s ahead of every 400, the permission rules' first", async () => {
    const strict: RequestRulesOptions = {
      permissions: { hostsAllowed: ['a.example'], allowOriginalImageRequest: false },
      imageParams: { imageParamsAllowed: ['width'] },
    }
    const outcomeOf = (query: string) => outcome(strict, `/i?${query}`)
    assert.equal(await outcomeOf('hostname=&width=1&sepia=1'), '401 IC_PARAM_NOT_ALLOWED')
    assert.equal(await outcomeOf('hostname=&bucket=photos'), '401 IC_ORIGINAL_IMAGE_NOT_ALLOWED')
    assert.equal(await outcomeOf('origin=https://evil.example/x&width=abc'), '401 IC_HOST_NOT_ALLOWED')
    // A processing parameter sent with brackets is processing: its 400 is the answer, not the original-image 401.
    const processing: RequestRulesOptions = {
      permissions: { allowOriginalImageRequest: false },
      imageParams: {},
    }
    for (const query of ['width[]=300', '[width]=300', 'width%5B%5D=300', 'width[]=%ZZ'])
      assert.equal(await outcome(processing, `/i?${query}`), '400 IS_VALIDATION_ERROR', query)
    assert.equal(
      await outcome(
        { permissions: { allowDynamicOrigin: false }, imageParams: {} },
        '/i?width=abc&hostname=&origin[]=x',
      ),
      '401 IC_DYNAMIC_ORIGIN_DISABLED',
    )
  })
})

describe('requestRules', () => {
  const all: RequestRulesOptions = {
    apiKey: {
      keys: { k: { id: 'k', scopes: [] } },
      lookup: async (key) => (key === 'slow' ? { id: 'slow' } : undefined),
    },
    signature: { accounts: { acme: 's' }, lookup: async (id) => (id === 'db' ? 'd' : undefined) },
    permissions: { hostsAllowed: ['a.example'] },
    imageParams: { maxWidth: 100 },
  }

  it('runs synchronously when no lookup is needed, and publishes what every rule publishes', () => {
    const out = requestRules(all)(
      {
        url: `/i?${signQuery('width=10&origin=a.example&icac=acme', 's')}`,
        headers: { 'x-api-key': 'k' },
      } as unknown as IncomingMessage,
      res,
    )
    assert.ok(!(out instanceof Promise))
    const values = out as Record<string, { id?: string; host?: string; width?: number }>
    assert.equal(values.apiKey?.id, 'k')
    assert.equal(values.account?.id, 'acme')
    assert.equal(values.source?.host, 'a.example')
    assert.deepEqual(values.imageParams, { width: 10 })
  })

  it('goes on after an asynchronous lookup', async () => {
    const out = (await outcome(all, `/i?${signQuery('width=10&icac=db', 'd')}`, {
      'x-api-key': 'slow',
    })) as Record<string, { id: string }>
    assert.equal(out.apiKey?.id, 'slow')
    assert.equal(out.account?.id, 'db')
    assert.equal(
      await outcome(all, `/i?${signQuery('width=1000&icac=db', 'd')}`, { 'x-api-key': 'slow' }),
      '400 IS_VALIDATION_ERROR',
    )
  })

  it('checks the API key, then the signature, then permissions, then parameters', async () => {
    assert.equal(await outcome(all, '/i?width=1000&origin=evil.example&icac=acme'), '401 IC_API_KEY_MISSING')
    assert.equal(
      await outcome(all, '/i?width=1000&origin=evil.example&icac=acme', { 'x-api-key': 'k' }),
      '400 IC_MISSING_ENT_PARAMETER',
    )
    assert.equal(
      await outcome(all, '/i?width=1000&origin=evil.example', { 'x-api-key': 'k' }),
      '401 IC_HOST_NOT_ALLOWED',
    )
    assert.equal(await outcome(all, '/i?width=1000', { 'x-api-key': 'k' }), '400 IS_VALIDATION_ERROR')
  })

  it('does not share published objects between requests', async () => {
    const guard = requestRules({ signature: { accounts: { acme: 's' } }, imageParams: {} })
    const url = `/i?${signQuery('width=1&icac=acme', 's')}`
    const first = (await guard({ url, headers: {} } as IncomingMessage, res)) as Record<string, unknown>
    const second = (await guard({ url, headers: {} } as IncomingMessage, res)) as Record<string, unknown>
    assert.notEqual(first, second)
    assert.equal(first.account, second.account, 'the frozen account record is shared')
  })

  it("exempts the API key's query parameter from imageParamsAllowed", async () => {
    const options: RequestRulesOptions = {
      apiKey: { keys: { k: [] }, query: 'key' },
      imageParams: { imageParamsAllowed: ['width'] },
    }
    assert.equal(
      ((await outcome(options, '/i?width=1&key=k')) as Record<string, { id: string }>).apiKey?.id.startsWith(
        'key-',
      ),
      true,
    )
    assert.equal(await outcome(options, '/i?width=1&key=k&icac=a&ichm=b&sepia=1'), '401 IC_PARAM_NOT_ALLOWED')
    assert.equal(
      await outcome({ imageParams: { imageParamsAllowed: ['width'] } }, '/i?width=1&key=k'),
      '401 IC_PARAM_NOT_ALLOWED',
    )
  })

  it('validates its options at construction', () => {
    assert.throws(() => requestRules({}), /at least one rule/)
    assert.throws(() => requestRules({ imageParam: {} } as never), /Unknown option `imageParam`/)
    assert.throws(() => requestRules(null as never), TypeError)
    assert.throws(() => requestRules({ imageParams: { maxWidth: 0 } }), /`maxWidth`/)
    // A rule's configuration error says which rule it is in.
    const cases: [RequestRulesOptions, RegExp][] = [
      [
        { imageParams: { params: { a: { type: 'uuid' } as never } } },
        /^In `imageParams` of requestRules: Expected `params\.a\.type`/,
      ],
      [
        { signature: { accounts: { a: '' } } },
        /^In `signature` of requestRules: Expected `accounts\.a\.secrets`/,
      ],
      [{ permissions: { hostsAllowed: ['a..b'] } }, /^In `permissions` of requestRules: .*`hostsAllowed`/],
      [
        { apiKey: { keys: { k: ['s'] }, scope: [] } as never },
        /^In `apiKey` of requestRules: Unknown option `scope` of apiKey/,
      ],
    ]
    for (const [options, message] of cases) {
      assert.throws(
        () => requestRules(options),
        (err: Error) =>
          err instanceof TypeError && message.test(err.message) && err.cause instanceof TypeError,
      )
    }
    // With an API key's query parameter, the image parameters' options are read as imageParams() reads them.
    const withKey = { keys: { k: [] }, query: 'key' }
    assert.throws(
      () => requestRules({ apiKey: withKey, imageParams: { paramsExempt: 'abc' as never } }),
      /`paramsExempt` to be an array/,
    )
    assert.throws(
      () => requestRules({ apiKey: withKey, imageParams: null as never }),
      /options of `imageParams` to be an object/,
    )
    assert.throws(
      () => requestRules(Object.create({ permisions: {} })),
      /Unknown option `permisions` of requestRules/,
    )
  })

  it('refuses an API key parameter another rule reads, which no valid key could pass', () => {
    const keys = { 'k-1': [] }
    const cases: [RequestRulesOptions, string][] = [
      [{ apiKey: { keys, query: 'width' }, imageParams: {} }, 'width'],
      [{ apiKey: { keys, query: 'tag' }, imageParams: { params: { tag: { type: 'string' } } } }, 'tag'],
      [{ apiKey: { keys, query: 'icac' }, signature: { accounts: { acme: 's' } } }, 'icac'],
      [{ apiKey: { keys, query: 'ichm' }, signature: { accounts: { acme: 's' } } }, 'ichm'],
      [
        {
          apiKey: { keys, query: 'icretina' },
          signature: { accounts: { acme: 's' }, features: imageChartsFeatures, plans: {} },
        },
        'icretina',
      ],
      [{ apiKey: { keys, query: 'origin' }, permissions: {} }, 'origin'],
      [{ apiKey: { keys, query: 'region' }, permissions: { bucketsAllowed: ['b'] } }, 'region'],
      [
        {
          apiKey: { keys, query: 'w' },
          permissions: { allowOriginalImageRequest: false, processingParams: ['w'] },
        },
        'w',
      ],
    ]
    for (const [options, name] of cases) {
      assert.throws(
        () => requestRules(options),
        (err: Error) =>
          err instanceof TypeError &&
          err.message.startsWith(
            `Expected \`apiKey.query\` to be a parameter no other rule reads, got "${name}"`,
          ),
        name,
      )
    }
    // The same names are free when the rule that reads them is not run.
    assert.doesNotThrow(() => requestRules({ apiKey: { keys, query: 'icac' }, imageParams: {} }))
    assert.doesNotThrow(() => requestRules({ apiKey: { keys, query: 'width' }, permissions: {} }))
    assert.doesNotThrow(() =>
      requestRules({ apiKey: { keys, query: 'w' }, permissions: { processingParams: ['w'] } }),
    )
  })

  it('reads options inherited from a prototype, as each rule alone does', async () => {
    const guard = requestRules({
      apiKey: { keys: { k: [] }, query: 'key' },
      imageParams: Object.create({ maxWidth: 100 }),
    })
    const req = { url: '/img?key=k&width=500', headers: {} } as IncomingMessage
    await assert.rejects(async () => guard(req, {} as ServerResponse), { code: 'IS_VALIDATION_ERROR' })
  })
})

describe('requestRules: broken NAME64 of a parameter imageParams has no rule for', () => {
  it('refuses it, so a feature the plan lacks or the original-image rule is never passed by', async () => {
    const gated: RequestRulesOptions = {
      signature: {
        accounts: { acme: { secrets: ['s'], plan: 'free' } },
        features: imageChartsFeatures,
        plans: { free: [] },
      },
      imageParams: {},
    }
    // A lenient decoder reads `MQ!` as `1`: retina for a plan without it, had it passed unjudged.
    for (const q of ['icretina64=MQ!', 'chxt64=eCx5LHI!', 'chts64=!'])
      assert.equal(
        await outcome(gated, `/c?${signQuery(`cht=p&chs=100x100&${q}&icac=acme`, 's')}`),
        '400 IS_VALIDATION_ERROR',
        q,
      )
    assert.equal(
      await outcome(gated, `/c?${signQuery('cht=p&icretina=1&icac=acme', 's')}`),
      '403 IC_RETINA_ERROR',
    )
    const original: RequestRulesOptions = {
      permissions: { allowOriginalImageRequest: false, processingParams: ['w'] },
      imageParams: {},
    }
    assert.equal(await outcome(original, '/i?w64=!'), '400 IS_VALIDATION_ERROR')
    assert.equal(await outcome(original, '/i'), '401 IC_ORIGINAL_IMAGE_NOT_ALLOWED')
  })
})
