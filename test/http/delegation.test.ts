import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { assertAuditHasNoSecrets, auditRows, lastAuditSeq } from '../support/audit.ts';
import { DIALECTS } from '../support/databases.ts';
import { ADMIN_PASSWORD, USER_PASSWORD, createHarness, type Harness } from '../support/harness.ts';
import { assertDatabaseUnchanged, assertProblem, snapshotDatabase } from '../support/inspect.ts';

/**
 * SECURITY.md §38: delegation never grants more than the delegate holds. The escalation found in review: an admin
 * granted `admin` to the system account `opsbot` and the role `opsbot` to alice; alice issued opsbot's token and
 * used it to make herself admin.
 */

for (const dialect of DIALECTS) {
  describe(`delegation never grants more than the delegate holds [${dialect}]`, () => {
    let h: Harness;
    let alice: string;
    let bob: string;
    const issued: string[] = [];
    const keep = (token: string) => {
      issued.push(token);
      return token;
    };

    const put = (url: string, token: string) => h.request({ method: 'PUT', url, token });
    const del = (url: string, token: string) => h.request({ method: 'DELETE', url, token });
    const issue = (service: string, token: string) => h.request({ method: 'POST', url: `/v1/accounts/${service}/token`, token });
    const ok = async (response: Promise<{ statusCode: number; body: string }>, status: number) => {
      const answer = await response;
      assert.equal(answer.statusCode, status, answer.body);
    };
    const rolesOf = async (username: string) => ((await h.runtime.services.accounts.get(username)).roles as string[]).slice().sort();

    before(async () => {
      h = await createHarness(dialect);
      await h.createAccount('opsbot', 'system');
      await h.createAccount('billbot', 'system');
      await h.createAccount('alice');
      await h.createAccount('bob');
      for (const role of ['opsbot', 'billbot', 'billing']) {
        await ok(h.request({ method: 'POST', url: '/v1/roles', token: h.adminToken, body: { name: role } }), 201);
      }
      await ok(put('/v1/accounts/opsbot/roles/admin', h.adminToken), 204);
      await ok(put('/v1/accounts/alice/roles/opsbot', h.adminToken), 204);
      alice = keep(await h.login('alice', USER_PASSWORD));
      bob = keep(await h.login('bob', USER_PASSWORD));
    });
    after(async () => {
      await assertAuditHasNoSecrets(h, issued, [USER_PASSWORD, ADMIN_PASSWORD]);
      await h.close();
    });

    test('the reported escalation is refused: 403 delegation_exceeds_roles, no token, audited as a failed issuance', async () => {
      const since = await lastAuditSeq(h);
      const before = await snapshotDatabase(h.runtime.database.db);
      const response = await issue('opsbot', alice);
      const problem = assertProblem(response, { status: 403, code: 'forbidden' });
      assert.equal(problem['reason'], 'delegation_exceeds_roles');
      assert.ok(!response.body.includes('eyJ'), 'no token in the answer');
      assertDatabaseUnchanged(before, await snapshotDatabase(h.runtime.database.db), { what: 'the refused issue', allowNewAudit: ['token_issued'] });

      const rows = await auditRows(h, { after: since });
      assert.deepEqual(rows.map((r) => [r.type, r.outcome]), [['token_issued', 'failure']]);
      assert.equal(rows[0]?.actor_username, 'alice');
      assert.equal(rows[0]?.subject_username, 'opsbot');
      assert.equal(rows[0]?.details['reason'], 'delegation_exceeds_roles');
      assert.equal(rows[0]?.details['missing_roles'], 'admin');

      // And alice is still not an administrator.
      assertProblem(await put('/v1/accounts/alice/roles/admin', alice), { status: 403, code: 'forbidden' });
      assert.deepEqual(await rolesOf('alice'), ['opsbot']);
    });

    test('an administrator may still issue the token of a service that holds admin', async () => {
      const response = await issue('opsbot', h.adminToken);
      assert.equal(response.statusCode, 201, response.body);
      keep((response.json() as { token: string }).token);
    });

    test('a caller who holds no role of the name still learns nothing: 403 without a reason, for existing and unknown names', async () => {
      for (const name of ['opsbot', 'no-such-bot']) {
        const problem = assertProblem(await issue(name, bob), { status: 403, code: 'forbidden' });
        assert.equal(problem['reason'], undefined, name);
      }
    });

    test('after the admin role is removed from opsbot, alice may issue its token, and it cannot make her admin', async () => {
      await ok(del('/v1/accounts/opsbot/roles/admin', h.adminToken), 204);
      try {
        const response = await issue('opsbot', alice);
        assert.equal(response.statusCode, 201, response.body);
        const opsToken = keep((response.json() as { token: string }).token);
        assertProblem(await put('/v1/accounts/alice/roles/admin', opsToken), { status: 403, code: 'forbidden' });
        assert.deepEqual(await rolesOf('alice'), ['opsbot']);
        const issuedRows = await auditRows(h, { type: 'token_issued' });
        assert.equal(issuedRows.at(-1)?.outcome, 'success');
        assert.equal(issuedRows.at(-1)?.details['delegate'], true);
      } finally {
        await ok(put('/v1/accounts/opsbot/roles/admin', h.adminToken), 204);
      }
      // Granted admin again: refused again (roles are read at each request, SECURITY.md §21).
      assertProblem(await issue('opsbot', alice), { status: 403, code: 'forbidden' });
    });

    test('any role counts, not only admin: a service holding a role the delegate lacks is refused until the delegate holds it too', async () => {
      await ok(put('/v1/accounts/billbot/roles/billing', h.adminToken), 204);
      await ok(put('/v1/accounts/bob/roles/billbot', h.adminToken), 204);
      const problem = assertProblem(await issue('billbot', bob), { status: 403, code: 'forbidden' });
      assert.equal(problem['reason'], 'delegation_exceeds_roles');
      assert.equal((await auditRows(h, { type: 'token_issued' })).at(-1)?.details['missing_roles'], 'billing');

      await ok(put('/v1/accounts/bob/roles/billing', h.adminToken), 204);
      const response = await issue('billbot', bob);
      assert.equal(response.statusCode, 201, response.body);
      keep((response.json() as { token: string }).token);
      // The service holding its own role name is no obstacle: the delegate holds that role by definition.
      await ok(put('/v1/accounts/billbot/roles/billbot', h.adminToken), 204);
      const again = await issue('billbot', bob);
      assert.equal(again.statusCode, 201, again.body);
      keep((again.json() as { token: string }).token);
    });
  });
}

