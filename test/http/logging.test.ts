import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { DIALECTS } from '../support/databases.ts';
import { ADMIN_PASSWORD, USER_PASSWORD, createHarness, type Harness } from '../support/harness.ts';
import { loggingApp } from '../support/log-capture.ts';

/**
 * SECURITY.md §19 and §30: tokens and passwords never reach the log or the audit trail, though every request is
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
      app = await loggingApp(h, lines);
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

for (const dialect of DIALECTS) {
  describe(`a token in a URL reaches no log line (SECURITY.md §19) [${dialect}]`, () => {
    let h: Harness;
    let app: FastifyInstance;
    let token: string;
    const lines: string[] = [];
    const entries = () => lines.map((l) => JSON.parse(l) as Record<string, unknown>);

    before(async () => {
      h = await createHarness(dialect);
      app = await loggingApp(h, lines);
      token = h.adminToken;
    });
    after(async () => {
      await app.close();
      await h.close();
    });

    /** Asserts that no log line holds the token, its payload or its signature (as text or as decimal bytes). */
    function assertTokenNotLogged(): void {
      const [, payload, signature] = token.split('.') as [string, string, string];
      const asBytes = [...Buffer.from(signature.slice(0, 24))].join(',');
      assert.ok(lines.length > 0);
      for (const line of lines) {
        for (const part of [token, payload, signature, asBytes]) assert.ok(!line.includes(part), `a log line holds the token: ${line.slice(0, 300)}`);
        assert.doesNotMatch(line, /rawPacket/);
      }
    }

    test('requests with the token in the query string or the path are refused, and logged without it', async () => {
      const refused: [string, string, number][] = [
        ['GET', `/v1/me?token=${token}`, 401],
        ['GET', `/v1/me?access_token=${token}&other=1`, 401],
        ['GET', `/v1/me?${token}`, 401],
        ['POST', `/v1/auth/logout?token=${token}`, 401],
        ['GET', `/v1/token/validate/${token}`, 404],
        ['GET', `/v1/me/tokens/${token}?token=${token}`, 404],
        // Errors raised by the router before any hook (frameworkErrors): a broken escape, an over-long parameter.
        ['GET', `/v1/accounts/%zz?token=${token}`, 400],
        ['GET', `/v1/accounts/${'a'.repeat(5_000)}?token=${token}`, 414],
      ];
      for (const [method, url, status] of refused) {
        const response = await app.inject({ method: method as 'GET', url });
        assert.equal(response.statusCode, status, `${method} ${url.slice(0, 60)}: ${response.body}`);
      }
      // With the token also in the header the request succeeds; the query is still not logged.
      const allowed = await app.inject({ method: 'GET', url: `/v1/me?token=${token}`, headers: { authorization: `Bearer ${token}` } });
      assert.equal(allowed.statusCode, 200);

      const access = entries().filter((e) => e['msg'] === 'request');
      assert.ok(access.length >= refused.length + 1, `only ${access.length} access-log lines`);
      const urls = access.map((e) => e['url']);
      assert.ok(urls.includes('/v1/me?[redacted]'), JSON.stringify(urls));
      assert.ok(urls.includes('/v1/token/validate/[redacted]'), JSON.stringify(urls));
      assert.ok(urls.includes('/v1/me/tokens/[redacted]?[redacted]'), JSON.stringify(urls));
      // The router's own refusals get their access-log line too.
      assert.ok(access.some((e) => e['status'] === 400 && e['url'] === '/v1/accounts/%zz?[redacted]'), JSON.stringify(urls));
      assert.ok(access.some((e) => e['status'] === 414 && e['url'] === `/v1/accounts/${'a'.repeat(5_000)}?[redacted]`), JSON.stringify(urls));
      assertTokenNotLogged();
    });

    test('an unexpected error whose message quotes the URL is logged without the token', async (t) => {
      t.mock.method(h.runtime.services.accounts, 'list', async () => {
        // As Fastify's own "reply was already sent" warning does, quoting request.url.
        throw new Error(`something broke while answering /v1/accounts?token=${token}`);
      });
      const response = await app.inject({ method: 'GET', url: `/v1/accounts?token=${token}`, headers: { authorization: `Bearer ${token}` } });
      assert.equal(response.statusCode, 500);
      const logged = entries().find((e) => e['msg'] === 'unexpected error');
      assert.ok(logged, 'the 500 was logged');
      assert.match(String((logged['err'] as { message: string }).message), /while answering \/v1\/accounts\?token=\[redacted\]/);
      assertTokenNotLogged();
    });

    test("Fastify's logger serializes a request without its query, and a client error without its raw bytes", () => {
      app.log.info({ req: { method: 'GET', url: `/v1/me?token=${token}`, ip: '127.0.0.1' } }, 'a request, as Fastify logs one');
      const clientError = Object.assign(new Error('Parse Error: Invalid header value char'), {
        code: 'HPE_INVALID_HEADER_TOKEN',
        rawPacket: Buffer.from(`GET /v1/me?token=${token} HTTP/1.1\r\nAuthorization: Bearer ${token}\r\n\r\n`),
      });
      app.log.trace({ err: clientError }, 'client error');
      const request = entries().find((e) => e['msg'] === 'a request, as Fastify logs one');
      assert.deepEqual(request?.['req'], { method: 'GET', url: '/v1/me?[redacted]', remoteAddress: '127.0.0.1' });
      const error = entries().find((e) => e['msg'] === 'client error');
      assert.equal((error?.['err'] as { code?: string } | undefined)?.code, 'HPE_INVALID_HEADER_TOKEN');
      assertTokenNotLogged();
    });
  });
}
