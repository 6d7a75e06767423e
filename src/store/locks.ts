import type { LockName } from '../domain/ports.ts';
import type { Executor } from './executor.ts';

/**
 * Takes the named lock until the transaction ends, with a no-op write to its row in `locks`: PostgreSQL holds the
 * row lock, SQLite the database write lock (which also queues another process on the same file). One statement for
 * both databases, where SELECT ... FOR UPDATE would lock nothing on SQLite.
 */
export async function lockRow(db: Executor, name: LockName): Promise<void> {
  const result = await db.updateTable('locks').set((eb) => ({ name: eb.ref('name') })).where('name', '=', name).executeTakeFirst();
  // Without its row the statement would lock nothing, and the transactions it guards would interleave unseen.
  if (Number(result.numUpdatedRows) !== 1) throw new Error(`the ${name} lock has no row in the locks table`);
}
