import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { LightMyRequestResponse } from 'fastify';
import { sql } from 'kysely';
import { MciasError } from '../../src/domain/errors.ts';
import { DIALECTS } from '../support/databases.ts';
import { ADMIN_PASSWORD, USER_PASSWORD, createHarness, type Harness } from '../support/harness.ts';
import { assertProblem } from '../support/inspect.ts';

/**
 * docs/api.md conventions and SECURITY.md §27, §32: problem+json errors, X-Request-Id and the security headers on every
 * response (successes, 4xx, the router's own errors and 500s), and a 500 that gives nothing away.
 */

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

function assertCommonHeaders(response: LightMyRequestResponse, what: string): void {
  assert.match(String(response.headers['x-request-id']), UUID, `${what}: X-Request-Id`);
  assert.match(String(response.headers['strict-transport-security']), /(^|;\s*)max-age=63072000(;|$)/, `${what}: HSTS`);
  assert.equal(response.headers['x-content-type-options'], 'nosniff', `${what}: nosniff`);
}

for (const dialect of DIALECTS) {
  describe(`error answers and response headers [${dialect}]`, () => {
    let h: Harness;
    let userToken: string;
    before(async () => {
      h = await createHarness(dialect);
      await h.createAccount('erin');
      await h.createAccount('gus');
      userToken = await h.login('erin', USER_PASSWORD);
    });
    after(() => h.close());

    /** One request of every kind of outcome; each must carry the common headers. */
    const outcomes: [string, () => Promise<LightMyRequestResponse>, number][] = [
      ['GET /healthz (200)', () => h.request({ method: 'GET', url: '/healthz' }), 200],
      ['GET /readyz (200)', () => h.request({ method: 'GET', url: '/readyz' }), 200],
      ['GET /.well-known/jwks.json (200)', () => h.request({ method: 'GET', url: '/.well-known/jwks.json' }), 200],
      ['GET /openapi.json (200)', () => h.request({ method: 'GET', url: '/openapi.json' }), 200],
      ['HEAD /healthz (200)', () => h.app.inject({ method: 'HEAD', url: '/healthz' }), 200],
      ['login (200)', () => h.request({ method: 'POST', url: '/v1/auth/login', body: { username: 'admin', password: ADMIN_PASSWORD } }), 200],
      ['GET /v1/me (200)', () => h.request({ method: 'GET', url: '/v1/me', token: h.adminToken }), 200],
      ['POST /v1/roles (201)', () => h.request({ method: 'POST', url: '/v1/roles', token: h.adminToken, body: { name: `r${Date.now()}` } }), 201],
      ['PUT a role grant (204)', () => h.request({ method: 'PUT', url: '/v1/accounts/gus/roles/admin', token: h.adminToken }), 204],
      ['malformed JSON (400)', () => h.request({ method: 'POST', url: '/v1/auth/login', body: '{' }), 400],
      ['failed login (401)', () => h.request({ method: 'POST', url: '/v1/auth/login', body: { username: 'admin', password: 'wrong wrong wrong' } }), 401],
      ['no token (401)', () => h.request({ method: 'GET', url: '/v1/me' }), 401],
      ['not an admin (403)', () => h.request({ method: 'GET', url: '/v1/roles', token: userToken }), 403],
      ['unknown route (404)', () => h.request({ method: 'GET', url: '/no/such/route' }), 404],
      ['unknown method on a known path (404)', () => h.request({ method: 'DELETE', url: '/healthz' }), 404],
      ['unknown account (404)', () => h.request({ method: 'GET', url: '/v1/accounts/nobody', token: h.adminToken }), 404],
      ['duplicate account (409)', () => h.request({ method: 'POST', url: '/v1/accounts', token: h.adminToken, body: { username: 'admin', kind: 'system' } }), 409],
      ['2 MiB body (413)', () => h.request({ method: 'POST', url: '/v1/auth/login', body: JSON.stringify({ username: 'x'.repeat(2 * 1024 * 1024) }) }), 413],
      ['over-long path parameter (414)', () => h.request({ method: 'GET', url: `/v1/accounts/${'a'.repeat(5_000)}`, token: h.adminToken }), 414],
      ['broken percent-escape (400)', () => h.request({ method: 'GET', url: '/v1/accounts/%zz', token: h.adminToken }), 400],
      ['text/plain body (415)', () => h.request({ method: 'POST', url: '/v1/auth/login', body: 'hi', headers: { 'content-type': 'text/plain' } }), 415],
    ];

    for (const [what, send, status] of outcomes) {
      test(`${what} carries X-Request-Id, HSTS max-age=63072000 and nosniff`, async () => {
        const response = await send();
        assert.equal(response.statusCode, status, response.body.slice(0, 300));
        assertCommonHeaders(response, what);
        if (status >= 400) assertProblem(response, { status });
      });
    }

    test('every response gets its own request id, and a client-supplied X-Request-Id is not echoed', async () => {
      const ids = new Set<string>();
      for (let i = 0; i < 5; i++) {
        const response = await h.request({ method: 'GET', url: '/healthz', headers: { 'x-request-id': 'attacker\r\nchosen' } });
        const id = String(response.headers['x-request-id']);
        assert.match(id, UUID);
        ids.add(id);
      }
      assert.equal(ids.size, 5);
    });

    test('a problem names its code, status and request id, and the detail of a 4xx says what was wrong', async () => {
      const response = await h.request({ method: 'POST', url: '/v1/accounts', token: h.adminToken, body: { username: 'Erin', kind: 'system' } });
      const body = assertProblem(response, { status: 409, code: 'conflict' });
      assert.equal(body['title'], 'Conflict');
      assert.equal(typeof body['detail'], 'string');
      const missing = assertProblem(await h.request({ method: 'GET', url: '/v1/accounts/ghost', token: h.adminToken }), { status: 404, code: 'not_found' });
      assert.notEqual(missing['request_id'], body['request_id']);
    });

    test('login, /v1/me and error answers are marked Cache-Control: no-store', async () => {
      const login = await h.request({ method: 'POST', url: '/v1/auth/login', body: { username: 'erin', password: USER_PASSWORD } });
      assert.equal(login.statusCode, 200);
      assert.ok(login.json().token);
      assert.equal(login.headers['cache-control'], 'no-store');
      const me = await h.request({ method: 'GET', url: '/v1/me', token: h.adminToken });
      assert.equal(me.headers['cache-control'], 'no-store');
      const failed = await h.request({ method: 'POST', url: '/v1/auth/login', body: { username: 'erin', password: 'not the password at all' } });
      assert.equal(failed.headers['cache-control'], 'no-store');
    });

    test('an unexpected error is a bare 500 problem: no message, stack, SQL or driver detail', async (t) => {
      const accounts = h.runtime.services.accounts;
      // A genuine driver error, whose message quotes the SQL and names the table.
      t.mock.method(accounts, 'list', async () => {
        await sql`select secret_column from no_such_table_xyzzy`.execute(h.runtime.database.db);
        return [];
      });
      const response = await h.request({ method: 'GET', url: '/v1/accounts', token: h.adminToken });
      const body = assertProblem(response, { status: 500, code: 'internal' });
      assertCommonHeaders(response, '500');
      assert.equal(body['detail'], undefined);
      assert.doesNotMatch(response.body, /no_such_table|secret_column|xyzzy/);
    });

    test('a thrown Error with a revealing message becomes a 500 without it', async (t) => {
      t.mock.method(h.runtime.services.roles, 'list', async () => {
        throw new Error(`password hash $scrypt$ln=4,r=8,p=1$abc$def for admin at /srv/mcias/src/x.ts:12`);
      });
      const response = await h.request({ method: 'GET', url: '/v1/roles', token: h.adminToken });
      const body = assertProblem(response, { status: 500, code: 'internal' });
      assert.equal(body['detail'], undefined);
      assert.doesNotMatch(response.body, /password hash|\/srv|abc\$def/);
    });

    test("an internal MciasError's message stays in the log, not the answer", async (t) => {
      t.mock.method(h.runtime.services.accounts, 'list', async () => {
        throw new MciasError('internal', 'sealed signing_keys.private_key of kid-123 failed authentication');
      });
      const response = await h.request({ method: 'GET', url: '/v1/accounts', token: h.adminToken });
      const body = assertProblem(response, { status: 500, code: 'internal' });
      assert.equal(body['detail'], undefined);
      assert.doesNotMatch(response.body, /sealed|kid-123/);
    });

    test('readyz answers 503 problem+json when the database does not answer, and healthz stays up', async (t) => {
      t.mock.method(h.runtime.database, 'ping', async () => {
        throw new Error('connect ECONNREFUSED 10.0.0.5:5432 password authentication failed for user "mcias"');
      });
      const ready = await h.request({ method: 'GET', url: '/readyz' });
      const body = assertProblem(ready, { status: 503 });
      assertCommonHeaders(ready, 'readyz 503');
      assert.doesNotMatch(ready.body, /ECONNREFUSED|10\.0\.0\.5|password/);
      assert.equal(body['code'], 'unavailable');
      assert.equal(ready.headers['retry-after'], '5');
      assert.equal((await h.request({ method: 'GET', url: '/healthz' })).statusCode, 200);
      t.mock.restoreAll();
      assert.equal((await h.request({ method: 'GET', url: '/readyz' })).statusCode, 200);
    });

    test('a presented token is never echoed in an error answer', async () => {
      await h.createAccount('tess');
      const token = await h.login('tess', USER_PASSWORD);
      assert.equal((await h.request({ method: 'POST', url: '/v1/auth/logout', token })).statusCode, 204);
      const revoked = await h.request({ method: 'GET', url: '/v1/me', token });
      assertProblem(revoked, { status: 401, code: 'unauthenticated' });
      for (const part of token.split('.')) assert.ok(!revoked.body.includes(part));
      const [header, payload] = token.split('.');
      const mangled = await h.request({ method: 'GET', url: '/v1/me', headers: { authorization: `Bearer ${header}.${payload}.AAAA` } });
      assertProblem(mangled, { status: 401, code: 'unauthenticated' });
      assert.ok(!mangled.body.includes(payload as string));
    });
  });
}
