import type { CompiledQuery, DatabaseConnection, Dialect, Driver, QueryResult, TransactionSettings } from 'kysely';
import { MciasError, UNAVAILABLE_RETRY_AFTER_S } from '../domain/errors.ts';

/**
 * A database outage fails closed and never crashes (SECURITY.md §52). Every query, connection and transaction step
 * of either database goes through this wrapper, the one place where a driver's error becomes the domain's: an error
 * that says the database cannot be reached right now (connection refused or broken, the server shutting down, too
 * many connections, SQLite's write lock still held after `storage.busy_timeout`) becomes `unavailable` (503, with
 * Retry-After), whatever route or background task ran the query. Every other error passes through unchanged.
 */

/** Node's socket errors that mean the server cannot be reached or the connection broke. */
const SOCKET_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ECONNABORTED',
  'EPIPE',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EHOSTDOWN',
  'ENOTFOUND',
  'EAI_AGAIN',
]);

/** PostgreSQL SQLSTATEs outside class 08 (connection exception) that mean "not now". */
const PG_UNAVAILABLE_STATES = new Set([
  '57P01', // admin_shutdown: terminating connection due to administrator command
  '57P02', // crash_shutdown
  '57P03', // cannot_connect_now: the database system is starting up or shutting down
  '53300', // too_many_connections
]);

/** node-postgres and its pool report these without a code. */
const PG_CONNECTION_MESSAGES = [
  /^Connection terminated/,
  /^timeout exceeded when trying to connect$/,
  /is not queryable$/,
  /^Query read timeout$/,
];

/** Whether `error` says the database cannot be reached or used right now (rather than that a statement is wrong). */
export function isUnavailable(error: unknown): boolean {
  if (typeof error !== 'object' || error === null) return false;
  const code = (error as { code?: unknown }).code;
  if (typeof code === 'string') {
    if (SOCKET_CODES.has(code) || PG_UNAVAILABLE_STATES.has(code)) return true;
    // A SQLSTATE of class 08; SQLITE_BUSY and its extended codes (SQLITE_BUSY_SNAPSHOT, ...) after the busy timeout.
    if (/^08[0-9A-Z]{3}$/.test(code) || code === 'SQLITE_BUSY' || code.startsWith('SQLITE_BUSY_')) return true;
  }
  // Connecting to a name with several addresses fails with every attempt's error in one AggregateError.
  if (error instanceof AggregateError && error.errors.some(isUnavailable)) return true;
  const message = (error as { message?: unknown }).message;
  return typeof message === 'string' && PG_CONNECTION_MESSAGES.some((pattern) => pattern.test(message));
}

function translate(error: unknown): unknown {
  if (!isUnavailable(error)) return error;
  return new MciasError('unavailable', 'the database is not answering; try again shortly', {
    cause: error,
    retryAfter: UNAVAILABLE_RETRY_AFTER_S,
  });
}

async function translated<T>(work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (error) {
    throw translate(error);
  }
}

/** The driver's own connection travels inside ours, so the wrapped driver is always handed what it made. */
class TranslatingConnection implements DatabaseConnection {
  readonly inner: DatabaseConnection;
  constructor(inner: DatabaseConnection) {
    this.inner = inner;
  }

  executeQuery<R>(query: CompiledQuery, options?: Parameters<DatabaseConnection['executeQuery']>[1]): Promise<QueryResult<R>> {
    return translated(() => this.inner.executeQuery<R>(query, options));
  }

  async *streamQuery<R>(query: CompiledQuery, chunkSize: number, options?: Parameters<DatabaseConnection['streamQuery']>[2]): AsyncIterableIterator<QueryResult<R>> {
    try {
      yield* this.inner.streamQuery<R>(query, chunkSize, options);
    } catch (error) {
      throw translate(error);
    }
  }
}

const inner = (connection: DatabaseConnection): DatabaseConnection =>
  connection instanceof TranslatingConnection ? connection.inner : connection;

class TranslatingDriver implements Driver {
  readonly #driver: Driver;
  constructor(driver: Driver) {
    this.#driver = driver;
  }

  init(options?: Parameters<Driver['init']>[0]): Promise<void> {
    return translated(() => this.#driver.init(options));
  }

  async acquireConnection(options?: Parameters<Driver['acquireConnection']>[0]): Promise<DatabaseConnection> {
    return new TranslatingConnection(await translated(() => this.#driver.acquireConnection(options)));
  }

  beginTransaction(connection: DatabaseConnection, settings: TransactionSettings): Promise<void> {
    return translated(() => this.#driver.beginTransaction(inner(connection), settings));
  }

  commitTransaction(connection: DatabaseConnection): Promise<void> {
    return translated(() => this.#driver.commitTransaction(inner(connection)));
  }

  rollbackTransaction(connection: DatabaseConnection): Promise<void> {
    return translated(() => this.#driver.rollbackTransaction(inner(connection)));
  }

  releaseConnection(connection: DatabaseConnection, options?: Parameters<Driver['releaseConnection']>[1]): Promise<void> {
    return this.#driver.releaseConnection(inner(connection), options);
  }

  destroy(options?: Parameters<Driver['destroy']>[0]): Promise<void> {
    return this.#driver.destroy(options);
  }
}

/** `dialect` with every driver error that means "the database is not answering" turned into `unavailable`. */
export function failClosed(dialect: Dialect): Dialect {
  return {
    createDriver: () => new TranslatingDriver(dialect.createDriver()),
    createQueryCompiler: () => dialect.createQueryCompiler(),
    createAdapter: () => dialect.createAdapter(),
    createIntrospector: (db) => dialect.createIntrospector(db),
  };
}
