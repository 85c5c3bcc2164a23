import { isIPv4, isIPv6 } from 'node:net'
import { showValue } from '../../options.ts'

/** An address as bytes: 4 for IPv4, 16 for IPv6. */
type Bytes = Uint8Array

function parseIPv4(text: string): Bytes | undefined {
  if (!isIPv4(text)) return undefined
  return Uint8Array.from(text.split('.'), Number)
}

function parseIPv6(input: string): Bytes | undefined {
  const zone = input.indexOf('%')
  const text = zone === -1 ? input : input.slice(0, zone)
  if (!isIPv6(text)) return undefined
  const bytes = new Uint8Array(16)
  let head = text
  let tailV4: Bytes | undefined
  const lastColon = text.lastIndexOf(':')
  if (text.includes('.', lastColon)) {
    tailV4 = parseIPv4(text.slice(lastColon + 1))
    if (tailV4 === undefined) return undefined
    head = `${text.slice(0, lastColon + 1)}0:0`
  }
  const [left = '', right] = head.split('::') as [string, string | undefined]
  const leftGroups = left === '' ? [] : left.split(':')
  const rightGroups = right === undefined || right === '' ? [] : right.split(':')
  const groups = [
    ...leftGroups,
    ...new Array<string>(8 - leftGroups.length - rightGroups.length).fill('0'),
    ...rightGroups,
  ]
  for (let i = 0; i < 8; i++) {
    const value = Number.parseInt(groups[i] as string, 16)
    bytes[i * 2] = value >> 8
    bytes[i * 2 + 1] = value & 0xff
  }
  if (tailV4 !== undefined) bytes.set(tailV4, 12)
  return bytes
}

/**
 * Parses an IPv4 or IPv6 address (an IPv6 zone such as `%eth0` is ignored) to its bytes.
 * Returns `undefined` for anything that is not an IP address.
 *
 * @example
 * parseAddress('::ffff:127.0.0.1') // Uint8Array(16) [0, …, 255, 255, 127, 0, 0, 1]
 */
export function parseAddress(text: string): Bytes | undefined {
  return parseIPv4(text) ?? parseIPv6(text)
}

function startsWith(bytes: Bytes, prefix: readonly number[], bits: number): boolean {
  let left = bits
  for (let i = 0; left > 0; i++, left -= 8) {
    const mask = left >= 8 ? 0xff : (0xff << (8 - left)) & 0xff
    if (((bytes[i] as number) & mask) !== ((prefix[i] ?? 0) & mask)) return false
  }
  return true
}

/** `::ffff:0:0/96`, the IPv4-mapped IPv6 addresses. */
const MAPPED_PREFIX: readonly number[] = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff]

/** IPv4 ranges that are not public unicast, as [prefix bytes, prefix length]. */
const BLOCKED_V4: readonly (readonly [readonly number[], number])[] = [
  [[0], 8], // "this network", 0.0.0.0 included
  [[10], 8], // private
  [[100, 64], 10], // carrier-grade NAT
  [[127], 8], // loopback
  [[169, 254], 16], // link-local, cloud metadata
  [[172, 16], 12], // private
  [[192, 0, 0], 24], // IETF protocol assignments
  [[192, 0, 2], 24], // documentation
  [[192, 88, 99], 24], // 6to4 relay anycast
  [[192, 168], 16], // private
  [[198, 18], 15], // benchmarking
  [[198, 51, 100], 24], // documentation
  [[203, 0, 113], 24], // documentation
  [[224], 4], // multicast
  [[240], 4], // reserved, broadcast included
]

/** IPv6 ranges inside 2000::/3 (global unicast) that are still not public. */
const BLOCKED_V6_GLOBAL: readonly (readonly [readonly number[], number])[] = [
  [[0x20, 0x01, 0x0d, 0xb8], 32], // documentation
  [[0x20, 0x01, 0x00, 0x10], 28], // ORCHID
  [[0x20, 0x01, 0x00, 0x20], 28], // ORCHIDv2
  [[0x20, 0x01, 0x00, 0x02, 0x00, 0x00], 48], // benchmarking
  [[0x3f, 0xff], 20], // documentation (RFC 9637)
]

function isBlockedV4(bytes: Bytes): boolean {
  for (const [prefix, bits] of BLOCKED_V4) if (startsWith(bytes, prefix, bits)) return true
  return false
}

/**
 * The IPv4 address carried inside an IPv6 one, for the forms that reach an IPv4 host:
 * IPv4-mapped `::ffff:0:0/96`, IPv4-compatible `::/96`, NAT64 `64:ff9b::/96`, 6to4
 * `2002::/16` and Teredo `2001::/32` (whose client address is stored inverted).
 */
