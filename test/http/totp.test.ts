import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { promisify } from 'node:util';
import { after, before, describe, test } from 'node:test';
import type { FastifyInstance, LightMyRequestResponse } from 'fastify';
import { Secret, URI } from 'otpauth';
import { ManualClock, type Clock } from '../../src/domain/clock.ts';
import { Sealer } from '../../src/domain/sealing.ts';
import { buildApp } from '../../src/http/app.ts';
import { createRuntime, type Runtime } from '../../src/server.ts';
import { assertAuditHasNoSecrets, auditRows, lastAuditSeq } from '../support/audit.ts';
import { DIALECTS, createTestDatabase, type TestDatabase, type TestDialect } from '../support/databases.ts';
import { ADMIN_PASSWORD, USER_PASSWORD, createHarness, testConfig, type Harness } from '../support/harness.ts';
import { assertNoSecrets, assertProblem, issueToken, recordingRequests, rowCount } from '../support/inspect.ts';
import { PERIOD_MS, beginTotp, enrollTotp, nextCode, stepOf, totpCode, wrongCode } from '../support/totp-codes.ts';

/**
 * SECURITY.md §12–§15 over HTTP: enrollment (active only once confirmed), login with a code or a recovery code, each
 * code accepted once on every instance, secrets sealed at rest, removal with password and code, the administrator's
 * reset, `auth.require_totp_for_admins`, and TOTP failures audited as failed logins (SECURITY.md §9, §30).
 */

const RECOVERY_CODE = /^[A-Z2-7]{4}-[A-Z2-7]{4}-[A-Z2-7]{4}-[A-Z2-7]{4}$/;
/** Eight characters, not a common password, not containing any username used here: enough only with TOTP on. */
const SHORT_PASSWORD = 'Kq7!vRz2';
const execFileAsync = promisify(execFile);

type Body = Record<string, unknown>;
const json = (response: LightMyRequestResponse) => response.json() as Body;

function loginRequest(h: { request: Harness['request'] }, username: string, password: string, totpCode?: string) {
  return h.request({
    method: 'POST',
    url: '/v1/auth/login',
    body: { username, password, ...(totpCode === undefined ? {} : { totp_code: totpCode }) },
  });
}

async function me(h: Harness, token: string): Promise<Body> {
  const response = await h.request({ method: 'GET', url: '/v1/me', token });
  assert.equal(response.statusCode, 200, response.body);
  return json(response);
}

async function accountRow(h: Harness, username: string) {
  return h.runtime.database.db.selectFrom('accounts').selectAll().where('username', '=', username).executeTakeFirstOrThrow();
}

async function recoveryRows(h: Harness, username: string) {
  const { id } = await accountRow(h, username);
  return h.runtime.database.db.selectFrom('recovery_codes').selectAll().where('account_id', '=', id).execute();
}

/** A new person, enrolled: their username, a token, the secret and the recovery codes. */
async function enrolledPerson(h: Harness, username: string, password = USER_PASSWORD) {
  await h.createAccount(username, 'human', password);
  const token = await issueToken(h, username);
  const { secret, recoveryCodes } = await enrollTotp(h, token, password);
  return { username, token, secret, recoveryCodes };
}

/** The newest audit row of a type written after `since`, which must exist. */
async function newest(h: Harness, type: string, since: number) {
  const rows = await auditRows(h, { type, after: since });
  const row = rows.at(-1);
  assert.ok(row !== undefined, `no ${type} audit row was written`);
  return row;
}

const problemOf = (response: LightMyRequestResponse, status: number, code: string) => assertProblem(response, { status, code });

