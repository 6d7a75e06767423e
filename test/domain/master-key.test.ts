import assert from 'node:assert/strict';
import { createHmac, randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { auditEvent } from '../../src/domain/audit.ts';
import type { Clock } from '../../src/domain/clock.ts';
import { rotateMasterKey } from '../../src/domain/master-key.ts';
import { Sealer, derivedDigestKey, digestKeyContext } from '../../src/domain/sealing.ts';
import { normalizeRecoveryCode } from '../../src/domain/totp.ts';
import { createRuntime } from '../../src/server.ts';
import { DIALECTS } from '../support/databases.ts';
import { createHarness, type Harness } from '../support/harness.ts';
import { enrollTotp } from '../support/totp-codes.ts';

/**
 * SECURITY.md §24 in the domain: the digest keys are stored sealed (so a new master key keeps recovery codes
 * verifiable), a database from before they were stored keeps its digests, and a wrong master key creates nothing.
 * The rotation itself, through the real binary, is test/e2e/master-key-rotation.test.ts.
 */

for (const dialect of DIALECTS) {
  describe(`digest keys and the master key [${dialect}]`, () => {
    let h: Harness;
    let codes: string[];
    const db = () => h.runtime.database.db;
    const start = (masterKey: Buffer) => createRuntime(h.config, { clock: h.clock as Clock, masterKey });
    const storedDigestKey = async (masterKey: Buffer) => {
      const row = await db().selectFrom('digest_keys').selectAll().executeTakeFirstOrThrow();
      return new Sealer(masterKey).open(row.sealed_key, digestKeyContext('recovery codes'));
    };
    const verifyWith = async (runtime: Awaited<ReturnType<typeof start>>, code: string) => {
      const account = await runtime.database.store.accounts.findByUsername('tess');
      return runtime.services.totp.verify(account!, code);
    };

    before(async () => {
      h = await createHarness(dialect);
      await h.createAccount('tess');
      ({ recoveryCodes: codes } = await enrollTotp(h, await h.login('tess', 'a sufficiently long test password')));
    });
    after(() => h.close());

    test('a new database gets a random digest key, not one derived from the master key', async () => {
      const rows = await db().selectFrom('digest_keys').selectAll().execute();
      assert.deepEqual(rows.map((r) => r.purpose).sort(), ['recovery codes', 'registration codes']);
      const key = await storedDigestKey(h.masterKey);
      assert.equal(key.length, 32);
      assert.notDeepEqual(key, derivedDigestKey(h.masterKey, 'recovery codes'));
    });

    test('a wrong master key on a database without digest keys names the row it cannot open and creates nothing', async () => {
      const saved = await db().selectFrom('digest_keys').selectAll().execute();
      await db().deleteFrom('digest_keys').execute();
      try {
        await assert.rejects(start(randomBytes(32)), /^Error: the master key does not open accounts\.totp_secret of [0-9a-f-]+: is this the master key/);
        assert.equal((await db().selectFrom('digest_keys').selectAll().execute()).length, 0);
      } finally {
        await db().insertInto('digest_keys').values(saved).execute();
      }
    });

    test('a database from before digest keys were stored keeps its recovery codes: the first start stores the derived key', async () => {
      // As the previous version stored them: HMAC under a key derived from the master key, and no digest_keys row.
      const account = await h.runtime.database.store.accounts.findByUsername('tess');
      const legacy = derivedDigestKey(h.masterKey, 'recovery codes');
      await db().deleteFrom('recovery_codes').where('account_id', '=', account!.id).execute();
      await db()
        .insertInto('recovery_codes')
        .values(codes.map((c) => ({ account_id: account!.id, code_hash: createHmac('sha256', legacy).update(normalizeRecoveryCode(c)).digest('base64url'), created_at: 1, used_at: null })))
        .execute();
      await db().deleteFrom('digest_keys').execute();
      const upgraded = await start(h.masterKey);
      try {
        assert.deepEqual(await storedDigestKey(h.masterKey), legacy);
        assert.deepEqual(await verifyWith(upgraded, codes[0]!), { ok: true, factor: 'recovery_code' });
      } finally {
        await upgraded.close();
      }
    });

    test('after rotateMasterKey: the new key starts, the old one is refused, and a recovery code from before still works', async () => {
      const next = randomBytes(32);
      await assert.rejects(rotateMasterKey(h.runtime.database.store, h.masterKey, Buffer.from(h.masterKey), h.clock), /the new master key is the current one/);
      await assert.rejects(rotateMasterKey(h.runtime.database.store, randomBytes(32), next, h.clock), /^Error: wrong master key/);
      const counts = await rotateMasterKey(h.runtime.database.store, h.masterKey, next, h.clock);
      assert.deepEqual(Object.fromEntries(counts), {
        'accounts.totp_secret': 1,
        'signing_keys.private_key': 1,
        'pg_credentials.password': 0,
        'pg_credentials.pending_password': 0,
        'digest_keys.sealed_key': 2,
      });
      await assert.rejects(start(h.masterKey), /^Error: wrong master key: it does not open this database's sealed digest keys; if "mciassrv keys rotate-master" was run/);
      const rotated = await start(next);
      try {
        assert.deepEqual(await verifyWith(rotated, codes[1]!), { ok: true, factor: 'recovery_code' });
        assert.deepEqual(await verifyWith(rotated, codes[1]!), { ok: false, reason: 'wrong_recovery_code' }, 'used once');
      } finally {
        await rotated.close();
      }
      // A process still running with the old key (a server someone forgot to stop) cannot add a signing key under it.
      const keysBefore = await db().selectFrom('signing_keys').select('kid').execute();
      await assert.rejects(h.runtime.services.keys.rotate(undefined, undefined), /^Error: wrong master key/);
      assert.deepEqual(await db().selectFrom('signing_keys').select('kid').execute(), keysBefore);
      const event = await db().selectFrom('audit_events').selectAll().where('type', '=', 'master_key_rotated').executeTakeFirstOrThrow();
      assert.equal(JSON.parse(event.details)['accounts.totp_secret'], 1);
      // Appended to the audit chain like every other event (SECURITY.md §31), not written beside it.
      assert.notEqual(event.hash, null);
      const verified = await h.runtime.database.store.audit.verify();
      assert.ok(verified.ok, JSON.stringify(verified));
      assert.equal(verified.head.seq, Number(event.seq));
    });
  });
}

if (DIALECTS.includes('postgres')) {
  describe('a master-key rotation and a concurrent write [postgres]', () => {
    let h: Harness;
    /** The master key the database is sealed under now (each test's rotation changes it). */
    let current: Buffer;
    before(async () => {
      h = await createHarness('postgres');
      await h.createAccount('tess');
      current = h.masterKey;
    });
    after(() => h.close());

    test('a write in flight when the rotation starts is waited for and re-sealed, not overwritten with the value from before', async () => {
      const account = (await h.runtime.database.store.accounts.findByUsername('tess'))!;
      const context = { table: 'accounts', column: 'totp_secret', id: account.id };
      const old = new Sealer(h.masterKey);
      await h.runtime.database.db.updateTable('accounts').set({ totp_secret: old.seal(Buffer.from('before'), context) }).where('id', '=', account.id).execute();
      // Another instance (one that should have been stopped) is changing the secret when the rotation begins.
      const other = new pg.Client({ connectionString: h.db.location });
      await other.connect();
      try {
        await other.query('begin');
        await other.query('update accounts set totp_secret = $1 where id = $2', [old.seal(Buffer.from('during'), context), account.id]);
        const next = randomBytes(32);
        const rotation = rotateMasterKey(h.runtime.database.store, current, next, h.clock);
        await sleep(300);
        await other.query('commit');
        await rotation;
        current = next;
        const row = await h.runtime.database.db.selectFrom('accounts').select('totp_secret').where('id', '=', account.id).executeTakeFirstOrThrow();
        assert.equal(new Sealer(next).open(row.totp_secret!, context).toString(), 'during');
      } finally {
        await other.end();
      }
    });

    test('an audited write in flight when the rotation starts commits first, and both events are chained (no deadlock with the audit lock)', async () => {
      const store = h.runtime.database.store;
      const account = (await store.accounts.findByUsername('tess'))!;
      const headBefore = await store.audit.verify();
      assert.ok(headBefore.ok);
      let release!: () => void;
      const gate = new Promise<void>((resolve) => (release = resolve));
      let wrote!: () => void;
      const written = new Promise<void>((resolve) => (wrote = resolve));
      // Writes a sealed table (accounts), queues its event, and waits: the rotation then queues behind its row lock.
      const write = store.transaction(async (tx) => {
        await tx.accounts.updateStatus(account.id, 'active', h.clock.now());
        await tx.audit.insert(auditEvent({ at: h.clock.now(), type: 'account_status_changed', subject: account, details: { status: 'active' } }));
        wrote();
        await gate;
      });
      await written;
      const next = randomBytes(32);
      const rotation = rotateMasterKey(store, current, next, h.clock);
      await sleep(300);
      release();
      await Promise.race([Promise.all([write, rotation]), sleep(10_000).then(() => assert.fail('the write and the rotation did not both finish'))]);
      const rows = await h.runtime.database.db.selectFrom('audit_events').select(['seq', 'type']).where('seq', '>', headBefore.head.seq).orderBy('seq').execute();
      assert.deepEqual(rows.map((r) => r.type), ['account_status_changed', 'master_key_rotated']);
      const verified = await store.audit.verify();
      assert.ok(verified.ok, JSON.stringify(verified));
    });
  });
}
