import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { DIALECTS } from '../support/databases.ts';
import { USER_PASSWORD, createHarness, type Harness } from '../support/harness.ts';
import { assertProblem } from '../support/inspect.ts';
import { APP_ORIGIN, WEB_CONFIG } from '../support/web.ts';

/**
 * SECURITY.md §54: GET /v1/auth/forward answers a reverse proxy with the same check as POST /v1/token/validate, from a
 * bearer token or the mcias_token cookie; a browser without one is sent to the login page only for an allowed origin.
 */

const BROWSER = { accept: 'text/html,application/xhtml+xml,*/*;q=0.8' };
const LOGIN = 'https://auth.example.test/login';

for (const dialect of DIALECTS) {
  describe(`forward-auth [${dialect}]`, () => {
    let h: Harness;
    let token: string;
    const forward = (headers: Record<string, string> = {}, query = '') =>
      h.app.inject({ method: 'GET', url: `/v1/auth/forward${query}`, headers });

    before(async () => {
      h = await createHarness(dialect, { config: WEB_CONFIG });
      await h.createAccount('alice');
      for (const role of ['wiki', 'staff']) {
        assert.equal((await h.request({ method: 'POST', url: '/v1/roles', token: h.adminToken, body: { name: role } })).statusCode, 201);
        assert.equal((await h.request({ method: 'PUT', url: `/v1/accounts/alice/roles/${role}`, token: h.adminToken })).statusCode, 204);
      }
      token = await h.login('alice', USER_PASSWORD);
    });
    after(() => h.close());

    test('a bearer token: 200, the account in headers, no body, not cacheable', async () => {
      const response = await forward({ authorization: `Bearer ${token}` });
      assert.equal(response.statusCode, 200, response.body);
      assert.equal(response.body, '');
      assert.equal(response.headers['x-mcias-user'], 'alice');
      assert.deepEqual(String(response.headers['x-mcias-roles']).split(',').sort(), ['staff', 'wiki']);
      assert.equal(response.headers['x-mcias-account-id'], (await h.principal(token)).account.id);
      assert.equal(response.headers['cache-control'], 'no-store');
    });

    test('the mcias_token cookie: 200; a bearer header wins over the cookie', async () => {
      assert.equal((await forward({ cookie: `other=1; mcias_token=${token}` })).headers['x-mcias-user'], 'alice');
      const both = await forward({ authorization: `Bearer ${h.adminToken}`, cookie: `mcias_token=${token}` });
      assert.equal(both.headers['x-mcias-user'], 'admin');
    });

    test('no token, a garbled one or a forged one: 401 problem+json, no account headers', async () => {
      // A different second-to-last character always changes signature bits (the last one also holds padding bits, and
      // a token may already end in "AA", so overwriting the last two was a forgery only 255 times in 256).
      const forged = `${token.slice(0, -2)}${token.at(-2) === 'A' ? 'B' : 'A'}${token.at(-1)}`;
      const cases: Record<string, string>[] = [{}, { cookie: 'mcias_token=not a token' }, { authorization: `Bearer ${forged}` }, { cookie: `mcias_token=${token}x` }];
      for (const headers of cases) {
        const response = await forward(headers);
        assertProblem(response, { status: 401, code: 'unauthenticated' });
        assert.equal(response.headers['x-mcias-user'], undefined);
        assert.equal(response.headers['location'], undefined);
      }
    });

    test('a browser from an allowed origin is sent to the login page with its URL (Caddy, Traefik: 302)', async () => {
      const response = await forward({ ...BROWSER, 'x-forwarded-proto': 'https', 'x-forwarded-host': 'app.example.test', 'x-forwarded-uri': '/pages/a?b=1&c=2' });
      assert.equal(response.statusCode, 302);
      assert.equal(response.headers['location'], `${LOGIN}?rd=${encodeURIComponent(`${APP_ORIGIN}/pages/a?b=1&c=2`)}`);
    });

    test('nginx (X-Original-URL) gets a 401 carrying the Location, which its error_page follows', async () => {
      const response = await forward({ ...BROWSER, 'x-original-url': `${APP_ORIGIN}/x` });
      assertProblem(response, { status: 401, code: 'unauthenticated' });
      assert.equal(response.headers['location'], `${LOGIN}?rd=${encodeURIComponent(`${APP_ORIGIN}/x`)}`);
    });

    test('no redirect for an origin that is not allowed, for a non-browser, or for a token that is not valid but present', async () => {
      const cases: Record<string, string>[] = [
        { ...BROWSER, 'x-forwarded-proto': 'https', 'x-forwarded-host': 'evil.example' },
        { ...BROWSER, 'x-forwarded-proto': 'http', 'x-forwarded-host': 'app.example.test' },
        { ...BROWSER, 'x-original-url': 'https://app.example.test@evil.example/' },
        { ...BROWSER, 'x-original-url': '//evil.example/' },
        { accept: 'application/json', 'x-forwarded-proto': 'https', 'x-forwarded-host': 'app.example.test' },
      ];
      for (const headers of cases) {
        const response = await forward(headers);
        assertProblem(response, { status: 401, code: 'unauthenticated' });
        assert.equal(response.headers['location'], undefined, JSON.stringify(headers));
      }
    });

    test('?role= requires the role: 403 without it; a name that is no role name is 400', async () => {
      assert.equal((await forward({ authorization: `Bearer ${token}` }, '?role=wiki')).statusCode, 200);
      assert.equal((await forward({ authorization: `Bearer ${token}` }, '?role=WIKI')).statusCode, 200);
      assertProblem(await forward({ authorization: `Bearer ${token}` }, '?role=billing'), { status: 403, code: 'forbidden' });
      // The admin role does not stand in for another: the proxy asked for this one.
      assertProblem(await forward({ authorization: `Bearer ${h.adminToken}` }, '?role=wiki'), { status: 403, code: 'forbidden' });
      assertProblem(await forward({ authorization: `Bearer ${token}` }, '?role=../x'), { status: 400, code: 'invalid_request' });
      assertProblem(await forward({ authorization: `Bearer ${token}` }, '?other=1'), { status: 400, code: 'invalid_request' });
    });

    test('a revoked token, a disabled account and a role taken away count at the next request', async () => {
      const own = await h.login('alice', USER_PASSWORD);
      assert.equal((await forward({ cookie: `mcias_token=${own}` })).statusCode, 200);
      assert.equal((await h.request({ method: 'POST', url: '/v1/auth/logout', token: own })).statusCode, 204);
      assertProblem(await forward({ cookie: `mcias_token=${own}` }), { status: 401, code: 'unauthenticated' });

      const other = await h.login('alice', USER_PASSWORD);
      assert.equal((await h.request({ method: 'DELETE', url: '/v1/accounts/alice/roles/staff', token: h.adminToken })).statusCode, 204);
      assertProblem(await forward({ authorization: `Bearer ${other}` }, '?role=staff'), { status: 403, code: 'forbidden' });
      assert.equal((await h.request({ method: 'PATCH', url: '/v1/accounts/alice', token: h.adminToken, body: { status: 'disabled' } })).statusCode, 200);
      assertProblem(await forward({ authorization: `Bearer ${other}` }), { status: 401, code: 'unauthenticated' });
      assert.equal((await h.request({ method: 'PATCH', url: '/v1/accounts/alice', token: h.adminToken, body: { status: 'active' } })).statusCode, 200);
      token = await h.login('alice', USER_PASSWORD);
    });

    test('a session whose temporary password is not replaced yet is not let through (as validate calls it inactive)', async () => {
      const created = await h.request({ method: 'POST', url: '/v1/accounts', token: h.adminToken, body: { username: 'tess', kind: 'human', password: USER_PASSWORD } });
      assert.equal(created.statusCode, 201, created.body);
      const temporary = await h.login('tess', USER_PASSWORD);
      assertProblem(await forward({ authorization: `Bearer ${temporary}` }), { status: 401, code: 'unauthenticated' });
      const validated = await h.request({ method: 'POST', url: '/v1/token/validate', body: { token: temporary } });
      assert.deepEqual(validated.json(), { active: false });
    });
  });
}

describe('forward-auth without the login page ([web] enabled = false, the default)', () => {
  let h: Harness;
  before(async () => {
    h = await createHarness(DIALECTS[0] ?? 'sqlite', { config: { tokens: WEB_CONFIG.tokens } });
  });
  after(() => h.close());

  test('a browser gets a 401 and no redirect, and there is no /login', async () => {
    const response = await h.app.inject({
      method: 'GET',
      url: '/v1/auth/forward',
      headers: { ...BROWSER, 'x-forwarded-proto': 'https', 'x-forwarded-host': 'app.example.test' },
    });
    assertProblem(response, { status: 401, code: 'unauthenticated' });
    assert.equal(response.headers['location'], undefined);
    assertProblem(await h.app.inject({ method: 'GET', url: '/login' }), { status: 404, code: 'not_found' });
    const ok = await h.app.inject({ method: 'GET', url: '/v1/auth/forward', headers: { authorization: `Bearer ${h.adminToken}` } });
    assert.equal(ok.statusCode, 200);
  });
});
