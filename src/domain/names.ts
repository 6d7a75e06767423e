import { fail } from './errors.ts';

/** Usernames and role names: lower-case letters, digits, `.`, `_`, `-`; first a letter or digit; at most 64. */
const NAME_PATTERN = /^[a-z0-9][a-z0-9._-]{0,63}$/;

/**
 * The same rule for a name as it arrives, before it is lower-cased (upper-case letters too): the pattern the API's
 * schemas use (src/http/schemas.ts), derived here so the two cannot drift apart.
 */
export const NAME_PATTERN_ANY_CASE = NAME_PATTERN.source.replaceAll('a-z', 'A-Za-z');

/** The one form of a username or role name: lower-cased. Undefined if the result breaks the rule. */
export function canonicalName(name: string): string | undefined {
  const lowered = name.toLowerCase();
  return NAME_PATTERN.test(lowered) ? lowered : undefined;
}

/** `canonicalName`, or a 400 naming the rule. */
export function normalizeName(name: string, what: 'username' | 'role'): string {
  const canonical = canonicalName(name);
  if (canonical === undefined) {
    fail('invalid_request', `${what} must be 1-64 characters of a-z, 0-9, '.', '_' or '-', starting with a letter or digit`);
  }
  return canonical;
}
