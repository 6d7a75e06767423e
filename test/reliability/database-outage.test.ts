import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { USER_PASSWORD } from '../support/harness.ts';
import { apiClient, type ApiClient, type ApiOperation, type ApiResponse } from '../support/api-routes.ts';
import { fillPath } from '../support/inspect.ts';
import { PG_CLUSTER_SKIP, startPgCluster, type PgCluster } from '../support/pg-cluster.ts';
import { logEntries } from '../support/process-tools.ts';
import { startServerProcess, type ServerProcess } from '../support/server-process.ts';

/**
 * SECURITY.md §52: PostgreSQL stopped under load. A real mciassrv over TLS on a throwaway cluster (never the shared
 * server): while the database is down, every route that needs it answers 503 problem+json `unavailable` with
 * Retry-After, `/readyz` 503 and `/healthz` 200, and the process lives; when the database is back, the same process
 * serves again without a restart. The routes come from the server's own /openapi.json, so a new route is covered.
 */

/** Routes that never touch the database: they answer 200 throughout. */
const WITHOUT_DATABASE = new Set(['GET /healthz', 'GET /openapi.json']);

/** Public routes validate their body before they reach the database: a body that gets them there. */
function publicBody(key: string, token: string): unknown {
  switch (key) {
    case 'POST /v1/auth/login':
      return { username: 'admin', password: USER_PASSWORD };
    case 'POST /v1/token/validate':
      return { token };
    case 'POST /v1/register':
      return { code: `mciasreg_${'A'.repeat(27)}`, username: 'newcomer', password: USER_PASSWORD };
    default:
      return undefined;
  }
}

const PARAMS: Record<string, string> = { username: 'svc', role: 'admin', jti: randomUUID(), id: randomUUID() };

function isProblem(response: ApiResponse, status: number, code: string): boolean {
  if (response.status !== status || !String(response.headers['content-type']).startsWith('application/problem+json')) return false;
  return (JSON.parse(response.body) as { code?: unknown }).code === code;
}

