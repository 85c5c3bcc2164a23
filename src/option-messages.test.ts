// Every option check that shows the value it was given, given a BigInt or a symbol: the message must
// still name the option and show the value (`10n`, `Symbol(x)`). JSON.stringify throws "Do not know
// how to serialize a BigInt" for the first and writes `undefined` for the second; a value put in a
// template as it is shows `10` for the first and throws "Cannot convert a Symbol value to a string"
// for the second.
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import {
  apiKeyGuard,
  createBackendFetch,
  createDeadline,
  createErrorWriter,
  createHostMatcher,
  createRetryPolicy,
  defineErrorCode,
  fetchWithRetry,
  icError,
  imageChartsRateLimitsGuard,
  imageParamsGuard,
  permissionsGuard,
  RedisStore,
  rateLimitGuard,
  signatureGuard,
} from './index.ts'

const secret = 's3cret-s3cret-s3cret-s3cret-1234'
const limits = { limit: 10, windowMs: '10s' } as const
const entry = {
  status: 402,
  title: 'Quota Exceeded',
  description: 'Used up.',
  retryable: false,
  hint: 'Wait.',
}
const sendCommand = async () => null
const feature = { params: ['icretina'] }

/** A value of the wrong type for an option, in the place of `x`. */
type Construct = (x: never) => unknown

// [option named in the message, what constructs with the value, whether to try a symbol too: the
// option takes a string, or its message used to put the value in as it is]
const cases: readonly (readonly [string, Construct, boolean])[] = [
  ['allowDynamicOrigin', (x) => permissionsGuard({ allowDynamicOrigin: x }), false],
  ['allowOriginalImageRequest', (x) => permissionsGuard({ allowOriginalImageRequest: x }), false],
  ['allowDataUrls', (x) => permissionsGuard({ allowDataUrls: x }), false],
  ['bucketsAllowed', (x) => permissionsGuard({ bucketsAllowed: [x] }), true],
  ['processingParams', (x) => permissionsGuard({ processingParams: [x] } as never), true],
  ['hostsAllowed', (x) => permissionsGuard({ hostsAllowed: [x] }), true],
  ['hostsAllowed', (x) => createHostMatcher([x]), true],
  ['statuses', (x) => createRetryPolicy({ statuses: x }), false],
  ['statuses', (x) => createRetryPolicy({ statuses: [429, x] }), false],
  ['imageParamsAllowed', (x) => imageParamsGuard({ imageParamsAllowed: [x] }), true],
  ['paramsExempt', (x) => imageParamsGuard({ paramsExempt: [x] }), true],
  ['builtInParams', (x) => imageParamsGuard({ builtInParams: x }), false],
  ['requestIdHeader', (x) => createErrorWriter({ requestIdHeader: x }), true],
  ['header', (x) => apiKeyGuard({ keys: {}, header: x }), true],
  ['query', (x) => apiKeyGuard({ keys: {}, query: x }), true],
  ['required', (x) => signatureGuard({ accounts: {}, required: x }), false],
  [
    'features.retina.code',
    (x) => signatureGuard({ accounts: {}, features: { retina: { ...feature, code: x } } }),
    true,
  ],
  [
    'plans.pro',
    (x) => signatureGuard({ accounts: {}, features: { retina: feature }, plans: { pro: [x] } }),
    true,
  ],
  ['unsignedFeatures', (x) => signatureGuard({ accounts: {}, unsignedFeatures: [x] }), true],
  ['accounts.acme.plan', (x) => signatureGuard({ accounts: { acme: { secrets: [secret], plan: x } } }), true],
  [
    'accounts.acme.features',
    (x) => signatureGuard({ accounts: { acme: { secrets: [secret], features: [x] } } }),
    true,
  ],
  ['hostsAllowed', (x) => createBackendFetch({ hostsAllowed: x }), false],
  ['hostsAllowed', (x) => createBackendFetch({ hostsAllowed: [x] }), true],
  ['headers.x-tenant', (x) => createBackendFetch({ headers: { 'x-tenant': x } }), true],
  ['allowedAddresses', (x) => createBackendFetch({ allowedAddresses: [x] }), true],
  ['key', (x) => rateLimitGuard({ ...limits, key: x }), true],
  ['failOpen', (x) => rateLimitGuard({ ...limits, failOpen: x }), false],
  ['headers', (x) => rateLimitGuard({ ...limits, headers: x }), false],
  ['trustProxy', (x) => rateLimitGuard({ ...limits, trustProxy: x }), false],
  ['trustProxy', (x) => imageChartsRateLimitsGuard({ trustProxy: x }), false],
  ['name', (x) => rateLimitGuard({ ...limits, name: x }), true],
  ['prefix', (x) => new RedisStore({ sendCommand, prefix: x }), true],
  ['code', (x) => defineErrorCode(x, entry), true],
  // Messages that put the value in as it is.
  ['maxAttempts', (x) => createRetryPolicy({ maxAttempts: x }), true],
  ['maxAttempts', (x) => createBackendFetch({ retry: { maxAttempts: x } }), true],
  ['validationHeaderMaxBytes', (x) => createErrorWriter({ validationHeaderMaxBytes: x }), true],
  ['maxRedirects', (x) => createBackendFetch({ maxRedirects: x }), true],
  ['status', (x) => defineErrorCode('ACME_QUOTA_EXCEEDED', { ...entry, status: x }), true],
  ['options', (x) => createDeadline(x, () => {}), true],
]

