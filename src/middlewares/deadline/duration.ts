import ms from 'ms'

/**
 * A duration: milliseconds as a number, or an `ms` string such as `'8s'` or `'1.5m'`.
 *
 * @example
 * const timeout: Duration = '8s'
 */
export type Duration = number | string

/**
 * Turns a {@link Duration} option into milliseconds, or throws a `TypeError` naming the option.
 *
 * @example
 * toMilliseconds('8s', 'timeoutMs') // 8000
 * toMilliseconds(-1, 'timeoutMs') // TypeError: Expected `timeoutMs` to be a positive duration …
 */
export function toMilliseconds(value: unknown, name: string, { allowZero = false } = {}): number {
  const parsed = typeof value === 'string' && value.trim() !== '' ? ms(value as ms.StringValue) : value
  if (
    typeof parsed !== 'number' ||
    !Number.isFinite(parsed) ||
    parsed < 0 ||
    (!allowZero && parsed === 0) ||
    parsed > 2_147_483_647
  ) {
    throw new TypeError(
      `Expected \`${name}\` to be a ${allowZero ? 'non-negative' : 'positive'} duration in milliseconds or an \`ms\` string like '8s' (at most 24.8 days), got ${JSON.stringify(value)}`,
    )
  }
  return parsed
}
