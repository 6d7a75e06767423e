import type { Selectable } from 'kysely';
import type { RegistrationRecord } from '../domain/model.ts';
import type { RegistrationStore } from '../domain/ports.ts';
import type { Executor } from './executor.ts';
import type { RegistrationsTable } from './schema.ts';

function toRegistration(row: Selectable<RegistrationsTable>): RegistrationRecord {
  return {
    id: row.id,
    codeHash: row.code_hash,
    roles: JSON.parse(row.roles) as string[],
    usesLeft: Number(row.uses_left),
    expiresAt: Number(row.expires_at),
    createdBy: row.created_by,
    createdAt: Number(row.created_at),
  };
}

/** `registrations` (migration 0001): `roles` is a JSON array of role names. */
export class KyselyRegistrationStore implements RegistrationStore {
  readonly #db: Executor;
  constructor(db: Executor) {
    this.#db = db;
  }

  async insert(r: RegistrationRecord): Promise<void> {
    await this.#db
      .insertInto('registrations')
      .values({
        id: r.id,
        code_hash: r.codeHash,
        roles: JSON.stringify(r.roles),
        uses_left: r.usesLeft,
        expires_at: r.expiresAt,
        created_by: r.createdBy,
        created_at: r.createdAt,
      })
      .execute();
  }

  async list(): Promise<RegistrationRecord[]> {
    const rows = await this.#db.selectFrom('registrations').selectAll().orderBy('created_at').orderBy('id').execute();
    return rows.map(toRegistration);
  }

  async findUsable(codeHash: string, now: number): Promise<RegistrationRecord | undefined> {
    const row = await this.#db
      .selectFrom('registrations')
      .selectAll()
      .where('code_hash', '=', codeHash)
      .where('uses_left', '>', 0)
      .where('expires_at', '>', now)
      .executeTakeFirst();
    return row && toRegistration(row);
  }

  /**
   * One statement decides: the row is changed only while it still has a use and has not expired. On PostgreSQL a
   * concurrent update of the same row waits for the other transaction and then re-checks the condition against the
   * committed row, so of N redemptions of the last use exactly one changes it; SQLite runs writers one at a time.
   */
  async consume(codeHash: string, now: number): Promise<RegistrationRecord | undefined> {
    const row = await this.#db
      .updateTable('registrations')
      .set((eb) => ({ uses_left: eb('uses_left', '-', 1) }))
      .where('code_hash', '=', codeHash)
      .where('uses_left', '>', 0)
      .where('expires_at', '>', now)
      .returningAll()
      .executeTakeFirst();
    return row && toRegistration(row);
  }

  async delete(id: string): Promise<boolean> {
    const result = await this.#db.deleteFrom('registrations').where('id', '=', id).executeTakeFirst();
    return Number(result.numDeletedRows) > 0;
  }
}
