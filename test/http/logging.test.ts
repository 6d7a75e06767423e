import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { pino } from 'pino';
import { buildApp } from '../../src/http/app.ts';
import { DIALECTS } from '../support/databases.ts';
import { ADMIN_PASSWORD, USER_PASSWORD, createHarness, type Harness } from '../support/harness.ts';

/**
 * security.md 19 and 30: tokens and passwords never reach the log or the audit trail, though every request is
 * logged (at the most verbose level) and every authentication event audited.
 */

const NEW_PASSWORD = 'a replacement passphrase for logs';

for (const dialect of DIALECTS) {
  describe(`no secrets in logs or the audit trail [${dialect}]`, () => {
    let h: Harness;
    let app: FastifyInstance;
    const lines: string[] = [];
    const tokens: string[] = [];

    before(async () => {
      h = await createHarness(dialect);
      const sink = new Writable({
        write(chunk: Buffer, _encoding, done) {
          lines.push(...chunk.toString('utf8').split('\n').filter((l) => l !== ''));
          done();
        },
      });
      app = await buildApp(h.runtime.services, { bodyLimit: 65_536, trustedProxies: [], logger: pino({ level: 'trace' }, sink) });
      const send = (method: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE', url: string, token?: string, payload?: object) =>
        app.inject({ method, url, headers: token === undefined ? {} : { authorization: `Bearer ${token}` }, ...(payload ? { payload } : {}) });

      // A representative session: logins (good and bad), token use, a password change, admin work, a logout.
      const login = await send('POST', '/v1/auth/login', undefined, { username: 'admin', password: ADMIN_PASSWORD });
      const admin = login.json().token as string;
      tokens.push(admin);
      await send('POST', '/v1/auth/login', undefined, { username: 'admin', password: `${ADMIN_PASSWORD}x` });
      await send('POST', '/v1/accounts', admin, { username: 'logan', kind: 'human', password: USER_PASSWORD });
      const user = (await send('POST', '/v1/auth/login', undefined, { username: 'logan', password: USER_PASSWORD })).json().token as string;
      tokens.push(user);
      await send('GET', '/v1/me', user);
      await send('PUT', '/v1/me/password', user, { current_password: USER_PASSWORD, new_password: NEW_PASSWORD });
      await send('PUT', '/v1/me/password', user, { current_password: 'wrong wrong wrong', new_password: NEW_PASSWORD });
      await send('PUT', '/v1/accounts/logan/password', admin, { password: USER_PASSWORD });
      await send('GET', '/v1/me', user); // revoked by the reset: a 401 that quotes nothing
      await send('GET', '/v1/me', `${admin.slice(0, -4)}AAAA`);
      await send('POST', '/v1/auth/logout', admin);
    });
    after(async () => {
      await app.close();
      await h.close();
    });

    test('every request was logged', () => {
      const requests = lines.map((l) => JSON.parse(l) as { msg?: string }).filter((l) => l.msg === 'request');
      assert.ok(requests.length >= 11, `only ${requests.length} request log lines`);
    });

    test('no log line holds a token, a token signature, a password or a password hash', () => {
      assert.ok(tokens.length === 2 && lines.length > 0);
      for (const line of lines) {
        for (const token of tokens) {
          assert.ok(!line.includes(token), 'a log line holds a token');
          assert.ok(!line.includes(token.split('.')[2] as string), 'a log line holds a token signature');
        }
        for (const password of [ADMIN_PASSWORD, USER_PASSWORD, NEW_PASSWORD]) assert.ok(!line.includes(password), 'a log line holds a password');
        assert.ok(!line.includes('$scrypt$'), 'a log line holds a password hash');
        assert.doesNotMatch(line, /authorization/i);
      }
    });

    test('the audit trail recorded the session, and holds no token, password or hash', async () => {
      const rows = await h.runtime.database.db.selectFrom('audit_events').selectAll().execute();
      const types = new Set(rows.map((r) => r.type));
      for (const type of ['login_succeeded', 'login_failed', 'account_created', 'password_changed', 'password_reset', 'token_revoked']) {
        assert.ok(types.has(type), `no ${type} row`);
      }
      const text = JSON.stringify(rows);
      for (const token of tokens) assert.ok(!text.includes(token.split('.')[2] as string));
      for (const password of [ADMIN_PASSWORD, USER_PASSWORD, NEW_PASSWORD]) assert.ok(!text.includes(password));
      assert.ok(!text.includes('$scrypt$'));
    });
  });
}
