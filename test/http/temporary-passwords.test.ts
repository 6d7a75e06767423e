import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { LightMyRequestResponse } from 'fastify';
import { auditRows, lastAuditSeq, validationFailures } from '../support/audit.ts';
import { DIALECTS } from '../support/databases.ts';
import { USER_PASSWORD, createHarness, type Harness } from '../support/harness.ts';
import { appRoutes, assertProblem, openApiOperations } from '../support/inspect.ts';
import { enrollTotp, nextCode } from '../support/totp-codes.ts';

/**
 * SECURITY.md §39 (temporary passwords) and issue 7 item 5 (an administrator's TOTP reset that leaves a short
 * password): the flag is stored with the account, read with every token, and enforced by access control.
 */
const OWN_PASSWORD = 'a password that only I know, long enough';
/** Long enough with TOTP (8), too short without it (15). */
const SHORT_PASSWORD = 'Kq7!vRz2L';
/** The only routes a session with a temporary password may call. */
const ALLOWED = ['GET /v1/me', 'HEAD /v1/me', 'PUT /v1/me/password', 'POST /v1/auth/logout'];

type Body = Record<string, unknown>;
const json = (response: LightMyRequestResponse) => response.json() as Body;

for (const dialect of DIALECTS) {
  describe(`temporary passwords [${dialect}]`, () => {
    let h: Harness;
    before(async () => {
      h = await createHarness(dialect);
    });
    after(() => h.close());

    const create = (username: string, extra: Body = {}) =>
      h.request({ method: 'POST', url: '/v1/accounts', token: h.adminToken, body: { username, kind: 'human', password: USER_PASSWORD, ...extra } });
    const reset = (username: string, extra: Body = {}) =>
      h.request({ method: 'PUT', url: `/v1/accounts/${username}/password`, token: h.adminToken, body: { password: USER_PASSWORD, ...extra } });
    const login = (username: string, password: string, code?: string) =>
      h.request({ method: 'POST', url: '/v1/auth/login', body: { username, password, ...(code === undefined ? {} : { totp_code: code }) } });
    const changeOwn = (token: string, current: string, next: string) =>
      h.request({ method: 'PUT', url: '/v1/me/password', token, body: { current_password: current, new_password: next } });
    const adminView = async (username: string) => json(await h.request({ method: 'GET', url: `/v1/accounts/${username}`, token: h.adminToken }));

    /** Logs in and checks that the answer asks for a new password; returns the token. */
    async function restrictedLogin(username: string, password: string, code?: string): Promise<string> {
      const response = await login(username, password, code);
      assert.equal(response.statusCode, 200, response.body);
      const body = json(response);
      assert.equal(body['password_change_required'], true);
      assert.equal((body['account'] as Body)['password_change_required'], true);
      return body['token'] as string;
    }

    test('a created account has a temporary password: the session may only read itself, change it and log out', async () => {
      const created = await create('tina');
      assert.equal(created.statusCode, 201, created.body);
      assert.equal(json(created)['password_change_required'], true);
      assert.equal((await adminView('tina'))['password_change_required'], true);
      // An administrator with a temporary password: every refusal below is for the password, not for a missing role.
      assert.equal((await h.request({ method: 'PUT', url: '/v1/accounts/tina/roles/admin', token: h.adminToken })).statusCode, 204);
      const token = await restrictedLogin('tina', USER_PASSWORD);

      const me = await h.request({ method: 'GET', url: '/v1/me', token });
      assert.equal(me.statusCode, 200);
      assert.equal(json(me)['password_change_required'], true);

      // Every route the router serves, with this token: deny by default, whatever the route.
      const operations = await openApiOperations(h);
      const routes = [...appRoutes(h.app)];
      assert.ok(routes.length > 20, 'the route list could not be read');
      let refused = 0;
      for (const route of routes) {
        const [method, path] = route.split(' ') as [string, string];
        const access = operations.get(route.replace(/^HEAD /, 'GET '))?.access;
        if (access === 'public' || ALLOWED.includes(route)) continue;
        const url = path.replace(/\{[A-Za-z0-9_]+\}/g, 'tina');
        const response = await h.app.inject({ method: method as 'GET', url, headers: { authorization: `Bearer ${token}` } });
        assert.equal(response.statusCode, 403, `${route} answered ${response.statusCode}`);
        if (method !== 'HEAD') assertProblem(response, { status: 403, code: 'password_change_required' });
        refused += 1;
      }
      assert.ok(refused > 15, `only ${refused} routes were tried`);
      // The OpenAPI document marks exactly the allowed routes.
      const document = json(await h.request({ method: 'GET', url: '/openapi.json' })) as { paths: Record<string, Record<string, Body>> };
      const documented = Object.entries(document.paths).flatMap(([path, methods]) =>
        Object.entries(methods)
          .filter(([, operation]) => operation['x-mcias-during-password-change'] === true)
          .map(([method]) => `${method.toUpperCase()} ${path}`),
      );
      assert.deepEqual(documented.sort(), ALLOWED.filter((r) => !r.startsWith('HEAD ')).sort());

      // For an app, the token is not active until the password is changed; the reason is audited.
      const since = await lastAuditSeq(h);
      assert.deepEqual(json(await h.request({ method: 'POST', url: '/v1/token/validate', body: { token } })), { active: false });
      assert.deepEqual((await validationFailures(h, since)).reasons, ['password_change_required']);

      // Logging out is allowed.
      assert.equal((await h.request({ method: 'POST', url: '/v1/auth/logout', token })).statusCode, 204);
      assertProblem(await h.request({ method: 'GET', url: '/v1/me', token }), { status: 401, code: 'unauthenticated' });
    });

    test('changing the password lifts the restriction at once, for the same session; the new one must differ', async () => {
      assert.equal((await create('uma')).statusCode, 201);
      const token = await restrictedLogin('uma', USER_PASSWORD);
      const [audited] = (await auditRows(h, { type: 'login_succeeded' })).filter((r) => r.subject_username === 'uma');
      assert.equal(audited?.details['password_change_required'], 'temporary_password');

      const same = await changeOwn(token, USER_PASSWORD, USER_PASSWORD);
      assert.equal(assertProblem(same, { status: 400, code: 'invalid_request' })['reason'], 'password_unchanged');
      assertProblem(await changeOwn(token, 'not the password at all, sorry', OWN_PASSWORD), { status: 401, code: 'invalid_credentials' });
      assertProblem(await h.request({ method: 'GET', url: '/v1/me/tokens', token }), { status: 403, code: 'password_change_required' });

      assert.equal((await changeOwn(token, USER_PASSWORD, OWN_PASSWORD)).statusCode, 204);
      assert.equal(json(await h.request({ method: 'GET', url: '/v1/me', token }))['password_change_required'], false);
      assert.equal((await h.request({ method: 'GET', url: '/v1/me/tokens', token })).statusCode, 200);
      assert.equal(json(await h.request({ method: 'POST', url: '/v1/token/validate', body: { token } }))['active'], true);
      assert.equal((await adminView('uma'))['password_change_required'], false);
      const next = await login('uma', OWN_PASSWORD);
      assert.equal(next.statusCode, 200);
      assert.equal(json(next)['password_change_required'], undefined);
      assert.equal((json(next)['account'] as Body)['password_change_required'], false);
      assertProblem(await login('uma', USER_PASSWORD), { status: 401, code: 'invalid_credentials' });
    });

    test('an administrator\'s reset is temporary and ends the sessions; "temporary": false opts out of both create and reset', async () => {
      assert.equal(json(await create('vera', { temporary: false }))['password_change_required'], false);
      const first = await login('vera', USER_PASSWORD);
      assert.equal(first.statusCode, 200);
      assert.equal(json(first)['password_change_required'], undefined);
      const token = json(first)['token'] as string;
      assert.equal((await h.request({ method: 'GET', url: '/v1/me/tokens', token })).statusCode, 200);

      const since = await lastAuditSeq(h);
      assert.equal((await reset('vera')).statusCode, 204);
      const [resetRow] = await auditRows(h, { type: 'password_reset', after: since });
      assert.equal(resetRow?.details['temporary_password'], true);
      assertProblem(await h.request({ method: 'GET', url: '/v1/me', token }), { status: 401, code: 'unauthenticated' });
      assert.equal((await adminView('vera'))['password_change_required'], true);
      const restricted = await restrictedLogin('vera', USER_PASSWORD);
      assertProblem(await h.request({ method: 'POST', url: '/v1/auth/renew', token: restricted }), { status: 403, code: 'password_change_required' });

      assert.equal((await reset('vera', { temporary: false })).statusCode, 204);
      assert.equal((await adminView('vera'))['password_change_required'], false);
      assertProblem(await h.request({ method: 'GET', url: '/v1/me', token: restricted }), { status: 401, code: 'unauthenticated' });
      assert.equal(json(await login('vera', USER_PASSWORD))['password_change_required'], undefined);

      // Only a boolean, and never for a system account.
      assertProblem(await create('wes', { temporary: 'no' }), { status: 400, code: 'invalid_request' });
      assertProblem(await reset('vera', { temporary: 0 }), { status: 400, code: 'invalid_request' });
      const system = await h.request({ method: 'POST', url: '/v1/accounts', token: h.adminToken, body: { username: 'svc', kind: 'system', temporary: false } });
      assertProblem(system, { status: 400, code: 'invalid_request' });
    });

    test('a temporary password on an account with TOTP still needs the code, then the change', async () => {
      assert.equal((await create('xena', { temporary: false })).statusCode, 201);
      const { secret } = await enrollTotp(h, json(await login('xena', USER_PASSWORD))['token'] as string);
      assert.equal((await reset('xena')).statusCode, 204);
      assertProblem(await login('xena', USER_PASSWORD), { status: 401, code: 'totp_required' });
      const token = await restrictedLogin('xena', USER_PASSWORD, nextCode(h, secret));
      assertProblem(await h.request({ method: 'DELETE', url: '/v1/me/totp', token, body: { password: USER_PASSWORD, code: nextCode(h, secret) } }), {
        status: 403,
        code: 'password_change_required',
      });
      assert.equal((await changeOwn(token, USER_PASSWORD, OWN_PASSWORD)).statusCode, 204);
      assert.equal((await h.request({ method: 'GET', url: '/v1/me/tokens', token })).statusCode, 200);
    });
  });

  describe(`an administrator's TOTP reset that leaves a short password [${dialect}]`, () => {
    let h: Harness;
    before(async () => {
      h = await createHarness(dialect);
    });
    after(() => h.close());

    const login = (username: string, password: string, code?: string) =>
      h.request({ method: 'POST', url: '/v1/auth/login', body: { username, password, ...(code === undefined ? {} : { totp_code: code }) } });
    const changeOwn = (token: string, current: string, next: string) =>
      h.request({ method: 'PUT', url: '/v1/me/password', token, body: { current_password: current, new_password: next } });

    /** A person with TOTP and a 9-character password (allowed while TOTP is on); returns a live session. */
    async function shortWithTotp(username: string): Promise<{ token: string; secret: string }> {
      await h.createAccount(username);
      const session = json(await login(username, USER_PASSWORD))['token'] as string;
      const { secret } = await enrollTotp(h, session);
      assert.equal((await changeOwn(session, USER_PASSWORD, SHORT_PASSWORD)).statusCode, 204);
      const withCode = await login(username, SHORT_PASSWORD, nextCode(h, secret));
      assert.equal(withCode.statusCode, 200, withCode.body);
      // Nine characters are enough next to TOTP: no change is asked.
      assert.equal(json(withCode)['password_change_required'], undefined);
      return { token: json(withCode)['token'] as string, secret };
    }

    test('after the reset, the short password logs in only to be replaced by one that meets the no-TOTP rule', async () => {
      const { token } = await shortWithTotp('yuri');
      assert.equal((await h.request({ method: 'DELETE', url: '/v1/accounts/yuri/totp', token: h.adminToken })).statusCode, 204);
      // The reset ends the sessions the lost authenticator opened.
      assertProblem(await h.request({ method: 'GET', url: '/v1/me', token }), { status: 401, code: 'unauthenticated' });

      const since = await lastAuditSeq(h);
      const response = await login('yuri', SHORT_PASSWORD);
      assert.equal(response.statusCode, 200, response.body);
      assert.equal(json(response)['password_change_required'], true);
      const [row] = await auditRows(h, { type: 'login_succeeded', after: since });
      assert.equal(row?.details['password_change_required'], 'password_too_short');
      const session = json(response)['token'] as string;
      assert.equal(json(await h.request({ method: 'GET', url: '/v1/me', token: session }))['password_change_required'], true);
      for (const [method, url, body] of [
        ['GET', '/v1/me/tokens', undefined],
        ['POST', '/v1/auth/renew', undefined],
        ['POST', '/v1/me/totp', { password: SHORT_PASSWORD }],
      ] as const) {
        assertProblem(await h.request({ method, url, token: session, body }), { status: 403, code: 'password_change_required' });
      }
      // Stored with the account: logging in again does not get round it.
      assert.equal(json(await login('yuri', SHORT_PASSWORD))['password_change_required'], true);

      // The new password must meet the rule for an account without TOTP.
      const tooShort = await changeOwn(session, SHORT_PASSWORD, 'Wd4$nPq8Lm3#Tb');
      assert.equal(assertProblem(tooShort, { status: 400, code: 'invalid_request' })['reason'], 'password_too_short');
      assert.equal((await changeOwn(session, SHORT_PASSWORD, OWN_PASSWORD)).statusCode, 204);
      assert.equal((await h.request({ method: 'GET', url: '/v1/me/tokens', token: session })).statusCode, 200);
      const after = await login('yuri', OWN_PASSWORD);
      assert.equal(after.statusCode, 200);
      assert.equal(json(after)['password_change_required'], undefined);
    });

    test('a long password after the reset asks for no change', async () => {
      await h.createAccount('zack');
      const session = json(await login('zack', USER_PASSWORD))['token'] as string;
      await enrollTotp(h, session);
      assert.equal((await h.request({ method: 'DELETE', url: '/v1/accounts/zack/totp', token: h.adminToken })).statusCode, 204);
      const response = await login('zack', USER_PASSWORD);
      assert.equal(response.statusCode, 200);
      assert.equal(json(response)['password_change_required'], undefined);
      assert.equal((await h.request({ method: 'GET', url: '/v1/me/tokens', token: json(response)['token'] as string })).statusCode, 200);
    });
  });
}
