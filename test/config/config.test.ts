import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { parseDuration } from '../../src/config/duration.ts';
import { loadMasterKey } from '../../src/config/files.ts';
import { ConfigError, loadConfig, readConfig, resolveConfig, type Config } from '../../src/config/load.ts';

/** The configuration: defaults, MCIAS_* overrides and *_FILE secrets, and problems reported all at once. */

const BASE = '/srv/mcias';
const DAY_MS = 86_400_000;
const SECRET_URL = 'postgres://mcias:hunter2-s3cret@db.internal:5432/mcias';

function ok(raw: Record<string, unknown>, env: Record<string, string> = {}): Config {
  const result = resolveConfig(raw, { baseDir: BASE, env });
  assert.deepEqual(result.problems, []);
  assert.ok(result.config);
  return result.config;
}

function problems(raw: Record<string, unknown>, env: Record<string, string> = {}): string[] {
  const result = resolveConfig(raw, { baseDir: BASE, env });
  assert.equal(result.config, undefined, 'a configuration with problems must not be usable');
  assert.ok(result.problems.length > 0);
  return result.problems;
}

/** Asserts one problem starts with the setting's name. */
function hasProblem(list: readonly string[], setting: string): void {
  assert.ok(
    list.some((p) => p.startsWith(`${setting}:`)),
    `no problem reported for ${setting} in:\n  ${list.join('\n  ')}`,
  );
}

