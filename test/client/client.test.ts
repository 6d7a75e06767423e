import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import { createServer as createTcpServer, type AddressInfo, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import {
  MciasClient,
  MciasClientError,
  MciasConnectionError,
  type Account,
} from '@mcias/client';
import { USER_PASSWORD } from '../support/harness.ts';
import { apiError, useClientFixture } from '../support/client.ts';


async function connectionError(promise: Promise<unknown>, code: string): Promise<MciasConnectionError> {
  const error = await promise.then(
    () => assert.fail(`expected ${code}, got success`),
    (e: unknown) => e,
  );
  assert.ok(error instanceof MciasConnectionError, `expected MciasConnectionError, got ${String(error)}`);
  assert.equal(error.code, code);
  return error;
}

/** A throwaway self-signed certificate that has nothing to do with the server's. */
function otherCertificate(): { cert: string; key: string } {
  const dir = mkdtempSync(path.join(tmpdir(), 'mcias-other-ca-'));
  try {
    execFileSync('openssl', [
      'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-subj', '/CN=127.0.0.1',
      '-addext', 'subjectAltName=IP:127.0.0.1', '-keyout', path.join(dir, 'k'), '-out', path.join(dir, 'c'), '-days', '1',
    ], { stdio: 'ignore' });
    return { cert: readFileSync(path.join(dir, 'c'), 'utf8'), key: readFileSync(path.join(dir, 'k'), 'utf8') };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

describe('MciasClient against a real mciassrv over TLS', () => {
  const fx = useClientFixture();

  test('health, ready, jwks and openapi need no token', async () => {
    assert.deepEqual(await fx.anonymous.health(), { status: 'ok' });
    assert.deepEqual(await fx.anonymous.ready(), { status: 'ok' });
    const { keys } = await fx.anonymous.jwks();
    assert.ok(keys.length >= 1);
    assert.equal(keys[0]?.kty, 'OKP');
    assert.equal(keys[0]?.crv, 'Ed25519');
    const openapi = await fx.anonymous.openapi();
    assert.match(String(openapi['openapi']), /^3\.1/);
  });

  test('login returns a bearer token, its expiry and the account, and leaves the client without a token', async () => {
    const result = await fx.anonymous.login('ADMIN', fx.server.adminPassword);
    assert.equal(result.token_type, 'Bearer');
    assert.match(result.token, /^[\w-]+\.[\w-]+\.[\w-]+$/);
    assert.match(result.expires_at, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
    assert.ok(Date.parse(result.expires_at) > Date.now());
    assert.equal(result.account.username, 'admin');
    assert.deepEqual(result.account.roles, ['admin']);
    await apiError(fx.anonymous.me(), 401, 'unauthenticated');
    assert.equal((await fx.anonymous.withToken(result.token).me()).username, 'admin');
  });

  test('a wrong password is MciasApiError invalid_credentials with status, request id and no secret in it', async () => {
    const password = 'wrong password that must not leak';
    const error = await apiError(fx.anonymous.login('admin', password), 401, 'invalid_credentials');
    assert.equal(error.name, 'MciasApiError');
    assert.ok(error instanceof MciasClientError);
    assert.match(error.requestId ?? '', /.+/);
    assert.ok(error.message.length > 0);
    assert.ok(!`${error.message} ${error.stack} ${JSON.stringify(error)}`.includes(password));
  });

  test('an invalid token is unauthenticated and the token appears nowhere in the error', async () => {
    const token = 'eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJ4In0.c2VjcmV0LXNpZ25hdHVyZS10aGF0LW11c3Qtbm90LWxlYWs';
    const error = await apiError(fx.anonymous.withToken(token).me(), 401, 'unauthenticated');
    assert.ok(!`${error.message} ${error.stack} ${JSON.stringify(error)}`.includes(token));
    assert.ok(!`${error.message}`.includes('c2VjcmV0'));
  });

  test('me and the constructor token option', async () => {
    const me = await new MciasClient({ server: fx.server.url, caCert: fx.caCert.toString('utf8'), token: fx.adminToken }).me();
    assert.equal(me.username, 'admin');
    assert.equal(me.kind, 'human');
    assert.equal(me.status, 'active');
    assert.equal(me.totp_enabled, false);
  });

  test('account lifecycle: create, list, get, disable, enable, reset password, delete', async () => {
    const alice: Account = await fx.admin.createAccount({ username: 'alice', kind: 'human', password: USER_PASSWORD, temporary: false });
    assert.equal(alice.username, 'alice');
    assert.equal(alice.kind, 'human');
    assert.equal(alice.status, 'active');
    assert.deepEqual(alice.roles, []);
    assert.match(alice.id, /^[0-9a-f-]{36}$/);

    const names = (await fx.admin.listAccounts()).map((a) => a.username);
    assert.ok(names.includes('alice') && names.includes('admin'));
    assert.deepEqual(await fx.admin.getAccount('alice'), alice);

    const aliceToken = (await fx.anonymous.login('alice', USER_PASSWORD)).token;
    assert.equal((await fx.admin.setAccountStatus('alice', 'disabled')).status, 'disabled');
    await apiError(fx.anonymous.withToken(aliceToken).me(), 401, 'unauthenticated');
    await apiError(fx.anonymous.login('alice', USER_PASSWORD), 401, 'invalid_credentials');
    assert.equal((await fx.admin.setAccountStatus('alice', 'active')).status, 'active');

    const fresh = fx.anonymous.withToken((await fx.anonymous.login('alice', USER_PASSWORD)).token);
    const next = `${USER_PASSWORD} reset by admin`;
    await fx.admin.resetPassword('alice', next, { temporary: false });
    await apiError(fresh.me(), 401, 'unauthenticated');
    await apiError(fx.anonymous.login('alice', USER_PASSWORD), 401, 'invalid_credentials');
    const afterReset = await fx.anonymous.login('alice', next);
    assert.equal(afterReset.account.username, 'alice');
    assert.equal(afterReset.password_change_required, undefined);

    await fx.admin.deleteAccount('alice');
    await apiError(fx.admin.getAccount('alice'), 404, 'not_found');
  });

  test('system accounts; a duplicate name is conflict; a bad password names its reason', async () => {
    const robot = await fx.admin.createAccount({ username: 'robot', kind: 'system' });
    assert.equal(robot.kind, 'system');
    await apiError(fx.admin.createAccount({ username: 'robot', kind: 'system' }), 409, 'conflict');
    const short = await apiError(fx.admin.createAccount({ username: 'shorty', kind: 'human', password: 'short' }), 400, 'invalid_request');
    assert.equal(short.reason, 'password_too_short');
    await apiError(fx.admin.createAccount({ username: 'robot2', kind: 'system', password: USER_PASSWORD }), 400, 'invalid_request');
  });

  test('temporary passwords: create and reset default to temporary; the login says so, and only changePassword lifts it', async () => {
    const created = await fx.admin.createAccount({ username: 'tess', kind: 'human', password: USER_PASSWORD });
    assert.equal(created.password_change_required, true);
    const first = await fx.anonymous.login('tess', USER_PASSWORD);
    assert.equal(first.password_change_required, true);
    assert.equal(first.account.password_change_required, true);
    const tess = fx.anonymous.withToken(first.token);
    assert.equal((await tess.me()).password_change_required, true);
    await apiError(tess.listMyTokens(), 403, 'password_change_required');
    await apiError(tess.renew(), 403, 'password_change_required');
    assert.equal((await fx.anonymous.validate(first.token)).active, false);
    const unchanged = await apiError(tess.changePassword(USER_PASSWORD, USER_PASSWORD), 400, 'invalid_request');
    assert.equal(unchanged.reason, 'password_unchanged');
    const own = `${USER_PASSWORD}, my own`;
    await tess.changePassword(USER_PASSWORD, own);
    assert.equal((await tess.me()).password_change_required, false);
    assert.equal((await tess.listMyTokens()).length, 1);
    assert.equal((await fx.anonymous.validate(first.token)).active, true);
    assert.equal((await fx.admin.getAccount('tess')).password_change_required, false);

    // An administrator's reset is temporary again, unless it says otherwise.
    await fx.admin.resetPassword('tess', USER_PASSWORD);
    assert.equal((await fx.admin.getAccount('tess')).password_change_required, true);
    assert.equal((await fx.anonymous.login('tess', USER_PASSWORD)).password_change_required, true);
    await fx.admin.resetPassword('tess', USER_PASSWORD, { temporary: false });
    assert.equal((await fx.anonymous.login('tess', USER_PASSWORD)).password_change_required, undefined);
    await apiError(fx.admin.createAccount({ username: 'robot3', kind: 'system', temporary: false }), 400, 'invalid_request');
  });

  test('changePassword changes your own password and needs the current one', async () => {
    await fx.admin.createAccount({ username: 'carol', kind: 'human', password: USER_PASSWORD, temporary: false });
    const carol = fx.anonymous.withToken((await fx.anonymous.login('carol', USER_PASSWORD)).token);
    const next = `${USER_PASSWORD}, changed`;
    await apiError(carol.changePassword('not the current password', next), 401, 'invalid_credentials');
    await carol.changePassword(USER_PASSWORD, next);
    assert.equal((await carol.me()).username, 'carol');
    await apiError(fx.anonymous.login('carol', USER_PASSWORD), 401, 'invalid_credentials');
    assert.equal((await fx.anonymous.login('carol', next)).account.username, 'carol');
  });

  test('roles: create, list, grant, revoke, delete; granting a missing role is not_found', async () => {
    const role = await fx.admin.createRole('wiki');
    assert.deepEqual(role, { name: 'wiki', permissions: [] });
    await apiError(fx.admin.createRole('wiki'), 409, 'conflict');
    const roles = (await fx.admin.listRoles()).map((r) => r.name);
    assert.ok(roles.includes('admin') && roles.includes('wiki'));

    await fx.admin.createAccount({ username: 'dave', kind: 'human', password: USER_PASSWORD, temporary: false });
    await fx.admin.grantRole('dave', 'wiki');
    assert.deepEqual((await fx.admin.getAccount('dave')).roles, ['wiki']);
    await fx.admin.revokeRole('dave', 'wiki');
    assert.deepEqual((await fx.admin.getAccount('dave')).roles, []);
    await apiError(fx.admin.grantRole('dave', 'nosuchrole'), 404, 'not_found');

    await fx.admin.deleteRole('wiki');
    assert.ok(!(await fx.admin.listRoles()).some((r) => r.name === 'wiki'));
    await apiError(fx.admin.deleteRole('admin'), 409, 'conflict');
  });

  test('a token without the admin role is forbidden from administration', async () => {
    await fx.admin.createAccount({ username: 'erin', kind: 'human', password: USER_PASSWORD, temporary: false });
    const erin = fx.anonymous.withToken((await fx.anonymous.login('erin', USER_PASSWORD)).token);
    const error = await apiError(erin.listAccounts(), 403, 'forbidden');
    assert.match(error.requestId ?? '', /.+/);
  });

  test('logout revokes the token', async () => {
    await fx.admin.createAccount({ username: 'frank', kind: 'human', password: USER_PASSWORD, temporary: false });
    const frank = fx.anonymous.withToken((await fx.anonymous.login('frank', USER_PASSWORD)).token);
    await frank.logout();
    await apiError(frank.me(), 401, 'unauthenticated');
  });

  test('path segments are percent-encoded, and dot segments and empty names are refused locally', async () => {
    // Encoded, "a/b" reaches the account route as one (invalid) username instead of another route.
    await apiError(fx.admin.getAccount('a/b'), 400, 'invalid_request');
    await apiError(fx.admin.getAccount('x?y=1'), 400, 'invalid_request');
    for (const name of ['', '.', '..']) {
      await assert.rejects(fx.admin.getAccount(name), (e: unknown) => e instanceof MciasClientError && e.code === 'invalid_argument');
    }
  });

  test('refuses server URLs that are not https', () => {
    for (const url of ['http://127.0.0.1:8443', 'ftp://127.0.0.1', 'not a url', 'https://user:pw@127.0.0.1', 'https://h/?q=1']) {
      assert.throws(
        () => new MciasClient({ server: url }),
        (e: unknown) => e instanceof MciasClientError && e.code === 'invalid_argument',
        url,
      );
    }
  });

  test('a server URL without a scheme suggests https://, and an http:// URL says the server is HTTPS only', () => {
    for (const [url, suggested] of [
      ['127.0.0.1:8443', 'https://127.0.0.1:8443'],
      ['localhost:8443', 'https://localhost:8443'],
      ['mcias.example.net', 'https://mcias.example.net'],
      ['[::1]:8443', 'https://[::1]:8443'],
    ] as const) {
      assert.throws(() => new MciasClient({ server: url }), (e: unknown) => {
        assert.ok(e instanceof MciasClientError && e.code === 'invalid_argument');
        assert.match(e.message, /has no scheme/);
        assert.ok(e.message.includes(`use "${suggested}"`), e.message);
        return true;
      });
    }
    assert.throws(() => new MciasClient({ server: 'http://127.0.0.1:8443' }), (e: unknown) => {
      assert.ok(e instanceof MciasClientError && e.code === 'invalid_argument');
      assert.equal(e.message, 'the server is HTTPS only: use "https://127.0.0.1:8443"');
      return true;
    });
    assert.throws(() => new MciasClient({ server: 'not a url' }), /is not a URL \(expected https:\/\/HOST:PORT\)/);
  });

  test('a caCert that holds no certificate (empty, garbage, a private key, a broken block) is refused up front', () => {
    const broken = '-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n';
    for (const [pem, message] of [
      ['', /holds no certificate/],
      [Buffer.from('not a certificate\n'), /holds no certificate/],
      [otherCertificate().key, /holds a private key, not a certificate/],
      [broken, /holds a certificate that cannot be read/],
      [`${fx.caCert.toString()}${broken}`, /holds a certificate that cannot be read/],
    ] as const) {
      assert.throws(() => new MciasClient({ server: fx.server.url, caCert: pem }), (e: unknown) => {
        assert.ok(e instanceof MciasClientError && e.code === 'invalid_argument');
        assert.match(e.message, message);
        assert.match(e.message, /^caCert /);
        return true;
      });
    }
    // A bundle of several certificates is fine.
    assert.doesNotThrow(() => new MciasClient({ server: fx.server.url, caCert: `${otherCertificate().cert}${fx.caCert.toString()}` }));
  });

  test('a certificate that is not signed by the given CA fails verification, even with NODE_TLS_REJECT_UNAUTHORIZED=0', async () => {
    const other = new MciasClient({ server: fx.server.url, caCert: otherCertificate().cert });
    const error = await connectionError(other.health(), 'tls_verification_failed');
    assert.match(error.message, /certificate/);

    // Without caCert only the public roots are trusted, which never signed a self-signed certificate.
    const untrusted = await connectionError(new MciasClient({ server: fx.server.url }).health(), 'tls_verification_failed');
    // Node's advice to run Node.js with --use-system-ca is about Node's flags, not the SDK's: it is left out.
    assert.doesNotMatch(untrusted.message, /use-system-ca|Node\.js/);
    assert.match(untrusted.message, /self-signed certificate \(DEPTH_ZERO_SELF_SIGNED_CERT\)$/);

    const saved = process.env['NODE_TLS_REJECT_UNAUTHORIZED'];
    const emitWarning = process.emitWarning;
    process.emitWarning = () => {};
    process.env['NODE_TLS_REJECT_UNAUTHORIZED'] = '0';
    try {
      await connectionError(new MciasClient({ server: fx.server.url, caCert: otherCertificate().cert }).health(), 'tls_verification_failed');
    } finally {
      if (saved === undefined) delete process.env['NODE_TLS_REJECT_UNAUTHORIZED'];
      else process.env['NODE_TLS_REJECT_UNAUTHORIZED'] = saved;
      process.emitWarning = emitWarning;
    }
  });

  test('an unreachable server is connection_failed', async () => {
    const probe = createTcpServer();
    probe.listen(0, '127.0.0.1');
    await once(probe, 'listening');
    const { port } = probe.address() as AddressInfo;
    probe.close();
    await once(probe, 'close');
    const error = await connectionError(new MciasClient({ server: `https://127.0.0.1:${port}`, caCert: fx.caCert }).health(), 'connection_failed');
    assert.match(error.message, /ECONNREFUSED/);
  });

  test('a server that does not speak TLS is tls_failed, in one line', async () => {
    const plain = createTcpServer((socket) => socket.end('HTTP/1.1 400 Bad Request\r\n\r\n'));
    plain.listen(0, '127.0.0.1');
    await once(plain, 'listening');
    try {
      const { port } = plain.address() as AddressInfo;
      const error = await connectionError(new MciasClient({ server: `https://127.0.0.1:${port}`, caCert: fx.caCert }).health(), 'tls_failed');
      assert.equal(error.message, `TLS with https://127.0.0.1:${port} failed: wrong version number (EPROTO)`);
    } finally {
      plain.close();
    }
  });

  test('a server that never answers is a timeout', async () => {
    const sockets: Socket[] = [];
    const silent = createTcpServer((socket) => sockets.push(socket));
    silent.listen(0, '127.0.0.1');
    await once(silent, 'listening');
    try {
      const { port } = silent.address() as AddressInfo;
      const started = Date.now();
      await connectionError(new MciasClient({ server: `https://127.0.0.1:${port}`, caCert: fx.caCert, timeoutMs: 200 }).health(), 'timeout');
      assert.ok(Date.now() - started < 5_000);
    } finally {
      for (const socket of sockets) socket.destroy();
      silent.close();
    }
  });
});

/** What the SDK puts on the wire, seen by a local HTTPS server with its own certificate. */
describe('MciasClient requests on the wire', () => {
  const seen: { method: string; url: string; headers: Record<string, string | string[] | undefined>; body: string }[] = [];
  let fake: HttpsServer;
  let client: MciasClient;
  let fakeCert: string;
  let reply: (url: string) => { status: number; type?: string; body?: string; headers?: Record<string, string>; hang?: boolean } = () => ({
    status: 204,
  });

  before(async () => {
    const { cert, key } = otherCertificate();
    fakeCert = cert;
    fake = createHttpsServer({ cert, key }, (req, res) => {
      let body = '';
      req.on('data', (d: Buffer) => (body += d.toString()));
      req.on('end', () => {
        seen.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, body });
        const answer = reply(req.url ?? '');
        res.writeHead(answer.status, { ...(answer.type ? { 'content-type': answer.type } : {}), ...answer.headers });
        if (answer.hang) res.write(answer.body ?? '');
        else res.end(answer.body);
      });
    });
    fake.listen(0, '127.0.0.1');
    await once(fake, 'listening');
    client = new MciasClient({ server: `https://127.0.0.1:${(fake.address() as AddressInfo).port}/`, caCert: cert, token: 'tok' });
  });
  after(() => {
    client?.close();
    fake?.closeAllConnections();
    fake?.close();
  });

  test('bodyless POST, PUT and DELETE send no body and no content-type; the token only goes to routes that need it', async () => {
    seen.length = 0;
    reply = () => ({ status: 204 });
    await client.logout();
    await client.grantRole('bob', 'wiki');
    await client.revokeRole('bob', 'wiki');
    await client.deleteAccount('bob');
    assert.deepEqual(seen.map((r) => `${r.method} ${r.url}`), [
      'POST /v1/auth/logout',
      'PUT /v1/accounts/bob/roles/wiki',
      'DELETE /v1/accounts/bob/roles/wiki',
      'DELETE /v1/accounts/bob',
    ]);
    for (const request of seen) {
      assert.equal(request.body, '');
      assert.equal(request.headers['content-type'], undefined);
      assert.equal(request.headers['transfer-encoding'], undefined);
      assert.ok(request.headers['content-length'] === undefined || request.headers['content-length'] === '0');
      assert.equal(request.headers['authorization'], 'Bearer tok');
    }

    seen.length = 0;
    reply = () => ({ status: 200, type: 'application/json', body: '{"token":"t","token_type":"Bearer","expires_at":"x","account":{}}' });
    await client.login('bob', 'pw');
    assert.equal(seen[0]?.headers['authorization'], undefined);
    assert.equal(seen[0]?.headers['content-type'], 'application/json');
    assert.deepEqual(JSON.parse(seen[0]?.body ?? ''), { username: 'bob', password: 'pw' });
  });

  test('token routes: methods and paths; validate sends the token in the body and no bearer token', async () => {
    seen.length = 0;
    reply = () => ({ status: 200, type: 'application/json', body: '{"tokens":[]}' });
    await client.renew();
    await client.listMyTokens();
    await client.revokeMyToken('j 1');
    await client.listTokens('wiki');
    await client.revokeToken('j2');
    await client.issueServiceToken('wiki');
    await client.revokeServiceToken('wiki');
    await client.rotateKeys();
    await client.validate('some.jwt.value');
    assert.deepEqual(seen.map((r) => `${r.method} ${r.url}`), [
      'POST /v1/auth/renew',
      'GET /v1/me/tokens',
      'DELETE /v1/me/tokens/j%201',
      'GET /v1/accounts/wiki/tokens',
      'DELETE /v1/tokens/j2',
      'POST /v1/accounts/wiki/token',
      'DELETE /v1/accounts/wiki/token',
      'POST /v1/keys/rotate',
      'POST /v1/token/validate',
    ]);
    for (const request of seen.slice(0, -1)) assert.equal(request.headers['authorization'], 'Bearer tok', request.url);
    const validate = seen.at(-1);
    assert.equal(validate?.headers['authorization'], undefined);
    assert.deepEqual(JSON.parse(validate?.body ?? ''), { token: 'some.jwt.value' });
  });

  test('requests with a body send JSON; path segments are percent-encoded', async () => {
    seen.length = 0;
    reply = () => ({ status: 200, type: 'application/json; charset=utf-8', body: '{}' });
    await client.setAccountStatus('ä b', 'disabled');
    assert.equal(seen[0]?.method, 'PATCH');
    assert.equal(seen[0]?.url, '/v1/accounts/%C3%A4%20b');
    assert.equal(seen[0]?.headers['content-type'], 'application/json');
    assert.deepEqual(JSON.parse(seen[0]?.body ?? ''), { status: 'disabled' });
  });

  test('a non-JSON error page still maps to status, code and the X-Request-Id header', async () => {
    reply = () => ({ status: 502, type: 'text/html', body: '<h1>Bad Gateway</h1>', headers: { 'x-request-id': 'req-123' } });
    const error = await apiError(client.health(), 502, 'internal');
    assert.equal(error.requestId, 'req-123');
    assert.equal(error.message, 'Bad Gateway');

    // A proxy's 503 page while the server (or its database) is down: the same code as the server's own 503.
    reply = () => ({ status: 503, type: 'text/html', body: '<h1>Service Unavailable</h1>' });
    await apiError(client.health(), 503, 'unavailable');

    reply = () => ({ status: 429, type: 'application/problem+json', body: '{"title":"Too Many Requests","status":429,"code":"rate_limited","detail":"slow\\ndown","request_id":"r2"}', headers: { 'retry-after': '7' } });
    const limited = await apiError(client.health(), 429, 'rate_limited');
    assert.equal(limited.retryAfter, 7);
    assert.equal(limited.requestId, 'r2');
    assert.equal(limited.message, 'slow down');
  });

  test('a success whose body is not JSON, or is absurdly large, is invalid_response', async () => {
    reply = () => ({ status: 200, type: 'text/plain', body: 'ok' });
    await connectionError(client.health(), 'invalid_response');
    reply = () => ({ status: 200, type: 'application/json', body: `"${'x'.repeat(9 * 1024 * 1024)}"` });
    await connectionError(client.health(), 'invalid_response');
  });

  test('a response that starts but never finishes is a timeout', async () => {
    reply = () => ({ status: 200, type: 'application/json', body: '{', hang: true });
    const slow = new MciasClient({ server: client.server, caCert: fakeCert, timeoutMs: 300 });
    await connectionError(slow.health(), 'timeout');
    slow.close();
  });

  test('a token that cannot be sent in a header is refused without showing it', async () => {
    const token = 'abc\r\nx-injected: yes';
    const error = await client.withToken(token).me().then(
      () => assert.fail('expected an error'),
      (e: unknown) => e,
    );
    assert.ok(error instanceof MciasClientError);
    assert.equal(error.code, 'invalid_argument');
    assert.ok(!error.message.includes('abc') && !error.message.includes('injected'));
  });
});
