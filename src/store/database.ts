import { Kysely } from 'kysely';
import type { StorageConfig } from '../config/load.ts';
import { reportCommittedWrites } from './committed-writes.ts';
import { openDialect, ping, type DialectCapabilities } from './dialects.ts';
import { KyselyStore } from './store.ts';
import { migrateToLatest } from './migrate.ts';
import { failClosed } from './unavailable.ts';
import type { DB } from './schema.ts';
import { TokenCheckCache } from './token-check-cache.ts';

export interface DatabaseOptions {
  /**
   * How long the token-check read may be remembered (`[tokens] check_cache`, SECURITY.md §51); 0 or absent: not at
   * all. Every write committed through this handle empties it.
   */
  readonly tokenCheckCacheMs?: number;
}

/** An open database: the Kysely handle, what its dialect can do, and the domain's Store over it. */
export interface Database {
  readonly db: Kysely<DB>;
  readonly capabilities: DialectCapabilities;
  readonly store: KyselyStore;
  migrate(): ReturnType<typeof migrateToLatest>;
  ping(): Promise<void>;
  close(): Promise<void>;
}

export function openDatabase(storage: StorageConfig, options: DatabaseOptions = {}): Database {
  const { dialect, capabilities } = openDialect(storage);
  const ttlMs = options.tokenCheckCacheMs ?? 0;
  const cache = ttlMs > 0 ? new TokenCheckCache({ ttlMs }) : undefined;
  const guarded = failClosed(dialect);
  const db = new Kysely<DB>({ dialect: cache === undefined ? guarded : reportCommittedWrites(guarded, () => cache.invalidate()) });
  return {
    db,
    capabilities,
    store: new KyselyStore(db, capabilities, { tokenCheckCache: cache }),
    migrate: () => migrateToLatest(db, capabilities),
    ping: () => ping(db),
    close: () => db.destroy(),
  };
}

/** Opens the database and brings its schema up to date, or throws with the failing migration named. */
export async function openMigratedDatabase(storage: StorageConfig, options: DatabaseOptions = {}): Promise<Database> {
  const database = openDatabase(storage, options);
  const { error, results } = await database.migrate();
  if (error !== undefined) {
    await database.close();
    const failed = results?.find((r) => r.status === 'Error')?.migrationName ?? 'unknown';
    throw new Error(`database migration ${failed} failed: ${(error as Error).message}`, { cause: error });
  }
  return database;
}
