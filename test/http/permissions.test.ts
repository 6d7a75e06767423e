import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { auditRows } from '../support/audit.ts';
import { DIALECTS } from '../support/databases.ts';
import { USER_PASSWORD, createHarness, type Harness } from '../support/harness.ts';
import { assertDatabaseUnchanged, assertProblem, issueToken, snapshotDatabase } from '../support/inspect.ts';

/** docs/api.md "Permissions"; SECURITY.md §50. */

for (const dialect of DIALECTS) {
  describe(`permissions and POST /v1/authz/check [${dialect}]`, () => {
    let h: Harness;
    let appToken: string;
    const admin = (method: 'GET' | 'POST' | 'PUT' | 'DELETE', url: string, body?: unknown) =>
      h.request({ method, url, token: h.adminToken, ...(body === undefined ? {} : { body }) });
    const ok = async (method: 'GET' | 'POST' | 'PUT' | 'DELETE', url: string, body?: unknown) => {
      const response = await admin(method, url, body);
      assert.ok(response.statusCode < 300, `${method} ${url}: ${response.statusCode} ${response.body}`);
      return response.statusCode === 204 ? undefined : response.json();
    };
    const check = async (token: string, resource = 'docs', action = 'read', asker = appToken): Promise<boolean> => {
      const response = await h.request({ method: 'POST', url: '/v1/authz/check', token: asker, body: { token, resource, action } });
      assert.equal(response.statusCode, 200, response.body);
      return response.json().allowed;
    };
    let docsRead: string;

    before(async () => {
      h = await createHarness(dialect);
      // The asking app: a service with a token of its own and no role at all.
      await h.createAccount('app', 'system');
      appToken = await issueToken(h, 'app');
      await ok('POST', '/v1/roles', { name: 'wiki' });
      docsRead = (await ok('POST', '/v1/permissions', { resource: 'docs', action: 'read', description: 'read the docs' })).id;
      await ok('PUT', `/v1/roles/wiki/permissions/${docsRead}`);
    });
    after(() => h.close());

    test('the matrix: admin, holder, non-holder, disabled, revoked, system account with and without the role', async () => {
      for (const name of ['holder', 'outsider', 'disabled', 'revoked']) await h.createAccount(name);
      for (const name of ['holder', 'disabled', 'revoked']) await ok('PUT', `/v1/accounts/${name}/roles/wiki`);
      await h.createAccount('svc.with', 'system');
      await h.createAccount('svc.without', 'system');
      await ok('PUT', '/v1/accounts/svc.with/roles/wiki');
      const tokens = {
        admin: h.adminToken,
        holder: await h.login('holder', USER_PASSWORD),
        outsider: await h.login('outsider', USER_PASSWORD),
        disabled: await h.login('disabled', USER_PASSWORD),
        revoked: await h.login('revoked', USER_PASSWORD),
        'svc.with': await issueToken(h, 'svc.with'),
        'svc.without': await issueToken(h, 'svc.without'),
      };
      assert.equal((await h.request({ method: 'PATCH', url: '/v1/accounts/disabled', token: h.adminToken, body: { status: 'disabled' } })).statusCode, 200);
      assert.equal((await h.request({ method: 'POST', url: '/v1/auth/logout', token: tokens.revoked })).statusCode, 204);
      const expected: Record<keyof typeof tokens, [boolean, boolean]> = {
        // [docs:read, docs:write]
        admin: [true, true],
        holder: [true, false],
        outsider: [false, false],
        disabled: [false, false],
        revoked: [false, false],
        'svc.with': [true, false],
        'svc.without': [false, false],
      };
      for (const [who, [read, write]] of Object.entries(expected)) {
        const token = tokens[who as keyof typeof tokens];
        assert.equal(await check(token, 'docs', 'read'), read, `${who} docs:read`);
        assert.equal(await check(token, 'docs', 'write'), write, `${who} docs:write`);
      }
      assert.equal(await check('not.a.token'), false);
      // Any valid token may ask, a person's too; no token may not.
      assert.equal(await check(tokens.holder, 'docs', 'read', tokens.outsider), true);
      assertProblem(await h.request({ method: 'POST', url: '/v1/authz/check', body: { token: tokens.holder, resource: 'docs', action: 'read' } }), {
        status: 401,
      });
    });

    test('a change takes effect at the next check: grant, revoke, role taken away, permission deleted', async () => {
      await h.createAccount('changer');
      const token = await h.login('changer', USER_PASSWORD);
      assert.equal(await check(token), false);
      await ok('PUT', '/v1/accounts/changer/roles/wiki');
      assert.equal(await check(token), true);
      await ok('DELETE', '/v1/accounts/changer/roles/wiki');
      assert.equal(await check(token), false);
      await ok('POST', '/v1/roles', { name: 'temp' });
      const temp = (await ok('POST', '/v1/permissions', { resource: 'temp', action: 'use', description: 'short-lived' })).id;
      await ok('PUT', `/v1/accounts/changer/roles/temp`);
      assert.equal(await check(token, 'temp', 'use'), false);
      await ok('PUT', `/v1/roles/temp/permissions/${temp}`);
      assert.equal(await check(token, 'temp', 'use'), true);
      const validated = await h.request({ method: 'POST', url: '/v1/token/validate', body: { token } });
      assert.deepEqual(validated.json().permissions, [{ resource: 'temp', action: 'use' }]);
      await ok('DELETE', `/v1/roles/temp/permissions/${temp}`);
      assert.equal(await check(token, 'temp', 'use'), false);
      await ok('PUT', `/v1/roles/temp/permissions/${temp}`);
      await ok('DELETE', `/v1/permissions/${temp}`);
      assert.equal(await check(token, 'temp', 'use'), false);
      assert.deepEqual((await h.request({ method: 'POST', url: '/v1/token/validate', body: { token } })).json().permissions, []);
    });

    test('wildcards: * as the resource or the action of a stored permission', async () => {
      await h.createAccount('reader');
      await ok('POST', '/v1/roles', { name: 'readers' });
      const anyRead = (await ok('POST', '/v1/permissions', { resource: '*', action: 'read', description: 'read anything' })).id;
      await ok('PUT', `/v1/roles/readers/permissions/${anyRead}`);
      await ok('PUT', '/v1/accounts/reader/roles/readers');
      const token = await h.login('reader', USER_PASSWORD);
      assert.equal(await check(token, 'docs', 'read'), true);
      assert.equal(await check(token, 'billing', 'read'), true);
      assert.equal(await check(token, 'billing', 'write'), false);
      // A question is always concrete.
      assertProblem(await h.request({ method: 'POST', url: '/v1/authz/check', token: appToken, body: { token, resource: '*', action: 'read' } }), {
        status: 400,
      });
    });

    test('a session with a temporary password is allowed nothing', async () => {
      assert.equal((await admin('POST', '/v1/accounts', { username: 'fresh', kind: 'human', password: USER_PASSWORD })).statusCode, 201);
      await ok('PUT', '/v1/accounts/fresh/roles/wiki');
      assert.equal(await check(await h.login('fresh', USER_PASSWORD)), false);
    });

    test('administration: list, show a role, duplicates, 404s, bad input; every change audited', async () => {
      const listed = (await ok('GET', '/v1/permissions')).permissions as { id: string; resource: string; roles: string[]; description: string }[];
      const docs = listed.find((p) => p.id === docsRead);
      assert.deepEqual(docs?.roles, ['wiki']);
      assert.equal(docs?.description, 'read the docs');
      const shown = await ok('GET', '/v1/roles/wiki');
      assert.deepEqual(shown.permissions, [{ id: docsRead, resource: 'docs', action: 'read' }]);
      assert.ok(shown.holders.includes('holder') && shown.holders.includes('svc.with') && !shown.holders.includes('outsider'));
      assertProblem(await admin('GET', '/v1/roles/nope'), { status: 404 });

      const snapshot = await snapshotDatabase(h.runtime.database.db);
      assertProblem(await admin('POST', '/v1/permissions', { resource: 'docs', action: 'read', description: 'again' }), { status: 409 });
      for (const body of [
        { resource: 'Docs', action: 'read', description: '' },
        { resource: 'docs', action: 'read write', description: '' },
        { resource: 'docs', action: 'read' },
        { resource: 'docs', action: 'x', description: '', roles: ['wiki'] },
      ]) {
        assertProblem(await admin('POST', '/v1/permissions', body), { status: 400 });
      }
      assertProblem(await admin('PUT', `/v1/roles/nope/permissions/${docsRead}`), { status: 404 });
      assertProblem(await admin('PUT', '/v1/roles/wiki/permissions/00000000-0000-4000-8000-000000000000'), { status: 404 });
      assertProblem(await admin('DELETE', '/v1/roles/admin/permissions/' + docsRead), { status: 404 });
      assertProblem(await admin('DELETE', '/v1/permissions/00000000-0000-4000-8000-000000000000'), { status: 404 });
      // Attaching what is attached changes nothing, and writes no audit row.
      assert.equal((await admin('PUT', `/v1/roles/wiki/permissions/${docsRead}`)).statusCode, 204);
      assertDatabaseUnchanged(snapshot, await snapshotDatabase(h.runtime.database.db));

      const types = new Set((await auditRows(h)).filter((r) => r.type.startsWith('permission_')).map((r) => r.type));
      assert.deepEqual([...types].sort(), ['permission_created', 'permission_deleted', 'permission_granted', 'permission_revoked']);
      const [created] = await auditRows(h, { type: 'permission_created' });
      assert.equal(created?.actor_username, 'admin');
      assert.equal(created?.details['resource'], 'docs');
    });
  });
}
