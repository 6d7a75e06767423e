import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { DIALECTS, createTestDatabase, type TestDatabase } from '../support/databases.ts';
import { USER_PASSWORD } from '../support/harness.ts';
import { httpsRequest, type HttpsResponse } from '../support/process-tools.ts';
import { serveDataDir, startServerProcess, type ServerProcess } from '../support/server-process.ts';

/**
 * SECURITY.md §50: nothing is cached past a change. Every change is made through one mciassrv process and checked
 * at once, with no wait, through another on the same PostgreSQL database.
 */

describe('permission changes seen by the next check on another instance', { skip: !DIALECTS.includes('postgres') }, () => {
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
  const checkOnB = async (resource = 'docs', action = 'read'): Promise<boolean> => {
    const response = await call(serverB, 'POST', '/v1/authz/check', { token: aliceToken, resource, action }, appToken);
    assert.equal(response.status, 200, response.body);
    return (JSON.parse(response.body) as { allowed: boolean }).allowed;
  };
  const permissionsOnB = async () =>
    (JSON.parse((await call(serverB, 'POST', '/v1/token/validate', { token: aliceToken })).body) as { permissions?: unknown[] }).permissions;

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
    const alice = await httpsRequest(`${serverB.url}/v1/auth/login`, { caFile: serverB.caCertFile, body: { username: 'alice', password: USER_PASSWORD } });
    aliceToken = (JSON.parse(alice.body) as { token: string }).token;
  });
  after(async () => {
    await serverB?.stop();
    await serverA?.dispose();
    rmSync(copyDir, { recursive: true, force: true });
    await database?.drop();
  });

  test('grant, revoke, role change, permission deletion and disabling: each seen by the next check on B', async () => {
    await onA('POST', '/v1/roles', { name: 'wiki' });
    const docs = (await onA('POST', '/v1/permissions', { resource: 'docs', action: 'read', description: 'read the docs' }))?.['id'] as string;
    await onA('PUT', '/v1/accounts/alice/roles/wiki');
    assert.equal(await checkOnB(), false, 'the role has no permission yet');

    await onA('PUT', `/v1/roles/wiki/permissions/${docs}`);
    assert.equal(await checkOnB(), true, 'permission attached on A');
    assert.deepEqual(await permissionsOnB(), [{ resource: 'docs', action: 'read' }]);

    await onA('DELETE', `/v1/roles/wiki/permissions/${docs}`);
    assert.equal(await checkOnB(), false, 'permission detached on A');
    assert.deepEqual(await permissionsOnB(), []);

    await onA('PUT', `/v1/roles/wiki/permissions/${docs}`);
    assert.equal(await checkOnB(), true);
    await onA('DELETE', '/v1/accounts/alice/roles/wiki');
    assert.equal(await checkOnB(), false, 'role revoked on A');

    await onA('PUT', '/v1/accounts/alice/roles/wiki');
    assert.equal(await checkOnB(), true);
    await onA('DELETE', `/v1/permissions/${docs}`);
    assert.equal(await checkOnB(), false, 'permission deleted on A');

    await onA('PUT', '/v1/accounts/alice/roles/admin');
    assert.equal(await checkOnB('anything', 'at-all'), true, 'admin granted on A');
    await onA('PATCH', '/v1/accounts/alice', { status: 'disabled' });
    assert.equal(await checkOnB('anything', 'at-all'), false, 'account disabled on A');
  });
});
