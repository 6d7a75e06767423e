import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { Agent, request } from 'node:https';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { DIALECTS, createTestDatabase, type TestDatabase } from '../support/databases.ts';
import { USER_PASSWORD } from '../support/harness.ts';
import { serveDataDir, startServerProcess, type ServerProcess } from '../support/server-process.ts';
import { PERIOD_MS, stepOf, totpCode } from '../support/totp-codes.ts';

/**
 * SECURITY.md §13 across processes: two real `mciassrv serve` processes on one PostgreSQL database (two hosts behind a
 * load balancer) accept each TOTP code, and each recovery code, once between them.
 */

/** The time left in the current 30 s step must be at least this when the timed part starts. */
const MARGIN_MS = 10_000;
/** Connections kept open to each process, so that racing requests are not spread out by TLS handshakes. */
const SOCKETS = 4;

interface Response {
  readonly status: number;
  readonly body: Record<string, unknown>;
}

/** One process, reached over warm keep-alive TLS connections that trust only its certificate. */
class Instance {
  readonly server: ServerProcess;
  readonly #agent: Agent;
  readonly #ca: Buffer;

  constructor(server: ServerProcess) {
    this.server = server;
    this.#ca = readFileSync(server.caCertFile);
    this.#agent = new Agent({ keepAlive: true, maxSockets: SOCKETS, ca: this.#ca });
  }

  async warm(): Promise<void> {
    await Promise.all(Array.from({ length: SOCKETS }, () => this.call('GET', '/healthz')));
  }

  call(method: string, url: string, options: { body?: unknown; token?: string } = {}): Promise<Response> {
    const payload = options.body === undefined ? undefined : JSON.stringify(options.body);
    return new Promise((resolve, reject) => {
      const req = request(
        `${this.server.url}${url}`,
        {
          method,
          agent: this.#agent,
          headers: {
            ...(payload === undefined ? {} : { 'content-type': 'application/json' }),
            ...(options.token === undefined ? {} : { authorization: `Bearer ${options.token}` }),
          },
        },
        (res) => {
          let text = '';
          res.on('data', (d: Buffer) => (text += d.toString()));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text === '' ? {} : (JSON.parse(text) as Record<string, unknown>) }));
          res.on('error', reject);
        },
      );
      req.on('error', reject);
      req.end(payload);
    });
  }

  login(username: string, password: string, totpCode?: string): Promise<Response> {
    return this.call('POST', '/v1/auth/login', { body: { username, password, ...(totpCode === undefined ? {} : { totp_code: totpCode }) } });
  }

  close(): void {
    this.#agent.destroy();
  }
}

/** Waits, if need be, until at least MARGIN_MS of the current step is left; returns the current step. */
async function roomyStep(): Promise<number> {
  const left = (stepOf(Date.now()) + 1) * PERIOD_MS - Date.now();
  if (left < MARGIN_MS) await sleep(left + 250);
  return stepOf(Date.now());
}

