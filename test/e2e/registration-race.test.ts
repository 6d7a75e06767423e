import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { DIALECTS, createTestDatabase, type TestDatabase } from '../support/databases.ts';
import { USER_PASSWORD } from '../support/harness.ts';
import { httpsRequest, login, type HttpsResponse } from '../support/process-tools.ts';
import { startServerProcess, type ServerProcess } from '../support/server-process.ts';

/**
 * SECURITY.md §49: concurrent redemptions of a code's last use give exactly one account, decided by the database.
 * Over real HTTPS against a real mciassrv process, on each dialect.
 */

for (const dialect of DIALECTS) {
  describe(`concurrent redemptions of one registration code [${dialect}]`, () => {
    let database: TestDatabase | undefined;
    let server: ServerProcess;
    let adminToken: string;
    const call = (method: string, url: string, body?: unknown, token?: string): Promise<HttpsResponse> =>
      httpsRequest(`${server.url}${url}`, {
        caFile: server.caCertFile,
        method,
        ...(body === undefined ? {} : { body }),
        ...(token === undefined ? {} : { token }),
      });
    const newCode = async (uses: number): Promise<string> => {
      const response = await call('POST', '/v1/registrations', { uses, roles: [] }, adminToken);
      assert.equal(response.status, 201, response.body);
      return (JSON.parse(response.body) as { code: string }).code;
    };
    const accountCount = async () =>
      (JSON.parse((await call('GET', '/v1/accounts', undefined, adminToken)).body) as { accounts: unknown[] }).accounts.length;
    /** `n` redemptions of `code` sent at once, each for its own new username; returns the statuses. */
    const race = async (code: string, prefix: string, n = 5): Promise<number[]> => {
      const responses = await Promise.all(
        Array.from({ length: n }, (_, i) => call('POST', '/v1/register', { code, username: `${prefix}${i}`, password: USER_PASSWORD })),
      );
      for (const response of responses) {
        if (response.status !== 201) assert.equal((JSON.parse(response.body) as { code: string }).code, 'invalid_credentials', response.body);
      }
      return responses.map((r) => r.status);
    };

    before(async () => {
      if (dialect === 'postgres') database = await createTestDatabase('postgres');
      server = await startServerProcess(database === undefined ? {} : { storageUrl: database.location });
      const response = await login(server, 'admin', server.adminPassword);
      adminToken = (JSON.parse(response.body) as { token: string }).token;
    });
    after(async () => {
      await server.dispose();
      await database?.drop();
    });

    test('five at once on a one-use code: exactly one account', async () => {
      const before = await accountCount();
      const statuses = await race(await newCode(1), 'racer');
      assert.equal(statuses.filter((s) => s === 201).length, 1, `statuses: ${statuses.join(' ')}`);
      assert.equal(await accountCount(), before + 1);
    });

    test('five at once on a two-use code: exactly two accounts, and the code is used up', async () => {
      const before = await accountCount();
      const code = await newCode(2);
      const statuses = await race(code, 'pair');
      assert.equal(statuses.filter((s) => s === 201).length, 2, `statuses: ${statuses.join(' ')}`);
      assert.equal(await accountCount(), before + 2);
      const listed = JSON.parse((await call('GET', '/v1/registrations', undefined, adminToken)).body) as { registrations: { uses_left: number }[] };
      assert.ok(listed.registrations.every((r) => r.uses_left >= 0));
      assert.equal((await call('POST', '/v1/register', { code, username: 'pair.late', password: USER_PASSWORD })).status, 401);
    });
  });
}
