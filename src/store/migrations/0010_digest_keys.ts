import type { Kysely } from 'kysely';
import type { Migration } from 'kysely/migration';
import type { DialectCapabilities } from '../dialects.ts';

/**
 * Stored digest keys and the master_key lock (SECURITY.md §24). Keyed digests (recovery codes) used a key derived
 * from the master key, so a new master key would have left every stored digest unverifiable. Each purpose now has
 * its own key, sealed under the master key like every other secret and re-sealed when it is rotated. The rows are
 * written at the first start after this migration, which alone has the master key (src/domain/master-key.ts). The
 * master_key lock queues a master-key rotation against the creation of those rows.
 */
export function digestKeys(caps: DialectCapabilities): Migration {
  return {
    async up(db: Kysely<any>): Promise<void> {
      await db.schema
        .createTable('digest_keys')
        .addColumn('purpose', 'text', (c) => c.primaryKey())
        .addColumn('sealed_key', caps.bytesType, (c) => c.notNull())
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .execute();
      await db.insertInto('locks').values({ name: 'master_key' }).execute();
    },
    async down(db: Kysely<any>): Promise<void> {
      await db.deleteFrom('locks').where('name', '=', 'master_key').execute();
      await db.schema.dropTable('digest_keys').execute();
    },
  };
}
