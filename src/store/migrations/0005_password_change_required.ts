import type { Kysely } from 'kysely';
import type { Migration } from 'kysely/migration';

/**
 * Temporary passwords (SECURITY.md §39): a per-account flag, set when an administrator (or `mciassrv init`) chose
 * the password, cleared when the person sets their own. An integer 0/1 rather than a boolean column, so both
 * dialects read and bind it the same way (better-sqlite3 binds no booleans).
 */
export const passwordChangeRequired: Migration = {
  async up(db: Kysely<any>): Promise<void> {
    await db.schema.alterTable('accounts').addColumn('password_change_required', 'integer', (c) => c.notNull().defaultTo(0)).execute();
  },
  async down(db: Kysely<any>): Promise<void> {
    await db.schema.alterTable('accounts').dropColumn('password_change_required').execute();
  },
};
