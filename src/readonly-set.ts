import { type InspectOptions, inspect } from 'node:util'

/**
 * What the set methods (`union`, `isSubsetOf`, …) take: a `Set`, a `Map` or anything with
 * `size`, `has` and `keys`.
 *
 * @example
 * const admins: SetLike<string> = new Set(['admin'])
 */
export interface SetLike<U> {
  readonly size: number
  has(value: U): boolean
  keys(): Iterator<U>
}

function* membersOf<U>(other: SetLike<U>): Generator<U> {
  const iterator = other.keys()
  for (let step = iterator.next(); step.done !== true; step = iterator.next()) yield step.value
}

/**
 * A read-only view of a `Set`, for values the package publishes and keeps using: a handler
 * that could `add()` to a published `Set` would change what later requests are granted.
 *
 * @example
 * const scopes: ReadonlySet<string> = new ReadonlySetView(new Set(['images:read']))
 * scopes.has('images:read') // true
 */
export class ReadonlySetView<T> implements ReadonlySet<T> {
  readonly #set: Set<T>

  constructor(set: Set<T>) {
    this.#set = set
  }

  get size(): number {
    return this.#set.size
  }

  has(value: T): boolean {
    return this.#set.has(value)
  }

  forEach(callback: (value: T, again: T, set: ReadonlySet<T>) => void, thisArg?: unknown): void {
    for (const value of this.#set) callback.call(thisArg, value, value, this)
  }

  // Typed by the lib's own ReadonlySet: IterableIterator before TypeScript 5.6, SetIterator after.
  keys(): ReturnType<ReadonlySet<T>['keys']> {
    return this.#set.keys()
  }

  values(): ReturnType<ReadonlySet<T>['values']> {
    return this.#set.values()
  }

  entries(): ReturnType<ReadonlySet<T>['entries']> {
    return this.#set.entries()
  }

  [Symbol.iterator](): ReturnType<ReadonlySet<T>['values']> {
    return this.#set.values()
  }

  // The ES2025 set methods, written out: ReadonlySet has them in newer TypeScript libs, and
  // Node 20's Set does not.
  union<U>(other: SetLike<U>): Set<T | U> {
    const out = new Set<T | U>(this.#set)
    for (const value of membersOf(other)) out.add(value)
    return out
  }

  intersection<U>(other: SetLike<U>): Set<T & U> {
    const out = new Set<T & U>()
    for (const value of this.#set) if (other.has(value as unknown as U)) out.add(value as T & U)
    return out
  }

  difference<U>(other: SetLike<U>): Set<T> {
    const out = new Set<T>()
    for (const value of this.#set) if (!other.has(value as unknown as U)) out.add(value)
    return out
  }

  symmetricDifference<U>(other: SetLike<U>): Set<T | U> {
    const out = new Set<T | U>(this.#set)
    for (const value of membersOf(other)) {
      if (this.#set.has(value as unknown as T)) out.delete(value)
      else out.add(value)
    }
    return out
  }

  isSubsetOf(other: SetLike<unknown>): boolean {
    for (const value of this.#set) if (!other.has(value)) return false
    return true
  }

  isSupersetOf(other: SetLike<unknown>): boolean {
    for (const value of membersOf(other)) if (!this.#set.has(value as T)) return false
    return true
  }

  isDisjointFrom(other: SetLike<unknown>): boolean {
    for (const value of this.#set) if (other.has(value)) return false
    return true
  }

  /** JSON shows the members, as an array. */
  toJSON(): T[] {
    return [...this.#set]
  }

  [inspect.custom](_depth: number, options: InspectOptions, show: typeof inspect): string {
    return `ReadonlySetView ${show(this.#set, options).replace(/^Set\(\d+\) /, '')}`
  }

  get [Symbol.toStringTag](): string {
    return 'ReadonlySetView'
  }
}
