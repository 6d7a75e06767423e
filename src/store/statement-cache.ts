import type BetterSqlite3 from 'better-sqlite3';
import type { SqliteDatabase, SqliteStatement } from 'kysely';
import { LRUCache } from 'lru-cache';

/**
 * How many prepared statements one SQLite connection keeps. The application issues a few hundred distinct SQL
 * texts at most; a statement whose text varies with its input (an `in (...)` list of varying length) takes a slot
 * per length, and the least recently used ones are dropped past this bound.
 */
const STATEMENT_CACHE_SIZE = 500;

/**
 * A better-sqlite3 database for Kysely's SqliteDialect whose `prepare` returns a cached statement. Kysely's driver
 * calls `prepare` on every execution, which parses and plans the SQL again each time; SQLite re-prepares a cached
 * statement by itself after a schema change, so reuse is safe across migrations.
 *
 * Kysely only calls `reader`, `all`, `run` and `iterate`, and never changes a statement's mode (`raw`, `pluck`,
 * `expand`, `safeIntegers`), so a cached statement behaves as a fresh one. The one state that matters is `busy`: a
 * statement being iterated (a streamed query still open) cannot run again until the iteration ends, so a second use
 * of the same SQL meanwhile gets a fresh, uncached statement.
 */
export class CachedStatementDatabase implements SqliteDatabase {
  readonly #database: BetterSqlite3.Database;
  readonly #statements: LRUCache<string, BetterSqlite3.Statement>;

  constructor(database: BetterSqlite3.Database, max = STATEMENT_CACHE_SIZE) {
    this.#database = database;
    this.#statements = new LRUCache({ max });
  }

  prepare(sql: string): SqliteStatement {
    const cached = this.#statements.get(sql);
    if (cached !== undefined && !cached.busy) return cached;
    const statement = this.#database.prepare(sql);
    if (cached === undefined) this.#statements.set(sql, statement);
    return statement;
  }

  /** How many statements are cached (for tests and diagnostics). */
  get size(): number {
    return this.#statements.size;
  }

  close(): void {
    this.#statements.clear();
    this.#database.close();
  }
}
