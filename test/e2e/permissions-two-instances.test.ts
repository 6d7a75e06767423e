import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { DIALECTS, createTestDatabase, type TestDatabase } from '../support/databases.ts';
import { DEFAULT_CHECK_CACHE_MS, USER_PASSWORD, waitOutCheckCache } from '../support/harness.ts';
import { httpsRequest, type HttpsResponse } from '../support/process-tools.ts';
import { serveDataDir, startServerProcess, type ServerProcess } from '../support/server-process.ts';

/**
 * SECURITY.md §50, §51: another instance sees a change within `[tokens] check_cache` (1 s by default), however
 * recently it checked the token. Every change is made through one mciassrv process, whose next check sees it at
 * once, and checked through another on the same PostgreSQL database after the bound (and a margin), with that
 * process having checked the same token just before the change, so an answer it remembered is what must expire.
 */

describe(`permission changes seen on another instance within tokens.check_cache (${DEFAULT_CHECK_CACHE_MS} ms)`, { skip: !DIALECTS.includes('postgres') }, () => {
  let database: TestDatabase;
  let serverA: ServerProcess;
  let serverB: ServerProcess;
  let copyDir: string;
  let adminToken: string;
  let appToken: string;
  let aliceToken: string;

  const call = async (server: ServerProcess, method: string, url: string, body?: unknown, token = adminToken): Promise<HttpsResponse> =>
    httpsRequest(`${server.url}${url}`, { caFile: server.caCertFile, method, token, ...(body === undefined ? {} : { body }) });
  const onA = async (method: string, url: string, body?: unknown) => {
    const response = await call(serverA, method, url, body);
    assert.ok(response.status < 300, `${method} ${url}: ${response.status} ${response.body}`);
    return response.status === 204 ? undefined : (JSON.parse(response.body) as Record<string, unknown>);
  };
  const checkOn = async (server: ServerProcess, resource = 'docs', action = 'read'): Promise<boolean> => {
    const response = await call(server, 'POST', '/v1/authz/check', { token: aliceToken, resource, action }, appToken);
    assert.equal(response.status, 200, response.body);
    return (JSON.parse(response.body) as { allowed: boolean }).allowed;
  };
  const permissionsOnB = async () =>
    (JSON.parse((await call(serverB, 'POST', '/v1/token/validate', { token: aliceToken })).body) as { permissions?: unknown[] }).permissions;
  /**
   * Makes a change on A after B has checked (so B may remember the answer before it); A's next check sees it at once,
   * and B's once the bound has passed. Returns B's answer then.
   */
  const changeOnA = async (method: string, url: string, body: unknown, expected: boolean, resource = 'docs', action = 'read') => {
    await checkOn(serverB, resource, action);
    await onA(method, url, body);
    assert.equal(await checkOn(serverA, resource, action), expected, `${method} ${url}: on A at once`);
    await waitOutCheckCache();
    return checkOn(serverB, resource, action);
  };

  before(async () => {
    database = await createTestDatabase('postgres');
    serverA = await startServerProcess({ storageUrl: database.location });
    // A second host: a copy of the first one's data directory (configuration, master key, TLS), its own port.
    copyDir = mkdtempSync(path.join(tmpdir(), 'mcias-e2e-copy-'));
    const dataDirB = path.join(copyDir, 'data');
    cpSync(serverA.dataDir, dataDirB, { recursive: true });
    serverB = await serveDataDir(dataDirB);
    const login = await httpsRequest(`${serverA.url}/v1/auth/login`, { caFile: serverA.caCertFile, body: { username: 'admin', password: serverA.adminPassword } });
    adminToken = (JSON.parse(login.body) as { token: string }).token;
    await onA('POST', '/v1/accounts', { username: 'app', kind: 'system' });
    appToken = (await onA('POST', '/v1/accounts/app/token'))?.['token'] as string;
    await onA('POST', '/v1/accounts', { username: 'alice', kind: 'human', password: USER_PASSWORD, temporary: false });
    await onA('POST', '/v1/accounts', { username: 'bob', kind: 'human', password: USER_PASSWORD, temporary: false });
    const alice = await httpsRequest(`${serverB.url}/v1/auth/login`, { caFile: serverB.caCertFile, body: { username: 'alice', password: USER_PASSWORD } });
    aliceToken = (JSON.parse(alice.body) as { token: string }).token;
  });
  after(async () => {
    await serverB?.stop();
    await serverA?.dispose();
    rmSync(copyDir, { recursive: true, force: true });
    await database?.drop();
  });

  test('grant, revoke, role change, permission deletion and disabling: each seen on B within the bound', async () => {
    await onA('POST', '/v1/roles', { name: 'wiki' });
    const docs = (await onA('POST', '/v1/permissions', { resource: 'docs', action: 'read', description: 'read the docs' }))?.['id'] as string;
    await onA('PUT', '/v1/accounts/alice/roles/wiki');
    await waitOutCheckCache();
    assert.equal(await checkOn(serverB), false, 'the role has no permission yet');

    assert.equal(await changeOnA('PUT', `/v1/roles/wiki/permissions/${docs}`, undefined, true), true, 'permission attached on A');
    assert.deepEqual(await permissionsOnB(), [{ resource: 'docs', action: 'read' }]);

    assert.equal(await changeOnA('DELETE', `/v1/roles/wiki/permissions/${docs}`, undefined, false), false, 'permission detached on A');
    assert.deepEqual(await permissionsOnB(), []);

    assert.equal(await changeOnA('PUT', `/v1/roles/wiki/permissions/${docs}`, undefined, true), true);
    assert.equal(await changeOnA('DELETE', '/v1/accounts/alice/roles/wiki', undefined, false), false, 'role revoked on A');

    assert.equal(await changeOnA('PUT', '/v1/accounts/alice/roles/wiki', undefined, true), true);
    assert.equal(await changeOnA('DELETE', `/v1/permissions/${docs}`, undefined, false), false, 'permission deleted on A');

    assert.equal(await changeOnA('PUT', '/v1/accounts/alice/roles/admin', undefined, true, 'anything', 'at-all'), true, 'admin granted on A');
    assert.equal(await changeOnA('PATCH', '/v1/accounts/alice', { status: 'disabled' }, false, 'anything', 'at-all'), false, 'account disabled on A');
  });

  test('a token revoked on A is inactive on B within the bound', async () => {
    const login = await httpsRequest(`${serverB.url}/v1/auth/login`, { caFile: serverB.caCertFile, body: { username: 'bob', password: USER_PASSWORD } });
    assert.equal(login.status, 200, login.body);
    const token = (JSON.parse(login.body) as { token: string }).token;
    const activeOn = async (server: ServerProcess) => (JSON.parse((await call(server, 'POST', '/v1/token/validate', { token })).body) as { active: boolean }).active;
    assert.equal(await activeOn(serverB), true);
    assert.equal((await call(serverA, 'POST', '/v1/auth/logout', undefined, token)).status, 204);
    assert.equal(await activeOn(serverA), false, 'on A at once');
    await waitOutCheckCache();
    assert.equal(await activeOn(serverB), false, 'on B after the bound');
    assert.equal((await call(serverB, 'GET', '/v1/me', undefined, token)).status, 401);
  });
});
