import assert from 'node:assert/strict';
import { createHmac, generateKeyPairSync, randomUUID } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import type { LightMyRequestResponse } from 'fastify';
import { SignJWT, decodeJwt, decodeProtectedHeader, exportJWK, type JWTPayload } from 'jose';
import { TOKEN_FAILURES } from '../../src/domain/tokens.ts';
import { assertAuditHasNoSecrets, auditRows, lastAuditSeq, validationFailures } from '../support/audit.ts';
import { DIALECTS } from '../support/databases.ts';
import { ADMIN_PASSWORD, USER_PASSWORD, createHarness, testConfig, type Harness } from '../support/harness.ts';
import { buildApp } from '../../src/http/app.ts';
import { createRuntime } from '../../src/server.ts';
import { assertProblem, issueToken } from '../support/inspect.ts';

/**
 * docs/api.md "Login and sessions", "Own account" token routes, admin token routes and POST /v1/token/validate;
 * SECURITY.md §16 (forgeries are inactive), 17 (revocation seen on the next validation), 18 (renewal and the
 * absolute session age), 21 (roles and permissions read fresh), 30 (audit rows, no tokens in them).
 */

const HOUR_MS = 3_600_000;
const DAY_MS = 24 * HOUR_MS;
const seconds = (ms: number) => Math.floor(ms / 1000);
const jtiOf = (token: string) => decodeJwt(token).jti as string;
const b64url = (value: unknown) => Buffer.from(typeof value === 'string' ? value : JSON.stringify(value)).toString('base64url');
const TOKEN_INFO_KEYS = ['account', 'expires_at', 'issued_at', 'issued_by', 'jti', 'kind'];

/** Routes and checks every describe below uses; `issued` collects every token for the final audit check. */
function helpers(get: () => Harness) {
  const issued: string[] = [];
  const keep = (token: string) => {
    issued.push(token);
    return token;
  };
  const h = () => get();
  const renew = (token: string) => h().request({ method: 'POST', url: '/v1/auth/renew', token });
  const me = (token: string) => h().request({ method: 'GET', url: '/v1/me', token });
  const validate = (token: string) => h().request({ method: 'POST', url: '/v1/token/validate', body: { token } });
  const login = async (username: string, password = USER_PASSWORD) => keep(await h().login(username, password));
  const tokenRow = (jti: string) => h().runtime.database.db.selectFrom('tokens').selectAll().where('jti', '=', jti).executeTakeFirstOrThrow();

  /** Renewal succeeded: returns the new token after checking the response shape. */
  const renewed = async (token: string): Promise<string> => {
    const response = await renew(token);
    assert.equal(response.statusCode, 200, response.body);
    assert.equal(response.headers['cache-control'], 'no-store');
    const body = response.json() as { token: string; token_type: string; expires_at: string };
    assert.deepEqual(Object.keys(body).sort(), ['expires_at', 'token', 'token_type']);
    assert.equal(body.token_type, 'Bearer');
    assert.equal(seconds(Date.parse(body.expires_at)), decodeJwt(body.token).exp, 'expires_at is the JWT exp');
    return keep(body.token);
  };

  const active = async (token: string) => {
    const response = await validate(token);
    assert.equal(response.statusCode, 200, response.body);
    const body = response.json() as Record<string, unknown>;
    assert.equal(body['active'], true, `expected an active token: ${response.body}`);
    return body;
  };

  /**
   * The token validates as exactly `{"active":false}`, and the failure is audited once, with a reason (the given
   * one, when the cause is unambiguous) and without the token.
   */
  const inactive = async (token: string, what: string, reason?: (typeof TOKEN_FAILURES)[number]) => {
    const since = await lastAuditSeq(h());
    const response = await validate(token);
    assert.equal(response.statusCode, 200, `${what}: ${response.body}`);
    assert.equal(response.body, '{"active":false}', what);
    // Counted in the summary of its address and interval (SECURITY.md §41), which the flush writes as one row.
    const { reasons, rows } = await validationFailures(h(), since);
    assert.deepEqual(
      rows.map((r) => r.type),
      ['failures_summarized'],
      `${what}: one validation failure is summarised`,
    );
    const row = rows[0]!;
    assert.equal(row.outcome, 'failure');
    assert.equal(reasons.length, 1, `${what}: ${reasons.join(', ')}`);
    assert.ok((TOKEN_FAILURES as readonly unknown[]).includes(reasons[0]), `${what}: reason ${String(reasons[0])}`);
    if (reason !== undefined) assert.equal(reasons[0], reason, what);
    if (token.length >= 20) assert.ok(!row.raw.includes(token), `${what}: the audit row holds the token`);
    const signature = token.split('.')[2] ?? '';
    if (signature.length >= 20) assert.ok(!row.raw.includes(signature), `${what}: the audit row holds the signature`);
  };

  return { issued, keep, renew, me, validate, login, tokenRow, renewed, active, inactive };
}

