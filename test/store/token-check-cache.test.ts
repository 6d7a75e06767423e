import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { Kysely } from 'kysely';
import type { TokenWithAccount } from '../../src/domain/ports.ts';
import { reportCommittedWrites } from '../../src/store/committed-writes.ts';
import { openDialect, ping } from '../../src/store/dialects.ts';
import type { DB } from '../../src/store/schema.ts';
import { TOKEN_CHECK_CACHE_SIZE, TokenCheckCache } from '../../src/store/token-check-cache.ts';
import { DIALECTS, useMigratedDatabase } from '../support/databases.ts';

/** SECURITY.md §51: the token-check cache's bound, its TTL, and the two rules its correctness rests on. */

function found(jti: string, status: 'active' | 'disabled' = 'active'): TokenWithAccount {
  return {
    token: { jti, accountId: 'a1', kind: 'session', kid: 'k1', issuedAt: 1, expiresAt: 2, sessionStartedAt: 1, issuedBy: null, revokedAt: null },
    account: {
      id: 'a1',
      username: 'ann',
      kind: 'human',
      status,
      passwordHash: null,
      totpConfirmedAt: null,
      passwordChangeRequired: false,
      createdAt: 1,
      updatedAt: 1,
    },
    roles: ['wiki'],
    permissions: [{ resource: 'docs', action: 'read' }],
  };
}

/** A loader that counts its calls and answers `found(jti)`. */
function counting(answer: (jti: string) => TokenWithAccount | undefined = (jti) => found(jti)) {
  const calls: string[] = [];
  return { calls, load: async (jti: string) => (calls.push(jti), answer(jti)) };
}

describe('the token-check cache', () => {
  test('a read is reused within its TTL and read again after it', async () => {
    const cache = new TokenCheckCache({ ttlMs: 100 });
    const loader = counting();
    await cache.read('t1', loader.load);
    await cache.read('t1', loader.load);
    assert.equal(loader.calls.length, 1, 'reused within the TTL');
    await delay(150);
    await cache.read('t1', loader.load);
    assert.equal(loader.calls.length, 2, 'read again once it expired');
  });

  test('invalidate forgets every entry', async () => {
    const cache = new TokenCheckCache({ ttlMs: 60_000 });
    const loader = counting();
    await cache.read('t1', loader.load);
    await cache.read('t2', loader.load);
    cache.invalidate();
    assert.equal(cache.size, 0);
    await cache.read('t1', loader.load);
    assert.deepEqual(loader.calls, ['t1', 't2', 't1']);
  });

  test('a read in flight when a write commits is not remembered: it may have seen the database before the write', async () => {
    const cache = new TokenCheckCache({ ttlMs: 60_000 });
    let release: (value: TokenWithAccount) => void = () => {};
    const slow = cache.read('t1', () => new Promise<TokenWithAccount>((resolve) => (release = resolve)));
    cache.invalidate(); // the write commits while the read is on its way
    release(found('t1', 'active')); // what the database answered before the write: still active
    assert.equal((await slow)?.account.status, 'active', 'the caller that asked before the write gets its answer');
    const after = await cache.read('t1', async () => found('t1', 'disabled'));
    assert.equal(after?.account.status, 'disabled', 'the next read goes to the database, not to the stale answer');
  });

  test('checks of one token that miss together share one read', async () => {
    const cache = new TokenCheckCache({ ttlMs: 60_000 });
    const releases: ((value: TokenWithAccount) => void)[] = [];
    const load = () => new Promise<TokenWithAccount>((resolve) => releases.push(resolve));
    const reads = Array.from({ length: 16 }, () => cache.read('t1', load));
    const other = cache.read('t2', async (jti) => found(jti));
    const loads = releases.length;
    for (const release of releases) release(found('t1'));
    assert.equal(loads, 1, 'sixteen checks, one read');
    const answers = await Promise.all(reads);
    assert.ok(answers.every((a) => a === answers[0] && a?.account.status === 'active'));
    assert.equal((await other)?.token.jti, 't2', 'another token has its own read');
  });

  test('a check that begins after a write does not join a read that began before it', async () => {
    const cache = new TokenCheckCache({ ttlMs: 60_000 });
    let releaseOld: (value: TokenWithAccount) => void = () => {};
    const before = cache.read('t1', () => new Promise<TokenWithAccount>((resolve) => (releaseOld = resolve)));
    cache.invalidate(); // the account is disabled and the write commits while that read is on its way
    const afterWrite = cache.read('t1', async () => found('t1', 'disabled'));
    releaseOld(found('t1', 'active'));
    assert.equal((await before)?.account.status, 'active');
    assert.equal((await afterWrite)?.account.status, 'disabled', 'read again, not the answer from before the write');
    assert.equal((await cache.read('t1', async () => found('t1', 'active')))?.account.status, 'disabled', 'and that read is remembered');
  });

  test('a failed read fails every check that shared it, and the next check reads again', async () => {
    const cache = new TokenCheckCache({ ttlMs: 60_000 });
    let fail: (error: Error) => void = () => {};
    const reads = [1, 2, 3].map(() => cache.read('t1', () => new Promise<TokenWithAccount>((_resolve, reject) => (fail = reject))));
    fail(new Error('database unavailable'));
    for (const read of reads) await assert.rejects(read, /database unavailable/);
    assert.equal((await cache.read('t1', async (jti) => found(jti)))?.token.jti, 't1');
  });

  test('a token that was not found is not remembered', async () => {
    const cache = new TokenCheckCache({ ttlMs: 60_000 });
    const loader = counting(() => undefined);
    assert.equal(await cache.read('t1', loader.load), undefined);
    assert.equal(await cache.read('t1', loader.load), undefined);
    assert.equal(loader.calls.length, 2);
    assert.equal(cache.size, 0);
  });

  test(`it holds at most ${TOKEN_CHECK_CACHE_SIZE} entries, the least recently used dropped first`, async () => {
    const cache = new TokenCheckCache({ ttlMs: 60_000 });
    const loader = counting();
    for (let i = 0; i < TOKEN_CHECK_CACHE_SIZE + 500; i++) await cache.read(`t${i}`, loader.load);
    assert.equal(cache.size, TOKEN_CHECK_CACHE_SIZE);
    await cache.read(`t${TOKEN_CHECK_CACHE_SIZE + 499}`, loader.load);
    assert.equal(loader.calls.length, TOKEN_CHECK_CACHE_SIZE + 500, 'the most recent is still there');
    await cache.read('t0', loader.load);
    assert.equal(loader.calls.length, TOKEN_CHECK_CACHE_SIZE + 501, 'the oldest was dropped');
  });

  test('entries are frozen: a request cannot change what the next one is told', async () => {
    const cache = new TokenCheckCache({ ttlMs: 60_000 });
    const entry = await cache.read('t1', async (jti) => found(jti));
    assert.ok(entry !== undefined);
    assert.throws(() => (entry.roles as string[]).push('admin'));
    assert.throws(() => Object.assign(entry.account, { status: 'active' }));
    assert.throws(() => Object.assign(entry.permissions[0] ?? {}, { resource: '*' }));
  });
});

