import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { ManualClock } from '../../src/domain/clock.ts';
import { auditRows, lastAuditSeq } from '../support/audit.ts';
import { DIALECTS } from '../support/databases.ts';
import { USER_PASSWORD, createHarness, type Harness } from '../support/harness.ts';
import { assertDatabaseUnchanged, assertProblem, rowCount, snapshotDatabase } from '../support/inspect.ts';
import { loggingApp } from '../support/log-capture.ts';

/** docs/api.md "Registrations"; SECURITY.md §49. */

const DAY = 24 * 3_600_000;

for (const dialect of DIALECTS) {
  describe(`registration codes [${dialect}]`, () => {
    let h: Harness;
    const clock = new ManualClock(Date.UTC(2026, 11, 1, 9, 0, 0));
    const create = async (body: Record<string, unknown> = {}) => {
      const response = await h.request({ method: 'POST', url: '/v1/registrations', token: h.adminToken, body });
      assert.equal(response.statusCode, 201, response.body);
      return response.json() as { id: string; code: string; roles: string[]; uses_left: number; expires_at: string };
    };
    const register = (code: string, username: string, extra: Record<string, unknown> = {}) =>
      h.request({ method: 'POST', url: '/v1/register', body: { code, username, password: USER_PASSWORD, ...extra } });
    const listed = async () => {
      const response = await h.request({ method: 'GET', url: '/v1/registrations', token: h.adminToken });
      assert.equal(response.statusCode, 200);
      return response.json().registrations as { id: string; uses_left: number }[];
    };
    /** The one answer for every code that cannot be redeemed. */
    const assertRefused = async (code: string, username: string) => {
      const before = await rowCount(h.runtime.database.db, 'accounts');
      const problem = assertProblem(await register(code, username), { status: 401, code: 'invalid_credentials' });
      assert.equal(problem['detail'], 'the registration code is not valid');
      assert.equal(await rowCount(h.runtime.database.db, 'accounts'), before);
    };

    before(async () => {
      h = await createHarness(dialect, { clock });
      for (const name of ['wiki', 'ci']) {
        assert.equal((await h.request({ method: 'POST', url: '/v1/roles', token: h.adminToken, body: { name } })).statusCode, 201);
      }
    });
    after(() => h.close());

    test('a code is at least 128 random bits, shown once, stored only as a keyed digest', async () => {
      const made = await create();
      assert.match(made.code, /^mciasreg_[A-Za-z0-9_-]{27}$/);
      assert.equal(made.uses_left, 1);
      assert.equal(Date.parse(made.expires_at), clock.now() + 7 * DAY);
      assert.equal((await create()).code === made.code, false);
      const row = await h.runtime.database.db.selectFrom('registrations').selectAll().where('id', '=', made.id).executeTakeFirstOrThrow();
      assert.notEqual(row.code_hash, made.code);
      assert.ok(!row.code_hash.includes(made.code.slice(9)));
      const entry = (await listed()).find((r) => r.id === made.id);
      assert.deepEqual(Object.keys(entry ?? {}).sort(), ['created_at', 'expires_at', 'id', 'roles', 'uses_left']);
    });

    test('lifecycle: redeem, exhaust, expire (injected clock), delete', async () => {
      const two = await create({ uses: 2, roles: ['wiki'] });
      const first = await register(two.code, 'reg.one');
      assert.equal(first.statusCode, 201, first.body);
      assert.deepEqual(first.json().roles, ['wiki']);
      assert.equal(first.json().kind, 'human');
      assert.equal(first.json().password_change_required, false);
      assert.equal((await listed()).find((r) => r.id === two.id)?.uses_left, 1);
      assert.equal((await register(two.code, 'reg.two')).statusCode, 201);
      assert.equal((await listed()).find((r) => r.id === two.id)?.uses_left, 0);
      await assertRefused(two.code, 'reg.three');
      // The person logs in with the password they chose.
      await h.login('reg.one', USER_PASSWORD);

      const expiring = await create({ expires_in: '1h' });
      clock.advance(3_600_000);
      await assertRefused(expiring.code, 'reg.late');
      clock.advance(-1);
      assert.equal((await register(expiring.code, 'reg.justintime')).statusCode, 201);
      clock.advance(1);

      const deleted = await create();
      assert.equal((await h.request({ method: 'DELETE', url: `/v1/registrations/${deleted.id}`, token: h.adminToken })).statusCode, 204);
      await assertRefused(deleted.code, 'reg.deleted');
      const [removed] = (await auditRows(h, { type: 'registration_deleted' })).filter((r) => r.details['registration'] === deleted.id);
      assert.equal(removed?.actor_username, 'admin');
      assertProblem(await h.request({ method: 'DELETE', url: `/v1/registrations/${deleted.id}`, token: h.adminToken }), { status: 404 });
    });

    test('garbage and unknown codes get the same answer, and each refusal is audited without the code', async () => {
      const since = await lastAuditSeq(h);
      for (const code of ['x', 'mciasreg_' + 'A'.repeat(27), ' ', '💥'.repeat(60)]) await assertRefused(code, 'reg.guess');
      const rows = await auditRows(h, { type: 'account_registered', after: since });
      assert.equal(rows.length, 4);
      for (const row of rows) {
        assert.equal(row.outcome, 'failure');
        assert.equal(row.details['reason'], 'invalid_code');
        assert.ok(!row.raw.includes('mciasreg_'));
      }
    });

    test('a taken username or a refused password spends no use', async () => {
      const made = await create({ roles: ['ci'] });
      assertProblem(await register(made.code, 'admin'), { status: 409, code: 'conflict' });
      assertProblem(await h.request({ method: 'POST', url: '/v1/register', body: { code: made.code, username: 'reg.short', password: 'short' } }), {
        status: 400,
        code: 'invalid_request',
      });
      assert.equal((await listed()).find((r) => r.id === made.id)?.uses_left, 1);
      const ok = await register(made.code, 'reg.after');
      assert.equal(ok.statusCode, 201);
      assert.deepEqual(ok.json().roles, ['ci']);
      const [event] = (await auditRows(h, { type: 'account_registered' })).filter((r) => r.subject_username === 'reg.after');
      assert.equal(event?.details['registration'], made.id);
      assert.equal(event?.details['roles'], 'ci');
    });

    test('mass assignment: roles, kind or anything else in the register body is refused and changes nothing', async () => {
      const made = await create();
      const snapshot = await snapshotDatabase(h.runtime.database.db);
      for (const extra of [{ roles: ['admin'] }, { kind: 'system' }, { status: 'active' }, { temporary: true }]) {
        assertProblem(await register(made.code, 'reg.sneaky', extra), { status: 400, code: 'invalid_request' });
      }
      assertDatabaseUnchanged(snapshot, await snapshotDatabase(h.runtime.database.db));
      assert.equal((await listed()).find((r) => r.id === made.id)?.uses_left, 1);
    });

    test('a code granting admin needs allow_admin, and the flag is audited', async () => {
      const snapshot = await snapshotDatabase(h.runtime.database.db);
      const refused = assertProblem(await h.request({ method: 'POST', url: '/v1/registrations', token: h.adminToken, body: { roles: ['admin'] } }), {
        status: 400,
      });
      assert.equal(refused['reason'], 'admin_needs_flag');
      assertDatabaseUnchanged(snapshot, await snapshotDatabase(h.runtime.database.db));
      const made = await create({ roles: ['Admin', 'wiki'], allow_admin: true });
      assert.deepEqual(made.roles, ['admin', 'wiki']);
      const created = (await auditRows(h, { type: 'registration_created' })).find((r) => r.details['registration'] === made.id);
      assert.equal(created?.details['allow_admin'], true);
      assert.equal(created?.actor_username, 'admin');
      assert.ok(!created?.raw.includes(made.code));
      const response = await register(made.code, 'reg.newadmin');
      assert.deepEqual(response.json().roles, ['admin', 'wiki']);
      const registered = (await auditRows(h, { type: 'account_registered' })).find((r) => r.subject_username === 'reg.newadmin');
      assert.equal(registered?.details['admin'], true);
    });

    test('bad creation input is a 400 that stores nothing; an unknown role is 404', async () => {
      const snapshot = await snapshotDatabase(h.runtime.database.db);
      for (const body of [{ uses: 0 }, { uses: 1.5 }, { expires_in: 'soon' }, { expires_in: '10s' }, { expires_in: '400d' }, { code: 'mine' }]) {
        assertProblem(await h.request({ method: 'POST', url: '/v1/registrations', token: h.adminToken, body }), { status: 400 });
      }
      assertProblem(await h.request({ method: 'POST', url: '/v1/registrations', token: h.adminToken, body: { roles: ['nope'] } }), { status: 404 });
      assertDatabaseUnchanged(snapshot, await snapshotDatabase(h.runtime.database.db));
    });

    test('the code never reaches the server log', async () => {
      const lines: string[] = [];
      const app = await loggingApp(h, lines);
      try {
        const made = await app.inject({ method: 'POST', url: '/v1/registrations', headers: { authorization: `Bearer ${h.adminToken}` }, payload: {} });
        const { code } = made.json() as { code: string };
        await app.inject({ method: 'POST', url: '/v1/register', payload: { code, username: 'reg.logged', password: USER_PASSWORD } });
        await app.inject({ method: 'POST', url: '/v1/register', payload: { code, username: 'reg.logged2', password: USER_PASSWORD } });
        assert.ok(lines.length > 0);
        assert.ok(!lines.join('\n').includes(code.slice(9)));
      } finally {
        await app.close();
      }
    });
  });
}

