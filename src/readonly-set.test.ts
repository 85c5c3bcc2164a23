import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { inspect } from 'node:util'
import { ReadonlySetView } from './readonly-set.ts'

describe('ReadonlySetView', () => {
  it('reads like the set it wraps and offers nothing that writes', () => {
    const set = new Set(['a', 'b'])
    const view = new ReadonlySetView(set)
    assert.equal(view.size, 2)
    assert.equal(view.has('a'), true)
    assert.equal(view.has('c'), false)
    assert.deepEqual([...view], ['a', 'b'])
    assert.deepEqual([...view.keys()], ['a', 'b'])
    assert.deepEqual([...view.values()], ['a', 'b'])
    assert.deepEqual(
      [...view.entries()],
      [
        ['a', 'a'],
        ['b', 'b'],
      ],
    )
    const seen: string[] = []
    view.forEach(
      function (this: { tag: string }, value, again, owner) {
        assert.equal(value, again)
        assert.equal(owner, view)
        seen.push(`${this.tag}${value}`)
      },
      { tag: '>' },
    )
    assert.deepEqual(seen, ['>a', '>b'])
    assert.equal(JSON.stringify(view), '["a","b"]')
    assert.equal(inspect(view), "ReadonlySetView { 'a', 'b' }")
    assert.equal(Object.prototype.toString.call(view), '[object ReadonlySetView]')
    for (const method of ['add', 'delete', 'clear']) assert.equal((view as never)[method], undefined)
  })
})
