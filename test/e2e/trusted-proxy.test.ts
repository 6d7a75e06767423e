import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import BetterSqlite3 from 'better-sqlite3';
import { httpsRequest, type HttpsResponse } from '../support/process-tools.ts';
import { startServerProcess, type ServerProcess } from '../support/server-process.ts';

/**
 * SECURITY.md §10 against real mciassrv processes over TLS: X-Forwarded-For decides the client address (for the
 * throttle, the request limit and the audit trail) only when the peer is in `server.trusted_proxies`. A client that
 * rotates a forged header on every request is still one address to a server that does not trust it.
 */

const THROTTLE_ENV = { MCIAS_LOGIN_THROTTLE_FREE_FAILURES: '3', MCIAS_LOGIN_THROTTLE_BASE_DELAY: '1m' };
const ATTEMPTS = 6;

/** A wrong password for a different username each time (so only the address counter can throttle), with a forged XFF. */
function guess(server: ServerProcess, i: number): Promise<HttpsResponse> {
  return httpsRequest(`${server.url}/v1/auth/login`, {
    caFile: server.caCertFile,
    localAddress: '127.0.0.2',
    headers: { 'x-forwarded-for': `203.0.113.${i + 1}` },
    body: { username: `someone${i}`, password: 'a wrong password guess' },
  });
}

function recordedAddresses(server: ServerProcess): string[] {
  const db = new BetterSqlite3(path.join(server.dataDir, 'mcias.db'), { readonly: true });
  try {
    return (db.prepare("select ip from audit_events where type = 'login_failed' order by seq").all() as { ip: string }[]).map((r) => r.ip);
  } finally {
    db.close();
  }
}

describe('X-Forwarded-For over TLS', { timeout: 60_000 }, () => {
  let untrusting: ServerProcess;
  let trusting: ServerProcess;
  before(async () => {
    [untrusting, trusting] = await Promise.all([
      startServerProcess({ env: THROTTLE_ENV }),
      startServerProcess({ env: { ...THROTTLE_ENV, MCIAS_SERVER_TRUSTED_PROXIES: '127.0.0.2' } }),
    ]);
  });
  after(async () => {
    await Promise.all([untrusting?.dispose(), trusting?.dispose()]);
  });

  test('from a peer that is not a trusted proxy it is ignored: one address, throttled after 3 failures, recorded as the peer', async () => {
    const statuses: number[] = [];
    for (let i = 0; i < ATTEMPTS; i++) statuses.push((await guess(untrusting, i)).status);
    assert.deepEqual(statuses, [401, 401, 401, 401, 429, 429]);
    assert.deepEqual(new Set(recordedAddresses(untrusting)), new Set(['127.0.0.2']));
  });

  test('from a trusted proxy it is honoured: each forwarded client is its own address, and is recorded', async () => {
    const statuses: number[] = [];
    for (let i = 0; i < ATTEMPTS; i++) statuses.push((await guess(trusting, i)).status);
    assert.deepEqual(statuses, Array(ATTEMPTS).fill(401));
    assert.deepEqual(recordedAddresses(trusting), Array.from({ length: ATTEMPTS }, (_, i) => `203.0.113.${i + 1}`));
  });
});
