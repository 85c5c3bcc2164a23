import { type InspectOptions, inspect } from 'node:util'

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

  keys(): IterableIterator<T> {
    return this.#set.keys()
  }

  values(): IterableIterator<T> {
    return this.#set.values()
  }

  entries(): IterableIterator<[T, T]> {
    return this.#set.entries()
  }

  [Symbol.iterator](): IterableIterator<T> {
    return this.#set.values()
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
