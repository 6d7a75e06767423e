import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { SignJWT, decodeJwt, type JWTPayload } from 'jose';
import type { TOKEN_FAILURES } from '../../src/domain/tokens.ts';
import { lastAuditSeq, validationFailures } from '../support/audit.ts';
import { DIALECTS } from '../support/databases.ts';
import { USER_PASSWORD, createHarness, type Harness } from '../support/harness.ts';
import { assertProblem } from '../support/inspect.ts';

/**
 * SECURITY.md §40: one spelling per token. An Ed25519 signature is 64 bytes, 86 base64url characters whose last one
 * carries 4 unused bits, so 16 spellings decode to the same signature; padding and the standard alphabet decode to it
 * too. Only the canonical one is accepted, on every route, and a remembered verification is no way around it. And
 * an `iat` more than a minute ahead is refused.
 */

const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';

/** The 16 spellings of a token that differ only in the unused low bits of the signature's last character. */
function spellings(token: string): string[] {
  const index = ALPHABET.indexOf(token.at(-1) as string);
  assert.equal(index & 0x0f, 0, 'the server writes the canonical form');
  return Array.from({ length: 16 }, (_, bits) => `${token.slice(0, -1)}${ALPHABET[index | bits]}`);
}

for (const dialect of DIALECTS) {
  describe(`one token, one spelling [${dialect}]`, () => {
    let h: Harness;

    const me = (token: string) => h.request({ method: 'GET', url: '/v1/me', headers: { authorization: `Bearer ${token}` } });
    const validate = (token: string) => h.request({ method: 'POST', url: '/v1/token/validate', body: { token } });
    /** Refused on both routes, and the validation failure is audited with `reason`. */
    const refused = async (token: string, what: string, reason: (typeof TOKEN_FAILURES)[number] = 'malformed') => {
      assertProblem(await me(token), { status: 401, code: 'unauthenticated' });
      const since = await lastAuditSeq(h);
      const response = await validate(token);
      assert.equal(response.statusCode, 200, `${what}: ${response.body}`);
      assert.equal(response.body, '{"active":false}', what);
      assert.deepEqual((await validationFailures(h, since)).reasons, [reason], what);
    };
    const accepted = async (token: string, what: string) => {
      const response = await me(token);
      assert.equal(response.statusCode, 200, `${what}: ${response.body}`);
      assert.equal((await validate(token)).json().active, true, what);
    };
    /** A token signed by the server's own key over a genuine token's claims with some changed: it has a live row. */
    const serverSigned = async (payload: JWTPayload) => {
      const { kid, privateKey } = await h.runtime.services.keys.signingKey();
      return new SignJWT(payload).setProtectedHeader({ alg: 'EdDSA', typ: 'JWT', kid }).sign(privateKey);
    };

    before(async () => {
      h = await createHarness(dialect);
      await h.createAccount('sam');
    });
    after(() => h.close());

    test('of the 16 spellings only the canonical one works, on /v1/me and on validate; checked canonical first, so the cache is warm', async () => {
      const token = await h.login('sam', USER_PASSWORD);
      const [canonical, ...others] = spellings(token);
      assert.equal(canonical, token);
      await accepted(token, 'the canonical spelling');
      for (const variant of others) await refused(variant, `spelling ${variant.at(-1)}`);
      await accepted(token, 'the canonical spelling, still');
    });

    test('a variant presented first does not poison the canonical token, and the canonical one then does not open the variant', async () => {
      const token = await h.login('sam', USER_PASSWORD);
      const variant = spellings(token)[9] as string;
      await refused(variant, 'variant before the canonical token was ever seen');
      await accepted(token, 'the canonical token');
      await refused(variant, 'variant after');
    });

    test('padding, the standard base64 alphabet, stray characters and whitespace are refused', async () => {
      // A signature holding '-' or '_' shows the standard alphabet ('+', '/') decoding to the same bytes.
      let token = await h.login('sam', USER_PASSWORD);
      for (let i = 0; i < 30 && !/[-_]/.test(token.split('.')[2] as string); i++) token = await h.login('sam', USER_PASSWORD);
      const signature = token.split('.')[2] as string;
      assert.match(signature, /[-_]/, 'a signature with - or _ (30 logins)');
      const standard = token.slice(0, -signature.length) + signature.replaceAll('-', '+').replaceAll('_', '/');
      assert.deepEqual(Buffer.from(standard.split('.')[2] as string, 'base64url'), Buffer.from(signature, 'base64url'), 'the same bytes');
      // /v1/me's bearer syntax already refuses some of these; validate takes any string, so they reach the token check.
      for (const [what, variant] of [
        ['== padding', `${token}==`],
        ['= padding', `${token}=`],
        ['the standard alphabet', standard],
        ['a trailing newline', `${token}\n`],
        ['a trailing space', `${token} `],
        ['a leading space', ` ${token}`],
        ['a dot at the end', `${token}.`],
      ] as const) {
        await refused(variant, what);
      }
      await accepted(token, 'the canonical token');
    });

    test('a signature one character short or long is refused as malformed', async () => {
      const token = await h.login('sam', USER_PASSWORD);
      await refused(token.slice(0, -1), 'one character short');
      await refused(`${token}A`, 'one character long');
      await accepted(token, 'the canonical token');
    });

    test('an iat 61 s ahead is refused (iat_in_future); 59 s ahead is accepted', async () => {
      // On a whole second, so that "61 s ahead" is exactly 61 s.
      h.clock.set(Math.ceil(h.clock.now() / 1000) * 1000);
      const claims = decodeJwt(await h.login('sam', USER_PASSWORD));
      const now = h.clock.now() / 1000;
      await refused(await serverSigned({ ...claims, iat: now + 61 }), 'iat 61 s ahead', 'iat_in_future');
      await refused(await serverSigned({ ...claims, iat: now + 3600 }), 'iat an hour ahead', 'iat_in_future');
      await accepted(await serverSigned({ ...claims, iat: now + 59 }), 'iat 59 s ahead');
      await accepted(await serverSigned({ ...claims, iat: now + 60 }), 'iat 60 s ahead');
    });
  });
}
