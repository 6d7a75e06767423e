import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { LightMyRequestResponse } from 'fastify';
import { ADMIN_PASSWORD, USER_PASSWORD, createHarness, type Harness } from '../support/harness.ts';
import { auditRows, lastAuditSeq } from '../support/audit.ts';
import { DIALECTS } from '../support/databases.ts';
import { assertProblem } from '../support/inspect.ts';
import { enrollTotp, totpCode, wrongCode } from '../support/totp-codes.ts';

/**
 * SECURITY.md §9 through the HTTP API, with the production defaults of `[login_throttle]` (the harness relaxes them for
 * other tests) and the harness's standing clock, moved by hand: 5 free failures, then 1 s doubling to 1 min, the
 * username locked at 100 failures for 15 min, the address at 30 for 1 h.
 */

const MINUTE = 60_000;
const PRODUCTION_THROTTLE = {} as const;

type Attempt = { username: string; password: string; totp_code?: string };

function loginFrom(h: Harness, address: string, body: Attempt): Promise<LightMyRequestResponse> {
  return h.app.inject({ method: 'POST', url: '/v1/auth/login', payload: body, remoteAddress: address });
}

/** Status, reason and Retry-After of an answer: what a client can tell apart. */
function outcome(response: LightMyRequestResponse): string {
  if (response.statusCode !== 429) return String(response.statusCode);
  const body = assertProblem(response, { status: 429, code: 'rate_limited' });
  return `429 ${String(body['reason'])} ${String(response.headers['retry-after'])}`;
}

/** Waits out (on the harness clock) whatever the last answer asked, then one millisecond more. */
function waitOut(h: Harness, response: LightMyRequestResponse): void {
  if (response.statusCode === 429) h.clock.advance(Number(response.headers['retry-after']) * 1000 + 1);
}

