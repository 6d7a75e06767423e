import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import type { LightMyRequestResponse } from 'fastify';
import { decodeJwt } from 'jose';
import { assertAuditHasNoSecrets, auditRows, lastAuditSeq } from '../support/audit.ts';
import { DIALECTS } from '../support/databases.ts';
import { ADMIN_PASSWORD, USER_PASSWORD, createHarness, type Harness } from '../support/harness.ts';
import { assertDatabaseUnchanged, assertProblem, issueToken, snapshotDatabase } from '../support/inspect.ts';

/**
 * docs/api.md "Service tokens": POST/DELETE /v1/accounts/{service}/token by an admin or a delegate, the
 * single live token per system account (enforced by the database), and a system account's life without a password.
 */

const DAY_MS = 86_400_000;
const jtiOf = (token: string) => decodeJwt(token).jti as string;

for (const dialect of DIALECTS) {
  describe(`service tokens [${dialect}]`, () => {
    let h: Harness;
    /** Tokens of the callers: a delegate of `svc` (holds role `svc`), a plain human, and `svc` itself. */
    let delegate: string;
    let human: string;
    const issued: string[] = [];
    const keep = (token: string) => {
      issued.push(token);
      return token;
    };

    const issue = (service: string, token: string | undefined) => h.request({ method: 'POST', url: `/v1/accounts/${service}/token`, token });
    const revoke = (service: string, token: string | undefined) => h.request({ method: 'DELETE', url: `/v1/accounts/${service}/token`, token });
    const validate = (token: string) => h.request({ method: 'POST', url: '/v1/token/validate', body: { token } });
    const isActive = async (token: string) => (await validate(token)).json().active as boolean;
    /** The service token issued, after checking the 201 answer. */
    const issued201 = async (service: string, token: string): Promise<string> => {
      const response = await issue(service, token);
      assert.equal(response.statusCode, 201, response.body);
      assert.equal(response.headers['cache-control'], 'no-store');
      const body = response.json() as { token: string; token_type: string; expires_at: string };
      assert.deepEqual(Object.keys(body).sort(), ['expires_at', 'token', 'token_type']);
      assert.equal(body.token_type, 'Bearer');
      return keep(body.token);
    };
    /** Unrevoked, unexpired token rows of an account, straight from the database. */
    const liveRows = async (username: string) =>
      h.runtime.database.db
        .selectFrom('tokens')
        .innerJoin('accounts', 'accounts.id', 'tokens.account_id')
        .select(['tokens.jti', 'tokens.kind', 'tokens.issued_by'])
        .where('accounts.username', '=', username)
        .where('tokens.revoked_at', 'is', null)
        .where('tokens.expires_at', '>', h.clock.now())
        .execute();
    const accountId = async (username: string) => (await h.runtime.services.accounts.get(username)).id;

    before(async () => {
      h = await createHarness(dialect);
      for (const name of ['svc', 'other-svc', 'idle-svc', 'index-svc', 'race-svc', 'gone-svc', 'off-svc', 'renew-svc']) {
        await h.createAccount(name, 'system');
      }
      await h.createAccount('dora');
      await h.createAccount('hank');
      await h.createAccount('pat');
      for (const role of ['svc', 'race-svc', 'pat']) {
        assert.equal((await h.request({ method: 'POST', url: '/v1/roles', token: h.adminToken, body: { name: role } })).statusCode, 201);
      }
      for (const role of ['svc', 'race-svc', 'pat']) {
        assert.equal((await h.request({ method: 'PUT', url: `/v1/accounts/dora/roles/${role}`, token: h.adminToken })).statusCode, 204);
      }
      assert.equal((await h.request({ method: 'PATCH', url: '/v1/accounts/off-svc', token: h.adminToken, body: { status: 'disabled' } })).statusCode, 200);
      delegate = keep(await h.login('dora', USER_PASSWORD));
      human = keep(await h.login('hank', USER_PASSWORD));
    });
    after(async () => {
      await assertAuditHasNoSecrets(h, issued, [USER_PASSWORD, ADMIN_PASSWORD]);
      await h.close();
    });

    test('an admin issues a service token: 201, claims kind system, recorded as a service token issued by the admin', async () => {
      const since = await lastAuditSeq(h);
      const token = await issued201('svc', h.adminToken);
      const claims = decodeJwt(token);
      assert.equal(claims['kind'], 'system');
      assert.equal(claims['username'], 'svc');
      assert.equal(claims.sub, await accountId('svc'));
      assert.equal(claims.exp, Math.floor((h.clock.now() + 30 * DAY_MS) / 1000), 'service_ttl, 30 days by default');

      const validation = (await validate(token)).json();
      assert.equal(validation.active, true);
      assert.equal(validation.kind, 'system');
      assert.equal(validation.username, 'svc');
      assert.equal((await h.request({ method: 'GET', url: '/v1/me', token })).json().username, 'svc');

      const listing = await h.request({ method: 'GET', url: '/v1/accounts/svc/tokens', token: h.adminToken });
      assert.deepEqual(listing.json().tokens, [
        {
          jti: claims.jti,
          account: 'svc',
          kind: 'service',
          issued_at: listing.json().tokens[0].issued_at,
          expires_at: listing.json().tokens[0].expires_at,
          issued_by: 'admin',
        },
      ]);
      assert.ok(!listing.body.includes(token.split('.')[2] as string));

      const rows = await auditRows(h, { after: since });
      assert.deepEqual(rows.map((r) => r.type), ['token_issued']);
      assert.equal(rows[0]?.actor_username, 'admin');
      assert.equal(rows[0]?.subject_username, 'svc');
      assert.equal(rows[0]?.details['jti'], claims.jti);
      assert.equal(rows[0]?.details['kind'], 'service');
      assert.equal(rows[0]?.details['delegate'], false);
    });

    test('a delegate issues one too; it replaces the previous token, which becomes inactive', async () => {
      const previous = await issued201('svc', h.adminToken);
      const since = await lastAuditSeq(h);
      const token = await issued201('svc', delegate);
      assert.equal(await isActive(previous), false);
      assert.equal(await isActive(token), true);
      assertProblem(await h.request({ method: 'GET', url: '/v1/me', token: previous }), { status: 401, code: 'unauthenticated' });
      assert.deepEqual(await liveRows('svc'), [{ jti: jtiOf(token), kind: 'service', issued_by: await accountId('dora') }]);
      assert.equal((await h.request({ method: 'GET', url: '/v1/accounts/svc/tokens', token: h.adminToken })).json().tokens[0].issued_by, 'dora');
      const rows = (await auditRows(h, { after: since })).filter((r) => r.type === 'token_issued');
      assert.equal(rows.length, 1);
      assert.equal(rows[0]?.actor_username, 'dora');
      assert.equal(rows[0]?.details['delegate'], true);
      assert.equal(rows[0]?.details['replaced'], 1);
    });

    test('issuing again always leaves exactly one live token, the newest', async () => {
      const tokens: string[] = [];
      for (let i = 0; i < 3; i++) tokens.push(await issued201('svc', i % 2 === 0 ? h.adminToken : delegate));
      assert.deepEqual((await liveRows('svc')).map((r) => r.jti), [jtiOf(tokens[2] as string)]);
      assert.deepEqual(await Promise.all(tokens.map(isActive)), [false, false, true]);
    });

    test("refused: a human who is neither admin nor delegate (403), a delegate of another service (403), a system caller (403), anonymous (401)", async () => {
      await issued201('svc', h.adminToken);
      const systemCaller = keep(await issueToken(h, 'other-svc'));
      const before = await snapshotDatabase(h.runtime.database.db);
      assertProblem(await issue('svc', human), { status: 403, code: 'forbidden' });
      assertProblem(await issue('other-svc', delegate), { status: 403, code: 'forbidden' });
      assertProblem(await issue('svc', systemCaller), { status: 403, code: 'forbidden' });
      assertProblem(await issue('other-svc', systemCaller), { status: 403, code: 'forbidden' });
      assertProblem(await issue('svc', undefined), { status: 401, code: 'unauthenticated' });
      assertProblem(await issue('svc', 'garbage'), { status: 401, code: 'unauthenticated' });
      assertDatabaseUnchanged(before, await snapshotDatabase(h.runtime.database.db), { what: 'refused issues' });
    });

    test('a system account holding the admin role still cannot issue service tokens', async () => {
      assert.equal((await h.request({ method: 'PUT', url: '/v1/accounts/other-svc/roles/admin', token: h.adminToken })).statusCode, 204);
      try {
        const systemAdmin = keep(await issueToken(h, 'other-svc'));
        assertProblem(await issue('svc', systemAdmin), { status: 403, code: 'forbidden' });
        assertProblem(await issue('other-svc', systemAdmin), { status: 403, code: 'forbidden' });
      } finally {
        assert.equal((await h.request({ method: 'DELETE', url: '/v1/accounts/other-svc/roles/admin', token: h.adminToken })).statusCode, 204);
      }
    });

    test('a caller who may not issue learns nothing about the name: unknown and existing names are both 403', async () => {
      assertProblem(await issue('no-such-service', human), { status: 403, code: 'forbidden' });
      assertProblem(await issue('svc', human), { status: 403, code: 'forbidden' });
      assertProblem(await issue('hank', human), { status: 403, code: 'forbidden' });
    });

    test('by an admin: a human target is 400, a disabled service 409, an unknown name 404', async () => {
      const before = await snapshotDatabase(h.runtime.database.db);
      assertProblem(await issue('hank', h.adminToken), { status: 400, code: 'invalid_request' });
      assertProblem(await issue('off-svc', h.adminToken), { status: 409, code: 'conflict' });
      assertProblem(await issue('no-such-service', h.adminToken), { status: 404, code: 'not_found' });
      // A delegate holding a role named after a human gets the same 400, not a token for a person.
      assertProblem(await issue('pat', delegate), { status: 400, code: 'invalid_request' });
      assertDatabaseUnchanged(before, await snapshotDatabase(h.runtime.database.db), { what: 'refused targets' });
    });

    test('concurrent issuance by the admin and a delegate leaves exactly one live token, and exactly one returned token is active', async () => {
      const callers = Array.from({ length: 10 }, (_, i) => (i % 2 === 0 ? h.adminToken : delegate));
      const responses = await Promise.all(callers.map((token) => issue('race-svc', token)));
      const tokens = responses.map((response) => {
        assert.equal(response.statusCode, 201, response.body);
        return keep((response.json() as { token: string }).token);
      });
      assert.equal(new Set(tokens.map(jtiOf)).size, 10);

      const live = await liveRows('race-svc');
      assert.equal(live.length, 1, `live tokens: ${JSON.stringify(live)}`);
      const unrevoked = await h.runtime.database.db
        .selectFrom('tokens')
        .select('jti')
        .where('account_id', '=', await accountId('race-svc'))
        .where('revoked_at', 'is', null)
        .execute();
      assert.equal(unrevoked.length, 1, 'not even an expired unrevoked row is left beside it');
      const activeTokens: string[] = [];
      for (const token of tokens) if (await isActive(token)) activeTokens.push(token);
      assert.equal(activeTokens.length, 1);
      assert.equal(jtiOf(activeTokens[0] as string), live[0]?.jti);
      assert.equal((await auditRows(h, { type: 'token_issued' })).filter((r) => r.subject_username === 'race-svc').length, 10);
    });

    test('concurrent issuance through the domain, many rounds: never two live tokens', async () => {
      const { lifecycle } = h.runtime.services;
      const admin = await h.principal(h.adminToken);
      const dora = await h.principal(delegate);
      const ctx = { ip: null, userAgent: null, requestId: null };
      for (let round = 0; round < 5; round++) {
        const results = await Promise.allSettled(
          Array.from({ length: 8 }, (_, i) => lifecycle.issueServiceToken(i % 2 === 0 ? admin : dora, 'race-svc', ctx)),
        );
        for (const result of results) assert.equal(result.status, 'fulfilled', String((result as PromiseRejectedResult).reason));
        assert.equal((await liveRows('race-svc')).length, 1, `round ${round}`);
      }
    });

    test('regression: a service renewing its token while an admin issues a new one got a 500 (unique index collision)', async () => {
      // Before the fix, renewal did not take the account lock: on PostgreSQL the concurrent issue did not see the
      // renewal's new row, and its insert failed on the one-live-token index almost every round.
      for (let round = 0; round < 15; round++) {
        const current = await issued201('race-svc', h.adminToken);
        const [renewal, issue201] = await Promise.all([
          h.request({ method: 'POST', url: '/v1/auth/renew', token: current }),
          issue('race-svc', h.adminToken),
        ]);
        assert.equal(issue201.statusCode, 201, `round ${round}: issue ${issue201.body}`);
        keep((issue201.json() as { token: string }).token);
        // The renewal either came first (and its token was then replaced) or found its token already replaced.
        if (renewal.statusCode === 200) keep((renewal.json() as { token: string }).token);
        else assertProblem(renewal, { status: 401, code: 'unauthenticated' });
        assert.equal((await liveRows('race-svc')).length, 1, `round ${round}`);
        assert.deepEqual((await liveRows('race-svc')).map((r) => r.jti), [jtiOf((issue201.json() as { token: string }).token)]);
      }
    });

    test('the database itself refuses a second unrevoked service token for one account', async () => {
      const db = h.runtime.database.db;
      const id = await accountId('index-svc');
      const { kid } = await h.runtime.services.keys.signingKey();
      const now = h.clock.now();
      const row = (kind: 'service' | 'session', revoked: number | null) => ({
        jti: randomUUID(),
        account_id: id,
        kind,
        kid,
        issued_at: now,
        expires_at: now + DAY_MS,
        session_started_at: now,
        issued_by: null,
        revoked_at: revoked,
        revoked_reason: revoked === null ? null : 'test',
      });
      await db.insertInto('tokens').values(row('service', null)).execute();
      await assert.rejects(db.insertInto('tokens').values(row('service', null)).execute(), /unique|duplicate/i, 'a second live service token');
      // The constraint is exactly "one unrevoked service token": revoked rows and session rows are not limited.
      await db.insertInto('tokens').values(row('service', now)).execute();
      await db.insertInto('tokens').values(row('service', now)).execute();
      await db.insertInto('tokens').values(row('session', null)).execute();
      await db.insertInto('tokens').values(row('session', null)).execute();
      // And an expired but unrevoked one still counts: the index does not depend on the clock.
      await assert.rejects(
        db.insertInto('tokens').values({ ...row('service', null), expires_at: now - DAY_MS }).execute(),
        /unique|duplicate/i,
      );
      await db.deleteFrom('tokens').where('account_id', '=', id).execute();
    });

    test('DELETE by an admin revokes the live token (audited); again is 404; delegates and others are refused', async () => {
      const token = await issued201('svc', h.adminToken);
      assertProblem(await revoke('svc', delegate), { status: 403, code: 'forbidden' });
      assertProblem(await revoke('svc', human), { status: 403, code: 'forbidden' });
      assertProblem(await revoke('svc', token), { status: 403, code: 'forbidden' });
      assertProblem(await revoke('svc', undefined), { status: 401, code: 'unauthenticated' });
      assert.equal(await isActive(token), true);

      const since = await lastAuditSeq(h);
      const response = await revoke('svc', h.adminToken);
      assert.equal(response.statusCode, 204, response.body);
      assert.equal(await isActive(token), false);
      assert.deepEqual(await liveRows('svc'), []);
      const rows = (await auditRows(h, { after: since })).filter((r) => r.type === 'token_revoked');
      assert.equal(rows.length, 1);
      assert.equal(rows[0]?.subject_username, 'svc');
      assert.equal(rows[0]?.details['reason'], 'revoked_by_admin');

      assertProblem(await revoke('svc', h.adminToken), { status: 404, code: 'not_found' });
      assertProblem(await revoke('idle-svc', h.adminToken), { status: 404, code: 'not_found' });
      assertProblem(await revoke('no-such-service', h.adminToken), { status: 404, code: 'not_found' });
      assertProblem(await revoke('hank', h.adminToken), { status: 400, code: 'invalid_request' });
    });

    test('a system account cannot log in with a password: the same 401 invalid_credentials as an unknown user', async () => {
      const login = (username: string, password: string): Promise<LightMyRequestResponse> =>
        h.request({ method: 'POST', url: '/v1/auth/login', body: { username, password } });
      const system = await login('svc', USER_PASSWORD);
      const unknown = await login('nobody-at-all', USER_PASSWORD);
      const systemBody = assertProblem(system, { status: 401, code: 'invalid_credentials' });
      const unknownBody = assertProblem(unknown, { status: 401, code: 'invalid_credentials' });
      assert.deepEqual({ ...systemBody, request_id: '' }, { ...unknownBody, request_id: '' });
      const failures = (await auditRows(h, { type: 'login_failed' })).filter((r) => r.subject_username === 'svc');
      assert.equal(failures.at(-1)?.details['reason'], 'system_account');
    });

    test("a system account's token renews: a new token, the old one inactive, still one live token", async () => {
      const old = await issued201('renew-svc', h.adminToken);
      h.clock.advance(DAY_MS);
      const response = await h.request({ method: 'POST', url: '/v1/auth/renew', token: old });
      assert.equal(response.statusCode, 200, response.body);
      const fresh = keep((response.json() as { token: string }).token);
      assert.equal(decodeJwt(fresh)['kind'], 'system');
      assert.equal(decodeJwt(fresh).exp, Math.floor((h.clock.now() + 30 * DAY_MS) / 1000));
      assert.equal(await isActive(old), false);
      assert.equal(await isActive(fresh), true);
      assert.deepEqual(await liveRows('renew-svc'), [{ jti: jtiOf(fresh), kind: 'service', issued_by: await accountId('admin') }]);
      assertProblem(await h.request({ method: 'POST', url: '/v1/auth/renew', token: old }), { status: 401, code: 'unauthenticated' });
    });

    test("a disabled system account's token is inactive and cannot renew, whether or not its row was revoked", async () => {
      const viaApi = await issued201('gone-svc', h.adminToken);
      assert.equal((await h.request({ method: 'PATCH', url: '/v1/accounts/gone-svc', token: h.adminToken, body: { status: 'disabled' } })).statusCode, 200);
      assert.equal(await isActive(viaApi), false);
      assertProblem(await h.request({ method: 'POST', url: '/v1/auth/renew', token: viaApi }), { status: 401, code: 'unauthenticated' });
      assert.equal((await h.request({ method: 'PATCH', url: '/v1/accounts/gone-svc', token: h.adminToken, body: { status: 'active' } })).statusCode, 200);

      const direct = await issued201('gone-svc', h.adminToken);
      await h.runtime.database.db.updateTable('accounts').set({ status: 'disabled' }).where('username', '=', 'gone-svc').execute();
      assert.equal(await isActive(direct), false);
      assertProblem(await h.request({ method: 'POST', url: '/v1/auth/renew', token: direct }), { status: 401, code: 'unauthenticated' });
      await h.runtime.database.db.updateTable('accounts').set({ status: 'active' }).where('username', '=', 'gone-svc').execute();
      assert.equal(await isActive(direct), true, 'the account check alone refused it');
    });
  });
}
