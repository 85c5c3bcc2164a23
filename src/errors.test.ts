import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import createHttpError from 'http-errors'
import { defaultCodeForStatus, defineErrorCode, errorCatalogue, lookupErrorCode } from './catalogue.ts'
import { icError, isIcError } from './errors.ts'

describe('icError(code, options)', () => {
  it('follows the http-errors contract and carries the code in headers', () => {
    const err = icError('IC_RATE_LIMITED')
    assert.equal(err.status, 429)
    assert.equal(err.statusCode, 429)
    assert.equal(err.expose, true)
    assert.equal(err.code, 'IC_RATE_LIMITED')
    assert.deepEqual(err.headers, { 'x-ic-error-code': 'IC_RATE_LIMITED', 'retry-after': '60' })
    assert.ok(createHttpError.isHttpError(err))
    assert.ok(err instanceof Error)
    assert.ok(err instanceof createHttpError.HttpError)
    assert.ok(err instanceof createHttpError.TooManyRequests)
    assert.equal(err.name, 'TooManyRequestsError')
    assert.equal(err.constructor.name, 'TooManyRequestsError', 'loggers that name errors by constructor')
    assert.equal(icError('IC_CLIENT_CLOSED_REQUEST').constructor.name, 'ClientClosedRequestError')
    assert.equal(icError('IC_BACKEND_UNAVAILABLE').name, 'ServiceUnavailableError')
    assert.equal(icError('IC_BACKEND_UNAVAILABLE') instanceof createHttpError[503], true)
    assert.ok(Object.keys(err).includes('code'), 'own properties are enumerable, as http-errors copies them')
    Object.assign(err, { status: 500 })
    assert.equal(err.status, 500, 'status stays writable')
    assert.equal(icError('IC_RATE_LIMITED').status, 429, 'on the instance only')
  })

  it('takes message, validation, Retry-After, details and cause', () => {
    const cause = new Error('root')
    const err = icError('IS_VALIDATION_ERROR', {
      message: 'bad width',
      validation: [{ message: '"width" must be a number', path: ['width'] }],
      retryAfterSeconds: 2.2,
      details: { width: 'abc' },
      cause,
    })
    assert.equal(err.message, 'bad width')
    assert.equal(err.headers['retry-after'], '3')
    assert.deepEqual(JSON.parse(err.headers['x-ic-error-validation'] as string), [
      { message: '"width" must be a number', path: ['width'] },
    ])
    assert.deepEqual(err.details, { width: 'abc' })
    assert.equal(err.cause, cause)
  })

  it('hides 5xx messages by default and keeps a stack for them only', () => {
    const server = icError('IC_BACKEND_ERROR')
    assert.equal(server.expose, false)
    assert.match(server.stack ?? '', /\n\s+at /)
    const client = icError('IC_HOST_NOT_ALLOWED')
    assert.doesNotMatch(client.stack ?? '', /\n\s+at /)
    assert.match(icError('IC_HOST_NOT_ALLOWED', { stack: true }).stack ?? '', /\n\s+at /)
    assert.equal(Error.stackTraceLimit > 0, true, 'the global limit is restored')
  })

  it('names the 499 error after its status, not BadRequestError', () => {
    const err = icError('IC_CLIENT_CLOSED_REQUEST')
    assert.equal(err.status, 499)
    assert.equal(err.name, 'ClientClosedRequestError')
  })

  it('lists status, statusCode and expose to for…in (loggers), and keeps a 499 status on copies', () => {
    const listed: string[] = []
    for (const key in icError('IC_RATE_LIMITED')) listed.push(key)
    for (const key of ['code', 'headers', 'status', 'statusCode', 'expose'])
      assert.ok(listed.includes(key), key)
    const gone = icError('IC_CLIENT_CLOSED_REQUEST')
    assert.equal(JSON.parse(JSON.stringify(gone)).status, 499)
    assert.equal({ ...gone }.statusCode, 499)
  })

  it('refuses unknown codes', () => {
    assert.throws(() => icError('NOPE_NOT_A_CODE'), {
      name: 'TypeError',
      message: /Unknown error code "NOPE_NOT_A_CODE"/,
    })
  })

  it('refuses options of the wrong type a JavaScript caller passed, naming the option', () => {
    const wrong: [unknown, RegExp][] = [
      [
        'custom message',
        /^Expected the options of icError\(\) to be an object such as \{ message \}, got "custom message"$/,
      ],
      [null, /options of icError\(\) to be an object .*got null$/],
      [{ message: 404 }, /^Expected `message` of icError\(\) to be a string, got 404$/],
      [
        { validation: { message: 'x' } },
        /^Expected `validation` of icError\(\) to be an array of strings or \{ message \}/,
      ],
      [
        { validation: [{ message: 'ok' }, { msg: 'x' }] },
        /^Expected `validation\[1\]` of icError\(\) to be a string or \{ message: string \}, got \{"msg":"x"\}$/,
      ],
      [{ validation: ['ok', 42] }, /^Expected `validation\[1\]` .*got 42$/],
      [{ validation: [null] }, /^Expected `validation\[0\]` .*got null$/],
      [
        { retryAfterSeconds: 'soon' },
        /^Expected `retryAfterSeconds` of icError\(\) to be a number of seconds, got "soon"$/,
      ],
      [{ retryAfterSeconds: null }, /`retryAfterSeconds`.*got null$/],
      // The contract's own headers are written from `code` and `validation`, never verbatim.
      [
        { headers: { 'X-IC-Error-Validation': 'not json' } },
        /^Expected `headers` of icError\(\) to leave "X-IC-Error-Validation" to the error handler: pass `validation` instead$/,
      ],
      [
        { headers: { 'x-ic-error-code': 'IC_OTHER' } },
        /^Expected `headers` of icError\(\) to leave "x-ic-error-code" to the error handler: pass the code instead$/,
      ],
    ]
    for (const [options, message] of wrong)
      assert.throws(() => icError('IS_VALIDATION_ERROR', options as never), { name: 'TypeError', message })
    assert.equal(icError('IC_OVERLOADED', { retryAfterSeconds: 0 }).headers['retry-after'], '0')
    assert.equal(icError('IC_OVERLOADED', { retryAfterSeconds: 2.5 }).headers['retry-after'], '3')
  })

  it('makes a value of the right type but out of range usable, so the 4xx meant still goes out', () => {
    // A wait computed from a window that reset meanwhile comes out negative.
    const late = icError('IC_RATE_LIMITED', { retryAfterSeconds: -1.5 })
    assert.deepEqual([late.status, late.headers['retry-after'], late.retryAfterSeconds], [429, '0', 0])
    const minusInfinity = icError('IC_RATE_LIMITED', { retryAfterSeconds: Number.NEGATIVE_INFINITY })
    assert.equal(minusInfinity.headers['retry-after'], '0')
    const forever = icError('IC_RATE_LIMITED', { retryAfterSeconds: Number.POSITIVE_INFINITY })
    assert.deepEqual([forever.headers['retry-after'], forever.retryAfterSeconds], ['2147483647', 2147483647])
    // NaN (a failed computation) is the catalogue's default, or no header when it has none.
    const overloaded = icError('IC_OVERLOADED', { retryAfterSeconds: Number.NaN })
    assert.equal(
      overloaded.headers['retry-after'],
      String(lookupErrorCode('IC_OVERLOADED')?.retryAfterSeconds),
    )
    const notFound = icError('IC_IMAGE_NOT_FOUND', { retryAfterSeconds: Number.NaN })
    assert.deepEqual([notFound.headers['retry-after'], notFound.retryAfterSeconds], [undefined, undefined])
    // A plain string item is the item { message }.
    const strings = icError('IS_VALIDATION_ERROR', {
      validation: ['width must be a number', { message: 'bad h' }],
    })
    assert.deepEqual(strings.validation, [{ message: 'width must be a number' }, { message: 'bad h' }])
    assert.deepEqual(JSON.parse(strings.headers['x-ic-error-validation'] as string), [
      { message: 'width must be a number' },
      { message: 'bad h' },
    ])
  })
})

