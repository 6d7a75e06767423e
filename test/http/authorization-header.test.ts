import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { auditRows, lastAuditSeq } from '../support/audit.ts';
import { DIALECTS } from '../support/databases.ts';
import { ADMIN_PASSWORD, USER_PASSWORD, createHarness, type Harness } from '../support/harness.ts';
import { assertProblem } from '../support/inspect.ts';

/**
 * docs/api.md conventions on the Authorization header: the scheme name is case-insensitive (RFC 9110 §11.1), the token
 * is taken exactly as sent, and a request carrying two Authorization or two Host fields is refused before
 * authentication (SECURITY.md §34). The real-socket twin of the last is in test/e2e/client-errors.test.ts.
 */

/** The token with the case of its letters swapped: the same letters, a different token. */
function swapCase(token: string): string {
  return token.replace(/[A-Za-z]/g, (c) => (c === c.toLowerCase() ? c.toUpperCase() : c.toLowerCase()));
}

for (const dialect of DIALECTS) {
  describe(`the Authorization header [${dialect}]`, () => {
    let h: Harness;
    let token: string;
    before(async () => {
      h = await createHarness(dialect);
      await h.createAccount('ada');
      token = await h.login('ada', USER_PASSWORD);
    });
    after(() => h.close());

    const me = (authorization: string) => h.request({ method: 'GET', url: '/v1/me', headers: { authorization } });

    test('the scheme is accepted in any case', async () => {
      for (const scheme of ['Bearer', 'bearer', 'BEARER', 'bEaReR']) {
        const response = await me(`${scheme} ${token}`);
        assert.equal(response.statusCode, 200, `${scheme}: ${response.body}`);
        assert.equal(response.json().username, 'ada', scheme);
      }
    });

    test('the token is not case-folded, and other schemes and spacings are still refused', async () => {
      for (const authorization of [`bearer ${swapCase(token)}`, `Bearer ${swapCase(token)}`, `Basic ${token}`, `Bearer  ${token}`, `Bearer${token}`, token, `bearer`]) {
        assertProblem(await me(authorization), { status: 401, code: 'unauthenticated' });
      }
    });

    /** Header values given as an array reach the app as that many separate fields, as Node parses them. */
    const twice = (url: string, headers: Record<string, string | string[]>, method: 'GET' | 'POST' = 'GET', payload?: unknown) =>
      h.app.inject({ method, url, headers, ...(payload === undefined ? {} : { payload: payload as object }) });

    test('two Authorization fields are refused with 400 before authentication, whichever comes first', async () => {
      for (const pair of [[`Bearer ${token}`, 'Bearer x'], ['Bearer x', `Bearer ${token}`], [`Bearer ${token}`, `Bearer ${token}`]]) {
        const response = await twice('/v1/me', { authorization: pair });
        assertProblem(response, { status: 400, code: 'invalid_request' });
        assert.match(response.json().detail, /more than one Authorization/);
        assert.equal(response.headers.connection, 'close');
      }
      // On a public route too: the request is ambiguous whatever the route does with it.
      assertProblem(await twice('/healthz', { authorization: ['Bearer a', 'Bearer b'] }), { status: 400, code: 'invalid_request' });
      assert.equal((await me(`Bearer ${token}`)).statusCode, 200, 'one field still works');
    });

    test('two Host fields are refused with 400, and a login carrying them changes nothing', async () => {
      const since = await lastAuditSeq(h);
      const response = await twice('/v1/auth/login', { host: ['localhost', 'evil.example'], 'content-type': 'application/json' }, 'POST', { username: 'admin', password: ADMIN_PASSWORD });
      assertProblem(response, { status: 400, code: 'invalid_request' });
      assert.match(response.json().detail, /more than one Host/);
      assert.deepEqual(await auditRows(h, { after: since }), [], 'no login happened');
      assertProblem(await twice('/v1/me', { host: ['a', 'b'], authorization: `Bearer ${token}` }), { status: 400, code: 'invalid_request' });
    });
  });
}
