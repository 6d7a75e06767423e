import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { LightMyRequestResponse } from 'fastify';
import { parsePhc } from '../../src/domain/password.ts';
import { DIALECTS } from '../support/databases.ts';
import { USER_PASSWORD, createHarness, type Harness } from '../support/harness.ts';
import { assertNoSecrets, assertProblem, issueToken, recordingRequests } from '../support/inspect.ts';

/** docs/api.md, "Login and sessions" and "Own account": /v1/me, PUT /v1/me/password (SECURITY.md §5), logout. */

const NEW_PASSWORD = 'my new and improved passphrase';

for (const dialect of DIALECTS) {
  describe(`the caller's own account [${dialect}]`, () => {
    let h: Harness;
    let request: Harness['request'];
    let responses: LightMyRequestResponse[];
    const me = (token: string) => request({ method: 'GET', url: '/v1/me', token });
    const changePassword = (token: string, body: Record<string, unknown>) => request({ method: 'PUT', url: '/v1/me/password', token, body });
    const login = (username: string, password: string) => request({ method: 'POST', url: '/v1/auth/login', body: { username, password } });
    const storedHash = async (username: string) =>
      (await h.runtime.database.db.selectFrom('accounts').select('password_hash').where('username', '=', username).executeTakeFirstOrThrow())
        .password_hash;

    before(async () => {
      h = await createHarness(dialect);
      ({ request, responses } = recordingRequests(h));
      await h.createAccount('pat');
      await h.createAccount('quinn');
      await h.createAccount('relay', 'system');
    });
    after(() => h.close());

    test('GET /v1/me shows the calling human account with its current roles', async () => {
      const token = await h.login('pat', USER_PASSWORD);
      const response = await me(token);
      assert.equal(response.statusCode, 200);
      const account = response.json();
      assert.equal(account.username, 'pat');
      assert.equal(account.kind, 'human');
      assert.deepEqual(account.roles, []);
      assert.equal(account.id, (await h.principal(token)).account.id);
    });

    test('GET /v1/me works with a system account token', async () => {
      const response = await me(await issueToken(h, 'relay'));
      assert.equal(response.statusCode, 200);
      assert.equal(response.json().username, 'relay');
      assert.equal(response.json().kind, 'system');
    });

    test('changing your password with a wrong current password is refused, audited, and changes nothing', async () => {
      const token = await h.login('pat', USER_PASSWORD);
      const other = await h.login('pat', USER_PASSWORD);
      const hashBefore = await storedHash('pat');
      const response = await changePassword(token, { current_password: 'not my password at all', new_password: NEW_PASSWORD });
      assertProblem(response, { status: 401, code: 'invalid_credentials' });
      assert.equal(await storedHash('pat'), hashBefore);
      assert.equal((await me(token)).statusCode, 200);
      assert.equal((await me(other)).statusCode, 200);
      const audit = await h.runtime.database.db
        .selectFrom('audit_events')
        .selectAll()
        .where('type', '=', 'password_changed')
        .where('outcome', '=', 'failure')
        .execute();
      assert.equal(audit.length, 1);
      assert.equal(JSON.parse(audit[0]?.details ?? '{}').reason, 'wrong_current_password');
      assert.equal(audit[0]?.subject_username, 'pat');
    });

    test('the current password is required: a body without it is 400', async () => {
      const token = await h.login('pat', USER_PASSWORD);
      const hashBefore = await storedHash('pat');
      assertProblem(await changePassword(token, { new_password: NEW_PASSWORD }), { status: 400, code: 'invalid_request' });
      assertProblem(await changePassword(token, { current_password: '', new_password: NEW_PASSWORD }), { status: 400, code: 'invalid_request' });
      assert.equal(await storedHash('pat'), hashBefore);
    });

    test('a new password that breaks the rules is refused with its reason', async () => {
      const token = await h.login('pat', USER_PASSWORD);
      const cases: [string, string][] = [
        ['too short', 'password_too_short'],
        ['pat-is-the-best-password', 'password_contains_username'],
        ['password1234567890', 'password_common'],
      ];
      for (const [password, reason] of cases) {
        const body = assertProblem(await changePassword(token, { current_password: USER_PASSWORD, new_password: password }), {
          status: 400,
          code: 'invalid_request',
        });
        assert.equal(body['reason'], reason);
      }
      assert.ok(await h.login('pat', USER_PASSWORD));
    });

    test('changing your password keeps the presented token and revokes every other token of the account', async () => {
      const current = await h.login('quinn', USER_PASSWORD);
      const otherSession = await h.login('quinn', USER_PASSWORD);
      const patToken = await h.login('pat', USER_PASSWORD);

      const response = await changePassword(current, { current_password: USER_PASSWORD, new_password: NEW_PASSWORD });
      assert.equal(response.statusCode, 204, response.body);
      assert.equal((await me(current)).statusCode, 200);
      assertProblem(await me(otherSession), { status: 401, code: 'unauthenticated' });
      assert.equal((await me(patToken)).statusCode, 200, "another account's token is untouched");

      assertProblem(await login('quinn', USER_PASSWORD), { status: 401, code: 'invalid_credentials' });
      assert.equal((await login('quinn', NEW_PASSWORD)).statusCode, 200);
      const hash = parsePhc((await storedHash('quinn')) ?? '');
      assert.equal(hash?.params.ln, h.config.passwords.scrypt.ln);
    });

    test('a system account cannot change a password it does not have', async () => {
      const response = await changePassword(await issueToken(h, 'relay'), { current_password: USER_PASSWORD, new_password: NEW_PASSWORD });
      assertProblem(response, { status: 403, code: 'forbidden' });
      assert.equal(await storedHash('relay'), null);
    });

    test('logout revokes the presented token only, and a second logout with it is 401', async () => {
      const token = await h.login('pat', USER_PASSWORD);
      const other = await h.login('pat', USER_PASSWORD);
      const jti = (await h.principal(token)).token.jti;
      const response = await request({ method: 'POST', url: '/v1/auth/logout', token });
      assert.equal(response.statusCode, 204);
      assert.equal(response.body, '');
      assertProblem(await me(token), { status: 401, code: 'unauthenticated' });
      assert.equal((await me(other)).statusCode, 200);
      assertProblem(await request({ method: 'POST', url: '/v1/auth/logout', token }), { status: 401, code: 'unauthenticated' });

      const row = await h.runtime.database.db.selectFrom('tokens').selectAll().where('jti', '=', jti).executeTakeFirstOrThrow();
      assert.notEqual(row.revoked_at, null);
      assert.equal(row.revoked_reason, 'logout');
      const audit = await h.runtime.database.db.selectFrom('audit_events').selectAll().where('type', '=', 'token_revoked').execute();
      assert.ok(audit.some((r) => JSON.parse(r.details).jti === jti && r.actor_username === 'pat'));
    });

    test('a system account can log out its own token', async () => {
      const token = await issueToken(h, 'relay');
      assert.equal((await request({ method: 'POST', url: '/v1/auth/logout', token })).statusCode, 204);
      assertProblem(await me(token), { status: 401, code: 'unauthenticated' });
    });

    test('no response in this file carried a password hash or a password', () => {
      assertNoSecrets(responses, [USER_PASSWORD, NEW_PASSWORD]);
    });
  });
}
