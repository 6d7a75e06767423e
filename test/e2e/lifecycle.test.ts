import assert from 'node:assert/strict';
import { X509Certificate, randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdtempSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import BetterSqlite3 from 'better-sqlite3';
import { ADMIN_PASSWORD } from '../support/harness.ts';
import {
  httpsRequest,
  logEntries,
  login,
  opensslCertificate,
  portOf,
  presentedFingerprint,
  runBounded,
  waitFor,
} from '../support/process-tools.ts';
import { MCIASSRV, run, serveDataDir, startServerProcess, type ServerProcess } from '../support/server-process.ts';

/** A data directory made by `mciassrv init` (no terminal, password from a file), not yet served. */
async function initialisedDataDir(): Promise<string> {
  const dataDir = mkdtempSync(path.join(tmpdir(), 'mcias-life-'));
  const passwordFile = path.join(dataDir, 'admin-password');
  writeFileSync(passwordFile, `${ADMIN_PASSWORD}\n`, { mode: 0o600 });
  const init = await run(MCIASSRV, ['init', '--data-dir', dataDir, '--admin-password-file', passwordFile, '--listen', '127.0.0.1:0']);
  assert.equal(init.code, 0, init.stderr);
  rmSync(passwordFile);
  return dataDir;
}

/** `mciassrv serve` that is expected to refuse: it must exit by itself, non-zero, with one line on stderr. */
async function refusedServe(dataDir: string, env: Record<string, string | undefined> = {}): Promise<string> {
  const result = await runBounded(MCIASSRV, ['serve', '--data-dir', dataDir], { env, timeoutMs: 10_000 });
  assert.equal(result.timedOut, false, 'serve started instead of refusing');
  assert.notEqual(result.code, 0);
  const lines = result.stderr.trim().split('\n');
  assert.equal(lines.length, 1, `one line expected, got:\n${result.stderr}`);
  assert.doesNotMatch(result.stdout, /mciassrv is serving/);
  return lines[0] as string;
}

const countMessages = (server: ServerProcess, msg: string) => logEntries(server).filter((e) => e['msg'] === msg).length;

describe('certificate reload on SIGHUP (SECURITY.md §28)', () => {
  let server: ServerProcess;
  let workDir: string;
  let certFile: string;
  let keyFile: string;
  let pid: number;
  let servingFingerprint: string;
  before(async () => {
    server = await startServerProcess();
    workDir = mkdtempSync(path.join(tmpdir(), 'mcias-reload-'));
    certFile = path.join(server.dataDir, 'tls', 'cert.pem');
    keyFile = path.join(server.dataDir, 'tls', 'key.pem');
    pid = server.child.pid as number;
  });
  after(async () => {
    await server.dispose();
    rmSync(workDir, { recursive: true, force: true });
  });

  /** Sends SIGHUP and waits for the server to log the outcome of the reload. */
  async function reload(expected: 'TLS certificate and key reloaded' | 'TLS reload failed; still serving the previous certificate') {
    const before = countMessages(server, expected);
    server.child.kill('SIGHUP');
    await waitFor(() => countMessages(server, expected) > before, `"${expected}" in the log`);
  }

  test('a replaced certificate and key are presented to new connections, by the same process', async () => {
    const original = await presentedFingerprint(portOf(server));
    assert.equal(original, new X509Certificate(readFileSync(certFile)).fingerprint256);
    const replacement = await opensslCertificate(workDir, 'second', { keyType: 'ec', san: 'IP:127.0.0.1' });
    writeFileSync(keyFile, readFileSync(replacement.keyFile));
    chmodSync(keyFile, 0o600);
    writeFileSync(certFile, readFileSync(replacement.certFile));
    await reload('TLS certificate and key reloaded');

    servingFingerprint = await presentedFingerprint(portOf(server));
    assert.equal(servingFingerprint, new X509Certificate(readFileSync(replacement.certFile)).fingerprint256);
    assert.notEqual(servingFingerprint, original);
    assert.equal(server.child.pid, pid);
    assert.equal(server.child.exitCode, null);
    // A client that trusts only the new certificate gets through.
    const health = await httpsRequest(`${server.url}/healthz`, { caFile: replacement.certFile });
    assert.equal(health.status, 200);
  });

  test('a garbage certificate is not loaded: the previous one keeps serving and an error is logged', async () => {
    writeFileSync(certFile, '-----BEGIN CERTIFICATE-----\nnot a certificate\n-----END CERTIFICATE-----\n');
    await reload('TLS reload failed; still serving the previous certificate');
    const failure = logEntries(server).findLast((e) => e['msg'] === 'TLS reload failed; still serving the previous certificate');
    assert.equal(failure?.['level'], 50, 'logged at error level');
    assert.equal(await presentedFingerprint(portOf(server)), servingFingerprint);
    assert.equal(server.child.exitCode, null);
  });

  test('a world-readable replacement key is refused on reload; the previous certificate keeps serving', async () => {
    const third = await opensslCertificate(workDir, 'third', { keyType: 'ec', san: 'IP:127.0.0.1' });
    writeFileSync(keyFile, readFileSync(third.keyFile));
    writeFileSync(certFile, readFileSync(third.certFile));
    chmodSync(keyFile, 0o644);
    await reload('TLS reload failed; still serving the previous certificate');
    const failure = logEntries(server).findLast((e) => e['msg'] === 'TLS reload failed; still serving the previous certificate');
    assert.match(JSON.stringify(failure?.['err']), /mode 0644/);
    assert.equal(await presentedFingerprint(portOf(server)), servingFingerprint);
    // Fixing the mode and reloading again picks the third certificate up.
    chmodSync(keyFile, 0o600);
    await reload('TLS certificate and key reloaded');
    assert.equal(await presentedFingerprint(portOf(server)), new X509Certificate(readFileSync(third.certFile)).fingerprint256);
    assert.equal(server.child.pid, pid);
  });
});

describe('serve refuses to start without usable secrets (SECURITY.md §24, §28)', () => {
  let dataDir: string;
  let masterKeyFile: string;
  let tlsKeyFile: string;
  before(async () => {
    dataDir = await initialisedDataDir();
    masterKeyFile = path.join(dataDir, 'master.key');
    tlsKeyFile = path.join(dataDir, 'tls', 'key.pem');
  });
  after(() => rmSync(dataDir, { recursive: true, force: true }));

  test('a world-readable TLS key file: one line naming the file and its mode', async () => {
    chmodSync(tlsKeyFile, 0o644);
    try {
      const message = await refusedServe(dataDir);
      assert.ok(message.includes(tlsKeyFile), message);
      assert.match(message, /mode 0644/);
    } finally {
      chmodSync(tlsKeyFile, 0o600);
    }
  });

  test('a group-readable master key file (0640)', async () => {
    chmodSync(masterKeyFile, 0o640);
    try {
      const message = await refusedServe(dataDir);
      assert.ok(message.includes(masterKeyFile), message);
      assert.match(message, /mode 0640/);
    } finally {
      chmodSync(masterKeyFile, 0o600);
    }
  });

  test('a missing master key file', async () => {
    renameSync(masterKeyFile, `${masterKeyFile}.away`);
    try {
      const message = await refusedServe(dataDir);
      assert.match(message, /master key file .*: no such file/);
    } finally {
      renameSync(`${masterKeyFile}.away`, masterKeyFile);
    }
  });

  test('a wrong master key (another 32 bytes): refused on the check value, before serving', async () => {
    const right = readFileSync(masterKeyFile);
    writeFileSync(masterKeyFile, `${randomBytes(32).toString('base64')}\n`);
    try {
      const message = await refusedServe(dataDir);
      assert.match(message, /wrong master key: it does not open this database's sealed digest keys/);
      assert.ok(!message.includes(right.toString('utf8').trim()), 'the key is never printed');
    } finally {
      writeFileSync(masterKeyFile, right);
    }
  });

  test('a malformed MCIAS_MASTER_KEY (16 bytes) is refused even though the key file is fine', async () => {
    const message = await refusedServe(dataDir, { MCIAS_MASTER_KEY: randomBytes(16).toString('base64') });
    assert.match(message, /master key must be 32 bytes/);
  });

  test('MCIAS_MASTER_KEY in the environment works without the key file', async () => {
    const encoded = readFileSync(masterKeyFile, 'utf8').trim();
    renameSync(masterKeyFile, `${masterKeyFile}.away`);
    let server: ServerProcess | undefined;
    try {
      server = await serveDataDir(dataDir, { MCIAS_MASTER_KEY: encoded });
      // A login signs a token, so the signing key was unsealed with the key from the environment.
      const response = await login({ url: server.url, caCertFile: path.join(dataDir, 'tls', 'cert.pem') }, 'admin', ADMIN_PASSWORD);
      assert.equal(response.status, 200, response.body);
      assert.ok(!server.logs.join('\n').includes(encoded), 'the master key is not logged');
      assert.equal(await server.stop(), 0);
    } finally {
      await server?.stop();
      renameSync(`${masterKeyFile}.away`, masterKeyFile);
    }
  });
});

describe('graceful shutdown on SIGTERM', () => {
  let server: ServerProcess;
  before(async () => {
    // The production scrypt cost: the login's rehash (from init's cheap hash) takes ~0.4 s, so the request is
    // still running when the signal arrives.
    server = await serveDataDir(await initialisedDataDir(), { MCIAS_PASSWORDS_SCRYPT_LN: '17' });
  });
  after(() => server.dispose());

  test('an in-flight login completes normally, the process exits 0 and the SQLite database is closed cleanly', async () => {
    const pending = login(server, 'admin', ADMIN_PASSWORD);
    // Long enough for the request to reach the server, well short of the rehash it triggers.
    await new Promise((resolve) => setTimeout(resolve, 150));
    const exited = server.stop('SIGTERM');
    const response = await pending;
    assert.equal(response.status, 200, response.body);
    assert.equal((JSON.parse(response.body) as { token_type: string }).token_type, 'Bearer');
    assert.equal(await exited, 0);

    // The signal arrived while the request was running: "shutting down" was logged before the request's access log.
    const entries = logEntries(server);
    const shuttingDown = entries.findIndex((e) => e['msg'] === 'shutting down');
    const loginLogged = entries.findLastIndex((e) => JSON.stringify(e).includes('/v1/auth/login') || e['msg'] === 'request completed');
    assert.ok(shuttingDown >= 0 && shuttingDown < loginLogged, server.logs.join('\n'));

    const dbFile = path.join(server.dataDir, 'mcias.db');
    // The last connection closed checkpoints the write-ahead log and removes it.
    assert.equal(existsSync(`${dbFile}-wal`) ? statSync(`${dbFile}-wal`).size : 0, 0, 'no write-ahead log left behind');
    const db = new BetterSqlite3(dbFile, { readonly: true, fileMustExist: true });
    try {
      assert.equal(db.pragma('integrity_check', { simple: true }), 'ok');
      // The login's transaction (rehash to the configured cost) was committed before the database closed.
      const row = db.prepare('select password_hash from accounts where username = ?').get('admin') as { password_hash: string };
      assert.match(row.password_hash, /^\$scrypt\$ln=17,/);
    } finally {
      db.close();
    }
  });
});
