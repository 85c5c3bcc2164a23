import assert from 'node:assert/strict'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { after, before, describe, it } from 'node:test'
import fc from 'fast-check'
import request from 'supertest'
import { querySetups, type RunningApp, startApp } from '../../../test/support/harness.ts'
import { isIcError } from '../../errors.ts'
import type { Guard } from '../../guard.ts'
import { type ImageParamsOptions, imageParams } from './index.ts'
import { compileRule, Failure } from './rules.ts'

const res = {} as ServerResponse
function run(guard: Guard, url: string): unknown {
  return guard({ url, headers: {} } as IncomingMessage, res)
}
function values(options: ImageParamsOptions, query: string): Record<string, unknown> {
  return (run(imageParams(options), `/img?${query}`) as { imageParams: Record<string, unknown> }).imageParams
}
function refusal(options: ImageParamsOptions, query: string) {
  try {
    run(imageParams(options), `/img?${query}`)
  } catch (err) {
    assert.ok(isIcError(err), 'an IcError')
    return err
  }
  assert.fail(`expected ${query} to be refused`)
}

describe('imageParams: built-in Imagizer rules', () => {
  it('publishes typed, normalised values', () => {
    assert.deepEqual(
      values(
        {},
        'width=300&height=200&dpr=2&quality=90&crop=pad&pad_color=ABC&format=webp&blur=2.5&brightness=-0.5&autorotate=false&meta',
      ),
      {
        width: 300,
        height: 200,
        dpr: 2,
        quality: 90,
        crop: 'pad',
        pad_color: 'aabbcc',
        format: 'webp',
        blur: 2.5,
        brightness: -0.5,
        autorotate: false,
        meta: true,
      },
    )
  })

  it('ignores parameters it has no rule for', () => {
    assert.deepEqual(values({}, 'width=10&utm_source=x'), { width: 10 })
    // Every name ending in 64 is NAME's base64 form, a rule or not: other rules (a signature
    // feature, the original-image rule) read names this one has no rule for.
    for (const query of ['width=10&h264=1', 'base64=true', 'origin64=!', 'ichm64=!', 'icretina64=MQ!'])
      assert.equal(refusal({}, query).validation?.[0]?.type, 'string.base64', query)
  })

  it('reports every failure at once, Joi-style', () => {
    const err = refusal({}, 'width=9000&height=abc&quality=0&crop=zoom&pad_color=red&autorotate=maybe&dpr=')
    assert.equal(err.status, 400)
    assert.equal(err.code, 'IS_VALIDATION_ERROR')
    assert.deepEqual(err.validation, [
      { message: '"width" must be less than or equal to 8192', path: ['width'], type: 'number.max' },
      { message: '"height" must be a number', path: ['height'], type: 'number.base' },
      { message: '"quality" must be greater than or equal to 1', path: ['quality'], type: 'number.min' },
      {
        message: '"crop" must be one of [fit, top, bottom, pad, face, entropy]',
        path: ['crop'],
        type: 'any.only',
      },
      {
        message: '"pad_color" must be a hex colour of 3, 4, 6 or 8 digits',
        path: ['pad_color'],
        type: 'string.colour',
      },
      { message: '"autorotate" must be a boolean', path: ['autorotate'], type: 'boolean.base' },
      { message: '"dpr" is not allowed to be empty', path: ['dpr'], type: 'string.empty' },
    ])
    assert.deepEqual(JSON.parse(err.headers['x-ic-error-validation'] as string), err.validation)
  })

  it('refuses integers written as decimals, exponents or beyond the safe range', () => {
    assert.equal(refusal({}, 'width=10.5').validation?.[0]?.type, 'number.integer')
    assert.equal(refusal({}, 'width=1e3').validation?.[0]?.type, 'number.base')
    assert.equal(refusal({}, 'width=0x10').validation?.[0]?.type, 'number.base')
    assert.equal(
      refusal({ maxWidth: Number.MAX_VALUE }, 'width=99999999999999999999').validation?.[0]?.type,
      'number.unsafe',
    )
  })

  it('caps the output area, dpr included', () => {
    assert.deepEqual(values({}, 'width=5000&height=5000&dpr=1'), { width: 5000, height: 5000, dpr: 1 })
    const err = refusal({}, 'width=4000&height=4000&dpr=2')
    assert.deepEqual(
      err.validation?.map((i) => i.type),
      ['output.area'],
    )
    assert.equal(refusal({ maxOutputPixels: 100 }, 'width=11&height=10').validation?.[0]?.path?.[0], 'width')
    assert.deepEqual(
      ['width=11&height=10', 'width=6&height=5&dpr=2'].map(
        (query) => refusal({ maxOutputPixels: 100 }, query).validation?.[0]?.message,
      ),
      [
        '"width" × "height" must be less than or equal to 100 pixels',
        '"width" × "height" × "dpr"² must be less than or equal to 100 pixels',
      ],
      'dpr is named only when the request gave it',
    )
  })

  it('caps each side of the output, dpr included, when only one side is given', () => {
    for (const query of ['width=8192&dpr=5', 'width=4097&dpr=2']) {
      assert.deepEqual(
        refusal({}, query).validation?.map((i) => [i.path?.[0], i.type]),
        [['width', 'output.width']],
        query,
      )
    }
    assert.deepEqual(
      refusal({}, 'height=8192&dpr=5').validation?.map((i) => [i.path?.[0], i.type, i.message]),
      [['height', 'output.height', '"height" × "dpr" must be less than or equal to 8192']],
    )
    assert.deepEqual(values({}, 'width=4096&dpr=2'), { width: 4096, dpr: 2 })
    assert.deepEqual(values({}, 'width=8192&dpr=0.5'), { width: 8192, dpr: 0.5 })
    assert.deepEqual(values({ maxHeight: 1000 }, 'height=500&dpr=2'), { height: 500, dpr: 2 })
    assert.equal(refusal({ maxHeight: 1000 }, 'height=501&dpr=2').validation?.[0]?.type, 'output.height')
    // A width rule of your own without a max keeps maxWidth as the output's limit, dpr or not.
    const unbounded = { params: { width: { type: 'integer' as const, min: 1 } } }
    for (const query of ['width=100000', 'width=5000&dpr=2'])
      assert.equal(refusal(unbounded, query).validation?.[0]?.type, 'output.width', query)
    assert.equal(
      refusal(unbounded, 'width=8193').validation?.[0]?.message,
      '"width" must be less than or equal to 8192',
    )
    assert.deepEqual(values(unbounded, 'width=8192'), { width: 8192 })
    const wider = { params: { width: { type: 'integer' as const, min: 1, max: 16_000 } } }
    assert.deepEqual(values(wider, 'width=8200&dpr=1.1'), { width: 8200, dpr: 1.1 })
    assert.equal(
      refusal(wider, 'width=8200&dpr=2').validation?.[0]?.message,
      '"width" × "dpr" must be less than or equal to 16000',
    )
  })

  it('judges no output limit when a size parameter is itself refused', () => {
    for (const query of [
      'width=8192&height=8192&dpr=0.5x',
      'width=8192&height=8192&dpr=%ZZ',
      'width=8192&dpr=9',
    ]) {
      assert.ok(
        refusal({}, query).validation?.every((i) => i.type?.startsWith('output.') !== true),
        query,
      )
    }
  })

  it('validates NAME64 like NAME', () => {
    assert.deepEqual(values({}, `width64=${Buffer.from('640').toString('base64')}`), { width: 640 })
    const err = refusal({}, `width64=${Buffer.from('99999').toString('base64url')}`)
    assert.equal(err.validation?.[0]?.message, '"width" must be less than or equal to 8192')
  })

  it('refuses repeated parameters and malformed percent-encoding as validation errors', () => {
    const err = refusal({}, 'width=1&width=2&x=%E0%A4%A')
    assert.deepEqual(
      err.validation?.map((i) => i.type),
      ['query.repeated', 'query.encoding'],
    )
  })

  it('lists one item per parameter and problem, however many times the query repeats it', () => {
    const paths = (query: string) => refusal({}, query).validation?.map((i) => `${i.path?.[0]}:${i.type}`)
    assert.deepEqual(paths('width=1&width64=MQ&width=2'), ['width:query.repeated'])
    assert.deepEqual(paths('width=%ZZ&width=%ZZ&height=0'), ['width:query.encoding', 'height:number.min'])
    assert.deepEqual(paths('width[]=1&[width]=2&width[0]=3'), ['width:query.brackets'])
    assert.equal(refusal({}, 'width=1&width64=MQ&width=2').message, '"width" must not be repeated')
  })
})

