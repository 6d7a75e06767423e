import type { CredentialStore, TotpState } from '../domain/ports.ts';
import type { Executor } from './executor.ts';

/** TOTP state lives in the account's row (accounts.totp_*); recovery codes in their own table. */
export class KyselyCredentialStore implements CredentialStore {
  readonly #db: Executor;
  constructor(db: Executor) {
    this.#db = db;
  }

  async findTotp(id: string): Promise<TotpState | undefined> {
    const row = await this.#db
      .selectFrom('accounts')
      .select(['totp_secret', 'totp_confirmed_at', 'totp_last_step'])
      .where('id', '=', id)
      .executeTakeFirst();
    return row && { secret: row.totp_secret, confirmedAt: row.totp_confirmed_at, lastStep: row.totp_last_step };
  }

  async setPendingTotp(id: string, sealedSecret: Uint8Array, now: number): Promise<void> {
    await this.#db
      .updateTable('accounts')
      .set({ totp_secret: sealedSecret, totp_confirmed_at: null, totp_last_step: null, updated_at: now })
      .where('id', '=', id)
      .execute();
  }

  async confirmTotp(id: string, step: number, now: number): Promise<boolean> {
    const result = await this.#db
      .updateTable('accounts')
      .set({ totp_confirmed_at: now, totp_last_step: step, updated_at: now })
      .where('id', '=', id)
      .where('totp_secret', 'is not', null)
      .where('totp_confirmed_at', 'is', null)
      .executeTakeFirst();
    return Number(result.numUpdatedRows) > 0;
  }

  async acceptTotpStep(id: string, step: number): Promise<boolean> {
    const result = await this.#db
      .updateTable('accounts')
      .set({ totp_last_step: step })
      .where('id', '=', id)
      .where('totp_confirmed_at', 'is not', null)
      .where((eb) => eb.or([eb('totp_last_step', 'is', null), eb('totp_last_step', '<', step)]))
      .executeTakeFirst();
    return Number(result.numUpdatedRows) > 0;
  }

  async clearTotp(id: string, now: number): Promise<void> {
    await this.#db
      .updateTable('accounts')
      .set({ totp_secret: null, totp_confirmed_at: null, totp_last_step: null, updated_at: now })
      .where('id', '=', id)
      .execute();
  }

  async replaceRecoveryCodes(accountId: string, digests: readonly string[], now: number): Promise<void> {
    await this.deleteRecoveryCodes(accountId);
    if (digests.length === 0) return;
    await this.#db
      .insertInto('recovery_codes')
      .values(digests.map((code_hash) => ({ account_id: accountId, code_hash, created_at: now, used_at: null })))
      .execute();
  }

  async useRecoveryCode(accountId: string, digest: string, now: number): Promise<boolean> {
    const result = await this.#db
      .updateTable('recovery_codes')
      .set({ used_at: now })
      .where('account_id', '=', accountId)
      .where('code_hash', '=', digest)
      .where('used_at', 'is', null)
      .executeTakeFirst();
    return Number(result.numUpdatedRows) > 0;
  }

  async deleteRecoveryCodes(accountId: string): Promise<void> {
    await this.#db.deleteFrom('recovery_codes').where('account_id', '=', accountId).execute();
  }
}
