import { chmodSync, closeSync, openSync } from 'node:fs';
import { readFileSync } from 'node:fs';
import BetterSqlite3 from 'better-sqlite3';
import { Kysely, PostgresDialect, SqliteDialect, sql, type CreateTableBuilder, type Dialect } from 'kysely';
import pg from 'pg';
import type { StorageConfig } from '../config/load.ts';

/** What differs between the databases, as data: core code asks for a capability, never for a dialect name. */
export interface DialectCapabilities {
  readonly name: 'sqlite' | 'postgres';
  readonly bytesType: 'blob' | 'bytea';
  serialPrimaryKey<T extends string>(table: CreateTableBuilder<T, never>, column: string): CreateTableBuilder<T, string>;
}

const sqliteCapabilities: DialectCapabilities = {
  name: 'sqlite',
  bytesType: 'blob',
  serialPrimaryKey: (table, column) => table.addColumn(column, 'integer', (c) => c.primaryKey().autoIncrement()),
};

const postgresCapabilities: DialectCapabilities = {
  name: 'postgres',
  bytesType: 'bytea',
  serialPrimaryKey: (table, column) => table.addColumn(column, 'bigint', (c) => c.primaryKey().generatedAlwaysAsIdentity()),
};

export interface OpenedDialect {
  readonly dialect: Dialect;
  readonly capabilities: DialectCapabilities;
}

export function openDialect(storage: StorageConfig): OpenedDialect {
  return storage.kind === 'sqlite' ? openSqlite(storage) : openPostgres(storage);
}

function openSqlite(storage: Extract<StorageConfig, { kind: 'sqlite' }>): OpenedDialect {
  if (storage.path !== ':memory:') {
    // The database holds password hashes and sealed secrets: create it readable by the owner only.
    closeSync(openSync(storage.path, 'a', 0o600));
    chmodSync(storage.path, 0o600);
  }
  const database = new BetterSqlite3(storage.path, { timeout: storage.busyTimeoutMs });
  database.pragma('journal_mode = WAL');
  database.pragma('synchronous = NORMAL');
  database.pragma('foreign_keys = ON');
  return { dialect: new SqliteDialect({ database }), capabilities: sqliteCapabilities };
}

// BIGINT (int8) columns hold epoch milliseconds, well inside Number's exact range.
const INT8_OID = 20;

function openPostgres(storage: Extract<StorageConfig, { kind: 'postgres' }>): OpenedDialect {
  const pool = new pg.Pool({
    connectionString: storage.url,
    max: storage.poolSize,
    // sslmode=verify-full with our own CA file: certificate chain and host name both checked.
    ...(storage.caFile === undefined ? {} : { ssl: { ca: readFileSync(storage.caFile, 'utf8'), rejectUnauthorized: true } }),
    types: {
      getTypeParser: ((oid: number, format?: 'text' | 'binary') =>
        oid === INT8_OID ? Number : pg.types.getTypeParser(oid, format as 'text')) as typeof pg.types.getTypeParser,
    },
  });
  return { dialect: new PostgresDialect({ pool }), capabilities: postgresCapabilities };
}

/** Checks that the database answers (readiness). */
export async function ping(db: Kysely<any>): Promise<void> {
  await sql`select 1`.execute(db);
}