for (const dialect of DIALECTS) {
  describe(`failed-login throttling from one address [${dialect}]`, () => {
    let h: Harness;
    before(async () => {
      h = await createHarness(dialect, { config: { login_throttle: PRODUCTION_THROTTLE } });
      await h.createAccount('alice');
    });
    after(() => h.close());

    test('300 wrong passwords in a row: six 401s, then 429 with Retry-After, also for the right password; refusals write no row', async () => {
      const attacker = '192.0.2.10';
      const since = await lastAuditSeq(h);
      const outcomes: string[] = [];
      for (let i = 0; i < 300; i++) outcomes.push(outcome(await loginFrom(h, attacker, { username: 'alice', password: `wrong guess ${i}` })));
      assert.deepEqual(outcomes.slice(0, 6), ['401', '401', '401', '401', '401', '401']);
      // The sixth failure is the first beyond the five free ones: the next attempt must wait 1 s.
      assert.deepEqual(new Set(outcomes.slice(6)), new Set(['429 address_throttled 1']));
      // The right password is refused while the wait lasts: the throttle is checked before the password.
      assert.equal(outcome(await loginFrom(h, attacker, { username: 'alice', password: USER_PASSWORD })), '429 address_throttled 1');
      // Refused attempts write nothing: six failures, six rows...
      assert.equal((await auditRows(h, { after: since, type: 'login_failed' })).length, 6);
      // ...and the 295 refusals are counted in the address's summary row (SECURITY.md §41).
      await h.runtime.services.summaries.flush();
      const [summary] = await auditRows(h, { after: since, type: 'failures_summarized' });
      assert.equal(summary?.details['address'], attacker);
      assert.equal(summary?.details['rate_limited./v1/auth/login'], 295);
    });

    test('waiting out each delay, the address locks at 30 failures: then 429 address_locked for an hour, for every username', async () => {
      const attacker = '192.0.2.10';
      const since = await lastAuditSeq(h);
      let failures = 6; // from the test before
      let last: LightMyRequestResponse | undefined;
      const delays: number[] = [];
      while (failures < 30) {
        last = await loginFrom(h, attacker, { username: 'alice', password: `patient guess ${failures}` });
        if (last.statusCode === 401) failures++;
        else delays.push(Number(last.headers['retry-after']));
        waitOut(h, last);
      }
      // The waits double from 1 s and stop growing at max_delay (1 min).
      assert.deepEqual(delays.slice(0, 8), [1, 2, 4, 8, 16, 32, 60, 60]);
      const locked = await loginFrom(h, attacker, { username: 'alice', password: USER_PASSWORD });
      assert.equal(outcome(locked), '429 address_locked 3600');
      assert.equal(outcome(await loginFrom(h, attacker, { username: 'admin', password: ADMIN_PASSWORD })), '429 address_locked 3600');
      const [lockRow] = await auditRows(h, { after: since, type: 'address_locked' });
      assert.equal(lockRow?.details['address'], attacker);
      assert.equal(lockRow?.details['failures'], 30);

      // alice, from her own address, waits only out the account's delay (30 failures: 1 min), then gets in.
      const home = '198.51.100.7';
      const first = await loginFrom(h, home, { username: 'alice', password: USER_PASSWORD });
      assert.match(outcome(first), /^429 account_throttled \d+$/);
      waitOut(h, first);
      assert.equal(outcome(await loginFrom(h, home, { username: 'alice', password: USER_PASSWORD })), '200');
      // Her success cleared the account's count: five new mistakes are free again.
      for (let i = 0; i < 5; i++) assert.equal(outcome(await loginFrom(h, home, { username: 'alice', password: 'a typo' })), '401');
      assert.equal(outcome(await loginFrom(h, home, { username: 'alice', password: USER_PASSWORD })), '200');
      // ...but not the address's: the attacker is still locked out, 59 minutes on.
      h.clock.advance(58 * MINUTE);
      assert.equal(outcome(await loginFrom(h, attacker, { username: 'alice', password: USER_PASSWORD })).split(' ').slice(0, 2).join(' '), '429 address_locked');
      // The lockout expires an hour after the last failure.
      h.clock.advance(2 * MINUTE);
      assert.equal(outcome(await loginFrom(h, attacker, { username: 'alice', password: USER_PASSWORD })), '200');
    });
  });

  describe(`a throttled attempt costs no hash [${dialect}]`, () => {
    let h: Harness;
    before(async () => {
      // A hash that costs something (N=2^13, a few milliseconds), so that skipping it shows.
      h = await createHarness(dialect, { config: { login_throttle: PRODUCTION_THROTTLE, passwords: { scrypt_ln: 13 } } });
    });
    after(() => h.close());

    test('refused attempts take a small fraction of a hash each: the check comes before the password', async () => {
      const attacker = '192.0.2.20';
      const timings: number[] = [];
      for (let i = 0; i < 6; i++) {
        const started = performance.now();
        assert.equal((await loginFrom(h, attacker, { username: 'admin', password: `guess ${i}` })).statusCode, 401);
        timings.push(performance.now() - started);
      }
      const hashMs = Math.min(...timings);
      const started = performance.now();
      for (let i = 0; i < 50; i++) assert.equal((await loginFrom(h, attacker, { username: 'admin', password: ADMIN_PASSWORD })).statusCode, 429);
      const refusedMs = (performance.now() - started) / 50;
      assert.ok(refusedMs < hashMs / 3, `a refusal took ${refusedMs.toFixed(2)} ms, a hashed failure ${hashMs.toFixed(2)} ms`);
    });
  });

  describe(`account lockout from many addresses [${dialect}]`, () => {
    let h: Harness;
    before(async () => {
      h = await createHarness(dialect, { config: { login_throttle: PRODUCTION_THROTTLE } });
      await h.createAccount('bob');
    });
    after(() => h.close());

    /** 100 failures for bob from 100 addresses (so no address is limited), each delay waited out. */
    const lockBob = async (prefix: string) => {
      let failures = 0;
      for (let i = 0; failures < 100; i++) {
        const response = await loginFrom(h, `${prefix}.${failures}`, { username: 'bob', password: `guess ${i}` });
        if (response.statusCode === 401) failures++;
        else assert.match(outcome(response), /^429 account_throttled \d+$/);
        waitOut(h, response);
      }
    };

    test('the 100th failure locks the account for 15 min, even for the right password; it then lets the person in', async () => {
      const since = await lastAuditSeq(h);
      await lockBob('203.0.113');
      const locked = await loginFrom(h, '198.51.100.8', { username: 'bob', password: USER_PASSWORD });
      assert.equal(outcome(locked), '429 account_locked 900');
      const rows = await auditRows(h, { after: since, type: 'account_locked' });
      assert.deepEqual(
        rows.map((r) => [r.subject_username, r.details['failures'], r.details['locked_for_s']]),
        [['bob', 100, 900]],
      );
      h.clock.advance(15 * MINUTE - 2_000);
      assert.equal(outcome(await loginFrom(h, '198.51.100.8', { username: 'bob', password: USER_PASSWORD })), '429 account_locked 2');
      h.clock.advance(2_000);
      assert.equal(outcome(await loginFrom(h, '198.51.100.8', { username: 'bob', password: USER_PASSWORD })), '200');
    });

    test('after a lockout ends, the next failure locks again at once (one guess per lockout), until a success', async () => {
      await lockBob('203.0.114');
      h.clock.advance(15 * MINUTE);
      assert.equal(outcome(await loginFrom(h, '203.0.114.200', { username: 'bob', password: 'one more guess' })), '401');
      assert.equal(outcome(await loginFrom(h, '198.51.100.8', { username: 'bob', password: USER_PASSWORD })), '429 account_locked 900');
    });

    test('an administrator unlocks at once: POST /v1/accounts/{username}/unlock, audited; the person logs in', async () => {
      const since = await lastAuditSeq(h);
      const unlocked = await h.request({ method: 'POST', url: '/v1/accounts/BOB/unlock', token: h.adminToken });
      assert.equal(unlocked.statusCode, 200, unlocked.body);
      assert.deepEqual(unlocked.json(), { username: 'bob', failures_cleared: 101 });
      assert.equal(outcome(await loginFrom(h, '198.51.100.8', { username: 'bob', password: USER_PASSWORD })), '200');
      const [row] = await auditRows(h, { after: since, type: 'account_unlocked' });
      assert.equal(row?.actor_username, 'admin');
      assert.equal(row?.subject_username, 'bob');
      assert.equal(row?.details['failures'], 101);
      // Unknown accounts are 404; nothing to unlock is 0.
      assertProblem(await h.request({ method: 'POST', url: '/v1/accounts/nobody/unlock', token: h.adminToken }), { status: 404, code: 'not_found' });
      assert.deepEqual((await h.request({ method: 'POST', url: '/v1/accounts/bob/unlock', token: h.adminToken })).json(), {
        username: 'bob',
        failures_cleared: 0,
      });
    });

    test('an unknown username is throttled and locked exactly like an existing one: the answers do not tell them apart', async () => {
      const run = async (username: string, prefix: string) => {
        const seen: string[] = [];
        for (let i = 0; i < 12; i++) {
          const response = await loginFrom(h, `${prefix}.${i}`, { username, password: `guess ${i}` });
          seen.push(outcome(response));
          if (i % 3 === 2) waitOut(h, response);
        }
        return seen;
      };
      await h.createAccount('carol');
      const known = await run('carol', '10.1.0');
      const unknown = await run('nosuchperson', '10.2.0');
      assert.deepEqual(unknown, known);
      assert.ok(known.some((o) => o.startsWith('429 account_throttled')), known.join(', '));
    });
  });

  describe(`second-factor guesses count [${dialect}]`, () => {
    let h: Harness;
    before(async () => {
      h = await createHarness(dialect, { config: { login_throttle: PRODUCTION_THROTTLE } });
    });
    after(() => h.close());

    test('wrong codes at TOTP enrollment confirm count: the seventh is refused with 429, even a right code', async () => {
      await h.createAccount('dana');
      const token = await h.login('dana', USER_PASSWORD);
      const begun = await h.request({ method: 'POST', url: '/v1/me/totp', token, body: { password: USER_PASSWORD } });
      const { secret } = begun.json() as { secret: string };
      const confirm = (code: string) => h.request({ method: 'POST', url: '/v1/me/totp/confirm', token, body: { code } });
      for (let i = 0; i < 6; i++) assertProblem(await confirm(wrongCode(secret, h.clock.now())), { status: 401, code: 'invalid_credentials' });
      const refused = assertProblem(await confirm(totpCode(secret, h.clock.now())), { status: 429, code: 'rate_limited' });
      assert.equal(refused['reason'], 'address_throttled');
      h.clock.advance(1_001);
      assert.equal((await confirm(totpCode(secret, h.clock.now()))).statusCode, 200);
    });

    test('wrong recovery codes and TOTP codes at login count like wrong passwords', async () => {
      await h.createAccount('erin');
      const { secret } = await enrollTotp(h, await h.login('erin', USER_PASSWORD));
      const home = '198.51.100.9';
      const seen: string[] = [];
      for (let i = 0; i < 3; i++) seen.push(outcome(await loginFrom(h, home, { username: 'erin', password: USER_PASSWORD, totp_code: 'AAAA-BBBB-CCCC-DDDD' })));
      for (let i = 0; i < 3; i++) seen.push(outcome(await loginFrom(h, home, { username: 'erin', password: USER_PASSWORD, totp_code: wrongCode(secret, h.clock.now()) })));
      seen.push(outcome(await loginFrom(h, home, { username: 'erin', password: USER_PASSWORD, totp_code: totpCode(secret, h.clock.now() + 30_000) })));
      assert.deepEqual(seen, ['401', '401', '401', '401', '401', '401', '429 address_throttled 1']);
      const rows = await auditRows(h, { type: 'login_failed' });
      assert.deepEqual(
        rows.filter((r) => r.details['username'] === 'erin').map((r) => r.details['reason']),
        ['wrong_recovery_code', 'wrong_recovery_code', 'wrong_recovery_code', 'wrong_totp', 'wrong_totp', 'wrong_totp'],
      );
    });
  });
}
