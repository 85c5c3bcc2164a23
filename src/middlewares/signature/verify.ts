import { createHmac, timingSafeEqual } from 'node:crypto'
import { decodeBase64Value } from '../../query.ts'

const HEX_SIGNATURE = /^[0-9a-f]{64}$/

function decodeComponent(text: string): string | undefined {
  const spaced = text.includes('+') ? text.replaceAll('+', ' ') : text
  if (!spaced.includes('%')) return spaced
  try {
    return decodeURIComponent(spaced)
  } catch {
    return undefined
  }
}

/** The two strings a signature may cover, and the signature the query carries. */
export interface SignedParts {
  /** The raw query without its `ichm` pair(s). */
  readonly raw: string
  /** The same, every name and value percent-decoded; `undefined` when decoding fails or changes nothing. */
  readonly decoded: string | undefined
  /** The `ichm` value as sent (percent-decoded); `undefined` when there is none. */
  readonly signature: string | undefined
}

/** Splits a raw query string (no `?`) into what was signed and the `ichm` it carries. */
export function signedParts(search: string): SignedParts {
  let raw = ''
  let decoded: string | undefined = ''
  let signature: string | undefined
  let changed = false
  let start = 0
  const length = search.length
  while (start <= length) {
    let end = search.indexOf('&', start)
    if (end === -1) end = length
    if (end > start) {
      const part = search.slice(start, end)
      const eq = part.indexOf('=')
      const name = decodeComponent(eq === -1 ? part : part.slice(0, eq))
      if (name === 'ichm' || name === 'ichm64') {
        const value = decodeComponent(eq === -1 ? '' : part.slice(eq + 1)) ?? ''
        signature ??= name === 'ichm' ? value : (decodeBase64Value(value) ?? '')
      } else {
        raw = raw === '' ? part : `${raw}&${part}`
        if (decoded !== undefined) {
          const value = eq === -1 ? undefined : decodeComponent(part.slice(eq + 1))
          if (name === undefined || (eq !== -1 && value === undefined)) {
            decoded = undefined
          } else {
            const pair = value === undefined ? name : `${name}=${value}`
            if (pair !== part) changed = true
            decoded = decoded === '' ? pair : `${decoded}&${pair}`
          }
        }
      }
    }
    start = end + 1
  }
  return { raw, decoded: changed ? decoded : undefined, signature }
}

/**
 * Lower-case hex HMAC-SHA256 of `text` under `secret`: Image-Charts' `ichm`.
 *
 * @example
 * hmacHex('cht=p&chd=t%3A1%2C2%2C3&chs=100x100&icac=test_fixture', 'plop')
 * // '71bd93758b49ed28fdabd23a0ff366fe7bf877296ea888b9aaf4ede7978bdc8d'
 */
export function hmacHex(text: string, secret: string): string {
  return createHmac('sha256', secret).update(text).digest('hex')
}

/**
 * Whether `signature` (hex) is the HMAC-SHA256 of `raw` or `decoded` under one of `secrets`.
 * Compared in constant time on the 32 digest bytes.
 */
export function matchesAny(parts: SignedParts, secrets: readonly string[]): boolean {
  const { signature } = parts
  if (signature === undefined || !HEX_SIGNATURE.test(signature)) return false
  const expected = Buffer.from(signature, 'hex')
  for (const secret of secrets) {
    if (timingSafeEqual(createHmac('sha256', secret).update(parts.raw).digest(), expected)) return true
    if (
      parts.decoded !== undefined &&
      timingSafeEqual(createHmac('sha256', secret).update(parts.decoded).digest(), expected)
    )
      return true
  }
  return false
}

/**
 * Signs a query string the way Image-Charts' clients do: appends
 * `ichm=<lower-case hex HMAC-SHA256 of the query>`. A string is signed as given (percent-
 * encoded or not); a `URLSearchParams` or a record is encoded first (`URLSearchParams` form).
 * Add `icac` to the query before signing.
 *
 * @example
 * signQuery({ cht: 'p', chd: 't:1,2,3', chs: '100x100', icac: 'test_fixture' }, 'plop')
 * // 'cht=p&chd=t%3A1%2C2%2C3&chs=100x100&icac=test_fixture&ichm=71bd9375…dc8d'
 */
export function signQuery(
  query: string | URLSearchParams | Readonly<Record<string, string>>,
  secret: string,
): string {
  if (typeof secret !== 'string' || secret === '')
    throw new TypeError('Expected `secret` to be a non-empty string')
  const text =
    typeof query === 'string'
      ? query.startsWith('?')
        ? query.slice(1)
        : query
      : (query instanceof URLSearchParams
          ? query
          : new URLSearchParams(query as Record<string, string>)
        ).toString()
  return `${text}${text === '' ? '' : '&'}ichm=${hmacHex(text, secret)}`
}

/**
 * Verifies an Image-Charts signed query string: `ichm` (anywhere in the query) must be the
 * HMAC-SHA256 of the rest of the query, raw or percent-decoded, under one of `secrets`
 * (several while a secret is being rotated). Constant-time comparison.
 *
 * @example
 * verifySignature('cht=p&chd=t%3A1%2C2%2C3&chs=100x100&icac=test_fixture&ichm=71bd93758b49ed28fdabd23a0ff366fe7bf877296ea888b9aaf4ede7978bdc8d', 'plop') // true
 */
export function verifySignature(query: string, secrets: string | readonly string[]): boolean {
  if (typeof query !== 'string') return false
  const list = typeof secrets === 'string' ? [secrets] : secrets
  for (const secret of list) {
    if (typeof secret !== 'string' || secret === '')
      throw new TypeError('Expected `secrets` to be non-empty strings')
  }
  const search = query.startsWith('?') ? query.slice(1) : query
  return matchesAny(signedParts(search), list)
}
