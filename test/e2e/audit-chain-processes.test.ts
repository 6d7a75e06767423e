import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import { auditEvent } from '../../src/domain/audit.ts';
import { openMigratedDatabase } from '../../src/store/database.ts';
import { createTestDatabase, type TestDatabase } from '../support/databases.ts';
import { ADMIN_PASSWORD, USER_PASSWORD } from '../support/harness.ts';
import { httpsRequest, logEntries, login, mapLimit, waitFor } from '../support/process-tools.ts';
import { MCIASSRV, run, serveDataDir, startServerProcess, type ServerProcess } from '../support/server-process.ts';

/**
 * SECURITY.md §31: appends are serialised in the database, not in a process. Three mciassrv processes on one
 * PostgreSQL database take logins at the same time; every login is answered, every one leaves its row, and the
 * chain they wrote together verifies.
 */

const LOGINS_PER_SERVER = 40;

describe('three server processes appending to one audit chain [postgres]', () => {
  let database: TestDatabase;
  const servers: ServerProcess[] = [];

  before(async () => {
    database = await createTestDatabase('postgres');
    const first = await startServerProcess({ storageUrl: database.location });
    servers.push(first);
    // Two more processes on the same data directory (configuration, master key, database), each on its own port.
    servers.push(await serveDataDir(first.dataDir), await serveDataDir(first.dataDir));
    const admin = JSON.parse((await login(first, 'admin', ADMIN_PASSWORD)).body) as { token: string };
    const created = await httpsRequest(`${first.url}/v1/accounts`, {
      caFile: first.caCertFile,
      token: admin.token,
      body: { username: 'carol', kind: 'human', password: USER_PASSWORD, temporary: false },
    });
    assert.equal(created.status, 201, created.body);
  });
  after(async () => {
    for (const server of servers.slice(1)) await server.stop();
    await servers[0]?.dispose();
    await database?.drop();
  });

  async function rowCount(): Promise<number> {
    const client = new pg.Client({ connectionString: database.location });
    await client.connect();
    try {
      return Number((await client.query<{ n: string }>('select count(*) as n from audit_events')).rows[0]?.n);
    } finally {
      await client.end();
    }
  }

  test('concurrent logins at all three leave one unbroken chain with a row for each', async () => {
    const before = await rowCount();
    // Interleaved, so all three take logins at once, several in flight at each.
    const attempts = Array.from({ length: 3 * LOGINS_PER_SERVER }, (_, i) => servers[i % 3]!);
    const responses = await mapLimit(attempts, 24, (server) => login(server, 'carol', USER_PASSWORD));
    for (const response of responses) assert.equal(response.status, 200, response.body);
    assert.equal(await rowCount(), before + attempts.length, 'one audit row per login');

    const verified = await run(MCIASSRV, ['audit', 'verify', '--data-dir', servers[0]!.dataDir]);
    assert.equal(verified.code, 0, verified.stderr);
    assert.match(verified.stdout, new RegExp(`${before + attempts.length} rows verified from the first row`));
  });
});

describe('a server with [audit] retention prunes at start, and the chain still verifies', () => {
  let server: ServerProcess | undefined;
  let scratch: string | undefined;
  after(async () => {
    await server?.dispose();
    if (scratch !== undefined) rmSync(scratch, { recursive: true, force: true });
  });

  test('events older than the retention go, the anchor and audit_pruned stay, verify passes', async () => {
    // A database whose trail starts 30 days ago: old events, appended the one way events are appended.
    scratch = mkdtempSync(path.join(tmpdir(), 'mcias-retention-'));
    const file = path.join(scratch, 'mcias.db');
    const database = await openMigratedDatabase({ kind: 'sqlite', path: file, busyTimeoutMs: 5_000 });
    const old = Date.now() - 30 * 86_400_000;
    for (let i = 0; i < 5; i++) await database.store.audit.insert(auditEvent({ at: old + i, type: 'role_created', details: { role: `old${i}` } }));
    await database.close();

    server = await startServerProcess({ storageUrl: `sqlite:${file}`, env: { MCIAS_AUDIT_RETENTION: '7d' } });
    await waitFor(() => logEntries(server!).some((e) => e['msg'] === 'audit trail pruned'), 'the prune at start', 10_000);
    const pruned = logEntries(server).find((e) => e['msg'] === 'audit trail pruned')!;
    assert.deepEqual([pruned['deleted'], pruned['through_seq']], [5, 5]);
    const logged = logEntries(server).find((e) => e['msg'] === 'audit event' && (e['audit'] as { type: string }).type === 'audit_pruned');
    assert.ok(logged, 'the prune is itself an audit event, logged');

    const verified = await run(MCIASSRV, ['audit', 'verify', '--data-dir', server.dataDir]);
    assert.equal(verified.code, 0, verified.stderr);
    assert.match(verified.stdout, /verified from the anchor after row 5 to row \d+/);
  });
});

describe('the failure summaries of the last interval are chained and logged at shutdown', () => {
  let server: ServerProcess | undefined;
  after(async () => {
    await server?.dispose();
  });

  // SECURITY.md §30, §41: bad validations are counted in memory; SIGTERM writes them (on the chain, through the one
  // append) before the database closes, and their audit line is logged before the server says it has shut down.
  test('bad validations, then SIGTERM: a failures_summarized row that verifies, its line before "shut down"', async () => {
    server = await startServerProcess({ env: { MCIAS_RATE_LIMIT_SUMMARY_INTERVAL: '1h' } });
    for (let i = 0; i < 3; i++) {
      const response = await httpsRequest(`${server.url}/v1/token/validate`, { caFile: server.caCertFile, body: { token: 'eyJhbGciOiJub25lIn0.e30.' } });
      assert.equal(response.status, 200, response.body);
    }
    assert.equal(await server.stop(), 0);
    const entries = logEntries(server);
    const summary = entries.findIndex((e) => e['msg'] === 'audit event' && (e['audit'] as { type: string }).type === 'failures_summarized');
    assert.ok(summary >= 0, 'the summary is logged as an audit event');
    const audit = entries[summary]!['audit'] as { seq: number; hash: string; details: Record<string, unknown> };
    assert.equal(audit.details['total'], 3);
    assert.ok(summary < entries.findIndex((e) => e['msg'] === 'shut down'), 'logged before the shutdown completes');

    const verified = await run(MCIASSRV, ['audit', 'verify', '--data-dir', server.dataDir]);
    assert.equal(verified.code, 0, verified.stderr);
    assert.match(verified.stdout, new RegExp(`to row ${audit.seq}\\b`));
    assert.ok(verified.stdout.includes(audit.hash), 'the summary is the head of the chain');
  });
});
