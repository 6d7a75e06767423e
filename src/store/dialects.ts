import { chmodSync, closeSync, openSync, readFileSync } from 'node:fs';
import BetterSqlite3 from 'better-sqlite3';
import { Kysely, PostgresDialect, SqliteDialect, sql, type CreateTableBuilder, type Dialect } from 'kysely';
import type pg from 'pg';
import type { StorageConfig } from '../config/load.ts';
import { CachedStatementDatabase } from './statement-cache.ts';

/** What differs between the databases, as data: core code asks for a capability, never for a dialect name. */
export interface DialectCapabilities {
  readonly name: 'sqlite' | 'postgres';
  readonly bytesType: 'blob' | 'bytea';
  serialPrimaryKey<T extends string>(table: CreateTableBuilder<T, never>, column: string): CreateTableBuilder<T, string>;
  /**
   * Inside a transaction that has already written: no other transaction writes to these tables until it ends;
   * reads go on. SQLite has nothing to do (the first write took its only write lock, for the whole database).
   */
  lockTablesAgainstWrites(db: Kysely<any>, tables: readonly string[]): Promise<void>;
}

const sqliteCapabilities: DialectCapabilities = {
  name: 'sqlite',
  bytesType: 'blob',
  serialPrimaryKey: (table, column) => table.addColumn(column, 'integer', (c) => c.primaryKey().autoIncrement()),
  lockTablesAgainstWrites: async () => {},
};

const postgresCapabilities: DialectCapabilities = {
  name: 'postgres',
  bytesType: 'bytea',
  serialPrimaryKey: (table, column) => table.addColumn(column, 'bigint', (c) => c.primaryKey().generatedAlwaysAsIdentity()),
  // EXCLUSIVE conflicts with the ROW EXCLUSIVE lock every INSERT, UPDATE and DELETE takes, and not with reads.
  lockTablesAgainstWrites: async (db, tables) => {
    await sql`lock table ${sql.join(tables.map((t) => sql.table(t)))} in exclusive mode`.execute(db);
  },
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
  // Kysely prepares every query again on each execution; the cache makes that a lookup (one per connection).
  return { dialect: new SqliteDialect({ database: new CachedStatementDatabase(database) }), capabilities: sqliteCapabilities };
}

/** How long a query waits for a connection to PostgreSQL (a new one, or a free one of the pool). */
const CONNECT_TIMEOUT_MS = 10_000;

// BIGINT (int8) columns hold epoch milliseconds, well inside Number's exact range.
const INT8_OID = 20;

function openPostgres(storage: Extract<StorageConfig, { kind: 'postgres' }>): OpenedDialect {
  // Read (and refused) now, as before: a wrong CA file is an error at start.
  const connection = postgresConnection(storage);
  // pg is loaded when the first query needs a connection: a server on SQLite never loads it.
  const pool = async (): Promise<pg.Pool> => {
    const { default: pgModule } = await import('pg');
    const created = new pgModule.Pool({
      ...connection,
      max: storage.poolSize,
      // A server that cannot be reached (a partition drops packets rather than refusing) fails the request in seconds
      // with `unavailable`, instead of holding it for the operating system's TCP timeout.
      connectionTimeoutMillis: CONNECT_TIMEOUT_MS,
      types: {
        getTypeParser: ((oid: number, format?: 'text' | 'binary') =>
          oid === INT8_OID ? Number : pgModule.types.getTypeParser(oid, format as 'text')) as typeof pgModule.types.getTypeParser,
      },
    });
    // An idle connection the server closes (a restart, pg_terminate_backend, an idle timeout) makes the pool emit
    // 'error'; unheard, that kills the process. The pool has already dropped the connection and opens a new one on
    // the next query, where a real outage surfaces as that query's error (and /readyz reports it).
    created.on('error', () => {});
    // A connection checked out of the pool (running a statement, or inside a transaction between two) has no pool
    // listener: when the server goes away it emits 'error' on the client itself, which would kill the process just the
    // same (SECURITY.md §52). The client is unusable from then on; its next statement fails (`unavailable`), and the
    // pool discards it when it is released.
    created.on('connect', (client) => {
      client.on('error', () => {});
    });
    return created;
  };
  return { dialect: new PostgresDialect({ pool }), capabilities: postgresCapabilities };
}

/** TLS settings in the URL that `storage.ca_file` replaces (pg would otherwise let them override it). */
const URL_SSL_PARAMETERS = ['ssl', 'sslmode', 'sslrootcert'] as const;

/**
 * With `storage.ca_file`, the connection is `verify-full` against that CA: the chain is checked and so is the host
 * name (SECURITY.md §29). Without it, the URL decides, as libpq would (`?sslmode=verify-full&sslrootcert=...`).
 */
function postgresConnection(storage: Extract<StorageConfig, { kind: 'postgres' }>): pg.PoolConfig {
  if (storage.caFile === undefined) return { connectionString: storage.url };
  const url = new URL(storage.url);
  for (const name of URL_SSL_PARAMETERS) url.searchParams.delete(name);
  return { connectionString: url.toString(), ssl: { ca: readFileSync(storage.caFile, 'utf8'), rejectUnauthorized: true } };
}

/**
 * Checks that the database answers (readiness). A `SELECT` query node, not raw SQL: raw SQL counts as a write for the
 * token-check cache (src/store/committed-writes.ts), and a probe polled every few seconds must not empty it.
 */
export async function ping(db: Kysely<any>): Promise<void> {
  await db.selectNoFrom(sql<number>`1`.as('one')).execute();
}
