import assert from 'node:assert/strict';
import { X509Certificate, createHash } from 'node:crypto';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { USER_PASSWORD } from '../support/harness.ts';
import { freePort } from '../support/ports.ts';
import { nginxExample, startEchoApp, startNginx, startWebServer, type Echo, type ProxyProcess } from '../support/proxies.ts';
import { httpsRequest } from '../support/process-tools.ts';
import { ROOT, type ServerProcess } from '../support/server-process.ts';
import { Authenticator } from '../support/totp.ts';

/**
 * SECURITY.md §55 in a real browser: Debian's chromium, driven by playwright-core, goes to an app behind the real nginx
 * (examples/forward-auth/nginx.conf), is sent to the login page, logs in with the password and then the TOTP code, or
 * replaces a temporary password, and lands back at the app, which sees the person; a login page asked to send the
 * browser elsewhere keeps it on the login page. No page may trip its Content-Security-Policy.
 *
 * The browser trusts exactly the server's self-signed certificate, by the SHA-256 of its public key
 * (`--ignore-certificate-errors-spki-list`), rather than ignoring certificate errors.
 *
 * The screenshot of the login page goes to a temporary directory; `MCIAS_UPDATE_SCREENSHOT=1 node --test
 * test/e2e/login-browser.test.ts` also copies it to docs/login-page.png, the one in the repository.
 */

const CHROMIUM = '/usr/bin/chromium';
const SCREENSHOT = path.join(ROOT, 'docs', 'login-page.png');

function spkiHash(certFile: string): string {
  const spki = new X509Certificate(readFileSync(certFile)).publicKey.export({ type: 'spki', format: 'der' });
  return createHash('sha256').update(spki).digest('base64');
}

