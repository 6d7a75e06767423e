import assert from 'node:assert/strict';
import { generateKeyPairSync, randomUUID } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { SignJWT, createLocalJWKSet, decodeJwt, decodeProtectedHeader, exportJWK, jwtVerify, type JWTPayload } from 'jose';
import { isMciasError } from '../../src/domain/errors.ts';
import { createRuntime, type Runtime } from '../../src/server.ts';
import { DIALECTS } from '../support/databases.ts';
import { USER_PASSWORD, createHarness, waitOutCheckCache, type Harness } from '../support/harness.ts';
import { forgedTokens } from '../support/forged-tokens.ts';
import { issueToken } from '../support/inspect.ts';

/** SECURITY.md §16 and §17, docs/api.md token claims: what a token says, and every way to forge or outlive one. */

const DAY_MS = 86_400_000;
const b64url = (value: unknown) => Buffer.from(typeof value === 'string' ? value : JSON.stringify(value)).toString('base64url');
const compact = (header: object, payload: object, signature: string | Buffer = '') =>
  `${b64url(header)}.${b64url(payload)}.${typeof signature === 'string' ? signature : signature.toString('base64url')}`;

for (const dialect of DIALECTS) {
  describe(`token issue and verification [${dialect}]`, () => {
    let h: Harness;
    /** A genuine session token of `tina`, its header and claims. */
    let token: string;
    let header: Record<string, unknown>;
    let claims: JWTPayload & Record<string, unknown>;

    const rejects = async (candidate: string, what: string) => {
      await assert.rejects(h.principal(candidate), (error) => isMciasError(error, 'unauthenticated'), what);
      const response = await h.request({ method: 'GET', url: '/v1/me', headers: { authorization: `Bearer ${candidate}` } });
      // Some forgeries are not even shaped like a bearer token; either way the caller is unauthenticated.
      assert.equal(response.statusCode, 401, what);
      assert.equal(response.json().code, 'unauthenticated', what);
    };
    /** Signs claims with the server's own current key, as a token it issued would be. */
    const serverSigned = async (payload: Record<string, unknown>, protectedHeader: Record<string, unknown> = {}) => {
      const { kid, privateKey } = (await h.runtime.services.keys.signingKey());
      return new SignJWT(payload).setProtectedHeader({ alg: 'EdDSA', typ: 'JWT', kid, ...protectedHeader }).sign(privateKey);
    };

    before(async () => {
      h = await createHarness(dialect);
      await h.createAccount('tina');
      await h.createAccount('other');
      await h.createAccount('gizmo', 'system');
      token = await h.login('tina', USER_PASSWORD);
      header = decodeProtectedHeader(token) as Record<string, unknown>;
      claims = decodeJwt(token) as JWTPayload & Record<string, unknown>;
    });
    after(() => h.close());

    test("the header is exactly alg EdDSA, typ JWT and the signing kid", async () => {
      assert.deepEqual(header, { alg: 'EdDSA', typ: 'JWT', kid: (await h.runtime.services.keys.signingKey()).kid });
    });

    test('the claims are iss, sub, aud, iat, nbf, exp, jti, username, kind and roles, with the right values', async () => {
      assert.deepEqual(Object.keys(claims).sort(), ['aud', 'exp', 'iat', 'iss', 'jti', 'kind', 'nbf', 'roles', 'sub', 'username']);
      const principal = await h.principal(token);
      assert.equal(claims.iss, h.config.tokens.issuer);
      assert.equal(claims.aud, 'mcias');
      assert.equal(claims.sub, principal.account.id);
      assert.equal(claims.jti, principal.token.jti);
      assert.match(String(claims.jti), /^[0-9a-f-]{36}$/);
      assert.equal(claims['username'], 'tina');
      assert.equal(claims['kind'], 'human');
      assert.deepEqual(claims['roles'], []);
      const now = Math.floor(h.clock.now() / 1000);
      assert.equal(claims.iat, now);
      assert.equal(claims.nbf, now);
      assert.equal(claims.exp, now + (30 * DAY_MS) / 1000);
    });

    test("a system account's token says kind system and carries its roles", async () => {
      assert.equal((await h.request({ method: 'PUT', url: '/v1/accounts/gizmo/roles/admin', token: h.adminToken })).statusCode, 204);
      const service = decodeJwt(await issueToken(h, 'gizmo'));
      assert.equal(service['kind'], 'system');
      assert.equal(service['username'], 'gizmo');
      assert.deepEqual(service['roles'], ['admin']);
    });

    test('every token gets its own jti', async () => {
      const jtis = new Set<unknown>();
      for (let i = 0; i < 5; i++) jtis.add(decodeJwt(await h.login('tina', USER_PASSWORD)).jti);
      assert.equal(jtis.size, 5);
    });

    test('the JWKS publishes the signing key, without private parts, and a token verifies offline against it', async () => {
      const response = await h.request({ method: 'GET', url: '/.well-known/jwks.json' });
      assert.equal(response.statusCode, 200);
      const jwks = response.json() as { keys: Record<string, unknown>[] };
      const key = jwks.keys.find((k) => k['kid'] === header['kid']);
      assert.ok(key, 'the signing key is published');
      assert.equal(key['kty'], 'OKP');
      assert.equal(key['crv'], 'Ed25519');
      assert.equal(key['alg'], 'EdDSA');
      for (const k of jwks.keys) assert.equal(k['d'], undefined, 'a private key member is published');
      const { payload, protectedHeader } = await jwtVerify(token, createLocalJWKSet(jwks as never), {
        issuer: h.config.tokens.issuer,
        audience: 'mcias',
        algorithms: ['EdDSA'],
        currentDate: new Date(h.clock.now()),
      });
      assert.equal(payload.sub, claims.sub);
      assert.equal(protectedHeader.kid, header['kid']);
    });

    test('control: the genuine token, and its claims re-signed with the server key, authenticate', async () => {
      assert.equal((await h.principal(token)).account.username, 'tina');
      assert.equal((await h.principal(await serverSigned(claims))).account.username, 'tina');
    });

    test('every token of the shared forged-token corpus is rejected (the SDK verify test uses the same corpus)', async () => {
      const publicKey = await h.runtime.services.keys.verificationKey(header['kid'] as string);
      assert.ok(publicKey);
      const corpus = await forgedTokens({ token, publicKey, sign: serverSigned, now: h.clock.now() });
      assert.ok(corpus.length > 60, 'the corpus is complete');
      for (const { what, token: forged } of corpus) await rejects(forged, what);
    });

    test('alg none, in any spelling, is rejected', async () => {
      for (const alg of ['none', 'noNE', 'None', 'NONE']) {
        await rejects(compact({ ...header, alg }, claims), `alg ${alg}`);
        await rejects(compact({ ...header, alg }, claims, token.split('.')[2] as string), `alg ${alg} with the real signature`);
      }
    });

    test('one changed payload byte, with the original signature, is rejected', async () => {
      const [h64, p64, s64] = token.split('.') as [string, string, string];
      const json = Buffer.from(p64, 'base64url').toString('utf8');
      for (const [from, to] of [
        ['"tina"', '"tinb"'],
        ['"roles":[]', '"roles":[1]'],
      ] as const) {
        assert.ok(json.includes(from));
        await rejects(`${h64}.${Buffer.from(json.replace(from, to)).toString('base64url')}.${s64}`, `payload ${from} → ${to}`);
      }
      // And a changed signature byte.
      const flipped = Buffer.from(s64, 'base64url');
      flipped[5] = (flipped[5] as number) ^ 0x01;
      await rejects(`${h64}.${p64}.${flipped.toString('base64url')}`, 'a flipped signature bit');
    });

    test('a foreign audience or issuer is rejected even with a genuine signature', async () => {
      await rejects(await serverSigned({ ...claims, aud: 'another-service' }), 'foreign aud');
      await rejects(await serverSigned({ ...claims, aud: ['another-service'] }), 'foreign aud array');
      await rejects(await serverSigned({ ...claims, iss: 'https://evil.example' }), 'foreign iss');
    });

    test('a missing exp, iat, jti or sub is rejected even with a genuine signature', async () => {
      for (const claim of ['exp', 'iat', 'jti', 'sub', 'aud', 'iss']) {
        const { [claim]: _dropped, ...rest } = claims;
        await rejects(await serverSigned(rest), `missing ${claim}`);
      }
    });

    test('an exp in the past or an nbf in the future is rejected even with a genuine signature', async () => {
      const now = Math.floor(h.clock.now() / 1000);
      await rejects(await serverSigned({ ...claims, exp: now - 60 }), 'expired exp');
      await rejects(await serverSigned({ ...claims, nbf: now + 3600 }), 'future nbf');
    });

    test('a typ other than JWT is rejected', async () => {
      await rejects(await serverSigned(claims, { typ: 'at+jwt' }), 'typ at+jwt');
    });

    test('a token signed by another Ed25519 key under the server kid is rejected', async () => {
      const { privateKey } = generateKeyPairSync('ed25519');
      const forged = await new SignJWT(claims).setProtectedHeader({ alg: 'EdDSA', typ: 'JWT', kid: header['kid'] as string }).sign(privateKey);
      await rejects(forged, 'foreign key, server kid');
    });

    test('keys named by jwk, jku or x5u headers are ignored: tokens signed by them are rejected', async () => {
      const { privateKey, publicKey } = generateKeyPairSync('ed25519');
      const attackerJwk = { ...(await exportJWK(publicKey)), kid: 'attacker' };
      const variants: [string, Record<string, unknown>][] = [
        ['embedded jwk with the server kid', { kid: header['kid'], jwk: attackerJwk }],
        ['embedded jwk with its own kid', { kid: 'attacker', jwk: attackerJwk }],
        ['embedded jwk without a kid', { jwk: attackerJwk }],
        ['jku to another host with the server kid', { kid: header['kid'], jku: 'https://evil.example/jwks.json' }],
        ['jku to another host with its own kid', { kid: 'attacker', jku: 'https://evil.example/jwks.json' }],
        ['x5u to another host', { kid: header['kid'], x5u: 'https://evil.example/cert.pem' }],
      ];
      for (const [what, extra] of variants) {
        const forged = await new SignJWT(claims).setProtectedHeader({ alg: 'EdDSA', typ: 'JWT', ...extra } as never).sign(privateKey);
        await rejects(forged, what);
      }
    });

    test("a genuine signature over a jti the server never issued, or over another account's sub, is rejected", async () => {
      await rejects(await serverSigned({ ...claims, jti: randomUUID() }), 'unknown jti');
      const other = await h.runtime.services.accounts.get('other');
      await rejects(await serverSigned({ ...claims, sub: other.id }), "another account's sub on tina's jti");
      await rejects(await serverSigned({ ...claims, sub: (await h.runtime.services.accounts.get('admin')).id, roles: ['admin'] }), 'sub of the admin');
    });

    test('malformed compact forms are rejected', async () => {
      const parts = token.split('.');
      for (const candidate of [parts.slice(0, 2).join('.'), `${token}.extra.part`, `${parts[0]}..${parts[2]}`, `..`, 'e30.e30.']) {
        await rejects(candidate, candidate.slice(0, 30));
      }
    });

    test('a revoked token is rejected', async () => {
      const victim = await h.login('tina', USER_PASSWORD);
      assert.equal((await h.request({ method: 'POST', url: '/v1/auth/logout', token: victim })).statusCode, 204);
      await rejects(victim, 'revoked by logout');
    });

    test('a token whose row says expired is rejected, though its JWT exp has not passed', async () => {
      const victim = await h.login('tina', USER_PASSWORD);
      const jti = decodeJwt(victim).jti as string;
      await h.runtime.database.db.updateTable('tokens').set({ expires_at: h.clock.now() - 1 }).where('jti', '=', jti).execute();
      await rejects(victim, 'row expired');
    });

    test('a token of a disabled account is rejected, whether or not its row was revoked', async () => {
      await h.createAccount('dana');
      const byApi = await h.login('dana', USER_PASSWORD);
      assert.equal((await h.request({ method: 'PATCH', url: '/v1/accounts/dana', token: h.adminToken, body: { status: 'disabled' } })).statusCode, 200);
      await rejects(byApi, 'disabled through the API');

      await h.createAccount('dora');
      const direct = await h.login('dora', USER_PASSWORD);
      // Status changed without touching the token rows: the account check alone must refuse it.
      await h.runtime.database.db.updateTable('accounts').set({ status: 'disabled' }).where('username', '=', 'dora').execute();
      await rejects(direct, 'disabled directly');
      await h.runtime.database.db.updateTable('accounts').set({ status: 'active' }).where('username', '=', 'dora').execute();
      assert.equal((await h.principal(direct)).account.username, 'dora');
    });

    test('a token of a deleted account is rejected', async () => {
      await h.createAccount('dylan');
      const victim = await h.login('dylan', USER_PASSWORD);
      assert.equal((await h.request({ method: 'DELETE', url: '/v1/accounts/dylan', token: h.adminToken })).statusCode, 204);
      await rejects(victim, 'deleted account');
    });

    test('a token is accepted until its expiry and rejected after it', async () => {
      const saved = h.clock.now();
      try {
        const fresh = await h.login('tina', USER_PASSWORD);
        h.clock.advance(30 * DAY_MS - 60_000);
        assert.equal((await h.principal(fresh)).account.username, 'tina');
        h.clock.advance(60_000);
        await rejects(fresh, 'at its expiry');
        h.clock.advance(DAY_MS);
        await rejects(fresh, 'a day after its expiry');
      } finally {
        h.clock.set(saved);
      }
    });

    test('a token is not accepted before it was issued (nbf), beyond the clock tolerance', async () => {
      const saved = h.clock.now();
      try {
        const fresh = await h.login('tina', USER_PASSWORD);
        h.clock.advance(-60_000);
        await rejects(fresh, 'a minute before nbf');
      } finally {
        h.clock.set(saved);
      }
    });
  });

  describe(`two instances on one database share revocation and roles, within tokens.check_cache [${dialect}]`, () => {
    let h: Harness;
    let second: Runtime;
    const onSecond = (token: string) => second.services.tokens.authenticate(token);

    before(async () => {
      h = await createHarness(dialect);
      second = await createRuntime(h.config, { clock: h.clock, masterKey: h.masterKey });
      await h.createAccount('ivy');
    });
    after(async () => {
      await second.close();
      await h.close();
    });

    test('a token issued by one instance is accepted by the other', async () => {
      const token = await h.login('ivy', USER_PASSWORD);
      assert.equal((await onSecond(token)).account.username, 'ivy');
    });

    // SECURITY.md §51: each instance remembers a token check for `[tokens] check_cache`; its own writes empty it at
    // once, another instance's show when the entry expires.
    test('a logout on one instance is seen by it at once, and by the other within tokens.check_cache', async () => {
      const token = await h.login('ivy', USER_PASSWORD);
      await onSecond(token);
      await h.principal(token);
      assert.equal((await h.request({ method: 'POST', url: '/v1/auth/logout', token })).statusCode, 204);
      await assert.rejects(h.principal(token), (error) => isMciasError(error, 'unauthenticated'), 'on the instance that logged out');
      await waitOutCheckCache(h.config.tokens.checkCacheMs);
      await assert.rejects(onSecond(token), (error) => isMciasError(error, 'unauthenticated'), 'on the other instance');
    });

    test("a password change through the other instance revokes this instance's other tokens", async () => {
      const kept = await h.login('ivy', USER_PASSWORD);
      const other = await h.login('ivy', USER_PASSWORD);
      await second.services.accounts.changeOwnPassword(
        await onSecond(kept),
        { currentPassword: USER_PASSWORD, newPassword: 'changed on the other instance' },
        { ip: null, userAgent: null, requestId: null },
      );
      await assert.rejects(h.principal(other), (error) => isMciasError(error, 'unauthenticated'));
      assert.equal((await h.principal(kept)).account.username, 'ivy');
    });

    test('a role granted and a status changed on one instance are what the other sees within tokens.check_cache', async () => {
      const token = await issueToken(h, 'ivy');
      await onSecond(token);
      assert.equal((await h.request({ method: 'PUT', url: '/v1/accounts/ivy/roles/admin', token: h.adminToken })).statusCode, 204);
      assert.deepEqual((await h.principal(token)).account.roles, ['admin'], 'on the instance that granted it, at once');
      await waitOutCheckCache(h.config.tokens.checkCacheMs);
      assert.deepEqual((await onSecond(token)).account.roles, ['admin']);
      assert.equal((await h.request({ method: 'PATCH', url: '/v1/accounts/ivy', token: h.adminToken, body: { status: 'disabled' } })).statusCode, 200);
      await assert.rejects(h.principal(token), (error) => isMciasError(error, 'unauthenticated'), 'on the instance that disabled it, at once');
      await waitOutCheckCache(h.config.tokens.checkCacheMs);
      await assert.rejects(onSecond(token), (error) => isMciasError(error, 'unauthenticated'));
    });
  });

  describe(`with tokens.check_cache = 0s, another instance sees a change at once [${dialect}]`, () => {
    let h: Harness;
    let second: Runtime;

    before(async () => {
      h = await createHarness(dialect, { config: { tokens: { check_cache: '0s' } } });
      second = await createRuntime(h.config, { clock: h.clock, masterKey: h.masterKey });
      await h.createAccount('otto');
    });
    after(async () => {
      await second.close();
      await h.close();
    });

    test('a logout on one instance is seen by the next check on the other, with no wait', async () => {
      const token = await h.login('otto', USER_PASSWORD);
      assert.equal((await second.services.tokens.authenticate(token)).account.username, 'otto');
      assert.equal((await h.request({ method: 'POST', url: '/v1/auth/logout', token })).statusCode, 204);
      await assert.rejects(second.services.tokens.authenticate(token), (error) => isMciasError(error, 'unauthenticated'));
    });
  });
}
