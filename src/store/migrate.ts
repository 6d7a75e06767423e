import { sql, type Kysely } from 'kysely';
import { Migrator, type Migration, type MigrationResultSet } from 'kysely/migration';
import type { DialectCapabilities } from './dialects.ts';
import { initial } from './migrations/0001_initial.ts';
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
  };
}

/** Brings the schema up to date; returns Kysely's result set (it does not throw) so a CLI can report it. */
export function migrateToLatest(db: Kysely<DB>, caps: DialectCapabilities): Promise<MigrationResultSet> {
  const migrator = new Migrator({ db: db as Kysely<any>, provider: { getMigrations: async () => migrations(caps) } });
  return migrator.migrateToLatest();
}