describe('the login page in a real browser', { timeout: 180_000 }, () => {
  let server: ServerProcess;
  let admin: (method: string, url: string, body?: unknown) => Promise<{ body: string }>;
  let app: { port: number; close(): Promise<void> };
  let nginx: ProxyProcess | undefined;
  let dir: string;
  let context: BrowserContext | undefined;
  let appUrl: string;
  const violations: string[] = [];

  before(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'mcias-browser-'));
    const nginxPort = await freePort();
    ({ server, admin } = await startWebServer([nginxPort]));
    app = await startEchoApp();
    mkdirSync(path.join(dir, 'nginx'));
    nginx = await startNginx(path.join(dir, 'nginx'), nginxExample(server, nginxPort, app.port), nginxPort);
    appUrl = `${nginx.url}/wiki/Home?lang=en`;
    await admin('POST', '/v1/roles', { name: 'wiki' });
    context = await chromium.launchPersistentContext(path.join(dir, 'profile'), {
      executablePath: CHROMIUM,
      headless: true,
      args: [
        '--no-sandbox',
        '--headless',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
        `--ignore-certificate-errors-spki-list=${spkiHash(server.caCertFile)}`,
      ],
    });
    context.on('console', (message) => {
      if (/Content.Security.Policy|Refused to/i.test(message.text())) violations.push(message.text());
    });
  });

  after(async () => {
    await context?.close();
    await nginx?.stop();
    await app?.close();
    await server?.dispose();
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
  });

  /** A new person holding the role wiki; temporary unless said otherwise. */
  async function person(username: string, temporary: boolean): Promise<void> {
    await admin('POST', '/v1/accounts', { username, kind: 'human', password: USER_PASSWORD, temporary });
    await admin('PUT', `/v1/accounts/${username}/roles/wiki`);
  }

  async function freshPage(): Promise<Page> {
    await context!.clearCookies();
    return context!.newPage();
  }

  /** What the app behind nginx saw, from the page the browser ended on. */
  async function echoOf(page: Page): Promise<Echo> {
    assert.equal(page.url(), appUrl);
    return JSON.parse((await page.textContent('body')) ?? '') as Echo;
  }

  test('password, then the TOTP code: back at the app, which sees the person; the focus order follows the form', async () => {
    await person('alice', false);
    const session = JSON.parse((await admin('POST', '/v1/auth/login', { username: 'alice', password: USER_PASSWORD })).body) as { token: string };
    const enroll = await httpsRequest(`${server.url}/v1/me/totp`, { caFile: server.caCertFile, token: session.token, body: { password: USER_PASSWORD } });
    const authenticator = new Authenticator((JSON.parse(enroll.body) as { secret: string }).secret);
    const confirm = await httpsRequest(`${server.url}/v1/me/totp/confirm`, { caFile: server.caCertFile, token: session.token, body: { code: await authenticator.next() } });
    assert.equal(confirm.status, 200, confirm.body);

    const page = await freshPage();
    await page.goto(appUrl);
    assert.ok(page.url().startsWith(`${server.url}/login?rd=`), page.url());
    const shot = path.join(dir, 'login-page.png');
    await page.screenshot({ path: shot });
    if (process.env['MCIAS_UPDATE_SCREENSHOT'] === '1') copyFileSync(shot, SCREENSHOT);
    // Autofocus on the username, then Tab through password and button, in the order a person reads them.
    const focused = async () => page.evaluate<string>('document.activeElement.id || document.activeElement.tagName');
    assert.equal(await focused(), 'f-username');
    await page.keyboard.press('Tab');
    assert.equal(await focused(), 'f-password');
    await page.keyboard.press('Tab');
    assert.equal(await focused(), 'BUTTON');

    await page.getByLabel('Username').fill('alice');
    await page.getByLabel('Password').fill('not her password');
    await page.getByRole('button', { name: 'Log in' }).click();
    // The error is read out with the field it belongs to.
    assert.equal(await page.getByLabel('Password').getAttribute('aria-invalid'), 'true');
    assert.match((await page.locator('#f-password-error').textContent()) ?? '', /not correct/);

    await page.getByLabel('Password').fill(USER_PASSWORD);
    await page.getByRole('button', { name: 'Log in' }).click();
    await page.getByLabel('Authentication code').fill(await authenticator.next());
    await page.getByRole('button', { name: 'Continue' }).click();
    const echo = await echoOf(page);
    assert.equal(echo.user, 'alice');
    assert.equal(echo.roles, 'wiki');
    // The browser sends the app every cookie of 127.0.0.1 (ports do not separate cookies), but nginx strips the token.
    assert.ok(!String(echo.cookie).includes('mcias_token'), String(echo.cookie));
    const cookie = (await context!.cookies(server.url)).find((c) => c.name === 'mcias_token');
    assert.ok(cookie !== undefined && cookie.httpOnly && cookie.secure && cookie.sameSite === 'Lax', JSON.stringify(cookie));
    await page.close();
  });

  test('a temporary password: the login asks for a new one, then the app', async () => {
    await person('tina', true);
    const page = await freshPage();
    await page.goto(appUrl);
    await page.getByLabel('Username').fill('tina');
    await page.getByLabel('Password').fill(USER_PASSWORD);
    await page.getByRole('button', { name: 'Log in' }).click();
    assert.equal(await page.title(), 'Choose a new password · MCIAS');
    await page.getByLabel('Current password').fill(USER_PASSWORD);
    await page.getByLabel('New password', { exact: true }).fill('a passphrase of her very own');
    await page.getByLabel('New password, again').fill('a passphrase of her very own');
    await page.getByRole('button', { name: 'Change password' }).click();
    assert.equal((await echoOf(page)).user, 'tina');
    await page.close();
  });

  test('an open redirect attempt stays on the login page, and logging out sends the next visit to the login page again', async () => {
    await person('olga', false);
    const page = await freshPage();
    await page.goto(`${server.url}/login?rd=${encodeURIComponent('https://evil.example/')}`);
    await page.getByLabel('Username').fill('olga');
    await page.getByLabel('Password').fill(USER_PASSWORD);
    await page.getByRole('button', { name: 'Log in' }).click();
    assert.equal(page.url(), `${server.url}/login`);
    assert.match((await page.textContent('main')) ?? '', /signed in as olga/);

    await page.goto(appUrl);
    assert.equal((await echoOf(page)).user, 'olga');
    await page.goto(`${server.url}/login`);
    await page.getByRole('button', { name: 'Log out' }).click();
    assert.equal(page.url(), `${server.url}/login`);
    await page.goto(appUrl);
    assert.ok(page.url().startsWith(`${server.url}/login?rd=`), page.url());
    await page.close();
  });

  test('no page broke its Content-Security-Policy', () => {
    assert.deepEqual(violations, []);
  });
});