describe('a TOTP code is accepted once across two mciassrv processes on one PostgreSQL database', { skip: !DIALECTS.includes('postgres') }, () => {
  let database: TestDatabase;
  let serverA: ServerProcess;
  let serverB: ServerProcess;
  let a: Instance;
  let b: Instance;
  let copyDir: string;
  let adminToken: string;

  /** A new person, logged in through `via`; returns their token. */
  async function person(via: Instance, username: string): Promise<string> {
    const created = await via.call('POST', '/v1/accounts', { token: adminToken, body: { username, kind: 'human', password: USER_PASSWORD, temporary: false } });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    const response = await via.login(username, USER_PASSWORD);
    assert.equal(response.status, 200, JSON.stringify(response.body));
    return response.body['token'] as string;
  }

  /** Starts enrollment through `via`; returns the secret. */
  async function begin(via: Instance, token: string): Promise<string> {
    const begun = await via.call('POST', '/v1/me/totp', { token, body: { password: USER_PASSWORD } });
    assert.equal(begun.status, 200, JSON.stringify(begun.body));
    return begun.body['secret'] as string;
  }

  before(async () => {
    database = await createTestDatabase('postgres');
    serverA = await startServerProcess({ storageUrl: database.location });
    // A second host: a copy of the first one's data directory (configuration, master key, TLS), its own port.
    copyDir = mkdtempSync(path.join(tmpdir(), 'mcias-e2e-copy-'));
    const dataDirB = path.join(copyDir, 'data');
    cpSync(serverA.dataDir, dataDirB, { recursive: true });
    serverB = await serveDataDir(dataDirB);
    assert.notEqual(serverA.url, serverB.url);
    a = new Instance(serverA);
    b = new Instance(serverB);
    await Promise.all([a.warm(), b.warm()]);
    const response = await a.login('admin', serverA.adminPassword);
    assert.equal(response.status, 200, JSON.stringify(response.body));
    adminToken = response.body['token'] as string;
  });
  after(async () => {
    a?.close();
    b?.close();
    await serverB?.stop();
    await serverA?.dispose();
    if (copyDir !== undefined) rmSync(copyDir, { recursive: true, force: true });
    await database?.drop();
  });

  test('enrolled through one process, confirmed through the other; a code accepted by A is refused by B', async () => {
    const token = await person(a, 'alice');
    const secret = await begin(a, token);
    const code = (step: number) => totpCode(secret, step * PERIOD_MS);

    // Steps c-1, c and c+1 are all inside the window for the rest of step c: no waiting for the clock below.
    const c = await roomyStep();
    assert.equal(new Set([code(c - 1), code(c), code(c + 1)]).size, 3, 'three distinct codes');
    const confirmed = await b.call('POST', '/v1/me/totp/confirm', { token, body: { code: code(c - 1) } });
    assert.equal(confirmed.status, 200, JSON.stringify(confirmed.body));
    // The enrollment is active on both processes.
    for (const instance of [a, b]) {
      const response = await instance.login('alice', USER_PASSWORD);
      assert.equal(response.status, 401);
      assert.equal(response.body['code'], 'totp_required');
    }

    // Accepted by A, then refused by B (and by A again).
    const first = await a.login('alice', USER_PASSWORD, code(c));
    assert.equal(first.status, 200, JSON.stringify(first.body));
    for (const instance of [b, a]) {
      const again = await instance.login('alice', USER_PASSWORD, code(c));
      assert.equal(again.status, 401);
      assert.equal(again.body['code'], 'invalid_credentials');
    }
    // The other way round with the next code: accepted by B, refused by A.
    assert.equal((await b.login('alice', USER_PASSWORD, code(c + 1))).status, 200);
    assert.equal((await a.login('alice', USER_PASSWORD, code(c + 1))).status, 401);
    // An earlier step's code, never used for a login, after a later one: refused on both.
    for (const instance of [a, b]) assert.equal((await instance.login('alice', USER_PASSWORD, code(c - 1))).status, 401);

    // What the database holds: the last accepted step, shared by both.
    const client = new pg.Client({ connectionString: database.location });
    await client.connect();
    try {
      const { rows } = await client.query<{ totp_last_step: string }>("select totp_last_step from accounts where username = 'alice'");
      assert.equal(Number(rows[0]?.totp_last_step), c + 1);
      const audit = await client.query<{ n: string }>(
        "select count(*) as n from audit_events where type = 'login_succeeded' and subject_username = 'alice' and details like '%password+totp%'",
      );
      assert.equal(Number(audit.rows[0]?.n), 2);
    } finally {
      await client.end();
    }
  });

  test('the same code fired at both processes at once logs in exactly once (one race per account)', async () => {
    const racers = ['rhea', 'rudy', 'ruth', 'rolf', 'rosa', 'remo'];
    const enrolled = await Promise.all(racers.map(async (username) => ({ username, token: await person(a, username) })));
    const secrets = await Promise.all(enrolled.map(({ token }) => begin(a, token)));
    const c = await roomyStep();
    await Promise.all(
      enrolled.map(async ({ token }, i) => {
        const confirmed = await b.call('POST', '/v1/me/totp/confirm', { token, body: { code: totpCode(secrets[i] as string, (c - 1) * PERIOD_MS) } });
        assert.equal(confirmed.status, 200, JSON.stringify(confirmed.body));
      }),
    );
    for (const [i, { username }] of enrolled.entries()) {
      const code = totpCode(secrets[i] as string, c * PERIOD_MS);
      const racing = await Promise.all([a, b, a, b].map((instance) => instance.login(username, USER_PASSWORD, code)));
      const statuses = racing.map((r) => r.status);
      assert.equal(statuses.filter((s) => s === 200).length, 1, `${username}: ${statuses.join(',')}`);
      assert.deepEqual(new Set(racing.filter((r) => r.status !== 200).map((r) => r.body['code'])), new Set(['invalid_credentials']));
      for (const instance of [a, b]) assert.equal((await instance.login(username, USER_PASSWORD, code)).status, 401);
    }
  });

  test('a recovery code fired at both processes at once logs in exactly once', async () => {
    const token = await person(b, 'bob');
    const secret = await begin(b, token);
    await roomyStep();
    const confirmed = await a.call('POST', '/v1/me/totp/confirm', { token, body: { code: totpCode(secret, Date.now()) } });
    assert.equal(confirmed.status, 200, JSON.stringify(confirmed.body));
    const codes = confirmed.body['recovery_codes'] as string[];
    for (const recovery of codes.slice(0, 4)) {
      const racing = await Promise.all([a, b, a, b].map((instance) => instance.login('bob', USER_PASSWORD, recovery)));
      const statuses = racing.map((r) => r.status);
      assert.equal(statuses.filter((s) => s === 200).length, 1, statuses.join(','));
    }
  });
});
