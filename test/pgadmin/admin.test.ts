import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createServer, type AddressInfo, type Socket } from 'node:net';
import { describe, test } from 'node:test';
import pg from 'pg';
import type { PgAdminConnection } from '../../src/config/load.ts';
import { isMciasError, type ErrorCode } from '../../src/domain/errors.ts';
import type { PgTarget } from '../../src/domain/ports.ts';
import { PostgresAdmin } from '../../src/pgadmin/admin.ts';
import { PG_CLUSTER_SKIP, usePgCluster, type PgCluster, type UrlParts } from '../support/pg-cluster.ts';

/**
 * SECURITY.md §44: the admin connection, proved against a throwaway PostgreSQL that authenticates every connection
 * with scram-sha-256 (so a refused password is really refused), with TLS and `log_statement = 'all'`.
 */

const ADMIN_PASSWORD = 'admin-pw-9f2c7e1d';
const literal = (s: string) => pg.Client.prototype.escapeLiteral(s);
const ident = (s: string) => pg.Client.prototype.escapeIdentifier(s);

/** Asserts `work` fails with this code and reason; returns the error for further checks. */
async function failsWith(work: Promise<unknown>, code: ErrorCode, reason: string): Promise<Error> {
  try {
    await work;
  } catch (error) {
    assert.ok(isMciasError(error), `not an MciasError: ${String(error)}`);
    assert.equal(error.code, code, error.message);
    assert.equal(error.reason, reason, error.message);
    return error;
  }
  assert.fail(`expected ${code} (${reason}), but it succeeded`);
}

/** An error message an operator may see: never the admin password, a URL, a service password or a verifier. */
function assertClean(error: Error, ...secrets: string[]): void {
  for (const secret of [ADMIN_PASSWORD, 'postgres://', 'SCRAM-SHA-256$', ...secrets]) {
    assert.ok(!error.message.includes(secret), `message leaks ${secret}: ${error.message}`);
  }
}

