import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { appendFileSync } from 'node:fs';
import { createServer, connect, type Server, type Socket } from 'node:net';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { ADMIN_PASSWORD } from '../support/harness.ts';
import { assertOk, ctl } from '../support/mciasctl.ts';
import { PG_CLUSTER_SKIP, usePgCluster } from '../support/pg-cluster.ts';
import { httpsRequest, login, type HttpsResponse } from '../support/process-tools.ts';
import { MCIASSRV, run, serveDataDir, startServerProcess, type ServerProcess } from '../support/server-process.ts';

/**
 * Rotation on a real PostgreSQL server (SECURITY.md §43), black-box: a real mciassrv process over TLS, a throwaway
 * scram-sha-256 cluster (so a refused password is really refused), real connections. The SIGKILL cases put a TCP
 * proxy between mciassrv and the cluster for the admin connection (sslmode=disable for that one), hold the ALTER or
 * its answer, kill the server, and show that the restarted one ends with a stored password that logs in.
 */

const ADMIN_ROLE_PASSWORD = randomBytes(18).toString('base64url');
/** The restarted server may take over a killed one's rotation once its lease expires: the shortest allowed. */
const LEASE = '30s';
const LEASE_MS = 30_000;

const literal = (s: string) => `'${s.replaceAll("'", "''")}'`;

/**
 * A loopback TCP proxy that can hold the statement `ALTER ROLE` (client→server: it never reaches the server) or
 * let it through and hold the server's answer (server→client), and drop every connection.
 */
class HoldingProxy {
  mode: 'pass' | 'hold-statement' | 'hold-answer' = 'pass';
  sawAlter = false;
  readonly #sockets = new Set<Socket>();
  readonly #server: Server;
  port = 0;

