import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import fc from 'fast-check'
import createHttpError from 'http-errors'
import { normalizeError, prefersJson, statusMessageOf, toErrorResponse } from './error-response.ts'
import { icError } from './errors.ts'

describe('normalizeError(err)', () => {
  const table: [string, unknown, number, string, boolean][] = [
    ['our error', icError('IC_HOST_NOT_ALLOWED'), 401, 'IC_HOST_NOT_ALLOWED', true],
    ['http-errors 404', createHttpError(404), 404, 'IC_NOT_FOUND', true],
    ['http-errors 500', createHttpError(500), 500, 'IC_INTERNAL_ERROR', false],
    ['statusCode only', { statusCode: 429, message: 'slow down' }, 429, 'IC_RATE_LIMITED', true],
    ['status as a string', { status: '404' }, 500, 'IC_INTERNAL_ERROR', false],
    ['status 399', { status: 399 }, 500, 'IC_INTERNAL_ERROR', false],
    ['status 600', { status: 600 }, 500, 'IC_INTERNAL_ERROR', false],
    ['status 404.5', { status: 404.5 }, 500, 'IC_INTERNAL_ERROR', false],
    [
      'a known code with the wrong status',
      { status: 400, code: 'IC_RATE_LIMITED' },
      400,
      'IC_BAD_REQUEST',
      true,
    ],
    [
      'a Node code',
      Object.assign(new Error('reset'), { status: 502, code: 'ECONNRESET' }),
      502,
      'IC_BAD_GATEWAY',
      false,
    ],
    ['a number', 42, 500, 'IC_INTERNAL_ERROR', false],
    ['a symbol', Symbol('x'), 500, 'IC_INTERNAL_ERROR', false],
  ]
  const overridden = (status: Record<string, unknown>) => Object.assign(icError('IC_IMAGE_NOT_FOUND'), status)
  table.push(
    ['our error given status 200', overridden({ status: 200 }), 404, 'IC_IMAGE_NOT_FOUND', true],
    ['our error given 302', overridden({ status: 302, statusCode: 302 }), 404, 'IC_IMAGE_NOT_FOUND', true],
    [
      'our error given "410"',
      overridden({ status: '410', statusCode: '410' }),
      404,
      'IC_IMAGE_NOT_FOUND',
      true,
    ],
    [
      'our error given 410.5',
      overridden({ status: 410.5, statusCode: 410.5 }),
      404,
      'IC_IMAGE_NOT_FOUND',
      true,
    ],
    ['our error given 600', overridden({ status: 600, statusCode: 600 }), 404, 'IC_IMAGE_NOT_FOUND', true],
  )
  for (const [name, err, status, code, expose] of table) {
    it(`${name} → ${status} ${code}`, () => {
      const n = normalizeError(err)
      assert.equal(n.status, status)
      assert.equal(n.code, code)
      assert.equal(n.expose, expose)
    })
  }

  it('honours expose set by the thrower', () => {
    assert.equal(normalizeError(createHttpError(503, 'down', { expose: true })).expose, true)
    assert.equal(normalizeError(createHttpError(400, 'x', { expose: false })).expose, false)
  })
})

describe('prefersJson(accept)', () => {
  const table: [string | undefined, boolean][] = [
    [undefined, false],
    ['*/*', false],
    ['application/json', true],
    ['application/problem+json', true],
    ['application/vnd.api+json', true],
    ['text/plain, application/json', true],
    ['text/plain, application/json;q=0.5', false],
    ['application/json;q=0, text/plain', false],
    ['image/webp,image/*,*/*;q=0.8', false],
    ['text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8', false],
    ['application/json;q=garbage', false],
    ['Application/JSON', true],
    ['TEXT/PLAIN, APPLICATION/PROBLEM+JSON;Q=0.5', false],
  ]
  for (const [accept, expected] of table) {
    it(`${accept} → ${expected ? 'JSON' : 'text'}`, () => assert.equal(prefersJson(accept), expected))
  }
})