describe('imageParams: declared parameters', () => {
  const options: ImageParamsOptions = {
    params: {
      chs: { type: 'size', required: true, maxWidth: 999, maxHeight: 999, maxPixels: 998_001 },
      theme: { type: 'enum', values: ['light', 'dark'], default: 'light' },
      count: { type: 'integer', min: 1, max: 10, message: 'count must be 1 to 10' },
      ratio: { type: 'number', min: 0, max: 1 },
      ink: { type: 'colour' },
      slug: { type: 'pattern', pattern: '^[a-z0-9-]+$', maxLength: 20 },
      title: { type: 'string', maxLength: 5 },
      width: { type: 'integer', min: 1, max: 100 },
    },
  }

  it('parses every type and fills defaults', () => {
    assert.deepEqual(
      values(options, 'chs=300x200&count=3&ratio=.5&ink=%23FF0000&slug=a-b&title=hi&width=100'),
      {
        chs: { width: 300, height: 200 },
        count: 3,
        ratio: 0.5,
        ink: 'ff0000',
        slug: 'a-b',
        title: 'hi',
        width: 100,
        theme: 'light',
      },
    )
  })

  it('reports required parameters, custom messages and each type failure', () => {
    const err = refusal(options, 'count=11&ratio=2&ink=zz&slug=A_B&title=toolong&theme=blue&width=101')
    assert.deepEqual(
      err.validation?.map((i) => [i.path?.[0], i.message, i.type]),
      [
        ['count', 'count must be 1 to 10', 'number.max'],
        ['ratio', '"ratio" must be less than or equal to 1', 'number.max'],
        ['ink', '"ink" must be a hex colour of 3, 4, 6 or 8 digits', 'string.colour'],
        ['slug', '"slug" fails to match the required pattern: /^[a-z0-9-]+$/u', 'string.pattern.base'],
        ['title', '"title" length must be less than or equal to 5 characters long', 'string.max'],
        ['theme', '"theme" must be one of [light, dark]', 'any.only'],
        ['width', '"width" must be less than or equal to 100', 'number.max'],
        ['chs', '"chs" is required', 'any.required'],
      ],
    )
  })

  it('checks sizes against width, height and area limits', () => {
    assert.equal(refusal(options, 'chs=1000x10').validation?.[0]?.type, 'size.maxWidth')
    assert.equal(refusal(options, 'chs=10x1000').validation?.[0]?.type, 'size.maxHeight')
    assert.equal(
      refusal({ params: { chs: { type: 'size', maxPixels: 99 } } }, 'chs=10x10').validation?.[0]?.type,
      'size.maxPixels',
    )
    assert.equal(refusal(options, 'chs=0x10').validation?.[0]?.type, 'size.min')
    assert.equal(refusal(options, 'chs=10*10').validation?.[0]?.type, 'size.base')
  })

  it('accepts defaults of every type', () => {
    assert.deepEqual(
      values(
        {
          params: {
            size: { type: 'size', default: { width: 2, height: 3 } },
            on: { type: 'boolean', default: false },
            n: { type: 'number', default: 0.5 },
          },
        },
        '',
      ),
      { size: { width: 2, height: 3 }, on: false, n: 0.5 },
    )
  })

  it('drops the built-in rules when asked', () => {
    assert.deepEqual(values({ builtInParams: false }, 'width=abc'), {})
  })
})

