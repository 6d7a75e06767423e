import { sql, type Kysely } from 'kysely';
import type { Migration } from 'kysely/migration';
import type { DialectCapabilities } from '../dialects.ts';

/** The whole model from the start; later issues fill in behaviour, not tables. */
export function initial(caps: DialectCapabilities): Migration {
  const bytes = sql.raw(caps.bytesType);
  return {
    async up(db: Kysely<any>): Promise<void> {
      await db.schema
        .createTable('accounts')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('username', 'text', (c) => c.notNull().unique())
        .addColumn('kind', 'text', (c) => c.notNull().check(sql`kind in ('human', 'system')`))
        .addColumn('status', 'text', (c) => c.notNull().check(sql`status in ('active', 'disabled')`))
        .addColumn('password_hash', 'text')
        .addColumn('totp_secret', bytes)
        .addColumn('totp_confirmed_at', 'bigint')
        .addColumn('totp_last_step', 'bigint')
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .addColumn('updated_at', 'bigint', (c) => c.notNull())
        .execute();

      await db.schema
        .createTable('roles')
        .addColumn('name', 'text', (c) => c.primaryKey())
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .execute();

      await db.schema
        .createTable('account_roles')
        .addColumn('account_id', 'text', (c) => c.notNull().references('accounts.id').onDelete('cascade'))
        .addColumn('role_name', 'text', (c) => c.notNull().references('roles.name').onDelete('cascade'))
        .addColumn('granted_at', 'bigint', (c) => c.notNull())
        .addPrimaryKeyConstraint('account_roles_pk', ['account_id', 'role_name'])
        .execute();
      await db.schema.createIndex('account_roles_by_role').on('account_roles').column('role_name').execute();

      await db.schema
        .createTable('permissions')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('resource', 'text', (c) => c.notNull())
        .addColumn('action', 'text', (c) => c.notNull())
        .addColumn('description', 'text', (c) => c.notNull())
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .addUniqueConstraint('permissions_resource_action', ['resource', 'action'])
        .execute();

      await db.schema
        .createTable('role_permissions')
        .addColumn('role_name', 'text', (c) => c.notNull().references('roles.name').onDelete('cascade'))
        .addColumn('permission_id', 'text', (c) => c.notNull().references('permissions.id').onDelete('cascade'))
        .addPrimaryKeyConstraint('role_permissions_pk', ['role_name', 'permission_id'])
        .execute();

      await db.schema
        .createTable('signing_keys')
        .addColumn('kid', 'text', (c) => c.primaryKey())
        .addColumn('algorithm', 'text', (c) => c.notNull())
        .addColumn('public_jwk', 'text', (c) => c.notNull())
        .addColumn('private_key', bytes, (c) => c.notNull())
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .addColumn('retired_at', 'bigint')
        .execute();

      await db.schema
        .createTable('tokens')
        .addColumn('jti', 'text', (c) => c.primaryKey())
        .addColumn('account_id', 'text', (c) => c.notNull().references('accounts.id').onDelete('cascade'))
        .addColumn('kind', 'text', (c) => c.notNull().check(sql`kind in ('session', 'service')`))
        .addColumn('kid', 'text', (c) => c.notNull())
        .addColumn('issued_at', 'bigint', (c) => c.notNull())
        .addColumn('expires_at', 'bigint', (c) => c.notNull())
        .addColumn('session_started_at', 'bigint', (c) => c.notNull())
        .addColumn('issued_by', 'text')
        .addColumn('revoked_at', 'bigint')
        .addColumn('revoked_reason', 'text')
        .execute();
      await db.schema.createIndex('tokens_by_account').on('tokens').columns(['account_id', 'expires_at']).execute();
      // A system account holds at most one live token, enforced by the database itself so that two concurrent
      // issues cannot both succeed (the loser's insert fails and its transaction rolls back).
      await db.schema
        .createIndex('tokens_one_live_service_token')
        .on('tokens')
        .column('account_id')
        .unique()
        .where(sql.ref('kind'), '=', 'service')
        .where(sql.ref('revoked_at'), 'is', null)
        .execute();

      await db.schema
        .createTable('pg_credentials')
        .addColumn('account_id', 'text', (c) => c.primaryKey().references('accounts.id').onDelete('cascade'))
        .addColumn('host', 'text', (c) => c.notNull())
        .addColumn('port', 'integer', (c) => c.notNull())
        .addColumn('database', 'text', (c) => c.notNull())
        .addColumn('username', 'text', (c) => c.notNull())
        .addColumn('password', bytes, (c) => c.notNull())
        .addColumn('sslmode', 'text', (c) => c.notNull())
        .addColumn('updated_at', 'bigint', (c) => c.notNull())
        .execute();

      await db.schema
        .createTable('registrations')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('code_hash', 'text', (c) => c.notNull().unique())
        .addColumn('roles', 'text', (c) => c.notNull())
        .addColumn('uses_left', 'integer', (c) => c.notNull())
        .addColumn('expires_at', 'bigint', (c) => c.notNull())
        .addColumn('created_by', 'text')
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .execute();

      // Audit rows keep the ids and usernames as plain text (no foreign keys), so they outlive deleted accounts.
      await caps
        .serialPrimaryKey(db.schema.createTable('audit_events'), 'seq')
        .addColumn('occurred_at', 'bigint', (c) => c.notNull())
        .addColumn('type', 'text', (c) => c.notNull())
        .addColumn('outcome', 'text', (c) => c.notNull().check(sql`outcome in ('success', 'failure')`))
        .addColumn('actor_id', 'text')
        .addColumn('actor_username', 'text')
        .addColumn('subject_id', 'text')
        .addColumn('subject_username', 'text')
        .addColumn('ip', 'text')
        .addColumn('user_agent', 'text')
        .addColumn('request_id', 'text')
        .addColumn('details', 'text', (c) => c.notNull())
        .execute();
      await db.schema.createIndex('audit_events_by_time').on('audit_events').column('occurred_at').execute();
      await db.schema.createIndex('audit_events_by_subject').on('audit_events').column('subject_id').execute();
    },

    async down(db: Kysely<any>): Promise<void> {
      for (const table of [
        'audit_events',
        'registrations',
        'pg_credentials',
        'tokens',
        'signing_keys',
        'role_permissions',
        'permissions',
        'account_roles',
        'roles',
        'accounts',
      ]) {
        await db.schema.dropTable(table).execute();
      }
    },
  };
}
