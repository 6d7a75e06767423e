import assert from 'node:assert/strict';
import { sign } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { decodeJwt, decodeProtectedHeader, type JWTPayload } from 'jose';
import type { TOKEN_FAILURES } from '../../src/domain/tokens.ts';
import { lastAuditSeq, validationFailures } from '../support/audit.ts';
import { DIALECTS } from '../support/databases.ts';
import { USER_PASSWORD, createHarness, type Harness } from '../support/harness.ts';
import { assertProblem } from '../support/inspect.ts';

/**
 * Issue 7 item 14: controls of token verification (SECURITY.md §16, §17, §40) that a deliberate break of src/ once
 * survived, each with a token the server's own key really signed, so that only the control under test refuses it.
 * Every token is presented on GET /v1/me and on POST /v1/token/validate.
 */

const b64url = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');

for (const dialect of DIALECTS) {
  describe(`token verification controls a break would survive without these tests [${dialect}]`, () => {
    let h: Harness;
    /** A genuine session token of `nia`, its header and claims (its row is live). */
    let token: string;
    let header: Record<string, unknown>;
    let claims: JWTPayload & Record<string, unknown>;

    const me = (candidate: string) => h.request({ method: 'GET', url: '/v1/me', token: candidate });
    const validate = (candidate: string) => h.request({ method: 'POST', url: '/v1/token/validate', body: { token: candidate } });
    const refused = async (candidate: string, what: string, reason?: (typeof TOKEN_FAILURES)[number]) => {
      assertProblem(await me(candidate), { status: 401, code: 'unauthenticated' });
      const since = await lastAuditSeq(h);
      const response = await validate(candidate);
      assert.equal(response.body, '{"active":false}', what);
      const { reasons } = await validationFailures(h, since);
      assert.equal(reasons.length, 1, what);
      if (reason !== undefined) assert.equal(reasons[0], reason, what);
    };
    const accepted = async (candidate: string, what: string) => {
      const response = await me(candidate);
      assert.equal(response.statusCode, 200, `${what}: ${response.body}`);
      assert.equal((await validate(candidate)).json().active, true, what);
    };
    /**
     * Signs exactly this header and payload with the server's current private key, whatever the header says: the
     * signature is genuine, so a refusal can only come from the header or claim checks.
     */
    const serverSigned = async (protectedHeader: Record<string, unknown>, payload: Record<string, unknown>) => {
      const { privateKey } = await h.runtime.services.keys.signingKey();
      const input = `${b64url(protectedHeader)}.${b64url(payload)}`;
      return `${input}.${sign(null, Buffer.from(input), privateKey).toString('base64url')}`;
    };

    before(async () => {
      h = await createHarness(dialect);
      await h.createAccount('nia');
      token = await h.login('nia', USER_PASSWORD);
      header = decodeProtectedHeader(token) as Record<string, unknown>;
      claims = decodeJwt(token) as JWTPayload & Record<string, unknown>;
    });
    after(() => h.close());

    test('control: the same claims and header, signed this way, are accepted', async () => {
      await accepted(await serverSigned(header, claims), 'genuine header and claims');
    });

    test('the algorithms pin: alg "Ed25519" (the newer name of the same algorithm) signed by the server key is refused', async () => {
      assert.equal(header['alg'], 'EdDSA');
      await refused(await serverSigned({ ...header, alg: 'Ed25519' }, claims), 'alg Ed25519', 'bad_signature');
    });

    test('alg none, with a genuine server signature over that header, is refused', async () => {
      for (const alg of ['none', 'None']) await refused(await serverSigned({ ...header, alg }, claims), `alg ${alg}`, 'bad_signature');
    });

    test('every claim check refuses at verification (invalid_claims), before the row lookup could hide its absence', async () => {
      // Without requiredClaims jti or sub, the row lookup alone would refuse these as unknown_token: the pin would
      // be gone and no answer would change. The audit reason shows which check refused.
      for (const claim of ['exp', 'iat', 'jti', 'sub']) {
        const { [claim]: _dropped, ...rest } = claims;
        await refused(await serverSigned(header, rest), `missing ${claim}`, 'invalid_claims');
      }
      await refused(await serverSigned(header, { ...claims, iss: 'https://evil.example' }), 'foreign iss', 'invalid_claims');
      await refused(await serverSigned(header, { ...claims, aud: 'another-app' }), 'foreign aud', 'invalid_claims');
      await refused(await serverSigned({ ...header, typ: 'at+jwt' }, claims), 'typ at+jwt', 'invalid_claims');
    });

    test('the clock tolerance is 5 s: an nbf or JWT exp 4 s off is forgiven, 6 s off is not', async () => {
      h.clock.set(Math.ceil(h.clock.now() / 1000) * 1000 + 1000);
      const now = h.clock.now() / 1000;
      await accepted(await serverSigned(header, { ...claims, nbf: now + 4 }), 'nbf 4 s ahead');
      await refused(await serverSigned(header, { ...claims, nbf: now + 6 }), 'nbf 6 s ahead', 'invalid_claims');
      // The row still lives for days: only the JWT exp and its tolerance decide.
      await accepted(await serverSigned(header, { ...claims, exp: now - 4 }), 'exp 4 s ago');
      await refused(await serverSigned(header, { ...claims, exp: now - 6 }), 'exp 6 s ago', 'expired');
    });

    test('a token whose signature check is remembered still expires at its JWT exp, though its row lives on', async () => {
      const saved = h.clock.now();
      try {
        const short = await serverSigned(header, { ...claims, exp: Math.floor(saved / 1000) + 60 });
        await accepted(short, 'before its exp (and now remembered)');
        h.clock.advance(66_000);
        await refused(short, 'past its exp and the tolerance, from the cache', 'expired');
        await accepted(token, 'the genuine token, whose exp is days away');
      } finally {
        h.clock.set(saved);
      }
    });

    test('a token naming an unknown kid sends the server to the database at most once a second', async () => {
      const { store } = h.runtime.database;
      const list = store.keys.list.bind(store.keys);
      let reads = 0;
      store.keys.list = () => {
        reads += 1;
        return list();
      };
      try {
        h.clock.advance(1_000);
        for (let i = 0; i < 10; i++) await refused(await serverSigned({ ...header, kid: `unknown-${i}` }, claims), `unknown kid ${i}`, 'unknown_key');
        assert.equal(reads, 1, 'one reload for ten unknown kids within a second');
        h.clock.advance(1_000);
        await refused(await serverSigned({ ...header, kid: 'unknown-later' }, claims), 'unknown kid a second later', 'unknown_key');
        assert.equal(reads, 2);
      } finally {
        store.keys.list = list;
      }
    });
  });
}
