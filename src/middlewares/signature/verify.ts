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

/**
 * What a signature may cover, and the signature the query carries.
 *
 * @example
 * const parts: SignedParts = signedParts('a=1&ichm=ab') // { raw: 'a=1', signature: 'ab' }
 */
export interface SignedParts {
  /** The raw query without its `ichm` pair(s). */
  readonly raw: string
  /** The `ichm` value as sent (percent-decoded); `undefined` when there is none. */
  readonly signature: string | undefined
}

/** Whether the pair at `[start, end)` of `search` is named `ichm` or `ichm64` (percent-encoded or not). */
function signatureName(search: string, start: number, end: number): 'ichm' | 'ichm64' | undefined {
  let eq = search.indexOf('=', start)
  if (eq === -1 || eq > end) eq = end
  const length = eq - start
  if (length === 4 && search.startsWith('ichm', start)) return 'ichm'
  if (length === 6 && search.startsWith('ichm64', start)) return 'ichm64'
  if (length < 4) return undefined
  const name = search.slice(start, eq)
  if (!name.includes('%') && !name.includes('+')) return undefined
  const decoded = decodeComponent(name)
  return decoded === 'ichm' || decoded === 'ichm64' ? decoded : undefined
}

/**
 * Splits a raw query string (no `?`) into what was signed (the query without its `ichm`
 * pairs, every other byte as sent) and the `ichm` it carries.
 *
 * @example
 * signedParts('ichm=ab&cht=p&chs=1x1') // { raw: 'cht=p&chs=1x1', signature: 'ab' }
 */
export function signedParts(search: string): SignedParts {
  let signature: string | undefined
  let raw: string | undefined
  let kept = 0
  let start = 0
  const length = search.length
  while (start <= length) {
    let end = search.indexOf('&', start)
    if (end === -1) end = length
    const name = end > start ? signatureName(search, start, end) : undefined
    if (name !== undefined) {
      const eq = search.indexOf('=', start)
      const value = eq === -1 || eq > end ? '' : (decodeComponent(search.slice(eq + 1, end)) ?? '')
      signature ??= name === 'ichm' ? value : (decodeBase64Value(value) ?? '')
      // Drop the pair and one of the `&` around it.
      const piece = search.slice(kept, start === 0 ? 0 : start - 1)
      raw = raw === undefined ? piece : `${raw}${piece}`
      kept = start === 0 ? Math.min(end + 1, length) : end
    }
    start = end + 1
  }
  if (raw === undefined) return { raw: search, signature }
  raw += search.slice(kept)
  if (raw.startsWith('&')) raw = raw.slice(1)
  return { raw, signature }
}

/**
 * The signed string percent-decoded pair by pair (`+` is a space), as Image-Charts accepts
 * it; `undefined` when decoding fails or changes nothing.
 *
 * @example
 * decodedForm('chd=t%3A1%2C2&chtt=a+b') // 'chd=t:1,2&chtt=a b'
 */
export function decodedForm(raw: string): string | undefined {
  if (!raw.includes('%') && !raw.includes('+')) return undefined
  let out = ''
  for (const part of raw.split('&')) {
    const eq = part.indexOf('=')
    const name = decodeComponent(eq === -1 ? part : part.slice(0, eq))
    const value = eq === -1 ? undefined : decodeComponent(part.slice(eq + 1))
    if (name === undefined || (eq !== -1 && value === undefined)) return undefined
    const pair = value === undefined ? name : `${name}=${value}`
    out = out === '' ? pair : `${out}&${pair}`
  }
  return out === raw ? undefined : out
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
 * Whether `signature` (hex) is the HMAC-SHA256 of the raw or decoded signed string under one
 * of `secrets`. Compared in constant time on the 32 digest bytes.
 *
 * @example
 * matchesAny(signedParts(search), ['current', 'previous'])
 */
export function matchesAny(parts: SignedParts, secrets: readonly string[]): boolean {
  const { signature } = parts
  if (signature === undefined || !HEX_SIGNATURE.test(signature)) return false
  const expected = Buffer.from(signature, 'hex')
  for (const secret of secrets) {
    if (timingSafeEqual(createHmac('sha256', secret).update(parts.raw).digest(), expected)) return true
  }
  // Only when the raw form fails: most clients sign what they send.
  const decoded = decodedForm(parts.raw)
  if (decoded === undefined) return false
  for (const secret of secrets) {
    if (timingSafeEqual(createHmac('sha256', secret).update(decoded).digest(), expected)) return true
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