describe('imageParams: imageParamsAllowed', () => {
  it('refuses a parameter outside the list with 401 even when its value is broken', () => {
    for (const query of ['foo64=!!!', 'width=1&foo64=!!!', 'fo%ZZo=1']) {
      const err = refusal({ imageParamsAllowed: ['width'] }, query)
      assert.equal(err.code, 'IC_PARAM_NOT_ALLOWED', query)
    }
    assert.equal(refusal({ imageParamsAllowed: ['width'] }, 'width64=!!!').code, 'IS_VALIDATION_ERROR')
    for (const query of ['foo=1&foo=2', 'foo64=!!!&foo64=!!!', 'foo=1&foo64=!!!'])
      assert.deepEqual(
        refusal({ imageParamsAllowed: ['width'] }, query).validation?.map((i) => i.path?.[0]),
        ['foo'],
        `${query}: each refused name once`,
      )
  })

  it('reports a required parameter with a broken value once, not also as missing', () => {
    const err = refusal({ params: { chs: { type: 'size', required: true } } }, 'chs64=!!!')
    assert.deepEqual(
      err.validation?.map((i) => i.type),
      ['string.base64'],
    )
  })

  it('refuses other parameters with 401 IC_PARAM_NOT_ALLOWED naming each one', () => {
    const err = refusal({ imageParamsAllowed: ['width'] }, 'width=10&blur=3&foo64=YmFy&icac=x')
    assert.equal(err.status, 401)
    assert.equal(err.code, 'IC_PARAM_NOT_ALLOWED')
    assert.deepEqual(
      err.validation?.map((i) => i.path?.[0]),
      ['blur', 'foo'],
    )
    assert.match(err.message, /"blur", "foo"/)
  })

  it('names a refused parameter escaped in the message, as in the header', () => {
    const err = refusal({ imageParamsAllowed: ['width'] }, 'width=1&zz%0D%0ASet-Cookie:%20a=1')
    assert.equal(err.message, 'Parameter not allowed: "zz\\r\\nSet-Cookie: a"')
    assert.doesNotMatch(err.message, /[\r\n]/)
  })

  it('counts a NAME64 with broken percent-encoding as NAME: allowed when NAME is', () => {
    const allowed = { imageParamsAllowed: ['width', 'chs'], params: { chs: { type: 'size' as const } } }
    for (const query of ['chs=1x1&width64=%ZZ', 'chs64=%ZZ']) {
      const err = refusal(allowed, query)
      assert.equal(err.code, 'IS_VALIDATION_ERROR', query)
      assert.deepEqual(
        err.validation?.map((i) => i.type),
        ['query.encoding'],
        query,
      )
    }
    assert.equal(refusal(allowed, 'zz64=%ZZ').code, 'IC_PARAM_NOT_ALLOWED')
  })

  it('names each refused name once in a long query of broken names, in query order', () => {
    // 2,000 distinct broken base64 names, each sent twice: every one named, and once.
    const names = Array.from({ length: 2000 }, (_, i) => i.toString(36))
    const query = [...names, ...names].map((name) => `${name}64=!`).join('&')
    const err = refusal({ imageParamsAllowed: ['width'] }, query)
    assert.equal(err.code, 'IC_PARAM_NOT_ALLOWED')
    assert.deepEqual(
      err.validation?.map((i) => i.path?.[0]),
      names,
    )
  })

  it('judges a name with brackets and a broken value as the parameter it stands for, once', () => {
    const allowed = {
      imageParamsAllowed: ['width', 'chs'],
      params: { chs: { type: 'size' as const, required: true } },
    }
    const paths = (query: string) =>
      refusal(allowed, query).validation?.map((i) => `${i.path?.[0]}:${i.type}`)
    assert.deepEqual(paths('chs=1x1&sepia[]=%ZZ&sepia[0]=1&sepia=2'), ['sepia:any.unknown'])
    assert.deepEqual(paths('chs=1x1&width[]=%ZZ'), ['width[]:query.encoding'])
    // A name that does not decode: its %5B and %5D are brackets to qs, which reads `sepia` and `origin`.
    assert.deepEqual(paths('chs=1x1&sepia%5B%5D%ZZ=1'), ['sepia:any.unknown'])
    assert.deepEqual(paths('chs=1x1&origin%5B%5D%ZZ=1'), ['origin%5B%5D%ZZ:query.encoding'])
    // Sent with brackets, a required parameter is reported once: as sent with brackets, not also as missing.
    assert.deepEqual(paths('chs[]=1x1'), ['chs:query.brackets'])
    // With a broken value too: the parameter was sent, and qs hands it to the handler.
    for (const query of ['chs[]=%ZZ', '[chs]=%ZZ', 'chs64[]=%ZZ', 'chs%5B%5D%ZZ=1'])
      assert.deepEqual(paths(query), [`${query.split('=')[0]}:query.encoding`], query)
    assert.equal(
      refusal(allowed, 'chs[]=1x1').validation?.[0]?.message,
      '"chs[]" must be sent without brackets, as a plain "chs=value"',
    )
  })

  it('names at most ten refused parameters in the message, and lists all in the validation items', () => {
    const query = Array.from({ length: 12 }, (_, i) => `p${i}=1`).join('&')
    const err = refusal({ imageParamsAllowed: ['width'] }, query)
    assert.match(err.message, /"p9" and 2 more$/)
    assert.equal(err.validation?.length, 12)
  })

  it('allows NAME64 when NAME is allowed, and the exempt parameters', () => {
    assert.deepEqual(values({ imageParamsAllowed: ['width'], paramsExempt: ['key'] }, 'width64=MTA&key=1'), {
      width: 10,
    })
  })
})

