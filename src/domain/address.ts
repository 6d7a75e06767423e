import { isIPv4 } from 'node:net';
import ipaddr from 'ipaddr.js';

/**
 * The key under which a client address shares a per-address limit (SECURITY.md §37): an IPv4 address as it is (an
 * IPv4-mapped IPv6 address counts as its IPv4 address), an IPv6 address by its /64, since one subscriber usually
 * holds a whole /64 and could otherwise take a new address for every request. A request without an address
 * (none reaches the server that way over a socket) shares the key `unknown`.
 */
export function addressKey(ip: string | null): string {
  if (ip === null || ip === '') return 'unknown';
  // A dotted quad in the one spelling Node's isIPv4 accepts (no leading zeros, no other radix) is already its own key,
  // the string ipaddr.js would give back: every request from a socket's IPv4 peer skips the parse (issue 12).
  if (isIPv4(ip)) return ip;
  if (!ipaddr.isValid(ip)) return `other:${ip}`;
  const address = ipaddr.process(ip);
  if (address.kind() === 'ipv4') return address.toString();
  const prefix = new ipaddr.IPv6([...(address as ipaddr.IPv6).parts.slice(0, 4), 0, 0, 0, 0]);
  return `${prefix.toString()}/64`;
}