describe('a PostgreSQL outage under load [postgres]', { skip: PG_CLUSTER_SKIP }, () => {
  let cluster: PgCluster;
  let server: ServerProcess;
  let api: ApiClient;
  let adminToken: string;
  let serviceToken: string;
  let operations: ApiOperation[];

  before(async () => {
    cluster = await startPgCluster();
    await cluster.query('create database mcias');
    // One address sends the whole load: the per-address request limit (SECURITY.md §46) is not what this is about.
    server = await startServerProcess({ storageUrl: cluster.url({ database: 'mcias' }), env: { MCIAS_RATE_LIMIT_REQUESTS: '1000000' } });
    api = apiClient(server.url, server.caCertFile, 16);
    const login = await api.send({ method: 'POST', path: '/v1/auth/login', body: { username: 'admin', password: server.adminPassword } });
    assert.equal(login.status, 200, login.body);
    adminToken = (JSON.parse(login.body) as { token: string }).token;
    assert.equal((await api.send({ method: 'POST', path: '/v1/accounts', token: adminToken, body: { username: 'svc', kind: 'system' } })).status, 201);
    const issued = await api.send({ method: 'POST', path: '/v1/accounts/svc/token', token: adminToken });
    serviceToken = (JSON.parse(issued.body) as { token: string }).token;
    operations = await api.operations();
    assert.ok(operations.length > 30, `only ${operations.length} operations documented`);
  });
  after(async () => {
    api?.close();
    await server?.dispose();
    await cluster?.destroy();
  });

  /**
   * One request to `op` that reaches the database when it answers: the admin's token, a body for public routes, and
   * the service's bearer token for forward-auth (public, but its check is validate's).
   */
  const call = (op: ApiOperation): Promise<ApiResponse> => {
    const body = op.access === 'public' ? publicBody(op.key, serviceToken) : undefined;
    const token = op.key === 'GET /v1/auth/forward' ? serviceToken : op.access === 'public' ? undefined : adminToken;
    return api.send({
      method: op.method,
      path: fillPath(op.path, PARAMS),
      ...(token === undefined ? {} : { token }),
      ...(body === undefined ? {} : { body }),
    });
  };

  test('under load: 503 unavailable while it is down, no crash, and the same process serves again when it returns', async () => {
    // Mixed load (validations, reads, writes in transactions) from 12 workers until told to stop.
    const statuses = new Map<string, number>();
    let stop = false;
    let written = 0;
    const worker = async (n: number) => {
      for (let i = 0; !stop; i++) {
        const kind = i % 4;
        const request =
          kind === 0
            ? api.send({ method: 'POST', path: '/v1/token/validate', body: { token: serviceToken } })
            : kind === 1
              ? api.send({ method: 'GET', path: '/v1/me', token: adminToken })
              : kind === 2
                ? api.send({ method: 'POST', path: '/v1/roles', token: adminToken, body: { name: `load-${n}-${i}` } })
                : api.send({ method: 'GET', path: '/v1/accounts', token: adminToken });
        const response = await request.catch((error: unknown) => error as Error);
        if (response instanceof Error) {
          // The server went away (a crash): counted, and reported below with everything else.
          statuses.set(`no answer: ${response.message}`, (statuses.get(`no answer: ${response.message}`) ?? 0) + 1);
          await sleep(50);
          continue;
        }
        const code = response.status >= 400 ? (JSON.parse(response.body) as { code: string }).code : 'ok';
        statuses.set(`${response.status} ${code}`, (statuses.get(`${response.status} ${code}`) ?? 0) + 1);
        if (kind === 2 && response.status === 201) written++;
      }
    };
    const load = Promise.all(Array.from({ length: 12 }, (_, n) => worker(n)));
    let pid: number | undefined;
    try {
      await sleep(1_000);
      assert.ok(written > 0, 'the load wrote nothing before the outage');
      await cluster.stop();
      await sleep(1_500);

      assert.equal(server.child.exitCode ?? server.child.signalCode, null, `the server died when the database stopped: ${server.logs.slice(-3).join('\n')}`);

      // Down: every database route answers 503 unavailable with Retry-After; the others still answer.
      pid = server.child.pid;
      for (const op of operations) {
        const response = await call(op);
        if (WITHOUT_DATABASE.has(op.key)) {
          assert.equal(response.status, 200, `${op.key} while the database is down: ${response.body}`);
          continue;
        }
        assert.ok(isProblem(response, 503, 'unavailable'), `${op.key} while the database is down: ${response.status} ${response.body}`);
        assert.equal(response.headers['retry-after'], '5', op.key);
        assert.match((JSON.parse(response.body) as { detail: string }).detail, /database is not answering|database is not reachable/);
      }
      assert.ok(isProblem(await api.send({ method: 'GET', path: '/readyz' }), 503, 'unavailable'));
      assert.equal((await api.send({ method: 'GET', path: '/healthz' })).status, 200);

      await cluster.start();
      const back = Date.now();
      while ((await api.send({ method: 'GET', path: '/readyz' })).status !== 200) {
        assert.ok(Date.now() - back < 20_000, '/readyz did not recover within 20 s of the database returning');
        await sleep(100);
      }
      await sleep(1_000);
    } finally {
      stop = true;
      await load;
    }

    // The same process, never restarted, and every answer was a success or `unavailable`: never a 500.
    assert.equal(server.child.exitCode, null, 'the server exited');
    assert.equal(server.child.pid, pid);
    const other = [...statuses].filter(([key]) => !/^(200|201) ok$/.test(key) && key !== '503 unavailable');
    assert.deepEqual(other, [], `answers other than success and 503 unavailable: ${JSON.stringify([...statuses])}`);
    assert.ok((statuses.get('503 unavailable') ?? 0) > 0, `the load never saw the outage: ${JSON.stringify([...statuses])}`);
    assert.deepEqual(
      logEntries(server).filter((e) => e['msg'] === 'unexpected error'),
      [],
      'an error the server did not recognise as an outage',
    );

    // Back: reads, validations, logins and writes all work again.
    assert.equal((await api.send({ method: 'GET', path: '/v1/me', token: adminToken })).status, 200);
    const validated = await api.send({ method: 'POST', path: '/v1/token/validate', body: { token: serviceToken } });
    assert.equal((JSON.parse(validated.body) as { active: boolean }).active, true);
    assert.equal((await api.send({ method: 'POST', path: '/v1/auth/login', body: { username: 'admin', password: server.adminPassword } })).status, 200);
    assert.equal((await api.send({ method: 'POST', path: '/v1/roles', token: adminToken, body: { name: 'after-outage' } })).status, 201);
    for (const op of operations.filter((o) => o.method === 'GET' && o.parameters.length === 0)) {
      assert.equal((await call(op)).status, 200, op.key);
    }
  });
});
