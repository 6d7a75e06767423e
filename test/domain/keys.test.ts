import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { createLocalJWKSet, decodeJwt, decodeProtectedHeader, jwtVerify } from 'jose';
import { buildApp } from '../../src/http/app.ts';
import { createRuntime, type Runtime } from '../../src/server.ts';
import { assertAuditHasNoSecrets, auditRows, lastAuditSeq, validationFailures } from '../support/audit.ts';
import { DIALECTS } from '../support/databases.ts';
import { ADMIN_PASSWORD, USER_PASSWORD, createHarness, waitOutCheckCache, type Harness } from '../support/harness.ts';
import { assertProblem } from '../support/inspect.ts';

/**
 * Signing-key rotation (docs/api.md POST /v1/keys/rotate): retired keys keep verifying, and stay in the JWKS, until the
 * last token they signed expires; then they are dropped and deleted. Tokens of a deleted key are inactive. Several
 * instances on one database see each other's rotations (SECURITY.md §16, §17).
 */

const DAY_MS = 86_400_000;
const jtiOf = (token: string) => decodeJwt(token).jti as string;
const kidOf = (token: string) => decodeProtectedHeader(token).kid as string;

async function jwksKids(app: FastifyInstance): Promise<string[]> {
  const response = await app.inject({ method: 'GET', url: '/.well-known/jwks.json' });
  assert.equal(response.statusCode, 200);
  const keys = (response.json() as { keys: Record<string, unknown>[] }).keys;
  for (const key of keys) assert.equal(key['d'], undefined, 'a private key member is published');
  return keys.map((k) => k['kid'] as string).sort();
}

async function keyRows(h: Harness): Promise<{ kid: string; retired: boolean }[]> {
  const rows = await h.runtime.database.db.selectFrom('signing_keys').select(['kid', 'retired_at']).execute();
  return rows.map((r) => ({ kid: r.kid, retired: r.retired_at !== null })).sort((a, b) => a.kid.localeCompare(b.kid));
}

function validator(h: Harness) {
  return async (token: string): Promise<boolean> => {
    const response = await h.request({ method: 'POST', url: '/v1/token/validate', body: { token } });
    assert.equal(response.statusCode, 200);
    return (response.json() as { active: boolean }).active;
  };
}