/**
 * SECURITY.md §38, the later grant: a token a delegate already holds must not gain a role the delegate lacks. Granting
 * the service such a role revokes that token in the grant's transaction; a token an administrator issued is kept.
 */
for (const dialect of DIALECTS) {
  describe(`a later grant never widens a delegate's service token [${dialect}]`, () => {
    let h: Harness;
    let alice: string;
    const issued: string[] = [];

    const put = (url: string) => h.request({ method: 'PUT', url, token: h.adminToken });
    const issue = async (service: string, token: string) => {
      const response = await h.request({ method: 'POST', url: `/v1/accounts/${service}/token`, token });
      assert.equal(response.statusCode, 201, response.body);
      const serviceToken = (response.json() as { token: string }).token;
      issued.push(serviceToken);
      return serviceToken;
    };
    const me = async (token: string) => (await h.request({ method: 'GET', url: '/v1/me', token })).statusCode;
    const active = async (token: string) =>
      ((await h.request({ method: 'POST', url: '/v1/token/validate', body: { token } })).json() as { active: boolean }).active;
    const expectOk = async (response: Promise<{ statusCode: number; body: string }>, status: number) => {
      const answer = await response;
      assert.equal(answer.statusCode, status, answer.body);
    };

    before(async () => {
      h = await createHarness(dialect);
      for (const service of ['opsbot', 'statsbot', 'reportbot', 'racebot']) await h.createAccount(service, 'system');
      await h.createAccount('alice');
      for (const role of ['opsbot', 'statsbot', 'racebot', 'metrics']) {
        await expectOk(h.request({ method: 'POST', url: '/v1/roles', token: h.adminToken, body: { name: role } }), 201);
      }
      for (const role of ['opsbot', 'statsbot', 'racebot', 'metrics']) await expectOk(put(`/v1/accounts/alice/roles/${role}`), 204);
      alice = await h.login('alice', USER_PASSWORD);
      issued.push(alice);
    });
    after(async () => {
      await assertAuditHasNoSecrets(h, issued, [USER_PASSWORD, ADMIN_PASSWORD]);
      await h.close();
    });

    test("granting the service a role its delegate lacks revokes the delegate's token at once, audited", async () => {
      const opsToken = await issue('opsbot', alice);
      assert.equal(await me(opsToken), 200);
      assert.equal(await active(opsToken), true);
      const since = await lastAuditSeq(h);

      await expectOk(put('/v1/accounts/opsbot/roles/admin'), 204);

      assert.equal(await me(opsToken), 401, 'the token alice issued must not act with admin');
      assert.equal(await active(opsToken), false);
      const revoked = (await auditRows(h, { after: since })).filter((r) => r.type === 'token_revoked');
      assert.equal(revoked.length, 1);
      assert.equal(revoked[0]?.details['reason'], 'delegation_exceeded');
      assert.equal(revoked[0]?.actor_username, 'admin');
      assert.equal(revoked[0]?.subject_username, 'opsbot');
      // And alice cannot get a new one: the issue-time rule refuses her.
      assertProblem(await h.request({ method: 'POST', url: '/v1/accounts/opsbot/token', token: alice }), { status: 403, code: 'forbidden' });
    });

    test('a token an administrator issued is kept across the same grant', async () => {
      const reportToken = await issue('reportbot', h.adminToken);
      await expectOk(put('/v1/accounts/reportbot/roles/admin'), 204);
      assert.equal(await me(reportToken), 200);
      assert.equal(await active(reportToken), true);
    });

    test('a grant that lands while a delegate is issuing the token is not outlived: the issue is refused', async (t) => {
      // The grant runs between the issue's first check and its transaction (while the token is being signed).
      const { tokens } = h.runtime.services;
      const mint = tokens.mint.bind(tokens);
      t.mock.method(tokens, 'mint', async (...args: Parameters<typeof tokens.mint>) => {
        await expectOk(put('/v1/accounts/racebot/roles/admin'), 204);
        return mint(...args);
      });
      const response = await h.request({ method: 'POST', url: '/v1/accounts/racebot/token', token: alice });
      t.mock.restoreAll();
      const problem = assertProblem(response, { status: 403, code: 'forbidden' });
      assert.equal(problem['reason'], 'delegation_exceeds_roles');
      const live = await h.request({ method: 'GET', url: '/v1/accounts/racebot/tokens', token: h.adminToken });
      assert.deepEqual((live.json() as { tokens: unknown[] }).tokens, []);
    });

    test("a delegate's token is kept when the delegate holds the granted role too", async () => {
      const statsToken = await issue('statsbot', alice);
      await expectOk(put('/v1/accounts/statsbot/roles/metrics'), 204);
      assert.equal(await me(statsToken), 200);
      assert.equal(await active(statsToken), true);
    });
  });
}
