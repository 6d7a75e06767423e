import assert from 'node:assert/strict';
import { appendFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import { ADMIN_PASSWORD } from '../support/harness.ts';
import { PG_CLUSTER_SKIP, usePgCluster } from '../support/pg-cluster.ts';
import { runBounded } from '../support/process-tools.ts';
import { MCIASSRV } from '../support/server-process.ts';

/**
 * `mciassrv config check` connects with each `[pg_admin.NAME]` entry and reports its role (SECURITY.md §44): a role
 * without CREATEROLE or an unreachable server is a problem, a superuser or an unverified TLS connection a warning,
 * and the URL (which holds the admin password) is never printed.
 */

const PG_PASSWORD = 'pgadmin-check-secret-3b9e';
const mciassrv = (args: readonly string[]) => runBounded(MCIASSRV, args);

describe('mciassrv config check with [pg_admin.NAME] connections', { skip: PG_CLUSTER_SKIP }, () => {
  const cluster = usePgCluster({ tls: true });
  let dir: string;
  let dataDir: string;
  let baseToml: string;

  before(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'mcias-check-pgadmin-'));
    dataDir = path.join(dir, 'data');
    const passwordFile = path.join(dir, 'admin-password');
    writeFileSync(passwordFile, `${ADMIN_PASSWORD}\n`, { mode: 0o600 });
    const init = await mciassrv(['init', '--data-dir', dataDir, '--admin-password-file', passwordFile, '--listen', '127.0.0.1:0']);
    assert.equal(init.code, 0, init.stderr);
    baseToml = readFileSync(path.join(dataDir, 'mcias.toml'), 'utf8');
    const literal = pg.Client.prototype.escapeLiteral;
    await cluster().query(`create role mcias_admin login createrole password ${literal(PG_PASSWORD)}`);
    await cluster().query(`create role weak_admin login password ${literal(PG_PASSWORD)}`);
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  const withEntries = (entries: Record<string, { url: string; ca_file?: string }>) => {
    writeFileSync(path.join(dataDir, 'mcias.toml'), baseToml);
    for (const [name, entry] of Object.entries(entries)) {
      appendFileSync(
        path.join(dataDir, 'mcias.toml'),
        `\n[pg_admin.${name}]\nurl = ${JSON.stringify(entry.url)}\n${entry.ca_file === undefined ? '' : `ca_file = ${JSON.stringify(entry.ca_file)}\n`}`,
      );
    }
  };
  const assertNoSecret = (output: string) => {
    assert.ok(!output.includes(PG_PASSWORD), 'an admin password is printed');
    assert.ok(!output.includes(cluster().superuserPassword), 'the superuser password is printed');
    assert.ok(!output.includes('postgres://'), 'a URL is printed');
  };

  test('a CREATEROLE role over verify-full is OK and described; a superuser and sslmode=require are warned about', async () => {
    withEntries({
      main: { url: cluster().url({ user: 'mcias_admin', password: PG_PASSWORD, host: 'localhost' }), ca_file: cluster().tls!.caFile },
      root: { url: cluster().url({ query: '?sslmode=require' }) },
    });
    const result = await mciassrv(['config', 'check', '--data-dir', dataDir]);
    assert.equal(result.code, 0, result.stderr);
    const port = cluster().port;
    assert.match(result.stdout, new RegExp(`^pg_admin\\.main \\(localhost:${port}\\): role mcias_admin, CREATEROLE yes, CREATEDB no, sslmode verify-full, PostgreSQL \\d+\\.\\d+$`, 'm'));
    assert.match(result.stdout, /^warning: pg_admin\.root \(127\.0\.0\.1:\d+\): role postgres is a superuser/m);
    assert.match(result.stdout, /^warning: pg_admin\.root .*sslmode=require does not check the server's host name/m);
    assert.doesNotMatch(result.stdout, /warning: pg_admin\.main/);
    assert.match(result.stdout, /mcias\.toml: OK\n$/);
    assertNoSecret(result.stdout + result.stderr);
  });

  test('no CREATEROLE, a wrong password, an unreachable server and an unsupported sslmode are problems', async () => {
    withEntries({
      weak: { url: cluster().url({ user: 'weak_admin', password: PG_PASSWORD, query: '?sslmode=disable' }) },
      wrong: { url: cluster().url({ user: 'mcias_admin', password: `${PG_PASSWORD}-wrong`, query: '?sslmode=disable' }) },
      down: { url: `postgres://mcias_admin:${PG_PASSWORD}@127.0.0.1:1/postgres?sslmode=disable` },
      loose: { url: cluster().url({ user: 'mcias_admin', password: PG_PASSWORD, query: '?sslmode=prefer' }) },
      badca: { url: cluster().url({ user: 'mcias_admin', password: PG_PASSWORD, host: 'localhost' }), ca_file: cluster().tls!.otherCaFile },
    });
    const result = await mciassrv(['config', 'check', '--data-dir', dataDir]);
    assert.equal(result.code, 1);
    for (const expected of [
      /pg_admin\.weak \(127\.0\.0\.1:\d+\): role weak_admin lacks CREATEROLE/,
      /pg_admin\.wrong \(127\.0\.0\.1:\d+\): login refused: .*\(pg_admin_refused\)/,
      /pg_admin\.down \(127\.0\.0\.1:1\): cannot connect: ECONNREFUSED \(pg_unreachable\)/,
      /pg_admin\.loose\.url: sslmode=prefer is not supported/,
      /pg_admin\.badca \(localhost:\d+\): TLS failed: .*\(pg_tls_failed\)/,
    ]) {
      assert.match(result.stderr, expected);
    }
    assert.match(result.stderr, /: 5 problems\n/);
    assertNoSecret(result.stdout + result.stderr);
  });

  test('serve refuses to start with an entry it cannot honour, naming it and not its URL', async () => {
    withEntries({ loose: { url: cluster().url({ user: 'mcias_admin', password: PG_PASSWORD, query: '?sslmode=allow' }) } });
    const result = await mciassrv(['serve', '--data-dir', dataDir]);
    assert.equal(result.timedOut, false, 'it started serving');
    assert.notEqual(result.code, 0);
    assert.match(result.stderr, /pg_admin\.loose\.url: sslmode=allow is not supported/);
    assertNoSecret(result.stdout + result.stderr);
  });
});
