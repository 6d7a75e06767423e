import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { allowedRedirect } from '../../src/http/web/policy.ts';
import { DIALECTS } from '../support/databases.ts';
import { USER_PASSWORD, createHarness, type Harness } from '../support/harness.ts';
import { assertProblem } from '../support/inspect.ts';
import { enrollTotp, nextCode, wrongCode } from '../support/totp-codes.ts';
import { APP_ORIGIN, FormBrowser, WEB_CONFIG } from '../support/web.ts';

/**
 * SECURITY.md §55: the login page's cookie, CSRF check, redirects, throttling and CSP, in process; the real browser
 * and proxies are in test/e2e/forward-auth-proxies.test.ts and test/e2e/login-browser.test.ts.
 */

/** Every way to name another host that a redirect check has been fooled by. */
export const OPEN_REDIRECTS = [
  '//evil.example/',
  '/\\evil.example/',
  '\\\\evil.example/',
  'https://evil.example/',
  'https://app.example.test.evil.example/',
  'https://app.example.test@evil.example/',
  'https://evil.example@app.example.test/',
  'https://evil.example\\@app.example.test/',
  'https:/evil.example/',
  'https:evil.example',
  'http://app.example.test/',
  'javascript:alert(1)//https://app.example.test/',
  'data:text/html,<script>alert(1)</script>',
  ' https://evil.example/',
  'https://app.example.test:444/',
  'https://app.example.test\t.evil.example/',
  '/relative/path',
];

test('allowedRedirect admits exactly URLs on an allowed https origin', () => {
  const origins = [APP_ORIGIN];
  assert.equal(allowedRedirect(`${APP_ORIGIN}/a/b?c=d#e`, origins), `${APP_ORIGIN}/a/b?c=d#e`);
  assert.equal(allowedRedirect('HTTPS://APP.example.test', origins), `${APP_ORIGIN}/`);
  // The browser is sent the parsed URL, so what it reads is what was checked.
  assert.equal(allowedRedirect('https:\\\\app.example.test\\a\tb', origins), `${APP_ORIGIN}/ab`);
  for (const target of OPEN_REDIRECTS) assert.equal(allowedRedirect(target, origins), undefined, target);
  assert.equal(allowedRedirect(undefined, origins), undefined);
  assert.equal(allowedRedirect(`${APP_ORIGIN}/${'a'.repeat(3000)}`, origins), undefined);
});

const setCookie = (b: FormBrowser, name: string) =>
  (b.last?.cookies as { name: string; value: string; [k: string]: unknown }[] | undefined)?.find((c) => c.name === name);

