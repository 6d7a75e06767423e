import { sql } from 'kysely';
import type { DigestPurpose, SealContext } from '../domain/sealing.ts';
import type { SealedValue, SealedValueStore } from '../domain/ports.ts';
import type { DialectCapabilities } from './dialects.ts';
import type { Executor } from './executor.ts';
import { lockRow } from './locks.ts';
import type { DB } from './schema.ts';

/**
 * Every column that holds a value sealed under the master key (SECURITY.md §23, §24), in the one list that checking
 * and rotating the master key go through: a column missing here would keep its old key after a rotation and be
 * lost. test/store/sealed-columns.test.ts fails when a bytes column of the migrated schema is in neither this list
 * nor UNSEALED_BYTES_COLUMNS, so a new sealed column cannot be forgotten silently.
 */
interface SealedColumn {
  readonly table: keyof DB;
  readonly column: string;
  /** The column that names the row, the id its context binds. */
  readonly rowId: string;
  /** The context the value is sealed with (the domain seals it with the same one). */
  readonly context: (rowId: string) => SealContext;
}

export const SEALED_COLUMNS: readonly SealedColumn[] = [
  { table: 'accounts', column: 'totp_secret', rowId: 'id', context: (id) => ({ table: 'accounts', column: 'totp_secret', id }) },
  { table: 'signing_keys', column: 'private_key', rowId: 'kid', context: (id) => ({ table: 'signing_keys', column: 'private_key', id }) },
  // The password and the rotation intent share one context, so that completing a rotation moves the intent into
  // place in SQL without opening it.
  { table: 'pg_credentials', column: 'password', rowId: 'account_id', context: (id) => ({ table: 'pg_credentials', column: 'password', id }) },
  { table: 'pg_credentials', column: 'pending_password', rowId: 'account_id', context: (id) => ({ table: 'pg_credentials', column: 'password', id }) },
  { table: 'digest_keys', column: 'sealed_key', rowId: 'purpose', context: (id) => ({ table: 'digest_keys', column: 'sealed_key', id }) },
];

/** Bytes columns that hold no sealed value, each with the reason; none so far. */
export const UNSEALED_BYTES_COLUMNS: readonly { readonly table: keyof DB; readonly column: string; readonly reason: string }[] = [];

/** Where each purpose's keyed digests are stored: what tells whether a new digest key would break stored ones. */
const DIGEST_COLUMNS: Readonly<Record<DigestPurpose, { readonly table: keyof DB; readonly column: string }>> = {
  'recovery codes': { table: 'recovery_codes', column: 'code_hash' },
  'registration codes': { table: 'registrations', column: 'code_hash' },
};

export class KyselySealedValueStore implements SealedValueStore {
  readonly #db: Executor;
  readonly #caps: DialectCapabilities;

  constructor(db: Executor, caps: DialectCapabilities) {
    this.#db = db;
    this.#caps = caps;
  }

  async list(): Promise<{ column: string; values: SealedValue[] }[]> {
    const columns: { column: string; values: SealedValue[] }[] = [];
    for (const c of SEALED_COLUMNS) {
      const name = `${c.table}.${c.column}`;
      const { rows } = await sql<{ row_id: string; sealed: Uint8Array }>`
        select ${sql.ref(c.rowId)} as row_id, ${sql.ref(c.column)} as sealed from ${sql.table(c.table)}
        where ${sql.ref(c.column)} is not null order by ${sql.ref(c.rowId)}`.execute(this.#db);
      columns.push({ column: name, values: rows.map((r) => ({ column: name, rowId: r.row_id, context: c.context(r.row_id), sealed: r.sealed })) });
    }
    return columns;
  }

  async replace(value: SealedValue, sealed: Uint8Array): Promise<void> {
    const c = SEALED_COLUMNS.find((s) => `${s.table}.${s.column}` === value.column);
    if (c === undefined) throw new Error(`${value.column} is not a sealed column`);
    const result = await sql`update ${sql.table(c.table)} set ${sql.ref(c.column)} = ${sealed}
      where ${sql.ref(c.rowId)} = ${value.rowId}`.execute(this.#db);
    if (Number(result.numAffectedRows) !== 1) throw new Error(`${value.column} of ${value.rowId}: no such row`);
  }

  async lockAll(): Promise<void> {
    // SQLite: this write takes the one database write lock, which every other writer waits for. PostgreSQL: the
    // row of the lock, and then the tables themselves, against writes (reads go on).
    await lockRow(this.#db, 'master_key');
    await this.#caps.lockTablesAgainstWrites(this.#db, [...new Set(SEALED_COLUMNS.map((c) => c.table))]);
  }

  async digestKeys(): Promise<Map<DigestPurpose, Uint8Array>> {
    const rows = await this.#db.selectFrom('digest_keys').select(['purpose', 'sealed_key']).execute();
    return new Map(rows.map((r) => [r.purpose as DigestPurpose, r.sealed_key]));
  }

  async insertDigestKey(purpose: DigestPurpose, sealed: Uint8Array, now: number): Promise<void> {
    await this.#db.insertInto('digest_keys').values({ purpose, sealed_key: sealed, created_at: now }).execute();
  }

  async hasDigests(purpose: DigestPurpose): Promise<boolean> {
    const { table, column } = DIGEST_COLUMNS[purpose];
    const { rows } = await sql`select 1 from ${sql.table(table)} where ${sql.ref(column)} is not null limit 1`.execute(this.#db);
    return rows.length > 0;
  }
}