describe('imageParams: configuration', () => {
  const cases: [string, ImageParamsOptions, RegExp][] = [
    ['unknown type', { params: { a: { type: 'uuid' } as never } }, /`params\.a\.type`/],
    [
      'min > max',
      { params: { a: { type: 'integer', min: 5, max: 1 } } },
      /`params\.a\.min` to be at most `params\.a\.max`/,
    ],
    [
      'invalid pattern',
      { params: { a: { type: 'pattern', pattern: '(' } } },
      /`params\.a\.pattern` to be a valid regular expression/,
    ],
    ['empty enum', { params: { a: { type: 'enum', values: [] } } }, /`params\.a\.values`/],
    [
      'required with a default',
      { params: { a: { type: 'integer', required: true, default: 3 } } },
      /`params\.a` to be required or to have a `default`, not both/,
    ],
    ['params null', { params: null as never }, /`params` to be a plain object/],
    [
      'a fractional bound of an integer',
      { params: { a: { type: 'integer', min: 1.5 } } },
      /`params\.a\.min` to be an integer \(the rule is of type integer\), got 1\.5/,
    ],
    [
      'a size no value can have',
      { params: { s: { type: 'size', maxWidth: 0 } } },
      /`params\.s\.maxWidth` to be a positive integer/,
    ],
    [
      'a zero pixel cap',
      { params: { s: { type: 'size', maxPixels: 0 } } },
      /`params\.s\.maxPixels` to be a positive integer/,
    ],
    [
      'a zero maximum length',
      { params: { t: { type: 'string', maxLength: 0 } } },
      /`params\.t\.maxLength` to be a positive integer/,
    ],
    ['unknown key', { params: { a: { type: 'integer', maximum: 3 } as never } }, /`params\.a\.maximum`/],
    ['bad default', { params: { a: { type: 'integer', max: 3, default: 4 } } }, /`params\.a\.default`/],
    ['name ending in 64', { params: { x264: { type: 'boolean' } } }, /not ending in 64/],
    [
      'a bracketed allowed name',
      { imageParamsAllowed: ['width', 'width[]'] },
      /`imageParamsAllowed` to hold parameter names without brackets .*"width\[\]"/,
    ],
    [
      'a bracketed exempt name',
      { paramsExempt: ['tags[0]'] },
      /`paramsExempt` to hold parameter names without brackets/,
    ],
    [
      'a bracketed declared name',
      { params: { 'chs]': { type: 'size' } } },
      /`params` to hold parameter names without brackets/,
    ],
    ['negative maxWidth', { maxWidth: -1 }, /Expected `maxWidth` to be a positive number, got -1/],
    ['allowed list of non-strings', { imageParamsAllowed: [1] as never }, /`imageParamsAllowed`/],
    [
      'required not boolean',
      { params: { a: { type: 'boolean', required: 'yes' as never } } },
      /`params\.a\.required`/,
    ],
    ['a misspelt option', { maxwidth: 10 } as never, /Unknown option `maxwidth` of imageParams/],
    ['params as a Map', { params: new Map() as never }, /`params` to be a plain object/],
    [
      'a required parameter the allow-list refuses',
      { params: { chs: { type: 'size', required: true } }, imageParamsAllowed: ['width'] },
      /`params\.chs`, which is required, to be in `imageParamsAllowed`/,
    ],
    [
      'a defaulted parameter the allow-list refuses',
      { params: { chs: { type: 'size', default: { width: 3, height: 4 } } }, imageParamsAllowed: ['width'] },
      /`params\.chs`, which is defaulted, to be in `imageParamsAllowed`/,
    ],
    ['maxDpr below the lowest dpr', { maxDpr: 0.05 }, /Expected `maxDpr` to be at least 0\.1/],
    [
      'a text default for an integer',
      { params: { a: { type: 'integer', default: '5' as never } } },
      /`params\.a\.default` to be a number/,
    ],
    [
      'an empty text default for a boolean',
      { params: { a: { type: 'boolean', default: '' as never } } },
      /`params\.a\.default` to be a boolean/,
    ],
    [
      'a number default for a colour',
      { params: { a: { type: 'colour', default: 123 as never } } },
      /`params\.a\.default` to be a string/,
    ],
    [
      'a list default for an enum',
      { params: { a: { type: 'enum', values: ['x'], default: ['x'] as never } } },
      /`params\.a\.default` to be a string/,
    ],
    [
      'a text default for a size',
      { params: { a: { type: 'size', default: '3x4' as never } } },
      /`params\.a\.default` to be a \{ width, height \} size/,
    ],
    [
      'an out-of-range exponent default',
      { params: { a: { type: 'number', max: 1, default: 1e21 } } },
      /`params\.a\.default`/,
    ],
    [
      'maxWidth below one pixel',
      { maxWidth: 0.5 },
      /Expected `maxWidth` to be a whole number of pixels, got 0\.5/,
    ],
    [
      'a fractional maxHeight',
      { maxHeight: 4000.5 },
      /Expected `maxHeight` to be a whole number of pixels, got 4000\.5/,
    ],
    [
      'an enum dpr, which the output limits could not multiply',
      { params: { dpr: { type: 'enum', values: ['1', '2', '5'] } } },
      /Expected `params\.dpr\.type` to be 'integer' or 'number' \(the output limits multiply it\), got "enum"/,
    ],
    [
      'a pattern width',
      { params: { width: { type: 'pattern', pattern: /^[0-9]{1,5}$/ } } },
      /`params\.width\.type` to be 'integer' or 'number'/,
    ],
    [
      'a string height',
      { params: { height: { type: 'string' } } },
      /`params\.height\.type` to be 'integer' or 'number'/,
    ],
    [
      'a width default over maxWidth',
      { maxWidth: 1000, params: { width: { type: 'integer', min: 1, default: 2000 } } },
      /defaults of `params\.width`.*: "width" must be less than or equal to 1000/,
    ],
    [
      'width and dpr defaults that together pass maxWidth',
      { params: { width: { type: 'integer', default: 8192 }, dpr: { type: 'number', default: 2 } } },
      /defaults of `params\.width`.*"width" × "dpr" must be less than or equal to 8192/,
    ],
    [
      'width and height defaults over maxOutputPixels',
      {
        maxOutputPixels: 1_000_000,
        params: { width: { type: 'integer', default: 2000 }, height: { type: 'integer', default: 2000 } },
      },
      /defaults of `params\.width`.*1000000 pixels/,
    ],
  ]
  for (const [name, options, message] of cases) {
    it(`throws a TypeError at construction: ${name}`, () => {
      assert.throws(
        () => imageParams(options),
        (err: Error) => err instanceof TypeError && message.test(err.message),
      )
    })
  }

  it('takes side and dpr defaults within the output limits, and still judges what a request sends', () => {
    const options = {
      maxWidth: 1000,
      params: { width: { type: 'integer', min: 1, default: 500 }, dpr: { type: 'number', default: 2 } },
    } as const
    assert.deepEqual(values(options, ''), { width: 500, dpr: 2 })
    const err = refusal(options, 'dpr=3')
    assert.equal(err.status, 400)
    const items = JSON.parse(String(err.headers['x-ic-error-validation'])) as { message: string }[]
    assert.deepEqual(
      items.map((item) => item.message),
      ['"width" × "dpr" must be less than or equal to 1000'],
    )
  })

  it('takes number defaults whose text has an exponent', () => {
    assert.deepEqual(values({ params: { a: { type: 'number', min: 0, default: 1e-7 } } }, ''), { a: 1e-7 })
    assert.deepEqual(values({ params: { a: { type: 'number', default: 1e21 } } }, ''), { a: 1e21 })
  })

  it('applies the default of a parameter named like a member of Object.prototype', () => {
    for (const name of ['constructor', 'toString', 'hasOwnProperty', 'valueOf']) {
      assert.deepEqual(
        values({ params: { [name]: { type: 'integer', default: 7 } } }, ''),
        { [name]: 7 },
        name,
      )
      assert.deepEqual(values({ params: { [name]: { type: 'integer', default: 7 } } }, `${name}=3`), {
        [name]: 3,
      })
    }
  })

  it('drops g and y flags so a RegExp keeps no state between requests', () => {
    const guard = imageParams({ params: { a: { type: 'pattern', pattern: /^x+$/g } } })
    for (let i = 0; i < 3; i++) run(guard, '/img?a=xx')
  })
})

