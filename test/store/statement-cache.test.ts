import assert from 'node:assert/strict';
import { after, before, describe, mock, test } from 'node:test';
import BetterSqlite3 from 'better-sqlite3';
import { Kysely, SqliteDialect, sql } from 'kysely';
import { CachedStatementDatabase } from '../../src/store/statement-cache.ts';
import { createHarness, type Harness } from '../support/harness.ts';

/** Counts the statements better-sqlite3 really prepares, for every database opened while it is installed. */
function countPrepares(): { readonly count: () => number; restore(): void } {
  const spy = mock.method(BetterSqlite3.prototype, 'prepare');
  return { count: () => spy.mock.callCount(), restore: () => spy.mock.restore() };
}

describe('the SQLite statement cache', () => {
  test('the same SQL is prepared once; reads return rows and writes report their changes as before', async () => {
    const prepares = countPrepares();
    const cached = new CachedStatementDatabase(new BetterSqlite3(':memory:'));
    const db = new Kysely<any>({ dialect: new SqliteDialect({ database: cached }) });
    try {
      await sql`create table t (id integer primary key, v text)`.execute(db);
      const before = prepares.count();
      for (let i = 1; i <= 5; i++) {
        const inserted = await db.insertInto('t').values({ v: `v${i}` }).executeTakeFirstOrThrow();
        assert.equal(inserted.insertId, BigInt(i));
        const rows = await db.selectFrom('t').select(['id', 'v']).where('id', '=', i).execute();
        assert.deepEqual(rows, [{ id: i, v: `v${i}` }]);
        const updated = await db.updateTable('t').set({ v: 'x' }).where('id', '<=', i).executeTakeFirstOrThrow();
        assert.equal(updated.numUpdatedRows, BigInt(i));
      }
      assert.equal(prepares.count() - before, 3, 'one prepare per distinct SQL text, not per execution');
      assert.equal(cached.size, 4);
    } finally {
      prepares.restore();
      await db.destroy();
    }
  });

  test('a statement still being iterated is not handed out again: the same SQL meanwhile gets its own statement', () => {
    // Kysely holds its one SQLite connection for a whole stream, so only a direct caller could meet this.
    const cached = new CachedStatementDatabase(new BetterSqlite3(':memory:'));
    try {
      const text = 'select value from json_each(?) order by value';
      const streaming = cached.prepare(text);
      const streamed: number[] = [];
      for (const row of streaming.iterate(['[1,2,3]']) as Iterable<{ value: number }>) {
        streamed.push(row.value);
        // better-sqlite3 throws "This statement is busy executing a query" if the busy statement is handed out.
        const again = cached.prepare(text);
        assert.notEqual(again, streaming);
        assert.deepEqual(again.all(['[4]']), [{ value: 4 }]);
      }
      assert.deepEqual(streamed, [1, 2, 3]);
      assert.equal(cached.prepare(text), streaming, 'once the iteration ends the cached statement is used again');
    } finally {
      cached.close();
    }
  });

  test('it cannot grow without bound: past its size the least recently used statement is dropped', async () => {
    const prepares = countPrepares();
    const cached = new CachedStatementDatabase(new BetterSqlite3(':memory:'), 3);
    const db = new Kysely<any>({ dialect: new SqliteDialect({ database: cached }) });
    try {
      // Distinct SQL texts, as an `in (...)` list of growing length makes.
      for (let n = 1; n <= 50; n++) {
        await db.selectNoFrom(sql<number>`${sql.join(Array.from({ length: n }, (_, i) => sql.lit(i)))}`.as('x')).execute();
        assert.ok(cached.size <= 3, `the cache holds ${cached.size} statements`);
      }
      const before = prepares.count();
      await db.selectNoFrom(sql<number>`${sql.lit(0)}`.as('x')).execute();
      assert.equal(prepares.count() - before, 1, 'the evicted statement was prepared again');
    } finally {
      prepares.restore();
      await db.destroy();
    }
  });
});

describe('every query of the server goes through the statement cache', () => {
  let h: Harness;
  let prepares: ReturnType<typeof countPrepares>;
  before(async () => {
    prepares = countPrepares();
    h = await createHarness('sqlite');
  });
  after(async () => {
    prepares.restore();
    await h.close();
  });

  test('a second round of logins, checks, renewals, account, role and token changes and audit reads prepares nothing', async () => {
    const round = async (i: number) => {
      const username = await h.createAccount(`user${i}`);
      const service = await h.createAccount(`svc${i}`, 'system');
      const token = await h.login(username, 'a sufficiently long test password');
      const ok = (status: number, response: { statusCode: number; body: string }) => assert.equal(response.statusCode, status, response.body);
      ok(200, await h.request({ method: 'POST', url: '/v1/token/validate', body: { token } }));
      ok(200, await h.request({ method: 'GET', url: '/v1/me', token }));
      ok(201, await h.request({ method: 'POST', url: '/v1/roles', token: h.adminToken, body: { name: `role${i}` } }));
      ok(204, await h.request({ method: 'PUT', url: `/v1/accounts/${username}/roles/role${i}`, token: h.adminToken }));
      ok(201, await h.request({ method: 'POST', url: `/v1/accounts/${service}/token`, token: h.adminToken }));
      const renewed = await h.request({ method: 'POST', url: '/v1/auth/renew', token });
      ok(200, renewed);
      const next = (renewed.json() as { token: string }).token;
      ok(200, await h.request({ method: 'GET', url: '/v1/me/tokens', token: next }));
      ok(200, await h.request({ method: 'GET', url: '/v1/audit?limit=10', token: h.adminToken }));
      ok(200, await h.request({ method: 'PATCH', url: `/v1/accounts/${username}`, token: h.adminToken, body: { status: 'disabled' } }));
      ok(401, await h.request({ method: 'GET', url: '/v1/me', token: next }));
      ok(204, await h.request({ method: 'DELETE', url: `/v1/accounts/${username}`, token: h.adminToken }));
    };
    await round(1);
    const before = prepares.count();
    assert.ok(before > 0, 'the spy sees the server prepare its statements');
    await round(2);
    assert.equal(prepares.count() - before, 0, 'a statement was prepared again instead of taken from the cache');
  });
});