describe('configuration', () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'mcias-config-test-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  const file = (name: string, content: string, mode = 0o600) => {
    const target = path.join(dir, name);
    writeFileSync(target, content, { mode });
    chmodSync(target, mode);
    return target;
  };

  test('an empty configuration gives the documented defaults', () => {
    const config = ok({});
    assert.deepEqual(config.server, {
      host: '127.0.0.1',
      port: 8443,
      trustedProxies: [],
      bodyLimit: 65_536,
      shutdownTimeoutMs: 30_000,
      connections: {
        handshakeTimeoutMs: 10_000,
        headersTimeoutMs: 10_000,
        requestTimeoutMs: 30_000,
        keepAliveTimeoutMs: 10_000,
        idleTimeoutMs: 30_000,
        maxConnections: 1_024,
        maxConnectionsPerAddress: 64,
        maxRequestsPerSocket: 1_000,
      },
    });
    assert.deepEqual(config.tls, { certFile: `${BASE}/tls/cert.pem`, keyFile: `${BASE}/tls/key.pem`, minVersion: 'TLSv1.2' });
    assert.deepEqual(config.storage, { kind: 'sqlite', path: `${BASE}/mcias.db`, busyTimeoutMs: 5_000 });
    assert.deepEqual(config.tokens, {
      issuer: 'https://127.0.0.1:8443',
      audience: 'mcias',
      userTtlMs: 30 * DAY_MS,
      serviceTtlMs: 30 * DAY_MS,
      maxSessionAgeMs: 30 * DAY_MS,
      checkCacheMs: 1_000,
    });
    assert.deepEqual(config.passwords.scrypt, { ln: 17, r: 8, p: 1 });
    assert.equal(config.passwords.minLength, 15);
    assert.equal(config.passwords.maxQueuedHashes, 64);
    assert.ok(config.passwords.maxConcurrentHashes >= 1);
    assert.equal(config.passwords.maxHashesPerClient, 8, 'an eighth of the queue');
    assert.equal(config.masterKey.file, `${BASE}/master.key`);
    assert.equal(config.masterKey.inline, undefined);
    assert.equal(config.log.level, 'info');
  });

  test('the resolved configuration is deeply frozen', () => {
    const config = ok({});
    assert.ok(Object.isFrozen(config));
    assert.ok(Object.isFrozen(config.tokens));
    assert.ok(Object.isFrozen(config.server.trustedProxies));
    assert.throws(() => {
      (config.tokens as { audience: string }).audience = 'changed';
    }, TypeError);
  });

  test('file settings are read, with relative paths resolved against the config folder', () => {
    const config = ok({
      server: { listen: '[::1]:9443', trusted_proxies: ['10.0.0.0/8', '::1/128', '192.0.2.7'] },
      tls: { cert_file: 'certs/c.pem', min_version: '1.3' },
      storage: { url: 'sqlite:data/db.sqlite' },
      tokens: { user_ttl: '12h', service_ttl: '90d', max_session_age: '7d', audience: 'apps' },
    });
    assert.equal(config.server.host, '::1');
    assert.equal(config.server.port, 9443);
    assert.deepEqual(config.server.trustedProxies, ['10.0.0.0/8', '::1/128', '192.0.2.7']);
    assert.equal(config.tls.certFile, `${BASE}/certs/c.pem`);
    assert.equal(config.tls.minVersion, 'TLSv1.3');
    assert.deepEqual(config.storage, { kind: 'sqlite', path: `${BASE}/data/db.sqlite`, busyTimeoutMs: 5_000 });
    assert.equal(config.tokens.userTtlMs, 12 * 3_600_000);
    assert.equal(config.tokens.serviceTtlMs, 90 * DAY_MS);
    assert.equal(config.tokens.maxSessionAgeMs, 7 * DAY_MS);
    assert.equal(config.tokens.audience, 'apps');
  });

  test('MCIAS_* environment variables override the file, with lists comma-separated and integers parsed', () => {
    const config = ok(
      { tokens: { user_ttl: '1d' }, passwords: { scrypt_ln: 16 } },
      {
        MCIAS_TOKENS_USER_TTL: '15m',
        MCIAS_TOKENS_MAX_SESSION_AGE: '12h',
        MCIAS_SERVER_TRUSTED_PROXIES: '10.0.0.1, 192.168.0.0/16,,',
        MCIAS_PASSWORDS_SCRYPT_LN: '12',
        MCIAS_SERVER_LISTEN: '0.0.0.0:443',
        MCIAS_LOG_LEVEL: 'debug',
      },
    );
    assert.equal(config.tokens.userTtlMs, 15 * 60_000);
    assert.equal(config.tokens.maxSessionAgeMs, 12 * 3_600_000);
    assert.deepEqual(config.server.trustedProxies, ['10.0.0.1', '192.168.0.0/16']);
    assert.equal(config.passwords.scrypt.ln, 12);
    assert.equal(config.server.host, '0.0.0.0');
    assert.equal(config.server.port, 443);
    assert.equal(config.log.level, 'debug');
  });

  test('[pg_admin.NAME] entries resolve with their CA file; a URL that is not postgres:// is named, never echoed', () => {
    const config = ok({ pg_admin: { main: { url: SECRET_URL, ca_file: 'pg-ca.pem' } } });
    assert.deepEqual(config.pgAdmin, [{ name: 'main', url: SECRET_URL, caFile: '/srv/mcias/pg-ca.pem' }]);
    assert.deepEqual(ok({}).pgAdmin, []);
    const found = problems({ pg_admin: { main: { url: 'mysql://root:hunter2-s3cret@db' } } });
    assert.ok(found.some((p) => p.includes('pg_admin.main.url')));
    assert.ok(!found.join('\n').includes('hunter2'));
    assert.ok(problems({ pg_admin: { 'Bad Name': { url: SECRET_URL } } }).length > 0);
  });

  test('[pgcreds] check_interval (1m, 1s..1d) and lease (2m, 30s..1h), from the file or MCIAS_PGCREDS_*', () => {
    assert.equal(ok({}).pgcreds.checkIntervalMs, 60_000);
    assert.equal(ok({ pgcreds: { check_interval: '30s' } }).pgcreds.checkIntervalMs, 30_000);
    assert.equal(ok({}, { MCIAS_PGCREDS_CHECK_INTERVAL: '5m' }).pgcreds.checkIntervalMs, 300_000);
    for (const bad of ['0s', '500ms', '2d']) {
      assert.deepEqual(problems({ pgcreds: { check_interval: bad } }), ['pgcreds.check_interval: must be between 1s and 1d'], bad);
    }
    assert.equal(problems({ pgcreds: { check_interval: 'soon' } }).length, 1, 'an unparsable one is one problem');
    assert.equal(ok({}).pgcreds.leaseMs, 120_000, 'the rotation lease: 2m by default');
    assert.equal(ok({}, { MCIAS_PGCREDS_LEASE: '30s' }).pgcreds.leaseMs, 30_000);
    assert.deepEqual(problems({ pgcreds: { lease: '10s' } }), ['pgcreds.lease: must be between 30s and 1h'], 'shorter than the admin connection may take');
  });

  test('[tokens] check_cache (SECURITY.md §51): 1s, 0s turns it off, at most 10s, from the file or MCIAS_TOKENS_CHECK_CACHE', () => {
    assert.equal(ok({}).tokens.checkCacheMs, 1_000);
    assert.equal(ok({ tokens: { check_cache: '0s' } }).tokens.checkCacheMs, 0, 'off');
    assert.equal(ok({ tokens: { check_cache: '250ms' } }).tokens.checkCacheMs, 250);
    assert.equal(ok({}, { MCIAS_TOKENS_CHECK_CACHE: '10s' }).tokens.checkCacheMs, 10_000);
    for (const bad of ['11s', '1m']) {
      assert.deepEqual(problems({ tokens: { check_cache: bad } }), ['tokens.check_cache: must be between 0s and 10s'], bad);
    }
    assert.equal(problems({ tokens: { check_cache: '0' } }).length, 1, 'a number without its unit is no duration');
  });

  test('the per-client share of the hash queue (SECURITY.md §37): derived from the queue, or set, from file or environment', () => {
    assert.equal(ok({ passwords: { max_queued_hashes: 100 } }).passwords.maxHashesPerClient, 13);
    assert.equal(ok({ passwords: { max_queued_hashes: 0 } }).passwords.maxHashesPerClient, 1);
    assert.equal(ok({ passwords: { max_hashes_per_client: 3 } }).passwords.maxHashesPerClient, 3);
    assert.equal(ok({}, { MCIAS_PASSWORDS_MAX_HASHES_PER_CLIENT: '20' }).passwords.maxHashesPerClient, 20);
  });

  test('[audit] retention (SECURITY.md §31): forever by default, a duration of at least a day, from file or environment', () => {
    assert.equal(ok({}).audit.retentionMs, null);
    assert.equal(ok({ audit: { retention: '365d' } }).audit.retentionMs, 365 * DAY_MS);
    assert.equal(ok({}, { MCIAS_AUDIT_RETENTION: '1d' }).audit.retentionMs, DAY_MS);
    hasProblem(problems({ audit: { retention: '23h' } }), 'audit.retention');
    hasProblem(problems({ audit: { retention: 'a while' } }), 'audit.retention');
    hasProblem(problems({}, { MCIAS_AUDIT_RETENTION: '5m' }), 'MCIAS_AUDIT_RETENTION');
  });

  test('MCIAS_STORAGE_URL_FILE reads the storage URL from a file; MCIAS_STORAGE_URL itself wins over it', () => {
    const urlFile = file('storage-url', `${SECRET_URL}\n`);
    const config = ok({}, { MCIAS_STORAGE_URL_FILE: urlFile });
    assert.deepEqual(config.storage, { kind: 'postgres', url: SECRET_URL, caFile: undefined, poolSize: 10 });
    const both = ok({}, { MCIAS_STORAGE_URL_FILE: urlFile, MCIAS_STORAGE_URL: 'sqlite:direct.db' });
    assert.equal(both.storage.kind, 'sqlite');
  });

  test('an unreadable *_FILE is a problem that names the variable', () => {
    const list = problems({}, { MCIAS_STORAGE_URL_FILE: path.join(dir, 'does-not-exist') });
    assert.ok(list.some((p) => p.startsWith('MCIAS_STORAGE_URL_FILE:')), list.join('\n'));
  });

  test('the master key comes from MCIAS_MASTER_KEY; MCIAS_MASTER_KEY_FILE names the key file', () => {
    const key = randomBytes(32).toString('base64');
    assert.equal(ok({}, { MCIAS_MASTER_KEY: key }).masterKey.inline, key);
    assert.equal(ok({}, { MCIAS_MASTER_KEY_FILE: '/run/secrets/mcias-key' }).masterKey.file, '/run/secrets/mcias-key');
  });

  test('every problem is reported at once, from the file and the environment', () => {
    const list = problems(
      {
        server: { listen: 'nonsense', body_limit: 10, trusted_proxies: ['not-an-ip', '10.0.0.0/33'] },
        tls: { min_version: '1.1' },
        tokens: { user_ttl: 'forever', service_ttl: '1w', max_session_age: '30 days', issuer: 'http://plain.example' },
        passwords: { scrypt_ln: 99 },
        log: { level: 'loud' },
      },
      { MCIAS_PASSWORDS_MIN_LENGTH: 'fifteen' },
    );
    for (const setting of [
      'server.listen',
      'server.body_limit',
      'server.trusted_proxies',
      'tls.min_version',
      'tokens.user_ttl',
      'tokens.service_ttl',
      'tokens.max_session_age',
      'tokens.issuer',
      'passwords.scrypt_ln',
      'MCIAS_PASSWORDS_MIN_LENGTH',
      'log.level',
    ]) {
      hasProblem(list, setting);
    }
    assert.equal(list.filter((p) => p.startsWith('server.trusted_proxies:')).length, 2, 'each bad proxy is named');
  });

  test('a bad value from the environment names the variable (or its _FILE), not the setting in the file', () => {
    const valueFile = file('user-ttl', 'a fortnight\n');
    const list = problems(
      { tokens: { service_ttl: 'forever' }, server: { listen: '127.0.0.1:8443' } },
      {
        MCIAS_TOKENS_USER_TTL: 'forever',
        MCIAS_TOKENS_MAX_SESSION_AGE_FILE: valueFile,
        MCIAS_SERVER_LISTEN: 'nowhere',
        MCIAS_SERVER_TRUSTED_PROXIES: '10.0.0.1,not-an-ip',
        MCIAS_PASSWORDS_SCRYPT_LN: '99',
        MCIAS_LOG_LEVEL: 'loud',
        MCIAS_STORAGE_URL: 'mysql://mcias:hunter2-s3cret@db.internal/mcias',
      },
    );
    for (const name of [
      'MCIAS_TOKENS_USER_TTL',
      'MCIAS_TOKENS_MAX_SESSION_AGE_FILE',
      'MCIAS_SERVER_LISTEN',
      'MCIAS_SERVER_TRUSTED_PROXIES',
      'MCIAS_PASSWORDS_SCRYPT_LN',
      'MCIAS_LOG_LEVEL',
      'MCIAS_STORAGE_URL',
      // From the file: named as the setting.
      'tokens.service_ttl',
    ]) {
      hasProblem(list, name);
    }
    for (const setting of ['tokens.user_ttl', 'tokens.max_session_age', 'server.listen', 'server.trusted_proxies', 'passwords.scrypt_ln', 'log.level', 'storage.url']) {
      assert.ok(!list.some((p) => p.startsWith(`${setting}:`)), `${setting} came from the environment, yet the problem names the file's setting:\n  ${list.join('\n  ')}`);
    }
    assert.equal(list.length, 8, list.join('\n'));
    for (const p of list) assert.ok(!p.includes('hunter2'), p);
  });

  test('unknown settings are refused, at the top level and inside a section', () => {
    const list = problems({ sever: { listen: '127.0.0.1:1' }, server: { lisen: '127.0.0.1:1' }, tokens: { ttl: '1d' } });
    hasProblem(list, 'sever');
    hasProblem(list, 'server.lisen');
    hasProblem(list, 'tokens.ttl');
  });

  test('values of the wrong type are refused', () => {
    const list = problems({ server: { body_limit: '65536', trusted_proxies: '10.0.0.1' }, storage: { url: 42 } });
    hasProblem(list, 'server.body_limit');
    hasProblem(list, 'server.trusted_proxies');
    hasProblem(list, 'storage.url');
  });

  test('every schema problem is reported with its message, the defaults fill the rest, and a bad list element is named', () => {
    const list = problems({
      server: { body_limit: 10, max_connections: 1.5, trusted_proxies: ['10.0.0.1', 5] },
      tls: { min_version: '1.1' },
      tokens: { audience: '' },
      a: 1, b: 2, c: 3, d: 4, e: 5, f: 6, g: 7, h: 8, i: 9, j: 10,
    });
    for (const expected of [
      'server.body_limit: must be >= 1024',
      'server.max_connections: must be integer',
      'server.trusted_proxies.1: must be string',
      'tls.min_version: must be one of "1.2", "1.3"',
      'tokens.audience: must NOT have fewer than 1 characters',
      ...'abcdefghij'.split('').map((key) => `${key}: unknown setting`),
    ]) {
      assert.ok(list.includes(expected), `${expected} not in:\n  ${list.join('\n  ')}`);
    }
    assert.equal(list.length, 15, list.join('\n'));
  });

  test('a master key in the config file is refused, without repeating it', () => {
    const key = randomBytes(32).toString('base64');
    const list = problems({ master_key: key });
    hasProblem(list, 'master_key');
    for (const p of list) assert.ok(!p.includes(key));
  });

  test('the storage URL is never echoed in a problem, from the file or the environment', () => {
    const cases: [Record<string, unknown>, Record<string, string>][] = [
      [{ storage: { url: 'mysql://mcias:hunter2-s3cret@db.internal/mcias' } }, {}],
      [{}, { MCIAS_STORAGE_URL: 'mssql://mcias:hunter2-s3cret@db.internal/mcias' }],
      [{ storage: { url: SECRET_URL, pool_size: 0 } }, {}],
      [{ storage: { url: SECRET_URL }, server: { listen: 'bad' } }, {}],
    ];
    for (const [raw, env] of cases) {
      const list = problems(raw, env);
      for (const p of list) assert.ok(!p.includes('hunter2'), p);
    }
    hasProblem(problems({ storage: { url: 'mysql://mcias:hunter2-s3cret@db.internal/mcias' } }), 'storage.url');
  });

  test('a TOML syntax error is located by line and column without quoting the line (it may hold a password)', () => {
    const broken = file('broken.toml', `[storage]\nurl = "${SECRET_URL}" trailing\n`);
    const result = readConfig({ file: broken, env: {} });
    assert.equal(result.config, undefined);
    assert.equal(result.problems.length, 1);
    assert.match(result.problems[0] as string, /line 2/);
    assert.ok(!(result.problems[0] as string).includes('hunter2'), result.problems[0]);
    const unterminated = readConfig({ file: file('unterminated.toml', `[storage]\nurl = "${SECRET_URL}\n`), env: {} });
    assert.ok(!(unterminated.problems[0] as string).includes('hunter2'), unterminated.problems[0]);
  });

  test('loadConfig reads a TOML file and throws a ConfigError listing every problem', () => {
    const good = file('good.toml', '[server]\nlisten = "127.0.0.1:9000"\n[tokens]\nuser_ttl = "7d"\n');
    const config = loadConfig({ file: good, env: {} });
    assert.equal(config.server.port, 9000);
    assert.equal(config.tokens.userTtlMs, 7 * DAY_MS);
    assert.equal(config.configFile, good);
    assert.equal(config.storage.kind === 'sqlite' && config.storage.path, path.join(dir, 'mcias.db'));

    const bad = file('bad.toml', '[server]\nlisten = "nope"\nbogus = 1\n[tokens]\nuser_ttl = "soon"\n');
    assert.throws(
      () => loadConfig({ file: bad, env: {} }),
      (error) => {
        assert.ok(error instanceof ConfigError);
        hasProblem(error.problems, 'server.listen');
        hasProblem(error.problems, 'server.bogus');
        hasProblem(error.problems, 'tokens.user_ttl');
        for (const p of error.problems) assert.ok(error.message.includes(p));
        return true;
      },
    );
  });

  test('a missing config file is a problem unless it is allowed to be missing', () => {
    const missing = path.join(dir, 'absent.toml');
    const result = readConfig({ file: missing, env: {} });
    assert.equal(result.config, undefined);
    assert.match(result.problems[0] as string, /no such file/);
    const allowed = readConfig({ file: missing, env: {}, mustExist: false });
    assert.equal(allowed.config?.server.port, 8443);
  });

  test('[metrics] listen: 127.0.0.1:9464 by default, any loopback address, or off (SECURITY.md §48)', () => {
    assert.deepEqual(ok({}).metrics, { listen: { host: '127.0.0.1', port: 9464 } });
    assert.deepEqual(ok({ metrics: { listen: '[::1]:9100' } }).metrics, { listen: { host: '::1', port: 9100 } });
    assert.deepEqual(ok({ metrics: { listen: '127.0.0.2:0' } }).metrics, { listen: { host: '127.0.0.2', port: 0 } });
    assert.deepEqual(ok({}, { MCIAS_METRICS_LISTEN: 'off' }).metrics, { listen: undefined });
  });

  test('[metrics] listen on anything but a loopback address is refused at load: the listener is plain HTTP (SECURITY.md §48)', () => {
    for (const listen of ['0.0.0.0:9464', '[::]:9464', '192.168.1.10:9464', '10.0.0.1:9464', '[::ffff:127.0.0.1]:9464', 'localhost:9464', 'metrics.internal:9464']) {
      const found = problems({ metrics: { listen } });
      hasProblem(found, 'metrics.listen');
      assert.match(found.join('\n'), /not a loopback address/, listen);
    }
    hasProblem(problems({}, { MCIAS_METRICS_LISTEN: '0.0.0.0:9464' }), 'MCIAS_METRICS_LISTEN');
    hasProblem(problems({ metrics: { listen: 'on' } }), 'metrics.listen');
    hasProblem(problems({ server: { listen: '127.0.0.1:9464' } }), 'metrics.listen');
  });

  test('connection bounds come from the file and MCIAS_SERVER_* variables (SECURITY.md §36)', () => {
    const config = ok(
      { server: { headers_timeout: '2s', max_connections: 50 } },
      { MCIAS_SERVER_REQUEST_TIMEOUT: '500ms', MCIAS_SERVER_HEADERS_TIMEOUT: '250ms', MCIAS_SERVER_MAX_CONNECTIONS_PER_ADDRESS: '5' },
    );
    assert.equal(config.server.connections.headersTimeoutMs, 250);
    assert.equal(config.server.connections.requestTimeoutMs, 500);
    assert.equal(config.server.connections.maxConnections, 50);
    assert.equal(config.server.connections.maxConnectionsPerAddress, 5);
  });

  test('no connection bound can be switched off or made inconsistent', () => {
    for (const key of ['handshake_timeout', 'headers_timeout', 'request_timeout', 'keep_alive_timeout', 'idle_timeout']) {
      hasProblem(problems({ server: { [key]: '0s' } }), `server.${key}`);
      hasProblem(problems({ server: { [key]: '2h' } }), `server.${key}`);
      hasProblem(problems({ server: { [key]: 'forever' } }), `server.${key}`);
    }
    for (const key of ['max_connections', 'max_connections_per_address', 'max_requests_per_socket']) {
      hasProblem(problems({ server: { [key]: 0 } }), `server.${key}`);
    }
    hasProblem(problems({ server: { headers_timeout: '1m', request_timeout: '30s' } }), 'server.headers_timeout');
    hasProblem(problems({ server: { max_connections: 10, max_connections_per_address: 11 } }), 'server.max_connections_per_address');
    // One problem per unparsable duration, not a second one about its range.
    assert.equal(problems({ server: { idle_timeout: 'forever' } }).filter((p) => p.startsWith('server.idle_timeout')).length, 1);
  });

  test('durations accept ms, s, m, h and d, and nothing else', () => {
    assert.equal(parseDuration('500ms'), 500);
    assert.equal(parseDuration('10s'), 10_000);
    assert.equal(parseDuration('15m'), 900_000);
    assert.equal(parseDuration('12h'), 43_200_000);
    assert.equal(parseDuration('30d'), 30 * DAY_MS);
    for (const bad of ['', '10', '1w', '-5m', '1.5h', 'd', '10 minutes']) assert.equal(parseDuration(bad), undefined, bad);
  });
});

