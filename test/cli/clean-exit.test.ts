import assert from 'node:assert/strict';
import crypto, { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { syncBuiltinESMExports } from 'node:module';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { PasswordHasher } from '../../src/domain/password.ts';
import { createRuntime } from '../../src/server.ts';
import { DIALECTS, createTestDatabase } from '../support/databases.ts';
import { ADMIN_PASSWORD, testConfig } from '../support/harness.ts';
import { runBounded } from '../support/process-tools.ts';
import { MCIASSRV } from '../support/server-process.ts';

/**
 * Issue 7 item 13: `mciassrv init` once died with SIGSEGV at exit on a busy machine. Every command must finish its
 * native work (scrypt on the libuv thread pool) and close its resources before it ends: closing the runtime waits
 * for running hashes, a failed start waits for the hash it began, and init exits 0 with nothing on stderr.
 */

/** Counts scrypt jobs on the thread pool, by wrapping node:crypto's scrypt (the domain imports it by name). */
const scryptJobs = { started: 0, running: 0 };
const realScrypt = crypto.scrypt;

function countingScrypt(...args: unknown[]): void {
  const callback = args.pop() as (error: Error | null, key: Buffer) => void;
  scryptJobs.started += 1;
  scryptJobs.running += 1;
  (realScrypt as (...a: unknown[]) => void)(...args, (error: Error | null, key: Buffer) => {
    scryptJobs.running -= 1;
    callback(error, key);
  });
}

/** ln=14: long enough (16 MiB, tens of milliseconds) that a hash is still running when close() is called. */
const SLOW = { scrypt_ln: 14, scrypt_r: 8, scrypt_p: 1 } as const;

describe('commands finish their native work before they end', () => {
  before(() => {
    (crypto as { scrypt: unknown }).scrypt = countingScrypt;
    syncBuiltinESMExports();
  });
  after(() => {
    (crypto as { scrypt: unknown }).scrypt = realScrypt;
    syncBuiltinESMExports();
  });

  test('the hasher counts through the wrapped scrypt (the other tests rely on it)', async () => {
    const before = scryptJobs.started;
    await new PasswordHasher({ ln: 4, r: 8, p: 1 }, { maxConcurrent: 1, maxQueued: 8, maxPerClient: 8 }).hash('counted', 'test');
    assert.equal(scryptJobs.started, before + 1);
  });

  test('PasswordHasher.close() waits for running and queued hashes, then refuses new ones', async () => {
    const hasher = new PasswordHasher({ ln: SLOW.scrypt_ln, r: 8, p: 1 }, { maxConcurrent: 1, maxQueued: 8, maxPerClient: 8 });
    const started = scryptJobs.started;
    const hashes = [hasher.hash('one', 'test'), hasher.hash('two', 'test'), hasher.hash('three', 'test')];
    await hasher.close();
    assert.equal(scryptJobs.running, 0, 'close() returned while scrypt still ran');
    assert.equal(scryptJobs.started, started + 3, 'a queued hash was dropped or started after close()');
    assert.equal((await Promise.allSettled(hashes)).filter((r) => r.status === 'fulfilled').length, 3);
    await assert.rejects(hasher.hash('four', 'test'), { code: 'rate_limited' });
    await assert.rejects(hasher.verify('five', undefined, 'test'), { code: 'rate_limited' });
    assert.equal(scryptJobs.started, started + 3, 'no scrypt runs after close()');
  });

  for (const dialect of DIALECTS) {
    describe(dialect, () => {
      test("the runtime's close() returns only after a hash in flight has finished", async () => {
        const db = await createTestDatabase(dialect);
        try {
          const runtime = await createRuntime(testConfig(db, { passwords: SLOW }), { masterKey: randomBytes(32) });
          const started = scryptJobs.started;
          // The bootstrap hashes the password first; close() comes while that hash runs (or waits in the queue).
          // What the bootstrap does next, on a closed database, is not the point (a server closes the runtime only
          // after its requests have ended): it is left to fail or stall on its own.
          void runtime.services.accounts.bootstrapAdmin('admin', ADMIN_PASSWORD, { temporary: false }).catch(() => {});
          await runtime.close();
          assert.equal(scryptJobs.running, 0, 'close() returned while scrypt still ran');
          assert.equal(scryptJobs.started, started + 1, 'the hash never ran');
        } finally {
          await db.drop();
        }
      });

      test('a runtime that fails to start waits for its warm-up hash before it closes and throws', async () => {
        const db = await createTestDatabase(dialect);
        try {
          const config = testConfig(db, { passwords: SLOW });
          await (await createRuntime(config, { masterKey: randomBytes(32) })).close();
          // Another master key cannot unseal the signing key: the key ring fails fast, the warm-up hash runs on.
          await assert.rejects(createRuntime(config, { masterKey: randomBytes(32) }));
          assert.equal(scryptJobs.running, 0, 'createRuntime() gave up while its warm-up hash still ran');
        } finally {
          await db.drop();
        }
      });
    });
  }

  // More runs (on a busy machine, say): MCIAS_TEST_INIT_RUNS=50.
  const runs = Number(process.env['MCIAS_TEST_INIT_RUNS'] ?? 3);
  test(`mciassrv init, ${runs} times, exits 0 by itself with nothing on stderr`, async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'mcias-init-runs-'));
    try {
      for (let i = 0; i < runs; i += 1) {
        const result = await runBounded(MCIASSRV, ['init', '--data-dir', path.join(dir, `data-${i}`), '--listen', '127.0.0.1:0'], { timeoutMs: 60_000 });
        assert.equal(result.timedOut, false, `run ${i} did not end`);
        assert.equal(result.code, 0, `run ${i}: exit ${result.code}: ${result.stderr}`);
        assert.equal(result.stderr, '', `run ${i}`);
        assert.match(result.stdout, /Temporary password for admin/);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
