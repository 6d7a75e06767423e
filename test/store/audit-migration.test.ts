import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { sql } from 'kysely';
import { auditEvent } from '../../src/domain/audit.ts';
import { openDatabase, type Database } from '../../src/store/database.ts';
import { migrateUpTo } from '../../src/store/migrate.ts';
import { DIALECTS, createTestDatabase, type TestDatabase } from '../support/databases.ts';

/**
 * Migration 0009 (SECURITY.md §31) over a trail written before it: the old rows are chained in seq order (gaps from
 * rolled-back inserts included), the chain verifies, and new events continue it.
 */
for (const dialect of DIALECTS) {
  describe(`migration 0009 over an existing audit trail [${dialect}]`, () => {
    let testDb: TestDatabase;
    let database: Database;
    after(async () => {
      await database?.close();
      await testDb?.drop();
    });

    test('chains the old rows, verifies, and appends after them', async () => {
      testDb = await createTestDatabase(dialect);
      database = openDatabase(testDb.storage);
      const upTo = await migrateUpTo(database.db, database.capabilities, '0007_pg_credentials');
      assert.equal(upTo.error, undefined);
      const legacy = (n: number) =>
        sql`insert into audit_events (occurred_at, type, outcome, subject_username, details) values (${1_700_000_000_000 + n}, 'login_failed', 'failure', ${`user${n}`}, '{"reason":"wrong_password"}')`.execute(database.db);
      for (const n of [1, 2, 3]) await legacy(n);
      // A gap, as a rolled-back insert leaves on PostgreSQL: the old rows need not be numbered densely.
      await sql`delete from audit_events where seq = 3`.execute(database.db);
      for (const n of [4, 5]) await legacy(n);

      const latest = await database.migrate();
      assert.equal(latest.error, undefined);
      const verified = await database.store.audit.verify();
      assert.ok(verified.ok, JSON.stringify(verified));
      assert.deepEqual([verified.rows, verified.head.seq], [4, 5]);

      await database.store.audit.insert(auditEvent({ at: Date.now(), type: 'role_created', details: { role: 'after' } }));
      const head = await database.store.audit.verify();
      assert.ok(head.ok);
      assert.deepEqual([head.rows, head.head.seq], [5, 6]);
    });
  });
}