describe('[web]: the login page (SECURITY.md §55)', () => {
  test('off by default, with no origins and a host-only cookie', () => {
    assert.deepEqual(ok({}).web, { enabled: false, cookieDomain: undefined, allowedRedirectOrigins: [] });
  });

  test('origins are bare https origins; the cookie domain a host name (leading dot dropped); the environment works too', () => {
    const config = ok(
      { web: { enabled: true, cookie_domain: '.Example.Home', allowed_redirect_origins: ['https://wiki.example.home', 'https://x.example.home:8443/'] } },
    );
    assert.deepEqual(config.web, {
      enabled: true,
      cookieDomain: 'example.home',
      allowedRedirectOrigins: ['https://wiki.example.home', 'https://x.example.home:8443'],
    });
    const fromEnv = ok({}, { MCIAS_WEB_ENABLED: 'true', MCIAS_WEB_ALLOWED_REDIRECT_ORIGINS: 'https://a.example,https://b.example' });
    assert.deepEqual(fromEnv.web.allowedRedirectOrigins, ['https://a.example', 'https://b.example']);
  });

  test('anything that is not a bare https origin, and a cookie domain that is not a host name, is refused', () => {
    for (const origin of ['http://wiki.example.home', 'https://wiki.example.home/path', 'https://user@wiki.example.home', 'wiki.example.home', '*.example.home', 'https://wiki.example.home?x']) {
      hasProblem(problems({ web: { allowed_redirect_origins: [origin] } }), 'web.allowed_redirect_origins');
    }
    for (const domain of ['example.home/', 'exa mple.home', 'https://example.home', '*.example.home']) {
      hasProblem(problems({ web: { cookie_domain: domain } }), 'web.cookie_domain');
    }
  });
});

