import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { ManualClock } from '../../src/domain/clock.ts';
import { isMciasError } from '../../src/domain/errors.ts';
import type { Principal } from '../../src/domain/model.ts';
import { PgRotationService, retryDelayMs } from '../../src/domain/pgcreds-rotation.ts';
import { Sealer } from '../../src/domain/sealing.ts';
import { openMigratedDatabase } from '../../src/store/database.ts';
import { DIALECTS } from '../support/databases.ts';
import { createHarness, type Harness } from '../support/harness.ts';
import { FakePgAdmin } from '../support/pg-admin-fake.ts';

/**
 * PgRotationService against a fake PostgreSQL server (SECURITY.md §43): the intent is written before the server is
 * changed, completed after, dropped only when the server certainly did not run the statement, and rolled forward
 * otherwise; whatever happens, the stored password (or the intent recovery finishes) is the one the server has.
 * The real server, real connections and SIGKILLs are in test/e2e/pgcreds-rotation.test.ts.
 */

const MINUTE = 60_000;
const CTX = { ip: '127.0.0.1', userAgent: 'test', requestId: 'req-1' };

for (const dialect of DIALECTS) {
  describe(`PostgreSQL password rotation [${dialect}]`, () => {
    let h: Harness;
    let sealer: Sealer;
    before(async () => {
      h = await createHarness(dialect);
      sealer = new Sealer(h.masterKey);
    });
    after(() => h.close());
    const store = () => h.runtime.database.store;
    const db = () => h.runtime.database.db;

    /** Each test starts with no credentials stored, so runDue sees only its own services. */
    async function setup(options: { mode?: 'single' | 'alternating'; rotateEvery?: number | null } = {}) {
      await db().deleteFrom('pg_credentials').execute();
      const clock = new ManualClock(Date.UTC(2026, 10, 30, 12));
      const pg = new FakePgAdmin();
      const service = new PgRotationService({ store: store(), sealer, pgAdmin: pg, clock, credentials: h.runtime.services.pgcreds });
      return { clock, pg, service, mode: options.mode ?? 'single', rotateEvery: options.rotateEvery ?? null };
    }

    const admin = { account: { id: 'admin-id', username: 'admin' } } as unknown as Principal;

    /** A system account with stored credentials whose password the fake server has. */
    async function serviceWith(s: Awaited<ReturnType<typeof setup>>): Promise<{ id: string; name: string; username: string; old: string }> {
      const suffix = randomUUID().slice(0, 8);
      const name = await h.createAccount(`svc-${suffix}`, 'system');
      const id = (await store().accounts.findByUsername(name))!.id;
      const now = s.clock.now();
      const username = `app_${suffix}`;
      const old = 'the-old-password';
      const activeLogin = s.mode === 'alternating' ? `${username}_a` : username;
      if (s.mode === 'alternating') {
        s.pg.roles.set(`${username}_a`, old);
        s.pg.roles.set(`${username}_b`, 'the-b-password');
      } else s.pg.roles.set(username, old);
      await store().pgcreds.put(
        {
          accountId: id,
          host: 'db.internal',
          port: 5432,
          database: 'app',
          username,
          activeLogin,
          password: sealer.seal(Buffer.from(old), { table: 'pg_credentials', column: 'password', id }),
          sslmode: 'require',
          caCert: null,
          mode: s.mode,
          admin: null,
          rotateEvery: s.rotateEvery,
          nextRotationAt: s.rotateEvery === null ? null : now + s.rotateEvery,
        },
        now,
      );
      return { id, name, username, old };
    }

    async function stored(id: string) {
      const record = await store().pgcreds.find(id);
      assert.ok(record);
      const open = (sealed: Uint8Array) => sealer.open(sealed, { table: 'pg_credentials', column: 'password', id }).toString('utf8');
      return { record, password: open(record.password), pending: record.pendingPassword === null ? null : open(record.pendingPassword) };
    }

    /** The invariant: the stored password logs in on the server, or an intent is pending that recovery will set. */
    async function assertStoredWorks(s: Awaited<ReturnType<typeof setup>>, id: string): Promise<void> {
      const { record, password, pending } = await stored(id);
      if (pending !== null) return;
      assert.equal(s.pg.roles.get(record.activeLogin), password, `the stored password of ${record.activeLogin} is not the server's`);
    }

    async function auditOf(subjectId: string) {
      const rows = await db().selectFrom('audit_events').selectAll().where('subject_id', '=', subjectId).where('type', 'like', 'pg_credentials_%').orderBy('seq').execute();
      return rows.map((r) => ({ type: r.type, outcome: r.outcome, details: JSON.parse(r.details) as Record<string, unknown>, raw: JSON.stringify(r, (_k, v: unknown) => (typeof v === 'bigint' ? Number(v) : v)) }));
    }

    async function assertAuditHasNo(subjectId: string, secrets: readonly string[]): Promise<void> {
      for (const row of await auditOf(subjectId)) for (const secret of secrets) assert.ok(!row.raw.includes(secret), `an audit row holds a password: ${row.type}`);
    }

    test('single mode: a strong new password is set on the login and stored; the audit row holds no password', async () => {
      const s = await setup();
      const svc = await serviceWith(s);
      const record = await s.service.rotate(svc.name, admin, CTX);
      const { password, pending } = await stored(svc.id);
      assert.equal(pending, null);
      assert.notEqual(password, svc.old);
      assert.match(password, /^[A-Za-z0-9_-]{43}$/, '32 random bytes, base64url');
      assert.equal(record.activeLogin, svc.username);
      assert.equal(s.pg.roles.get(svc.username), password);
      assert.deepEqual(s.pg.calls, [`setPassword ${svc.username}`]);
      const audit = await auditOf(svc.id);
      assert.deepEqual(audit.map((r) => [r.type, r.outcome]), [['pg_credentials_rotated', 'success']]);
      assert.equal(audit[0]!.details['login'], svc.username);
      await assertAuditHasNo(svc.id, [password, svc.old]);
    });

    test('alternating mode: each rotation sets the inactive login and switches to it; the previous one keeps working', async () => {
      const s = await setup({ mode: 'alternating' });
      const svc = await serviceWith(s);
      const first = await s.service.rotate(svc.name, admin, CTX);
      assert.equal(first.activeLogin, `${svc.username}_b`);
      const p1 = (await stored(svc.id)).password;
      assert.equal(s.pg.roles.get(`${svc.username}_b`), p1);
      assert.equal(s.pg.roles.get(`${svc.username}_a`), svc.old, 'the previous credentials still log in');

      const second = await s.service.rotate(svc.name, admin, CTX);
      assert.equal(second.activeLogin, `${svc.username}_a`);
      const p2 = (await stored(svc.id)).password;
      assert.equal(s.pg.roles.get(`${svc.username}_a`), p2);
      assert.notEqual(p2, svc.old, 'the rotation after changes the login the first one left alone');
      assert.equal(s.pg.roles.get(`${svc.username}_b`), p1, 'the previous credentials still log in');
      await assertAuditHasNo(svc.id, [svc.old, p1, p2]);
    });

    test('alternating mode: storing the credentials again keeps the login in use, so the password GET gave still matches', async () => {
      const s = await setup({ mode: 'alternating' });
      const svc = await serviceWith(s);
      await s.service.rotate(svc.name, admin, CTX);
      const before = await stored(svc.id);
      assert.equal(before.record.activeLogin, `${svc.username}_b`);
      // An administrator adds a schedule, giving back the password GET handed out (the `_b` login's).
      await h.runtime.services.pgcreds.put(
        admin,
        svc.name,
        { host: 'db.internal', database: 'app', username: svc.username, password: before.password, mode: 'alternating', rotateEvery: 24 * 60 * MINUTE },
        CTX,
      );
      const after = await stored(svc.id);
      assert.equal(after.record.activeLogin, `${svc.username}_b`);
      assert.equal(s.pg.roles.get(after.record.activeLogin), after.password, 'the stored login and password work together');
    });

    for (const failure of [
      { reason: 'pg_unreachable', applied: false },
      { reason: 'pg_tls_failed', applied: false },
      { reason: 'pg_admin_refused', applied: false },
      { reason: 'pg_role_missing', applied: false },
      { reason: 'no_pg_admin', applied: false, code: 'conflict' as const },
    ]) {
      test(`${failure.reason}: the intent is dropped, the stored password is unchanged and works, the failure is recorded`, async () => {
        const s = await setup({ rotateEvery: 24 * 60 * MINUTE });
        const svc = await serviceWith(s);
        s.pg.failures.push(failure);
        await assert.rejects(s.service.rotate(svc.name, admin, CTX), (error: unknown) => {
          assert.ok(isMciasError(error, failure.code ?? 'upstream_failed'));
          assert.equal(error.reason, failure.reason);
          return true;
        });
        const { record, password, pending } = await stored(svc.id);
        assert.equal(password, svc.old);
        assert.equal(pending, null);
        assert.equal(s.pg.roles.get(svc.username), svc.old);
        assert.match(record.lastRotationError ?? '', new RegExp(failure.reason));
        assert.equal(record.rotationFailures, 1);
        assert.equal(record.nextRotationAt, s.clock.now() + MINUTE, 'retried after the first backoff step');
        const audit = await auditOf(svc.id);
        assert.deepEqual(audit.map((r) => [r.type, r.outcome]), [['pg_credentials_rotation_failed', 'failure']]);
        assert.equal(audit[0]!.details['intent_kept'], false);
        await assertStoredWorks(s, svc.id);
      });
    }

    test('outcome unknown after the server changed: the intent stays, and the next tick rolls it forward', async () => {
      const s = await setup();
      const svc = await serviceWith(s);
      s.pg.failures.push({ reason: 'pg_outcome_unknown', applied: true });
      await assert.rejects(s.service.rotate(svc.name, admin, CTX), (error: unknown) => isMciasError(error, 'upstream_failed') && error.reason === 'pg_outcome_unknown');
      const mid = await stored(svc.id);
      assert.equal(mid.password, svc.old, 'not completed');
      assert.ok(mid.pending !== null, 'the intent is kept');
      assert.equal(s.pg.roles.get(svc.username), mid.pending, 'the server has the intent');
      assert.match(mid.record.lastRotationError ?? '', /pg_outcome_unknown/);
      assert.deepEqual((await store().pgcreds.listDue(s.clock.now())).includes(svc.id), true);

      const outcome = await s.service.runDue(s.clock.now());
      assert.deepEqual(outcome.rotated, [svc.name]);
      const done = await stored(svc.id);
      assert.equal(done.password, mid.pending, 'the intent became the stored password');
      assert.equal(done.pending, null);
      assert.equal(done.record.lastRotationError, null);
      await assertStoredWorks(s, svc.id);
      const audit = await auditOf(svc.id);
      assert.deepEqual(audit.map((r) => r.type), ['pg_credentials_rotation_failed', 'pg_credentials_rotated']);
      assert.equal(audit[1]!.details['roll_forward'], true);
      await assertAuditHasNo(svc.id, [svc.old, done.password]);
    });

    test('outcome unknown when the server did not change: rolling forward sets the intent anyway', async () => {
      const s = await setup();
      const svc = await serviceWith(s);
      s.pg.failures.push({ reason: 'pg_outcome_unknown', applied: false });
      await assert.rejects(s.service.rotate(svc.name, admin, CTX));
      assert.equal(s.pg.roles.get(svc.username), svc.old);
      // A roll-forward that certainly did not run still keeps the intent: the earlier attempt's outcome is unknown.
      s.pg.failures.push({ reason: 'pg_unreachable', applied: false });
      assert.deepEqual((await s.service.runDue(s.clock.now())).rotated, []);
      const mid = await stored(svc.id);
      assert.ok(mid.pending !== null, 'the intent survives a roll-forward that did not run');
      assert.equal(mid.record.rotationFailures, 2);
      // An administrator's rotate finishes the pending one rather than starting another.
      await s.service.rotate(svc.name, admin, CTX);
      const done = await stored(svc.id);
      assert.equal(done.password, mid.pending);
      await assertStoredWorks(s, svc.id);
    });

    test('alternating mode, outcome unknown: recovery completes the switch to the login that was changed', async () => {
      const s = await setup({ mode: 'alternating' });
      const svc = await serviceWith(s);
      s.pg.failures.push({ reason: 'pg_outcome_unknown', applied: true });
      await assert.rejects(s.service.rotate(svc.name, admin, CTX));
      assert.equal((await stored(svc.id)).record.activeLogin, `${svc.username}_a`);
      assert.equal(s.pg.roles.get(`${svc.username}_a`), svc.old, 'the active login was not touched');
      await s.service.runDue(s.clock.now());
      const done = await stored(svc.id);
      assert.equal(done.record.activeLogin, `${svc.username}_b`);
      await assertStoredWorks(s, svc.id);
    });

    test('a crash after the intent was written (nothing else happened) is finished by the next tick', async () => {
      const s = await setup();
      const svc = await serviceWith(s);
      const sealed = sealer.seal(Buffer.from('intent-password'), { table: 'pg_credentials', column: 'password', id: svc.id });
      await store().pgcreds.beginRotation(svc.id, svc.username, sealed, s.clock.now());
      await s.service.runDue(s.clock.now());
      assert.equal((await stored(svc.id)).password, 'intent-password');
      assert.equal(s.pg.roles.get(svc.username), 'intent-password');
    });

    test('scheduled rotation: due services rotate, others wait; failures back off 1, 2, 4... minutes, capped', async () => {
      const every = 10 * MINUTE;
      const s = await setup({ rotateEvery: every });
      const svc = await serviceWith(s);
      assert.deepEqual((await s.service.runDue(s.clock.now())).rotated, [], 'not due yet');
      s.clock.advance(every);
      assert.deepEqual((await s.service.runDue(s.clock.now())).rotated, [svc.name]);
      assert.equal((await stored(svc.id)).record.nextRotationAt, s.clock.now() + every);
      s.clock.advance(every);
      const delays: number[] = [];
      for (let i = 0; i < 5; i++) {
        s.pg.failures.push({ reason: 'pg_unreachable', applied: false });
        const outcome = await s.service.runDue(s.clock.now());
        assert.deepEqual(outcome.failed, [svc.name]);
        const { record } = await stored(svc.id);
        delays.push(record.nextRotationAt! - s.clock.now());
        assert.deepEqual((await s.service.runDue(s.clock.now())).failed, [], 'nothing is retried before the backoff ends');
        s.clock.set(record.nextRotationAt!);
        await assertStoredWorks(s, svc.id);
      }
      assert.deepEqual(delays, [MINUTE, 2 * MINUTE, 4 * MINUTE, 8 * MINUTE, every], 'capped at rotate_every');
      assert.equal((await stored(svc.id)).record.rotationFailures, 5);
      assert.deepEqual((await s.service.runDue(s.clock.now())).rotated, [svc.name]);
      assert.equal((await stored(svc.id)).record.rotationFailures, 0, 'a success resets the count');
      assert.equal(retryDelayMs(20, null), 60 * MINUTE, 'capped at an hour without a schedule');
      const failures = (await auditOf(svc.id)).filter((r) => r.type === 'pg_credentials_rotation_failed');
      assert.equal(failures.length, 5, 'each failure is in the audit trail');
      assert.equal(failures[0]!.details['scheduled'], true);
    });

    test('two instances on one database running runDue at once rotate a due service exactly once', async () => {
      const s = await setup({ rotateEvery: MINUTE });
      const other = await openMigratedDatabase(h.db.storage);
      try {
        const second = new PgRotationService({ store: other.store, sealer, pgAdmin: s.pg, clock: s.clock, credentials: h.runtime.services.pgcreds });
        const services = [await serviceWith(s), await serviceWith(s)];
        s.clock.advance(MINUTE);
        s.pg.delayMs = 50;
        const [a, b] = await Promise.all([s.service.runDue(s.clock.now()), second.runDue(s.clock.now())]);
        assert.deepEqual([...a.rotated, ...b.rotated].sort(), services.map((x) => x.name).sort());
        for (const svc of services) {
          assert.equal(s.pg.calls.filter((c) => c === `setPassword ${svc.username}`).length, 1, `${svc.name} was rotated twice`);
          await assertStoredWorks(s, svc.id);
        }
      } finally {
        await other.close();
      }
    });

    test('a rotation while another holds the lease is refused with 409 rotation_in_progress; an expired lease is taken over', async () => {
      const s = await setup();
      const svc = await serviceWith(s);
      await store().pgcreds.claimLease(svc.id, 'another-instance', s.clock.now(), s.clock.now() + MINUTE);
      await assert.rejects(s.service.rotate(svc.name, admin, CTX), (error: unknown) => isMciasError(error, 'conflict') && error.reason === 'rotation_in_progress');
      assert.deepEqual(s.pg.calls, []);
      s.clock.advance(MINUTE);
      await s.service.rotate(svc.name, admin, CTX);
      await assertStoredWorks(s, svc.id);
    });

    test('DELETE and PUT while a rotation is at the server: the delete waits for it, and the stored password works', async () => {
      const s = await setup();
      const svc = await serviceWith(s);
      const credentials = h.runtime.services.pgcreds;
      // The rotation on the harness's clock, so that the PUT and DELETE see its lease as live.
      const rotation = new PgRotationService({ store: store(), sealer, pgAdmin: s.pg, clock: h.clock, credentials });
      s.pg.delayMs = 300;
      const rotating = rotation.rotate(svc.name, admin, CTX);
      while (s.pg.calls.length === 0) await new Promise((resolve) => setTimeout(resolve, 5));
      // An administrator told to "store them once it has finished (or delete them first)" deletes, and stores the
      // password they know; the ALTER in flight must not then leave a stored password the server refuses.
      await assert.rejects(credentials.delete(admin, svc.name, CTX), (error: unknown) => isMciasError(error, 'conflict') && error.reason === 'rotation_in_progress');
      await credentials
        .put(admin, svc.name, { host: 'db.internal', database: 'app', username: svc.username, password: svc.old }, CTX)
        .catch((error: unknown) => assert.ok(isMciasError(error, 'conflict') && error.reason === 'rotation_in_progress'));
      await rotating;
      await assertStoredWorks(s, svc.id);
      assert.notEqual((await stored(svc.id)).password, svc.old, 'the rotation completed');
    });

    test('a rotation that outlived its lease cannot drop the intent another instance kept after taking over', async () => {
      const s = await setup();
      const svc = await serviceWith(s);
      const first = new PgRotationService({ store: store(), sealer, pgAdmin: s.pg, clock: s.clock, credentials: h.runtime.services.pgcreds, leaseMs: 1_000 });
      const second = new PgRotationService({ store: store(), sealer, pgAdmin: s.pg, clock: s.clock, credentials: h.runtime.services.pgcreds, leaseMs: 1_000 });
      // The first instance stalls at the server past its lease (a paused VM, say) ...
      s.pg.delayMs = 300;
      const stalled = first.rotate(svc.name, admin, CTX).catch((error: unknown) => error);
      while (s.pg.calls.length === 0) await new Promise((resolve) => setTimeout(resolve, 5));
      s.pg.delayMs = 0;
      s.clock.advance(2_000);
      // ... the second takes over, sends the intent, loses the answer (it ran), keeps the intent and lets go ...
      s.pg.failures.push({ reason: 'pg_outcome_unknown', applied: true });
      await assert.rejects(second.rotate(svc.name, admin, CTX), (error: unknown) => isMciasError(error, 'upstream_failed'));
      const kept = await stored(svc.id);
      assert.equal(s.pg.roles.get(svc.username), kept.pending, 'the server has the intent');
      // ... then the first one's attempt fails in a way that says "did not run": about its own statement only.
      s.pg.failures.push({ reason: 'pg_unreachable', applied: false });
      await stalled;
      await s.service.runDue(s.clock.now());
      await assertStoredWorks(s, svc.id);
      assert.equal((await stored(svc.id)).password, kept.pending, 'the kept intent was rolled forward');
    });

    test('unknown services and services without credentials are not found; a person has none (400 not_a_service)', async () => {
      const s = await setup();
      await assert.rejects(s.service.rotate('no-such-service', admin, CTX), (error: unknown) => isMciasError(error, 'not_found'));
      const person = await h.createAccount(`person-${randomUUID().slice(0, 8)}`);
      await assert.rejects(s.service.rotate(person, admin, CTX), (error: unknown) => isMciasError(error, 'invalid_request') && error.reason === 'not_a_service');
      const svc = await serviceWith(s);
      await store().pgcreds.delete(svc.id);
      await assert.rejects(s.service.rotate(svc.name, admin, CTX), (error: unknown) => isMciasError(error, 'not_found'));
    });

    for (const mode of ['single', 'alternating'] as const) {
      test(`provision (${mode}): creates the login(s), stores the active one; a second provision is refused and changes nothing`, async () => {
        const s = await setup({ mode });
        const svc = await serviceWith(s);
        await store().pgcreds.delete(svc.id);
        s.pg.roles.clear();
        const settings = { host: 'db.internal', database: 'app', username: svc.username, mode, createDatabase: true };
        const record = await s.service.provision(svc.name, settings, admin, CTX);
        const logins = mode === 'alternating' ? [`${svc.username}_a`, `${svc.username}_b`] : [svc.username];
        assert.deepEqual([...s.pg.roles.keys()], logins);
        if (mode === 'alternating') assert.ok(s.pg.groups.has(svc.username));
        assert.equal(record.activeLogin, logins[0]);
        const { password } = await stored(svc.id);
        assert.equal(s.pg.roles.get(logins[0]!), password);
        if (mode === 'alternating') assert.notEqual(s.pg.roles.get(logins[1]!), password, 'each login has its own password');
        const before = new Map(s.pg.roles);
        await assert.rejects(s.service.provision(svc.name, settings, admin, CTX), (error: unknown) => isMciasError(error, 'conflict') && error.reason === 'pgcreds_exist');
        assert.deepEqual(s.pg.roles, before);
        const audit = await auditOf(svc.id);
        assert.deepEqual(audit.map((r) => [r.type, r.outcome]), [['pg_credentials_provisioned', 'success']]);
        await assertAuditHasNo(svc.id, [...before.values()].filter((p): p is string => p !== null));
        // And it rotates like any other.
        await s.service.rotate(svc.name, admin, CTX);
        await assertStoredWorks(s, svc.id);
      });
    }

    test('provision after a crash left the roles without a record: their passwords are set to the stored ones', async () => {
      const s = await setup();
      const svc = await serviceWith(s);
      await store().pgcreds.delete(svc.id);
      s.pg.roles.set(svc.username, 'left-by-a-crashed-run');
      await s.service.provision(
        svc.name,
        { host: 'db.internal', database: 'app', username: svc.username, mode: 'single', createDatabase: false },
        admin,
        CTX,
      );
      await assertStoredWorks(s, svc.id);
    });

    test('two provisions of one service at once: one stores, the other answers 409 and leaves the stored password working', async () => {
      const s = await setup();
      const svc = await serviceWith(s);
      await store().pgcreds.delete(svc.id);
      s.pg.roles.clear();
      s.pg.delayMs = 30; // the loser's setPassword on the login the winner created lands after the winner stored
      const input = { host: 'db.internal', database: 'app', username: svc.username, createDatabase: false };
      const results = await Promise.allSettled([s.service.provision(svc.name, input, admin, CTX), s.service.provision(svc.name, input, admin, CTX)]);
      assert.deepEqual(results.map((r) => r.status).sort(), ['fulfilled', 'rejected']);
      const refused = results.find((r) => r.status === 'rejected') as PromiseRejectedResult;
      assert.ok(isMciasError(refused.reason, 'conflict') && refused.reason.reason === 'pgcreds_exist');
      await assertStoredWorks(s, svc.id);
    });

    test('provision with bad settings is refused before the server is touched', async () => {
      const s = await setup();
      const svc = await serviceWith(s);
      await store().pgcreds.delete(svc.id);
      await assert.rejects(
        s.service.provision(svc.name, { host: 'db internal/x', database: 'app', username: svc.username, createDatabase: false }, admin, CTX),
        (error: unknown) => isMciasError(error, 'invalid_request'),
      );
      await assert.rejects(
        s.service.provision(svc.name, { host: 'db.internal', database: 'app', username: svc.username, admin: 'nope', createDatabase: false }, admin, CTX),
        (error: unknown) => isMciasError(error, 'invalid_request') && error.reason === 'unknown_pg_admin',
      );
      assert.deepEqual(s.pg.calls, []);
      assert.equal(await store().pgcreds.find(svc.id), undefined);
    });

    test('provision failing on the server stores nothing and audits the failure', async () => {
      const s = await setup();
      const svc = await serviceWith(s);
      await store().pgcreds.delete(svc.id);
      s.pg.failures.push({ reason: 'pg_admin_refused', applied: false });
      await assert.rejects(
        s.service.provision(
          svc.name,
          { host: 'db.internal', database: 'app', username: svc.username, mode: 'single', createDatabase: false },
          admin,
          CTX,
        ),
        (error: unknown) => isMciasError(error, 'upstream_failed') && error.reason === 'pg_admin_refused',
      );
      assert.equal(await store().pgcreds.find(svc.id), undefined);
      assert.deepEqual((await auditOf(svc.id)).map((r) => [r.type, r.outcome]), [['pg_credentials_provisioned', 'failure']]);
    });
  });
}