  constructor(targetPort: number) {
    this.#server = createServer((client) => {
      const upstream = connect(targetPort, '127.0.0.1');
      let holdUp = false;
      let holdDown = false;
      for (const socket of [client, upstream]) {
        this.#sockets.add(socket);
        socket.on('error', () => {});
        socket.on('close', () => {
          this.#sockets.delete(socket);
          client.destroy();
          upstream.destroy();
        });
      }
      client.on('data', (chunk: Buffer) => {
        if (holdUp) return;
        if (this.mode !== 'pass' && chunk.includes('ALTER ROLE')) {
          this.sawAlter = true;
          if (this.mode === 'hold-statement') {
            holdUp = true;
            return;
          }
          holdDown = true;
        }
        upstream.write(chunk);
      });
      upstream.on('data', (chunk: Buffer) => {
        if (!holdDown) client.write(chunk);
      });
    });
  }

  async start(): Promise<void> {
    await new Promise<void>((resolve) => this.#server.listen(0, '127.0.0.1', resolve));
    this.port = (this.#server.address() as { port: number }).port;
  }

  dropAll(): void {
    for (const socket of this.#sockets) socket.destroy();
  }

  async close(): Promise<void> {
    this.dropAll();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }
}

async function waitUntil(check: () => Promise<boolean>, what: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(200);
  }
}

describe('rotation of services\' PostgreSQL passwords on a real server', { skip: PG_CLUSTER_SKIP }, () => {
  const cluster = usePgCluster({ logStatements: true });
  const proxy = { current: undefined as HoldingProxy | undefined };
  let server: ServerProcess;
  let adminToken: string;
  /** Every password MCIAS generated and handed out: none may appear in PostgreSQL's log. */
  const generated = new Set<string>();

  const api = async (method: string, url: string, body?: unknown): Promise<HttpsResponse> =>
    httpsRequest(`${server.url}${url}`, { caFile: server.caCertFile, method, token: adminToken, ...(body === undefined ? {} : { body }) });
  const json = (response: HttpsResponse) => JSON.parse(response.body) as Record<string, unknown>;
  const getCreds = async (service: string) => {
    const response = await api('GET', `/v1/accounts/${service}/pgcreds`);
    assert.equal(response.status, 200, response.body);
    const body = json(response);
    generated.add(body['password'] as string);
    return body as { username: string; password: string; rotation_pending: boolean; last_rotation_error: string | null };
  };
  const canLogin = (user: string, password: string) => cluster().canConnect(user, password);
  const rolePassword = async (role: string) =>
    (await cluster().query<{ rolpassword: string | null }>('select rolpassword from pg_authid where rolname = $1', [role]))[0]?.rolpassword;

  /** A system account whose credentials are the login `role` (created here with `password`), stored by PUT. */
  async function service(name: string, role: string, password: string, extra: Record<string, unknown> = {}): Promise<void> {
    const created = await api('POST', '/v1/accounts', { username: name, kind: 'system' });
    assert.equal(created.status, 201, created.body);
    if (extra['mode'] !== 'alternating') await cluster().query(`create role "${role}" login password ${literal(password)}`);
    const put = await api('PUT', `/v1/accounts/${name}/pgcreds`, {
      host: '127.0.0.1',
      port: cluster().port,
      database: 'postgres',
      username: role,
      password,
      sslmode: 'disable',
      ...extra,
    });
    assert.equal(put.status, 200, put.body);
  }

  async function startMcias(dataDir?: string): Promise<void> {
    const env = { MCIAS_PGCREDS_CHECK_INTERVAL: '1s', MCIAS_PGCREDS_LEASE: LEASE };
    if (dataDir === undefined) {
      const initial = await startServerProcess();
      await initial.stop();
      const admin = (port: number, password = ADMIN_ROLE_PASSWORD) => cluster().url({ user: 'mcias_admin', password, query: '?sslmode=disable' }).replace(`:${cluster().port}/`, `:${port}/`);
      appendFileSync(
        path.join(initial.dataDir, 'mcias.toml'),
        [
          '',
          '[pg_admin.test]',
          `url = "${admin(cluster().port)}"`,
          '[pg_admin.wrong]',
          `url = "${admin(cluster().port, 'not-the-admin-password')}"`,
          '[pg_admin.proxied]',
          `url = "${admin(proxy.current!.port)}"`,
          '',
        ].join('\n'),
      );
      dataDir = initial.dataDir;
    }
    server = await serveDataDir(dataDir, env);
    const response = await login(server, 'admin', ADMIN_PASSWORD);
    assert.equal(response.status, 200, response.body);
    adminToken = (JSON.parse(response.body) as { token: string }).token;
  }

  before(async () => {
    await cluster().query(`create role mcias_admin login createrole createdb password ${literal(ADMIN_ROLE_PASSWORD)}`);
    proxy.current = new HoldingProxy(cluster().port);
    await proxy.current.start();
    await startMcias();
  });
  after(async () => {
    await server?.dispose();
    await proxy.current?.close();
  });

  test('single mode: after rotate the new password logs in and the old one does not; the answer holds no password', async () => {
    await service('svc-single', 'svc_single', 'initial-single-password');
    const rotated = await api('POST', '/v1/accounts/svc-single/pgcreds/rotate');
    assert.equal(rotated.status, 200, rotated.body);
    assert.equal(json(rotated)['password'], undefined);
    assert.equal(json(rotated)['rotation_pending'], false);
    const { username, password } = await getCreds('svc-single');
    assert.equal(username, 'svc_single');
    assert.match(password, /^[A-Za-z0-9_-]{43}$/);
    assert.equal(await canLogin('svc_single', password), true, 'the new password logs in');
    assert.equal(await canLogin('svc_single', 'initial-single-password'), false, 'the old one does not');
  });

  test('alternating mode: the previous credentials keep working until the rotation after', async () => {
    await cluster().query('create role grp nologin');
    await cluster().query(`create role grp_a login password ${literal('initial-a-password')} in role grp`);
    await cluster().query(`create role grp_b login password ${literal('initial-b-password')} in role grp`);
    await service('svc-alt', 'grp', 'initial-a-password', { mode: 'alternating' });
    assert.equal((await api('POST', '/v1/accounts/svc-alt/pgcreds/rotate')).status, 200);
    const first = await getCreds('svc-alt');
    assert.equal(first.username, 'grp_b');
    assert.equal(await canLogin('grp_b', first.password), true);
    assert.equal(await canLogin('grp_a', 'initial-a-password'), true, 'the previous credentials still log in');

    assert.equal((await api('POST', '/v1/accounts/svc-alt/pgcreds/rotate')).status, 200);
    const second = await getCreds('svc-alt');
    assert.equal(second.username, 'grp_a');
    assert.equal(await canLogin('grp_a', second.password), true);
    assert.equal(await canLogin('grp_b', first.password), true, 'the previous credentials still log in');
    assert.equal(await canLogin('grp_a', 'initial-a-password'), false, 'the ones before that do not');
  });

  for (const failure of [
    { name: 'the role missing', reason: 'pg_role_missing', status: 502, setup: async () => cluster().query('drop role svc_gone') },
    { name: 'a wrong admin password', reason: 'pg_admin_refused', status: 502, admin: 'wrong' },
    { name: 'no admin connection for the server', reason: 'no_pg_admin', status: 409, port: 1 },
    { name: 'the cluster stopped', reason: 'pg_unreachable', status: 502, setup: async () => cluster().stop(), teardown: async () => cluster().start() },
  ]) {
    test(`${failure.name}: a clear ${failure.status} problem, and the stored password still logs in`, async () => {
      const name = `svc-fail-${failure.reason.replaceAll('_', '-')}`;
      const role = failure.reason === 'pg_role_missing' ? 'svc_gone' : `svc_${failure.reason}`;
      const initial = `initial password of ${role}`;
      await service(name, role, initial, {
        ...(failure.admin === undefined ? {} : { admin: failure.admin }),
        ...(failure.port === undefined ? {} : { port: failure.port }),
      });
      await failure.setup?.();
      try {
        const response = await api('POST', `/v1/accounts/${name}/pgcreds/rotate`);
        assert.equal(response.status, failure.status, response.body);
        assert.match(String(response.headers['content-type']), /^application\/problem\+json/);
        const problem = json(response);
        assert.equal(problem['code'], failure.status === 502 ? 'upstream_failed' : 'conflict');
        assert.equal(problem['reason'], failure.reason);
        assert.ok(!response.body.includes(ADMIN_ROLE_PASSWORD) && !response.body.includes('not-the-admin-password'));
      } finally {
        await failure.teardown?.();
      }
      const stored = await getCreds(name);
      assert.equal(stored.password, initial, 'the stored password is unchanged');
      assert.equal(stored.rotation_pending, false);
      assert.match(stored.last_rotation_error ?? '', new RegExp(failure.reason), 'GET shows the failure');
      if (failure.reason !== 'pg_role_missing') assert.equal(await canLogin(role, stored.password), true, 'and it still logs in');
    });
  }

  test('provision, then connect: single with a new database, and alternating', async () => {
    for (const [name, mode, user] of [['svc-prov', 'single', 'prov_single'], ['svc-prov-alt', 'alternating', 'prov_group']] as const) {
      assert.equal((await api('POST', '/v1/accounts', { username: name, kind: 'system' })).status, 201);
      const body = { host: '127.0.0.1', port: cluster().port, database: `${user}_db`, username: user, sslmode: 'disable', mode, create_database: true };
      const response = await api('POST', `/v1/accounts/${name}/pgcreds/provision`, body);
      assert.equal(response.status, 201, response.body);
      assert.equal(json(response)['password'], undefined);
      const creds = await getCreds(name);
      assert.equal(creds.username, mode === 'single' ? user : `${user}_a`);
      assert.equal(await cluster().canConnect(creds.username, creds.password, `${user}_db`), true, 'the provisioned login connects to its database');
      const again = await api('POST', `/v1/accounts/${name}/pgcreds/provision`, body);
      assert.equal(again.status, 409, again.body);
      assert.equal(json(again)['reason'], 'pgcreds_exist');
      assert.equal(await cluster().canConnect(creds.username, creds.password, `${user}_db`), true, 'a second provision changed nothing');
    }
  });

  test('mciasctl pgcreds rotate and provision', async () => {
    const env = { MCIAS_CONFIG_DIR: path.join(server.dataDir, 'ctl'), MCIAS_SERVER: server.url, MCIAS_CA_CERT: server.caCertFile, MCIAS_TOKEN: adminToken };
    assert.equal((await api('POST', '/v1/accounts', { username: 'svc-ctl', kind: 'system' })).status, 201);
    const provisioned = await ctl(env, 'pgcreds', 'provision', 'svc-ctl', '--host', '127.0.0.1', '--port', String(cluster().port), '--database', 'postgres', '--user', 'ctl_login', '--sslmode', 'disable');
    assertOk(provisioned);
    const first = await getCreds('svc-ctl');
    assert.ok(!provisioned.stdout.includes(first.password), 'provision prints no password');
    const rotated = await ctl(env, 'pgcreds', 'rotate', 'svc-ctl');
    assertOk(rotated);
    assert.match(rotated.stdout, /^rotated the PostgreSQL password of svc-ctl: ctl_login is in use/);
    const second = await getCreds('svc-ctl');
    assert.notEqual(second.password, first.password);
    assert.equal(await canLogin('ctl_login', second.password), true);
    assert.equal(await canLogin('ctl_login', first.password), false);
  });

  /**
   * The SIGKILL cases. The intent is written before the admin connection opens, so once the proxy sees the ALTER it
   * is durable; the kill then lands between "intent written" and "server changed" (A) or between "server changed"
   * and "completed" (B). The restarted server takes the rotation over once the killed one's lease expires.
   */
  for (const kase of [
    { name: 'A: killed before the ALTER reached the server', mode: 'hold-statement' as const, role: 'crash_a' },
    { name: 'B: killed after the ALTER ran, before its answer arrived', mode: 'hold-answer' as const, role: 'crash_b' },
  ]) {
    test(`SIGKILL ${kase.name}: the restarted server recovers to a stored password that logs in`, { timeout: LEASE_MS + 60_000 }, async () => {
      const name = `svc-${kase.role.replace('_', '-')}`;
      const initial = `initial password of ${kase.role}`;
      await service(name, kase.role, initial, { admin: 'proxied' });
      const before = await rolePassword(kase.role);
      const p = proxy.current!;
      p.sawAlter = false;
      p.mode = kase.mode;
      const pending = api('POST', `/v1/accounts/${name}/pgcreds/rotate`).catch((error: unknown) => error);
      await waitUntil(async () => p.sawAlter, 'the ALTER at the proxy', 20_000);
      assert.equal((await getCreds(name)).rotation_pending, true, 'the intent is stored before the server is changed');
      if (kase.mode === 'hold-answer') {
        await waitUntil(async () => (await rolePassword(kase.role)) !== before, 'the password change on the server', 10_000);
      } else {
        await sleep(500);
        assert.equal(await rolePassword(kase.role), before, 'the ALTER was held back');
      }
      assert.equal(await server.stop('SIGKILL'), null);
      await pending;
      p.dropAll();
      p.mode = 'pass';
      assert.equal(await canLogin(kase.role, initial), kase.mode === 'hold-statement', 'the old password works exactly when the ALTER never ran');

      await startMcias(server.dataDir);
      await waitUntil(async () => !(await getCreds(name)).rotation_pending, 'recovery of the pending rotation', LEASE_MS + 30_000);
      const recovered = await getCreds(name);
      assert.notEqual(recovered.password, initial, 'rolled forward to the intent');
      assert.equal(await canLogin(kase.role, recovered.password), true, 'the stored password logs in');
      assert.equal(await canLogin(kase.role, initial), false, 'the old one does not');
      assert.equal(recovered.last_rotation_error, null);
      // The recovery's event is on the audit chain (SECURITY.md §31), which the killed server left intact.
      const events = json(await api('GET', `/v1/audit?type=pg_credentials_rotated&account=${name}`))['events'] as { hash: string | null }[];
      assert.ok(events.length >= 1 && events.every((e) => e.hash !== null), JSON.stringify(events));
      const verified = await run(MCIASSRV, ['audit', 'verify', '--data-dir', server.dataDir]);
      assert.equal(verified.code, 0, verified.stderr);
    });
  }

  test("PostgreSQL's log (log_statement = all) holds none of the passwords MCIAS generated", async () => {
    const log = cluster().log();
    assert.match(log, /ALTER ROLE .* PASSWORD 'SCRAM-SHA-256\$/, 'the statements were logged, with verifiers');
    assert.ok(generated.size >= 8);
    for (const password of generated) {
      if (password.startsWith('initial')) continue; // set by this test in clear, on purpose
      assert.ok(!log.includes(password), 'a generated password is in the PostgreSQL log');
    }
  });
});