describe('toErrorResponse(err, context)', () => {
  it('lists the message of a validation error thrown without items in x-ic-error-validation', () => {
    for (const err of [
      icError('IS_VALIDATION_ERROR', { message: '"width" is required' }),
      { status: 400, code: 'IS_VALIDATION_ERROR', message: '"width" is required' },
    ]) {
      const text = toErrorResponse(err)
      assert.equal(text.headers['x-ic-error-validation'], '[{"message":"\\"width\\" is required"}]')
      const json = toErrorResponse(err, { accept: 'application/json' })
      assert.deepEqual(JSON.parse(json.body).validation, [{ message: '"width" is required' }])
    }
    assert.equal(toErrorResponse(icError('IC_BAD_REQUEST')).headers['x-ic-error-validation'], undefined)
  })

  it('puts only the cleaned validation items in the JSON body: a BigInt or a cycle in their context cannot make it a 500', () => {
    const cyclic: Record<string, unknown> = { key: 'width' }
    cyclic.self = cyclic
    for (const context of [cyclic, { limit: 8192n }]) {
      const err = createHttpError(400, 'bad params', {
        validation: [{ message: '"width" must be ≤ 8192', path: ['width'], type: 'number.max', context }],
      })
      const r = toErrorResponse(err, { accept: 'application/json' })
      assert.deepEqual([r.status, r.code], [400, 'IC_BAD_REQUEST'])
      assert.deepEqual(JSON.parse(r.body).validation, [
        { message: '"width" must be ≤ 8192', path: ['width'], type: 'number.max' },
      ])
      assert.deepEqual(
        JSON.parse(r.headers['x-ic-error-validation'] as string),
        JSON.parse(r.body).validation,
      )
    }
  })

  it('leaves out details that cannot be JSON, and keeps the status', () => {
    const err = icError('IC_COST_OVER_LIMIT', { expose: true, details: { cost: 10n } })
    const r = toErrorResponse(err, { accept: 'application/json' })
    assert.deepEqual([r.status, r.code], [403, 'IC_COST_OVER_LIMIT'])
    assert.equal(JSON.parse(r.body).details, undefined)
    const shown = toErrorResponse(icError('IC_COST_OVER_LIMIT', { details: { cost: 10 } }), {
      accept: 'application/json',
    })
    assert.deepEqual(JSON.parse(shown.body).details, { cost: 10 })
  })

  it('sends Retry-After as whole delta-seconds, or not at all', () => {
    const retryAfter = (err: unknown) => toErrorResponse(err).headers['retry-after']
    for (const value of ['soon', '-5', '1.5', '', '0x10', 'Sun, 06 Nov 1994 08:49:37 PST'])
      assert.equal(retryAfter(createHttpError(429, { headers: { 'Retry-After': value } })), '60', value)
    assert.equal(retryAfter(createHttpError(500, { headers: { 'Retry-After': 'soon' } })), undefined)
    assert.equal(retryAfter(createHttpError(429, { headers: { 'Retry-After': ' 7 ' } })), '7')
    const inOneMinute = new Date(Date.now() + 60_000).toUTCString() // whole seconds: 59 s to 60 s ahead
    assert.match(
      retryAfter(createHttpError(503, { headers: { 'Retry-After': inOneMinute } })) ?? '',
      /^(?:59|60)$/,
    )
    const past = new Date(Date.now() - 60_000).toUTCString()
    assert.equal(retryAfter(createHttpError(503, { headers: { 'Retry-After': past } })), '0')
    assert.equal(retryAfter(icError('IC_OVERLOADED', { headers: { 'Retry-After': 'later' } })), '5')
    assert.equal(retryAfter(icError('IC_RATE_LIMITED', { retryAfterSeconds: 1e21 })), '2147483647')
    assert.equal(retryAfter(icError('IC_RATE_LIMITED', { retryAfterSeconds: 0.2 })), '1')
  })

  it('gives HEAD the headers of GET and no body', () => {
    const get = toErrorResponse(icError('IC_RATE_LIMITED'), { method: 'GET', accept: 'application/json' })
    const head = toErrorResponse(icError('IC_RATE_LIMITED'), { method: 'HEAD', accept: 'application/json' })
    assert.equal(head.body, '')
    assert.deepEqual(head.headers, get.headers)
  })

  it('re-encodes validation with a custom cap', () => {
    const items = Array.from({ length: 100 }, (_, i) => ({ message: `item ${i} is wrong in some way` }))
    const r = toErrorResponse(icError('IS_VALIDATION_ERROR', { validation: items }), {
      validationHeaderMaxBytes: 300,
    })
    assert.ok((r.headers['x-ic-error-validation'] as string).length <= 300)
  })

  it('uses the custom problem type and a status line for 499', () => {
    const r = toErrorResponse(icError('IC_CLIENT_CLOSED_REQUEST'), {
      accept: 'application/json',
      problemType: (code) => `https://errors.example.com/${code}`,
    })
    assert.equal(JSON.parse(r.body).type, 'https://errors.example.com/IC_CLIENT_CLOSED_REQUEST')
    assert.equal(r.statusMessage, 'Client Closed Request')
    assert.equal(statusMessageOf(429), 'Too Many Requests')
  })

  it('never throws and always gives a 4xx/5xx with a code, whatever is thrown (property)', () => {
    fc.assert(
      fc.property(
        fc.anything({ withBoxedValues: true, withNullPrototype: true }),
        fc.string(),
        (value, accept) => {
          const r = toErrorResponse(value, { accept })
          assert.ok(r.status >= 400 && r.status <= 599)
          assert.match(r.code, /^I[CS]_/)
          for (const v of Object.values(r.headers)) assert.match(v, /^[\t\x20-\x7e]*$/)
        },
      ),
      { numRuns: 500 },
    )
  })
})