for (const dialect of DIALECTS) {
  describe(`TOTP enrollment [${dialect}]`, () => {
    let h: Harness;
    before(async () => {
      h = await createHarness(dialect);
    });
    after(() => h.close());

    test('POST /v1/me/totp: a 160-bit secret and an otpauth:// URI for SHA-1, 6 digits, 30 s, issuer MCIAS, label = username', async () => {
      await h.createAccount('enid');
      const token = await issueToken(h, 'enid');
      const response = await h.request({ method: 'POST', url: '/v1/me/totp', token, body: { password: USER_PASSWORD } });
      assert.equal(response.statusCode, 200, response.body);
      assert.match(String(response.headers['cache-control']), /no-store/);
      const body = json(response);
      assert.deepEqual(Object.keys(body).sort(), ['otpauth_uri', 'secret']);
      const secret = body['secret'] as string;
      assert.match(secret, /^[A-Z2-7]{32}$/);
      assert.equal(Secret.fromBase32(secret).bytes.length, 20);

      const uriText = body['otpauth_uri'] as string;
      assert.match(uriText, /^otpauth:\/\/totp\//);
      const uri = URI.parse(uriText);
      assert.equal(uri.issuer, 'MCIAS');
      assert.equal(uri.label, 'enid');
      assert.equal(uri.secret.base32, secret);
      assert.ok('period' in uri, 'a TOTP URI');
      assert.equal(uri.algorithm, 'SHA1');
      assert.equal(uri.digits, 6);
      assert.equal(uri.period, 30);
      const params = new URL(uriText).searchParams;
      assert.equal(params.get('issuer'), 'MCIAS');

      // Every enrollment draws a fresh secret.
      const again = await beginTotp(h, token);
      assert.notEqual(again.secret, secret);
    });

    test('enrollment needs the current password: a token alone, or with a wrong password, starts nothing (ASVS 7.5.1)', async () => {
      await h.createAccount('stolen');
      const token = await issueToken(h, 'stolen');
      const begin = (body?: unknown) => h.request({ method: 'POST', url: '/v1/me/totp', token, ...(body === undefined ? {} : { body }) });
      const since = await lastAuditSeq(h);
      problemOf(await begin(), 400, 'invalid_request');
      problemOf(await begin({}), 400, 'invalid_request');
      problemOf(await begin({ password: 'not the password at all, sorry' }), 401, 'invalid_credentials');
      const row = await accountRow(h, 'stolen');
      assert.equal(row.totp_secret, null, 'no pending secret is stored');
      assert.equal(row.totp_confirmed_at, null);
      const failure = await newest(h, 'totp_enrollment_started', since);
      assert.equal(failure.outcome, 'failure');
      assert.equal(failure.details['reason'], 'wrong_password');
      assert.equal((await auditRows(h, { type: 'totp_enrollment_started', after: since })).length, 1);
      // Nothing to confirm: no enrollment was started.
      problemOf(await h.request({ method: 'POST', url: '/v1/me/totp/confirm', token, body: { code: '123456' } }), 409, 'conflict');
      assert.equal((await begin({ password: USER_PASSWORD })).statusCode, 200);
      assert.ok((await accountRow(h, 'stolen')).totp_secret !== null);
      assert.equal((await newest(h, 'totp_enrollment_started', since)).outcome, 'success');
    });

    test('before confirmation nothing changes: login needs no code and totp_enabled is false', async () => {
      await h.createAccount('pending');
      const token = await issueToken(h, 'pending');
      await beginTotp(h, token);
      const row = await accountRow(h, 'pending');
      assert.ok(row.totp_secret !== null, 'the pending secret is stored');
      assert.equal(row.totp_confirmed_at, null);
      assert.equal((await me(h, token))['totp_enabled'], false);
      const response = await loginRequest(h, 'pending', USER_PASSWORD);
      assert.equal(response.statusCode, 200, response.body);
      assert.equal((json(response)['account'] as Body)['totp_enabled'], false);
      const admin = await h.request({ method: 'GET', url: '/v1/accounts/pending', token: h.adminToken });
      assert.equal(json(admin)['totp_enabled'], false);
    });

    test('confirm with a wrong code: 401, audited, still not active; then the right code activates it with ten recovery codes', async () => {
      await h.createAccount('conny');
      const token = await issueToken(h, 'conny');
      const { secret } = await beginTotp(h, token);
      const since = await lastAuditSeq(h);

      const wrong = await h.request({ method: 'POST', url: '/v1/me/totp/confirm', token, body: { code: wrongCode(secret, h.clock.now()) } });
      problemOf(wrong, 401, 'invalid_credentials');
      const failure = await newest(h, 'totp_enabled', since);
      assert.equal(failure.outcome, 'failure');
      assert.equal(failure.details['reason'], 'wrong_totp');
      assert.equal(failure.subject_username, 'conny');
      // A code two steps ahead is outside the window at confirmation too.
      const far = await h.request({ method: 'POST', url: '/v1/me/totp/confirm', token, body: { code: totpCode(secret, h.clock.now() + 2 * PERIOD_MS) } });
      problemOf(far, 401, 'invalid_credentials');
      assert.equal((await me(h, token))['totp_enabled'], false);
      assert.equal((await accountRow(h, 'conny')).totp_confirmed_at, null);
      assert.equal((await loginRequest(h, 'conny', USER_PASSWORD)).statusCode, 200);
      assert.equal((await recoveryRows(h, 'conny')).length, 0);

      const right = await h.request({ method: 'POST', url: '/v1/me/totp/confirm', token, body: { code: totpCode(secret, h.clock.now()) } });
      assert.equal(right.statusCode, 200, right.body);
      assert.match(String(right.headers['cache-control']), /no-store/);
      const codes = json(right)['recovery_codes'] as string[];
      assert.equal(codes.length, 10);
      assert.equal(new Set(codes).size, 10);
      for (const code of codes) assert.match(code, RECOVERY_CODE);
      assert.equal((await me(h, token))['totp_enabled'], true);
      assert.equal((await newest(h, 'totp_enabled', since)).outcome, 'success');
      problemOf(await loginRequest(h, 'conny', USER_PASSWORD), 401, 'totp_required');
      // Confirming again is a conflict: there is nothing pending.
      problemOf(await h.request({ method: 'POST', url: '/v1/me/totp/confirm', token, body: { code: nextCode(h, secret) } }), 409, 'conflict');
    });

    test('the code that confirmed the enrollment cannot be used to log in', async () => {
      await h.createAccount('carl');
      const token = await issueToken(h, 'carl');
      const { secret } = await beginTotp(h, token);
      const code = totpCode(secret, h.clock.now());
      assert.equal((await h.request({ method: 'POST', url: '/v1/me/totp/confirm', token, body: { code } })).statusCode, 200);
      problemOf(await loginRequest(h, 'carl', USER_PASSWORD, code), 401, 'invalid_credentials');
    });

    test('confirm without an enrollment is a conflict', async () => {
      await h.createAccount('nobody');
      const token = await issueToken(h, 'nobody');
      problemOf(await h.request({ method: 'POST', url: '/v1/me/totp/confirm', token, body: { code: '123456' } }), 409, 'conflict');
      assert.equal((await me(h, token))['totp_enabled'], false);
    });

    test('starting over before confirming replaces the secret: only the newest one confirms', async () => {
      await h.createAccount('restart');
      const token = await issueToken(h, 'restart');
      const first = await beginTotp(h, token);
      const second = await beginTotp(h, token);
      const firstCode = totpCode(first.secret, h.clock.now());
      assert.notEqual(firstCode, totpCode(second.secret, h.clock.now()));
      problemOf(await h.request({ method: 'POST', url: '/v1/me/totp/confirm', token, body: { code: firstCode } }), 401, 'invalid_credentials');
      const ok = await h.request({ method: 'POST', url: '/v1/me/totp/confirm', token, body: { code: totpCode(second.secret, h.clock.now()) } });
      assert.equal(ok.statusCode, 200, ok.body);
    });

    test('enrolling again while TOTP is active is a conflict, and the active secret stays', async () => {
      const { username, token, secret } = await enrolledPerson(h, 'twice');
      const before = Buffer.from((await accountRow(h, username)).totp_secret as Uint8Array).toString('hex');
      problemOf(await h.request({ method: 'POST', url: '/v1/me/totp', token, body: { password: USER_PASSWORD } }), 409, 'conflict');
      assert.equal(Buffer.from((await accountRow(h, username)).totp_secret as Uint8Array).toString('hex'), before);
      assert.equal((await me(h, token))['totp_enabled'], true);
      assert.equal((await loginRequest(h, username, USER_PASSWORD, nextCode(h, secret))).statusCode, 200);
    });

    test('a system account has no TOTP', async () => {
      await h.createAccount('robot', 'system');
      const token = await issueToken(h, 'robot');
      problemOf(await h.request({ method: 'POST', url: '/v1/me/totp', token, body: { password: USER_PASSWORD } }), 403, 'forbidden');
      problemOf(await h.request({ method: 'DELETE', url: '/v1/accounts/robot/totp', token: h.adminToken }), 400, 'invalid_request');
    });
  });

  describe(`TOTP issuer from the configuration [${dialect}]`, () => {
    let h: Harness;
    before(async () => {
      h = await createHarness(dialect, { config: { auth: { totp_issuer: 'Example Corp' } } });
    });
    after(() => h.close());

    test('auth.totp_issuer names the issuer in the otpauth:// URI', async () => {
      await h.createAccount('iris');
      const { otpauth_uri: uriText } = await beginTotp(h, await issueToken(h, 'iris'));
      const uri = URI.parse(uriText);
      assert.equal(uri.issuer, 'Example Corp');
      assert.equal(uri.label, 'iris');
      assert.equal(new URL(uriText).searchParams.get('issuer'), 'Example Corp');
      assert.doesNotMatch(uriText, /MCIAS/);
    });
  });

  describe(`TOTP at login [${dialect}]`, () => {
    let h: Harness;
    before(async () => {
      h = await createHarness(dialect);
    });
    after(() => h.close());

    test('the password is right but no code: 401 totp_required, audited as a failed login with its reason', async () => {
      const { username } = await enrolledPerson(h, 'nocode');
      const since = await lastAuditSeq(h);
      const response = await loginRequest(h, username, USER_PASSWORD);
      problemOf(response, 401, 'totp_required');
      assert.equal(json(response)['token'], undefined);
      const row = await newest(h, 'login_failed', since);
      assert.equal(row.outcome, 'failure');
      assert.equal(row.subject_username, username);
      assert.equal(row.details['reason'], 'totp_missing');
      assert.equal(row.details['factor'], 'totp');
      assert.deepEqual(await auditRows(h, { type: 'login_succeeded', after: since }), []);
    });

    test('a wrong password with a right code is the usual 401 invalid_credentials, and does not use up the code', async () => {
      const { username, secret } = await enrolledPerson(h, 'typo');
      const code = nextCode(h, secret);
      const since = await lastAuditSeq(h);
      problemOf(await loginRequest(h, username, 'not the password at all, sorry', code), 401, 'invalid_credentials');
      assert.equal((await newest(h, 'login_failed', since)).details['reason'], 'wrong_password');
      assert.equal((await loginRequest(h, username, USER_PASSWORD, code)).statusCode, 200);
    });

    test('a wrong code: 401 invalid_credentials (not totp_required), audited as a failed login with factor totp', async () => {
      const { username, secret } = await enrolledPerson(h, 'wrongcode');
      const since = await lastAuditSeq(h);
      const response = await loginRequest(h, username, USER_PASSWORD, wrongCode(secret, h.clock.now()));
      problemOf(response, 401, 'invalid_credentials');
      const row = await newest(h, 'login_failed', since);
      assert.equal(row.subject_username, username);
      assert.equal(row.details['reason'], 'wrong_totp');
      assert.equal(row.details['factor'], 'totp');
      assert.deepEqual(await auditRows(h, { type: 'login_succeeded', after: since }), []);
      // The answer is the same as for a wrong password: nothing says the password was right.
      const wrongPassword = await loginRequest(h, username, 'not the password at all, sorry');
      assert.deepEqual(
        { ...json(wrongPassword), request_id: null, detail: null },
        { ...json(response), request_id: null, detail: null },
      );
      assert.equal(json(wrongPassword)['detail'], json(response)['detail']);
    });

    test('a right code logs in once: the same code again is refused, audited as a replay', async () => {
      const { username, secret } = await enrolledPerson(h, 'replay');
      const code = nextCode(h, secret);
      const since = await lastAuditSeq(h);
      const first = await loginRequest(h, username, USER_PASSWORD, code);
      assert.equal(first.statusCode, 200, first.body);
      assert.equal(typeof json(first)['token'], 'string');
      assert.equal((json(first)['account'] as Body)['totp_enabled'], true);
      assert.equal((await newest(h, 'login_succeeded', since)).details['factor'], 'password+totp');

      const second = await loginRequest(h, username, USER_PASSWORD, code);
      problemOf(second, 401, 'invalid_credentials');
      const row = await newest(h, 'login_failed', since);
      assert.equal(row.details['reason'], 'totp_replayed');
      assert.equal(row.details['factor'], 'totp');
      // Still refused later, while the code is inside the window.
      h.clock.advance(PERIOD_MS);
      problemOf(await loginRequest(h, username, USER_PASSWORD, code), 401, 'invalid_credentials');
      assert.equal((await auditRows(h, { type: 'login_succeeded', after: since })).length, 1);
    });

    test('±1 step is accepted and ±2 refused (injected clock); an earlier step after a later one is refused', async () => {
      const { username, secret } = await enrolledPerson(h, 'window');
      // The middle of a step, well after the enrollment's.
      const step = stepOf(h.clock.now()) + 10;
      h.clock.set(step * PERIOD_MS + PERIOD_MS / 2);
      const codeOf = (s: number) => totpCode(secret, s * PERIOD_MS);
      const inside = new Set([codeOf(step - 1), codeOf(step), codeOf(step + 1)]);
      assert.equal(inside.size, 3, 'the codes of the window differ (a fixed secret would make this deterministic)');
      assert.ok(!inside.has(codeOf(step - 2)) && !inside.has(codeOf(step + 2)), 'the codes two steps away differ from those inside');

      problemOf(await loginRequest(h, username, USER_PASSWORD, codeOf(step - 2)), 401, 'invalid_credentials');
      problemOf(await loginRequest(h, username, USER_PASSWORD, codeOf(step + 2)), 401, 'invalid_credentials');
      assert.equal((await loginRequest(h, username, USER_PASSWORD, codeOf(step - 1))).statusCode, 200);
      assert.equal((await loginRequest(h, username, USER_PASSWORD, codeOf(step + 1))).statusCode, 200);
      // The current step's code is inside the window but earlier than the last accepted one.
      const since = await lastAuditSeq(h);
      problemOf(await loginRequest(h, username, USER_PASSWORD, codeOf(step)), 401, 'invalid_credentials');
      assert.equal((await newest(h, 'login_failed', since)).details['reason'], 'totp_replayed');
      // The +2 code was refused for the window alone: once its step is current + 1 it works.
      h.clock.advance(PERIOD_MS);
      assert.equal((await loginRequest(h, username, USER_PASSWORD, codeOf(step + 2))).statusCode, 200);
      // Right at the edges: the first and the last millisecond of the window.
      h.clock.set((step + 5) * PERIOD_MS);
      assert.equal((await loginRequest(h, username, USER_PASSWORD, codeOf(step + 4))).statusCode, 200);
      h.clock.set((step + 6) * PERIOD_MS - 1);
      problemOf(await loginRequest(h, username, USER_PASSWORD, codeOf(step + 7)), 401, 'invalid_credentials');
      h.clock.set((step + 6) * PERIOD_MS);
      assert.equal((await loginRequest(h, username, USER_PASSWORD, codeOf(step + 7))).statusCode, 200);
    });

    test('a recovery code works once instead of a code, whatever its case, dashes or spaces; the others stay usable', async () => {
      const { username, recoveryCodes } = await enrolledPerson(h, 'rescue');
      const [first, second, third] = recoveryCodes as [string, string, string];
      const since = await lastAuditSeq(h);

      const sloppy = first.toLowerCase().replaceAll('-', '');
      const ok = await loginRequest(h, username, USER_PASSWORD, sloppy);
      assert.equal(ok.statusCode, 200, ok.body);
      assert.equal((await newest(h, 'login_succeeded', since)).details['factor'], 'password+recovery_code');

      for (const again of [first, sloppy, first.replaceAll('-', ' ')]) {
        problemOf(await loginRequest(h, username, USER_PASSWORD, again), 401, 'invalid_credentials');
      }
      assert.equal((await newest(h, 'login_failed', since)).details['reason'], 'wrong_recovery_code');
      assert.equal((await loginRequest(h, username, USER_PASSWORD, second.replaceAll('-', ' '))).statusCode, 200);
      assert.equal((await loginRequest(h, username, USER_PASSWORD, third)).statusCode, 200);

      const rows = await recoveryRows(h, username);
      assert.equal(rows.length, 10);
      assert.equal(rows.filter((r) => r.used_at !== null).length, 3);
      // A made-up code of the right shape is refused.
      problemOf(await loginRequest(h, username, USER_PASSWORD, 'AAAA-BBBB-CCCC-DDDD'), 401, 'invalid_credentials');
      // Another account's recovery code does not work here.
      const other = await enrolledPerson(h, 'rescue2');
      problemOf(await loginRequest(h, username, USER_PASSWORD, other.recoveryCodes[0] as string), 401, 'invalid_credentials');
      assert.equal((await loginRequest(h, other.username, USER_PASSWORD, other.recoveryCodes[0] as string)).statusCode, 200);
    });

    test('recovery codes are stored as digests: no code appears in the recovery_codes table, in any spelling', async () => {
      const { username, recoveryCodes } = await enrolledPerson(h, 'digests');
      const rows = await recoveryRows(h, username);
      assert.equal(rows.length, 10);
      assert.equal(new Set(rows.map((r) => r.code_hash)).size, 10);
      const dump = JSON.stringify(await h.runtime.database.db.selectFrom('recovery_codes').selectAll().execute(), (_k, v: unknown) =>
        typeof v === 'bigint' ? Number(v) : v,
      );
      for (const code of recoveryCodes) {
        const plain = code.replaceAll('-', '');
        for (const spelling of [code, plain, plain.toLowerCase(), code.toLowerCase()]) {
          assert.ok(!dump.toUpperCase().includes(spelling.toUpperCase()), 'a recovery code is stored in clear');
        }
        for (const row of rows) assert.ok(row.code_hash.length >= 40, 'a digest, not a short code');
      }
    });

    test('a disabled account with a right code is the usual invalid_credentials', async () => {
      const { username, secret } = await enrolledPerson(h, 'benched');
      assert.equal(
        (await h.request({ method: 'PATCH', url: `/v1/accounts/${username}`, token: h.adminToken, body: { status: 'disabled' } })).statusCode,
        200,
      );
      problemOf(await loginRequest(h, username, USER_PASSWORD, nextCode(h, secret)), 401, 'invalid_credentials');
    });
  });

  describe(`one code, two instances on one database [${dialect}]`, () => {
    let h: Harness;
    let second: Runtime;
    let appB: FastifyInstance;
    const at = (app: FastifyInstance, username: string, password: string, code: string) =>
      app.inject({ method: 'POST', url: '/v1/auth/login', payload: { username, password, totp_code: code } });

    before(async () => {
      h = await createHarness(dialect);
      // A second server on the same database and master key, as a second instance behind a load balancer.
      second = await createRuntime(h.config, { clock: h.clock as Clock, masterKey: h.masterKey });
      appB = await buildApp(second.services, { bodyLimit: h.config.server.bodyLimit, trustedProxies: h.config.server.trustedProxies, rateLimit: h.config.rateLimit, logger: false });
    });
    after(async () => {
      await appB?.close();
      await second?.close();
      await h.close();
    });

    test('a code accepted by one instance is refused by the other, both ways', async () => {
      const { username, secret } = await enrolledPerson(h, 'twins');
      const code = nextCode(h, secret);
      assert.equal((await at(h.app, username, USER_PASSWORD, code)).statusCode, 200);
      problemOf(await at(appB, username, USER_PASSWORD, code), 401, 'invalid_credentials');
      const later = nextCode(h, secret);
      assert.equal((await at(appB, username, USER_PASSWORD, later)).statusCode, 200);
      problemOf(await at(h.app, username, USER_PASSWORD, later), 401, 'invalid_credentials');
      // The earlier code, refused by the instance that did not see it, after the later one.
      const skipped = totpCode(secret, h.clock.now() - PERIOD_MS);
      assert.notEqual(skipped, later);
      problemOf(await at(h.app, username, USER_PASSWORD, skipped), 401, 'invalid_credentials');
    });

    test('the same code fired at both instances at once logs in exactly once, round after round', async () => {
      const { username, secret } = await enrolledPerson(h, 'racers');
      for (let round = 1; round <= 6; round += 1) {
        const code = nextCode(h, secret);
        const responses = await Promise.all([h.app, appB, h.app, appB].map((app) => at(app, username, USER_PASSWORD, code)));
        const statuses = responses.map((r) => r.statusCode);
        assert.equal(statuses.filter((s) => s === 200).length, 1, `round ${round}: ${statuses.join(',')}`);
        assert.equal(statuses.filter((s) => s === 401).length, 3, `round ${round}: ${statuses.join(',')}`);
      }
    });

    test('the same recovery code fired at both instances at once logs in exactly once', async () => {
      const { username, recoveryCodes } = await enrolledPerson(h, 'rescuers');
      for (const code of recoveryCodes.slice(0, 4)) {
        const responses = await Promise.all([h.app, appB, h.app, appB].map((app) => at(app, username, USER_PASSWORD, code)));
        const statuses = responses.map((r) => r.statusCode);
        assert.equal(statuses.filter((s) => s === 200).length, 1, statuses.join(','));
      }
    });
  });

  describe(`TOTP secrets at rest [${dialect}]`, () => {
    let h: Harness;
    before(async () => {
      h = await createHarness(dialect);
    });
    after(() => h.close());

    test('accounts.totp_secret is AES-GCM ciphertext under the master key: neither the secret bytes nor its base32 are stored', async () => {
      const { username, token, secret } = await enrolledPerson(h, 'sealed');
      const raw = Buffer.from(Secret.fromBase32(secret).bytes);
      const row = await accountRow(h, username);
      const stored = Buffer.from(row.totp_secret as Uint8Array);
      assert.ok(stored.length >= raw.length + 16, 'room for a nonce and a tag');
      assert.equal(stored.indexOf(raw), -1, 'the raw secret is stored');
      assert.equal(stored.indexOf(Buffer.from(secret, 'ascii')), -1, 'the base32 secret is stored');
      // It is the secret, sealed for this row: the master key opens it, another key does not.
      const context = { table: 'accounts', column: 'totp_secret', id: row.id };
      assert.deepEqual(new Sealer(h.masterKey).open(stored, context), raw);
      assert.throws(() => new Sealer(randomBytes(32)).open(stored, context));

      // Nothing the API answers carries the secret or its ciphertext.
      const { request, responses } = recordingRequests(h);
      await request({ method: 'GET', url: '/v1/me', token });
      await request({ method: 'GET', url: `/v1/accounts/${username}`, token: h.adminToken });
      await request({ method: 'GET', url: '/v1/accounts', token: h.adminToken });
      assertNoSecrets(responses, [USER_PASSWORD]);
      for (const response of responses) {
        for (const needle of [secret, stored.toString('hex'), stored.toString('base64'), stored.toString('base64url'), raw.toString('hex')]) {
          assert.ok(!response.body.includes(needle), `${response.body.slice(0, 100)} carries the secret`);
        }
      }
    });

    test('a dump of the database holds the ciphertext but not the secret', async () => {
      const { username, secret, recoveryCodes } = await enrolledPerson(h, 'dumped');
      const raw = Buffer.from(Secret.fromBase32(secret).bytes);
      const stored = Buffer.from((await accountRow(h, username)).totp_secret as Uint8Array);
      if (dialect === 'sqlite') {
        // The database file and its write-ahead log, byte for byte.
        const files = [h.db.location, `${h.db.location}-wal`].filter((f) => existsSync(f));
        const bytes = Buffer.concat(files.map((f) => readFileSync(f)));
        assert.ok(bytes.indexOf(stored) >= 0, 'the dump does not even hold the ciphertext: it proves nothing');
        assert.equal(bytes.indexOf(raw), -1, 'the raw secret is in the database file');
        assert.equal(bytes.indexOf(Buffer.from(secret, 'ascii')), -1, 'the base32 secret is in the database file');
        for (const code of recoveryCodes) {
          assert.equal(bytes.indexOf(Buffer.from(code.replaceAll('-', ''), 'ascii')), -1, 'a recovery code is in the database file');
          assert.equal(bytes.indexOf(Buffer.from(code, 'ascii')), -1, 'a recovery code is in the database file');
        }
      } else {
        const { stdout } = await execFileAsync('pg_dump', ['--no-owner', '--dbname', h.db.location], { maxBuffer: 64 * 1024 * 1024 });
        assert.ok(stdout.includes(stored.toString('hex')), 'the dump does not even hold the ciphertext: it proves nothing');
        for (const needle of [raw.toString('hex'), secret, secret.toLowerCase()]) assert.ok(!stdout.includes(needle), 'the secret is in pg_dump');
        for (const code of recoveryCodes) {
          assert.ok(!stdout.toUpperCase().includes(code.replaceAll('-', '')), 'a recovery code is in pg_dump');
          assert.ok(!stdout.toUpperCase().includes(code), 'a recovery code is in pg_dump');
        }
      }
    });

    test("a sealed secret moved to another account's row does not decrypt there: that login fails, it does not succeed", async () => {
      const victim = await enrolledPerson(h, 'victim');
      const mover = await enrolledPerson(h, 'mover');
      const db = h.runtime.database.db;
      const victimRow = await accountRow(h, victim.username);
      await db.updateTable('accounts').set({ totp_secret: victimRow.totp_secret }).where('username', '=', mover.username).execute();
      const since = await lastAuditSeq(h);
      const tokensBefore = await rowCount(db, 'tokens');

      // The victim's code (the secret now in the mover's row) and the mover's own code: neither gets in.
      for (const code of [nextCode(h, victim.secret), totpCode(mover.secret, h.clock.now())]) {
        const response = await loginRequest(h, mover.username, USER_PASSWORD, code);
        assert.notEqual(response.statusCode, 200, response.body);
        assert.equal(json(response)['token'], undefined);
        assertProblem(response, { status: 500, code: 'internal' });
      }
      assert.deepEqual(await auditRows(h, { type: 'login_succeeded', after: since }), []);
      assert.equal(await rowCount(db, 'tokens'), tokensBefore);
      // The victim's own row is untouched and still works.
      assert.equal((await loginRequest(h, victim.username, USER_PASSWORD, nextCode(h, victim.secret))).statusCode, 200);
    });
  });

  describe(`removing TOTP, and passwords with TOTP [${dialect}]`, () => {
    let h: Harness;
    before(async () => {
      h = await createHarness(dialect);
    });
    after(() => h.close());

    const remove = (token: string, password: string, code: string) =>
      h.request({ method: 'DELETE', url: '/v1/me/totp', token, body: { password, code } });
    const changePassword = (token: string, current: string, next: string) =>
      h.request({ method: 'PUT', url: '/v1/me/password', token, body: { current_password: current, new_password: next } });

    test('removal needs the password and a current code; then login needs no code and the recovery codes are gone', async () => {
      const { username, token, secret } = await enrolledPerson(h, 'remy');
      const since = await lastAuditSeq(h);

      problemOf(await remove(token, 'not the password at all, sorry', nextCode(h, secret)), 401, 'invalid_credentials');
      assert.equal((await newest(h, 'totp_disabled', since)).details['reason'], 'wrong_password');
      problemOf(await remove(token, USER_PASSWORD, wrongCode(secret, h.clock.now())), 401, 'invalid_credentials');
      assert.equal((await newest(h, 'totp_disabled', since)).details['reason'], 'wrong_totp');
      const used = nextCode(h, secret);
      assert.equal((await loginRequest(h, username, USER_PASSWORD, used)).statusCode, 200);
      problemOf(await remove(token, USER_PASSWORD, used), 401, 'invalid_credentials');
      assert.equal((await newest(h, 'totp_disabled', since)).details['reason'], 'totp_replayed');
      for (const row of await auditRows(h, { type: 'totp_disabled', after: since })) assert.equal(row.outcome, 'failure');

      assert.equal((await me(h, token))['totp_enabled'], true);
      problemOf(await loginRequest(h, username, USER_PASSWORD), 401, 'totp_required');
      assert.equal((await recoveryRows(h, username)).length, 10);

      const removed = await remove(token, USER_PASSWORD, nextCode(h, secret));
      assert.equal(removed.statusCode, 204, removed.body);
      const row = await newest(h, 'totp_disabled', since);
      assert.equal(row.outcome, 'success');
      assert.equal(row.actor_username, username);
      assert.equal(row.subject_username, username);
      assert.equal((await me(h, token))['totp_enabled'], false);
      assert.equal((await loginRequest(h, username, USER_PASSWORD)).statusCode, 200);
      assert.equal((await recoveryRows(h, username)).length, 0);
      const account = await accountRow(h, username);
      assert.equal(account.totp_secret, null);
      assert.equal(account.totp_confirmed_at, null);
      // Removing what is not there is a conflict.
      problemOf(await remove(token, USER_PASSWORD, nextCode(h, secret)), 409, 'conflict');
    });

    test('with TOTP on, an 8-character password is accepted; without it, refused as too short', async () => {
      await h.createAccount('plain');
      const plainToken = await issueToken(h, 'plain');
      const refused = await changePassword(plainToken, USER_PASSWORD, SHORT_PASSWORD);
      assert.equal(problemOf(refused, 400, 'invalid_request')['reason'], 'password_too_short');
      // Fourteen characters are still too few without TOTP.
      assert.equal(problemOf(await changePassword(plainToken, USER_PASSWORD, 'Kq7!vRz2Lm9#Tb'), 400, 'invalid_request')['reason'], 'password_too_short');
      assert.equal(
        problemOf(await h.request({ method: 'PUT', url: '/v1/accounts/plain/password', token: h.adminToken, body: { password: SHORT_PASSWORD } }), 400, 'invalid_request')['reason'],
        'password_too_short',
      );

      const { username, token, secret } = await enrolledPerson(h, 'shorty');
      assert.equal(problemOf(await changePassword(token, USER_PASSWORD, 'Kq7!vRz'), 400, 'invalid_request')['reason'], 'password_too_short');
      assert.equal(problemOf(await changePassword(token, USER_PASSWORD, 'password'), 400, 'invalid_request')['reason'], 'password_common');
      assert.equal(problemOf(await changePassword(token, USER_PASSWORD, 'xshorty1'), 400, 'invalid_request')['reason'], 'password_contains_username');
      assert.equal((await changePassword(token, USER_PASSWORD, SHORT_PASSWORD)).statusCode, 204);
      assert.equal((await loginRequest(h, username, SHORT_PASSWORD, nextCode(h, secret))).statusCode, 200);
      // The administrator's reset follows the same rule.
      assert.equal(
        (await h.request({ method: 'PUT', url: `/v1/accounts/${username}/password`, token: h.adminToken, body: { password: 'Wd4$nPq8' } })).statusCode,
        204,
      );
      assert.equal((await loginRequest(h, username, 'Wd4$nPq8', nextCode(h, secret))).statusCode, 200);
    });

    test('removal is refused with reason password_too_short while the password is shorter than 15 characters', async () => {
      const { username, token, secret } = await enrolledPerson(h, 'brief');
      assert.equal((await changePassword(token, USER_PASSWORD, SHORT_PASSWORD)).statusCode, 204);
      const code = nextCode(h, secret);
      const since = await lastAuditSeq(h);
      const refused = await remove(token, SHORT_PASSWORD, code);
      assert.equal(problemOf(refused, 409, 'conflict')['reason'], 'password_too_short');
      assert.equal((await newest(h, 'totp_disabled', since)).outcome, 'failure', 'the refusal is audited');
      assert.equal((await me(h, token))['totp_enabled'], true);
      problemOf(await loginRequest(h, username, SHORT_PASSWORD), 401, 'totp_required');
      // The refusal came before the code was checked, so the code was not used up.
      assert.equal((await loginRequest(h, username, SHORT_PASSWORD, code)).statusCode, 200, 'the code is still unused');
      assert.equal((await recoveryRows(h, username)).length, 10);

      // With a long password again, removal works.
      assert.equal((await changePassword(token, SHORT_PASSWORD, USER_PASSWORD)).statusCode, 204);
      assert.equal((await remove(token, USER_PASSWORD, nextCode(h, secret))).statusCode, 204);
      assert.equal((await loginRequest(h, username, USER_PASSWORD)).statusCode, 200);
    });

    test("an administrator's reset removes TOTP and the recovery codes, audited; the person can enroll afresh", async () => {
      const { username, token, secret, recoveryCodes } = await enrolledPerson(h, 'lost');
      const since = await lastAuditSeq(h);
      const response = await h.request({ method: 'DELETE', url: `/v1/accounts/${username}/totp`, token: h.adminToken });
      assert.equal(response.statusCode, 204, response.body);

      const row = await newest(h, 'totp_reset', since);
      assert.equal(row.outcome, 'success');
      assert.equal(row.actor_username, 'admin');
      assert.equal(row.subject_username, username);
      // A credential reset ends the account's sessions, like a password reset.
      assert.equal(row.details['tokens_revoked'], 1);
      problemOf(await h.request({ method: 'GET', url: '/v1/me', token }), 401, 'unauthenticated');
      const login = await loginRequest(h, username, USER_PASSWORD);
      assert.equal(login.statusCode, 200);
      // The password is long enough to stand alone: no change is asked.
      assert.equal(json(login)['password_change_required'], undefined);
      const session = json(login)['token'] as string;
      assert.equal((await recoveryRows(h, username)).length, 0);
      assert.equal((await accountRow(h, username)).totp_secret, null);
      assert.equal((await me(h, session))['totp_enabled'], false);

      // A new enrollment: the old secret's codes and the old recovery codes are worthless.
      const fresh = await enrollTotp(h, session);
      assert.notEqual(fresh.secret, secret);
      const oldCode = nextCode(h, secret);
      assert.notEqual(oldCode, totpCode(fresh.secret, h.clock.now()));
      problemOf(await loginRequest(h, username, USER_PASSWORD, oldCode), 401, 'invalid_credentials');
      problemOf(await loginRequest(h, username, USER_PASSWORD, recoveryCodes[0] as string), 401, 'invalid_credentials');
      assert.equal((await loginRequest(h, username, USER_PASSWORD, totpCode(fresh.secret, h.clock.now()))).statusCode, 200);
      problemOf(await h.request({ method: 'DELETE', url: '/v1/accounts/nosuchperson/totp', token: h.adminToken }), 404, 'not_found');
    });

    test('no audit row holds a TOTP secret or a recovery code', async () => {
      const { secret, recoveryCodes, token } = await enrolledPerson(h, 'audited');
      await loginRequest(h, 'audited', USER_PASSWORD, recoveryCodes[0] as string);
      await loginRequest(h, 'audited', USER_PASSWORD, 'ZZZZ-ZZZZ-ZZZZ-ZZZZ');
      const secrets = [secret, ...recoveryCodes, ...recoveryCodes.map((c) => c.replaceAll('-', '')), ...recoveryCodes.map((c) => c.replaceAll('-', '').toLowerCase())];
      await assertAuditHasNoSecrets(h, [token, h.adminToken], secrets);
    });
  });

  describe(`auth.require_totp_for_admins [${dialect}]`, () => {
    let h: Harness;
    before(async () => {
      h = await createHarness(dialect, { config: { auth: { require_totp_for_admins: true } } });
    });
    after(() => h.close());

    test("the bootstrap admin's first login (the harness's) succeeded; the second, still without TOTP, is refused", async () => {
      const succeeded = (await auditRows(h, { type: 'login_succeeded' })).filter((r) => r.subject_username === 'admin');
      assert.equal(succeeded.length, 1);
      const since = await lastAuditSeq(h);
      const response = await loginRequest(h, 'admin', ADMIN_PASSWORD);
      assert.equal(problemOf(response, 403, 'forbidden')['reason'], 'totp_enrollment_required');
      const row = await newest(h, 'login_failed', since);
      assert.equal(row.details['reason'], 'totp_enrollment_required');
      assert.equal(row.subject_username, 'admin');
    });

    test('an administrator without TOTP is refused with 403 totp_enrollment_required; with TOTP, logs in with a code', async () => {
      await h.createAccount('ada');
      assert.equal((await h.request({ method: 'PUT', url: '/v1/accounts/ada/roles/admin', token: h.adminToken })).statusCode, 204);
      const since = await lastAuditSeq(h);
      const refused = await loginRequest(h, 'ada', USER_PASSWORD);
      assert.equal(problemOf(refused, 403, 'forbidden')['reason'], 'totp_enrollment_required');
      assert.equal(json(refused)['token'], undefined);
      assert.equal((await newest(h, 'login_failed', since)).details['reason'], 'totp_enrollment_required');
      // A wrong password is still the usual 401: the 403 only comes after the right one.
      problemOf(await loginRequest(h, 'ada', 'not the password at all, sorry'), 401, 'invalid_credentials');

      const { secret } = await enrollTotp(h, await issueToken(h, 'ada'));
      problemOf(await loginRequest(h, 'ada', USER_PASSWORD), 401, 'totp_required');
      const ok = await loginRequest(h, 'ada', USER_PASSWORD, nextCode(h, secret));
      assert.equal(ok.statusCode, 200, ok.body);
      assert.equal(json(ok)['totp_enrollment_required'], undefined);
      assert.deepEqual((json(ok)['account'] as Body)['roles'], ['admin']);
    });

    test('a person without the admin role and without TOTP is unaffected', async () => {
      await h.createAccount('norm');
      const response = await loginRequest(h, 'norm', USER_PASSWORD);
      assert.equal(response.statusCode, 200, response.body);
      assert.equal(json(response)['totp_enrollment_required'], undefined);
      // Losing the admin role lifts the requirement; gaining it imposes it.
      assert.equal((await h.request({ method: 'PUT', url: '/v1/accounts/norm/roles/admin', token: h.adminToken })).statusCode, 204);
      problemOf(await loginRequest(h, 'norm', USER_PASSWORD), 403, 'forbidden');
      assert.equal((await h.request({ method: 'DELETE', url: '/v1/accounts/norm/roles/admin', token: h.adminToken })).statusCode, 204);
      assert.equal((await loginRequest(h, 'norm', USER_PASSWORD)).statusCode, 200);
    });

    test('an administrator whose TOTP was reset is refused again until re-enrolled', async () => {
      await h.createAccount('reset');
      assert.equal((await h.request({ method: 'PUT', url: '/v1/accounts/reset/roles/admin', token: h.adminToken })).statusCode, 204);
      const token = await issueToken(h, 'reset');
      const { secret } = await enrollTotp(h, token);
      assert.equal((await loginRequest(h, 'reset', USER_PASSWORD, nextCode(h, secret))).statusCode, 200);
      assert.equal((await h.request({ method: 'DELETE', url: '/v1/accounts/reset/totp', token: h.adminToken })).statusCode, 204);
      assert.equal(problemOf(await loginRequest(h, 'reset', USER_PASSWORD), 403, 'forbidden')['reason'], 'totp_enrollment_required');
    });
  });

  describe(`auth.require_totp_for_admins on a freshly bootstrapped server [${dialect}]`, () => {
    let db: TestDatabase;
    let runtime: Runtime;
    let app: FastifyInstance;
    const clock = new ManualClock(Date.now());
    const request: Harness['request'] = ({ method, url, token, body }) =>
      app.inject({
        method,
        url,
        headers: token === undefined ? {} : { authorization: `Bearer ${token}` },
        ...(body === undefined ? {} : { payload: body as object }),
      });

    before(async () => {
      db = await createTestDatabase(dialect as TestDialect);
      const config = testConfig(db, { auth: { require_totp_for_admins: true } });
      runtime = await createRuntime(config, { clock, masterKey: randomBytes(32) });
      app = await buildApp(runtime.services, { bodyLimit: config.server.bodyLimit, trustedProxies: config.server.trustedProxies, rateLimit: config.rateLimit, logger: false });
      await runtime.services.accounts.bootstrapAdmin('root', ADMIN_PASSWORD, { temporary: false });
    });
    after(async () => {
      await app?.close();
      await runtime?.close();
      await db?.drop();
    });

    test("the bootstrap admin's first login succeeds and says to enroll; the second is refused; after enrolling, a code works", async () => {
      const first = await loginRequest({ request }, 'root', ADMIN_PASSWORD);
      assert.equal(first.statusCode, 200, first.body);
      assert.equal(json(first)['totp_enrollment_required'], true);
      const token = json(first)['token'] as string;

      const second = await loginRequest({ request }, 'root', ADMIN_PASSWORD);
      assert.equal(assertProblem(second, { status: 403, code: 'forbidden' })['reason'], 'totp_enrollment_required');

      // The first login's token is enough to enroll.
      const begun = await request({ method: 'POST', url: '/v1/me/totp', token, body: { password: ADMIN_PASSWORD } });
      assert.equal(begun.statusCode, 200, begun.body);
      const secret = json(begun)['secret'] as string;
      const confirmed = await request({ method: 'POST', url: '/v1/me/totp/confirm', token, body: { code: totpCode(secret, clock.now()) } });
      assert.equal(confirmed.statusCode, 200, confirmed.body);

      clock.advance(PERIOD_MS);
      const third = await loginRequest({ request }, 'root', ADMIN_PASSWORD, totpCode(secret, clock.now()));
      assert.equal(third.statusCode, 200, third.body);
      assert.equal(json(third)['totp_enrollment_required'], undefined);
    });
  });
}
