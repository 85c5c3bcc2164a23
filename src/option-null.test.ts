// `null` for an option is refused at construction, naming the option, as any other value of the
// wrong type: a config value read from a missing variable or JSON field (`cfg.timeout ?? null`)
// must fail at start-up, not fall back to the default for some options and throw for others.
// Only `undefined` (the option left out) means the default.
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import {
  apiKeyGuard,
  createBackendFetch,
  createDeadline,
  createLoadSampler,
  createRetryPolicy,
  fetchWithRetry,
  icError,
  imageChartsRateLimitsGuard,
  loadSheddingGuard,
  MemoryStore,
  RedisStore,
  rateLimitGuard,
  signatureGuard,
} from './index.ts'

const fail = (): void => {}
const withNull = (option: string): Record<string, never> => ({ [option]: null }) as Record<string, never>

// [what is called, with `null` for the option named, which the message must name]
const cases: readonly (readonly [string, string, () => unknown])[] = [
  ...[
    'maxBytes',
    'maxRedirects',
    'timeoutMs',
    'hostsAllowed',
    'allowPrivateAddresses',
    'allowedAddresses',
    'lookup',
    'headers',
    'retry',
  ].map((option) => ['createBackendFetch', option, () => createBackendFetch(withNull(option))] as const),
  ...['maxAttempts', 'minDelayMs', 'maxDelayMs', 'statuses', 'random', 'onRetry'].flatMap((option) => [
    ['createRetryPolicy', option, () => createRetryPolicy(withNull(option))] as const,
    ['createBackendFetch `retry`', option, () => createBackendFetch({ retry: withNull(option) })] as const,
  ]),
  ...['softThresholdRatio', 'minRetryAfterSeconds', 'maxRetryAfterSeconds', 'retryAfterJitterRatio'].map(
    (option) =>
      ['loadShedding', option, () => loadSheddingGuard({ maxInFlight: 10, ...withNull(option) })] as const,
  ),
  ...['sampleIntervalMs', 'eventLoopDelayPercentile', 'resolutionMs'].map(
    (option) => ['createLoadSampler', option, () => createLoadSampler(withNull(option))] as const,
  ),
  ['apiKey', 'scopes', () => apiKeyGuard({ keys: {}, scopes: null as never })],
  ['apiKey', 'keys[…].scopes', () => apiKeyGuard({ keys: { 'k-1': { scopes: null as never } } })],
  [
    'signature',
    'features.f.params',
    () => signatureGuard({ accounts: {}, features: { f: { params: null as never } } }),
  ],
  [
    'signature',
    'features.f.code',
    () => signatureGuard({ accounts: {}, features: { f: { params: ['icretina'], code: null as never } } }),
  ],
  ['icError', 'stack', () => icError('IC_NOT_FOUND', { stack: null as never })],
  ['icError', 'expose', () => icError('IC_NOT_FOUND', { expose: null as never })],
  ['deadline', 'timeoutMs', () => createDeadline({ timeoutMs: null as never }, fail)],
  ...[
    'storeTimeoutMs',
    'ipv6Subnet',
    'key',
    'failOpen',
    'headers',
    'store',
    'name',
    'trustProxy',
    'cost',
    'skip',
    'onStoreError',
    'blockMs',
  ].map(
    (option) =>
      [
        'rateLimit',
        option,
        () => rateLimitGuard({ limit: 10, windowMs: 1000, ...withNull(option) }),
      ] as const,
  ),
  ...['store', 'storeTimeoutMs', 'failOpen', 'onStoreError'].map(
    (option) =>
      ['imageChartsRateLimits', option, () => imageChartsRateLimitsGuard(withNull(option))] as const,
  ),
  ...['maxKeys', 'now'].map(
    (option) => ['MemoryStore', option, () => new MemoryStore(withNull(option))] as const,
  ),
  ['RedisStore', 'prefix', () => new RedisStore({ sendCommand: async () => 0, prefix: null as never })],
  ['RedisStore', 'sendCommand', () => new RedisStore({ sendCommand: null as never })],
]

describe('null for an option', () => {
  for (const [owner, option, construct] of cases) {
    it(`${owner}: \`${option}: null\` is refused, naming it`, () => {
      const escaped = option.replace(/[.[\]]/g, '\\$&')
      assert.throws(construct, { name: 'TypeError', message: new RegExp(`\`${escaped}\``) })
    })
  }

  it('fetchWithRetry: refused before any fetch, naming the option', async () => {
    let fetched = 0
    const fetch = async (): Promise<Response> => {
      fetched++
      return new Response('ok')
    }
    for (const option of ['fetch', 'maxAttempts', 'minDelayMs', 'maxDelayMs', 'statuses', 'random']) {
      await assert.rejects(fetchWithRetry('http://127.0.0.1:9/', {}, { fetch, ...withNull(option) }), {
        name: 'TypeError',
        message: new RegExp(`\`${option}\``),
      })
    }
    assert.equal(fetched, 0)
  })
})
