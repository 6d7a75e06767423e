import type { Selectable } from 'kysely';
import type { AccountRecord } from '../domain/model.ts';
import type { AccountStore } from '../domain/ports.ts';
import type { Executor } from './executor.ts';
import type { AccountsTable } from './schema.ts';

/**
 * The account columns the domain sees and their mapping to an AccountRecord: the one place to change when an account
 * gains a column (the token lookup reads the account through these too).
 */
export const ACCOUNT_COLUMNS = [
  'accounts.id',
  'accounts.username',
  'accounts.kind',
  'accounts.status',
  'accounts.password_hash',
  'accounts.totp_confirmed_at',
  'accounts.password_change_required',
  'accounts.created_at',
  'accounts.updated_at',
] as const;

export type AccountRow = Pick<
  Selectable<AccountsTable>,
  'id' | 'username' | 'kind' | 'status' | 'password_hash' | 'totp_confirmed_at' | 'password_change_required' | 'created_at' | 'updated_at'
>;

export function toAccount(row: AccountRow): AccountRecord {
  return {
    id: row.id,
    username: row.username,
    kind: row.kind,
    status: row.status,
    passwordHash: row.password_hash,
    totpConfirmedAt: row.totp_confirmed_at,
    passwordChangeRequired: Number(row.password_change_required) === 1,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}

export class KyselyAccountStore implements AccountStore {
  readonly #db: Executor;
  constructor(db: Executor) {
    this.#db = db;
  }

  async findById(id: string): Promise<AccountRecord | undefined> {
    const row = await this.#db.selectFrom('accounts').select(ACCOUNT_COLUMNS).where('id', '=', id).executeTakeFirst();
    return row && toAccount(row);
  }

  async findByUsername(username: string): Promise<AccountRecord | undefined> {
    const row = await this.#db.selectFrom('accounts').select(ACCOUNT_COLUMNS).where('username', '=', username).executeTakeFirst();
    return row && toAccount(row);
  }

  async list(): Promise<AccountRecord[]> {
    const rows = await this.#db.selectFrom('accounts').select(ACCOUNT_COLUMNS).orderBy('username').execute();
    return rows.map(toAccount);
  }

  async count(): Promise<number> {
    const row = await this.#db.selectFrom('accounts').select((eb) => eb.fn.countAll<number>().as('n')).executeTakeFirstOrThrow();
    return Number(row.n);
  }

  async insert(a: AccountRecord): Promise<void> {
    await this.#db
      .insertInto('accounts')
      .values({
        id: a.id,
        username: a.username,
        kind: a.kind,
        status: a.status,
        password_hash: a.passwordHash,
        totp_secret: null,
        totp_confirmed_at: a.totpConfirmedAt,
        totp_last_step: null,
        password_change_required: a.passwordChangeRequired ? 1 : 0,
        created_at: a.createdAt,
        updated_at: a.updatedAt,
      })
      .execute();
  }

  async updateStatus(id: string, status: AccountRecord['status'], now: number): Promise<void> {
    await this.#db.updateTable('accounts').set({ status, updated_at: now }).where('id', '=', id).execute();
  }

  async updatePasswordHash(id: string, hash: string, now: number): Promise<void> {
    await this.#db.updateTable('accounts').set({ password_hash: hash, updated_at: now }).where('id', '=', id).execute();
  }

  async setPasswordChangeRequired(id: string, required: boolean, now: number): Promise<void> {
    await this.#db
      .updateTable('accounts')
      .set({ password_change_required: required ? 1 : 0, updated_at: now })
      .where('id', '=', id)
      .execute();
  }

  async delete(id: string): Promise<void> {
    await this.#db.deleteFrom('accounts').where('id', '=', id).execute();
  }

  async lock(id: string): Promise<void> {
    // A no-op write: PostgreSQL takes the row lock, SQLite the database write lock; both last until commit.
    await this.#db.updateTable('accounts').set((eb) => ({ updated_at: eb.ref('updated_at') })).where('id', '=', id).execute();
  }
}
