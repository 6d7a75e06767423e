import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import pg from 'pg';
import { generateSelfSignedCertificate } from '../../src/cli/certificate.ts';
import { assertOk, assertOneLineError, ctl, inTerminal, needsTerminal, useMciasctlFixture, type CtlEnv } from '../support/mciasctl.ts';
import { MCIASCTL, run } from '../support/server-process.ts';

/**
 * mciasctl pgcreds set, get and delete through the shipped binary against a real server: the password goes in on a
 * pipe or a no-echo prompt (never an argument) and comes out in every format exactly as it went in.
 */

const execFileAsync = promisify(execFile);
/** Every character that needs care in a shell, a URL or JSON. */
const PASSWORD = `it's p@ss:w/rd 100% "q" $HOME \`id\` \\ ?#&= ünï`;
const STORED = { host: 'db.internal.example', port: 6432, database: 'wiki data', user: 'wiki_app' } as const;

describe('mciasctl pgcreds against a real mciassrv', () => {
  const fx = useMciasctlFixture({ admin: true });
  let admin: CtlEnv;
  let asWiki: CtlEnv;
  let asOther: CtlEnv;
  let asDelegate: CtlEnv;
  const setArgs = (service: string, ...extra: string[]) => [
    'pgcreds', 'set', service, '--host', STORED.host, '--port', String(STORED.port), '--database', STORED.database, '--user', STORED.user, ...extra,
  ];
  const set = (env: CtlEnv, service: string, input: string, ...extra: string[]) =>
    run(MCIASCTL, [...setArgs(service, '--password-stdin'), ...extra], { env, input });
  /** A service's token in a fresh config directory, as a service would run mciasctl (MCIAS_TOKEN). */
  const serviceEnv = async (service: string): Promise<CtlEnv> => {
    const issued = await ctl(admin, 'token', 'issue', service);
    assertOk(issued);
    return { ...fx.freshEnv(), MCIAS_TOKEN: issued.stdout.trim() };
  };

  before(async () => {
    admin = fx.admin;
    for (const args of [
      ['account', 'create', 'wiki', '--system'],
      ['account', 'create', 'other', '--system'],
      ['role', 'create', 'wiki'],
      ['account', 'create', 'dora', '--password-file', fx.userPasswordFile, '--no-temporary'],
      ['role', 'grant', 'wiki', 'dora'],
    ]) {
      const result = await ctl(admin, ...args);
      assert.equal(result.code, 0, result.stderr);
    }
    asWiki = await serviceEnv('wiki');
    asOther = await serviceEnv('other');
    asDelegate = await fx.loggedIn('dora', fx.userPasswordFile);
  });

  test('set --password-stdin stores them and says where, never echoing the password', async () => {
    const result = await set(admin, 'wiki', `${PASSWORD}\n`);
    assertOk(result);
    assert.equal(result.stdout, `stored the PostgreSQL credentials of wiki: wiki_app@db.internal.example:6432/wiki data, sslmode require\n`);
    assert.ok(!result.stdout.includes(PASSWORD));
  });

  test('get prints them for people, the password included; --json as the API answers them', async () => {
    const text = await ctl(asWiki, 'pgcreds', 'get', 'wiki');
    assertOk(text);
    for (const line of ['host:', 'port:', 'database:', 'user:', 'password:', 'sslmode:']) assert.match(text.stdout, new RegExp(`^${line}`, 'm'));
    assert.match(text.stdout, /^host: +db\.internal\.example$/m);
    assert.ok(text.stdout.split('\n').some((l) => /^password: +/.test(l) && l.replace(/^password: +/, '') === PASSWORD));

    const json = await ctl(asDelegate, '--json', 'pgcreds', 'get', 'wiki');
    assertOk(json);
    const parsed = JSON.parse(json.stdout) as Record<string, unknown>;
    assert.deepEqual(
      [parsed['host'], parsed['port'], parsed['database'], parsed['username'], parsed['password'], parsed['sslmode']],
      [STORED.host, STORED.port, STORED.database, STORED.user, PASSWORD, 'require'],
    );
  });

  test('get --format env: a shell reads back exactly what was stored', async () => {
    const result = await ctl(asWiki, 'pgcreds', 'get', 'wiki', '--format', 'env');
    assertOk(result);
    assert.deepEqual(result.stdout.split('\n').filter((l) => l !== '').map((l) => l.split('=')[0]), ['PGHOST', 'PGPORT', 'PGDATABASE', 'PGUSER', 'PGPASSWORD', 'PGSSLMODE']);
    const script = 'set -a; eval "$1"; set +a; printf "%s\\0" "$PGHOST" "$PGPORT" "$PGDATABASE" "$PGUSER" "$PGPASSWORD" "$PGSSLMODE"; env | grep -c "^PG"';
    const { stdout } = await execFileAsync('sh', ['-c', script, 'sh', result.stdout]);
    const values = stdout.split('\0');
    assert.deepEqual(values.slice(0, 6), [STORED.host, String(STORED.port), STORED.database, STORED.user, PASSWORD, 'require']);
    assert.equal(values[6]?.trim(), '6', 'exported for the programs the shell starts');
  });

  test('get --format url: libpq-style URL whose user, password and database decode to what was stored', async () => {
    const result = await ctl(asWiki, 'pgcreds', 'get', 'wiki', '--format', 'url');
    assertOk(result);
    const url = result.stdout.trim();
    assert.equal(result.stdout.split('\n').length, 2, 'one line');
    assert.doesNotMatch(url, /\s/);
    const parsed = new URL(url);
    assert.equal(parsed.protocol, 'postgres:');
    assert.deepEqual(
      [decodeURIComponent(parsed.username), decodeURIComponent(parsed.password), parsed.hostname, parsed.port, decodeURIComponent(parsed.pathname.slice(1))],
      [STORED.user, PASSWORD, STORED.host, String(STORED.port), STORED.database],
    );
    assert.equal(parsed.searchParams.get('sslmode'), 'require');
    // node-postgres reads the same (a client built from the URL; it does not connect until asked).
    const client = new pg.Client({ connectionString: url });
    assert.deepEqual([client.user, client.password, client.host, client.port, client.database], [STORED.user, PASSWORD, STORED.host, STORED.port, STORED.database]);
  });

  test('a CA certificate: env and url need --ca-out, which writes it and points PGSSLROOTCERT / sslrootcert at it', async () => {
    const { certPem } = await generateSelfSignedCertificate([STORED.host]);
    const certFile = fx.fileWith(certPem.trim());
    assertOk(await set(admin, 'wiki', `${PASSWORD}\n`, '--pg-ca-cert', certFile));

    assertOneLineError(await ctl(asWiki, 'pgcreds', 'get', 'wiki', '--format', 'env'), 'usage', 2);
    const caOut = path.join(fx.scratch, 'pg root.crt');
    const env = await ctl(asWiki, 'pgcreds', 'get', 'wiki', '--format', 'env', '--ca-out', caOut);
    assertOk(env);
    assert.equal(readFileSync(caOut, 'utf8').trim(), certPem.trim());
    assert.match(env.stdout, /^PGSSLMODE='verify-full'$/m);
    const { stdout } = await execFileAsync('sh', ['-c', 'eval "$1"; printf "%s" "$PGSSLROOTCERT"', 'sh', env.stdout]);
    assert.equal(stdout, caOut);

    const url = await ctl(asWiki, 'pgcreds', 'get', 'wiki', '--format', 'url', '--ca-out', caOut);
    assertOk(url);
    const parsed = new URL(url.stdout.trim());
    assert.deepEqual([parsed.searchParams.get('sslmode'), parsed.searchParams.get('sslrootcert')], ['verify-full', caOut]);
    // Put back the plain ones for the tests that follow.
    assertOk(await set(admin, 'wiki', `${PASSWORD}\n`));
  });

  test('another service is refused in one line; so is a person without the role', async () => {
    const other = await ctl(asOther, 'pgcreds', 'get', 'wiki');
    assertOneLineError(other, 'forbidden');
    assert.ok(!other.stdout.includes(PASSWORD) && !other.stderr.includes(PASSWORD));
    await ctl(admin, 'account', 'create', 'hank', '--password-file', fx.userPasswordFile, '--no-temporary');
    assertOneLineError(await ctl(await fx.loggedIn('hank', fx.userPasswordFile), 'pgcreds', 'get', 'wiki'), 'forbidden');
    assertOneLineError(await set(asDelegate, 'wiki', `${PASSWORD}\n`), 'forbidden');
  });

  test('bad input: an empty pipe, both password sources, a bad port, an unknown sslmode are usage errors; the server refuses the rest', async () => {
    assertOneLineError(await set(admin, 'wiki', ''), 'usage', 2);
    assertOneLineError(await set(admin, 'wiki', `${PASSWORD}\n`, '--password-file', fx.userPasswordFile), 'usage', 2);
    assertOneLineError(await run(MCIASCTL, [...setArgs('wiki', '--password-stdin'), '--port', '99999'], { env: admin, input: 'x\n' }), 'usage', 2);
    assertOneLineError(await set(admin, 'wiki', `${PASSWORD}\n`, '--sslmode', 'prefer'), 'usage', 2);
    assertOneLineError(await set(admin, 'wiki', `${PASSWORD}\n`, '--rotate-every', '5m'), 'invalid_request');
    assertOneLineError(await set(admin, 'wiki', `${PASSWORD}\n`, '--admin', 'nosuch'), 'invalid_request');
    // Nothing of that changed what is stored.
    const json = await ctl(admin, '--json', 'pgcreds', 'get', 'wiki');
    assertOk(json);
    assert.equal((JSON.parse(json.stdout) as { password: string }).password, PASSWORD);
  });

  test('set asks for the password twice without echo when there is no pipe', needsTerminal, async () => {
    const typed = 'typed at the prompt';
    const result = await inTerminal(setArgs('other'), admin, [
      ['PostgreSQL password of wiki_app:', typed],
      ['Repeat it:', typed],
    ]);
    assert.equal(result.code, 0, result.output);
    assert.ok(!result.output.includes(typed), 'the password was echoed');
    const json = await ctl(admin, '--json', 'pgcreds', 'get', 'other');
    assert.equal((JSON.parse(json.stdout) as { password: string }).password, typed);
  });

  test('delete forgets them; get is then not_found', async () => {
    const result = await ctl(admin, 'pgcreds', 'delete', 'wiki');
    assertOk(result);
    assert.equal(result.stdout, 'deleted the PostgreSQL credentials of wiki\n');
    assertOneLineError(await ctl(asWiki, 'pgcreds', 'get', 'wiki'), 'not_found');
    assertOneLineError(await ctl(admin, 'pgcreds', 'delete', 'wiki'), 'not_found');
  });
});
