import type { CompiledQuery, DatabaseConnection, Dialect, Driver, QueryResult, TransactionSettings } from 'kysely';

/**
 * A dialect like `dialect` whose driver calls `onCommitted` after every statement that may have written is committed:
 * after each commit of a transaction, and after each statement run outside one that is not a plain `SELECT` (raw SQL
 * counts as a write). It is called once the database has answered, and before the caller of the statement or the
 * transaction goes on, so whatever the caller does next (answer its request) comes after it.
 *
 * This is deliberately coarse: it knows nothing of tables or of which writes matter to whom, so no write, present or
 * future, through the store or straight through the Kysely handle, can be missed. Writes inside a transaction are
 * reported too (harmless, and simpler than tracking which connection is in one); what matters is the report after
 * the commit. SECURITY.md §51 (the token-check cache) relies on it.
 */
export function reportCommittedWrites(dialect: Dialect, onCommitted: () => void): Dialect {
  return {
    createDriver: () => new ReportingDriver(dialect.createDriver(), onCommitted),
    createQueryCompiler: () => dialect.createQueryCompiler(),
    createAdapter: () => dialect.createAdapter(),
    createIntrospector: (db) => dialect.createIntrospector(db),
  };
}

function mayWrite(query: CompiledQuery): boolean {
  return query.query.kind !== 'SelectQueryNode';
}

class ReportingConnection implements DatabaseConnection {
  readonly inner: DatabaseConnection;
  readonly #onCommitted: () => void;

  constructor(inner: DatabaseConnection, onCommitted: () => void) {
    this.inner = inner;
    this.#onCommitted = onCommitted;
  }

  async executeQuery<R>(query: CompiledQuery, options?: Parameters<DatabaseConnection['executeQuery']>[1]): Promise<QueryResult<R>> {
    // Also when it fails: a statement whose answer was lost may still have been committed.
    try {
      return await this.inner.executeQuery<R>(query, options);
    } finally {
      if (mayWrite(query)) this.#onCommitted();
    }
  }

  async *streamQuery<R>(
    query: CompiledQuery,
    chunkSize: number,
    options?: Parameters<DatabaseConnection['streamQuery']>[2],
  ): AsyncIterableIterator<QueryResult<R>> {
    try {
      yield* this.inner.streamQuery<R>(query, chunkSize, options);
    } finally {
      if (mayWrite(query)) this.#onCommitted();
    }
  }
}

class ReportingDriver implements Driver {
  readonly #inner: Driver;
  readonly #onCommitted: () => void;
  /** One wrapper per connection, so Kysely sees the same object each time it gets the same connection. */
  readonly #wrappers = new WeakMap<DatabaseConnection, ReportingConnection>();

  constructor(inner: Driver, onCommitted: () => void) {
    this.#inner = inner;
    this.#onCommitted = onCommitted;
  }

  init(options?: Parameters<Driver['init']>[0]): Promise<void> {
    return this.#inner.init(options);
  }

  async acquireConnection(options?: Parameters<Driver['acquireConnection']>[0]): Promise<DatabaseConnection> {
    const inner = await this.#inner.acquireConnection(options);
    let wrapper = this.#wrappers.get(inner);
    if (wrapper === undefined) {
      wrapper = new ReportingConnection(inner, this.#onCommitted);
      this.#wrappers.set(inner, wrapper);
    }
    return wrapper;
  }

  beginTransaction(connection: DatabaseConnection, settings: TransactionSettings): Promise<void> {
    return this.#inner.beginTransaction(unwrap(connection), settings);
  }

  async commitTransaction(connection: DatabaseConnection): Promise<void> {
    // Also when it fails: a commit whose answer was lost may have happened.
    try {
      await this.#inner.commitTransaction(unwrap(connection));
    } finally {
      this.#onCommitted();
    }
  }

  rollbackTransaction(connection: DatabaseConnection): Promise<void> {
    return this.#inner.rollbackTransaction(unwrap(connection));
  }

  releaseConnection(connection: DatabaseConnection, options?: Parameters<Driver['releaseConnection']>[1]): Promise<void> {
    return this.#inner.releaseConnection(unwrap(connection), options);
  }

  destroy(options?: Parameters<Driver['destroy']>[0]): Promise<void> {
    return this.#inner.destroy(options);
  }
}

function unwrap(connection: DatabaseConnection): DatabaseConnection {
  return connection instanceof ReportingConnection ? connection.inner : connection;
}
