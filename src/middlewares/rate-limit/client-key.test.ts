import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { describe, it } from 'node:test'
import { clientAddress, ipKey, readTrustProxy } from './client-key.ts'

const vectors = JSON.parse(
  readFileSync(new URL('../../../../shared/vectors/addresses.json', import.meta.url), 'utf8'),
) as { refuse: { ip: string; embeds?: string; why: string }[] }

describe('ipKey(address, ipv6Subnet)', () => {
  it('keys IPv4 addresses by themselves', () => {
    assert.equal(ipKey('203.0.113.7', 56), '203.0.113.7')
  })

  it('keys IPv4-mapped IPv6 addresses as IPv4, in dotted and hex notation (shared vectors)', () => {
    const mapped = vectors.refuse.filter((v) => v.why.startsWith('IPv4-mapped'))
    assert.ok(mapped.length >= 3)
    for (const v of mapped) assert.equal(ipKey(v.ip, 56), v.embeds, v.ip)
    assert.equal(ipKey('::FFFF:198.51.100.1', 64), '198.51.100.1')
  })

  it('does not treat other IPv4-embedding prefixes (NAT64, 6to4) as the IPv4 client', () => {
    assert.equal(ipKey('64:ff9b::7f00:1', 56), '64:ff9b::/56')
    assert.equal(ipKey('2002:7f00:1::1', 56), '2002:7f00:1::/56')
  })

  it('groups IPv6 addresses by their /56 (or the configured prefix)', () => {
    assert.equal(ipKey('2001:db8:1234:5678::1', 56), '2001:db8:1234:5600::/56')
    assert.equal(ipKey('2001:db8:1234:56ff:ffff:ffff:ffff:ffff', 56), '2001:db8:1234:5600::/56')
    assert.equal(ipKey('2001:0db8:1234:5678:0000:0000:0000:0001', 64), '2001:db8:1234:5678::/64')
    assert.equal(ipKey('2001:db8:1234:5678::1', 48), '2001:db8:1234::/48')
    assert.equal(ipKey('2001:db8:1234:5678::1', 128), '2001:db8:1234:5678::1')
    assert.equal(ipKey('fe80::1%eth0', 64), 'fe80::/64')
    assert.equal(ipKey('::1', 128), '::1')
    assert.notEqual(ipKey('2001:db8:1234:5700::1', 56), ipKey('2001:db8:1234:5600::1', 56))
  })

  it('keeps malformed text as it is rather than throwing', () => {
    for (const bad of ['1:2:3:4:5:6:7:8:9', '::ffff:1.2.3.4.5', '1::2::3', 'zz::1', ':'])
      assert.equal(ipKey(bad, 56), bad)
  })
})

describe('clientAddress(remote, forwardedFor, trustProxy)', () => {
  it('ignores X-Forwarded-For unless proxies are trusted', () => {
    assert.equal(clientAddress('10.0.0.1', '198.51.100.9', false), '10.0.0.1')
  })

  it('walks the given number of proxy hops from the right', () => {
    const xff = '198.51.100.9, 203.0.113.5'
    assert.equal(clientAddress('10.0.0.1', xff, 1), '203.0.113.5')
    assert.equal(clientAddress('10.0.0.1', xff, 2), '198.51.100.9')
    assert.equal(clientAddress('10.0.0.1', xff, 5), '198.51.100.9', 'never beyond the leftmost entry')
    // Some proxies (Azure's among them) append the client's port.
    assert.equal(clientAddress('10.0.0.1', '203.0.113.5:5678', 1), '203.0.113.5')
    assert.equal(clientAddress('10.0.0.1', '[2001:db8::1]:443', 1), '2001:db8::1')
    assert.equal(clientAddress('10.0.0.1', '[2001:db8::1]', 1), '2001:db8::1')
    assert.equal(
      clientAddress('10.0.0.1', '2001:db8::1', 1),
      '2001:db8::1',
      'a bare IPv6 address has no port',
    )
    assert.equal(clientAddress('10.0.0.1', '203.0.113.5:99999x', 1), '10.0.0.1', 'malformed: not believed')
    assert.equal(clientAddress('10.0.0.1', undefined, 1), '10.0.0.1')
    assert.equal(clientAddress('10.0.0.1', ['198.51.100.9', '203.0.113.5'], 1), '203.0.113.5')
  })

  it('stops at a malformed entry, so a spoofed header cannot pick any key', () => {
    assert.equal(clientAddress('10.0.0.1', 'anything-at-all, 203.0.113.5', 2), '203.0.113.5')
  })

  it('asks a trust function about each hop from the socket leftwards', () => {
    const ours = (address: string) => address.startsWith('10.')
    assert.equal(clientAddress('10.0.0.1', '198.51.100.9, 10.0.0.7', ours), '198.51.100.9')
    assert.equal(clientAddress('198.51.100.1', '10.0.0.7', ours), '198.51.100.1')
  })

  it('gives a trust function IPv4-mapped addresses as IPv4, from the socket and from the header', () => {
    const asked: string[] = []
    const ours = (address: string) => {
      asked.push(address)
      return address.startsWith('10.')
    }
    assert.equal(
      clientAddress('::ffff:10.0.0.1', '203.0.113.1, 198.51.100.9, ::ffff:a00:7', ours),
      '198.51.100.9',
    )
    assert.deepEqual(asked, ['10.0.0.1', '10.0.0.7', '198.51.100.9'])
    assert.equal(clientAddress('::ffff:198.51.100.1', '10.0.0.7', ours), '198.51.100.1')
  })

  it('takes a peer without an address on a Unix-socket listener for a trusted local hop when proxies are trusted', () => {
    const xff = '198.51.100.9, 203.0.113.5'
    assert.equal(clientAddress(undefined, xff, 1, true), '203.0.113.5', 'the socket is one of the hops')
    assert.equal(clientAddress(undefined, xff, 2, true), '198.51.100.9')
    const asked: unknown[] = []
    const none = (address: string) => {
      asked.push(address)
      return false
    }
    assert.equal(clientAddress(undefined, xff, none, true), '203.0.113.5')
    assert.deepEqual(asked, ['203.0.113.5'], 'the function is not asked about the socket')
    assert.equal(clientAddress(undefined, undefined, 1, true), undefined, 'no header: no address')
    assert.equal(clientAddress(undefined, 'garbage', 1, true), undefined, 'a malformed entry is not believed')
    assert.equal(clientAddress(undefined, xff, false, true), undefined)
  })

  it('believes no X-Forwarded-For from a peer without an address on a TCP listener (a client that reset)', () => {
    const xff = '198.51.100.9, 203.0.113.5'
    const asked: unknown[] = []
    const ours = (address: string) => {
      asked.push(address)
      return true
    }
    assert.equal(clientAddress(undefined, xff, ours), undefined)
    assert.equal(clientAddress(undefined, xff, 1), undefined)
    assert.deepEqual(asked, [])
  })

  it('validates the trustProxy option', () => {
    assert.equal(readTrustProxy(undefined), false)
    assert.equal(readTrustProxy(0), false)
    assert.equal(readTrustProxy(2), 2)
    for (const bad of [true, -1, 1.5, 'loopback', 99])
      assert.throws(() => readTrustProxy(bad), { name: 'TypeError', message: /^Expected `trustProxy`/ })
  })
})
