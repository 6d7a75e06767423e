import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { afterEach, beforeEach, describe, test } from 'node:test';
import { ManualClock } from '../../src/domain/clock.ts';
import { isMciasError } from '../../src/domain/errors.ts';
import { parsePhc } from '../../src/domain/password.ts';
import { buildApp } from '../../src/http/app.ts';
import { createRuntime, type Runtime } from '../../src/server.ts';
import { DIALECTS, createTestDatabase, type TestDatabase } from '../support/databases.ts';
import { ADMIN_PASSWORD, testConfig } from '../support/harness.ts';
import { rowCount } from '../support/inspect.ts';

/** SECURITY.md §11: no default accounts or passwords; the first administrator comes from an explicit bootstrap. */

for (const dialect of DIALECTS) {
  describe(`the first administrator [${dialect}]`, () => {
    let testDb: TestDatabase;
    let runtime: Runtime;
    beforeEach(async () => {
      testDb = await createTestDatabase(dialect);
      runtime = await createRuntime(testConfig(testDb), { clock: new ManualClock(Date.now()), masterKey: randomBytes(32) });
    });
    afterEach(async () => {
      await runtime.close();
      await testDb.drop();
    });

    test('a new server has no accounts, no role grants, and only the admin role', async () => {
      const db = runtime.database.db;
      assert.equal(await rowCount(db, 'accounts'), 0);
      assert.equal(await rowCount(db, 'account_roles'), 0);
      assert.equal(await rowCount(db, 'tokens'), 0);
      assert.deepEqual((await db.selectFrom('roles').select('name').execute()).map((r) => r.name), ['admin']);
    });

    test('before the bootstrap no default credentials log in', async () => {
      const app = await buildApp(runtime.services, { bodyLimit: 65_536, trustedProxies: [], rateLimit: testConfig(testDb).rateLimit, logger: false });
      try {
        for (const [username, password] of [
          ['admin', 'admin'],
          ['admin', 'password'],
          ['root', 'root'],
          ['admin', ADMIN_PASSWORD],
          ['mcias', 'mcias'],
        ]) {
          const response = await app.inject({ method: 'POST', url: '/v1/auth/login', payload: { username, password } });
          assert.equal(response.statusCode, 401, `${username}/${password}`);
        }
      } finally {
        await app.close();
      }
    });

    test('the bootstrap creates one human administrator with a hashed password, and audits it', async () => {
      const account = await runtime.services.accounts.bootstrapAdmin('Root.Admin', ADMIN_PASSWORD, { temporary: false });
      assert.equal(account.username, 'root.admin');
      assert.equal(account.kind, 'human');
      assert.deepEqual(account.roles, ['admin']);
      const row = await runtime.database.db.selectFrom('accounts').selectAll().executeTakeFirstOrThrow();
      assert.ok(parsePhc(row.password_hash ?? ''), 'the password is stored as a PHC hash');
      assert.ok(!(row.password_hash ?? '').includes(ADMIN_PASSWORD));
      const audit = await runtime.database.db.selectFrom('audit_events').selectAll().where('type', '=', 'account_bootstrapped').execute();
      assert.equal(audit.length, 1);
      assert.equal(audit[0]?.subject_id, account.id);
    });

    test('the bootstrap refuses once any account exists', async () => {
      await runtime.services.accounts.bootstrapAdmin('first', ADMIN_PASSWORD, { temporary: false });
      await assert.rejects(runtime.services.accounts.bootstrapAdmin('second', ADMIN_PASSWORD, { temporary: false }), (error) => isMciasError(error, 'conflict'));
      assert.equal(await rowCount(runtime.database.db, 'accounts'), 1);
    });

    test('the bootstrap applies the password rules', async () => {
      await assert.rejects(runtime.services.accounts.bootstrapAdmin('admin', 'short', { temporary: false }), (error) => isMciasError(error, 'invalid_request'));
      await assert.rejects(runtime.services.accounts.bootstrapAdmin('admin', 'admin-admin-admin-admin', { temporary: false }), (error) =>
        isMciasError(error, 'invalid_request'),
      );
      assert.equal(await rowCount(runtime.database.db, 'accounts'), 0);
    });

    // Regression: on PostgreSQL, concurrent bootstraps each counted zero accounts and each created an administrator.
    test('concurrent bootstraps create exactly one administrator', async () => {
      const results = await Promise.allSettled(
        ['alpha', 'bravo', 'charlie', 'delta'].map((name) => runtime.services.accounts.bootstrapAdmin(name, ADMIN_PASSWORD, { temporary: false })),
      );
      assert.equal(results.filter((r) => r.status === 'fulfilled').length, 1);
      for (const r of results) if (r.status === 'rejected') assert.ok(isMciasError(r.reason, 'conflict'), String(r.reason));
      assert.equal(await rowCount(runtime.database.db, 'accounts'), 1);
      assert.equal(await rowCount(runtime.database.db, 'account_roles'), 1);
    });
  });
}
