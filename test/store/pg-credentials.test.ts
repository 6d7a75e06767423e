import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { describe, test } from 'node:test';
import type { PgCredentialsSettings } from '../../src/domain/ports.ts';
import { DIALECTS, useMigratedDatabase } from '../support/databases.ts';

/**
 * The pg_credentials store: the rotation steps (intent, completion, failure) and the lease, on each dialect. The
 * service that drives them, and what a crash between them leaves, are tested in test/domain and test/e2e.
 */
for (const dialect of DIALECTS) {
  describe(`pg credentials store [${dialect}]`, () => {
    const fx = useMigratedDatabase(dialect);
    const store = () => fx.database.store.pgcreds;

    async function serviceWithCredentials(): Promise<PgCredentialsSettings> {
      const id = randomUUID();
      const now = Date.now();
      await fx.database.store.accounts.insert({
        id,
        username: `svc-${id.slice(0, 8)}`,
        kind: 'system',
        status: 'active',
        passwordHash: null,
        totpConfirmedAt: null,
        passwordChangeRequired: false,
        createdAt: now,
        updatedAt: now,
      });
      const settings: PgCredentialsSettings = {
        accountId: id,
        host: 'db.internal',
        port: 5432,
        database: 'app',
        username: 'app',
        activeLogin: 'app',
        password: Buffer.from('sealed-old'),
        sslmode: 'require',
        caCert: null,
        mode: 'single',
        admin: null,
        rotateEvery: null,
        nextRotationAt: null,
      };
      await store().put(settings, now);
      return settings;
    }

    test('an intent is promoted whole on completion, and dropped on failure with the error kept', async () => {
      const { accountId } = await serviceWithCredentials();
      await store().beginRotation(accountId, 'app', Buffer.from('sealed-new'), 1_000);
      assert.deepEqual(await store().listDue(0), [accountId], 'an unfinished intent is due at once');
      const pending = await store().find(accountId);
      assert.equal(Buffer.from(pending!.password).toString(), 'sealed-old', 'the intent does not replace the password yet');
      await store().completeRotation(accountId, 2_000, 9_000);
      const done = await store().find(accountId);
      assert.equal(Buffer.from(done!.password).toString(), 'sealed-new');
      assert.equal(done!.pendingPassword, null);
      assert.equal(done!.lastRotatedAt, 2_000);
      assert.equal(done!.nextRotationAt, 9_000);

      await store().beginRotation(accountId, 'app', Buffer.from('sealed-newer'), 3_000);
      await store().failRotation(accountId, 'server down', 4_000, 5_000);
      const failed = await store().find(accountId);
      assert.equal(Buffer.from(failed!.password).toString(), 'sealed-new');
      assert.equal(failed!.pendingPassword, null);
      assert.equal(failed!.lastRotationError, 'server down');
      assert.equal(failed!.rotationFailures, 1);
      assert.ok(!(await store().listDue(4_999)).includes(accountId));
      assert.ok((await store().listDue(5_000)).includes(accountId));
    });

    test('completing without an intent changes nothing', async () => {
      const { accountId } = await serviceWithCredentials();
      await store().completeRotation(accountId, 2_000, null);
      const record = await store().find(accountId);
      assert.equal(Buffer.from(record!.password).toString(), 'sealed-old');
      assert.equal(record!.lastRotatedAt, null);
    });

    test('one holder at a time has the lease, until it releases it or the lease expires', async () => {
      const { accountId } = await serviceWithCredentials();
      assert.equal(await store().claimLease(accountId, 'one', 1_000, 2_000), true);
      assert.equal(await store().claimLease(accountId, 'two', 1_500, 2_500), false);
      assert.equal(await store().claimLease(accountId, 'one', 1_500, 2_500), true, 'the holder may extend its lease');
      await store().releaseLease(accountId, 'two');
      assert.equal(await store().claimLease(accountId, 'two', 1_600, 2_600), false, 'only the holder releases');
      await store().releaseLease(accountId, 'one');
      assert.equal(await store().claimLease(accountId, 'two', 1_600, 2_600), true);
      assert.equal(await store().claimLease(accountId, 'one', 2_600, 3_600), true, 'an expired lease is free');
    });

    test('deleting the account deletes its credentials', async () => {
      const { accountId } = await serviceWithCredentials();
      await fx.database.store.accounts.delete(accountId);
      assert.equal(await store().find(accountId), undefined);
    });
  });
}
