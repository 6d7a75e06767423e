import type { RecoveryCodeStore } from '../domain/ports.ts';
import type { Executor } from './executor.ts';

export class KyselyRecoveryCodeStore implements RecoveryCodeStore {
  readonly #db: Executor;
  constructor(db: Executor) {
    this.#db = db;
  }

  async replace(accountId: string, digests: readonly string[], now: number): Promise<void> {
    await this.deleteAll(accountId);
    if (digests.length === 0) return;
    await this.#db
      .insertInto('recovery_codes')
      .values(digests.map((code_hash) => ({ account_id: accountId, code_hash, created_at: now, used_at: null })))
      .execute();
  }

  async use(accountId: string, digest: string, now: number): Promise<boolean> {
    const result = await this.#db
      .updateTable('recovery_codes')
      .set({ used_at: now })
      .where('account_id', '=', accountId)
      .where('code_hash', '=', digest)
      .where('used_at', 'is', null)
      .executeTakeFirst();
    return Number(result.numUpdatedRows) > 0;
  }

  async remaining(accountId: string): Promise<number> {
    const row = await this.#db
      .selectFrom('recovery_codes')
      .select((eb) => eb.fn.countAll<number>().as('n'))
      .where('account_id', '=', accountId)
      .where('used_at', 'is', null)
      .executeTakeFirstOrThrow();
    return Number(row.n);
  }

  async deleteAll(accountId: string): Promise<void> {
    await this.#db.deleteFrom('recovery_codes').where('account_id', '=', accountId).execute();
  }
}
