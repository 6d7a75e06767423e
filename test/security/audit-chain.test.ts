import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { AuditTrail } from '../../src/domain/audit-trail.ts';
import { ManualClock } from '../../src/domain/clock.ts';
import { chainHash, type ChainedColumns } from '../../src/store/audit-chain.ts';
import { DIALECTS, type TestDatabase } from '../support/databases.ts';
import { ADMIN_PASSWORD, USER_PASSWORD, createHarness, type Harness } from '../support/harness.ts';
import { runBounded } from '../support/process-tools.ts';
import { MCIASSRV } from '../support/server-process.ts';

/**
 * SECURITY.md §31: the audit chain. Changing, deleting or reordering any row (direct SQL, as someone with database
 * access would) makes `mciassrv audit verify` (the shipped binary) fail at that row; pruning keeps the rest verifiable.
 */

const DAY = 86_400_000;

/** A config file for mciassrv pointing at the test database (verify and prune need nothing else). */
function configFor(dir: string, db: TestDatabase, extra = ''): string {
  const file = path.join(dir, 'mcias.toml');
  const url = db.storage.kind === 'sqlite' ? `sqlite:${db.storage.path}` : db.storage.url;
  writeFileSync(file, `[storage]\nurl = "${url}"\n${extra}`, { mode: 0o600 });
  return file;
}

async function verifyCli(config: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return runBounded(MCIASSRV, ['audit', 'verify', '--config', config]);
}

async function someEvents(h: Harness, prefix: string): Promise<void> {
  await h.createAccount(`${prefix}-user`);
  await h.login(`${prefix}-user`, USER_PASSWORD);
  await h.request({ method: 'POST', url: '/v1/auth/login', body: { username: `${prefix}-user`, password: 'not the password at all' } });
  await h.request({ method: 'POST', url: '/v1/roles', token: h.adminToken, body: { name: `${prefix}-role` } });
  await h.request({ method: 'PUT', url: `/v1/accounts/${prefix}-user/roles/${prefix}-role`, token: h.adminToken });
}

