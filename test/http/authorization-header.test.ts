import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { DIALECTS } from '../support/databases.ts';
import { USER_PASSWORD, createHarness, type Harness } from '../support/harness.ts';
import { assertProblem } from '../support/inspect.ts';

/**
 * docs/api.md conventions on the Authorization header: the scheme name is case-insensitive (RFC 9110 §11.1), the token
 * is taken exactly as sent.
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
  });
}