for (const dialect of DIALECTS) {
  describe(`signing-key rotation [${dialect}]`, () => {
    let h: Harness;
    let isActive: (token: string) => Promise<boolean>;
    const issued: string[] = [];
    const login = async (username: string, password = USER_PASSWORD) => {
      const token = await h.login(username, password);
      issued.push(token);
      return token;
    };
    const rotate = async (token: string) => {
      const response = await h.request({ method: 'POST', url: '/v1/keys/rotate', token });
      assert.equal(response.statusCode, 200, response.body);
      const body = response.json() as { kid: string };
      assert.deepEqual(Object.keys(body), ['kid']);
      return body.kid;
    };

    before(async () => {
      h = await createHarness(dialect);
      isActive = validator(h);
      await h.createAccount('kim');
    });
    after(async () => {
      await assertAuditHasNoSecrets(h, [...issued, h.adminToken], [USER_PASSWORD, ADMIN_PASSWORD, h.masterKey.toString('base64'), h.masterKey.toString('hex')]);
      await h.close();
    });

    test('POST /v1/keys/rotate returns a new kid; the JWKS then has both; earlier tokens still work; new ones carry the new kid', async () => {
      const oldKid = (await h.runtime.services.keys.signingKey()).kid;
      const before = await login('kim');
      assert.equal(kidOf(before), oldKid);
      const since = await lastAuditSeq(h);

      const kid = await rotate(h.adminToken);
      assert.notEqual(kid, oldKid);
      assert.equal((await h.runtime.services.keys.signingKey()).kid, kid, 'this instance signs with the new key at once');
      assert.deepEqual(await jwksKids(h.app), [kid, oldKid].sort());
      assert.deepEqual(await keyRows(h), [{ kid, retired: false }, { kid: oldKid, retired: true }].sort((a, b) => a.kid.localeCompare(b.kid)));

      assert.equal(await isActive(before), true);
      assert.equal((await h.request({ method: 'GET', url: '/v1/me', token: before })).statusCode, 200);
      const after = await login('kim');
      assert.equal(kidOf(after), kid);
      assert.equal(await isActive(after), true);

      // Both verify offline against the published set, as an app holding the JWKS would check them.
      const jwks = createLocalJWKSet((await h.app.inject({ method: 'GET', url: '/.well-known/jwks.json' })).json());
      for (const token of [before, after]) {
        const { payload } = await jwtVerify(token, jwks, { algorithms: ['EdDSA'], audience: 'mcias', currentDate: new Date(h.clock.now()) });
        assert.equal(payload.jti, jtiOf(token));
      }

      const rows = (await auditRows(h, { after: since })).filter((r) => r.type.startsWith('signing_key_'));
      assert.deepEqual(rows.map((r) => r.type), ['signing_key_rotated'], 'the old key is still in use: nothing is deleted');
      assert.equal(rows[0]?.actor_username, 'admin');
      assert.deepEqual(rows[0]?.details, { kid, retired: oldKid });
    });

    test('a token whose signing key was deleted is inactive, even though its signature was checked before', async () => {
      const retiredKid = (await h.runtime.services.keys.signingKey()).kid;
      const victim = await login('kim');
      await rotate(h.adminToken);
      assert.equal(kidOf(victim), retiredKid);
      // Validated once: its signature is now remembered, so only the key's row can refuse it from here on.
      assert.equal(await isActive(victim), true);

      await h.runtime.database.db.deleteFrom('signing_keys').where('kid', '=', retiredKid).execute();
      const since = await lastAuditSeq(h);
      assert.equal(await isActive(victim), false);
      assertProblem(await h.request({ method: 'GET', url: '/v1/me', token: victim }), { status: 401, code: 'unauthenticated' });
      assert.deepEqual((await validationFailures(h, since)).reasons, ['unknown_token']);

      // A fresh instance, with nothing remembered, refuses it as well.
      const other = await createRuntime(h.config, { clock: h.clock, masterKey: h.masterKey });
      try {
        const result = await other.services.tokens.check(victim);
        assert.deepEqual(result, { ok: false, reason: 'unknown_key' });
      } finally {
        await other.close();
      }
    });

    // The rotations queue on the signing_keys lock; without it, on PostgreSQL, rotations that overlapped found the
    // same current key, one retired it, the others retired nothing, and each left a current key of its own.
    test('concurrent rotations leave one current key, each retiring the key the one before it created', async () => {
      const since = await lastAuditSeq(h);
      const [first] = (await keyRows(h)).filter((k) => !k.retired).map((k) => k.kid);
      const kids = await Promise.all(Array.from({ length: 4 }, () => h.runtime.services.keys.rotate(undefined, undefined)));
      const current = (await keyRows(h)).filter((k) => !k.retired).map((k) => k.kid);
      assert.equal(current.length, 1, `current keys: ${current.join(', ')}`);
      const retired = (await auditRows(h, { after: since })).filter((r) => r.type === 'signing_key_rotated').map((r) => r.details['retired']);
      assert.deepEqual(retired.toSorted(), [first, ...kids].filter((kid) => kid !== current[0]).sort());
    });
  });

  describe(`retired keys leave the JWKS when their last token expires, and are then deleted [${dialect}]`, () => {
    let h: Harness;
    let isActive: (token: string) => Promise<boolean>;
    const issued: string[] = [];
    const rotate = async (token: string) => {
      const response = await h.request({ method: 'POST', url: '/v1/keys/rotate', token });
      assert.equal(response.statusCode, 200, response.body);
      return (response.json() as { kid: string }).kid;
    };

    before(async () => {
      h = await createHarness(dialect);
      isActive = validator(h);
      await h.createAccount('kit');
    });
    after(async () => {
      await assertAuditHasNoSecrets(h, [...issued, h.adminToken], [USER_PASSWORD, ADMIN_PASSWORD]);
      await h.close();
    });

    test('publish while in use, drop after expiry, delete at the next rotation and at start-up', async () => {
      const start = h.clock.now();
      const k1 = (await h.runtime.services.keys.signingKey()).kid;
      const early = await h.login('kit', USER_PASSWORD);
      issued.push(early);

      // Ten days in, rotate with the admin's K1 token (it, and kit's, expire at start + 30d).
      h.clock.set(start + 10 * DAY_MS);
      const k2 = await rotate(h.adminToken);
      assert.deepEqual(await jwksKids(h.app), [k1, k2].sort());

      h.clock.set(start + 30 * DAY_MS - 60_000);
      assert.deepEqual(await jwksKids(h.app), [k1, k2].sort(), 'K1 is published while a token it signed is unexpired');
      assert.equal(await isActive(early), true);

      h.clock.set(start + 30 * DAY_MS + 60_000);
      assert.equal(await isActive(early), false);
      assert.deepEqual(await jwksKids(h.app), [k2], 'K1 leaves the JWKS when its last token expires');
      assert.deepEqual((await keyRows(h)).map((k) => k.kid).sort(), [k1, k2].sort(), 'its row waits for the next rotation or start-up');

      // The next rotation (by a fresh admin session, signed by K2) deletes K1 and keeps K2, which that session uses.
      const admin = await h.login('admin', ADMIN_PASSWORD);
      issued.push(admin);
      assert.equal(kidOf(admin), k2);
      const since = await lastAuditSeq(h);
      const k3 = await rotate(admin);
      assert.deepEqual(await keyRows(h), [{ kid: k2, retired: true }, { kid: k3, retired: false }].sort((a, b) => a.kid.localeCompare(b.kid)));
      assert.deepEqual(await jwksKids(h.app), [k2, k3].sort());
      const rows = await auditRows(h, { after: since });
      assert.deepEqual(rows.map((r) => r.type).sort(), ['signing_key_deleted', 'signing_key_rotated']);
      assert.deepEqual(rows.find((r) => r.type === 'signing_key_deleted')?.details, { kid: k1 });

      // Revoking K2's last token drops it from the JWKS at once; a new instance starting up deletes its row.
      assert.equal((await h.request({ method: 'POST', url: '/v1/auth/logout', token: admin })).statusCode, 204);
      assert.deepEqual(await jwksKids(h.app), [k3]);
      assert.deepEqual((await keyRows(h)).map((k) => k.kid).sort(), [k2, k3].sort());
      const restarted = await createRuntime(h.config, { clock: h.clock, masterKey: h.masterKey });
      try {
        assert.deepEqual(await keyRows(h), [{ kid: k3, retired: false }]);
        assert.equal((await restarted.services.keys.signingKey()).kid, k3);
      } finally {
        await restarted.close();
      }
      assert.deepEqual((await auditRows(h, { type: 'signing_key_deleted' })).map((r) => r.details['kid']), [k1, k2]);
    });

    test('the current key is published even when no token uses it', async () => {
      const current = (await h.runtime.services.keys.signingKey()).kid;
      const live = await h.runtime.database.db
        .selectFrom('tokens')
        .select('jti')
        .where('kid', '=', current)
        .where('revoked_at', 'is', null)
        .where('expires_at', '>', h.clock.now())
        .execute();
      assert.deepEqual(live, []);
      assert.ok((await jwksKids(h.app)).includes(current));
    });
  });

  describe(`two instances on one database [${dialect}]`, () => {
    let h: Harness;
    let second: Runtime;
    let secondApp: FastifyInstance;
    const onSecond = async (token: string): Promise<boolean> => {
      const response = await secondApp.inject({ method: 'POST', url: '/v1/token/validate', payload: { token } });
      assert.equal(response.statusCode, 200);
      return (response.json() as { active: boolean }).active;
    };
    const loginOnSecond = async (username: string) => {
      const response = await secondApp.inject({ method: 'POST', url: '/v1/auth/login', payload: { username, password: USER_PASSWORD } });
      assert.equal(response.statusCode, 200, response.body);
      return (response.json() as { token: string }).token;
    };

    before(async () => {
      h = await createHarness(dialect);
      second = await createRuntime(h.config, { clock: h.clock, masterKey: h.masterKey });
      secondApp = await buildApp(second.services, { bodyLimit: h.config.server.bodyLimit, trustedProxies: [], rateLimit: h.config.rateLimit, logger: false });
      await h.createAccount('ivy');
    });
    after(async () => {
      await secondApp.close();
      await second.close();
      await h.close();
    });

    // SECURITY.md §51: the instance that made the change sees it at once; the other once its cached check expires.
    test('a revocation on one instance is effective at once there, and on the other within tokens.check_cache', async () => {
      for (const [what, revoke] of [
        ['logout', (token: string) => h.request({ method: 'POST', url: '/v1/auth/logout', token })],
        ['admin revocation', (token: string) => h.request({ method: 'DELETE', url: `/v1/tokens/${jtiOf(token)}`, token: h.adminToken })],
        ['own revocation', (token: string) => h.request({ method: 'DELETE', url: `/v1/me/tokens/${jtiOf(token)}`, token })],
        ['renewal', (token: string) => h.request({ method: 'POST', url: '/v1/auth/renew', token })],
      ] as const) {
        const token = await h.login('ivy', USER_PASSWORD);
        assert.equal(await onSecond(token), true, `${what}: active before`);
        const response = await revoke(token);
        assert.ok(response.statusCode === 204 || response.statusCode === 200, `${what}: ${response.body}`);
        assert.equal(await validator(h)(token), false, `${what}: inactive at once on the instance that revoked it`);
        await waitOutCheckCache(h.config.tokens.checkCacheMs);
        assert.equal(await onSecond(token), false, `${what}: inactive on the other instance within the bound`);
      }
    });

    test("the other instance verifies tokens of the new key at once, and signs with it within 10 s", async () => {
      const k1 = (await second.services.keys.signingKey()).kid;
      const k2 = (await h.request({ method: 'POST', url: '/v1/keys/rotate', token: h.adminToken })).json().kid as string;
      assert.notEqual(k2, k1);
      assert.deepEqual(await jwksKids(secondApp), [k1, k2].sort(), "the other instance's JWKS reads the database");

      // Until its refresh, the other instance still signs with K1, which both instances verify.
      const stale = await loginOnSecond('ivy');
      assert.equal(kidOf(stale), k1);
      assert.equal(await onSecond(stale), true);
      assert.equal((await h.request({ method: 'POST', url: '/v1/token/validate', body: { token: stale } })).json().active, true);

      h.clock.advance(10_000);
      const fresh = await loginOnSecond('ivy');
      assert.equal(kidOf(fresh), k2, 'signs with the new key once 10 s have passed');
      assert.equal((await h.request({ method: 'POST', url: '/v1/token/validate', body: { token: fresh } })).json().active, true);

      // A third key, rotated on the first instance: its tokens reach the other instance before any refresh is due.
      const k3 = (await h.request({ method: 'POST', url: '/v1/keys/rotate', token: h.adminToken })).json().kid as string;
      const newest = await h.login('ivy', USER_PASSWORD);
      assert.equal(kidOf(newest), k3);
      // An unknown kid sends the instance back to the database, at most once a second.
      h.clock.advance(1_000);
      assert.equal(await onSecond(newest), true, 'verified after reloading the keys for an unknown kid');
      assert.equal((await second.services.tokens.authenticate(newest)).account.username, 'ivy');
    });

    test('a key deleted through one instance stops its tokens there at once, and on the other within tokens.check_cache', async () => {
      const retired = (await second.services.keys.signingKey()).kid;
      const token = await loginOnSecond('ivy');
      assert.equal(kidOf(token), retired);
      assert.equal(await onSecond(token), true);
      assert.equal((await h.request({ method: 'POST', url: '/v1/keys/rotate', token: h.adminToken })).statusCode, 200);
      assert.equal(await validator(h)(token), true);
      await h.runtime.database.db.deleteFrom('signing_keys').where('kid', '=', retired).execute();
      assert.equal(await validator(h)(token), false, 'on the instance that deleted it, at once');
      await waitOutCheckCache(h.config.tokens.checkCacheMs);
      assert.equal(await onSecond(token), false, 'on the other instance, within the bound');
    });

    test('a rotation through the domain (as `mciassrv keys rotate` does) is audited without an actor', async () => {
      const since = await lastAuditSeq(h);
      const kid = await second.services.keys.rotate(undefined, undefined);
      const rows = (await auditRows(h, { after: since })).filter((r) => r.type === 'signing_key_rotated');
      assert.equal(rows.length, 1);
      assert.equal(rows[0]?.details['kid'], kid);
      assert.equal(rows[0]?.actor_username, null);
    });
  });
}