describe('option messages given a BigInt or a symbol', () => {
  for (const [option, construct, symbolToo] of cases) {
    const values: (readonly [unknown, string])[] = [[10n, '10n']]
    if (symbolToo) values.push([Symbol('x'), 'Symbol(x)'])
    for (const [value, shown] of values) {
      it(`${construct.toString().replace(/^\(?x\)?\s*=>\s*/, '')}: names \`${option}\` and shows ${shown}`, () => {
        assert.throws(
          () => construct(value as never),
          (error: Error) => {
            assert.equal(error.name, 'TypeError', error.message)
            assert.ok(error.message.includes(`\`${option}\``), error.message)
            assert.ok(error.message.includes(shown), error.message)
            return true
          },
        )
      })
    }
  }

  it('fetchWithRetry({ methods }): names `methods` and shows 10n and Symbol(x)', async () => {
    for (const [methods, shown] of [
      [10n, '10n'],
      [Symbol('x'), 'Symbol(x)'],
      [['GET', 10n], '["GET",10n]'],
    ] as const) {
      await assert.rejects(fetchWithRetry('http://127.0.0.1:9/', {}, { methods: methods as never }), {
        name: 'TypeError',
        message: `Expected \`methods\` to be an array of HTTP method names, got ${shown}`,
      })
    }
  })

  it('icError(code): shows an unknown code 10n or Symbol(x)', () => {
    for (const [code, shown] of [
      [10n, '10n'],
      [Symbol('x'), 'Symbol(x)'],
    ] as const) {
      assert.throws(() => icError(code as never), {
        name: 'TypeError',
        message: `Unknown error code ${shown}: define it with defineErrorCode()`,
      })
    }
  })

  it('still quotes a string as JSON does', () => {
    assert.throws(() => apiKeyGuard({ keys: {}, header: 'x api key' }), {
      message: 'Expected `header` to be a header name or false, got "x api key"',
    })
    assert.throws(() => rateLimitGuard({ ...limits, key: 'IP' as never }), {
      message: `Expected \`key\` to be 'ip', 'account' or a function, got "IP"`,
    })
    assert.throws(() => createBackendFetch({ allowedAddresses: ['10.0.0.0/33'] }), {
      message: 'Expected `allowedAddresses` entries to be IP addresses or CIDR ranges, got "10.0.0.0/33"',
    })
    assert.throws(() => signatureGuard({ accounts: { acme: { secrets: [secret], plan: 'gold' } } }), {
      message: 'Unknown plan "gold" in `accounts.acme.plan`',
    })
    assert.throws(() => createRetryPolicy({ statuses: [429, 200] }), {
      message: 'Expected `statuses` to be an array of 4xx/5xx statuses, got [429,200]',
    })
    // Put in as it was, '3' read as a valid value.
    assert.throws(() => createRetryPolicy({ maxAttempts: '3' as never }), {
      message: 'Expected `maxAttempts` to be an integer from 1 to 100, got "3"',
    })
  })
})
