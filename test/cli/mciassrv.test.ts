import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { X509Certificate, createPrivateKey, randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import BetterSqlite3 from 'better-sqlite3';
import { parse as parseToml } from 'smol-toml';
import { DIALECTS, createTestDatabase, type TestDatabase } from '../support/databases.ts';
import { ADMIN_PASSWORD } from '../support/harness.ts';
import { httpsRequest, login, opensslCertificate, runBounded } from '../support/process-tools.ts';
import { MCIASCTL, MCIASSRV, ROOT, serveDataDir, startServerProcess, type ServerProcess } from '../support/server-process.ts';

/** The `mciassrv` daemon CLI, run as a user would run it: the shipped bin/ entry point, no terminal attached. */

const mode = (file: string) => statSync(file).mode & 0o777;

function scratchDir(): string {
  return mkdtempSync(path.join(tmpdir(), 'mcias-cli-'));
}

function passwordFile(dir: string, password = ADMIN_PASSWORD): string {
  const file = path.join(dir, 'admin-password');
  writeFileSync(file, `${password}\n`, { mode: 0o600 });
  return file;
}

const mciassrv = (args: readonly string[], env: Record<string, string | undefined> = {}) => runBounded(MCIASSRV, args, { env });

/** A failed command: non-zero exit and exactly one line on stderr, starting with the program's name. */
function assertOneLineError(result: { code: number | null; stderr: string }, pattern: RegExp): void {
  assert.notEqual(result.code, 0);
  const lines = result.stderr.trimEnd().split('\n');
  assert.equal(lines.length, 1, `one line expected, got:\n${result.stderr}`);
  assert.match(lines[0] as string, /^mciassrv: /);
  assert.match(lines[0] as string, pattern);
}

const serverAt = (server: ServerProcess, caCertFile: string) => ({ url: server.url, caCertFile });

describe('mciassrv', { concurrency: 4 }, () => {
  const dirs: string[] = [];
  const scratch = () => {
    const dir = scratchDir();
    dirs.push(dir);
    return dir;
  };
  after(() => {
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  });

  test('init without a terminal creates the config, 0600 secrets, a certificate for localhost and loopback, and the database', async () => {
    const dataDir = path.join(scratch(), 'data');
    const result = await mciassrv(['init', '--data-dir', dataDir, '--admin-password-file', passwordFile(path.dirname(dataDir)), '--listen', '127.0.0.1:0']);
    assert.equal(result.code, 0, result.stderr);
    assert.doesNotMatch(result.stdout, /Temporary password/);
    assert.ok(!result.stdout.includes(ADMIN_PASSWORD), 'a password from a file is not echoed');

    assert.equal(mode(dataDir), 0o700);
    assert.equal(mode(path.join(dataDir, 'master.key')), 0o600);
    assert.equal(mode(path.join(dataDir, 'tls', 'key.pem')), 0o600);
    assert.equal(mode(path.join(dataDir, 'mcias.toml')), 0o600);
    assert.equal(mode(path.join(dataDir, 'mcias.db')), 0o600);
    assert.equal(Buffer.from(readFileSync(path.join(dataDir, 'master.key'), 'utf8').trim(), 'base64').length, 32);

    const certificate = new X509Certificate(readFileSync(path.join(dataDir, 'tls', 'cert.pem')));
    const names = certificate.subjectAltName?.split(', ') ?? [];
    assert.ok(names.includes('DNS:localhost'), certificate.subjectAltName);
    assert.ok(names.includes('IP Address:127.0.0.1'), certificate.subjectAltName);
    assert.ok(names.includes('IP Address:0:0:0:0:0:0:0:1'), certificate.subjectAltName);
    assert.ok(certificate.checkPrivateKey(createPrivateKey(readFileSync(path.join(dataDir, 'tls', 'key.pem')))));

    const config = parseToml(readFileSync(path.join(dataDir, 'mcias.toml'), 'utf8')) as Record<string, Record<string, unknown>>;
    assert.equal(config['server']?.['listen'], '127.0.0.1:0');
    assert.equal(config['storage']?.['url'], 'sqlite:mcias.db');
    assert.ok(!('master_key' in config), 'the master key is not in the config file');

    const db = new BetterSqlite3(path.join(dataDir, 'mcias.db'), { readonly: true });
    try {
      const admin = db.prepare("select username, password_hash, password_change_required from accounts where username = 'admin'").get() as
        | { password_hash: string; password_change_required: number }
        | undefined;
      assert.match(admin?.password_hash ?? '', /^\$scrypt\$/);
      // The operator chose this password (SECURITY.md §39): it is not temporary.
      assert.equal(admin?.password_change_required, 0);
    } finally {
      db.close();
    }
  });

  test('init without --admin-password-file prints a generated password once, and it logs in; serve --listen overrides the config', async () => {
    const dataDir = path.join(scratch(), 'data');
    const result = await mciassrv(['init', '--data-dir', dataDir, '--listen', '127.0.0.1:1']);
    assert.equal(result.code, 0, result.stderr);
    const password = /Temporary password for admin[^\n]*\n\s+(\S+)/.exec(result.stdout)?.[1];
    assert.ok(password !== undefined && password.length >= 24, result.stdout);
    assert.equal(result.stdout.split(password).length - 1, 1, 'printed exactly once');
    assert.ok(!readFileSync(path.join(dataDir, 'mcias.toml'), 'utf8').includes(password));

    // Port 1 in the config is not ours to bind: the --listen flag must win for serve to come up.
    const server = await serveDataDir(dataDir, {}, ['--listen', '127.0.0.1:0']);
    try {
      assert.match(server.url, /^https:\/\/127\.0\.0\.1:\d+$/);
      assert.notEqual(new URL(server.url).port, '1');
      const at = serverAt(server, path.join(dataDir, 'tls', 'cert.pem'));
      assert.equal((await login(at, 'admin', `${password}x`)).status, 401);
      // The printed password is temporary (SECURITY.md §39): it logs in, but only to be replaced.
      const first = await login(at, 'admin', password);
      assert.equal(first.status, 200, first.body);
      const { token, password_change_required: required } = JSON.parse(first.body) as { token: string; password_change_required?: boolean };
      assert.equal(required, true);
      const call = (url: string, options: { method?: string; body?: unknown } = {}) => httpsRequest(`${server.url}${url}`, { caFile: at.caCertFile, token, ...options });
      const refused = await call('/v1/accounts');
      assert.equal(refused.status, 403);
      assert.equal((JSON.parse(refused.body) as { code: string }).code, 'password_change_required');
      assert.equal((await call('/v1/me')).status, 200);
      const own = 'a password of my very own choosing';
      assert.equal((await call('/v1/me/password', { method: 'PUT', body: { current_password: password, new_password: own } })).status, 204);
      assert.equal((await call('/v1/accounts')).status, 200, 'the same session works once the password is changed');
      const next = await login(at, 'admin', own);
      assert.equal(next.status, 200);
      assert.equal((JSON.parse(next.body) as { password_change_required?: boolean }).password_change_required, undefined);
      assert.equal((await login(at, 'admin', password)).status, 401, 'the printed password is gone');
    } finally {
      assert.equal(await server.stop(), 0);
    }
  });

  test('init twice on one directory fails clearly and changes nothing', async () => {
    const dataDir = path.join(scratch(), 'data');
    const first = await mciassrv(['init', '--data-dir', dataDir, '--admin-password-file', passwordFile(path.dirname(dataDir)), '--listen', '127.0.0.1:0']);
    assert.equal(first.code, 0, first.stderr);
    const masterKey = readFileSync(path.join(dataDir, 'master.key'));
    const certificate = readFileSync(path.join(dataDir, 'tls', 'cert.pem'));
    const second = await mciassrv(['init', '--data-dir', dataDir, '--admin-password-file', passwordFile(path.dirname(dataDir)), '--listen', '127.0.0.1:0']);
    assertOneLineError(second, /already initialised/);
    assert.deepEqual(readFileSync(path.join(dataDir, 'master.key')), masterKey);
    assert.deepEqual(readFileSync(path.join(dataDir, 'tls', 'cert.pem')), certificate);
  });

  test('init --admin-password-file follows the one password-file rule: one line, else refused before anything is made', async () => {
    const dir = scratch();
    const cases: [name: string, content: string | undefined, pattern: RegExp][] = [
      ['empty', '', /^mciassrv: the password file \S+ is empty$/],
      ['newline-only', '\n', /^mciassrv: the password file \S+ is empty$/],
      ['two-lines', `${ADMIN_PASSWORD}\nsecond line\n`, /^mciassrv: the password file \S+ has more than one line$/],
      ['missing', undefined, /^mciassrv: cannot read the password file \S+: ENOENT$/],
    ];
    for (const [name, content, pattern] of cases) {
      const file = path.join(dir, name);
      if (content !== undefined) writeFileSync(file, content, { mode: 0o600 });
      const dataDir = path.join(dir, `data-${name}`);
      const result = await mciassrv(['init', '--data-dir', dataDir, '--admin-password-file', file, '--listen', '127.0.0.1:0']);
      assertOneLineError(result, pattern);
      assert.ok(!result.stderr.includes('second line'), 'the file content is never echoed');
      assert.equal(existsSync(dataDir), false, `${name}: nothing is created`);
    }
    // Only one trailing line ending is dropped; the rest of the line is the password, spaces and all.
    const spaced = ` ${ADMIN_PASSWORD} `;
    const file = path.join(dir, 'spaced');
    writeFileSync(file, `${spaced}\r\n`, { mode: 0o600 });
    const dataDir = path.join(dir, 'data-spaced');
    assert.equal((await mciassrv(['init', '--data-dir', dataDir, '--admin-password-file', file, '--listen', '127.0.0.1:0'])).code, 0);
    const server = await serveDataDir(dataDir);
    try {
      const at = serverAt(server, path.join(dataDir, 'tls', 'cert.pem'));
      assert.equal((await login(at, 'admin', spaced)).status, 200);
      assert.equal((await login(at, 'admin', ADMIN_PASSWORD)).status, 401);
    } finally {
      assert.equal(await server.stop(), 0);
    }
  });

  test('init --cert/--key uses the given files and generates none', async () => {
    const dir = scratch();
    const given = await opensslCertificate(dir, 'given', { keyType: 'ec' });
    const dataDir = path.join(dir, 'data');
    const result = await mciassrv([
      'init', '--data-dir', dataDir, '--admin-password-file', passwordFile(dir), '--listen', '127.0.0.1:0',
      '--cert', given.certFile, '--key', given.keyFile,
    ]);
    assert.equal(result.code, 0, result.stderr);
    assert.doesNotMatch(result.stdout, /self-signed/);
    assert.equal(existsSync(path.join(dataDir, 'tls')), false);
    const config = parseToml(readFileSync(path.join(dataDir, 'mcias.toml'), 'utf8')) as Record<string, Record<string, unknown>>;
    assert.deepEqual({ ...config['tls'] }, { cert_file: given.certFile, key_file: given.keyFile, min_version: '1.2' });

    const server = await serveDataDir(dataDir);
    try {
      const health = await httpsRequest(`${server.url}/healthz`, { caFile: given.certFile });
      assert.equal(health.status, 200);
    } finally {
      await server.stop();
    }
  });

  test('init refuses --cert without --key, and a world-readable --key', async () => {
    const dir = scratch();
    const given = await opensslCertificate(dir, 'given', { keyType: 'ec' });
    const alone = await mciassrv(['init', '--data-dir', path.join(dir, 'a'), '--listen', '127.0.0.1:0', '--cert', given.certFile]);
    assertOneLineError(alone, /--cert and --key go together/);
    chmodSync(given.keyFile, 0o644);
    const readable = await mciassrv(['init', '--data-dir', path.join(dir, 'b'), '--listen', '127.0.0.1:0', '--cert', given.certFile, '--key', given.keyFile]);
    assertOneLineError(readable, /mode 0644/);
    assert.equal(existsSync(path.join(dir, 'b', 'mcias.toml')), false);
  });

  test('serve --init on an empty directory initialises it and serves', async () => {
    const dataDir = path.join(scratch(), 'fresh');
    const server = await serveDataDir(dataDir, {}, ['--init', '--listen', '127.0.0.1:0']);
    try {
      const output = server.logs.join('\n');
      const password = /Temporary password for admin[^\n]*\n\s+(\S+)/.exec(output)?.[1];
      assert.ok(password !== undefined, output);
      assert.equal(mode(path.join(dataDir, 'master.key')), 0o600);
      assert.equal((await login(serverAt(server, path.join(dataDir, 'tls', 'cert.pem')), 'admin', password)).status, 200);
    } finally {
      assert.equal(await server.stop(), 0);
    }
  });

  test('serve on a directory with no config says how to create one, in one line', async () => {
    const result = await mciassrv(['serve', '--data-dir', path.join(scratch(), 'nothing-here')]);
    assertOneLineError(result, /no such file; create the data directory with "mciassrv init"/);
  });

  test('serve with an invalid setting reports it in one line', async () => {
    const dataDir = path.join(scratch(), 'data');
    assert.equal((await mciassrv(['init', '--data-dir', dataDir, '--admin-password-file', passwordFile(path.dirname(dataDir)), '--listen', '127.0.0.1:0'])).code, 0);
    const result = await mciassrv(['serve', '--data-dir', dataDir], { MCIAS_SERVER_LISTEN: 'nowhere', MCIAS_TOKENS_USER_TTL: 'forever' });
    // The values came from the environment, so the problems name the variables (issue 7 item 11).
    assertOneLineError(result, /invalid configuration: MCIAS_SERVER_LISTEN: .*; MCIAS_TOKENS_USER_TTL: /);
  });

  test('keys rotate on a stopped server prints a new kid; after a restart the JWKS serves it and new tokens use it', async () => {
    const dir = scratch();
    const dataDir = path.join(dir, 'data');
    assert.equal((await mciassrv(['init', '--data-dir', dataDir, '--admin-password-file', passwordFile(dir), '--listen', '127.0.0.1:0'])).code, 0);
    const kids: string[] = [];
    for (let i = 0; i < 2; i += 1) {
      const result = await mciassrv(['keys', 'rotate', '--data-dir', dataDir]);
      assert.equal(result.code, 0, result.stderr);
      const kid = /^new signing key (\S+)\n$/.exec(result.stdout)?.[1];
      assert.ok(kid !== undefined, result.stdout);
      kids.push(kid);
    }
    assert.notEqual(kids[0], kids[1]);

    const server = await serveDataDir(dataDir);
    try {
      const caFile = path.join(dataDir, 'tls', 'cert.pem');
      const jwks = JSON.parse((await httpsRequest(`${server.url}/.well-known/jwks.json`, { caFile })).body) as { keys: { kid: string }[] };
      // No token was signed with the first rotated key, so only the newest one is left to serve.
      assert.deepEqual(jwks.keys.map((k) => k.kid), [kids[1]]);
      const token = (JSON.parse((await login(serverAt(server, caFile), 'admin', ADMIN_PASSWORD)).body) as { token: string }).token;
      const header = JSON.parse(Buffer.from(token.split('.')[0] ?? '', 'base64url').toString('utf8')) as { kid: string };
      assert.equal(header.kid, kids[1]);
    } finally {
      assert.equal(await server.stop(), 0);
    }
  });

  test('keys rotate on a directory with no config is one line', async () => {
    const result = await mciassrv(['keys', 'rotate', '--data-dir', path.join(scratch(), 'nothing-here')]);
    assertOneLineError(result, /mcias\.toml/);
  });

  describe('on an initialised SQLite data directory', { concurrency: 1 }, () => {
    let server: ServerProcess;
    before(async () => {
      server = await startServerProcess();
    });
    after(() => server.dispose());

    test('config check prints OK and exits 0', async () => {
      const result = await mciassrv(['config', 'check', '--data-dir', server.dataDir]);
      assert.equal(result.code, 0, result.stderr);
      assert.equal(result.stdout, `${path.join(server.dataDir, 'mcias.toml')}: OK\n`);
    });

    test('migrate reports that the schema is up to date', async () => {
      const result = await mciassrv(['migrate', '--data-dir', server.dataDir]);
      assert.equal(result.code, 0, result.stderr);
      assert.equal(result.stdout, 'the database schema is up to date\n');
    });

    test('keys rotate while the server runs prints a new kid that its JWKS serves at once, next to the old key', async () => {
      const jwks = async () =>
        (JSON.parse((await httpsRequest(`${server.url}/.well-known/jwks.json`, { caFile: server.caCertFile })).body) as { keys: { kid: string }[] }).keys.map(
          (k) => k.kid,
        );
      // A live token keeps the current key in the JWKS after it is retired.
      assert.equal((await login(serverAt(server, server.caCertFile), 'admin', ADMIN_PASSWORD)).status, 200);
      const before = await jwks();
      const result = await mciassrv(['keys', 'rotate', '--data-dir', server.dataDir]);
      assert.equal(result.code, 0, result.stderr);
      const kid = /^new signing key (\S+)\n$/.exec(result.stdout)?.[1];
      assert.ok(kid !== undefined, result.stdout);
      assert.ok(!before.includes(kid));
      const after = await jwks();
      assert.ok(after.includes(kid));
      for (const old of before) assert.ok(after.includes(old), `${old} still verifies live tokens`);
    });

    test('backup while the server runs writes a 0600 SQLite copy with the accounts, and refuses to overwrite it', async () => {
      const at = serverAt(server, server.caCertFile);
      const token = (JSON.parse((await login(at, 'admin', ADMIN_PASSWORD)).body) as { token: string }).token;
      const created = await httpsRequest(`${server.url}/v1/accounts`, {
        caFile: server.caCertFile,
        token,
        body: { username: 'backed-up', kind: 'human', password: 'a sufficiently long test password' },
      });
      assert.equal(created.status, 201, created.body);

      const copy = path.join(scratch(), 'copy.db');
      const result = await mciassrv(['backup', copy, '--data-dir', server.dataDir]);
      assert.equal(result.code, 0, result.stderr);
      assert.match(result.stdout, /^backed up \d+ pages to /);
      assert.equal(mode(copy), 0o600);
      const db = new BetterSqlite3(copy, { readonly: true, fileMustExist: true });
      try {
        assert.equal(db.pragma('integrity_check', { simple: true }), 'ok');
        const names = (db.prepare('select username from accounts order by username').all() as { username: string }[]).map((r) => r.username);
        assert.deepEqual(names, ['admin', 'backed-up']);
      } finally {
        db.close();
      }

      const before = readFileSync(copy);
      const again = await mciassrv(['backup', copy, '--data-dir', server.dataDir]);
      assertOneLineError(again, /exists; refusing to overwrite/);
      assert.deepEqual(readFileSync(copy), before);
      // Still serving throughout.
      assert.equal((await httpsRequest(`${server.url}/healthz`, { caFile: server.caCertFile })).status, 200);
    });
  });

  test('config check reports every problem at once, exits 1, and never prints the database password', async () => {
    const dir = scratch();
    const dataDir = path.join(dir, 'data');
    assert.equal((await mciassrv(['init', '--data-dir', dataDir, '--admin-password-file', passwordFile(dir), '--listen', '127.0.0.1:0'])).code, 0);
    chmodSync(path.join(dataDir, 'tls', 'key.pem'), 0o644);
    rmSync(path.join(dataDir, 'master.key'));
    const secret = `pw${randomBytes(8).toString('hex')}`;
    writeFileSync(
      path.join(dataDir, 'mcias.toml'),
      [
        'no_such_setting = true',
        '[server]',
        'listen = "not an address"',
        '[tls]',
        'cert_file = "tls/missing.pem"',
        'key_file = "tls/key.pem"',
        '[storage]',
        // Port 1 on loopback: nothing listens there, so the connection is refused at once.
        `url = "postgres://mcias:${secret}@127.0.0.1:1/mcias"`,
        '[tokens]',
        'user_ttl = "forever"',
      ].join('\n'),
    );
    const result = await mciassrv(['config', 'check', '--data-dir', dataDir]);
    assert.equal(result.code, 1);
    const report = result.stderr;
    for (const expected of [
      /no_such_setting: unknown setting/,
      /server\.listen: "not an address" is not HOST:PORT/,
      /tokens\.user_ttl: "forever" is not a duration/,
      /TLS certificate file .*missing\.pem: no such file/,
      /TLS key file .*key\.pem has mode 0644/,
      /master key file .*master\.key: no such file/,
      /storage: cannot reach the database: ECONNREFUSED/,
    ]) {
      assert.match(report, expected);
    }
    assert.match(report, /: 7 problems\n/);
    assert.ok(!`${result.stdout}${result.stderr}`.includes(secret), 'the database password is never printed');
  });

  test('an unreadable MCIAS_*_FILE is a configuration problem naming the variable', async () => {
    const dir = scratch();
    const dataDir = path.join(dir, 'data');
    assert.equal((await mciassrv(['init', '--data-dir', dataDir, '--admin-password-file', passwordFile(dir), '--listen', '127.0.0.1:0'])).code, 0);
    const result = await mciassrv(['config', 'check', '--data-dir', dataDir], { MCIAS_STORAGE_URL_FILE: path.join(dir, 'absent') });
    assert.equal(result.code, 1);
    assert.match(result.stderr, /MCIAS_STORAGE_URL_FILE: cannot read: ENOENT/);
  });

  test('config check names the environment variable, not the file, when the bad value came from the environment', async () => {
    const dir = scratch();
    const dataDir = path.join(dir, 'data');
    assert.equal((await mciassrv(['init', '--data-dir', dataDir, '--admin-password-file', passwordFile(dir), '--listen', '127.0.0.1:0'])).code, 0);
    const result = await mciassrv(['config', 'check', '--data-dir', dataDir], { MCIAS_TOKENS_USER_TTL: 'forever', MCIAS_SERVER_LISTEN: 'nowhere' });
    assert.equal(result.code, 1);
    assert.match(result.stderr, /: 2 problems\n/);
    assert.match(result.stderr, /^ {2}- MCIAS_TOKENS_USER_TTL: "forever" is not a duration/m);
    assert.match(result.stderr, /^ {2}- MCIAS_SERVER_LISTEN: "nowhere" is not HOST:PORT/m);
    assert.doesNotMatch(result.stderr, /tokens\.user_ttl|server\.listen/);
    // serve refuses to start with the same wording.
    const serve = await mciassrv(['serve', '--data-dir', dataDir], { MCIAS_TOKENS_USER_TTL: 'forever' });
    assertOneLineError(serve, /MCIAS_TOKENS_USER_TTL: "forever" is not a duration/);
  });

  describe('on PostgreSQL', { concurrency: 1, skip: !DIALECTS.includes('postgres') }, () => {
    let database: TestDatabase;
    let dir: string;
    let dataDir: string;
    before(async () => {
      database = await createTestDatabase('postgres');
      dir = scratchDir();
      dataDir = path.join(dir, 'data');
    });
    after(async () => {
      await database.drop();
      rmSync(dir, { recursive: true, force: true });
    });

    test('init --storage-url postgres://... then serve, and a login works', async () => {
      const result = await mciassrv([
        'init', '--data-dir', dataDir, '--admin-password-file', passwordFile(dir), '--listen', '127.0.0.1:0', '--storage-url', database.location,
      ]);
      assert.equal(result.code, 0, result.stderr);
      assert.equal(existsSync(path.join(dataDir, 'mcias.db')), false, 'no SQLite database on the side');
      const server = await serveDataDir(dataDir);
      try {
        assert.equal((await login(serverAt(server, path.join(dataDir, 'tls', 'cert.pem')), 'admin', ADMIN_PASSWORD)).status, 200);
      } finally {
        assert.equal(await server.stop(), 0);
      }
    });

    test('MCIAS_STORAGE_URL_FILE supplies the storage URL from a file, overriding the config', async () => {
      const configFile = path.join(dataDir, 'mcias.toml');
      writeFileSync(configFile, readFileSync(configFile, 'utf8').replace(/^url = .*$/m, 'url = "sqlite:not-used.db"'));
      const urlFile = path.join(dir, 'storage-url');
      writeFileSync(urlFile, `${database.location}\n`, { mode: 0o600 });
      const server = await serveDataDir(dataDir, { MCIAS_STORAGE_URL_FILE: urlFile });
      try {
        // The admin exists only in PostgreSQL, so this login proves where the server connected.
        assert.equal((await login(serverAt(server, path.join(dataDir, 'tls', 'cert.pem')), 'admin', ADMIN_PASSWORD)).status, 200);
        assert.equal(existsSync(path.join(dataDir, 'not-used.db')), false);
      } finally {
        assert.equal(await server.stop(), 0);
      }
    });

    test('backup refuses a PostgreSQL database and points to pg_dump', async () => {
      const result = await mciassrv(['backup', path.join(dir, 'copy.db'), '--data-dir', dataDir], { MCIAS_STORAGE_URL: database.location });
      assertOneLineError(result, /for PostgreSQL use pg_dump/);
      assert.equal(existsSync(path.join(dir, 'copy.db')), false);
    });
  });

  /**
   * `npx <bin> --help` from the repository root, as a developer would try it first. The project's own bins are not in
   * node_modules/.bin, so the first npx on a machine (every CI run) installs the repository itself into npm's npx
   * cache as a link, and runs its `prepare` script, `npm run build`, which rewrote dist/ while other test files were
   * starting mciassrv from it: an intermittent "dist/src/domain/sealing.js does not provide an export named
   * 'MciasError'" (a half-written errors.js). The suite builds dist/ before it runs, so the install's scripts are off.
   */
  async function npxHelp(bin: string): Promise<{ code: number | null; stdout: string }> {
    const child = spawn('npx', ['--no-install', bin, '--help'], {
      cwd: ROOT,
      env: {
        ...process.env,
        PATH: `${path.dirname(process.execPath)}${path.delimiter}${process.env['PATH'] ?? ''}`,
        npm_config_ignore_scripts: 'true',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.resume();
    const [code] = (await once(child, 'close')) as [number | null];
    return { code, stdout };
  }

  test('npx mciassrv --help works from the repository root', async () => {
    const result = await npxHelp('mciassrv');
    assert.equal(result.code, 0);
    assert.match(result.stdout, /^Usage: mciassrv /);
    for (const command of ['init', 'serve', 'migrate', 'config', 'keys', 'backup']) assert.match(result.stdout, new RegExp(`\\n  ${command} `));
  });

  test('npx mciasctl --help works from the repository root', { skip: !existsSync(MCIASCTL) && 'bin/mciasctl.js is not there yet' }, async () => {
    const result = await npxHelp('mciasctl');
    assert.equal(result.code, 0);
    assert.match(result.stdout, /^Usage: mciasctl /);
  });
});
