import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { USER_PASSWORD } from '../support/harness.ts';
import { freePort } from '../support/ports.ts';
import { httpsRequest } from '../support/process-tools.ts';
import { caddyExample, formLogin, nginxExample, startCaddy, startEchoApp, startNginx, startWebServer, type Echo, type ProxyProcess } from '../support/proxies.ts';
import type { ServerProcess } from '../support/server-process.ts';

/**
 * SECURITY.md §54 and §55 with the real thing: the Debian nginx (auth_request) and Caddy (forward_auth), configured
 * with examples/forward-auth/, in front of a tiny app, with a real mciassrv over TLS. The proxies serve TLS with the
 * server's own self-signed certificate (it names 127.0.0.1), so one CA file is trusted throughout.
 */

const BROWSER = { accept: 'text/html,application/xhtml+xml' };

describe('forward-auth behind real nginx and Caddy', { timeout: 120_000 }, () => {
  let server: ServerProcess;
  let app: { port: number; close(): Promise<void> };
  let dir: string;
  const proxies: Record<'nginx' | 'caddy', ProxyProcess | undefined> = { nginx: undefined, caddy: undefined };

  before(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'mcias-proxies-'));
    const [nginxPort, caddyPort] = [await freePort(), await freePort()];
    const started = await startWebServer([nginxPort, caddyPort]);
    server = started.server;
    const call = started.admin;
    await call('POST', '/v1/roles', { name: 'wiki' });
    for (const username of ['alice', 'bob']) await call('POST', '/v1/accounts', { username, kind: 'human', password: USER_PASSWORD, temporary: false });
    await call('PUT', '/v1/accounts/alice/roles/wiki');

    app = await startEchoApp();
    const nginxDir = path.join(dir, 'nginx');
    const caddyDir = path.join(dir, 'caddy');
    mkdirSync(nginxDir);
    mkdirSync(caddyDir);
    // One after the other, so that `after` stops whichever started when the other fails.
    proxies.nginx = await startNginx(nginxDir, nginxExample(server, nginxPort, app.port), nginxPort);
    proxies.caddy = await startCaddy(caddyDir, caddyExample(server, caddyPort, app.port), caddyPort);
  });

  after(async () => {
    await Promise.all([proxies.nginx?.stop(), proxies.caddy?.stop()]);
    await app?.close();
    await server?.dispose();
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
  });

  for (const name of ['nginx', 'caddy'] as const) {
    test(`${name}: no cookie -> the login page; after the login the app sees the person; revoked -> out; ?role= denies`, async () => {
      const proxy = proxies[name];
      assert.ok(proxy !== undefined);
      const ca = server.caCertFile;
      const page = `${proxy.url}/pages/start?x=1&y=2`;
      const get = (headers: Record<string, string>) => httpsRequest(page, { caFile: ca, headers });

      // A browser without a token goes to the login page, which will bring it back here.
      const anonymous = await get(BROWSER);
      assert.equal(anonymous.status, 302, `${anonymous.status} ${anonymous.body}\n${proxy.log()}`);
      const loginUrl = String(anonymous.headers['location']);
      assert.equal(loginUrl, `${server.url}/login?rd=${encodeURIComponent(page)}`);
      // A program without a token gets a 401 and no redirect.
      const program = await get({ accept: 'application/json' });
      assert.equal(program.status, 401);
      assert.equal(program.headers['location'], undefined);

      const { response, token } = await formLogin(loginUrl, ca, 'alice', USER_PASSWORD);
      assert.equal(response.status, 303, response.body);
      assert.equal(response.headers['location'], page);
      assert.ok(token !== undefined);

      // The app is told who it is (a client's own X-Mcias-* headers replaced), and is not handed the token.
      const inside = await get({ ...BROWSER, cookie: `theme=dark; mcias_token=${token}; lang=en`, 'x-mcias-user': 'admin', 'x-mcias-roles': 'admin' });
      assert.equal(inside.status, 200, `${inside.body}\n${proxy.log()}`);
      const echo = JSON.parse(inside.body) as Echo;
      assert.equal(echo.user, 'alice');
      assert.equal(echo.roles, 'wiki');
      assert.match(echo.accountId ?? '', /^[0-9a-f-]{36}$/);
      assert.equal(echo.url, '/pages/start?x=1&y=2');
      assert.ok(echo.cookie?.includes('theme=dark') && echo.cookie.includes('lang=en'), String(echo.cookie));
      assert.ok(!String(echo.cookie).includes('mcias_token') && !String(echo.cookie).includes(token), String(echo.cookie));

      // Logging out (the API, with the same token) is seen by the very next request: back to the login page.
      const logout = await httpsRequest(`${server.url}/v1/auth/logout`, { caFile: ca, method: 'POST', token });
      assert.equal(logout.status, 204);
      const revoked = await get({ ...BROWSER, cookie: `mcias_token=${token}` });
      assert.equal(revoked.status, 302);
      assert.equal(revoked.headers['location'], loginUrl);

      // bob has no role wiki: logged in, still refused.
      const bob = await formLogin(loginUrl, ca, 'bob', USER_PASSWORD);
      assert.ok(bob.token !== undefined);
      const denied = await get({ ...BROWSER, cookie: `mcias_token=${bob.token}` });
      assert.equal(denied.status, 403, denied.body);
      assert.doesNotMatch(denied.body, /"user"/);
    });
  }
});
