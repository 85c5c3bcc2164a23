import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import fc from 'fast-check'
import {
  encodeValidationHeader,
  headerSafeText,
  sanitizeHeaders,
  toValidationItem,
} from './validation-header.ts'

const HEADER_SAFE = /^[\x20-\x7e]*$/

describe('encodeValidationHeader(items, maxBytes)', () => {
  it('writes the Image-Charts shape: a JSON array of objects with message', () => {
    const value = encodeValidationHeader([
      { message: '"chs" is required', path: ['chs'], type: 'any.required' },
    ])
    assert.deepEqual(JSON.parse(value), [
      { message: '"chs" is required', path: ['chs'], type: 'any.required' },
    ])
  })

  it('escapes CR, LF, control and non-Latin-1 characters instead of dropping them', () => {
    const message = 'a\r\nb\u0000c\u007fé日本😀'
    const value = encodeValidationHeader([{ message }])
    assert.match(value, HEADER_SAFE)
    assert.equal(JSON.parse(value)[0].message, message)
  })

  it('shortens a 10 KB message with an ellipsis and stays under the cap', () => {
    const value = encodeValidationHeader([{ message: 'é'.repeat(10_000) }], 1024)
    assert.ok(value.length <= 1024)
    const [item] = JSON.parse(value)
    assert.ok(item.message.endsWith('…'))
    assert.ok(item.message.length > 10)
  })

  it('keeps naming the parameter of an item whose name alone is too long: its path is shortened, not dropped', () => {
    const name = 'a'.repeat(5000)
    const [item] = JSON.parse(
      encodeValidationHeader([{ message: `"${name}" is not allowed`, path: [name, 2], type: 'any.unknown' }]),
    )
    assert.deepEqual(item.path, [`${'a'.repeat(64)}…`, 2])
    assert.equal(item.type, 'any.unknown')
    assert.ok(item.message.startsWith('"aaa') && item.message.endsWith('…'))
    const [emoji] = JSON.parse(
      encodeValidationHeader([{ message: 'x', path: ['a'.repeat(63) + '😀'.repeat(2000)] }]),
    )
    assert.equal(emoji.path[0], emoji.path[0].toWellFormed())
  })

  it('keeps the parameter named under a small cap, escaped names included', () => {
    for (const name of ['ж'.repeat(30), 'a'.repeat(300)]) {
      const value = encodeValidationHeader(
        [{ message: `"${name}" is not allowed`, path: [name, 12], type: 'any.unknown.parameter' }],
        256,
      )
      assert.ok(value.length <= 256, value)
      const [item] = JSON.parse(value)
      assert.ok(item.path[0].startsWith(name.slice(0, 8)) && item.path[0].endsWith('…'), value)
      assert.equal(item.path[1], 12)
    }
  })

  it('never splits a surrogate pair when shortening', () => {
    const value = encodeValidationHeader([{ message: '😀'.repeat(3000) }], 512)
    const [item] = JSON.parse(value)
    assert.equal(item.message, item.message.toWellFormed())
  })

  it('replaces the items that do not fit by a count', () => {
    const items = Array.from({ length: 500 }, (_, i) => ({ message: `parameter ${i} is wrong` }))
    const parsed = JSON.parse(encodeValidationHeader(items, 600))
    assert.match(parsed.at(-1).message, /^\d+ more validation errors left out$/)
    const shown = parsed.length - 1
    assert.equal(Number(parsed.at(-1).message.split(' ')[0]), 500 - shown)
  })

  it('ignores members other than message, path and type, and non-scalar path parts', () => {
    const value = encodeValidationHeader([
      { message: 'x', path: ['a', 1, { evil: true } as never], type: 't', context: { secret: 1 } } as never,
    ])
    assert.deepEqual(JSON.parse(value), [{ message: 'x', path: ['a', 1], type: 't' }])
  })

  it('is always valid, header-safe JSON under the cap, whatever the items (property)', () => {
    fc.assert(
      fc.property(
        fc.array(fc.record({ message: fc.string({ unit: 'binary', maxLength: 3000 }) }), { maxLength: 60 }),
        fc.integer({ min: 256, max: 8192 }),
        (items, cap) => {
          const value = encodeValidationHeader(items, cap)
          assert.ok(value.length <= cap, `${value.length} > ${cap}`)
          assert.match(value, HEADER_SAFE)
          const parsed = JSON.parse(value)
          assert.ok(Array.isArray(parsed))
          for (const item of parsed) assert.equal(typeof item.message, 'string')
          if (items.length > 0) assert.ok(parsed.length > 0)
        },
      ),
      { numRuns: 300 },
    )
  })
})

