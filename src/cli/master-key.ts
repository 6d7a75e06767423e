import path from 'node:path';
import { loadMasterKey, readMasterKeyFile } from '../config/files.ts';
import type { Config } from '../config/load.ts';
import { systemClock } from '../domain/clock.ts';
import { rotateMasterKey } from '../domain/master-key.ts';
import { openMigratedDatabase } from '../store/database.ts';

/**
 * `mciassrv keys rotate-master --new-key-file F` (SECURITY.md §24, docs/operations.md): re-seals every sealed value
 * under the key in F, in one transaction, and says what to do next. Prints counts per column, never a value.
 */
export async function rotateMasterKeyCommand(config: Config, newKeyFile: string): Promise<string> {
  const file = path.resolve(newKeyFile);
  // Both keys are read and checked (0600, 32 bytes) before the database is opened.
  const current = loadMasterKey(config);
  const next = readMasterKeyFile(file);
  const database = await openMigratedDatabase(config.storage);
  let counts: Map<string, number>;
  try {
    counts = await rotateMasterKey(database.store, current, next, systemClock);
  } finally {
    await database.close();
  }
  const width = Math.max(...[...counts.keys()].map((c) => c.length));
  const swap =
    config.masterKey.inline === undefined
      ? `replace the master key file with it (mv ${file} ${config.masterKey.file}) before starting the server`
      : `set MCIAS_MASTER_KEY to the content of ${file} (and remove the old value) before starting the server`;
  return [
    'Re-encrypted under the new master key, in one transaction:',
    ...[...counts].map(([column, count]) => `  ${column.padEnd(width)}  ${count}`),
    '',
    `The old master key no longer opens this database: ${swap}.`,
    'Keep the old key as long as you keep backups made before now: they are sealed under it.',
  ].join('\n');
}
