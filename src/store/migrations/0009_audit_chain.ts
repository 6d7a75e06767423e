import { sql, type Kysely } from 'kysely';
import type { Migration } from 'kysely/migration';
import { CHAIN_VERSION, GENESIS_HASH, chainHash, type ChainedColumns } from '../audit-chain.ts';
import type { DialectCapabilities } from '../dialects.ts';

const BACKFILL_PAGE = 1000;

/**
 * The tamper-evident audit chain (SECURITY.md §31):
 * - `audit_events` gains `chain_version`, `prev_hash` and `hash` (src/store/audit-chain.ts defines the encoding);
 *   the rows written before this migration are chained here, in `seq` order, from the genesis hash;
 * - `seq` is assigned by the appender under the `audit` lock (one more than the chain's head), not by the database:
 *   the hash covers it, so it must be known before the insert, and chain order is then commit order. PostgreSQL's
 *   identity is dropped for that (SQLite's rowid accepts given values as it is);
 * - `audit_anchor` holds at most one row: the seq and hash of the last row pruned, where verification starts;
 * - the `audit` lock's row, which every append takes.
 */
export function auditChain(caps: DialectCapabilities): Migration {
  return {
    async up(db: Kysely<any>): Promise<void> {
      await db.schema.alterTable('audit_events').addColumn('chain_version', 'integer', (c) => c.notNull().defaultTo(CHAIN_VERSION)).execute();
      await db.schema.alterTable('audit_events').addColumn('prev_hash', 'text').execute();
      await db.schema.alterTable('audit_events').addColumn('hash', 'text').execute();
      if (caps.name === 'postgres') await sql`alter table audit_events alter column seq drop identity`.execute(db);
      await db.schema
        .createTable('audit_anchor')
        .addColumn('id', 'integer', (c) => c.primaryKey().check(sql`id = 1`))
        .addColumn('seq', 'bigint', (c) => c.notNull())
        .addColumn('hash', 'text', (c) => c.notNull())
        .addColumn('pruned_at', 'bigint', (c) => c.notNull())
        .execute();
      await db.schema.createIndex('audit_events_by_actor').on('audit_events').column('actor_id').execute();
      await db.insertInto('locks').values({ name: 'audit' }).execute();

      let prev = GENESIS_HASH;
      let after = 0;
      for (;;) {
        const rows = await db.selectFrom('audit_events').selectAll().where('seq', '>', after).orderBy('seq').limit(BACKFILL_PAGE).execute();
        for (const row of rows) {
          const hash = chainHash({ ...(row as ChainedColumns), chain_version: CHAIN_VERSION, prev_hash: prev });
          await db.updateTable('audit_events').set({ prev_hash: prev, hash }).where('seq', '=', row.seq).execute();
          prev = hash;
          after = Number(row.seq);
        }
        if (rows.length < BACKFILL_PAGE) break;
      }
    },
    async down(db: Kysely<any>): Promise<void> {
      await db.deleteFrom('locks').where('name', '=', 'audit').execute();
      await db.schema.dropIndex('audit_events_by_actor').execute();
      await db.schema.dropTable('audit_anchor').execute();
      if (caps.name === 'postgres') {
        const head = await db.selectFrom('audit_events').select((eb) => eb.fn.max('seq').as('seq')).executeTakeFirst();
        const start = Number(head?.seq ?? 0) + 1;
        await sql`alter table audit_events alter column seq add generated always as identity (start with ${sql.lit(start)})`.execute(db);
      }
      for (const column of ['hash', 'prev_hash', 'chain_version']) await db.schema.alterTable('audit_events').dropColumn(column).execute();
    },
  };
}
