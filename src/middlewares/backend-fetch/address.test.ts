import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { describe, it } from 'node:test'
import { compileAddressList, isBlockedAddress, parseAddress } from './address.ts'

interface AddressVector {
  readonly ip: string
  readonly why: string
  readonly embeds?: string
}
const vectors = JSON.parse(
  readFileSync(new URL('../../../../shared/vectors/addresses.json', import.meta.url), 'utf8'),
) as {
  refuse: AddressVector[]
  allow: AddressVector[]
}

describe('isBlockedAddress', () => {
  for (const { ip, why, embeds } of vectors.refuse) {
    it(`refuses ${ip} (${why})`, () => {
      assert.equal(isBlockedAddress(ip), true)
      if (embeds !== undefined) assert.equal(isBlockedAddress(embeds), true)
    })
  }
  for (const { ip, why, embeds } of vectors.allow) {
    it(`allows ${ip} (${why})`, () => {
      assert.equal(isBlockedAddress(ip), false)
      if (embeds !== undefined) assert.equal(isBlockedAddress(embeds), false)
    })
  }

  it('judges every IPv6 form by the IPv4 address it carries', () => {
    for (const form of ['::ffff:{}', '::{}', '64:ff9b::{}']) {
      assert.equal(isBlockedAddress(form.replace('{}', '192.168.1.1')), true, form)
      assert.equal(isBlockedAddress(form.replace('{}', '93.184.216.34')), false, form)
    }
    assert.equal(isBlockedAddress('2002:c0a8:101::1'), true, '6to4 of 192.168.1.1')
    assert.equal(isBlockedAddress('2002:5db8:d822::1'), false, '6to4 of 93.184.216.34')
    assert.equal(isBlockedAddress('2001:0:4136:e378:8000:63bf:a247:27dd'), false, 'Teredo of 93.184.216.34')
  })

  it('refuses the other special-purpose ranges', () => {
    for (const ip of [
      '192.0.2.1',
      '198.51.100.7',
      '203.0.113.9',
      '192.88.99.1',
      '198.19.255.255',
      'fec0::1',
      '2001:db8::1',
      '3fff::1',
      '100::1',
      '64:ff9b:1::1',
      '4000::1',
    ]) {
      assert.equal(isBlockedAddress(ip), true, ip)
    }
    for (const ip of ['198.20.0.1', '11.0.0.1', '2a00:1450:4001::200e', '2001:4860:4860::8888']) {
      assert.equal(isBlockedAddress(ip), false, ip)
    }
  })

  it('ignores an IPv6 zone and refuses what is not an IP address', () => {
    assert.equal(isBlockedAddress('fe80::1%eth0'), true)
    for (const bad of ['', 'localhost', '127.1', '2130706433', '1.2.3.4.5', '::g', 42 as unknown as string]) {
      assert.equal(isBlockedAddress(bad), true, String(bad))
    }
  })
})

describe('parseAddress', () => {
  it('parses both families to bytes', () => {
    assert.deepEqual([...(parseAddress('10.0.0.1') ?? [])], [10, 0, 0, 1])
    assert.deepEqual(
      [...(parseAddress('::ffff:7f00:1') ?? [])],
      [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 255, 255, 127, 0, 0, 1],
    )
    assert.deepEqual(
      [...(parseAddress('::ffff:127.0.0.1') ?? [])],
      [...(parseAddress('::ffff:7f00:1') ?? [])],
    )
    assert.deepEqual(
      [...(parseAddress('1:2:3:4:5:6:7:8') ?? [])],
      [0, 1, 0, 2, 0, 3, 0, 4, 0, 5, 0, 6, 0, 7, 0, 8],
    )
    assert.equal(parseAddress('nope'), undefined)
  })
})

describe('compileAddressList', () => {
  it('matches addresses and CIDR ranges, IPv4-mapped forms included', () => {
    const listed = compileAddressList(['127.0.0.1', '10.0.0.0/8', 'fd00::/8'], 'allowedAddresses')
    assert.equal(listed('127.0.0.1'), true)
    assert.equal(listed('::ffff:127.0.0.1'), true)
    assert.equal(listed('127.0.0.2'), false)
    assert.equal(listed('10.200.3.4'), true)
    assert.equal(listed('11.0.0.1'), false)
    assert.equal(listed('fd12::1'), true)
    assert.equal(listed('fe80::1'), false)
    assert.equal(listed('not an ip'), false)
  })

  it('takes an entry in IPv4-mapped IPv6 form as the IPv4 range it maps, either form of the address matching', () => {
    const listed = compileAddressList(
      ['::ffff:10.1.2.3', '::ffff:172.16.0.0/108', '::ffff:c0a8:100/120'],
      'allowedAddresses',
    )
    for (const ip of ['10.1.2.3', '::ffff:10.1.2.3', '::ffff:a01:203', '172.20.0.1', '192.168.1.255'])
      assert.equal(listed(ip), true, ip)
    for (const ip of ['10.1.2.4', '172.32.0.1', '192.168.2.1', '::a01:203', '64:ff9b::a01:203'])
      assert.equal(listed(ip), false, ip)
    // ::ffff:0:0/96 is every IPv4 address; a wider IPv6 range is IPv6 only.
    assert.equal(compileAddressList(['::ffff:0:0/96'], 'allowedAddresses')('10.9.8.7'), true)
    const wide = compileAddressList(['::/0'], 'allowedAddresses')
    assert.equal(wide('fd00::1'), true)
    assert.equal(wide('10.9.8.7'), false)
    assert.equal(wide('::ffff:10.9.8.7'), false)
  })

  it('throws a TypeError naming the option for a bad entry', () => {
    assert.throws(
      () => compileAddressList(['10.0.0.0/33'], 'allowedAddresses'),
      /`allowedAddresses`.*10\.0\.0\.0\/33/,
    )
    assert.throws(() => compileAddressList(['example.com'], 'allowedAddresses'), TypeError)
    assert.throws(
      () => compileAddressList(['10.0.0.0/8/1'], 'allowedAddresses'),
      /`allowedAddresses`.*10\.0\.0\.0\/8\/1/,
    )
    assert.throws(() => compileAddressList('10.0.0.1' as never, 'allowedAddresses'), TypeError)
    // Not a string, though String() of it reads as an address.
    for (const entry of [['10.0.0.1'], { toString: () => '10.0.0.1' }])
      assert.throws(
        () => compileAddressList([entry] as never, 'allowedAddresses'),
        /`allowedAddresses` entries/,
      )
  })
})