describe('headerSafeText(text, maxBytes)', () => {
  it('percent-encodes everything outside printable ASCII, and % itself', () => {
    assert.equal(headerSafeText('café 100%\r\nSet-Cookie: x'), 'caf%C3%A9 100%25%0D%0ASet-Cookie: x')
  })

  it('cuts long text without leaving half an escape', () => {
    const out = headerSafeText('é'.repeat(100), 10)
    assert.ok(out.length <= 10)
    assert.match(out, /^(%[0-9A-F]{2})*$/)
  })

  it('is header-safe for any input (property)', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary' }), (text) => {
        assert.match(headerSafeText(text), HEADER_SAFE)
      }),
    )
  })

  it('cuts between whole characters, so the result still decodes to a prefix of the text (property)', () => {
    assert.equal(headerSafeText('aé', 4), 'a')
    assert.equal(headerSafeText('a😀b', 10), 'a')
    assert.equal(headerSafeText('a😀b', 13), 'a%F0%9F%98%80')
    fc.assert(
      fc.property(fc.string({ unit: 'binary', maxLength: 40 }), fc.nat(80), (text, maxBytes) => {
        const out = headerSafeText(text, maxBytes)
        assert.ok(out.length <= maxBytes)
        assert.ok(text.toWellFormed().startsWith(decodeURIComponent(out)), out)
      }),
      { numRuns: 2000 },
    )
  })
})

describe('sanitizeHeaders(headers, own)', () => {
  it('keeps a field given as an array of safe values as one line joined with a comma, and drops one with a bad part', () => {
    assert.deepEqual(sanitizeHeaders({ 'WWW-Authenticate': ['Basic realm="img"', 'Bearer'] }, false), {
      'www-authenticate': 'Basic realm="img", Bearer',
    })
    assert.deepEqual(sanitizeHeaders({ 'x-ids': [1, 'b'] }, true), { 'x-ids': '1, b' })
    // Each part is checked as a single value would be: one bad part drops the field.
    for (const parts of [
      ['Basic', 'Bearer\r\nSet-Cookie: a=b'],
      ['Basic', null],
      ['Basic', ['Bearer']],
      [],
    ]) {
      assert.deepEqual(sanitizeHeaders({ 'www-authenticate': parts }, false), {}, JSON.stringify(parts))
    }
    assert.deepEqual(sanitizeHeaders({ 'x-long': ['a'.repeat(600), 'b'.repeat(600)] }, false), {})
    assert.deepEqual(sanitizeHeaders({ 'Retry-After': ['7', '8'] }, false), {})
  })
  it('drops from a foreign error what described another response or its connection, Content-Range but on a 416', () => {
    const upstream = {
      'Cache-Control': 'public, max-age=31536000',
      'Content-Encoding': 'gzip',
      'Content-Range': 'bytes */1000',
      ETag: '"a"',
      Vary: 'accept-encoding',
      'Keep-Alive': 'timeout=5',
      Date: 'Thu, 01 Jan 2015 00:00:00 GMT',
      'Proxy-Authenticate': 'Basic',
      'Access-Control-Allow-Origin': '*',
      'Surrogate-Key': 'img-1',
      'Retry-After': '7',
      'WWW-Authenticate': 'Bearer',
      Allow: 'GET',
      Location: '/login',
    }
    const kept = { 'retry-after': '7', 'www-authenticate': 'Bearer', allow: 'GET', location: '/login' }
    assert.deepEqual(sanitizeHeaders(upstream, false, 404), kept)
    assert.deepEqual(sanitizeHeaders(upstream, false, 416), { ...kept, 'content-range': 'bytes */1000' })
    // An error of this package keeps what it was given.
    assert.equal(sanitizeHeaders(upstream, true)['cache-control'], 'public, max-age=31536000')
  })
})

describe('toValidationItem(item)', () => {
  it('turns a message that refuses to become a string into an empty one, not a TypeError', () => {
    assert.deepEqual(toValidationItem({ message: Object.create(null) }), { message: '' })
    assert.deepEqual(
      toValidationItem({
        message: {
          toString() {
            throw new Error('no')
          },
        },
      }),
      { message: '' },
    )
    assert.deepEqual(toValidationItem('plain'), { message: 'plain' })
  })
})
