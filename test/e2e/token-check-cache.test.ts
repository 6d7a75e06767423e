import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { decodeJwt } from 'jose';
import { DIALECTS, createTestDatabase, type TestDatabase } from '../support/databases.ts';
import { USER_PASSWORD } from '../support/harness.ts';
import { httpsRequest, type HttpsResponse } from '../support/process-tools.ts';
import { startServerProcess, type ServerProcess } from '../support/server-process.ts';

/**
 * SECURITY.md §51: the token check's read is cached, and every write on the instance that made it empties the cache
 * before the write is answered. A real mciassrv over TLS, with the cache at its longest (10 s), so a change that the
 * next request did not see could only have been missed by the invalidation, never waited out. Every step first
 * checks the token (filling the cache), then changes something, then checks again at once.
 */

const CACHE_ENV = { MCIAS_TOKENS_CHECK_CACHE: '10s' } as const;

for (const dialect of DIALECTS) {
  describe(`a change is seen by the next request on the instance that made it, with the cache on [${dialect}]`, () => {
    let database: TestDatabase | undefined;
    let server: ServerProcess;
    let adminToken: string;
    let appToken: string;

    const call = (method: string, url: string, options: { body?: unknown; token?: string } = {}): Promise<HttpsResponse> =>
      httpsRequest(`${server.url}${url}`, { caFile: server.caCertFile, method, ...options });
    const asAdmin = async (method: string, url: string, body?: unknown) => {
      const response = await call(method, url, { token: adminToken, ...(body === undefined ? {} : { body }) });
      assert.ok(response.status < 300, `${method} ${url}: ${response.status} ${response.body}`);
      return response.status === 204 ? {} : (JSON.parse(response.body) as Record<string, unknown>);
    };
    const validate = async (token: string) => {
      const response = await call('POST', '/v1/token/validate', { body: { token } });
      assert.equal(response.status, 200, response.body);
      return JSON.parse(response.body) as { active: boolean; roles?: string[]; permissions?: unknown[] };
    };
    const active = async (token: string) => (await validate(token)).active;
    const meStatus = async (token: string) => (await call('GET', '/v1/me', { token })).status;
    const allowed = async (token: string, resource = 'docs', action = 'read') => {
      const response = await call('POST', '/v1/authz/check', { token: appToken, body: { token, resource, action } });
      assert.equal(response.status, 200, response.body);
      return (JSON.parse(response.body) as { allowed: boolean }).allowed;
    };
    const loginAs = async (username: string, password = USER_PASSWORD) => {
      const response = await call('POST', '/v1/auth/login', { body: { username, password } });
      assert.equal(response.status, 200, response.body);
      return (JSON.parse(response.body) as { token: string }).token;
    };
    /** Checks the token on every kind of route, so each has it cached before the change. */
    const warm = async (token: string) => {
      assert.equal(await active(token), true);
      assert.equal(await meStatus(token), 200);
    };
    const jti = (token: string) => decodeJwt(token).jti as string;

    before(async () => {
      database = dialect === 'postgres' ? await createTestDatabase('postgres') : undefined;
      server = await startServerProcess({ env: CACHE_ENV, ...(database === undefined ? {} : { storageUrl: database.location }) });
      adminToken = await loginAs('admin', server.adminPassword);
      await asAdmin('POST', '/v1/accounts', { username: 'app', kind: 'system' });
      appToken = (await asAdmin('POST', '/v1/accounts/app/token'))['token'] as string;
      await asAdmin('POST', '/v1/accounts', { username: 'alice', kind: 'human', password: USER_PASSWORD, temporary: false });
    });
    after(async () => {
      await server?.dispose();
      await database?.drop();
    });

    test('logout, renewal and revocations', async () => {
      const loggedOut = await loginAs('alice');
      await warm(loggedOut);
      assert.equal((await call('POST', '/v1/auth/logout', { token: loggedOut })).status, 204);
      assert.equal(await active(loggedOut), false, 'logged out');
      assert.equal(await meStatus(loggedOut), 401, 'logged out, as a bearer token');

      const renewed = await loginAs('alice');
      await warm(renewed);
      const renewal = await call('POST', '/v1/auth/renew', { token: renewed });
      assert.equal(renewal.status, 200, renewal.body);
      assert.equal(await active(renewed), false, 'the token that was renewed');
      const fresh = (JSON.parse(renewal.body) as { token: string }).token;

      const other = await loginAs('alice');
      await warm(fresh);
      await warm(other);
      assert.equal((await call('DELETE', `/v1/me/tokens/${jti(fresh)}`, { token: other })).status, 204);
      assert.equal(await active(fresh), false, 'revoked by its owner');

      await asAdmin('DELETE', `/v1/tokens/${jti(other)}`);
      assert.equal(await active(other), false, 'revoked by an administrator');
      assert.equal(await meStatus(other), 401);
    });

    test('role grant and revocation, and a role deleted', async () => {
      const token = await loginAs('alice');
      await asAdmin('POST', '/v1/roles', { name: 'wiki' });
      await warm(token);
      assert.deepEqual((await validate(token)).roles, []);
      await asAdmin('PUT', '/v1/accounts/alice/roles/wiki');
      assert.deepEqual((await validate(token)).roles, ['wiki'], 'granted');
      assert.deepEqual((JSON.parse((await call('GET', '/v1/me', { token })).body) as { roles: string[] }).roles, ['wiki']);
      await asAdmin('DELETE', '/v1/accounts/alice/roles/wiki');
      assert.deepEqual((await validate(token)).roles, [], 'revoked');
      await asAdmin('PUT', '/v1/accounts/alice/roles/wiki');
      assert.deepEqual((await validate(token)).roles, ['wiki']);
      await asAdmin('DELETE', '/v1/roles/wiki');
      assert.deepEqual((await validate(token)).roles, [], 'the role deleted');
      // Access control reads the same cached principal: an admin grant opens an admin route at once.
      assert.equal((await call('GET', '/v1/accounts', { token })).status, 403);
      await asAdmin('PUT', '/v1/accounts/alice/roles/admin');
      assert.equal((await call('GET', '/v1/accounts', { token })).status, 200, 'admin granted');
      await asAdmin('DELETE', '/v1/accounts/alice/roles/admin');
      assert.equal((await call('GET', '/v1/accounts', { token })).status, 403, 'admin revoked');
    });

    test('permissions attached, detached and deleted', async () => {
      const token = await loginAs('alice');
      await asAdmin('POST', '/v1/roles', { name: 'docs' });
      await asAdmin('PUT', '/v1/accounts/alice/roles/docs');
      const id = (await asAdmin('POST', '/v1/permissions', { resource: 'docs', action: 'read', description: 'read the docs' }))['id'] as string;
      assert.equal(await allowed(token), false);
      await asAdmin('PUT', `/v1/roles/docs/permissions/${id}`);
      assert.equal(await allowed(token), true, 'attached');
      assert.deepEqual((await validate(token)).permissions, [{ resource: 'docs', action: 'read' }]);
      await asAdmin('DELETE', `/v1/roles/docs/permissions/${id}`);
      assert.equal(await allowed(token), false, 'detached');
      await asAdmin('PUT', `/v1/roles/docs/permissions/${id}`);
      assert.equal(await allowed(token), true);
      await asAdmin('DELETE', `/v1/permissions/${id}`);
      assert.equal(await allowed(token), false, 'deleted');
      assert.deepEqual((await validate(token)).permissions, []);
    });

    test('password changes, disabling and deletion', async () => {
      const kept = await loginAs('alice');
      const others = await loginAs('alice');
      await warm(kept);
      await warm(others);
      const change = await call('PUT', '/v1/me/password', { token: kept, body: { current_password: USER_PASSWORD, new_password: 'another long enough password' } });
      assert.equal(change.status, 204, change.body);
      assert.equal(await active(others), false, "the account's other token, after its own password change");
      assert.equal(await active(kept), true);

      await asAdmin('PUT', '/v1/accounts/alice/password', { password: USER_PASSWORD, temporary: false });
      assert.equal(await active(kept), false, "after an administrator's reset");

      const disabled = await loginAs('alice');
      await warm(disabled);
      await asAdmin('PATCH', '/v1/accounts/alice', { status: 'disabled' });
      assert.equal(await active(disabled), false, 'disabled');
      assert.equal(await meStatus(disabled), 401);
      await asAdmin('PATCH', '/v1/accounts/alice', { status: 'active' });

      await asAdmin('POST', '/v1/accounts', { username: 'bob', kind: 'human', password: USER_PASSWORD, temporary: false });
      const deleted = await loginAs('bob');
      await warm(deleted);
      await asAdmin('DELETE', '/v1/accounts/bob');
      assert.equal(await active(deleted), false, 'deleted');
    });

    test("a service token issued again replaces the live one, and the service's token revoked", async () => {
      await warm(appToken);
      const replacement = (await asAdmin('POST', '/v1/accounts/app/token'))['token'] as string;
      assert.equal(await active(appToken), false, 'the replaced service token');
      appToken = replacement;
      await warm(appToken);
      await asAdmin('DELETE', '/v1/accounts/app/token');
      assert.equal(await active(appToken), false, 'revoked');
      appToken = (await asAdmin('POST', '/v1/accounts/app/token'))['token'] as string;
    });
  });
}
