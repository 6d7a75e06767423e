import type { Kysely } from 'kysely';
import type { Migration } from 'kysely/migration';
import type { DialectCapabilities } from '../dialects.ts';

/**
 * PostgreSQL credentials for service accounts (docs/pgcreds.md). The first migration's table was never written to,
 * so it is replaced by the shape rotation needs:
 * - the connection settings and the sealed password of the login role in use (`active_login`);
 * - the rotation settings (mode, admin connection, schedule) and its last outcome;
 * - the rotation intent (`pending_login`, `pending_password`), written before the server is changed, so a crash at
 *   any step can be finished or undone (SECURITY.md §43);
 * - a lease, so one instance at a time rotates a service, however many share the database.
 */
export function pgCredentials(caps: DialectCapabilities): Migration {
  return {
    async up(db: Kysely<any>): Promise<void> {
      await db.schema.dropTable('pg_credentials').execute();
      await db.schema
        .createTable('pg_credentials')
        .addColumn('account_id', 'text', (c) => c.primaryKey().references('accounts.id').onDelete('cascade'))
        .addColumn('host', 'text', (c) => c.notNull())
        .addColumn('port', 'integer', (c) => c.notNull())
        .addColumn('database', 'text', (c) => c.notNull())
        .addColumn('username', 'text', (c) => c.notNull())
        .addColumn('active_login', 'text', (c) => c.notNull())
        .addColumn('password', caps.bytesType, (c) => c.notNull())
        .addColumn('sslmode', 'text', (c) => c.notNull())
        .addColumn('ca_cert', 'text')
        .addColumn('mode', 'text', (c) => c.notNull())
        .addColumn('admin', 'text')
        .addColumn('rotate_every', 'bigint')
        .addColumn('next_rotation_at', 'bigint')
        .addColumn('last_rotated_at', 'bigint')
        .addColumn('last_rotation_error', 'text')
        .addColumn('rotation_failures', 'integer', (c) => c.notNull().defaultTo(0))
        .addColumn('pending_login', 'text')
        .addColumn('pending_password', caps.bytesType)
        .addColumn('pending_since', 'bigint')
        .addColumn('lease_holder', 'text')
        .addColumn('lease_until', 'bigint')
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .addColumn('updated_at', 'bigint', (c) => c.notNull())
        .execute();
      await db.schema.createIndex('pg_credentials_by_next_rotation').on('pg_credentials').column('next_rotation_at').execute();
    },
    async down(db: Kysely<any>): Promise<void> {
      await db.schema.dropTable('pg_credentials').execute();
      await db.schema
        .createTable('pg_credentials')
        .addColumn('account_id', 'text', (c) => c.primaryKey().references('accounts.id').onDelete('cascade'))
        .addColumn('host', 'text', (c) => c.notNull())
        .addColumn('port', 'integer', (c) => c.notNull())
        .addColumn('database', 'text', (c) => c.notNull())
        .addColumn('username', 'text', (c) => c.notNull())
        .addColumn('password', caps.bytesType, (c) => c.notNull())
        .addColumn('sslmode', 'text', (c) => c.notNull())
        .addColumn('updated_at', 'bigint', (c) => c.notNull())
        .execute();
    },
  };
}