describe('imageParams: arbitrary queries', () => {
  it('never throws anything but a 400 or 401 IcError', () => {
    const guard = imageParams({
      imageParamsAllowed: [...'abcdefghijklmnopqrstuvwxyz'],
      params: { chs: { type: 'size' } },
    })
    const names = fc.constantFrom(
      'width',
      'height',
      'dpr',
      'quality',
      'crop',
      'pad_color',
      'chs',
      'width64',
      'crop64',
      'x',
    )
    const pair = fc
      .tuple(fc.oneof(names, fc.string()), fc.string({ unit: 'binary' }))
      .map(([n, v]) => `${n}=${v}`)
    fc.assert(
      fc.property(fc.array(fc.oneof(pair, fc.string({ unit: 'binary' })), { maxLength: 8 }), (parts) => {
        try {
          run(guard, `/img?${parts.join('&')}`)
        } catch (err) {
          assert.ok(isIcError(err) && (err.status === 400 || err.status === 401), String(err))
          JSON.parse(err.headers['x-ic-error-validation'] ?? '[]')
        }
      }),
      { numRuns: 3000 },
    )
  })
})

describe('imageParams: colorize and base64 text', () => {
  it('takes colorize as 3, 4, 6 or 8 hex digits or a colour name, nothing between', () => {
    for (const ok of ['fff', '%23ffff', 'a1b2c3', '%23a1b2c3d4', 'red'])
      assert.ok(values({}, `colorize=${ok}`), ok)
    for (const bad of ['12', '1234f', '%231234567', '12345678f'])
      assert.equal(refusal({}, `colorize=${bad}`).code, 'IS_VALIDATION_ERROR', bad)
  })

  it('refuses a byte-order mark in NAME64 as it does in NAME', () => {
    const bom = Buffer.from('\uFEFF5').toString('base64')
    assert.equal(refusal({}, `width64=${bom}`).code, 'IS_VALIDATION_ERROR')
    assert.equal(refusal({}, 'width=%EF%BB%BF5').code, 'IS_VALIDATION_ERROR')
    assert.deepEqual(values({}, `width64=${Buffer.from('5').toString('base64')}`), { width: 5 })
  })
})

