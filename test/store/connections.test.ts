import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, type Socket } from 'node:net';
import { describe, test } from 'node:test';
import BetterSqlite3 from 'better-sqlite3';
import pg from 'pg';
import { isMciasError } from '../../src/domain/errors.ts';
import { openDatabase } from '../../src/store/database.ts';
import { isUnavailable } from '../../src/store/unavailable.ts';
import { DIALECTS, createTestDatabase, useMigratedDatabase } from '../support/databases.ts';

/**
 * Regression: an idle PostgreSQL connection closed by the server (a restart, pg_terminate_backend, an idle
 * timeout) made the connection pool emit an 'error' nobody listened to, which crashed the whole process.
 */
for (const dialect of DIALECTS) {
  describe(`the database survives its server dropping idle connections [${dialect}]`, () => {
    const fx = useMigratedDatabase(dialect);

    test(
      'terminating every idle connection does not crash the process, and the next query reconnects',
      { skip: dialect === 'sqlite' ? 'SQLite has no server to drop connections' : false },
      async () => {
        // Several idle connections in the pool.
        await Promise.all(Array.from({ length: 3 }, () => fx.database.ping()));
        const uncaught: unknown[] = [];
        const listener = (error: unknown) => uncaught.push(error);
        process.on('uncaughtException', listener);
        try {
          const admin = new pg.Client({ connectionString: fx.testDb.location });
          await admin.connect();
          try {
            const { rows } = await admin.query<{ pid: number }>(
              'select pg_terminate_backend(pid) as pid from pg_stat_activity where datname = current_database() and pid <> pg_backend_pid()',
            );
            assert.ok(rows.length >= 1, 'no idle pool connection was found to terminate');
          } finally {
            await admin.end();
          }
          await new Promise((resolve) => setTimeout(resolve, 300));
          assert.deepEqual(uncaught, []);
          await fx.database.ping();
        } finally {
          process.off('uncaughtException', listener);
        }
      },
    );
  });
}

/** SECURITY.md §52: what the store calls an outage (`unavailable`), and what it leaves alone. */
describe('database errors that mean "not answering" become unavailable', () => {
  test('connection-class errors of either database, and nothing else', () => {
    const coded = (code: string, message = 'x') => Object.assign(new Error(message), { code });
    for (const error of [
      coded('ECONNREFUSED'),
      coded('ECONNRESET'),
      coded('ETIMEDOUT'),
      coded('08006'),
      coded('08001'),
      coded('57P01'),
      coded('57P03'),
      coded('53300'),
      coded('SQLITE_BUSY'),
      coded('SQLITE_BUSY_SNAPSHOT'),
      new Error('Connection terminated unexpectedly'),
      new Error('timeout exceeded when trying to connect'),
      new Error('Client has encountered a connection error and is not queryable'),
      new AggregateError([coded('ECONNREFUSED'), coded('ECONNREFUSED')]),
    ]) {
      assert.ok(isUnavailable(error), `${String((error as { code?: string }).code ?? error.message)} is an outage`);
    }
    for (const error of [
      coded('23505', 'duplicate key value violates unique constraint'),
      coded('42P01', 'relation does not exist'),
      coded('SQLITE_CONSTRAINT_UNIQUE'),
      coded('SQLITE_CORRUPT'),
      coded('40001'),
      new Error('the signing_keys lock has no row in the locks table'),
      'ECONNREFUSED',
      undefined,
    ]) {
      assert.ok(!isUnavailable(error), `${String(error)} is not an outage`);
    }
  });

  test('SQLite: a write lock held past storage.busy_timeout is unavailable, and the next write after it works', async () => {
    const testDb = await createTestDatabase('sqlite');
    const database = openDatabase({ kind: 'sqlite', path: testDb.location, busyTimeoutMs: 100 });
    try {
      assert.equal((await database.migrate()).error, undefined);
      const other = new BetterSqlite3(testDb.location);
      other.exec('begin immediate');
      const write = database.db.insertInto('roles').values({ name: 'held', created_at: 0 }).execute();
      const error = await write.then(() => undefined, (e: unknown) => e);
      assert.ok(isMciasError(error, 'unavailable'), `expected unavailable, got ${String(error)}`);
      assert.equal(error.retryAfter, 5);
      other.exec('rollback');
      other.close();
      await database.db.insertInto('roles').values({ name: 'held', created_at: 0 }).execute();
    } finally {
      await database.close();
      await testDb.drop();
    }
  });
});

describe('PostgreSQL: a connection dropped in the middle of a transaction [postgres]', { skip: DIALECTS.includes('postgres') ? false : 'PostgreSQL not selected' }, () => {
  const fx = useMigratedDatabase('postgres');

  test('does not crash the process; the transaction fails with unavailable and the next one works', async () => {
    const uncaught: unknown[] = [];
    const listener = (error: unknown) => uncaught.push(error);
    process.on('uncaughtException', listener);
    try {
      const outcome = await fx.database.db
        .transaction()
        .execute(async (tx) => {
          await tx.insertInto('roles').values({ name: 'cut-off', created_at: 0 }).execute();
          // The server ends this very connection while the transaction holds it, between two statements.
          const admin = new pg.Client({ connectionString: fx.testDb.location });
          await admin.connect();
          try {
            await admin.query(
              "select pg_terminate_backend(pid) from pg_stat_activity where datname = current_database() and pid <> pg_backend_pid() and state like 'idle in transaction%'",
            );
          } finally {
            await admin.end();
          }
          await new Promise((resolve) => setTimeout(resolve, 300));
          await tx.selectFrom('roles').select('name').execute();
        })
        .then(() => undefined, (e: unknown) => e);
      assert.ok(isMciasError(outcome, 'unavailable'), `expected unavailable, got ${String(outcome)}`);
      assert.deepEqual(uncaught, []);
      const roles = await fx.database.db.selectFrom('roles').select('name').where('name', '=', 'cut-off').execute();
      assert.deepEqual(roles, [], 'the cut-off transaction committed');
    } finally {
      process.off('uncaughtException', listener);
    }
  });
});

describe('PostgreSQL: a server that never answers [postgres]', { skip: DIALECTS.includes('postgres') ? false : 'PostgreSQL not selected' }, () => {
  test('a query fails with unavailable after the 10 s connect timeout, not the operating system\'s', { timeout: 30_000 }, async () => {
    // Accepts connections and says nothing, like a host behind a partition that drops packets.
    const sockets: Socket[] = [];
    const silent = createServer((socket) => sockets.push(socket));
    silent.listen(0, '127.0.0.1');
    await once(silent, 'listening');
    const { port } = silent.address() as { port: number };
    const database = openDatabase({ kind: 'postgres', url: `postgres://mcias@127.0.0.1:${port}/mcias`, caFile: undefined, poolSize: 1 });
    try {
      const started = Date.now();
      const error = await database.ping().then(() => undefined, (e: unknown) => e);
      const waited = Date.now() - started;
      assert.ok(isMciasError(error, 'unavailable'), `expected unavailable, got ${String(error)}`);
      assert.ok(waited >= 9_000 && waited < 20_000, `failed after ${waited} ms`);
    } finally {
      await database.close();
      for (const socket of sockets) socket.destroy();
      silent.close();
    }
  });
});
