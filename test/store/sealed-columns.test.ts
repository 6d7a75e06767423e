import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { SEALED_COLUMNS, UNSEALED_BYTES_COLUMNS } from '../../src/store/sealed-columns.ts';
import { DIALECTS, useMigratedDatabase } from '../support/databases.ts';

/**
 * SECURITY.md §24: rotating the master key re-seals the columns in SEALED_COLUMNS, and only those. Sealed values are
 * bytes; so every bytes column of the migrated schema must be declared, either sealed or not sealed (with a reason),
 * and a migration that adds one cannot leave it out of a rotation unnoticed.
 */

const BYTES_TYPES = new Set(['blob', 'bytea']);

for (const dialect of DIALECTS) {
  describe(`the declared sealed columns against the migrated schema [${dialect}]`, () => {
    const fixture = useMigratedDatabase(dialect);

    const bytesColumns = async () => {
      const tables = await fixture.database.db.introspection.getTables();
      return tables.flatMap((t) => t.columns.filter((c) => BYTES_TYPES.has(c.dataType.toLowerCase())).map((c) => `${t.name}.${c.name}`)).sort();
    };

    test('every bytes column is declared sealed or not sealed, and nothing else is', async () => {
      const declared = [...SEALED_COLUMNS, ...UNSEALED_BYTES_COLUMNS].map((c) => `${c.table}.${c.column}`).sort();
      assert.deepEqual(await bytesColumns(), declared);
    });

    test('no column is declared twice, and the row id of each sealed column exists in its table', async () => {
      const names = [...SEALED_COLUMNS, ...UNSEALED_BYTES_COLUMNS].map((c) => `${c.table}.${c.column}`);
      assert.equal(new Set(names).size, names.length);
      const tables = await fixture.database.db.introspection.getTables();
      for (const c of SEALED_COLUMNS) {
        const table = tables.find((t) => t.name === c.table);
        assert.ok(table?.columns.some((col) => col.name === c.rowId), `${c.table}.${c.rowId}`);
      }
    });

    test('the list sees every kind of sealed value, and only non-null ones', async () => {
      const { db, store } = fixture.database;
      const now = Date.now();
      await db.insertInto('accounts').values({ id: 'acc-1', username: 'sealed1', kind: 'human', status: 'active', password_hash: null, totp_secret: Buffer.from('t'), totp_confirmed_at: null, totp_last_step: null, password_change_required: 0, created_at: now, updated_at: now }).execute();
      await db.insertInto('accounts').values({ id: 'acc-2', username: 'sealed2', kind: 'human', status: 'active', password_hash: null, totp_secret: null, totp_confirmed_at: null, totp_last_step: null, password_change_required: 0, created_at: now, updated_at: now }).execute();
      const columns = await store.sealed.list();
      assert.deepEqual(columns.map((c) => c.column), SEALED_COLUMNS.map((c) => `${c.table}.${c.column}`));
      const totp = columns.find((c) => c.column === 'accounts.totp_secret');
      assert.deepEqual(totp?.values.map((v) => [v.rowId, v.context, Buffer.from(v.sealed).toString()]), [
        ['acc-1', { table: 'accounts', column: 'totp_secret', id: 'acc-1' }, 't'],
      ]);
      await store.sealed.replace(totp!.values[0]!, Buffer.from('u'));
      assert.deepEqual(Buffer.from((await db.selectFrom('accounts').select('totp_secret').where('id', '=', 'acc-1').executeTakeFirstOrThrow()).totp_secret!).toString(), 'u');
      await assert.rejects(store.sealed.replace({ ...totp!.values[0]!, rowId: 'nobody' }, Buffer.from('v')), /accounts\.totp_secret of nobody: no such row/);
    });
  });
}
