import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { Agent, request } from 'node:https';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { startServerProcess, type ServerProcess } from '../support/server-process.ts';

/**
 * SECURITY.md §37 against a real mciassrv process over TLS: one address floods the login route with 100 parallel bogus
 * logins while another address logs in. scrypt at ln=12 (about 30 ms a hash here) and one hash at a time make the
 * hash slots the bottleneck; the default queue (64) and per-address share (8) apply. Before the fair scheduler, the
 * flood kept the whole queue full and every real login got 429.
 */

const FLOOD_CONNECTIONS = 100;
/** A flooder connection that got 429 tries again after this pause (an attacker would not wait; this keeps the test's CPU sane). */
const FLOOD_RETRY_MS = 100;
/** Upper bound on flood requests, so the test stops whatever the server does. */
const FLOOD_MAX_REQUESTS = 20_000;
const REAL_LOGINS = 6;

interface Reply {
  readonly status: number;
  readonly body: string;
}

function post(agent: Agent, url: string, body: unknown): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method: 'POST', agent, headers: { 'content-type': 'application/json' }, timeout: 30_000 }, (res) => {
      let text = '';
      res.on('data', (d: Buffer) => (text += d.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }));
    });
    req.on('timeout', () => req.destroy(new Error('request timed out')));
    req.on('error', reject);
    req.end(JSON.stringify(body));
  });
}

describe('a login flood from one address does not take the logins of another (SECURITY.md §37)', { timeout: 90_000 }, () => {
  let server: ServerProcess;
  let flooder: Agent;
  let person: Agent;

  before(async () => {
    server = await startServerProcess({
      // The flood's 100 connections from one address are over the per-address connection cap (SECURITY.md §36):
      // lift it, so this test measures the sharing of hash slots and nothing else.
      // For the same reason, the failed-login throttle and the request limit (SECURITY.md §9, §46) would refuse the
      // flood before it reached the hash queue: lifted too, and each bogus login names a username of its own.
      env: {
        MCIAS_PASSWORDS_SCRYPT_LN: '12',
        MCIAS_PASSWORDS_MAX_CONCURRENT_HASHES: '1',
        MCIAS_SERVER_MAX_CONNECTIONS_PER_ADDRESS: '200',
        MCIAS_LOGIN_THROTTLE_FREE_FAILURES: '1000000',
        MCIAS_LOGIN_THROTTLE_ADDRESS_LOCKOUT_FAILURES: '1000000',
        MCIAS_RATE_LIMIT_REQUESTS: '100000000',
      },
    });
    const ca = readFileSync(server.caCertFile);
    flooder = new Agent({ ca, keepAlive: true, maxSockets: FLOOD_CONNECTIONS, localAddress: '127.0.0.2' });
    person = new Agent({ ca, keepAlive: true, maxSockets: 1, localAddress: '127.0.0.1' });
  });
  after(async () => {
    flooder?.destroy();
    person?.destroy();
    await server?.dispose();
  });

  test('100 parallel bogus logins from 127.0.0.2; six real logins from 127.0.0.1 all succeed', async (t) => {
    const login = `${server.url}/v1/auth/login`;
    const flood = { stop: false, sent: 0, statuses: new Map<number, number>(), errors: 0 };
    const worker = async (n: number) => {
      while (!flood.stop && flood.sent < FLOOD_MAX_REQUESTS) {
        flood.sent++;
        const reply = await post(flooder, login, { username: `nobody${n}-${flood.sent}`, password: 'a bogus but long password guess' }).catch(() => undefined);
        if (reply === undefined) flood.errors++;
        else flood.statuses.set(reply.status, (flood.statuses.get(reply.status) ?? 0) + 1);
        if (reply?.status !== 401) await sleep(FLOOD_RETRY_MS);
      }
    };
    const workers = Array.from({ length: FLOOD_CONNECTIONS }, (_, n) => worker(n));
    try {
      // The hash capacity is contested once the flooder is being refused.
      for (let waited = 0; (flood.statuses.get(429) ?? 0) === 0; waited += 20) {
        assert.ok(waited < 15_000, 'the flood never filled its share of the hash queue');
        await sleep(20);
      }
      const real: Reply[] = [];
      const times: number[] = [];
      for (let i = 0; i < REAL_LOGINS; i++) {
        const started = performance.now();
        real.push(await post(person, login, { username: 'admin', password: server.adminPassword }));
        times.push(Math.round(performance.now() - started));
      }
      t.diagnostic(`real logins took ${times.join(', ')} ms; flood so far: ${JSON.stringify([...flood.statuses])}`);
      assert.deepEqual(
        real.map((r) => r.status),
        Array(REAL_LOGINS).fill(200),
        real.map((r) => r.body.slice(0, 200)).join('\n'),
      );
      for (const r of real) assert.ok((JSON.parse(r.body) as { token?: string }).token);
    } finally {
      flood.stop = true;
      await Promise.all(workers);
    }
    // The flood itself was served (its share) and refused (the rest), and nothing else happened to it.
    assert.ok((flood.statuses.get(401) ?? 0) > 0, JSON.stringify([...flood.statuses]));
    assert.ok((flood.statuses.get(429) ?? 0) > 0);
    assert.deepEqual([...flood.statuses.keys()].sort(), [401, 429]);
    assert.equal(flood.errors, 0);
  });
});
