import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import ipaddr from 'ipaddr.js';
import { addressKey } from '../../src/domain/address.ts';

/** What the key was before the dotted-quad shortcut: ipaddr.js parses every address (SECURITY.md §37). */
function parsedKey(ip: string): string {
  if (!ipaddr.isValid(ip)) return `other:${ip}`;
  const address = ipaddr.process(ip);
  if (address.kind() === 'ipv4') return address.toString();
  return `${new ipaddr.IPv6([...(address as ipaddr.IPv6).parts.slice(0, 4), 0, 0, 0, 0]).toString()}/64`;
}

test('an IPv4 address is its own key, in the spelling the parser gives', () => {
  fc.assert(fc.property(fc.ipV4(), (ip) => addressKey(ip) === parsedKey(ip)));
});

test('other spellings of IPv4 (leading zeros, hex, fewer parts) and IPv6 keep the parsed key', () => {
  fc.assert(fc.property(fc.oneof(fc.ipV4Extended(), fc.ipV6()), (ip) => addressKey(ip) === parsedKey(ip)));
  assert.equal(addressKey('010.1.1.1'), parsedKey('010.1.1.1'));
  assert.equal(addressKey('::ffff:192.0.2.7'), '192.0.2.7');
  assert.equal(addressKey('2001:db8:1:2:3:4:5:6'), '2001:db8:1:2::/64');
  assert.equal(addressKey(''), 'unknown');
  assert.equal(addressKey('not an address'), 'other:not an address');
});