describe('imageParams: numbers', () => {
  it('reads any digits, signs and dots as Number() does, within the range', () => {
    const rules = {
      w: compileRule('w', { type: 'integer', min: 1, max: 5000 }, 'params.w'),
      z: compileRule('z', { type: 'number', min: -2, max: 1e10 }, 'params.z'),
    }
    const text = fc.string({ unit: fc.constantFrom(...'0123456789+-.e '.split('')), maxLength: 14 })
    fc.assert(
      fc.property(text, (raw) => {
        for (const [name, rule] of Object.entries(rules)) {
          const value = rule.parse(raw)
          const integer = name === 'w'
          const number = Number(raw)
          const valid = raw !== '' && (integer ? /^[+-]?\d+$/ : /^[+-]?(?:\d+(?:\.\d*)?|\.\d+)$/).test(raw)
          const inRange = integer ? number >= 1 && number <= 5000 : number >= -2 && number <= 1e10
          // A negative zero is published as 0.
          if (valid && inRange) assert.equal(value, number === 0 ? 0 : number, `${name}=${raw}`)
          else assert.ok(value instanceof Failure, `${name}=${raw} gave ${String(value)}`)
        }
      }),
      { numRuns: 5000 },
    )
    assert.ok(Object.is(rules.z.parse('-0'), 0))
    assert.ok(Object.is(rules.z.parse('-0.0'), 0))
  })
})