for (const dialect of DIALECTS) {
  describe(`every committed write is reported before its caller goes on [${dialect}]`, () => {
    const fixture = useMigratedDatabase(dialect);

    /** A second handle on the test database whose writes are counted. */
    const counted = () => {
      let reports = 0;
      const db = new Kysely<DB>({ dialect: reportCommittedWrites(openDialect(fixture.testDb.storage).dialect, () => (reports += 1)) });
      return { db, reports: () => reports };
    };

    test('a write outside a transaction is reported once it is done; reads, and the readiness probe, are not', async () => {
      const { db, reports } = counted();
      try {
        await db.selectFrom('roles').selectAll().execute();
        await ping(db);
        assert.equal(reports(), 0);
        await db.insertInto('roles').values({ name: 'outside', created_at: 1 }).execute();
        assert.equal(reports(), 1, 'an insert');
        await db.updateTable('roles').set({ created_at: 2 }).where('name', '=', 'outside').execute();
        await db.deleteFrom('roles').where('name', '=', 'outside').execute();
        assert.equal(reports(), 3, 'an update and a delete');
        await assert.rejects(db.insertInto('roles').values({ name: 'admin', created_at: 1 }).execute());
        assert.equal(reports(), 4, 'a write that failed: its answer may have been lost after it committed');
      } finally {
        await db.destroy();
      }
    });

    test('a transaction is reported after it commits', async () => {
      const { db, reports } = counted();
      try {
        let inside = -1;
        await db.transaction().execute(async (tx) => {
          await tx.insertInto('roles').values({ name: 'inside', created_at: 1 }).execute();
          inside = reports();
        });
        assert.ok(reports() > inside, 'reported again once the commit is done');
        const beforeRead = reports();
        await db.transaction().execute(async (tx) => {
          await tx.selectFrom('roles').selectAll().execute();
        });
        assert.equal(reports(), beforeRead + 1, 'every commit counts, even of a transaction that only read');
      } finally {
        await db.destroy();
      }
    });
  });
}