describe('isIcError(value)', () => {
  it('recognises errors by a global brand, also from another copy of the package', () => {
    assert.equal(isIcError(icError('IC_NOT_FOUND')), true)
    const fromOtherCopy = Object.assign(new Error('x'), { [Symbol.for('image-api-errors.error')]: true })
    assert.equal(isIcError(fromOtherCopy), true)
    for (const value of [
      createHttpError(404),
      new Error('x'),
      null,
      undefined,
      'IC_NOT_FOUND',
      { code: 'IC_NOT_FOUND' },
    ]) {
      assert.equal(isIcError(value), false)
    }
  })
})

describe('the catalogue', () => {
  it('gives every code a status in 400–599, a title, a description, a hint and retryability', () => {
    for (const [code, entry] of Object.entries(errorCatalogue)) {
      assert.match(code, /^I[CS]_[A-Z0-9_]+$/)
      assert.ok(entry.status >= 400 && entry.status <= 599, code)
      for (const text of [entry.title, entry.description, entry.hint]) assert.ok(text.length > 3, code)
      assert.equal(typeof entry.retryable, 'boolean')
    }
  })

  it('uses Image-Charts’ real codes with the statuses of its documentation', () => {
    assert.equal(errorCatalogue.IS_VALIDATION_ERROR.status, 400)
    assert.equal(errorCatalogue.IC_MISSING_ENT_PARAMETER.status, 400)
    assert.equal(errorCatalogue.IC_INVALID_SIGNATURE.status, 401)
    assert.equal(errorCatalogue.IC_ACCOUNT_ID_NOT_FOUND.status, 401)
  })

  it('covers every status of both seed documents', () => {
    const statuses = new Set<number>(Object.values(errorCatalogue).map((e) => e.status))
    for (const status of [400, 401, 403, 404, 429, 499, 500, 502, 503, 504])
      assert.ok(statuses.has(status), String(status))
  })

  it('retries only what the seeds allow: network-like 5xx, 429 and 503, never other 4xx', () => {
    for (const [code, entry] of Object.entries(errorCatalogue)) {
      if (entry.status < 500 && entry.status !== 429 && entry.status !== 499)
        assert.equal(entry.retryable, false, code)
      if (entry.status === 429 || entry.status === 503) assert.ok(entry.retryAfterSeconds !== undefined, code)
    }
  })

  it('has a default code for every status, by exact status then by class', () => {
    assert.equal(defaultCodeForStatus(400), 'IC_BAD_REQUEST')
    assert.equal(defaultCodeForStatus(499), 'IC_CLIENT_CLOSED_REQUEST')
    assert.equal(defaultCodeForStatus(418), 'IC_CLIENT_ERROR')
    assert.equal(defaultCodeForStatus(507), 'IC_SERVER_ERROR')
    assert.equal(defaultCodeForStatus(504), 'IC_GATEWAY_TIMEOUT')
  })
})