for (const dialect of DIALECTS) {
  describe(`registration code guesses count against the address like failed logins [${dialect}]`, () => {
    let h: Harness;
    // No delays, so each refusal below is the lockout's: three failures lock an address.
    const throttle = { free_failures: 1_000_000, address_lockout_failures: 3, address_lockout: '1h' };
    const registerFrom = (address: string, code: string, username: string) =>
      h.app.inject({ method: 'POST', url: '/v1/register', payload: { code, username, password: USER_PASSWORD }, remoteAddress: address });
    const loginFrom = (address: string, password: string) =>
      h.app.inject({ method: 'POST', url: '/v1/auth/login', payload: { username: 'alice', password }, remoteAddress: address });
    const newCode = async () => {
      const response = await h.request({ method: 'POST', url: '/v1/registrations', token: h.adminToken, body: {} });
      return response.json() as { id: string; code: string };
    };
    const failureKeys = async () =>
      (await h.runtime.database.db.selectFrom('login_failures').select('key').execute()).map((r) => r.key).sort();

    before(async () => {
      h = await createHarness(dialect, { config: { login_throttle: throttle } });
      await h.createAccount('alice');
    });
    after(() => h.close());

    test('three bad codes lock the address: then even a good code is refused (and not spent); another address is not', async () => {
      const attacker = '192.0.2.60';
      for (const guess of ['mciasreg_guess1', 'mciasreg_guess2', 'garbage']) {
        assertProblem(await registerFrom(attacker, guess, 'guesser'), { status: 401, code: 'invalid_credentials' });
      }
      const good = await newCode();
      const refused = assertProblem(await registerFrom(attacker, good.code, 'guesser'), { status: 429, code: 'rate_limited' });
      assert.equal(refused['reason'], 'address_locked');
      const [row] = await h.runtime.database.db.selectFrom('registrations').select('uses_left').where('id', '=', good.id).execute();
      assert.equal(Number(row?.uses_left), 1);
      // A locked address cannot log in either: one counter.
      assert.equal((await loginFrom(attacker, USER_PASSWORD)).statusCode, 429);
      // Only the address was counted: no username's counter, so alice is not locked out anywhere else.
      assert.deepEqual(await failureKeys(), ['address:192.0.2.60']);
      assert.equal((await loginFrom('192.0.2.61', USER_PASSWORD)).statusCode, 200);
      assert.equal((await registerFrom('192.0.2.61', good.code, 'honest')).statusCode, 201);
      const [locked] = await auditRows(h, { type: 'address_locked' });
      assert.equal(locked?.details['address'], '192.0.2.60');
    });

    test('failed logins and bad codes add up on the same counter', async () => {
      const attacker = '192.0.2.70';
      assert.equal((await loginFrom(attacker, 'wrong password one')).statusCode, 401);
      assert.equal((await loginFrom(attacker, 'wrong password two')).statusCode, 401);
      assertProblem(await registerFrom(attacker, 'mciasreg_guess3', 'guesser'), { status: 401 });
      assertProblem(await registerFrom(attacker, (await newCode()).code, 'guesser'), { status: 429 });
    });
  });
}
