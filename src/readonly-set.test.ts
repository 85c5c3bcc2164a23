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

  it('has the set methods of newer TypeScript libs, with a Set, a Map or another view as the other set', () => {
    const view = new ReadonlySetView(new Set(['a', 'b', 'c']))
    const other = new Set(['b', 'c', 'd'])
    assert.deepEqual([...view.union(other)], ['a', 'b', 'c', 'd'])
    assert.deepEqual([...view.intersection(other)], ['b', 'c'])
    assert.deepEqual([...view.difference(other)], ['a'])
    assert.deepEqual([...view.symmetricDifference(other)], ['a', 'd'])
    assert.equal(view.isSubsetOf(new Set(['a', 'b', 'c', 'z'])), true)
    assert.equal(view.isSubsetOf(other), false)
    assert.equal(view.isSupersetOf(new Map([['a', 1]])), true)
    assert.equal(view.isSupersetOf(other), false)
    assert.equal(view.isDisjointFrom(new ReadonlySetView(new Set(['x']))), true)
    assert.equal(view.isDisjointFrom(other), false)
    // Each answer is a new Set: the view itself never changes.
    view.union(other).add('e')
    assert.deepEqual([...view], ['a', 'b', 'c'])
  })
})
