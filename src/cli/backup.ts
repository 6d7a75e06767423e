import { existsSync } from 'node:fs';
import BetterSqlite3 from 'better-sqlite3';
import type { Config } from '../config/load.ts';

/**
 * A consistent copy of a live SQLite database through SQLite's online backup API, safe while the server runs.
 * The copy holds password hashes and sealed secrets, so it is created 0600; the master key is not in it.
 */
export async function backupSqlite(config: Config, destination: string): Promise<{ pages: number }> {
  if (config.storage.kind !== 'sqlite') throw new Error('backup copies SQLite databases; for PostgreSQL use pg_dump');
  if (existsSync(destination)) throw new Error(`${destination} exists; refusing to overwrite it`);
  if (!existsSync(config.storage.path)) throw new Error(`no database at ${config.storage.path}`);
  const source = new BetterSqlite3(config.storage.path, { readonly: true, fileMustExist: true, timeout: config.storage.busyTimeoutMs });
  const previous = process.umask(0o077);
  try {
    const { totalPages } = await source.backup(destination);
    return { pages: totalPages };
  } finally {
    process.umask(previous);
    source.close();
  }
}
