import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { DIALECTS, createTestDatabase, type TestDatabase } from '../support/databases.ts';
import { USER_PASSWORD } from '../support/harness.ts';
import { ctl } from '../support/mciasctl.ts';
import { httpsRequest, type HttpsResponse } from '../support/process-tools.ts';
import { serveDataDir, startServerProcess, type ServerProcess } from '../support/server-process.ts';

/**
 * SECURITY.md §9 as operators run it: two real mciassrv processes on one PostgreSQL database (two hosts behind a load
 * balancer) share the failed-login counts, so an attacker spreading guesses over both gets no more than over one.
 * Short configured times: 2 free failures, delays of 10-20 ms, the address locked at 4 failures for an hour, the
 * account at 8 for 3 s.
 */

const THROTTLE_ENV = {
  MCIAS_LOGIN_THROTTLE_FREE_FAILURES: '2',
  MCIAS_LOGIN_THROTTLE_BASE_DELAY: '10ms',
  MCIAS_LOGIN_THROTTLE_MAX_DELAY: '20ms',
  MCIAS_LOGIN_THROTTLE_ACCOUNT_LOCKOUT_FAILURES: '8',
  MCIAS_LOGIN_THROTTLE_ACCOUNT_LOCKOUT: '3s',
  MCIAS_LOGIN_THROTTLE_ADDRESS_LOCKOUT_FAILURES: '4',
  MCIAS_LOGIN_THROTTLE_ADDRESS_LOCKOUT: '1h',
};
const ACCOUNT_LOCKOUT_MS = 3_000;

describe('lockout counted across two mciassrv processes on one PostgreSQL database', { skip: !DIALECTS.includes('postgres') }, () => {
  let database: TestDatabase;
  let serverA: ServerProcess;
  let serverB: ServerProcess;
  let copyDir: string;
  let adminToken: string;

  const login = (server: ServerProcess, from: string, password: string): Promise<HttpsResponse> =>
    httpsRequest(`${server.url}/v1/auth/login`, { caFile: server.caCertFile, localAddress: from, body: { username: 'alice', password } });
  const reason = (response: HttpsResponse) => `${response.status} ${String((JSON.parse(response.body) as { reason?: string }).reason ?? '')}`.trim();

  /** Wrong passwords from `from` through `server`, waiting out each short delay, until the address is locked; returns the 401s. */
  async function guessUntilAddressLocked(server: ServerProcess, from: string): Promise<number> {
    let failures = 0;
    for (let i = 0; i < 100; i++) {
      const response = await login(server, from, `wrong guess ${i}`);
      if (response.status === 401) failures++;
      else if (reason(response) === '429 address_locked') return failures;
      else await sleep(25); // a delay of 10-20 ms, or the account locked: wait and see
    }
    throw new Error(`${from} was never locked`);
  }

  async function failuresInDatabase(key: string): Promise<number> {
    const client = new pg.Client({ connectionString: database.location });
    await client.connect();
    try {
      const { rows } = await client.query<{ failures: number }>('select failures from login_failures where key = $1', [key]);
      return Number(rows[0]?.failures ?? 0);
    } finally {
      await client.end();
    }
  }

  before(async () => {
    database = await createTestDatabase('postgres');
    serverA = await startServerProcess({ storageUrl: database.location, env: THROTTLE_ENV });
    // A second host: a copy of the first one's data directory (configuration, master key, TLS), its own port.
    copyDir = mkdtempSync(path.join(tmpdir(), 'mcias-e2e-copy-'));
    const dataDirB = path.join(copyDir, 'data');
    cpSync(serverA.dataDir, dataDirB, { recursive: true });
    serverB = await serveDataDir(dataDirB, THROTTLE_ENV);
    const admin = await httpsRequest(`${serverA.url}/v1/auth/login`, { caFile: serverA.caCertFile, body: { username: 'admin', password: serverA.adminPassword } });
    adminToken = (JSON.parse(admin.body) as { token: string }).token;
    const created = await httpsRequest(`${serverA.url}/v1/accounts`, {
      caFile: serverA.caCertFile,
      token: adminToken,
      body: { username: 'alice', kind: 'human', password: USER_PASSWORD, temporary: false },
    });
    assert.equal(created.status, 201, created.body);
  });
  after(async () => {
    await serverB?.stop();
    await serverA?.dispose();
    if (copyDir !== undefined) rmSync(copyDir, { recursive: true, force: true });
    await database?.drop();
  });

  test('4 failures through A and 4 through B lock the account on both; it lets alice in after 3 s; the attackers stay locked out', async () => {
    assert.equal(await guessUntilAddressLocked(serverA, '127.0.0.2'), 4);
    assert.equal(await guessUntilAddressLocked(serverB, '127.0.0.3'), 4);
    // Each process took four failures; between them, eight lock the account on both.
    const lockedAt = Date.now();
    for (const server of [serverA, serverB]) {
      const refused = await login(server, '127.0.0.1', USER_PASSWORD);
      assert.equal(reason(refused), '429 account_locked', refused.body);
      assert.ok(Number(refused.headers['retry-after']) >= 1 && Number(refused.headers['retry-after']) <= 3, String(refused.headers['retry-after']));
    }
    assert.equal(await failuresInDatabase('user:alice'), 8);
    await sleep(Math.max(0, lockedAt + ACCOUNT_LOCKOUT_MS + 300 - Date.now()));
    const back = await login(serverB, '127.0.0.1', USER_PASSWORD);
    assert.equal(back.status, 200, back.body);
    assert.equal(await failuresInDatabase('user:alice'), 0, 'her success cleared the count');
    // The attackers' addresses are locked for an hour, even with the right password, on both processes.
    for (const [server, from] of [[serverA, '127.0.0.2'], [serverB, '127.0.0.3'], [serverB, '127.0.0.2']] as const) {
      assert.equal(reason(await login(server, from, USER_PASSWORD)), '429 address_locked');
    }
  });

  test('mciasctl account unlock lets a locked-out person in at once', async () => {
    assert.equal(await guessUntilAddressLocked(serverA, '127.0.0.4'), 4);
    assert.equal(await guessUntilAddressLocked(serverB, '127.0.0.5'), 4);
    assert.equal(reason(await login(serverA, '127.0.0.1', USER_PASSWORD)), '429 account_locked');
    const env = { MCIAS_SERVER: serverB.url, MCIAS_CA_CERT: serverB.caCertFile, MCIAS_TOKEN: adminToken, MCIAS_CONFIG_DIR: path.join(copyDir, 'ctl') };
    const unlocked = await ctl(env, 'account', 'unlock', 'alice');
    assert.equal(unlocked.code, 0, unlocked.stderr);
    assert.equal(unlocked.stdout, 'unlocked alice (8 failed attempts cleared)\n');
    const back = await login(serverA, '127.0.0.1', USER_PASSWORD);
    assert.equal(back.status, 200, back.body);

    const client = new pg.Client({ connectionString: database.location });
    await client.connect();
    try {
      const { rows } = await client.query<{ type: string; n: string }>(
        "select type, count(*) as n from audit_events where type in ('account_locked', 'address_locked', 'account_unlocked') group by type order by type",
      );
      assert.deepEqual(
        rows.map((r) => [r.type, Number(r.n)]),
        [
          ['account_locked', 2],
          ['account_unlocked', 1],
          ['address_locked', 4],
        ],
      );
    } finally {
      await client.end();
    }
  });
});