for (const dialect of DIALECTS) {
  describe(`renewal [${dialect}]`, () => {
    let h: Harness;
    const t = helpers(() => h);

    before(async () => {
      // Day-long tokens in a 30-day session, so that renewal visibly extends the expiry.
      h = await createHarness(dialect, { config: { tokens: { user_ttl: '1d', max_session_age: '30d' } } });
      await h.createAccount('rita');
    });
    after(async () => {
      await assertAuditHasNoSecrets(h, t.issued, [USER_PASSWORD, ADMIN_PASSWORD]);
      await h.close();
    });

    test('renew gives a new token with a new jti and a later expiry, and revokes the presented one', async () => {
      const old = await t.login('rita');
      h.clock.advance(HOUR_MS);
      const fresh = await t.renewed(old);
      const [before, now] = [decodeJwt(old), decodeJwt(fresh)];
      assert.notEqual(now.jti, before.jti);
      assert.equal(now.sub, before.sub);
      assert.equal(now.exp, seconds(h.clock.now() + DAY_MS));
      assert.ok((now.exp as number) > (before.exp as number));

      assertProblem(await t.me(old), { status: 401, code: 'unauthenticated' });
      await t.inactive(old, 'the renewed token', 'revoked');
      assert.equal((await t.me(fresh)).statusCode, 200);
      assert.equal((await t.active(fresh))['jti'], now.jti);

      const oldRow = await t.tokenRow(before.jti as string);
      assert.equal(Number(oldRow.revoked_at), h.clock.now());
      assert.equal(oldRow.revoked_reason, 'renewed');
      const newRow = await t.tokenRow(now.jti as string);
      assert.equal(newRow.revoked_at, null);
      assert.equal(newRow.kind, 'session');
      assert.equal(Number(newRow.session_started_at), Number(oldRow.session_started_at), 'the session keeps its start');
    });

    test('renewal is audited with the new jti and the one it replaces', async () => {
      const old = await t.login('rita');
      const since = await lastAuditSeq(h);
      const fresh = await t.renewed(old);
      const rows = await auditRows(h, { after: since });
      assert.deepEqual(rows.map((r) => r.type), ['token_renewed']);
      assert.equal(rows[0]?.outcome, 'success');
      assert.equal(rows[0]?.actor_username, 'rita');
      assert.equal(rows[0]?.subject_username, 'rita');
      assert.deepEqual(rows[0]?.details, { jti: jtiOf(fresh), replaces: jtiOf(old) });
    });

    test('the same token renews once: the second renewal is refused and issues nothing', async () => {
      const old = await t.login('rita');
      const fresh = await t.renewed(old);
      const tokensBefore = await h.runtime.database.db.selectFrom('tokens').select('jti').execute();
      assertProblem(await t.renew(old), { status: 401, code: 'unauthenticated' });
      assert.equal((await h.runtime.database.db.selectFrom('tokens').select('jti').execute()).length, tokensBefore.length);
      assert.equal((await t.me(fresh)).statusCode, 200, 'the failed second renewal leaves the first result alone');
    });

    test('concurrent renewals of one token: exactly one succeeds', async () => {
      const old = await t.login('rita');
      const responses = await Promise.all(Array.from({ length: 6 }, () => t.renew(old)));
      const ok = responses.filter((r) => r.statusCode === 200);
      assert.equal(ok.length, 1, responses.map((r) => `${r.statusCode} ${r.body.slice(0, 80)}`).join('\n'));
      for (const response of responses.filter((r) => r.statusCode !== 200)) assertProblem(response, { status: 401, code: 'unauthenticated' });
      const winner = t.keep((ok[0]!.json() as { token: string }).token);
      await t.active(winner);
      const replacements = await h.runtime.database.db
        .selectFrom('audit_events')
        .select('details')
        .where('type', '=', 'token_renewed')
        .execute();
      assert.equal(replacements.filter((r) => JSON.parse(r.details).replaces === jtiOf(old)).length, 1, 'one renewal recorded');
      // No orphan: only the winner's row was inserted for this renewal.
      const rows = await h.runtime.database.db.selectFrom('tokens').select('jti').where('revoked_at', 'is', null).execute();
      assert.ok(rows.some((r) => r.jti === jtiOf(winner)));
    });

    test('a renewed token carries the current roles in its claims', async () => {
      const old = await t.login('rita');
      assert.equal((await h.request({ method: 'POST', url: '/v1/roles', token: h.adminToken, body: { name: 'editor' } })).statusCode, 201);
      assert.equal((await h.request({ method: 'PUT', url: '/v1/accounts/rita/roles/editor', token: h.adminToken })).statusCode, 204);
      assert.deepEqual(decodeJwt(await t.renewed(old))['roles'], ['editor']);
    });

    test('a revoked, expired or garbage token cannot renew', async () => {
      const revoked = await t.login('rita');
      assert.equal((await h.request({ method: 'POST', url: '/v1/auth/logout', token: revoked })).statusCode, 204);
      assertProblem(await t.renew(revoked), { status: 401, code: 'unauthenticated' });
      assertProblem(await t.renew('garbage'), { status: 401, code: 'unauthenticated' });
      assertProblem(await h.request({ method: 'POST', url: '/v1/auth/renew' }), { status: 401, code: 'unauthenticated' });
      const expiring = await t.login('rita');
      const saved = h.clock.now();
      try {
        h.clock.advance(DAY_MS);
        assertProblem(await t.renew(expiring), { status: 401, code: 'unauthenticated' });
      } finally {
        h.clock.set(saved);
      }
    });
  });

  describe(`the absolute session age caps renewal [${dialect}]`, () => {
    let h: Harness;
    const t = helpers(() => h);
    let admin: () => Promise<string>;

    before(async () => {
      h = await createHarness(dialect, { config: { tokens: { user_ttl: '1d', max_session_age: '3d' } } });
      await h.createAccount('sam');
      await h.createAccount('carrier', 'system');
      admin = () => h.login('admin', ADMIN_PASSWORD);
    });
    after(async () => {
      await assertAuditHasNoSecrets(h, t.issued, [USER_PASSWORD, ADMIN_PASSWORD]);
      await h.close();
    });

    test('daily renewal works, the expiry never passes login + 3d, and the session then ends', async () => {
      const loginAt = h.clock.now();
      const sessionEnd = loginAt + 3 * DAY_MS;
      let token = await t.login('sam');
      assert.equal(decodeJwt(token).exp, seconds(loginAt + DAY_MS));

      // Every 20 hours: 20h, 40h and 60h after login, then 70h. The last two would pass the session end uncapped.
      const expected: [number, number][] = [
        [20 * HOUR_MS, 44 * HOUR_MS],
        [20 * HOUR_MS, 64 * HOUR_MS],
        [20 * HOUR_MS, 72 * HOUR_MS],
        [10 * HOUR_MS, 72 * HOUR_MS],
      ];
      for (const [step, expiry] of expected) {
        h.clock.advance(step);
        token = await t.renewed(token);
        const row = await t.tokenRow(jtiOf(token));
        assert.equal(Number(row.expires_at), loginAt + expiry, `renewed at ${(h.clock.now() - loginAt) / HOUR_MS}h`);
        assert.ok(Number(row.expires_at) <= sessionEnd);
        assert.equal(decodeJwt(token).exp, seconds(loginAt + expiry));
        assert.equal(Number(row.session_started_at), loginAt);
        await t.active(token);
      }

      // At the session end the last token expires with it; nothing renews it.
      h.clock.set(sessionEnd);
      assertProblem(await t.renew(token), { status: 401, code: 'unauthenticated' });
      await t.inactive(token, 'a token at the session end', 'expired');
      h.clock.advance(DAY_MS);
      assertProblem(await t.renew(token), { status: 401, code: 'unauthenticated' });

      // A password login starts a new session.
      const next = await t.login('sam');
      assert.equal((await t.me(next)).statusCode, 200);
      assert.equal(Number((await t.tokenRow(jtiOf(next))).session_started_at), h.clock.now());
    });

    test('a system account renews while active, with no session age', async () => {
      const issue = await h.request({ method: 'POST', url: '/v1/accounts/carrier/token', token: await admin() });
      assert.equal(issue.statusCode, 201, issue.body);
      let token = t.keep((issue.json() as { token: string }).token);
      const issuedAt = h.clock.now();
      for (let day = 1; day <= 10; day++) {
        h.clock.advance(DAY_MS);
        token = await t.renewed(token);
        assert.equal(decodeJwt(token).exp, seconds(h.clock.now() + 30 * DAY_MS), `service token renewed on day ${day}`);
      }
      assert.ok(h.clock.now() - issuedAt > 3 * DAY_MS);
      const body = await t.active(token);
      assert.equal(body['kind'], 'system');
    });
  });

  describe(`renewal with the default settings [${dialect}]`, () => {
    let h: Harness;
    const t = helpers(() => h);

    before(async () => {
      h = await createHarness(dialect);
      await h.createAccount('dot');
    });
    after(() => h.close());

    test('tokens and sessions both last 30 days: a renewed token ends where the session ends, login + 30d', async () => {
      assert.equal(h.config.tokens.userTtlMs, 30 * DAY_MS);
      assert.equal(h.config.tokens.maxSessionAgeMs, 30 * DAY_MS);
      const loginAt = h.clock.now();
      let token = await t.login('dot');
      for (const step of [HOUR_MS, 10 * DAY_MS, 19 * DAY_MS]) {
        h.clock.advance(step);
        token = await t.renewed(token);
        assert.equal(Number((await t.tokenRow(jtiOf(token))).expires_at), loginAt + 30 * DAY_MS);
      }
      h.clock.set(loginAt + 30 * DAY_MS);
      assertProblem(await t.renew(token), { status: 401, code: 'unauthenticated' });
    });
  });

  describe(`no token outlives its session, and a lowered session age stops renewal [${dialect}]`, () => {
    let h: Harness;
    const t = helpers(() => h);

    before(async () => {
      // A token lifetime longer than the session: the session age, not the token lifetime, ends the token.
      h = await createHarness(dialect, { config: { tokens: { user_ttl: '5d', max_session_age: '3d' } } });
      await h.createAccount('lee');
    });
    after(() => h.close());

    test('a login token and its renewals expire at the session end, not after the longer token lifetime', async () => {
      const loginAt = h.clock.now();
      const first = await t.login('lee');
      assert.equal(decodeJwt(first).exp, seconds(loginAt + 3 * DAY_MS), 'the login token is capped at the session end');
      h.clock.advance(DAY_MS);
      const renewedOnce = await t.renewed(first);
      assert.equal(decodeJwt(renewedOnce).exp, seconds(loginAt + 3 * DAY_MS), 'capped at the session end, not now + 5d');
    });

    test('after an operator lowers max_session_age, an older session can no longer renew: 401 session_expired, token untouched', async () => {
      const token = await t.login('lee');
      h.clock.advance(2 * DAY_MS);
      // A second instance on the same database, configured with a one-day session age.
      const config = testConfig(h.db, { tokens: { user_ttl: '5d', max_session_age: '1d' } });
      const runtime = await createRuntime(config, { clock: h.clock, masterKey: h.masterKey });
      const app = await buildApp(runtime.services, { bodyLimit: config.server.bodyLimit, trustedProxies: [], rateLimit: config.rateLimit, logger: false });
      try {
        const renew = await app.inject({ method: 'POST', url: '/v1/auth/renew', headers: { authorization: `Bearer ${token}` } });
        const body = assertProblem(renew, { status: 401, code: 'unauthenticated' });
        assert.equal(body['reason'], 'session_expired');
        assert.equal((await t.me(token)).statusCode, 200, 'a refused renewal revokes nothing');
        assert.equal((await t.tokenRow(jtiOf(token))).revoked_at, null);
      } finally {
        await app.close();
        await runtime.close();
      }
    });
  });

  describe(`logout and token listings [${dialect}]`, () => {
    let h: Harness;
    const t = helpers(() => h);
    const myTokens = (token: string) => h.request({ method: 'GET', url: '/v1/me/tokens', token });
    const revokeMine = (token: string, jti: string) => h.request({ method: 'DELETE', url: `/v1/me/tokens/${jti}`, token });
    const jtisOf = (response: LightMyRequestResponse) => (response.json() as { tokens: { jti: string }[] }).tokens.map((x) => x.jti).sort();

    before(async () => {
      h = await createHarness(dialect);
      await h.createAccount('lou');
      await h.createAccount('max');
    });
    after(async () => {
      await assertAuditHasNoSecrets(h, t.issued, [USER_PASSWORD, ADMIN_PASSWORD]);
      await h.close();
    });

    test('logout revokes the presented token only, is audited, and cannot be repeated', async () => {
      const token = await t.login('lou');
      const other = await t.login('lou');
      const since = await lastAuditSeq(h);
      const response = await h.request({ method: 'POST', url: '/v1/auth/logout', token });
      assert.equal(response.statusCode, 204);
      assert.equal(response.body, '');
      assertProblem(await t.me(token), { status: 401, code: 'unauthenticated' });
      await t.inactive(token, 'a logged-out token', 'revoked');
      assert.equal((await t.me(other)).statusCode, 200);
      assert.equal((await t.tokenRow(jtiOf(token))).revoked_reason, 'logout');
      const rows = (await auditRows(h, { after: since })).filter((r) => r.type === 'token_revoked');
      assert.equal(rows.length, 1);
      assert.deepEqual(rows[0]?.details, { jti: jtiOf(token), reason: 'logout' });
      assert.equal(rows[0]?.subject_username, 'lou');
      assertProblem(await h.request({ method: 'POST', url: '/v1/auth/logout', token }), { status: 401, code: 'unauthenticated' });
    });

    test("GET /v1/me/tokens lists the caller's own live tokens: not revoked, not expired, not someone else's", async () => {
      const caller = await t.login('max');
      const live = await t.login('max');
      const revoked = await t.login('max');
      const expired = await t.login('max');
      const others = await t.login('lou');
      assert.equal((await h.request({ method: 'POST', url: '/v1/auth/logout', token: revoked })).statusCode, 204);
      await h.runtime.database.db.updateTable('tokens').set({ expires_at: h.clock.now() - 1 }).where('jti', '=', jtiOf(expired)).execute();

      const response = await myTokens(caller);
      assert.equal(response.statusCode, 200, response.body);
      assert.deepEqual(jtisOf(response), [jtiOf(caller), jtiOf(live)].sort());
      const listed = (response.json() as { tokens: Record<string, unknown>[] }).tokens;
      for (const info of listed) {
        assert.deepEqual(Object.keys(info).sort(), TOKEN_INFO_KEYS);
        assert.equal(info['account'], 'max');
        assert.equal(info['kind'], 'session');
        assert.equal(info['issued_by'], 'max');
        assert.equal(info['issued_at'], new Date(h.clock.now()).toISOString().replace(/\.\d{3}Z$/, 'Z'));
        assert.equal(Date.parse(info['expires_at'] as string), Date.parse(new Date(h.clock.now() + 30 * DAY_MS).toISOString().replace(/\.\d{3}Z$/, 'Z')));
      }
      for (const token of [caller, live, revoked, expired, others]) {
        assert.ok(!response.body.includes(token.split('.')[2] as string), 'a listing shows no token value');
      }
      const lous = jtisOf(await myTokens(others));
      assert.ok(lous.includes(jtiOf(others)));
      for (const token of [caller, live, revoked, expired]) assert.ok(!lous.includes(jtiOf(token)), "another account's listing shows none of max's tokens");
    });

    test('DELETE /v1/me/tokens/{jti}: your own token is revoked (204); anyone else\'s, or an unknown one, is 404', async () => {
      const caller = await t.login('max');
      const victim = await t.login('max');
      const others = await t.login('lou');
      const since = await lastAuditSeq(h);
      const response = await revokeMine(caller, jtiOf(victim));
      assert.equal(response.statusCode, 204, response.body);
      assertProblem(await t.me(victim), { status: 401, code: 'unauthenticated' });
      await t.inactive(victim, 'a token its owner revoked', 'revoked');
      assert.ok(!jtisOf(await myTokens(caller)).includes(jtiOf(victim)));
      const rows = (await auditRows(h, { after: since })).filter((r) => r.type === 'token_revoked');
      assert.equal(rows.length, 1);
      assert.deepEqual(rows[0]?.details, { jti: jtiOf(victim), reason: 'revoked_by_owner' });

      const snapshotBefore = await h.runtime.database.db.selectFrom('tokens').selectAll().orderBy('jti').execute();
      assertProblem(await revokeMine(caller, jtiOf(others)), { status: 404, code: 'not_found' });
      assertProblem(await revokeMine(h.adminToken, jtiOf(others)), { status: 404, code: 'not_found' });
      assertProblem(await revokeMine(caller, randomUUID()), { status: 404, code: 'not_found' });
      assert.deepEqual(await h.runtime.database.db.selectFrom('tokens').selectAll().orderBy('jti').execute(), snapshotBefore);
      assert.equal((await t.me(others)).statusCode, 200, "someone else's token still works");
    });

    test("a caller may revoke the very token it presents", async () => {
      const caller = await t.login('max');
      assert.equal((await revokeMine(caller, jtiOf(caller))).statusCode, 204);
      assertProblem(await t.me(caller), { status: 401, code: 'unauthenticated' });
    });

    test("admin: GET /v1/accounts/{u}/tokens lists an account's live tokens; unknown account 404", async () => {
      const a = await t.login('lou');
      const b = await t.login('lou');
      const response = await h.request({ method: 'GET', url: '/v1/accounts/lou/tokens', token: h.adminToken });
      assert.equal(response.statusCode, 200);
      const listed = (response.json() as { tokens: Record<string, unknown>[] }).tokens;
      const jtis = listed.map((x) => x['jti']);
      assert.ok(jtis.includes(jtiOf(a)) && jtis.includes(jtiOf(b)));
      const live = await h.runtime.database.db
        .selectFrom('tokens')
        .innerJoin('accounts', 'accounts.id', 'tokens.account_id')
        .select('jti')
        .where('accounts.username', '=', 'lou')
        .where('revoked_at', 'is', null)
        .where('expires_at', '>', h.clock.now())
        .execute();
      assert.deepEqual([...jtis].sort(), live.map((r) => r.jti).sort(), 'exactly the live rows');
      for (const info of listed) {
        assert.deepEqual(Object.keys(info).sort(), TOKEN_INFO_KEYS);
        assert.equal(info['account'], 'lou');
      }
      assert.ok(!response.body.includes(a.split('.')[2] as string));
      assertProblem(await h.request({ method: 'GET', url: '/v1/accounts/nobody/tokens', token: h.adminToken }), { status: 404, code: 'not_found' });
    });

    test('admin: DELETE /v1/tokens/{jti} revokes any token, is audited; an unknown jti is 404', async () => {
      const victim = await t.login('lou');
      await t.active(victim);
      const since = await lastAuditSeq(h);
      assert.equal((await h.request({ method: 'DELETE', url: `/v1/tokens/${jtiOf(victim)}`, token: h.adminToken })).statusCode, 204);
      assertProblem(await t.me(victim), { status: 401, code: 'unauthenticated' });
      await t.inactive(victim, 'a token the admin revoked', 'revoked');
      const rows = (await auditRows(h, { after: since })).filter((r) => r.type === 'token_revoked');
      assert.equal(rows.length, 1);
      assert.equal(rows[0]?.actor_username, 'admin');
      assert.equal(rows[0]?.subject_username, 'lou');
      assert.deepEqual(rows[0]?.details, { jti: jtiOf(victim), reason: 'revoked_by_admin' });
      assert.equal((await t.tokenRow(jtiOf(victim))).revoked_reason, 'revoked_by_admin');
      assertProblem(await h.request({ method: 'DELETE', url: `/v1/tokens/${randomUUID()}`, token: h.adminToken }), { status: 404, code: 'not_found' });
    });
  });

  describe(`POST /v1/token/validate [${dialect}]`, () => {
    let h: Harness;
    const t = helpers(() => h);
    /** A genuine token of `vic`, its header and claims. */
    let token: string;
    let header: Record<string, unknown>;
    let claims: JWTPayload & Record<string, unknown>;

    const serverSigned = async (payload: Record<string, unknown>, protectedHeader: Record<string, unknown> = {}) => {
      const { kid, privateKey } = await h.runtime.services.keys.signingKey();
      return new SignJWT(payload).setProtectedHeader({ alg: 'EdDSA', typ: 'JWT', kid, ...protectedHeader }).sign(privateKey);
    };
    const compact = (head: object, payload: object, signature = '') => `${b64url(head)}.${b64url(payload)}.${signature}`;

    before(async () => {
      h = await createHarness(dialect);
      for (const name of ['vic', 'dee', 'del', 'pwd']) await h.createAccount(name);
      await h.createAccount('robot', 'system');
      token = await t.login('vic');
      header = decodeProtectedHeader(token) as Record<string, unknown>;
      claims = decodeJwt(token) as JWTPayload & Record<string, unknown>;
    });
    after(async () => {
      await assertAuditHasNoSecrets(h, [...t.issued, token], [USER_PASSWORD, ADMIN_PASSWORD]);
      await h.close();
    });

    test('an active token: exactly active, sub, username, kind, roles, permissions, exp, iat, jti', async () => {
      const since = await lastAuditSeq(h);
      const body = await t.active(token);
      const account = (await h.principal(token)).account;
      assert.deepEqual(body, {
        active: true,
        sub: account.id,
        username: 'vic',
        kind: 'human',
        roles: [],
        permissions: [],
        exp: claims.exp,
        iat: claims.iat,
        jti: claims.jti,
      });
      assert.deepEqual(await auditRows(h, { after: since }), [], 'a successful validation writes nothing');
    });

    test("a system account's token validates with kind system", async () => {
      const body = await t.active(t.keep(await issueToken(h, 'robot')));
      assert.equal(body['kind'], 'system');
      assert.equal(body['username'], 'robot');
    });

    test('roles and permissions are read at validation time, not taken from the token', async () => {
      const db = h.runtime.database.db;
      for (const name of ['readers', 'writers']) {
        assert.equal((await h.request({ method: 'POST', url: '/v1/roles', token: h.adminToken, body: { name } })).statusCode, 201);
      }
      const now = h.clock.now();
      const read = randomUUID();
      const write = randomUUID();
      await db
        .insertInto('permissions')
        .values([
          { id: read, resource: 'docs', action: 'read', description: 'read documents', created_at: now },
          { id: write, resource: 'docs', action: 'write', description: 'write documents', created_at: now },
        ])
        .execute();
      await db
        .insertInto('role_permissions')
        .values([
          { role_name: 'readers', permission_id: read },
          { role_name: 'writers', permission_id: read },
          { role_name: 'writers', permission_id: write },
        ])
        .execute();

      assert.deepEqual((await t.active(token))['roles'], []);
      assert.equal((await h.request({ method: 'PUT', url: '/v1/accounts/vic/roles/readers', token: h.adminToken })).statusCode, 204);
      let body = await t.active(token);
      assert.deepEqual(body['roles'], ['readers']);
      assert.deepEqual(body['permissions'], [{ resource: 'docs', action: 'read' }]);

      assert.equal((await h.request({ method: 'PUT', url: '/v1/accounts/vic/roles/writers', token: h.adminToken })).statusCode, 204);
      body = await t.active(token);
      assert.deepEqual(body['roles'], ['readers', 'writers']);
      // docs:read comes through both roles and is listed once.
      assert.deepEqual(body['permissions'], [
        { resource: 'docs', action: 'read' },
        { resource: 'docs', action: 'write' },
      ]);
      assert.deepEqual(decodeJwt(token)['roles'], [], 'the token itself never changed');

      await db.deleteFrom('role_permissions').where('role_name', '=', 'writers').where('permission_id', '=', write).execute();
      assert.deepEqual((await t.active(token))['permissions'], [{ resource: 'docs', action: 'read' }]);
      for (const role of ['readers', 'writers']) {
        assert.equal((await h.request({ method: 'DELETE', url: `/v1/accounts/vic/roles/${role}`, token: h.adminToken })).statusCode, 204);
      }
      body = await t.active(token);
      assert.deepEqual(body['roles'], []);
      assert.deepEqual(body['permissions'], []);
    });

    test('an expired token is inactive', async () => {
      const fresh = await t.login('vic');
      const saved = h.clock.now();
      try {
        h.clock.advance(30 * DAY_MS - 1_000);
        await t.active(fresh);
        h.clock.advance(1_000);
        await t.inactive(fresh, 'at its expiry', 'expired');
        h.clock.advance(DAY_MS);
        await t.inactive(fresh, 'a day after its expiry', 'expired');
      } finally {
        h.clock.set(saved);
      }
    });

    test('revocation is effective on the next validation: admin revoke, logout, own revoke', async () => {
      const byAdmin = await t.login('vic');
      await t.active(byAdmin);
      assert.equal((await h.request({ method: 'DELETE', url: `/v1/tokens/${jtiOf(byAdmin)}`, token: h.adminToken })).statusCode, 204);
      await t.inactive(byAdmin, 'revoked by the admin', 'revoked');

      const loggedOut = await t.login('vic');
      await t.active(loggedOut);
      assert.equal((await h.request({ method: 'POST', url: '/v1/auth/logout', token: loggedOut })).statusCode, 204);
      await t.inactive(loggedOut, 'logged out', 'revoked');

      const own = await t.login('vic');
      await t.active(own);
      assert.equal((await h.request({ method: 'DELETE', url: `/v1/me/tokens/${jtiOf(own)}`, token: own })).statusCode, 204);
      await t.inactive(own, 'revoked by its owner', 'revoked');
    });

    test('alg none and noNE, with and without a signature, are inactive', async () => {
      for (const alg of ['none', 'noNE', 'NONE']) {
        await t.inactive(compact({ ...header, alg }, claims), `alg ${alg}`);
        await t.inactive(compact({ ...header, alg }, claims, token.split('.')[2]), `alg ${alg} with the real signature`);
      }
    });

    test('HS256 signed with the public key is inactive', async () => {
      const publicKey = await h.runtime.services.keys.verificationKey(header['kid'] as string);
      assert.ok(publicKey);
      const jwk = publicKey.export({ format: 'jwk' }) as { x: string };
      for (const [what, secret] of [
        ['raw key bytes', Buffer.from(jwk.x, 'base64url')],
        ['SPKI PEM', publicKey.export({ format: 'pem', type: 'spki' }) as string],
        ['x as text', jwk.x],
      ] as const) {
        const input = `${b64url({ ...header, alg: 'HS256' })}.${b64url(claims)}`;
        await t.inactive(`${input}.${createHmac('sha256', secret).update(input).digest('base64url')}`, `HS256 keyed with the ${what}`);
      }
    });

    test('a changed payload byte or signature bit is inactive', async () => {
      const [h64, p64, s64] = token.split('.') as [string, string, string];
      const json = Buffer.from(p64, 'base64url').toString('utf8');
      await t.inactive(`${h64}.${Buffer.from(json.replace('"vic"', '"vid"')).toString('base64url')}.${s64}`, 'a changed username');
      const sub = String(claims.sub);
      const changedSub = `${sub.slice(0, -1)}${sub.endsWith('0') ? '1' : '0'}`;
      await t.inactive(`${h64}.${Buffer.from(json.replace(sub, changedSub)).toString('base64url')}.${s64}`, 'a changed sub');
      const flipped = Buffer.from(s64, 'base64url');
      flipped[7] = (flipped[7] as number) ^ 0x01;
      await t.inactive(`${h64}.${p64}.${flipped.toString('base64url')}`, 'a flipped signature bit');
      await t.active(token);
    });

    test('another Ed25519 key under the server kid, or named by jwk/jku headers, is inactive', async () => {
      const { privateKey, publicKey } = generateKeyPairSync('ed25519');
      const kid = header['kid'] as string;
      await t.inactive(await new SignJWT(claims).setProtectedHeader({ alg: 'EdDSA', typ: 'JWT', kid }).sign(privateKey), 'a foreign key, server kid', 'bad_signature');
      const jwk = { ...(await exportJWK(publicKey)), kid: 'attacker' };
      for (const [what, extra, reason] of [
        ['embedded jwk, server kid', { kid, jwk }, 'bad_signature'],
        ['embedded jwk, own kid', { kid: 'attacker', jwk }, 'unknown_key'],
        ['jku, server kid', { kid, jku: 'https://evil.example/jwks.json' }, 'bad_signature'],
        ['jku, own kid', { kid: 'attacker', jku: 'https://evil.example/jwks.json' }, 'unknown_key'],
      ] as const) {
        await t.inactive(await new SignJWT(claims).setProtectedHeader({ alg: 'EdDSA', typ: 'JWT', ...extra } as never).sign(privateKey), what, reason);
      }
    });

    test('malformed input is inactive: garbage, an empty string, a two-part token, a header that is not JSON', async () => {
      await t.inactive('garbage', 'garbage', 'malformed');
      await t.inactive('', 'an empty string', 'malformed');
      await t.inactive(token.split('.').slice(0, 2).join('.'), 'two parts');
      await t.inactive(`${token}.extra`, 'four parts');
      await t.inactive('a.b.c', 'a.b.c', 'malformed');
      await t.inactive(`${b64url('not json')}.${b64url(claims)}.${token.split('.')[2]}`, 'a header that is not JSON', 'malformed');
    });

    test('a genuine signature over a wrong audience, a wrong issuer, a missing exp or an unknown jti is inactive', async () => {
      await t.active(await serverSigned(claims));
      await t.inactive(await serverSigned({ ...claims, aud: 'another-app' }), 'wrong audience');
      await t.inactive(await serverSigned({ ...claims, iss: 'https://evil.example' }), 'wrong issuer');
      const { exp: _exp, ...withoutExp } = claims;
      await t.inactive(await serverSigned(withoutExp), 'missing exp');
      await t.inactive(await serverSigned({ ...claims, jti: randomUUID() }), 'an unknown jti', 'unknown_token');
      const other = await h.runtime.services.accounts.get('dee');
      await t.inactive(await serverSigned({ ...claims, sub: other.id }), "another account's sub", 'unknown_token');
    });

    test('a disabled account: inactive, whether disabled through the API or directly in the database', async () => {
      const viaApi = await t.login('dee');
      await t.active(viaApi);
      assert.equal((await h.request({ method: 'PATCH', url: '/v1/accounts/dee', token: h.adminToken, body: { status: 'disabled' } })).statusCode, 200);
      await t.inactive(viaApi, 'disabled through the API');
      assert.equal((await h.request({ method: 'PATCH', url: '/v1/accounts/dee', token: h.adminToken, body: { status: 'active' } })).statusCode, 200);

      const direct = await t.login('dee');
      await t.active(direct);
      await h.runtime.database.db.updateTable('accounts').set({ status: 'disabled' }).where('username', '=', 'dee').execute();
      await t.inactive(direct, 'disabled in the database only', 'account_inactive');
      await h.runtime.database.db.updateTable('accounts').set({ status: 'active' }).where('username', '=', 'dee').execute();
      await t.active(direct);
    });

    test('a deleted account: inactive', async () => {
      const victim = await t.login('del');
      await t.active(victim);
      assert.equal((await h.request({ method: 'DELETE', url: '/v1/accounts/del', token: h.adminToken })).statusCode, 204);
      await t.inactive(victim, 'deleted account');
    });

    test("a password change makes the account's other tokens inactive", async () => {
      const kept = await t.login('pwd');
      const others = [await t.login('pwd'), await t.login('pwd')];
      for (const other of others) await t.active(other);
      const response = await h.request({
        method: 'PUT',
        url: '/v1/me/password',
        token: kept,
        body: { current_password: USER_PASSWORD, new_password: 'a completely different passphrase' },
      });
      assert.equal(response.statusCode, 204, response.body);
      for (const other of others) await t.inactive(other, 'revoked by a password change', 'revoked');
      await t.active(kept);
    });
  });
}
