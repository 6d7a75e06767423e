import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { sql } from 'kysely';
import { Migrator, type Migration } from 'kysely/migration';
import { auditEvent } from '../../src/domain/audit.ts';
import { openDatabase, type Database } from '../../src/store/database.ts';
import { migrateUpTo } from '../../src/store/migrate.ts';
import { digestKeys } from '../../src/store/migrations/0010_digest_keys.ts';
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

  describe(`migration 0009 over a database that ran 0010 first [${dialect}]`, () => {
    let testDb: TestDatabase;
    let database: Database;
    after(async () => {
      await database?.close();
      await testDb?.drop();
    });

    // Migration numbers are reserved per change, and 0010 (digest keys) landed before 0009: a database migrated then
    // has 0010 and audit rows written since (a master-key rotation, credential reads) that no chain covers yet.
    test('runs after it and chains every row, those written after 0010 too', async () => {
      testDb = await createTestDatabase(dialect);
      database = openDatabase(testDb.storage);
      assert.equal((await migrateUpTo(database.db, database.capabilities, '0007_pg_credentials')).error, undefined);
      // 0010 as Kysely's migrator ran it before 0009 existed (the migrations run so far are only named: they do not run again).
      const ran = await database.db.selectFrom('kysely_migration' as never).select('name' as never).execute();
      const before0009: Record<string, Migration> = Object.fromEntries(ran.map((r) => [(r as { name: string }).name, { up: async () => {} }]));
      const main = new Migrator({ db: database.db, provider: { getMigrations: async () => ({ ...before0009, '0010_digest_keys': digestKeys(database.capabilities) }) } });
      assert.equal((await main.migrateToLatest()).error, undefined);
      for (const type of ['master_key_rotated', 'pg_credentials_read', 'pg_credentials_set']) {
        await sql`insert into audit_events (occurred_at, type, outcome, details) values (${Date.now()}, ${type}, 'success', '{}')`.execute(database.db);
      }

      const latest = await database.migrate();
      assert.equal(latest.error, undefined);
      assert.deepEqual(latest.results?.map((r) => [r.migrationName, r.status]), [['0009_audit_chain', 'Success']]);
      const verified = await database.store.audit.verify();
      assert.ok(verified.ok, JSON.stringify(verified));
      assert.deepEqual([verified.rows, verified.head.seq], [3, 3]);
      const locks = await database.db.selectFrom('locks').select('name').orderBy('name').execute();
      assert.deepEqual(locks.map((r) => r.name), ['audit', 'bootstrap', 'master_key', 'signing_keys']);
    });
  });
}