for (const dialect of DIALECTS) {
  describe(`the login page [${dialect}]`, () => {
    let h: Harness;
    const forwardWith = (b: FormBrowser) => h.app.inject({ method: 'GET', url: '/v1/auth/forward', headers: { cookie: b.cookieHeader } });
    const auditCount = async (type: string) => {
      const response = await h.request({ method: 'GET', url: `/v1/audit?type=${type}&limit=1000`, token: h.adminToken });
      return (response.json() as { events: unknown[] }).events.length;
    };

    before(async () => {
      h = await createHarness(dialect, { config: WEB_CONFIG });
      await h.createAccount('alice');
    });
    after(() => h.close());

    test('the form: labelled fields with autocomplete, the page CSP (no script, form-action, frame-ancestors); the API keeps its own', async () => {
      const b = new FormBrowser(h);
      const response = await b.get('/login');
      assert.equal(response.statusCode, 200);
      assert.match(String(response.headers['content-type']), /^text\/html; charset=utf-8/);
      assert.match(response.body, /<label for="f-username">Username<\/label>\s*<input id="f-username" name="username" type="text" autocomplete="username"/);
      assert.match(response.body, /<label for="f-password">Password<\/label>\s*<input id="f-password" name="password" type="password" autocomplete="current-password"/);
      assert.doesNotMatch(response.body, /<script|javascript:|\son[a-z]+=/i);
      const csp = String(response.headers['content-security-policy']);
      assert.match(csp, /^default-src 'none'; style-src 'sha256-[A-Za-z0-9+/=]+'; form-action 'self' https:\/\/app\.example\.test; frame-ancestors 'none'; base-uri 'none'$/);
      assert.equal(response.headers['cache-control'], 'no-store');
      assert.match(String(response.headers['strict-transport-security']), /max-age=63072000/);
      const csrf = setCookie(b, '__Host-mcias_csrf');
      assert.ok(csrf !== undefined && csrf['httpOnly'] === true && csrf['secure'] === true && csrf['sameSite'] === 'Strict' && csrf['path'] === '/');
      const api = await h.request({ method: 'GET', url: '/v1/me' });
      assertProblem(api, { status: 401, code: 'unauthenticated' });
      assert.equal(api.headers['content-security-policy'], "default-src 'none'; frame-ancestors 'none'");
      // The API stays JSON-only: a form body is 415 problem+json there.
      const form = await h.app.inject({ method: 'POST', url: '/v1/auth/login', headers: { 'content-type': 'application/x-www-form-urlencoded' }, payload: 'username=alice' });
      assertProblem(form, { status: 415, code: 'invalid_request' });
    });

    test('a password login sets mcias_token (HttpOnly, Secure, SameSite=Lax, Path=/, the domain, Max-Age of the token) and goes back', async () => {
      const b = new FormBrowser(h);
      const response = await b.login('alice', USER_PASSWORD, `${APP_ORIGIN}/wiki?page=1`);
      assert.equal(response.statusCode, 303, response.body);
      assert.equal(response.headers['location'], `${APP_ORIGIN}/wiki?page=1`);
      const cookie = setCookie(b, 'mcias_token');
      assert.ok(cookie !== undefined);
      assert.equal(cookie['httpOnly'], true);
      assert.equal(cookie['secure'], true);
      assert.equal(cookie['sameSite'], 'Lax');
      assert.equal(cookie['path'], '/');
      assert.equal(cookie['domain'], 'example.test');
      const principal = await h.principal(cookie.value);
      assert.ok(Math.abs(Number(cookie['maxAge']) - (principal.token.expiresAt - Date.now()) / 1000) < 5, String(cookie['maxAge']));
      assert.equal((await forwardWith(b)).headers['x-mcias-user'], 'alice');
      // Signed in, the page sends an allowed rd straight back, and otherwise says who is signed in.
      assert.equal((await b.get(`/login?rd=${encodeURIComponent(`${APP_ORIGIN}/x`)}`)).headers['location'], `${APP_ORIGIN}/x`);
      assert.match((await b.get('/login')).body, /signed in as <strong>alice<\/strong>/);
    });

    test('every form needs its CSRF token and the matching secret cookie; a refused post logs nobody in', async () => {
      const before = await auditCount('login_succeeded');
      const b = new FormBrowser(h);
      await b.get('/login');
      const noToken = await b.post('/login', { username: 'alice', password: USER_PASSWORD }, { csrf: false });
      assert.equal(noToken.statusCode, 403);
      assert.match(String(noToken.headers['content-type']), /^text\/html/);
      const stranger = new FormBrowser(h);
      stranger.csrf = b.csrf;
      assert.equal((await stranger.post('/login', { username: 'alice', password: USER_PASSWORD })).statusCode, 403);
      const forged = new FormBrowser(h);
      await forged.get('/login');
      forged.csrf = `${forged.csrf?.slice(0, -3)}abc`;
      assert.equal((await forged.post('/login', { username: 'alice', password: USER_PASSWORD })).statusCode, 403);
      assert.equal(b.cookies.has('mcias_token') || stranger.cookies.has('mcias_token') || forged.cookies.has('mcias_token'), false);
      assert.equal(await auditCount('login_succeeded'), before);
      // Logout and the password change check it too.
      for (const url of ['/logout', '/login/password']) assert.equal((await b.post(url, {}, { csrf: false })).statusCode, 403, url);
    });

    test('a wrong password: 401, the error tied to the password field, the username kept', async () => {
      const b = new FormBrowser(h);
      const response = await b.login('alice', 'not the password');
      assert.equal(response.statusCode, 401);
      assert.match(response.body, /<input id="f-password"[^>]* aria-describedby="f-password-error" aria-invalid="true" autofocus>/);
      assert.match(response.body, /<p class="error" id="f-password-error">The username or password is not correct.<\/p>/);
      assert.match(response.body, /id="f-username"[^>]* value="alice"/);
      assert.equal(b.cookies.has('mcias_token'), false);
    });

    test('no open redirect: a login with any other target lands on the login page, and the target is not kept in the form', async () => {
      for (const target of OPEN_REDIRECTS) {
        const b = new FormBrowser(h);
        await b.get(`/login?rd=${encodeURIComponent(target)}`);
        assert.equal(b.hidden('rd'), undefined, target);
        const response = await b.post('/login', { username: 'alice', password: USER_PASSWORD, rd: target });
        assert.equal(response.statusCode, 303, target);
        assert.equal(response.headers['location'], '/login', target);
      }
    });

    test('TOTP: the password, then the code (a wrong one is tied to its field), then the cookie', async () => {
      await h.createAccount('tom');
      const { secret } = await enrollTotp(h, await h.login('tom', USER_PASSWORD));
      const b = new FormBrowser(h);
      const first = await b.login('tom', USER_PASSWORD, `${APP_ORIGIN}/`);
      assert.equal(first.statusCode, 200);
      assert.match(first.body, /<input id="f-totp_code" name="totp_code" type="text" autocomplete="one-time-code" required inputmode="numeric" aria-describedby="f-totp_code-hint" autofocus>/);
      assert.equal(b.cookies.has('mcias_token'), false);
      const wrong = await b.post('/login', { username: b.hidden('username'), password: b.hidden('password'), rd: b.hidden('rd'), totp_code: wrongCode(secret, h.clock.now()) });
      assert.equal(wrong.statusCode, 401);
      assert.match(wrong.body, /aria-describedby="f-totp_code-hint f-totp_code-error" aria-invalid="true"/);
      const right = await b.post('/login', { username: b.hidden('username'), password: b.hidden('password'), rd: b.hidden('rd'), totp_code: nextCode(h, secret) });
      assert.equal(right.statusCode, 303, right.body);
      assert.equal(right.headers['location'], `${APP_ORIGIN}/`);
      assert.equal((await forwardWith(b)).headers['x-mcias-user'], 'tom');
    });

    test('a temporary password: the cookie holds the restricted session, forward-auth refuses it until the new password is set', async () => {
      const created = await h.request({ method: 'POST', url: '/v1/accounts', token: h.adminToken, body: { username: 'tina', kind: 'human', password: USER_PASSWORD } });
      assert.equal(created.statusCode, 201);
      const b = new FormBrowser(h);
      const first = await b.login('tina', USER_PASSWORD, `${APP_ORIGIN}/start`);
      assert.equal(first.statusCode, 200);
      assert.match(first.body, /Choose a new password/);
      assert.match(first.body, /autocomplete="new-password"/);
      assertProblem(await forwardWith(b), { status: 401, code: 'unauthenticated' });
      const differ = await b.post('/login/password', { current_password: USER_PASSWORD, new_password: 'a passphrase of her very own', new_password_again: 'something else', rd: b.hidden('rd') });
      assert.equal(differ.statusCode, 400);
      assert.match(differ.body, /id="f-new_password_again-error">The two new passwords differ./);
      const same = await b.post('/login/password', { current_password: USER_PASSWORD, new_password: USER_PASSWORD, new_password_again: USER_PASSWORD, rd: b.hidden('rd') });
      assert.equal(same.statusCode, 400);
      assert.match(same.body, /id="f-new_password-error">The new password is the current one/);
      const wrong = await b.post('/login/password', { current_password: 'wrong', new_password: 'a passphrase of her very own', new_password_again: 'a passphrase of her very own', rd: b.hidden('rd') });
      assert.equal(wrong.statusCode, 401);
      assert.match(wrong.body, /id="f-current_password-error"/);
      const done = await b.post('/login/password', {
        current_password: USER_PASSWORD,
        new_password: 'a passphrase of her very own',
        new_password_again: 'a passphrase of her very own',
        rd: b.hidden('rd'),
      });
      assert.equal(done.statusCode, 303, done.body);
      assert.equal(done.headers['location'], `${APP_ORIGIN}/start`);
      assert.equal((await forwardWith(b)).headers['x-mcias-user'], 'tina');
    });

    test('logout (with its CSRF token) revokes the token and clears the cookie', async () => {
      const b = new FormBrowser(h);
      await b.login('alice', USER_PASSWORD);
      const token = b.cookies.get('mcias_token');
      assert.ok(token !== undefined);
      await b.get('/login');
      const response = await b.post('/logout', {});
      assert.equal(response.statusCode, 303);
      assert.equal(response.headers['location'], '/login');
      const cleared = setCookie(b, 'mcias_token');
      assert.equal(cleared?.value, '');
      assert.equal(cleared?.['domain'], 'example.test');
      assertProblem(await h.app.inject({ method: 'GET', url: '/v1/auth/forward', headers: { cookie: `mcias_token=${token}` } }), { status: 401 });
    });
  });

  describe(`the login page shares the login throttle [${dialect}]`, () => {
    let h: Harness;
    before(async () => {
      h = await createHarness(dialect, { config: { ...WEB_CONFIG, login_throttle: { free_failures: 2, base_delay: '1m', max_delay: '1m' } } });
      await h.createAccount('alice');
    });
    after(() => h.close());

    test('failures on the page and the API count together; the page answers 429 with Retry-After, even for the right password', async () => {
      const b = new FormBrowser(h);
      assert.equal((await b.login('alice', 'wrong one')).statusCode, 401);
      const api = await h.request({ method: 'POST', url: '/v1/auth/login', body: { username: 'alice', password: 'wrong two' } });
      assert.equal(api.statusCode, 401);
      assert.equal((await b.login('alice', 'wrong three')).statusCode, 401);
      const throttled = await b.login('alice', USER_PASSWORD);
      assert.equal(throttled.statusCode, 429);
      assert.ok(Number(throttled.headers['retry-after']) > 0);
      assert.match(throttled.body, /<p role="alert">Too many attempts. Try again in \d+ seconds.<\/p>/);
      assert.equal(b.cookies.has('mcias_token'), false);
      assertProblem(await h.request({ method: 'POST', url: '/v1/auth/login', body: { username: 'alice', password: USER_PASSWORD } }), { status: 429, code: 'rate_limited' });
    });
  });
}
