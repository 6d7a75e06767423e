import { sql, type Kysely } from 'kysely';
import { Migrator, type Migration, type MigrationResultSet } from 'kysely/migration';
import type { DialectCapabilities } from './dialects.ts';
import { initial } from './migrations/0001_initial.ts';
import { passwordChangeRequired } from './migrations/0005_password_change_required.ts';
import { pgCredentials } from './migrations/0007_pg_credentials.ts';
import { loginFailures } from './migrations/0008_login_failures.ts';
import { digestKeys } from './migrations/0010_digest_keys.ts';
import type { DB } from './schema.ts';

/** Migrations in order; names sort lexically, so each starts with its number. */
function migrations(caps: DialectCapabilities): Record<string, Migration> {
  return {
    '0001_initial': initial(caps),
    '0002_admin_role': {
      async up(db) {
        await sql`insert into roles (name, created_at) values ('admin', ${Date.now()})`.execute(db);
      },
      async down(db) {
        await sql`delete from roles where name = 'admin'`.execute(db);
      },
    },
    '0003_recovery_codes': {
      async up(db) {
        await db.schema
          .createTable('recovery_codes')
          .addColumn('account_id', 'text', (c) => c.notNull().references('accounts.id').onDelete('cascade'))
          .addColumn('code_hash', 'text', (c) => c.notNull())
          .addColumn('created_at', 'bigint', (c) => c.notNull())
          .addColumn('used_at', 'bigint')
          .addPrimaryKeyConstraint('recovery_codes_pk', ['account_id', 'code_hash'])
          .execute();
      },
      async down(db) {
        await db.schema.dropTable('recovery_codes').execute();
      },
    },
    // Which keys still have live tokens (JWKS, key pruning) without scanning every token.
    '0004_tokens_by_kid': {
      async up(db) {
        await db.schema.createIndex('tokens_by_kid').on('tokens').columns(['kid', 'expires_at']).execute();
      },
      async down(db) {
        await db.schema.dropIndex('tokens_by_kid').execute();
      },
    },
    '0005_password_change_required': passwordChangeRequired,
    // One row per named lock (Store.lock); the names are written out here, not read from the domain, so this
    // migration stays what it was when a later one adds a lock.
    '0006_locks': {
      async up(db) {
        await db.schema.createTable('locks').addColumn('name', 'text', (c) => c.primaryKey()).execute();
        await db.insertInto('locks').values([{ name: 'bootstrap' }, { name: 'signing_keys' }]).execute();
      },
      async down(db) {
        await db.schema.dropTable('locks').execute();
      },
    },
    '0007_pg_credentials': pgCredentials(caps),
    '0008_login_failures': loginFailures,
    '0010_digest_keys': digestKeys(caps),
  };
}

/** Brings the schema up to date; returns Kysely's result set (it does not throw) so a CLI can report it. */
export function migrateToLatest(db: Kysely<DB>, caps: DialectCapabilities): Promise<MigrationResultSet> {
  const migrator = new Migrator({ db: db as Kysely<any>, provider: { getMigrations: async () => migrations(caps) } });
  return migrator.migrateToLatest();
}