for (const setup of querySetups) {
  describe(`imageParams on ${setup.name}`, () => {
    let app: RunningApp
    before(async () => {
      const echo = ({ req, locals }: { req: unknown; locals: Record<string, unknown> }) => ({
        body: JSON.stringify({ imageParams: locals.imageParams, query: (req as { query?: unknown }).query }),
      })
      app = await startApp(setup.framework, {
        settings: setup.settings,
        routes: [
          {
            path: '/chart',
            use: (a) => [
              a.imageParams({
                params: {
                  chs: { type: 'size', maxWidth: 999, maxHeight: 999, default: { width: 300, height: 200 } },
                },
              }),
            ],
            handle: ({ locals }) => {
              const chs = (locals.imageParams as { chs: { width: number; height: number } }).chs
              const seen = JSON.stringify(chs)
              // A handler scaling the size in place, for a retina output say.
              chs.width *= 10
              return { body: seen }
            },
          },
          { path: '/img', use: (a) => [a.imageParams({ maxWidth: 4000 })], handle: echo },
          {
            path: '/allowed',
            use: (a) => [a.imageParams({ imageParamsAllowed: ['width', 'quality', 'crop', 'tags'] })],
            handle: echo,
          },
          {
            path: '/allowed-rules',
            use: (a) => [
              a.requestRules({
                permissions: { hostsAllowed: ['images.example.com'] },
                imageParams: { imageParamsAllowed: ['width', 'tags'] },
              }),
            ],
            handle: echo,
          },
          {
            path: '/allowed-off',
            use: (a) => [
              a.requestRules({
                permissions: { allowDynamicOrigin: false },
                imageParams: { imageParamsAllowed: ['width'] },
              }),
            ],
            handle: echo,
          },
          { path: '/query', handle: echo },
        ],
      })
    })
    after(() => app.close())

    it("publishes a size's default afresh for each request: a handler changing it changes no later request", async () => {
      for (let i = 0; i < 3; i++) {
        const r = await request(app.url).get('/chart')
        assert.equal(r.status, 200)
        assert.equal(r.text, '{"width":300,"height":200}', `request ${i + 1}`)
      }
      assert.equal((await request(app.url).get('/chart?chs=20x10')).text, '{"width":20,"height":10}')
    })

    const items = (r: { headers: Record<string, string> }) =>
      (JSON.parse(r.headers['x-ic-error-validation'] ?? '[]') as { path: string[]; type: string }[]).map(
        (i) => `${i.path[0]}:${i.type}`,
      )

    it("refuses a rule's parameter sent with brackets, which qs reads as the parameter, even beside a plain one", async () => {
      const cases: [string, string[]][] = [
        ['width[]=99999', ['width:query.brackets']],
        ['width%5B%5D=99999', ['width:query.brackets']],
        ['[width]=99999', ['width:query.brackets']],
        ['width[0]=1&crop=fit', ['width:query.brackets']],
        [`width64[]=${Buffer.from('99999').toString('base64')}`, ['width:query.brackets']],
        ['width=10&width[]=99999', ['width:query.brackets']],
        ['width=abc&[quality]=0', ['width:number.base', 'quality:query.brackets']],
      ]
      for (const [query, expected] of cases) {
        for (const path of ['/img', '/allowed']) {
          const r = await request(app.url).get(`${path}?${query}`)
          assert.equal(r.status, 400, `${path}?${query}: ${r.text}`)
          assert.equal(r.headers['x-ic-error-code'], 'IS_VALIDATION_ERROR')
          if (path === '/img') assert.deepEqual(items(r), expected, query)
        }
      }
      if (setup.qs) {
        // What the handler would have read past the rules: the value under the plain name.
        const seen = JSON.parse((await request(app.url).get('/query?[width]=99999&quality[]=0')).text)
        assert.deepEqual(seen.query, { width: '99999', quality: ['0'] })
      }
    })

    it('refuses a name with brackets outside imageParamsAllowed as the parameter it stands for', async () => {
      const r = await request(app.url).get(
        '/allowed?width=1&sepia[]=1&[vignette]=2&sepia=3&vignette%5B0%5D=4',
      )
      assert.equal(r.status, 401, r.text)
      assert.equal(r.headers['x-ic-error-code'], 'IC_PARAM_NOT_ALLOWED')
      assert.deepEqual(items(r), ['sepia:any.unknown', 'vignette:any.unknown'])
    })

    it('serves plain names as before, and ignores brackets on a name without a rule', async () => {
      const plain = await request(app.url).get('/img?width=300&crop=fit&utm_source=x')
      assert.equal(plain.status, 200, plain.text)
      assert.deepEqual(JSON.parse(plain.text).imageParams, { width: 300, crop: 'fit' })
      const tagged = await request(app.url).get('/img?width=3&tags[]=a&ids[0]=1')
      assert.deepEqual([tagged.status, JSON.parse(tagged.text).imageParams], [200, { width: 3 }])
      assert.equal((await request(app.url).get('/allowed?width=1&tags=a')).status, 200)
    })

    it('lets a name with brackets through imageParamsAllowed when its parameter is allowed or exempt without a rule', async () => {
      // `tags` is allowed and has no rule: `tags[]` passes, as `tags` does (qs hands the handler `tags`).
      for (const query of ['tags[]=a', '[tags]=a', 'tags%5B%5D=a', 'origin[]=x', 'hostname[0]=y']) {
        const r = await request(app.url).get(`/allowed?width=1&${query}`)
        assert.equal(r.status, 200, `${query}: ${r.text}`)
      }
      if (setup.qs)
        assert.deepEqual(JSON.parse((await request(app.url).get('/query?tags[]=a')).text).query, {
          tags: ['a'],
        })
      // The source parameters' brackets are the permission rules' to judge: 400 query.brackets, or their 401.
      const cases: [string, number, string[]][] = [
        ['/allowed-rules?width=1&origin[]=http://images.example.com/', 400, ['origin:query.brackets']],
        [
          '/allowed-rules?hostname[]=images.example.com&width=abc',
          400,
          ['hostname:query.brackets', 'width:number.base'],
        ],
        ['/allowed-rules?width=1&hostname[]=%ZZ', 400, ['hostname[]:query.encoding']],
        ['/allowed-rules?width=1&tags[]=a&sepia[]=1', 401, ['sepia:any.unknown']],
        ['/allowed-off?width=1&origin[]=http://169.254.169.254/', 401, ['origin:any.unknown']],
        ['/allowed-off?width=1&hostname[]=%ZZ', 401, ['hostname:any.unknown']],
      ]
      for (const [url, status, expected] of cases) {
        const r = await request(app.url).get(url)
        assert.equal(r.status, status, `${url}: ${r.text}`)
        assert.deepEqual(items(r), expected, url)
        if (status === 401 && url.startsWith('/allowed-off'))
          assert.equal(r.headers['x-ic-error-code'], 'IC_DYNAMIC_ORIGIN_DISABLED', url)
      }
      assert.equal((await request(app.url).get('/allowed-rules?width=1&tags[]=a')).status, 200)
    })
  })
}