function embeddedV4(bytes: Bytes): Bytes | undefined {
  if (startsWith(bytes, MAPPED_PREFIX, 96)) return bytes.subarray(12, 16)
  if (startsWith(bytes, [], 96)) return bytes.subarray(12, 16)
  if (startsWith(bytes, [0, 0x64, 0xff, 0x9b], 96)) return bytes.subarray(12, 16)
  if (startsWith(bytes, [0x20, 0x02], 16)) return bytes.subarray(2, 6)
  if (startsWith(bytes, [0x20, 0x01, 0, 0], 32)) return bytes.subarray(12, 16).map((b) => ~b & 0xff)
  return undefined
}

/**
 * Tells whether the SSRF guard refuses to connect to an address by default: loopback,
 * private, link-local, carrier-grade NAT, unique-local, multicast, unspecified, broadcast,
 * reserved and documentation ranges, anything outside IPv6 global unicast, and IPv4 hidden
 * in IPv6 (mapped, compatible, NAT64 `64:ff9b::/96`, 6to4, Teredo), judged by the IPv4
 * address it carries. A value that is not an IP address is refused too.
 *
 * @example
 * isBlockedAddress('169.254.169.254') // true
 * isBlockedAddress('64:ff9b::7f00:1') // true (NAT64 of 127.0.0.1)
 * isBlockedAddress('64:ff9b::808:808') // false (NAT64 of 8.8.8.8)
 */
export function isBlockedAddress(ip: string): boolean {
  if (typeof ip !== 'string') return true
  const bytes = parseAddress(ip)
  if (bytes === undefined) return true
  if (bytes.length === 4) return isBlockedV4(bytes)
  const v4 = embeddedV4(bytes)
  if (v4 !== undefined) return isBlockedV4(v4)
  if (!startsWith(bytes, [0x20], 3)) return true
  for (const [prefix, bits] of BLOCKED_V6_GLOBAL) if (startsWith(bytes, prefix, bits)) return true
  return false
}

/**
 * A list of addresses and CIDR ranges (`'127.0.0.1'`, `'10.0.0.0/8'`, `'fd00::/8'`),
 * compiled once. An address and its IPv4-mapped IPv6 form are one address: IPv4 addresses
 * written either way match the IPv4 entries, and an entry inside `::ffff:0:0/96`
 * (`'::ffff:10.0.0.0/104'`) is the IPv4 range it maps (`'10.0.0.0/8'`). A wider IPv6 range
 * (`'::/0'`) matches IPv6 addresses only.
 *
 * @example
 * const isListed = compileAddressList(['10.0.0.0/8', '::ffff:192.168.1.0/120'], 'allowedAddresses')
 * isListed('::ffff:10.1.2.3') // true
 * isListed('192.168.1.7') // true
 */
export function compileAddressList(entries: readonly string[], name: string): (ip: string) => boolean {
  if (!Array.isArray(entries)) {
    throw new TypeError(
      `Expected \`${name}\` to be an array of IP addresses or CIDR ranges, got ${showValue(entries)}`,
    )
  }
  const ranges = entries.map((entry) => {
    // Strings only: ['10.0.0.1'] and a value whose String() happens to be an address are not the same list.
    const [address = '', length, ...rest] = typeof entry === 'string' ? entry.split('/') : []
    const bytes = parseAddress(address)
    const max = bytes?.length === 4 ? 32 : 128
    const bits = length === undefined ? max : /^\d{1,3}$/.test(length) ? Number(length) : Number.NaN
    if (bytes === undefined || rest.length > 0 || !(bits >= 0 && bits <= max)) {
      throw new TypeError(
        `Expected \`${name}\` entries to be IP addresses or CIDR ranges, got ${showValue(entry)}`,
      )
    }
    // As addresses are unmapped below: a mapped entry kept as IPv6 could never match.
    if (bytes.length === 16 && bits >= 96 && startsWith(bytes, MAPPED_PREFIX, 96)) {
      return { prefix: [...bytes.subarray(12, 16)], bits: bits - 96, v4: true }
    }
    return { prefix: [...bytes], bits, v4: bytes.length === 4 }
  })
  return function isListed(ip) {
    let bytes = parseAddress(ip)
    if (bytes === undefined) return false
    if (bytes.length === 16 && startsWith(bytes, MAPPED_PREFIX, 96)) bytes = bytes.subarray(12, 16)
    for (const range of ranges) {
      if (range.v4 === (bytes.length === 4) && startsWith(bytes, range.prefix, range.bits)) return true
    }
    return false
  }
}