for (const dialect of DIALECTS) {
  describe(`the audit chain [${dialect}]`, () => {
    let h: Harness;
    let dir: string;
    let config: string;
    const db = () => h.runtime.database.db;
    const row = (seq: number) => db().selectFrom('audit_events').selectAll().where('seq', '=', seq).executeTakeFirstOrThrow();

    before(async () => {
      h = await createHarness(dialect);
      dir = mkdtempSync(path.join(tmpdir(), 'mcias-chain-'));
      config = configFor(dir, h.db);
      await someEvents(h, 'chain');
    });
    after(async () => {
      await h.close();
      rmSync(dir, { recursive: true, force: true });
    });

    test('an untouched chain verifies, seq by seq from 1, each row linked to the one before', async () => {
      const rows = await db().selectFrom('audit_events').selectAll().orderBy('seq').execute();
      assert.ok(rows.length >= 8, `only ${rows.length} rows`);
      rows.forEach((r, i) => {
        assert.equal(Number(r.seq), i + 1);
        assert.equal(r.prev_hash, i === 0 ? '0'.repeat(64) : rows[i - 1]!.hash);
        assert.equal(r.hash, chainHash(r as ChainedColumns));
      });
      const result = await verifyCli(config);
      assert.equal(result.code, 0, result.stderr);
      assert.match(result.stdout, new RegExp(`audit chain OK: ${rows.length} rows verified from the first row to row ${rows.length}`));
      assert.ok(result.stdout.includes(rows.at(-1)!.hash!), 'the head hash is printed, to be recorded elsewhere');
    });

    test('a changed column fails verification at that row', async () => {
      const before = await row(4);
      for (const [column, value] of [['details', '{"reason":"edited"}'], ['actor_username', 'mallory'], ['occurred_at', Number(before.occurred_at) + 1], ['outcome', before.outcome === 'success' ? 'failure' : 'success']] as const) {
        await db().updateTable('audit_events').set({ [column]: value }).where('seq', '=', 4).execute();
        const result = await verifyCli(config);
        assert.equal(result.code, 1, `changing ${column} went unnoticed`);
        assert.match(result.stderr, /^mciassrv: audit chain broken at row 4 \(content_changed\): row 4 was changed/);
        await db().updateTable('audit_events').set({ [column]: before[column] }).where('seq', '=', 4).execute();
      }
      assert.equal((await verifyCli(config)).code, 0);
    });

    test('a deleted row fails verification at the row after it, naming the missing one', async () => {
      const deleted = await row(3);
      await db().deleteFrom('audit_events').where('seq', '=', 3).execute();
      const result = await verifyCli(config);
      assert.equal(result.code, 1);
      assert.match(result.stderr, /audit chain broken at row 4 \(missing_rows\): row 4 does not follow row 2: row 3 is missing/);
      await db().insertInto('audit_events').values(deleted).execute();
      assert.equal((await verifyCli(config)).code, 0);
    });

    test('two rows swapped fail verification at the first of them', async () => {
      const swap = async () => {
        await db().updateTable('audit_events').set({ seq: -5 }).where('seq', '=', 5).execute();
        await db().updateTable('audit_events').set({ seq: 5 }).where('seq', '=', 6).execute();
        await db().updateTable('audit_events').set({ seq: 6 }).where('seq', '=', -5).execute();
      };
      await swap();
      const result = await verifyCli(config);
      assert.equal(result.code, 1);
      assert.match(result.stderr, /audit chain broken at row 5 \(out_of_order\)/);
      await swap();
      assert.equal((await verifyCli(config)).code, 0);
    });

    test('a row rewritten with a fresh hash of its own fails at the next row, whose hash covers the old one', async () => {
      // Someone who knows the encoding rewrites row 2 consistently and relinks row 3 to it: only the previous
      // row's hash inside row 3's hash gives it away.
      const [two, three] = [await row(2), await row(3)];
      const forged = { ...two, details: '{"forged":true}' } as ChainedColumns & { hash: string };
      forged.hash = chainHash(forged);
      await db().updateTable('audit_events').set({ details: forged.details, hash: forged.hash }).where('seq', '=', 2).execute();
      await db().updateTable('audit_events').set({ prev_hash: forged.hash }).where('seq', '=', 3).execute();
      const result = await verifyCli(config);
      assert.equal(result.code, 1, 'a rewritten row went unnoticed');
      assert.match(result.stderr, /audit chain broken at row 3 \(content_changed\)/);
      await db().updateTable('audit_events').set({ details: two.details, hash: two.hash }).where('seq', '=', 2).execute();
      await db().updateTable('audit_events').set({ prev_hash: three.prev_hash }).where('seq', '=', 3).execute();
      assert.equal((await verifyCli(config)).code, 0);
    });

    test('a change to any row, or the deletion of any row but the head, is found at that row', async () => {
      const trail = h.runtime.database.store.audit;
      const rows = await db().selectFrom('audit_events').selectAll().orderBy('seq').execute();
      for (const original of rows) {
        const seq = Number(original.seq);
        await db().updateTable('audit_events').set({ user_agent: 'edited' }).where('seq', '=', seq).execute();
        const changed = await trail.verify(4);
        assert.deepEqual(changed.ok ? 'ok' : [changed.seq, changed.problem], [seq, 'content_changed']);
        await db().updateTable('audit_events').set({ user_agent: original.user_agent }).where('seq', '=', seq).execute();

        await db().deleteFrom('audit_events').where('seq', '=', seq).execute();
        const deleted = await trail.verify(4);
        // The head has no successor to give it away: SECURITY.md §31 says what covers that (a head kept elsewhere).
        if (seq === rows.length) assert.equal(deleted.ok, true);
        else assert.deepEqual(deleted.ok ? 'ok' : [deleted.seq, deleted.problem], [seq + 1, 'missing_rows']);
        await db().insertInto('audit_events').values(original).execute();
      }
      assert.equal((await trail.verify()).ok, true);
    });

    test('verification reads the chain a page at a time and still finds a break past the first page', async () => {
      const trail = h.runtime.database.store.audit;
      const whole = await trail.verify(2);
      assert.equal(whole.ok, true);
      const last = whole.ok ? whole.head.seq : 0;
      await db().updateTable('audit_events').set({ ip: '203.0.113.9' }).where('seq', '=', last).execute();
      const broken = await trail.verify(2);
      assert.deepEqual([broken.ok, broken.ok ? 0 : broken.seq], [false, last]);
      await db().updateTable('audit_events').set({ ip: (await row(last - 1)).ip }).where('seq', '=', last).execute();
    });
  });

  describe(`pruning the audit chain [${dialect}]`, () => {
    let h: Harness;
    let dir: string;
    const clock = new ManualClock(Date.now() - 10 * DAY);

    before(async () => {
      h = await createHarness(dialect, { clock });
      dir = mkdtempSync(path.join(tmpdir(), 'mcias-prune-'));
      await someEvents(h, 'old');
    });
    after(async () => {
      await h.close();
      rmSync(dir, { recursive: true, force: true });
    });

    test('prune deletes what is older than the retention, and the rest verifies from the anchor it leaves', async () => {
      const old = await h.runtime.database.db.selectFrom('audit_events').select(['seq', 'hash']).orderBy('seq', 'desc').executeTakeFirstOrThrow();
      clock.set(Date.now());
      await someEvents(h, 'new');
      const config = configFor(dir, h.db, '[audit]\nretention = "7d"\n');

      const pruned = await runBounded(MCIASSRV, ['audit', 'prune', '--config', config]);
      assert.equal(pruned.code, 0, pruned.stderr);
      assert.match(pruned.stdout, new RegExp(`pruned ${old.seq} audit events; the chain now starts after row ${old.seq}`));

      const rows = await h.runtime.database.db.selectFrom('audit_events').selectAll().orderBy('seq').execute();
      assert.equal(Number(rows[0]!.seq), Number(old.seq) + 1, 'every old row is gone, every new one kept');
      assert.equal(rows[0]!.prev_hash, old.hash);
      const record = rows.at(-1)!;
      assert.equal(record.type, 'audit_pruned');
      assert.deepEqual(JSON.parse(record.details), { through_seq: Number(old.seq), anchor_hash: old.hash });

      const verified = await verifyCli(config);
      assert.equal(verified.code, 0, verified.stderr);
      assert.match(verified.stdout, new RegExp(`from the anchor after row ${old.seq} to row ${record.seq}`));

      // The anchor is where verification starts: the first row after it is still checked against it.
      await h.runtime.database.db.updateTable('audit_events').set({ ip: '198.51.100.1' }).where('seq', '=', Number(old.seq) + 1).execute();
      const broken = await verifyCli(config);
      assert.equal(broken.code, 1);
      assert.match(broken.stderr, new RegExp(`broken at row ${Number(old.seq) + 1} \\(content_changed\\)`));
      await h.runtime.database.db.updateTable('audit_events').set({ ip: rows[0]!.ip }).where('seq', '=', Number(old.seq) + 1).execute();

      // Nothing old is left: a second prune finds nothing, and appending goes on from the head.
      const again = await new AuditTrail({ store: h.runtime.database.store, clock, retentionMs: 7 * DAY }).prune();
      assert.equal(again, undefined);
      await h.login('admin', ADMIN_PASSWORD);
      assert.equal((await verifyCli(config)).code, 0);
    });

    test('a retention shorter than a day, or not a duration, is refused', async () => {
      for (const retention of ['12h', 'soon']) {
        const config = configFor(dir, h.db, `[audit]\nretention = "${retention}"\n`);
        const result = await runBounded(MCIASSRV, ['audit', 'prune', '--config', config]);
        assert.equal(result.code, 1);
        assert.match(result.stderr, /audit\.retention/);
      }
    });
  });
}

