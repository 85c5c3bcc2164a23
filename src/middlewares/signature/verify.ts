import { createHash, createHmac, hash } from 'node:crypto'
import { decodeComponent, type ParsedQuery, parseQueryString, rootName } from '../../query.ts'

/**
 * The parameters of a signature, as sent: a problem with one of them refuses the request.
 *
 * @example
 * SIGNING_PARAMS.has('ichm64') // true
 */
export const SIGNING_PARAMS: ReadonlySet<string> = new Set(['icac', 'ichm', 'icac64', 'ichm64'])

/**
 * The first name of the query that holds brackets and stands for a signing parameter
 * (`icac[]`, `[ichm]`): `qs` reads `icac[]=a&icac=b` as an `icac` of two values, which the
 * plain names do not show. Internal.
 *
 * @example
 * bracketedSigningName(parseQueryString('icac[]=a&icac=b')) // 'icac[]'
 */
export function bracketedSigningName(parsed: ParsedQuery): string | undefined {
  if (!parsed.brackets) return undefined
  for (const name of parsed.values.names)
    if (name !== rootName(name) && SIGNING_PARAMS.has(rootName(name))) return name
  return undefined
}

// A decoded name holding one of these, or a decoded value holding one of the last three, reads
// differently once decoded than in the request: `a=x%26y%3D1` would stand for `a=x&y=1`. So
// does a decoded value holding `]=`, under `qs` (Express 4, Express 5's `extended`), which
// splits a pair at its first `]=`: it reads the signed `a=v]=w` as `a=v]` = `w`, and the sent
// `a=v]%3Dw` as `a` = `v]=w`.
const AMBIGUOUS_IN_NAME = /[&=%+]/
const AMBIGUOUS_IN_VALUE = /[&%+]|\]=/

/**
 * The signed string percent-decoded pair by pair (`+` is a space), as Image-Charts accepts
 * it; `undefined` when decoding fails or changes nothing, and when the decoded text is
 * ambiguous: a decoded name holding `&`, `=`, `%` or `+`, or a decoded value holding `&`,
 * `%`, `+` or `]=` (where `qs` splits a pair). Those would let one signature stand for several queries — `chtt=a%26b%3D1`
 * verifying as the signed `chtt=a&b=1` with `b` gone, or `a%2526b` as the signed `a%26b` —
 * so such a query must be signed as sent.
 *
 * @example
 * decodedForm('chd=t%3A1%2C2&chtt=a+b') // 'chd=t:1,2&chtt=a b'
 * decodedForm('chtt=a%26b') // undefined: sign it as sent
 */
export function decodedForm(raw: string): string | undefined {
  if (!raw.includes('%') && !raw.includes('+')) return undefined
  const pairs: string[] = []
  for (const part of raw.split('&')) {
    const eq = part.indexOf('=')
    const name = decodeComponent(eq === -1 ? part : part.slice(0, eq))
    if (name === undefined || AMBIGUOUS_IN_NAME.test(name)) return undefined
    if (eq === -1) {
      pairs.push(name)
      continue
    }
    const value = decodeComponent(part.slice(eq + 1))
    if (value === undefined || AMBIGUOUS_IN_VALUE.test(value)) return undefined
    pairs.push(`${name}=${value}`)
  }
  const out = pairs.join('&')
  return out === raw ? undefined : out
}

/**
 * A secret prepared for HMAC-SHA256 once, so that a signature costs two one-shot hashes
 * instead of a new `Hmac` object: the inner pad as a string, and a 96-byte block holding
 * the outer pad, whose last 32 bytes receive the inner digest of each signature.
 *
 * @example
 * const key: SigningKey = signingKey('current-secret')
 */
export interface SigningKey {
  readonly secret: string
  /** The inner pad, when both pads are ASCII (an ASCII secret of at most 64 bytes): then its UTF-8 is its bytes. */
  readonly inner: string | undefined
  /** The outer pad followed by room for the inner digest. */
  readonly outer: Buffer
}

/**
 * Prepares `secret` (UTF-8, as `createHmac` reads a string) for {@link hmacHex}.
 *
 * @example
 * signingKey('plop').secret // 'plop'
 */
export function signingKey(secret: string): SigningKey {
  let key = Buffer.from(secret, 'utf8')
  if (key.length > 64) key = createHash('sha256').update(key).digest()
  const inner = Buffer.alloc(64, 0x36)
  const outer = Buffer.alloc(96, 0x5c)
  let ascii = true
  for (let i = 0; i < key.length; i++) {
    const byte = key[i] as number
    if (byte > 0x7f) ascii = false
    inner[i] = byte ^ 0x36
    outer[i] = byte ^ 0x5c
  }
  return { secret, inner: ascii ? inner.toString('latin1') : undefined, outer }
}

