import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, test } from 'node:test';
import { DIALECTS, useMigratedDatabase } from '../support/databases.ts';

/**
 * Store.lock: a named lock, one row each in `locks`, held until the transaction ends. Bootstrap and key rotation
 * queue on theirs (test/domain/bootstrap.test.ts and keys.test.ts show the effect); here, the lock itself.
 */
for (const dialect of DIALECTS) {
  describe(`named locks [${dialect}]`, () => {
    const fx = useMigratedDatabase(dialect);

    test('the migration creates a row for each lock', async () => {
      const rows = await fx.database.db.selectFrom('locks').select('name').orderBy('name').execute();
      assert.deepEqual(rows.map((r) => r.name), ['audit', 'bootstrap', 'master_key', 'signing_keys']);
    });

    test('a transaction taking a lock waits until the one holding it has committed', async () => {
      const events: string[] = [];
      const { promise: held, resolve: holding } = Promise.withResolvers<void>();
      const first = fx.database.store.transaction(async (tx) => {
        await tx.lock('signing_keys');
        events.push('first holds the lock');
        holding();
        await sleep(200);
        events.push('first commits');
      });
      await held;
      const second = fx.database.store.transaction(async (tx) => {
        await tx.lock('signing_keys');
        events.push('second holds the lock');
      });
      await Promise.all([first, second]);
      assert.deepEqual(events, ['first holds the lock', 'first commits', 'second holds the lock']);
    });

    test('outside a transaction the lock is refused, as it would hold nothing back', async () => {
      await assert.rejects(fx.database.store.lock('bootstrap'), /only held inside a transaction/);
    });

    test('a lock whose row is missing fails instead of locking nothing', async () => {
      await fx.database.db.deleteFrom('locks').where('name', '=', 'bootstrap').execute();
      try {
        await assert.rejects(fx.database.store.transaction((tx) => tx.lock('bootstrap')), /bootstrap lock has no row/);
      } finally {
        await fx.database.db.insertInto('locks').values({ name: 'bootstrap' }).execute();
      }
    });
  });
}
