import ms from 'ms'

/**
 * A duration option: milliseconds as a number, or an `ms` string such as `'8s'` or `'1.5m'`.
 *
 * @example
 * const timeoutMs: Duration = '8s'
 */
export type Duration = number | string

/**
 * Reads a duration option: a number of milliseconds or an `ms` string (`'10s'`, `'1m'`).
 * Throws a TypeError naming the option when the value is not a finite duration in range.
 *
 * @example
 * durationMs('windowMs', '10s') // 10000
 */
export function durationMs(name: string, value: unknown, { min = 1, max = 2 ** 31 - 1 } = {}): number {
  // ms() throws on an empty string: that must be the same TypeError as any other bad value.
  const parsed =
    typeof value === 'string' ? (value.trim() === '' ? Number.NaN : ms(value as ms.StringValue)) : value
  if (typeof parsed !== 'number' || !Number.isFinite(parsed) || parsed < min || parsed > max) {
    throw new TypeError(
      `Expected \`${name}\` to be a duration of ${min} ms to ${max} ms (a number of milliseconds or an ms string such as '10s'), got ${JSON.stringify(value)}`,
    )
  }
  return Math.round(parsed)
}

/**
 * Reads a numeric option; throws a TypeError naming it when it is out of range.
 *
 * @example
 * numberOption('limit', 90, { min: 0, integer: true }) // 90
 */
export function numberOption(
  name: string,
  value: unknown,
  { min = 0, max = Number.MAX_SAFE_INTEGER, integer = false, exclusiveMin = false } = {},
): number {
  if (
    typeof value !== 'number' ||
    !Number.isFinite(value) ||
    (exclusiveMin ? value <= min : value < min) ||
    value > max ||
    (integer && !Number.isInteger(value))
  ) {
    const kind = integer ? 'an integer' : 'a number'
    const range = exclusiveMin ? `greater than ${min}` : `from ${min}`
    throw new TypeError(`Expected \`${name}\` to be ${kind} ${range} to ${max}, got ${JSON.stringify(value)}`)
  }
  return value
}

/**
 * Throws a TypeError naming the option unless the value is a function (or undefined when optional).
 *
 * @example
 * functionOption('cost', options.cost) // the function, or undefined
 */
export function functionOption<T>(name: string, value: T | undefined): T | undefined {
  if (value !== undefined && typeof value !== 'function') {
    throw new TypeError(`Expected \`${name}\` to be a function, got ${typeof value}`)
  }
  return value
}
