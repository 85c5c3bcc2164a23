import type { ServerResponse } from 'node:http'
import { showValue } from '../../options.ts'

const POLICY_NAME = /^[\x20-\x7e]{1,64}$/

/**
 * Checks a policy name: printable ASCII, so it can go in a structured-field string.
 *
 * @example
 * readPolicyName('per-ip') // 'per-ip'
 */
export function readPolicyName(value: unknown): string {
  if (typeof value !== 'string' || !POLICY_NAME.test(value))
    throw new TypeError(`Expected \`name\` to be 1 to 64 printable ASCII characters, got ${showValue(value)}`)
  return value
}

/**
 * A structured-field string (RFC 9651 §3.3.3): quoted, with `"` and `\` escaped.
 *
 * @example
 * sfString('a "b"') // '"a \\"b\\""'
 */
export function sfString(text: string): string {
  return `"${text.replace(/[\\"]/g, '\\$&')}"`
}

/**
 * The `RateLimit-Policy` item of a policy (draft-ietf-httpapi-ratelimit-headers): its name,
 * `q` the quota and `w` the window in seconds.
 *
 * @example
 * policyItem('90-in-10s', 90, 10_000) // '"90-in-10s";q=90;w=10'
 */
export function policyItem(name: string, limit: number, windowMs: number): string {
  return `${sfString(name)};q=${limit};w=${Math.max(1, Math.ceil(windowMs / 1000))}`
}

function append(res: ServerResponse, name: string, item: string): void {
  const current = res.getHeader(name)
  // Another limiter's value may be a string, a list of field lines, or even a number.
  const earlier = Array.isArray(current) ? current.join(', ') : current === undefined ? '' : String(current)
  res.setHeader(name, earlier !== '' ? `${earlier}, ${item}` : item)
}

/**
 * Sets `RateLimit` (`r` remaining units, `t` seconds to the reset) and `RateLimit-Policy`,
 * appending to those an earlier limiter set, so stacked limiters each report their policy.
 *
 * @example
 * setRateLimitHeaders(res, '"per-ip"', '"per-ip";q=90;w=10', 42, 7)
 */
export function setRateLimitHeaders(
  res: ServerResponse,
  quotedName: string,
  policy: string,
  remaining: number,
  resetSeconds: number,
): void {
  if (res.headersSent) return
  append(res, 'ratelimit-policy', policy)
  append(res, 'ratelimit', `${quotedName};r=${remaining};t=${resetSeconds}`)
}
