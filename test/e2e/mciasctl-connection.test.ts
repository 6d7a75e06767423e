import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { assertOneLineError, ctl, inTerminal, needsTerminal, useMciasctlFixture, type CtlEnv } from '../support/mciasctl.ts';

/**
 * What a newcomer meets when mciasctl cannot talk to the server: each connection problem is one line that says what
 * to do, and it comes before any password prompt. All through the shipped binary, against a real mciassrv over TLS.
 */

const CA_ADVICE = "pass --ca-cert with the server's certificate (data/tls/cert.pem for a local `npm start`)";

describe('mciasctl connection problems', () => {
  const fx = useMciasctlFixture();
  let closedPort: number;

  const file = (name: string, content: string) => {
    const target = path.join(fx.scratch, name);
    writeFileSync(target, content, { mode: 0o600 });
    return target;
  };
  /** No session, no token, and no CA certificate unless a test passes one. */
  const env = (extra: Record<string, string> = {}) => ({ ...fx.freshEnv(), MCIAS_CA_CERT: '', ...extra });
  /** On a pseudo-terminal, typing nothing: a prompt would wait until the kill after 10 s. */
  const onTerminal = (args: readonly string[], e: CtlEnv) => inTerminal(args, e, [], 10_000);

  before(async () => {
    const probe = createHttpServer();
    probe.listen(0, '127.0.0.1');
    await once(probe, 'listening');
    closedPort = (probe.address() as AddressInfo).port;
    probe.close();
    await once(probe, 'close');
  });

  test('a self-signed server certificate without --ca-cert says to pass --ca-cert with the server certificate', async () => {
    const result = await ctl(env(), 'login', '--username', 'admin', '--password-file', fx.adminPasswordFile);
    assertOneLineError(result, 'tls_verification_failed');
    assert.ok(result.stderr.includes(CA_ADVICE), result.stderr);
    assert.doesNotMatch(result.stderr, /use-system-ca/);
    // Every command says the same, from the one error printer.
    const whoami = await ctl(env({ MCIAS_TOKEN: 'x.y.z' }), 'whoami');
    assertOneLineError(whoami, 'tls_verification_failed');
    assert.ok(whoami.stderr.includes(CA_ADVICE), whoami.stderr);
    // With the server's certificate it works.
    assert.equal((await ctl(env({ MCIAS_CA_CERT: fx.server.caCertFile }), 'login', '--username', 'admin', '--password-file', fx.adminPasswordFile)).code, 0);
  });

  test('login checks the connection before it asks for a username or password (no terminal)', async () => {
    // Without a terminal a prompt is a usage error; the TLS failure must come first.
    for (const args of [['login', '--username', 'admin'], ['login']]) {
      const result = await ctl(env(), ...args);
      assertOneLineError(result, 'tls_verification_failed');
      assert.doesNotMatch(result.stderr, /password|terminal/i);
    }
    const unreachable = await ctl(env({ MCIAS_SERVER: `https://127.0.0.1:${closedPort}` }), 'login', '--username', 'admin');
    assertOneLineError(unreachable, 'connection_failed');
  });

  test('commands that prompt for a password check the connection first', async () => {
    const e = env({ MCIAS_TOKEN: 'x.y.z' });
    for (const args of [['password'], ['account', 'create', 'alice'], ['account', 'set-password', 'alice'], ['totp', 'disable']]) {
      assertOneLineError(await ctl(e, ...args), 'tls_verification_failed');
    }
  });

  test('on a terminal, no password prompt appears before a TLS failure', needsTerminal, async () => {
    for (const args of [['login', '--username', 'admin'], ['login']]) {
      const { code, output } = await onTerminal(args, env());
      assert.equal(code, 1, output);
      assert.match(output, /mciasctl: the certificate of https:\/\/127\.0\.0\.1:\d+ did not verify: .*\(tls_verification_failed\)/);
      assert.ok(output.includes(CA_ADVICE), output);
      assert.doesNotMatch(output, /Password for|Username:/);
    }
  });

  test('a --ca-cert file that holds no certificate is a usage error naming the file', async () => {
    const certificate = readFileSync(fx.server.caCertFile, 'utf8');
    for (const [name, content, message] of [
      ['empty.pem', '', /holds no certificate/],
      ['garbage.pem', 'this is not a certificate\n', /holds no certificate/],
      ['key.pem', readFileSync(path.join(fx.server.dataDir, 'tls', 'key.pem'), 'utf8'), /holds a private key, not a certificate/],
      ['broken.pem', certificate.replace(/(-----BEGIN CERTIFICATE-----\n)..../, '$1AAAA'), /holds a certificate that cannot be read/],
    ] as const) {
      const caFile = file(name, content);
      // From MCIAS_CA_CERT and from --ca-cert in turn.
      const viaFlag = name.length % 2 === 0;
      const result = await ctl(env(viaFlag ? {} : { MCIAS_CA_CERT: caFile }), ...(viaFlag ? ['--ca-cert', caFile] : []), 'login', '--username', 'admin');
      assertOneLineError(result, 'invalid_argument', 2);
      assert.ok(result.stderr.includes(`the CA certificate file ${caFile} `), result.stderr);
      assert.match(result.stderr, message);
    }
  });

  test('a server URL without a scheme suggests https://; an http:// URL says the server is HTTPS only', async () => {
    const hostPort = fx.server.url.slice('https://'.length);
    let result = await ctl(env({ MCIAS_SERVER: hostPort }), 'login', '--username', 'admin', '--password-file', fx.adminPasswordFile);
    assertOneLineError(result, 'invalid_argument', 2);
    assert.ok(result.stderr.includes(`has no scheme: use "https://${hostPort}"`), result.stderr);
    result = await ctl(env({ MCIAS_SERVER: `localhost:${new URL(fx.server.url).port}` }), 'whoami');
    assertOneLineError(result, 'invalid_argument', 2);
    assert.match(result.stderr, /use "https:\/\/localhost:\d+"/);
    result = await ctl(env(), '--server', `http://${hostPort}`, 'login', '--username', 'admin', '--password-file', fx.adminPasswordFile);
    assertOneLineError(result, 'invalid_argument', 2);
    assert.ok(result.stderr.includes(`the server is HTTPS only: use "https://${hostPort}"`), result.stderr);
  });

  test('a server that cannot be reached says to check that mciassrv runs, and where', async () => {
    const result = await ctl(env({ MCIAS_SERVER: `https://127.0.0.1:${closedPort}` }), 'login', '--username', 'admin', '--password-file', fx.adminPasswordFile);
    assertOneLineError(result, 'connection_failed');
    assert.match(result.stderr, new RegExp(`cannot reach https://127\\.0\\.0\\.1:${closedPort}: .*ECONNREFUSED`));
    assert.match(result.stderr, /check that mciassrv is running and that --server is the address it serves/);
  });

  describe('servers that are not the right one', () => {
    let plain: HttpServer;
    let misnamed: HttpsServer;
    let misnamedCa: string;
    before(async () => {
      plain = createHttpServer((_req, res) => res.end('plain http'));
      const dir = mkdtempSync(path.join(fx.scratch, 'misnamed-'));
      execFileSync('openssl', [
        'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-subj', '/CN=elsewhere.example',
        '-addext', 'subjectAltName=DNS:elsewhere.example', '-keyout', path.join(dir, 'key.pem'), '-out', path.join(dir, 'cert.pem'), '-days', '1',
      ], { stdio: 'ignore' });
      misnamedCa = path.join(dir, 'cert.pem');
      misnamed = createHttpsServer({ cert: readFileSync(misnamedCa), key: readFileSync(path.join(dir, 'key.pem')) }, (_req, res) => res.end('{}'));
      for (const s of [plain, misnamed]) {
        s.listen(0, '127.0.0.1');
        await once(s, 'listening');
      }
    });
    after(() => {
      plain.closeAllConnections();
      plain.close();
      misnamed.closeAllConnections();
      misnamed.close();
    });

    test("a certificate for another host name says to use a name the certificate names", async () => {
      const url = `https://127.0.0.1:${(misnamed.address() as AddressInfo).port}`;
      const result = await ctl(env({ MCIAS_SERVER: url, MCIAS_CA_CERT: misnamedCa }), 'login', '--username', 'admin');
      assertOneLineError(result, 'tls_verification_failed');
      assert.match(result.stderr, /a host name or address that the server's certificate names/);
      assert.ok(!result.stderr.includes(CA_ADVICE), result.stderr);
    });

    test("a --ca-cert that is not the server's certificate says so, rather than to pass --ca-cert", async () => {
      // Another self-signed certificate, against the real mciassrv; from the flag and from MCIAS_CA_CERT.
      for (const [e, args] of [[env(), ['--ca-cert', misnamedCa]], [env({ MCIAS_CA_CERT: misnamedCa }), []]] as const) {
        const result = await ctl(e, ...args, 'login', '--username', 'admin', '--password-file', fx.adminPasswordFile);
        assertOneLineError(result, 'tls_verification_failed');
        assert.ok(result.stderr.includes(`the certificate given with --ca-cert (${misnamedCa}) is not the one the server presents`), result.stderr);
        assert.ok(!result.stderr.includes(CA_ADVICE), result.stderr);
      }
    });

    test('a plain-HTTP server at the address is named as not speaking TLS', async () => {
      const url = `https://127.0.0.1:${(plain.address() as AddressInfo).port}`;
      const result = await ctl(env({ MCIAS_SERVER: url }), 'login', '--username', 'admin');
      assertOneLineError(result, 'tls_failed');
      assert.match(result.stderr, /did not answer in TLS: is --server the address of mciassrv\?/);
    });
  });
});
