import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { DIALECTS } from '../support/databases.ts';
import { ADMIN_PASSWORD, createHarness, type Harness } from '../support/harness.ts';
import { assertDatabaseUnchanged, assertProblem, snapshotDatabase } from '../support/inspect.ts';

/**
 * docs/api.md conventions: `not_found` 404 for every unknown route, with or without a body. A URL typo must say "no such
 * route", not "this route takes no request body" or "not valid JSON", or the app author looks in the wrong place. The
 * route is decided before the body is read, so no body (malformed, oversized, of any type) changes the answer.
 */

const MIB = 1024 * 1024;

/** Typos an app author makes, each next to a real route. */
const UNKNOWN_TARGETS: readonly (readonly [string, string])[] = [
  ['POST', '/v1/token/validat'],
  ['POST', '/v1/token/validate/'],
  ['POST', '/v1/auth/Login'],
  ['POST', '/v1/auth/login/'],
  ['GET', '/v1/me/'],
  ['PUT', '/v1/me/passwords'],
  ['POST', '/v1/accounts/'],
  ['GET', '/v2/me'],
  ['GET', '/'],
  ['GET', '/no/such/route'],
  // A known path, a method it does not serve.
  ['DELETE', '/healthz'],
  ['PUT', '/v1/auth/login'],
  ['GET', '/v1/token/validate'],
  ['PATCH', '/v1/roles'],
  ['OPTIONS', '/v1/auth/login'],
];

/** Every kind of body: [what, payload, content type]. */
const BODIES: readonly (readonly [string, string | undefined, string | undefined])[] = [
  ['no body', undefined, undefined],
  ['a valid JSON body', '{"token":"abc"}', 'application/json'],
  ['an empty JSON object', '{}', 'application/json'],
  ['an empty body marked JSON', '', 'application/json'],
  ['malformed JSON', '{"token":', 'application/json'],
  ['a JSON null', 'null', 'application/json'],
  ['a 2 MiB JSON body', JSON.stringify({ padding: 'x'.repeat(2 * MIB) }), 'application/json'],
  ['a __proto__ body', '{"__proto__":{"admin":true}}', 'application/json'],
  ['a body with a duplicated key', '{"kind":"human","kind":"system"}', 'application/json'],
  ['a text/plain body', 'hello', 'text/plain'],
  ['a form body', 'username=admin&password=x', 'application/x-www-form-urlencoded'],
  ['an XML body', '<login/>', 'application/xml'],
  ['a JSON body without a content type', '{"token":"abc"}', undefined],
];

for (const dialect of DIALECTS) {
  describe(`unknown routes answer 404 not_found, whatever the body [${dialect}]`, () => {
    let h: Harness;
    before(async () => {
      h = await createHarness(dialect);
    });
    after(() => h.close());

    for (const [method, url] of UNKNOWN_TARGETS) {
      test(`${method} ${url}: 404 with and without every kind of body, anonymous or with a token; nothing written`, async () => {
        for (const [what, payload, contentType] of BODIES) {
          for (const token of [undefined, h.adminToken]) {
            const headers: Record<string, string> = {};
            if (contentType !== undefined) headers['content-type'] = contentType;
            if (token !== undefined) headers['authorization'] = `Bearer ${token}`;
            const before = await snapshotDatabase(h.runtime.database.db);
            const response = await h.app.inject({ method: method as 'GET', url, headers, ...(payload === undefined ? {} : { payload }) });
            const context = `${method} ${url} with ${what}${token === undefined ? '' : ' and a token'}`;
            const body = assertProblem(response, { status: 404, code: 'not_found' });
            assert.equal(body['detail'], 'no such route', context);
            assert.equal(response.headers['x-content-type-options'], 'nosniff', context);
            assert.match(String(response.headers['strict-transport-security']), /max-age=63072000/, context);
            // A body that was announced is left unread, so the connection is not kept for it.
            if (payload !== undefined && payload !== '') assert.equal(response.headers['connection'], 'close', context);
            assertDatabaseUnchanged(before, await snapshotDatabase(h.runtime.database.db), { what: context });
          }
        }
      });
    }

    test('the real routes next to those typos still answer as before (the typos above were the only change)', async () => {
      const login = await h.request({ method: 'POST', url: '/v1/auth/login', body: { username: 'admin', password: ADMIN_PASSWORD } });
      assert.equal(login.statusCode, 200, login.body);
      const validate = await h.request({ method: 'POST', url: '/v1/token/validate', body: { token: h.adminToken } });
      assert.equal(validate.statusCode, 200, validate.body);
      assert.equal(validate.json().active, true);
      assert.equal((await h.request({ method: 'GET', url: '/v1/me', token: h.adminToken })).statusCode, 200);
      assert.equal((await h.request({ method: 'GET', url: '/healthz' })).statusCode, 200);
      // A known route still refuses a body it does not take, and a bad body on a route that takes one is still 400/413/415.
      const bodyOnGet = await h.request({ method: 'GET', url: '/v1/me', token: h.adminToken, body: { a: 1 } });
      assertProblem(bodyOnGet, { status: 400, code: 'invalid_request' });
      assertProblem(await h.request({ method: 'POST', url: '/v1/token/validate', body: '{"token":' }), { status: 400, code: 'invalid_request' });
      assertProblem(await h.request({ method: 'POST', url: '/v1/token/validate', body: JSON.stringify({ token: 'x'.repeat(2 * MIB) }) }), {
        status: 413,
        code: 'payload_too_large',
      });
      assertProblem(await h.request({ method: 'POST', url: '/v1/token/validate', body: 'hi', headers: { 'content-type': 'text/plain' } }), {
        status: 415,
      });
    });
  });
}
