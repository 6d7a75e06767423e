import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { LightMyRequestResponse } from 'fastify';
import { DIALECTS } from '../support/databases.ts';
import { USER_PASSWORD, createHarness, type Harness } from '../support/harness.ts';
import { assertNoSecrets, assertProblem, recordingRequests } from '../support/inspect.ts';

/** docs/api.md, "Roles". The admin role always exists and cannot be deleted. */

for (const dialect of DIALECTS) {
  describe(`role administration [${dialect}]`, () => {
    let h: Harness;
    let request: Harness['request'];
    let responses: LightMyRequestResponse[];
    const listRoles = async () => {
      const response = await request({ method: 'GET', url: '/v1/roles', token: h.adminToken });
      assert.equal(response.statusCode, 200);
      return response.json().roles as { name: string; permissions: unknown[] }[];
    };
    const auditOf = (type: string) =>
      h.runtime.database.db.selectFrom('audit_events').selectAll().where('type', '=', type).orderBy('seq').execute();

    before(async () => {
      h = await createHarness(dialect);
      ({ request, responses } = recordingRequests(h));
    });
    after(() => h.close());

    test('a new server has exactly the admin role, with no permissions', async () => {
      assert.deepEqual(await listRoles(), [{ name: 'admin', permissions: [] }]);
    });

    test('creating a role answers 201 with the role, lower-cased, and it is listed', async () => {
      const response = await request({ method: 'POST', url: '/v1/roles', token: h.adminToken, body: { name: 'Deploy.Ops' } });
      assert.equal(response.statusCode, 201, response.body);
      assert.deepEqual(response.json(), { name: 'deploy.ops', permissions: [] });
      assert.deepEqual((await listRoles()).map((r) => r.name), ['admin', 'deploy.ops']);
      const [audit] = await auditOf('role_created');
      assert.equal(audit?.actor_username, 'admin');
      assert.equal(JSON.parse(audit?.details ?? '{}').role, 'deploy.ops');
    });

    test('creating a role that exists, in any case, is 409 conflict', async () => {
      for (const name of ['deploy.ops', 'DEPLOY.OPS', 'admin', 'Admin']) {
        assertProblem(await request({ method: 'POST', url: '/v1/roles', token: h.adminToken, body: { name } }), { status: 409, code: 'conflict' });
      }
      assert.equal((await listRoles()).length, 2);
    });

    test('a role name must match the name pattern', async () => {
      for (const name of ['-leading-dash', 'has space', 'a'.repeat(65), 'ünïcode', '']) {
        assertProblem(await request({ method: 'POST', url: '/v1/roles', token: h.adminToken, body: { name } }), {
          status: 400,
          code: 'invalid_request',
        });
      }
      assert.equal((await listRoles()).length, 2);
    });

    test('the admin role cannot be deleted, in any spelling', async () => {
      for (const name of ['admin', 'ADMIN', 'Admin']) {
        assertProblem(await request({ method: 'DELETE', url: `/v1/roles/${name}`, token: h.adminToken }), { status: 409, code: 'conflict' });
      }
      assert.ok((await listRoles()).some((r) => r.name === 'admin'));
      assert.deepEqual((await request({ method: 'GET', url: '/v1/me', token: h.adminToken })).json().roles, ['admin']);
    });

    test('deleting a role removes it and every grant of it', async () => {
      await h.createAccount('olga');
      assert.equal((await request({ method: 'PUT', url: '/v1/accounts/olga/roles/deploy.ops', token: h.adminToken })).statusCode, 204);
      const token = await h.login('olga', USER_PASSWORD);
      assert.deepEqual((await request({ method: 'GET', url: '/v1/me', token })).json().roles, ['deploy.ops']);

      const response = await request({ method: 'DELETE', url: '/v1/roles/Deploy.Ops', token: h.adminToken });
      assert.equal(response.statusCode, 204);
      assert.deepEqual((await listRoles()).map((r) => r.name), ['admin']);
      assert.deepEqual((await request({ method: 'GET', url: '/v1/accounts/olga', token: h.adminToken })).json().roles, []);
      const grants = await h.runtime.database.db.selectFrom('account_roles').select('role_name').where('role_name', '=', 'deploy.ops').execute();
      assert.equal(grants.length, 0);
      const [audit] = await auditOf('role_deleted');
      assert.equal(JSON.parse(audit?.details ?? '{}').role, 'deploy.ops');
    });

    test('deleting an unknown role is 404 not_found', async () => {
      assertProblem(await request({ method: 'DELETE', url: '/v1/roles/deploy.ops', token: h.adminToken }), { status: 404, code: 'not_found' });
    });

    test('a deleted role can be created again, and starts with no holders', async () => {
      assert.equal((await request({ method: 'POST', url: '/v1/roles', token: h.adminToken, body: { name: 'deploy.ops' } })).statusCode, 201);
      assert.deepEqual((await request({ method: 'GET', url: '/v1/accounts/olga', token: h.adminToken })).json().roles, []);
    });

    test('no response in this file carried a password hash or a password', () => {
      assertNoSecrets(responses, [USER_PASSWORD]);
    });
  });
}
