import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { sql } from 'kysely';
import { Migrator, type Migration } from 'kysely/migration';
import { auditEvent } from '../../src/domain/audit.ts';
import { openDatabase, type Database } from '../../src/store/database.ts';
import { migrateUpTo } from '../../src/store/migrate.ts';
import { loginFailures } from '../../src/store/migrations/0008_login_failures.ts';
import { auditChain } from '../../src/store/migrations/0009_audit_chain.ts';
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

  /** The migrations run so far, as Kysely's migrator knows them (only named: they do not run again). */
  async function alreadyRun(database: Database): Promise<Record<string, Migration>> {
    const ran = await database.db.selectFrom('kysely_migration' as never).select('name' as never).execute();
    return Object.fromEntries(ran.map((r) => [(r as { name: string }).name, { up: async () => {} }]));
  }

  describe(`migration 0009 over a database that ran 0008 and 0010 first [${dialect}]`, () => {
    let testDb: TestDatabase;
    let database: Database;
    after(async () => {
      await database?.close();
      await testDb?.drop();
    });

    // Migration numbers are reserved per change, and 0008 (login failures) and 0010 (digest keys) landed before 0009:
    // a database migrated then has both, and audit rows written since (lockouts, summaries, a master-key rotation,
    // credential reads) that no chain covers yet.
    test('runs after them and chains every row, those written after 0008 and 0010 too', async () => {
      testDb = await createTestDatabase(dialect);
      database = openDatabase(testDb.storage);
      assert.equal((await migrateUpTo(database.db, database.capabilities, '0007_pg_credentials')).error, undefined);
      const earlier = await alreadyRun(database);
      const main = new Migrator({
        db: database.db,
        provider: { getMigrations: async () => ({ ...earlier, '0008_login_failures': loginFailures, '0010_digest_keys': digestKeys(database.capabilities) }) },
      });
      assert.equal((await main.migrateToLatest()).error, undefined);
      const types = ['account_locked', 'failures_summarized', 'account_unlocked', 'master_key_rotated', 'pg_credentials_read', 'pg_credentials_set'];
      for (const type of types) {
        await sql`insert into audit_events (occurred_at, type, outcome, details) values (${Date.now()}, ${type}, 'success', '{}')`.execute(database.db);
      }

      const latest = await database.migrate();
      assert.equal(latest.error, undefined);
      assert.deepEqual(latest.results?.map((r) => [r.migrationName, r.status]), [['0009_audit_chain', 'Success']]);
      const verified = await database.store.audit.verify();
      assert.ok(verified.ok, JSON.stringify(verified));
      assert.deepEqual([verified.rows, verified.head.seq], [types.length, types.length]);
      const locks = await database.db.selectFrom('locks').select('name').orderBy('name').execute();
      assert.deepEqual(locks.map((r) => r.name), ['audit', 'bootstrap', 'master_key', 'signing_keys']);
    });
  });

  describe(`migration 0008 over a database that ran 0009 and 0010 first [${dialect}]`, () => {
    let testDb: TestDatabase;
    let database: Database;
    after(async () => {
      await database?.close();
      await testDb?.drop();
    });

    // The other order: a database migrated by a build with the audit chain but not yet the throttle gets 0008 last;
    // it adds its table and touches no audit row, so the chain written meanwhile still verifies and goes on.
    test('runs after them, leaves the chain whole, and failed logins are counted', async () => {
      testDb = await createTestDatabase(dialect);
      database = openDatabase(testDb.storage);
      assert.equal((await migrateUpTo(database.db, database.capabilities, '0007_pg_credentials')).error, undefined);
      const earlier = await alreadyRun(database);
      const chained = new Migrator({
        db: database.db,
        provider: {
          getMigrations: async () => ({ ...earlier, '0009_audit_chain': auditChain(database.capabilities), '0010_digest_keys': digestKeys(database.capabilities) }),
        },
      });
      assert.equal((await chained.migrateToLatest()).error, undefined);
      for (const role of ['one', 'two']) await database.store.audit.insert(auditEvent({ at: Date.now(), type: 'role_created', details: { role } }));

      const latest = await database.migrate();
      assert.equal(latest.error, undefined);
      assert.deepEqual(latest.results?.map((r) => [r.migrationName, r.status]), [['0008_login_failures', 'Success']]);
      const now = Date.now();
      await database.store.transaction(async (tx) => {
        await tx.failures.recordFailure(['user:alice'], now, now - 60_000);
        await tx.audit.insert(auditEvent({ at: now, type: 'login_failed', outcome: 'failure', details: { reason: 'wrong_password' } }));
      });
      const verified = await database.store.audit.verify();
      assert.ok(verified.ok, JSON.stringify(verified));
      assert.deepEqual([verified.rows, verified.head.seq], [3, 3]);
      const counters = await database.store.failures.read(['user:alice']);
      assert.equal(counters.get('user:alice')?.failures, 1);
    });
  });
}
