import type { Kysely } from 'kysely';
import type { Migration } from 'kysely/migration';

/**
 * Failed-login counters (SECURITY.md §9), in the database so that every instance shares them: one row per counted
 * key (`user:<username>` or `address:<address key>`), with the number of failures since the last success (or since
 * the counter was forgotten) and when the last one happened. The index serves pruning of quiet counters.
 */
export const loginFailures: Migration = {
  async up(db: Kysely<any>): Promise<void> {
    await db.schema
      .createTable('login_failures')
      .addColumn('key', 'text', (c) => c.primaryKey())
      .addColumn('failures', 'integer', (c) => c.notNull())
      .addColumn('last_failure_at', 'bigint', (c) => c.notNull())
      .execute();
    await db.schema.createIndex('login_failures_by_time').on('login_failures').column('last_failure_at').execute();
  },
  async down(db: Kysely<any>): Promise<void> {
    await db.schema.dropTable('login_failures').execute();
  },
};
