import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import pg from 'pg';
import { DIALECTS, useMigratedDatabase } from '../support/databases.ts';

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
