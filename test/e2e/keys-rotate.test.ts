import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { decodeProtectedHeader } from 'jose';
import { DIALECTS, createTestDatabase, type TestDatabase } from '../support/databases.ts';
import { ADMIN_PASSWORD } from '../support/harness.ts';
import { httpsRequest, login } from '../support/process-tools.ts';
import { MCIASSRV, run, startServerProcess, type ServerProcess } from '../support/server-process.ts';

/**
 * `mciassrv keys rotate` against the data directory of a running server: the new key is published at once,
 * tokens of the old key keep working, and the server starts signing with the new key within 10 s.
 */

const kidOf = (token: string) => decodeProtectedHeader(token).kid as string;

describe('mciassrv keys rotate, beside a running server', { concurrency: true }, () => {
  for (const dialect of DIALECTS) {
    describe(dialect, () => {
      let database: TestDatabase | undefined;
      let server: ServerProcess;
      const get = (url: string, token?: string) =>
        httpsRequest(`${server.url}${url}`, { caFile: server.caCertFile, ...(token === undefined ? {} : { token }) });
      const adminLogin = async () => {
        const response = await login(server, 'admin', ADMIN_PASSWORD);
        assert.equal(response.status, 200, response.body);
        return (JSON.parse(response.body) as { token: string }).token;
      };
      const jwksKids = async () => ((JSON.parse((await get('/.well-known/jwks.json')).body) as { keys: { kid: string }[] }).keys).map((k) => k.kid).sort();

      before(async () => {
        if (dialect === 'postgres') database = await createTestDatabase('postgres');
        server = await startServerProcess(database === undefined ? {} : { storageUrl: database.location });
      });
      after(async () => {
        await server.dispose();
        await database?.drop();
      });

      test('prints the new kid; the server publishes it at once, keeps old tokens, and signs with it within 10 s', async () => {
        const before = await adminLogin();
        const oldKid = kidOf(before);
        assert.deepEqual(await jwksKids(), [oldKid]);

        const result = await run(MCIASSRV, ['keys', 'rotate', '--data-dir', server.dataDir]);
        assert.equal(result.code, 0, result.stderr);
        const match = /^new signing key (\S+)\n$/.exec(result.stdout);
        assert.ok(match, result.stdout);
        const newKid = match[1] as string;
        assert.notEqual(newKid, oldKid);

        assert.deepEqual(await jwksKids(), [newKid, oldKid].sort(), 'the running server publishes the new key at once');
        assert.equal((await get('/v1/me', before)).status, 200, "the old key's tokens keep working");

        const deadline = Date.now() + 15_000;
        let token = await adminLogin();
        while (kidOf(token) !== newKid && Date.now() < deadline) {
          await new Promise((resolve) => setTimeout(resolve, 500));
          token = await adminLogin();
        }
        assert.equal(kidOf(token), newKid, 'the server signs with the new key within 10 s');
        assert.equal((await get('/v1/me', token)).status, 200);
        assert.equal((await get('/v1/me', before)).status, 200);
      });
    });
  }
});
