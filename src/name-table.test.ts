import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import fc from 'fast-check'
import { NameTable } from './name-table.ts'

describe('NameTable', () => {
  it('answers as a Map of the same entries, for any names and lookups', () => {
    const name = fc.oneof(
      fc.constantFrom(
        'width',
        'height',
        'w',
        'x',
        '',
        'é',
        '\u{1F600}',
        'p1',
        'p2',
        '__proto__',
        'constructor',
      ),
      fc.string({ maxLength: 12 }),
    )
    fc.assert(
      fc.property(
        fc.array(fc.tuple(name, fc.oneof(fc.integer(), fc.constant(null))), { maxLength: 60 }),
        fc.array(name, { maxLength: 30 }),
        (entries, lookups) => {
          const map = new Map(entries)
          const table = new NameTable(entries)
          assert.equal(table.size, map.size)
          for (const key of [...map.keys(), ...lookups]) {
            assert.equal(table.get(key), map.get(key), JSON.stringify(key))
            assert.equal(table.has(key), map.has(key), JSON.stringify(key))
          }
        },
      ),
      { numRuns: 2000 },
    )
  })

  it('holds thousands of similar names', () => {
    const names = Array.from({ length: 5000 }, (_, i) => `param${i}`)
    const table = new NameTable(names.map((n, i) => [n, i]))
    for (const [i, n] of names.entries()) assert.equal(table.get(n), i)
    assert.equal(table.get('param5000'), undefined)
    assert.equal(table.get('param'), undefined)
  })
})