describe('defineErrorCode(code, entry)', () => {
  const entry = {
    status: 402,
    title: 'Quota',
    description: 'Quota used up.',
    retryable: false,
    hint: 'Upgrade.',
  }

  it('adds a code that icError() then uses', () => {
    defineErrorCode('TEST_QUOTA_USED', { ...entry, retryAfterSeconds: 30 })
    const err = icError('TEST_QUOTA_USED')
    assert.equal(err.status, 402)
    assert.equal(err.headers['retry-after'], '30')
    assert.equal(lookupErrorCode('TEST_QUOTA_USED')?.title, 'Quota')
  })

  it('stores the fields it checked, own or inherited, as they were read', () => {
    let reads = 0
    const shared = {
      ...entry,
      get title() {
        reads++
        return reads === 1 ? 'Quota' : ''
      },
    }
    defineErrorCode('TEST_INHERITED', Object.create(shared))
    assert.deepEqual(lookupErrorCode('TEST_INHERITED'), { ...entry, title: 'Quota' })
    assert.equal(reads, 1)
    assert.equal(icError('TEST_INHERITED').status, 402)
  })

  it('refuses bad definitions with a message naming the field', () => {
    const cases: [string, unknown, RegExp][] = [
      ['lower_case', entry, /`code`/],
      ['NOUNDERSCORE', entry, /`code`/],
      ['IC_RATE_LIMITED', entry, /built-in/],
      ['TEST_BAD_STATUS', { ...entry, status: 302 }, /`status`/],
      ['TEST_BAD_STATUS2', { ...entry, status: 400.5 }, /`status`/],
      ['TEST_NO_TITLE', { ...entry, title: '' }, /`title`/],
      ['TEST_NO_HINT', { ...entry, hint: undefined }, /`hint`/],
      ['TEST_RETRYABLE', { ...entry, retryable: 'yes' }, /`retryable`/],
      ['TEST_RETRY_AFTER', { ...entry, retryAfterSeconds: -1 }, /`retryAfterSeconds`/],
      ['TEST_GONE', { ...entry, status: 499 }, /`status` of TEST_GONE not to be 499/],
      ['TEST_NULL', null, /entry of TEST_NULL to be an object, got null/],
    ]
    for (const [code, bad, message] of cases) {
      assert.throws(() => defineErrorCode(code, bad as never), { name: 'TypeError', message }, code)
    }
  })
})
