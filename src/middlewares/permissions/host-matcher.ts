import { showValue } from '../../options.ts'

/**
 * Tells whether a host (or the host of a URL) is on an allow-list made by
 * {@link createHostMatcher}.
 *
 * @example
 * const allowed: HostMatcher = createHostMatcher(['images.example.com'])
 * allowed('https://images.example.com/a.jpg') // true
 */
export type HostMatcher = (hostOrUrl: string | URL) => boolean

const FORBIDDEN_IN_ENTRY = /[\s/\\@?#%*]/
// What a fetch can resolve, once the URL parser has lower-cased and punycoded a host: the parser
// itself keeps `*`, quotes, braces, `&` or `=` in a host, none of which a DNS name holds. A
// label has at most 63 characters and a name at most 253 (RFC 1035 2.3.4): a longer one
// resolves nowhere, so it is the client's mistake (400), not an unreachable backend (502).
const DNS_NAME = /^(?=.{1,253}$)[a-z0-9_-]{1,63}(?:\.[a-z0-9_-]{1,63})*$/

/**
 * A URL's `hostname` as the host lists compare it: without its final dot, or `undefined` when
 * no machine can have that name. A name is DNS labels (letters, digits, `-`, `_`; none
 * empty, none over 63 characters, 253 in all), an IPv4 address or a bracketed IPv6 one.
 *
 * @example
 * hostNameOf('img.cdn.example.net.') // 'img.cdn.example.net'
 * hostNameOf('*.cdn.example.net') // undefined
 */
export function hostNameOf(hostname: string): string | undefined {
  const host = trimDot(hostname)
  return DNS_NAME.test(host) || (host.startsWith('[') && host.endsWith(']')) ? host : undefined
}
const IPV4 = /^[\d.]+$/
const HAS_SCHEME = /^[a-zA-Z][a-zA-Z0-9+.-]*:\/\//

/** The host the WHATWG URL parser finds in `http://<host>`, lower-case, punycode, without a trailing dot. */
function normaliseEntry(entry: string, option: string): string {
  let url: URL | undefined
  try {
    url = new URL(`http://${entry}`)
  } catch {
    url = undefined
  }
  const host = url === undefined ? undefined : hostNameOf(url.hostname)
  if (
    url === undefined ||
    host === undefined ||
    url.port !== '' ||
    url.username !== '' ||
    url.password !== '' ||
    url.pathname !== '/' ||
    FORBIDDEN_IN_ENTRY.test(entry) ||
    entry.includes(':', entry.startsWith('[') ? entry.indexOf(']') : 0)
  ) {
    throw new TypeError(
      `Expected \`${option}\` to hold host names or *.domain wildcards (no scheme, port, path or userinfo), got ${showValue(entry)}`,
    )
  }
  return host
}

/**
 * A host without its final dot (`example.com.` and `example.com` are the same host).
 *
 * @example
 * trimDot('example.com.') // 'example.com'
 */
export function trimDot(host: string): string {
  return host.endsWith('.') ? host.slice(0, -1) : host
}

/**
 * The host a request would fetch from, or `undefined` when it is not an http(s) URL or host
 * or its host is no machine's name ({@link hostNameOf}).
 *
 * @example
 * hostOf('https://a@B.example.com./x') // 'b.example.com'
 */
export function hostOf(input: string | URL): string | undefined {
  let url: URL
  if (input instanceof URL) {
    url = input
  } else {
    try {
      url = new URL(HAS_SCHEME.test(input.trimStart()) ? input : `http://${input}`)
    } catch {
      return undefined
    }
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') return undefined
  return hostNameOf(url.hostname)
}

/**
 * Tells whether a host that is already normalised (lower-case, punycode, no trailing dot: a
 * WHATWG URL's `hostname` without its final dot) is on an allow-list.
 *
 * @example
 * const allowed: HostnameMatcher = compileHostList(['*.example.com'])
 * allowed('a.example.com') // true
 */
export type HostnameMatcher = (hostname: string) => boolean

/**
 * Compiles an allow-list into a {@link HostnameMatcher}: one `Set` probe per label of the
 * host, whatever the size of the list. {@link createHostMatcher} is this with the input's
 * host found first.
 *
 * @example
 * const allowed = compileHostList(['images.example.com', '*.cdn.example.net'])
 * allowed('a.cdn.example.net') // true
 */
export function compileHostList(list: readonly string[], option = 'hostsAllowed'): HostnameMatcher {
  if (!Array.isArray(list)) throw new TypeError(`Expected \`${option}\` to be an array of host names`)
  const exact = new Set<string>()
  const wildcards = new Set<string>()
  for (const entry of list) {
    if (typeof entry !== 'string' || entry === '') {
      throw new TypeError(`Expected \`${option}\` to hold non-empty strings, got ${showValue(entry)}`)
    }
    if (entry.startsWith('*.')) {
      const stem = normaliseEntry(entry.slice(2), option)
      if (IPV4.test(stem) || stem.startsWith('[')) {
        throw new TypeError(
          `Expected \`${option}\` wildcards to cover a domain name, not an address: ${entry}`,
        )
      }
      wildcards.add(stem)
    } else {
      exact.add(normaliseEntry(entry, option))
    }
  }
  // Probe only the suffix lengths some wildcard has: usually one or two, whatever the list size.
  const depths = [...new Set([...wildcards].map((stem) => stem.split('.').length))].sort((a, b) => a - b)
  return function matchesHostname(host) {
    if (exact.has(host)) return true
    // `.example.com` and `a..example.com` are hosts to the URL parser, but no wildcard's subdomains.
    if (host.charCodeAt(0) === 46 || host.includes('..')) return false
    let labels = 1
    let dot = host.length
    for (const depth of depths) {
      while (labels <= depth) {
        do dot--
        while (dot >= 0 && host.charCodeAt(dot) !== 46)
        if (dot === -1) return false
        labels++
      }
      if (wildcards.has(host.slice(dot + 1))) return true
    }
    return false
  }
}

/**
 * Compiles an allow-list of hosts: exact names (`images.example.com`) and wildcards
 * (`*.cdn.example.net`, any subdomain on a label boundary, not the apex). Both the list and
 * every input go through the WHATWG URL parser, so case, a trailing dot, IDN (compared in
 * punycode), percent-encoded dots, ports, userinfo (`a@b`) and backslashes never change the
 * answer from the host that would really be fetched; only `http:` and `https:` URLs match.
 * The host only is matched: any port of an allowed host matches. An empty list matches
 * nothing. A lookup costs one `Set` probe per label of the host, whatever the size of the list.
 *
 * @example
 * const allowed = createHostMatcher(['images.example.com', '*.cdn.example.net'])
 * allowed('https://a.cdn.example.net/x.jpg') // true
 * allowed('https://images.example.com@evil.net/x.jpg') // false: the host is evil.net
 * allowed('IMAGES.example.com.') // true
 * allowed('http://images.example.com:6379/') // true: the port is not matched
 */
export function createHostMatcher(list: readonly string[], option = 'hostsAllowed'): HostMatcher {
  const matchesHostname = compileHostList(list, option)
  return function matchesHost(input) {
    if (typeof input !== 'string' && !(input instanceof URL)) return false
    const host = hostOf(input)
    return host !== undefined && matchesHostname(host)
  }
}
