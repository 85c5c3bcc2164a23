import { isIPv4, isIPv6 } from 'node:net'
import { showValue } from '../../options.ts'

/**
 * Which proxies in front of the app may be believed about the client address.
 * `false`: none, the socket's peer is the client. A number: that many proxies (the
 * `X-Forwarded-For` entry that many hops from the right is the client). A function: called
 * with each address from the socket leftwards; the first one it does not trust is the client.
 * It gets IPv4-mapped IPv6 addresses as plain IPv4 (`10.0.0.1`, not the `::ffff:10.0.0.1` a
 * dual-stack server sees of an IPv4 peer), so a test of the IPv4 text matches them. A peer
 * without an address (a Unix socket) is a local proxy: trusted as one hop without asking.
 *
 * @example
 * const behindOneLoadBalancer: TrustProxy = 1
 * const behindOurNetwork: TrustProxy = (address) => address.startsWith('10.')
 */
export type TrustProxy = false | number | ((address: string, hop: number) => boolean)

/**
 * Checks the `trustProxy` option.
 *
 * @example
 * readTrustProxy(1) // 1
 */
export function readTrustProxy(value: unknown): TrustProxy {
  if (value === undefined || value === false) return false
  if (typeof value === 'function') return value as TrustProxy
  if (typeof value === 'number' && Number.isInteger(value) && value >= 0 && value <= 32)
    return value === 0 ? false : value
  throw new TypeError(
    `Expected \`trustProxy\` to be false, a number of proxies from 0 to 32, or a function, got ${showValue(value)}`,
  )
}

/**
 * The client address of a request under a proxy-trust setting, as text; `undefined` when the
 * socket has none and no trusted hop names the client. A peer without an address on a Unix-socket
 * listener (`localPeer`: a proxy on this machine) is a trusted local hop whenever proxies are
 * trusted: it counts as one of a number's hops, and a function is not asked about it. On a TCP
 * listener a missing address (a client that reset its connection) is no hop at all.
 *
 * @example
 * clientAddress('10.0.0.1', '198.51.100.9, 203.0.113.5', 1)       // '203.0.113.5'
 * clientAddress(undefined, '198.51.100.9, 203.0.113.5', 1, true)  // '203.0.113.5'
 */
export function clientAddress(
  remoteAddress: string | undefined,
  forwardedFor: string | string[] | undefined,
  trust: TrustProxy,
  localPeer = false,
): string | undefined {
  if (trust === false || (remoteAddress === undefined && !localPeer)) return remoteAddress
  const header = Array.isArray(forwardedFor) ? forwardedFor.join(',') : forwardedFor
  if (header === undefined || header === '') return remoteAddress
  const hops = header.split(',')
  let address = remoteAddress === undefined ? undefined : unmapped(remoteAddress)
  for (let hop = 0; hop < hops.length; hop++) {
    if (typeof trust === 'number' ? hop >= trust : address !== undefined && !trust(address, hop))
      return address
    const next = withoutPort((hops[hops.length - 1 - hop] as string).trim())
    // A malformed entry cannot be believed; the last trusted address stands for the client.
    if (!isIPv4(next) && !isIPv6(next)) return address
    address = unmapped(next)
  }
  return address
}

const PORT = /^:\d{1,5}$/

/** An `X-Forwarded-For` entry without the port some proxies append (`1.2.3.4:5678`, `[2001:db8::1]:443`). */
function withoutPort(entry: string): string {
  if (entry.charCodeAt(0) === 0x5b) {
    const close = entry.indexOf(']')
    return close !== -1 && (close === entry.length - 1 || PORT.test(entry.slice(close + 1)))
      ? entry.slice(1, close)
      : entry
  }
  const colon = entry.indexOf(':')
  return colon !== -1 && colon === entry.lastIndexOf(':') && PORT.test(entry.slice(colon))
    ? entry.slice(0, colon)
    : entry
}

function parseIPv6(text: string): number[] | undefined {
  let address = text
  const zone = address.indexOf('%')
  if (zone !== -1) address = address.slice(0, zone)
  const lastColon = address.lastIndexOf(':')
  const dotted = address.slice(lastColon + 1)
  if (dotted.includes('.')) {
    if (!isIPv4(dotted)) return undefined
    const b = dotted.split('.').map(Number) as [number, number, number, number]
    address = `${address.slice(0, lastColon + 1)}${((b[0] << 8) | b[1]).toString(16)}:${((b[2] << 8) | b[3]).toString(16)}`
  }
  const halves = address.split('::')
  if (halves.length > 2) return undefined
  const toGroups = (part: string): number[] =>
    part === '' ? [] : part.split(':').map((group) => Number.parseInt(group, 16))
  const head = toGroups(halves[0] as string)
  const rest = halves.length === 2 ? toGroups(halves[1] as string) : []
  const fill = 8 - head.length - rest.length
  if (fill < 0 || (halves.length === 1 && fill !== 0)) return undefined
  const groups = [...head, ...new Array<number>(fill).fill(0), ...rest]
  return groups.every((g) => Number.isInteger(g) && g >= 0 && g <= 0xffff) ? groups : undefined
}

function isMapped(groups: readonly number[]): boolean {
  return (
    groups[0] === 0 &&
    groups[1] === 0 &&
    groups[2] === 0 &&
    groups[3] === 0 &&
    groups[4] === 0 &&
    groups[5] === 0xffff
  )
}

function ipv4Of(groups: readonly number[]): string {
  const hi = groups[6] as number
  const lo = groups[7] as number
  return `${hi >> 8}.${hi & 0xff}.${lo >> 8}.${lo & 0xff}`
}

/** An IPv4-mapped IPv6 address (`::ffff:192.0.2.1`, `::ffff:c000:201`) as its IPv4 address; any other as it is. */
function unmapped(address: string): string {
  if (!address.includes(':')) return address
  const groups = parseIPv6(address)
  return groups !== undefined && isMapped(groups) ? ipv4Of(groups) : address
}

/**
 * The rate-limit key of a client address: an IPv4 address as itself (IPv4-mapped IPv6
 * `::ffff:a.b.c.d` included, in either notation), an IPv6 address as its `/subnet` prefix,
 * since one IPv6 client usually holds a whole /56 or /64.
 *
 * @example
 * ipKey('2001:db8:1234:5678::1', 56) // '2001:db8:1234:5600::/56'
 * ipKey('::ffff:192.0.2.1', 56)      // '192.0.2.1'
 */
export function ipKey(address: string, ipv6Subnet: number): string {
  if (!address.includes(':')) return address
  const groups = parseIPv6(address)
  if (groups === undefined) return address
  if (isMapped(groups)) return ipv4Of(groups)
  let bits = ipv6Subnet
  const masked = groups.map((group) => {
    const keep = Math.max(0, Math.min(16, bits))
    bits -= 16
    return keep === 16 ? group : keep === 0 ? 0 : group & (0xffff << (16 - keep))
  })
  let hex = masked.map((g) => g.toString(16)).join(':')
  // Shorten the longest run of zero groups, as in RFC 5952, so equal prefixes give equal keys.
  const run = /(?:^|:)0(?::0)+(?::|$)/g
  let longest = ''
  for (const match of hex.matchAll(run)) if (match[0].length > longest.length) longest = match[0]
  if (longest !== '') hex = hex.replace(longest, '::')
  return ipv6Subnet >= 128 ? hex : `${hex}/${ipv6Subnet}`
}