/**
 * Lower-case hex HMAC-SHA256 of `text` (UTF-8) under a prepared key: Image-Charts' `ichm`.
 *
 * @example
 * hmacHex('cht=p&chd=t%3A1%2C2%2C3&chs=100x100&icac=test_fixture', signingKey('plop'))
 * // '71bd93758b49ed28fdabd23a0ff366fe7bf877296ea888b9aaf4ede7978bdc8d'
 */
export function hmacHex(text: string, key: SigningKey): string {
  const { inner, outer } = key
  if (inner === undefined) return createHmac('sha256', key.secret).update(text, 'utf8').digest('hex')
  // An ASCII pad is its own UTF-8, so hashing the joined string hashes pad bytes + UTF-8(text).
  outer.write(hash('sha256', inner + text, 'binary'), 64, 32, 'latin1')
  return hash('sha256', outer, 'hex')
}

/** Compares two strings without stopping at the first difference. */
function sameText(a: string, b: string): boolean {
  if (a.length !== b.length) return false
  let difference = 0
  for (let i = 0; i < a.length; i++) difference |= a.charCodeAt(i) ^ b.charCodeAt(i)
  return difference === 0
}

/**
 * Whether `signature` (lower-case hex) is the HMAC-SHA256 of `signed` (the query without its
 * `ichm`), raw or percent-decoded, under one of `keys`. Compared without an early exit.
 *
 * @example
 * const { withoutSignature, values } = parseQueryString(search)
 * matchesAny(withoutSignature, values.get('ichm'), [signingKey('current'), signingKey('previous')])
 */
export function matchesAny(
  signed: string,
  signature: string | undefined,
  keys: readonly SigningKey[],
): boolean {
  if (signature === undefined || signature.length !== 64) return false
  for (const key of keys) if (sameText(hmacHex(signed, key), signature)) return true
  // Only when the raw form fails: most clients sign what they send.
  const decoded = decodedForm(signed)
  if (decoded === undefined) return false
  for (const key of keys) if (sameText(hmacHex(decoded, key), signature)) return true
  return false
}

/**
 * Signs a query string the way Image-Charts' clients do: appends
 * `ichm=<lower-case hex HMAC-SHA256 of the query>`. A string is signed as given (percent-
 * encoded or not); a `URLSearchParams` or a record is encoded first (`URLSearchParams` form).
 * Add `icac` to the query before signing. A query that has an `ichm` (or `ichm64`) already
 * throws a `TypeError`: a second one would never verify; sign the query without it.
 *
 * @example
 * signQuery({ cht: 'p', chd: 't:1,2,3', chs: '100x100', icac: 'test_fixture' }, 'plop')
 * // 'cht=p&chd=t%3A1%2C2%2C3&chs=100x100&icac=test_fixture&ichm=71bd9375…dc8d'
 * signQuery('cht=p&icac=test_fixture&ichm=00', 'plop') // throws: signed already
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
  // Signing it again would add a second ichm, and a repeated ichm never verifies.
  if (parseQueryString(text).withoutSignature !== text)
    throw new TypeError('Expected `query` without `ichm` (or `ichm64`): it is signed already')
  return `${text}${text === '' ? '' : '&'}ichm=${hmacHex(text, signingKey(secret))}`
}

/**
 * Verifies an Image-Charts signed query string: `ichm` (anywhere in the query) must be the
 * HMAC-SHA256 of the rest of the query, raw or percent-decoded, under one of `secrets`
 * (several while a secret is being rotated). Constant-time comparison. `false` when `icac` is
 * missing or empty, or `icac` or `ichm` is repeated or malformed, as `signature()` refuses
 * such a request (400).
 *
 * @example
 * verifySignature('cht=p&chd=t%3A1%2C2%2C3&chs=100x100&icac=test_fixture&ichm=71bd93758b49ed28fdabd23a0ff366fe7bf877296ea888b9aaf4ede7978bdc8d', 'plop') // true
 * verifySignature(signQuery('cht=p', 'plop'), 'plop') // false
 */
export function verifySignature(query: string, secrets: string | readonly string[]): boolean {
  if (typeof query !== 'string') return false
  const list = typeof secrets === 'string' ? [secrets] : secrets
  for (const secret of list) {
    if (typeof secret !== 'string' || secret === '')
      throw new TypeError('Expected `secrets` to be non-empty strings')
  }
  const parsed = parseQueryString(query.startsWith('?') ? query.slice(1) : query)
  // A repeated, malformed or invalid base64 icac or ichm: the middleware refuses it, so must this.
  for (const issue of parsed.issues) if (SIGNING_PARAMS.has(String(issue.path?.[0]))) return false
  if (bracketedSigningName(parsed) !== undefined) return false
  // No account, or an empty one: signature() answers 400 IC_MISSING_ENT_PARAMETER.
  const account = parsed.values.get('icac')
  if (account === undefined || account === '') return false
  return matchesAny(parsed.withoutSignature, parsed.values.get('ichm'), list.map(signingKey))
}
