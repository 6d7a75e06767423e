import { Kysely } from 'kysely';
import type { StorageConfig } from '../config/load.ts';
import { openDialect, ping, type DialectCapabilities } from './dialects.ts';
import { KyselyStore } from './store.ts';
import { migrateToLatest } from './migrate.ts';
import { failClosed } from './unavailable.ts';
import type { DB } from './schema.ts';

/** An open database: the Kysely handle, what its dialect can do, and the domain's Store over it. */
export interface Database {
  readonly db: Kysely<DB>;
  readonly capabilities: DialectCapabilities;
  readonly store: KyselyStore;
  migrate(): ReturnType<typeof migrateToLatest>;
  ping(): Promise<void>;
  close(): Promise<void>;
}

export function openDatabase(storage: StorageConfig): Database {
  const { dialect, capabilities } = openDialect(storage);
  const db = new Kysely<DB>({ dialect: failClosed(dialect) });
  return {
    db,
    capabilities,
    store: new KyselyStore(db, capabilities),
    migrate: () => migrateToLatest(db, capabilities),
    ping: () => ping(db),
    close: () => db.destroy(),
  };
}

/** Opens the database and brings its schema up to date, or throws with the failing migration named. */
export async function openMigratedDatabase(storage: StorageConfig): Promise<Database> {
  const database = openDatabase(storage);
  const { error, results } = await database.migrate();
  if (error !== undefined) {
    await database.close();
    const failed = results?.find((r) => r.status === 'Error')?.migrationName ?? 'unknown';
    throw new Error(`database migration ${failed} failed: ${(error as Error).message}`, { cause: error });
  }
  return database;
}