describe('the master key', () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'mcias-key-test-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  const withKeyFile = (content: string, mode: number) => {
    const keyFile = path.join(dir, `key-${randomBytes(4).toString('hex')}`);
    writeFileSync(keyFile, content, { mode });
    chmodSync(keyFile, mode);
    return ok({ master_key_file: keyFile });
  };

  test('a 0600 file holding 32 base64 bytes is the master key', () => {
    const key = randomBytes(32);
    assert.deepEqual(loadMasterKey(withKeyFile(`${key.toString('base64')}\n`, 0o600)), key);
  });

  test('a key file that group or others can read is refused, and the message has no key in it', () => {
    const key = randomBytes(32).toString('base64');
    for (const mode of [0o640, 0o604, 0o644, 0o666]) {
      assert.throws(
        () => loadMasterKey(withKeyFile(key, mode)),
        (error) => error instanceof Error && /refusing/.test(error.message) && !error.message.includes(key),
        mode.toString(8),
      );
    }
  });

  test('a missing key file, or a key of the wrong size or encoding, is refused: the server cannot start', () => {
    assert.throws(() => loadMasterKey(ok({ master_key_file: path.join(dir, 'absent') })), /no such file/);
    assert.throws(() => loadMasterKey(withKeyFile(randomBytes(16).toString('base64'), 0o600)), /32 bytes/);
    assert.throws(() => loadMasterKey(withKeyFile('not base64 at all, surely', 0o600)), /32 bytes/);
  });

  test('MCIAS_MASTER_KEY supplies the key without a file', () => {
    const key = randomBytes(32);
    assert.deepEqual(loadMasterKey(ok({}, { MCIAS_MASTER_KEY: key.toString('base64') })), key);
    assert.throws(() => loadMasterKey(ok({}, { MCIAS_MASTER_KEY: 'c2hvcnQ=' })), /32 bytes/);
  });
});