describe('PostgresAdmin against a scram-sha-256 cluster (SECURITY.md §44)', { skip: PG_CLUSTER_SKIP }, () => {
  const cluster = usePgCluster({ tls: true, logStatements: true });
  let ready = false;
  const setUp = async (c: PgCluster) => {
    if (ready) return;
    await c.query(`create role mcias_admin login createrole createdb password ${literal(ADMIN_PASSWORD)}`);
    await c.query(`create role weak_admin login password ${literal(ADMIN_PASSWORD)}`);
    ready = true;
  };
  /** An admin over a plain connection unless `parts` says otherwise. */
  const adminFor = async (parts: UrlParts = {}, caFile?: string, name = 'main'): Promise<PostgresAdmin> => {
    await setUp(cluster());
    const url = cluster().url({ user: 'mcias_admin', password: ADMIN_PASSWORD, query: '?sslmode=disable', ...parts });
    return new PostgresAdmin([{ name, url, caFile }]);
  };
  const target = (admin: string | null = null, database = 'postgres'): PgTarget => ({ host: cluster().host, port: cluster().port, database, admin });
  const roleNames = async () => (await cluster().query<{ rolname: string }>('select rolname from pg_roles order by rolname')).map((r) => r.rolname);
  const createLogin = (name: string, password: string) => cluster().query(`create role ${ident(name)} login password ${literal(password)}`);

  test('setPassword: the new password logs in, the old one no longer does', async () => {
    const admin = await adminFor();
    await createLogin('svc_one', 'old-password-1');
    assert.equal(await cluster().canConnect('svc_one', 'old-password-1'), true);
    await admin.setPassword(target(), 'svc_one', 'new-password-1');
    assert.equal(await cluster().canConnect('svc_one', 'new-password-1'), true);
    assert.equal(await cluster().canConnect('svc_one', 'old-password-1'), false);
  });

  test('the server receives a verifier, never the password (log_statement = all)', async () => {
    const admin = await adminFor();
    await createLogin('svc_logged', 'irrelevant-1');
    const password = 'plaintext-marker-7d41a0c2e9';
    await admin.setPassword(target(), 'svc_logged', password);
    await admin.provision(target(), { group: null, logins: [{ login: 'svc_logged_new', password: `${password}-prov` }], createDatabase: false });
    assert.equal(await cluster().canConnect('svc_logged', password), true);
    const log = cluster().log();
    assert.match(log, /ALTER ROLE "svc_logged" PASSWORD 'SCRAM-SHA-256\$4096:/, 'the statement is logged, with a verifier');
    assert.match(log, /CREATE ROLE "svc_logged_new" LOGIN PASSWORD 'SCRAM-SHA-256\$4096:/);
    assert.ok(!log.includes(password), 'the password is in the server log');
  });

  test('a missing role is pg_role_missing and nothing is created', async () => {
    const admin = await adminFor();
    const before = await roleNames();
    const error = await failsWith(admin.setPassword(target(), 'no_such_role', 'secret-password-2'), 'upstream_failed', 'pg_role_missing');
    assertClean(error, 'secret-password-2');
    assert.match(error.message, /pg_admin\.main \(127\.0\.0\.1:\d+\)/, 'names the entry, host and port');
    assert.deepEqual(await roleNames(), before);
  });

  test('role names that need quoting work; an injection attempt is just a missing role', async () => {
    const admin = await adminFor();
    for (const name of ['Weird "Name', 'UPPER', 'with space', "it's"]) {
      await createLogin(name, 'old-password-3');
      await admin.setPassword(target(), name, 'new-password-3');
      assert.equal(await cluster().canConnect(name, 'new-password-3'), true, name);
      assert.equal(await cluster().canConnect(name, 'old-password-3'), false, name);
    }
    await createLogin('victim', 'victim-password');
    const before = await roleNames();
    for (const attack of ['x; drop role victim', 'x" password \'p\'; drop role victim; --', 'victim"; drop role victim; --']) {
      await failsWith(admin.setPassword(target(), attack, 'new-password-4'), 'upstream_failed', 'pg_role_missing');
    }
    assert.deepEqual(await roleNames(), before);
    assert.equal(await cluster().canConnect('victim', 'victim-password'), true);
  });

  test('superusers and the admin’s own role are refused, unchanged', async () => {
    const admin = await adminFor();
    await cluster().query(`create role some_super superuser login password 'super-password'`);
    await failsWith(admin.setPassword(target(), 'some_super', 'new-password-5'), 'upstream_failed', 'pg_admin_refused');
    assert.equal(await cluster().canConnect('some_super', 'super-password'), true);
    await failsWith(admin.setPassword(target(), 'mcias_admin', 'new-password-5'), 'upstream_failed', 'pg_admin_refused');
    assert.equal(await cluster().canConnect('mcias_admin', ADMIN_PASSWORD), true);
  });

  test('even through a superuser admin connection (warned against), a superuser’s password is refused', async () => {
    await setUp(cluster());
    const admin = new PostgresAdmin([{ name: 'super', url: cluster().url({ query: '?sslmode=disable' }), caFile: undefined }]);
    await cluster().query(`create role other_super superuser login password 'super-password-2'`);
    await failsWith(admin.setPassword(target(), 'other_super', 'new-password-5b'), 'upstream_failed', 'pg_admin_refused');
    assert.equal(await cluster().canConnect('other_super', 'super-password-2'), true);
  });

  test('a wrong admin password is pg_admin_refused, and the message holds no secret', async () => {
    const admin = await adminFor({ password: 'wrong-admin-password' });
    await createLogin('svc_wrongadmin', 'old-password-6');
    const error = await failsWith(admin.setPassword(target(), 'svc_wrongadmin', 'new-password-6'), 'upstream_failed', 'pg_admin_refused');
    assertClean(error, 'wrong-admin-password', 'new-password-6');
    assert.equal(await cluster().canConnect('svc_wrongadmin', 'old-password-6'), true);
  });

  test('an admin role without CREATEROLE is pg_admin_refused', async () => {
    const admin = await adminFor({ user: 'weak_admin' });
    await createLogin('svc_weak', 'old-password-7');
    await failsWith(admin.setPassword(target(), 'svc_weak', 'new-password-7'), 'upstream_failed', 'pg_admin_refused');
    assert.equal(await cluster().canConnect('svc_weak', 'old-password-7'), true);
    await failsWith(
      admin.provision(target(), { group: null, logins: [{ login: 'svc_weak_new', password: 'p-7' }], createDatabase: false }),
      'upstream_failed',
      'pg_admin_refused',
    );
    assert.ok(!(await roleNames()).includes('svc_weak_new'));
  });

  test('choosing the connection: by name, else by host and port; none is conflict no_pg_admin', async () => {
    const admin = await adminFor();
    await createLogin('svc_choose', 'old-password-8');
    await admin.setPassword(target('main'), 'svc_choose', 'new-password-8');
    await failsWith(admin.setPassword(target('other'), 'svc_choose', 'x-password-8'), 'conflict', 'no_pg_admin');
    await failsWith(admin.setPassword({ ...target(), port: cluster().port + 1 }, 'svc_choose', 'x-password-8'), 'conflict', 'no_pg_admin');
    await failsWith(admin.setPassword({ ...target(), host: 'localhost' }, 'svc_choose', 'x-password-8'), 'conflict', 'no_pg_admin');
    assert.equal(await cluster().canConnect('svc_choose', 'new-password-8'), true);
  });

  describe('TLS', () => {
    test('verify-full with ca_file = the server’s CA works', async () => {
      const admin = await adminFor({ host: 'localhost', query: '' }, cluster().tls!.caFile);
      await createLogin('svc_tls', 'old-password-9');
      await admin.setPassword({ ...target(), host: 'localhost' }, 'svc_tls', 'new-password-9');
      assert.equal(await cluster().canConnect('svc_tls', 'new-password-9'), true);
      const privileges = await admin.privileges('main');
      assert.deepEqual(privileges, {
        label: `pg_admin.main (localhost:${cluster().port})`,
        sslmode: 'verify-full',
        role: 'mcias_admin', superuser: false, createRole: true, createDb: true, serverVersion: privileges.serverVersion });
    });

    test('an untrusted CA or a host name the certificate does not carry is pg_tls_failed', async () => {
      await createLogin('svc_tlsbad', 'old-password-10');
      const { caFile, otherCaFile } = cluster().tls!;
      const cases: Array<[string, UrlParts, string | undefined]> = [
        ['ca_file = an unrelated CA', { host: 'localhost', query: '' }, otherCaFile],
        ['host 127.0.0.1, not in the certificate', { host: '127.0.0.1', query: '' }, caFile],
        ['sslmode=verify-full&sslrootcert in the URL, unrelated CA', { host: 'localhost', query: `?sslmode=verify-full&sslrootcert=${encodeURIComponent(otherCaFile)}` }, undefined],
        ['sslmode=verify-full in the URL with ca_file, wrong host', { host: '127.0.0.1', query: '?sslmode=verify-full' }, caFile],
        ['sslmode=verify-full without a CA: the system CAs do not know the test CA', { host: 'localhost', query: '?sslmode=verify-full' }, undefined],
      ];
      for (const [what, parts, ca] of cases) {
        const admin = await adminFor(parts, ca);
        const error = await failsWith(admin.setPassword({ ...target(), host: parts.host ?? '127.0.0.1' }, 'svc_tlsbad', 'new-password-10'), 'upstream_failed', 'pg_tls_failed');
        assertClean(error, 'new-password-10');
        assert.ok(error.message.includes('pg_admin.main'), `${what}: ${error.message}`);
      }
      assert.equal(await cluster().canConnect('svc_tlsbad', 'old-password-10'), true);
    });

    test('without sslmode the connection still uses TLS (require): a server without TLS is pg_tls_failed', async () => {
      // The machine's own PostgreSQL on 5432 has no TLS.
      const admin = new PostgresAdmin([{ name: 'local', url: 'postgres://postgres@127.0.0.1:5432/postgres', caFile: undefined }]);
      await failsWith(admin.privileges('local'), 'upstream_failed', 'pg_tls_failed');
      const tlsAdmin = await adminFor({ query: '' });
      await createLogin('svc_require', 'old-password-11');
      await tlsAdmin.setPassword(target(), 'svc_require', 'new-password-11');
      assert.equal(await cluster().canConnect('svc_require', 'new-password-11'), true);
    });
  });

  test('entries the adapter cannot honour fail at construction, naming the entry and not the URL', () => {
    const entry = (url: string, caFile?: string): PgAdminConnection[] => [{ name: 'bad', url, caFile }];
    for (const [url, caFile, pattern] of [
      [`postgres://u:${ADMIN_PASSWORD}@h/db?sslmode=prefer`, undefined, /sslmode=prefer is not supported/],
      [`postgres://u:${ADMIN_PASSWORD}@h/db?sslmode=verify-ca`, undefined, /verify-ca needs a CA/],
      [`postgres://u:${ADMIN_PASSWORD}@h/db?options=-c%20x`, undefined, /unsupported parameter options/],
      [`postgres://u:${ADMIN_PASSWORD}@h/db`, '/nonexistent/ca.pem', /cannot read the CA file/],
      [`postgres://:${ADMIN_PASSWORD}@h/db`, undefined, /names no user/],
      [`postgres://u:${ADMIN_PASSWORD}@h/db?sslmode=disable`, cluster().tls!.caFile, /sslmode=disable with a CA .* would not verify/],
      [`postgres://u:${ADMIN_PASSWORD}@h/db?sslmode=require&sslrootcert=${encodeURIComponent(cluster().tls!.caFile)}`, undefined, /sslmode=require with a CA/],
    ] as const) {
      assert.throws(
        () => new PostgresAdmin(entry(url, caFile)),
        (e: Error) => pattern.test(e.message) && e.message.includes('pg_admin.bad') && !e.message.includes(ADMIN_PASSWORD),
      );
    }
  });

  describe('provision', () => {
    test('creates the group, the logins and the database; a second run creates nothing; the logins connect', async () => {
      const admin = await adminFor();
      const plan = {
        group: 'billing',
        logins: [
          { login: 'billing_a', password: 'pw-a-12' },
          { login: 'billing_b', password: 'pw-b-12' },
        ],
        createDatabase: true,
      };
      assert.deepEqual(await admin.provision(target(null, 'billing'), plan), { created: ['billing', 'billing_a', 'billing_b', 'billing'] });
      assert.deepEqual(await admin.provision(target(null, 'billing'), plan), { created: [] });
      assert.equal(await cluster().canConnect('billing_a', 'pw-a-12', 'billing'), true);
      assert.equal(await cluster().canConnect('billing_b', 'pw-b-12', 'billing'), true);
      const [group] = await cluster().query<{ rolcanlogin: boolean }>(`select rolcanlogin from pg_roles where rolname = 'billing'`);
      assert.equal(group!.rolcanlogin, false, 'the group role is NOLOGIN');
      const members = await cluster().query<{ member: string }>(
        `select l.rolname as member from pg_auth_members m join pg_roles g on g.oid = m.roleid join pg_roles l on l.oid = m.member
          where g.rolname = 'billing' order by 1`,
      );
      assert.deepEqual(members.map((m) => m.member), ['billing_a', 'billing_b']);
      const [db] = await cluster().query<{ owner: string }>(`select pg_get_userbyid(datdba) as owner from pg_database where datname = 'billing'`);
      assert.equal(db!.owner, 'billing');
      // The admin was a member of the group only for CREATE DATABASE.
      const [adminMember] = await cluster().query<{ member: boolean }>(`select pg_has_role('mcias_admin', 'billing', 'MEMBER') as member`);
      assert.equal(adminMember!.member, false);
    });

    test('single mode: one login, the database owned by it; existing roles are left as they are', async () => {
      const admin = await adminFor();
      await createLogin('already', 'kept-password');
      assert.deepEqual(
        await admin.provision(target(null, 'Quoted DB'), { group: null, logins: [{ login: 'already', password: 'ignored-13' }], createDatabase: true }),
        { created: ['Quoted DB'] },
      );
      assert.equal(await cluster().canConnect('already', 'kept-password', 'Quoted DB'), true);
      const [db] = await cluster().query<{ owner: string }>(`select pg_get_userbyid(datdba) as owner from pg_database where datname = 'Quoted DB'`);
      assert.equal(db!.owner, 'already');
    });

    test('without CREATEDB the database step is refused; the roles stay, the temporary membership is gone, a rerun completes', async () => {
      await adminFor();
      await cluster().query(`create role nodb_admin login createrole password ${literal(ADMIN_PASSWORD)}`);
      const weak = await adminFor({ user: 'nodb_admin' });
      const plan = { group: 'ledger', logins: [{ login: 'ledger_a', password: 'pw-a-18' }, { login: 'ledger_b', password: 'pw-b-18' }], createDatabase: true };
      await failsWith(weak.provision(target(null, 'ledger'), plan), 'upstream_failed', 'pg_admin_refused');
      assert.ok((await roleNames()).includes('ledger_b'));
      const [member] = await cluster().query<{ member: boolean }>(`select pg_has_role('nodb_admin', 'ledger', 'MEMBER') as member`);
      assert.equal(member!.member, false, 'the membership granted for CREATE DATABASE was revoked');
      assert.deepEqual(await (await adminFor()).provision(target(null, 'ledger'), plan), { created: ['ledger'] });
      assert.equal(await cluster().canConnect('ledger_a', 'pw-a-18', 'ledger'), true);
    });

    test('an invalid plan or name changes nothing', async () => {
      const admin = await adminFor();
      const before = await roleNames();
      await failsWith(admin.provision(target(), { group: null, logins: [], createDatabase: false }), 'invalid_request', 'pg_plan_invalid');
      await failsWith(admin.provision(target(), { group: 'g', logins: [{ login: 'x'.repeat(64), password: 'p' }], createDatabase: false }), 'invalid_request', 'pg_name_invalid');
      await failsWith(admin.provision(target(), { group: 'g14', logins: [{ login: 'l14', password: 'pässword' }], createDatabase: false }), 'invalid_request', 'pg_password_unsupported');
      assert.deepEqual(await roleNames(), before);
    });
  });

  describe('canLogin', () => {
    test('true for the right password, false for a wrong one, over TLS verify-full too', async () => {
      const admin = await adminFor();
      await createLogin('svc_can', 'can-password-15');
      const login = (password: string) => ({ login: 'svc_can', password, sslmode: 'disable' as const, caCert: null });
      assert.equal(await admin.canLogin(target(), login('can-password-15')), true);
      assert.equal(await admin.canLogin(target(), login('wrong-15')), false);
      // Anything but a refused password is not an answer: a missing database throws.
      await failsWith(admin.canLogin(target(null, 'no_such_db'), login('can-password-15')), 'upstream_failed', 'pg_unreachable');
      const caCert = readFileSync(cluster().tls!.caFile, 'utf8');
      const tlsTarget = { ...target(), host: 'localhost' };
      assert.equal(await admin.canLogin(tlsTarget, { login: 'svc_can', password: 'can-password-15', sslmode: 'verify-full', caCert }), true);
      await failsWith(admin.canLogin(target(), { login: 'svc_can', password: 'can-password-15', sslmode: 'verify-full', caCert }), 'upstream_failed', 'pg_tls_failed');
    });
  });

  test('an ALTER the connection loses mid-statement is pg_outcome_unknown', async () => {
    const admin = await adminFor();
    await createLogin('svc_unknown', 'old-password-16');
    // A superuser transaction blocks writes to pg_authid (reads go on), so the ALTER is sent and waits; then its
    // backend is terminated.
    const blocker = new pg.Client({ connectionString: cluster().url({ query: '?sslmode=disable' }) });
    await blocker.connect();
    try {
      await blocker.query('begin');
      await blocker.query('lock table pg_authid in share mode');
      const pending = admin.setPassword(target(), 'svc_unknown', 'new-password-16');
      pending.catch(() => {}); // handled below, after the backend is found and terminated
      let pid: number | undefined;
      for (let i = 0; i < 100 && pid === undefined; i++) {
        const rows = await cluster().query<{ pid: number }>(
          `select pid from pg_stat_activity where application_name = 'mcias' and wait_event_type = 'Lock' and query like 'ALTER ROLE%'`,
        );
        pid = rows[0]?.pid;
        if (pid === undefined) await new Promise((r) => setTimeout(r, 50));
      }
      assert.ok(pid !== undefined, 'the ALTER never waited on the lock');
      await cluster().query('select pg_terminate_backend($1)', [pid]);
      const error = await failsWith(pending, 'upstream_failed', 'pg_outcome_unknown');
      assertClean(error, 'new-password-16');
    } finally {
      await blocker.query('rollback').catch(() => {});
      await blocker.end();
    }
  });

  test('an unknown host and a server that never answers are pg_unreachable, the latter after the connect timeout', async () => {
    const dns = new PostgresAdmin([{ name: 'dns', url: `postgres://mcias_admin:${ADMIN_PASSWORD}@no-such-host.invalid/postgres?sslmode=disable`, caFile: undefined }]);
    assertClean(await failsWith(dns.privileges('dns'), 'upstream_failed', 'pg_unreachable'));
    // Accepts TCP connections and never says a word.
    const silent = createServer(() => {});
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    const sockets = new Set<Socket>();
    silent.on('connection', (socket) => sockets.add(socket));
    try {
      const { port } = silent.address() as AddressInfo;
      const admin = new PostgresAdmin([{ name: 'silent', url: `postgres://mcias_admin:${ADMIN_PASSWORD}@127.0.0.1:${port}/postgres?sslmode=disable`, caFile: undefined }]);
      const started = Date.now();
      await failsWith(admin.privileges('silent'), 'upstream_failed', 'pg_unreachable');
      const waited = Date.now() - started;
      assert.ok(waited >= 4_500 && waited < 9_000, `gave up after ${waited} ms, not the 5 s connect timeout`);
    } finally {
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => silent.close(resolve));
    }
  });

  test('with the server stopped: pg_unreachable for every operation, canLogin throws', async () => {
    const admin = await adminFor();
    await createLogin('svc_down', 'old-password-17');
    await cluster().stop();
    try {
      const error = await failsWith(admin.setPassword(target(), 'svc_down', 'new-password-17'), 'upstream_failed', 'pg_unreachable');
      assertClean(error, 'new-password-17');
      await failsWith(admin.provision(target(), { group: null, logins: [{ login: 'x17', password: 'p-17' }], createDatabase: false }), 'upstream_failed', 'pg_unreachable');
      await failsWith(admin.canLogin(target(), { login: 'svc_down', password: 'old-password-17', sslmode: 'disable', caCert: null }), 'upstream_failed', 'pg_unreachable');
    } finally {
      await cluster().start();
    }
    assert.equal(await cluster().canConnect('svc_down', 'old-password-17'), true);
  });
});
