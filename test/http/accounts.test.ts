import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { LightMyRequestResponse } from 'fastify';
import { DIALECTS } from '../support/databases.ts';
import { USER_PASSWORD, createHarness, type Harness } from '../support/harness.ts';
import { assertNoSecrets, assertProblem, recordingRequests, rowCount } from '../support/inspect.ts';

/** docs/api.md, administration: account creation, status, deletion, password reset and role membership. */

const NEW_PASSWORD = 'a completely different passphrase';
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
const RFC3339_UTC = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$/;

for (const dialect of DIALECTS) {
  describe(`account administration [${dialect}]`, () => {
    let h: Harness;
    let request: Harness['request'];
    let responses: LightMyRequestResponse[];
    const as = (token: string) => ({
      get: (url: string) => request({ method: 'GET', url, token }),
      post: (url: string, body?: unknown) => request({ method: 'POST', url, token, ...(body === undefined ? {} : { body }) }),
      put: (url: string, body?: unknown) => request({ method: 'PUT', url, token, ...(body === undefined ? {} : { body }) }),
      patch: (url: string, body: unknown) => request({ method: 'PATCH', url, token, body }),
      delete: (url: string) => request({ method: 'DELETE', url, token }),
    });
    let admin: ReturnType<typeof as>;
    const auditRows = (subjectId: string) =>
      h.runtime.database.db.selectFrom('audit_events').selectAll().where('subject_id', '=', subjectId).orderBy('seq').execute();

    before(async () => {
      h = await createHarness(dialect);
      ({ request, responses } = recordingRequests(h));
      admin = as(h.adminToken);
    });
    after(() => h.close());

    test('creating a human account answers 201 with the account view, lower-casing the username', async () => {
      const response = await admin.post('/v1/accounts', { username: 'Alice.Smith', kind: 'human', password: USER_PASSWORD });
      assert.equal(response.statusCode, 201, response.body);
      const account = response.json();
      assert.deepEqual(Object.keys(account).sort(), ['created_at', 'id', 'kind', 'password_change_required', 'roles', 'status', 'totp_enabled', 'username']);
      assert.equal(account.username, 'alice.smith');
      assert.equal(account.kind, 'human');
      assert.equal(account.status, 'active');
      assert.deepEqual(account.roles, []);
      assert.equal(account.totp_enabled, false);
      // An administrator chose the password: it is temporary (SECURITY.md §39).
      assert.equal(account.password_change_required, true);
      assert.match(account.id, UUID);
      assert.match(account.created_at, RFC3339_UTC);
      const shown = await admin.get('/v1/accounts/ALICE.SMITH');
      assert.equal(shown.statusCode, 200);
      assert.deepEqual(shown.json(), account);
      // The stored name is the lower-cased one, and the person logs in with any case.
      assert.ok(await h.login('Alice.Smith', USER_PASSWORD));
      const [audit] = (await auditRows(account.id)).filter((r) => r.type === 'account_created');
      assert.equal(audit?.actor_username, 'admin');
    });

    test('a duplicate username, in any case, is 409 conflict and creates nothing', async () => {
      const accountsBefore = await rowCount(h.runtime.database.db, 'accounts');
      for (const username of ['alice.smith', 'ALICE.SMITH']) {
        const response = await admin.post('/v1/accounts', { username, kind: 'system' });
        assertProblem(response, { status: 409, code: 'conflict' });
      }
      assert.equal(await rowCount(h.runtime.database.db, 'accounts'), accountsBefore);
    });

    test('a human account needs a password and a system account refuses one', async () => {
      const accountsBefore = await rowCount(h.runtime.database.db, 'accounts');
      assertProblem(await admin.post('/v1/accounts', { username: 'nopass', kind: 'human' }), { status: 400, code: 'invalid_request' });
      assertProblem(await admin.post('/v1/accounts', { username: 'svcpass', kind: 'system', password: USER_PASSWORD }), {
        status: 400,
        code: 'invalid_request',
      });
      assert.equal(await rowCount(h.runtime.database.db, 'accounts'), accountsBefore);
      const system = await admin.post('/v1/accounts', { username: 'billing', kind: 'system' });
      assert.equal(system.statusCode, 201, system.body);
      assert.equal(system.json().kind, 'system');
      const row = await h.runtime.database.db.selectFrom('accounts').select('password_hash').where('username', '=', 'billing').executeTakeFirstOrThrow();
      assert.equal(row.password_hash, null);
    });

    test('an invalid new password is refused with its reason, and no account is created', async () => {
      const cases: [string, string][] = [
        ['short', 'password_too_short'],
        ['password1234567890', 'password_common'],
        ['quentin-has-a-long-password', 'password_contains_username'],
      ];
      for (const [password, reason] of cases) {
        const body = assertProblem(await admin.post('/v1/accounts', { username: 'quentin', kind: 'human', password }), {
          status: 400,
          code: 'invalid_request',
        });
        assert.equal(body['reason'], reason, password);
      }
      assertProblem(await admin.get('/v1/accounts/quentin'), { status: 404, code: 'not_found' });
    });

    test('the account list shows every account, sorted, with its roles', async () => {
      const response = await admin.get('/v1/accounts');
      assert.equal(response.statusCode, 200);
      const accounts = response.json().accounts as { username: string; roles: string[] }[];
      const names = accounts.map((a) => a.username);
      assert.deepEqual(names, [...names].sort());
      assert.ok(names.includes('alice.smith') && names.includes('billing'));
      assert.deepEqual(accounts.find((a) => a.username === 'admin')?.roles, ['admin']);
    });

    test('an unknown account is 404 not_found on every account route', async () => {
      assertProblem(await admin.get('/v1/accounts/ghost'), { status: 404, code: 'not_found' });
      assertProblem(await admin.patch('/v1/accounts/ghost', { status: 'disabled' }), { status: 404, code: 'not_found' });
      assertProblem(await admin.delete('/v1/accounts/ghost'), { status: 404, code: 'not_found' });
      assertProblem(await admin.put('/v1/accounts/ghost/password', { password: NEW_PASSWORD }), { status: 404, code: 'not_found' });
      assertProblem(await admin.put('/v1/accounts/ghost/roles/admin'), { status: 404, code: 'not_found' });
      assertProblem(await admin.delete('/v1/accounts/ghost/roles/admin'), { status: 404, code: 'not_found' });
    });

    test('disabling an account revokes its tokens: they stay dead after it is enabled again', async () => {
      await h.createAccount('dave');
      const token = await h.login('dave', USER_PASSWORD);
      const second = await h.login('dave', USER_PASSWORD);
      assert.equal((await as(token).get('/v1/me')).statusCode, 200);

      const disabled = await admin.patch('/v1/accounts/dave', { status: 'disabled' });
      assert.equal(disabled.statusCode, 200);
      assert.equal(disabled.json().status, 'disabled');
      assertProblem(await as(token).get('/v1/me'), { status: 401, code: 'unauthenticated' });
      assertProblem(await as(second).get('/v1/me'), { status: 401, code: 'unauthenticated' });
      assertProblem(await request({ method: 'POST', url: '/v1/auth/login', body: { username: 'dave', password: USER_PASSWORD } }), {
        status: 401,
        code: 'invalid_credentials',
      });
      const live = await h.runtime.database.db
        .selectFrom('tokens')
        .innerJoin('accounts', 'accounts.id', 'tokens.account_id')
        .select(['tokens.revoked_at', 'tokens.revoked_reason'])
        .where('accounts.username', '=', 'dave')
        .execute();
      assert.equal(live.length, 2);
      for (const row of live) {
        assert.notEqual(row.revoked_at, null);
        assert.equal(row.revoked_reason, 'account_disabled');
      }

      const enabled = await admin.patch('/v1/accounts/dave', { status: 'active' });
      assert.equal(enabled.json().status, 'active');
      assertProblem(await as(token).get('/v1/me'), { status: 401, code: 'unauthenticated' });
      assert.ok(await h.login('dave', USER_PASSWORD));
    });

    test('an administrator cannot disable or delete their own account', async () => {
      assertProblem(await admin.patch('/v1/accounts/admin', { status: 'disabled' }), { status: 409, code: 'conflict' });
      assertProblem(await admin.delete('/v1/accounts/admin'), { status: 409, code: 'conflict' });
      assert.equal((await admin.get('/v1/me')).json().status, 'active');
    });

    test('deleting an account revokes its tokens, removes its rows, and keeps its audit trail', async () => {
      await h.createAccount('erik');
      const token = await h.login('erik', USER_PASSWORD);
      const id = (await admin.get('/v1/accounts/erik')).json().id as string;
      assert.equal((await admin.put('/v1/accounts/erik/roles/admin')).statusCode, 204);
      const auditBefore = await auditRows(id);
      assert.ok(auditBefore.length >= 2);

      const response = await admin.delete('/v1/accounts/erik');
      assert.equal(response.statusCode, 204);
      assert.equal(response.body, '');
      assertProblem(await as(token).get('/v1/me'), { status: 401, code: 'unauthenticated' });
      assertProblem(await admin.get('/v1/accounts/erik'), { status: 404, code: 'not_found' });
      const db = h.runtime.database.db;
      assert.equal((await db.selectFrom('accounts').select('id').where('id', '=', id).execute()).length, 0);
      assert.equal((await db.selectFrom('tokens').select('jti').where('account_id', '=', id).execute()).length, 0);
      assert.equal((await db.selectFrom('account_roles').select('role_name').where('account_id', '=', id).execute()).length, 0);

      const auditAfter = await auditRows(id);
      assert.deepEqual(auditAfter.slice(0, auditBefore.length), auditBefore);
      const deleted = auditAfter.find((r) => r.type === 'account_deleted');
      assert.equal(deleted?.subject_username, 'erik');
      assert.equal(deleted?.actor_username, 'admin');
      // The name is free again, for a different account.
      const again = await admin.post('/v1/accounts', { username: 'erik', kind: 'system' });
      assert.equal(again.statusCode, 201);
      assert.notEqual(again.json().id, id);
    });

    test("an administrator's password reset sets the new password and revokes every token of the account", async () => {
      await h.createAccount('fran');
      const token = await h.login('fran', USER_PASSWORD);
      const response = await admin.put('/v1/accounts/fran/password', { password: NEW_PASSWORD });
      assert.equal(response.statusCode, 204);
      assertProblem(await as(token).get('/v1/me'), { status: 401, code: 'unauthenticated' });
      assertProblem(await request({ method: 'POST', url: '/v1/auth/login', body: { username: 'fran', password: USER_PASSWORD } }), {
        status: 401,
        code: 'invalid_credentials',
      });
      assert.ok(await h.login('fran', NEW_PASSWORD));
      const audit = (await auditRows((await admin.get('/v1/accounts/fran')).json().id)).find((r) => r.type === 'password_reset');
      assert.equal(audit?.actor_username, 'admin');
      assert.equal(JSON.parse(audit?.details ?? '{}').tokens_revoked, 1);
    });

    test('a password reset checks the password rules and is refused for a system account', async () => {
      const body = assertProblem(await admin.put('/v1/accounts/fran/password', { password: 'tiny' }), { status: 400, code: 'invalid_request' });
      assert.equal(body['reason'], 'password_too_short');
      assertProblem(await admin.put('/v1/accounts/billing/password', { password: NEW_PASSWORD }), { status: 400, code: 'invalid_request' });
      assert.ok(await h.login('fran', NEW_PASSWORD));
    });

    test('granting a role adds it (once), granting an unknown role is 404 and creates no role', async () => {
      await h.createAccount('gail');
      assert.equal((await admin.post('/v1/roles', { name: 'auditor' })).statusCode, 201);
      assert.equal((await admin.put('/v1/accounts/gail/roles/auditor')).statusCode, 204);
      assert.equal((await admin.put('/v1/accounts/gail/roles/AUDITOR')).statusCode, 204);
      assert.deepEqual((await admin.get('/v1/accounts/gail')).json().roles, ['auditor']);

      const rolesBefore = await rowCount(h.runtime.database.db, 'roles');
      assertProblem(await admin.put('/v1/accounts/gail/roles/nonexistent'), { status: 404, code: 'not_found' });
      assert.equal(await rowCount(h.runtime.database.db, 'roles'), rolesBefore);
      assert.deepEqual((await admin.get('/v1/accounts/gail')).json().roles, ['auditor']);
    });

    test('revoking a role removes it; revoking one not held is 404; an admin cannot drop their own admin role', async () => {
      assert.equal((await admin.delete('/v1/accounts/gail/roles/auditor')).statusCode, 204);
      assert.deepEqual((await admin.get('/v1/accounts/gail')).json().roles, []);
      assertProblem(await admin.delete('/v1/accounts/gail/roles/auditor'), { status: 404, code: 'not_found' });
      assertProblem(await admin.delete('/v1/accounts/admin/roles/admin'), { status: 409, code: 'conflict' });
      assert.deepEqual((await admin.get('/v1/me')).json().roles, ['admin']);
    });

    test('no response in this file carried a password hash or a password', () => {
      assertNoSecrets(responses, [USER_PASSWORD, NEW_PASSWORD]);
    });
  });
}
