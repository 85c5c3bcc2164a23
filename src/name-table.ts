/**
 * A read-only map from parameter names to values, for the names a rule is configured with
 * (tens, sometimes thousands). A lookup hashes the name in JavaScript (FNV-1a) and compares
 * with open addressing, instead of a `Map`: every name sliced from a URL is a fresh string,
 * and V8 computes the hash a `Map` needs through a runtime call, once per string.
 *
 * @example
 * const table = new NameTable([['width', 1], ['height', 2]])
 * table.get('height') // 2
 * table.get('depth') // undefined
 */
export class NameTable<V> {
  readonly size: number
  readonly #keys: (string | undefined)[]
  readonly #values: V[]
  readonly #mask: number

  /** Later entries replace earlier ones with the same name. */
  constructor(entries: Iterable<readonly [string, V]>) {
    const unique = new Map(entries)
    let capacity = 8
    while (capacity < unique.size * 2) capacity *= 2
    this.#keys = new Array<string | undefined>(capacity).fill(undefined)
    this.#values = new Array<V>(capacity)
    this.#mask = capacity - 1
    for (const [key, value] of unique) {
      let i = hashName(key) & this.#mask
      while (this.#keys[i] !== undefined) i = (i + 1) & this.#mask
      this.#keys[i] = key
      this.#values[i] = value
    }
    this.size = unique.size
  }

  get(name: string): V | undefined {
    const keys = this.#keys
    const mask = this.#mask
    const { length } = name
    let i = hashName(name) & mask
    for (;;) {
      const key = keys[i]
      if (key === undefined) return undefined
      if (key.length === length && key === name) return this.#values[i]
      i = (i + 1) & mask
    }
  }

  /** Whether `name` is a key (its value must not be `undefined`, which reads as absent). */
  has(name: string): boolean {
    return this.get(name) !== undefined
  }
}

/** 32-bit FNV-1a of the UTF-16 code units. */
function hashName(name: string): number {
  let hash = 0x811c9dc5
  for (let i = 0; i < name.length; i++) hash = Math.imul(hash ^ name.charCodeAt(i), 0x01000193)
  return hash >>> 0
}
