import assert from 'node:assert/strict';
import { readFileSync, readdirSync, readlinkSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { after, before, describe, test } from 'node:test';
import { parseScrape, valueOf, type Sample } from '../support/metrics.ts';
import { httpsRequest, login } from '../support/process-tools.ts';
import { MCIASSRV, run, startServerProcess, type ServerProcess } from '../support/server-process.ts';

/**
 * SECURITY.md §48 against a real `mciassrv serve`: the metrics listener answers on loopback in the Prometheus text
 * format, its counters follow what the API did, its labels hold route patterns and never a name or a secret, it
 * stops with the server, `off` means no listener, and a listen address off loopback is refused at start.
 */

interface PlainResponse {
  readonly status: number;
  readonly headers: Record<string, string | string[] | undefined>;
  readonly body: string;
}

function plainRequest(url: string, options: { method?: string; agent?: Agent } = {}): Promise<PlainResponse> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method: options.method ?? 'GET', agent: options.agent ?? false }, (res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

/** The TCP ports a process listens on, from /proc: its socket inodes matched against the LISTEN sockets. */
function listeningPorts(pid: number): number[] {
  const inodes = new Set(
    readdirSync(`/proc/${pid}/fd`).flatMap((fd) => {
      try {
        const inode = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`))?.[1];
        return inode === undefined ? [] : [inode];
      } catch {
        return []; // closed while we looked
      }
    }),
  );
  const ports = ['/proc/net/tcp', '/proc/net/tcp6'].flatMap((table) =>
    readFileSync(table, 'utf8')
      .split('\n')
      .slice(1)
      .map((line) => line.trim().split(/\s+/))
      .filter((columns) => columns[3] === '0A' && inodes.has(columns[9] ?? ''))
      .map((columns) => Number.parseInt((columns[1] ?? '').split(':')[1] ?? '', 16)),
  );
  return ports.sort((a, b) => a - b);
}

const portOfUrl = (url: string) => Number(new URL(url).port);

const PERSON = 'yolanda-metrics';
const PERSON_PASSWORD = 'yolanda has a long passphrase too';
const WRONG_PASSWORD = 'definitely not the passphrase';

describe('the metrics listener of a real mciassrv process', () => {
  let server: ServerProcess;
  let metricsUrl: string;
  const scrape = async (): Promise<{ text: string; samples: Sample[] }> => {
    const response = await plainRequest(metricsUrl);
    assert.equal(response.status, 200);
    return { text: response.body, samples: parseScrape(response.body) };
  };

  before(async () => {
    // Hashes slow enough (ln=15), one per address at a time: concurrent logins from the test are refused with 429.
    server = await startServerProcess({ env: { MCIAS_PASSWORDS_SCRYPT_LN: '15', MCIAS_PASSWORDS_MAX_HASHES_PER_CLIENT: '1' } });
    assert.ok(server.metricsUrl, 'the server logged no metrics URL');
    metricsUrl = server.metricsUrl;
  });
  after(() => server.dispose());

  test('answers GET /metrics on a loopback address in the Prometheus text format, and nothing else', async () => {
    assert.match(metricsUrl, /^http:\/\/127\.0\.0\.1:\d+\/metrics$/);
    assert.notEqual(portOfUrl(metricsUrl), portOfUrl(server.url));
    const response = await plainRequest(metricsUrl);
    assert.equal(response.status, 200);
    assert.match(String(response.headers['content-type']), /^text\/plain; version=0\.0\.4/);
    assert.equal(response.headers['cache-control'], 'no-store');
    const samples = parseScrape(response.body);
    for (const name of ['mcias_logins_total', 'mcias_password_hash_queue_depth', 'mcias_password_hashes_running', 'mcias_lockouts_total', 'process_cpu_user_seconds_total', 'nodejs_eventloop_lag_seconds']) {
      assert.ok(samples.some((s) => s.name === name), `${name} is missing`);
    }
    for (const type of ['counter', 'gauge', 'histogram']) assert.match(response.body, new RegExp(`^# TYPE mcias_\\w+ ${type}$`, 'm'));
    const head = await plainRequest(metricsUrl, { method: 'HEAD' });
    assert.equal(head.status, 200);
    assert.equal(head.body, '');
    assert.equal((await plainRequest(metricsUrl.replace(/\/metrics$/, '/'))).status, 404);
    assert.equal((await plainRequest(`${metricsUrl}/../healthz`)).status, 404);
    assert.equal((await plainRequest(metricsUrl, { method: 'POST' })).status, 405);
    // The API does not serve them: they are only on their own listener, which needs no token.
    assert.equal((await httpsRequest(`${server.url}/metrics`, { caFile: server.caCertFile })).status, 404);
  });

  test('the counters follow a scenario: logins that succeed and fail, a bad validation, 429s; latency by route pattern', async () => {
    const before = (await scrape()).samples;
    const admin = await login(server, 'admin', server.adminPassword);
    assert.equal(admin.status, 200);
    const adminToken = (JSON.parse(admin.body) as { token: string }).token;
    const created = await httpsRequest(`${server.url}/v1/accounts`, {
      caFile: server.caCertFile,
      token: adminToken,
      body: { username: PERSON, kind: 'human', password: PERSON_PASSWORD, temporary: false },
    });
    assert.equal(created.status, 201, created.body);
    const person = await login(server, PERSON, PERSON_PASSWORD);
    assert.equal(person.status, 200);
    const personToken = (JSON.parse(person.body) as { token: string }).token;
    assert.equal((await login(server, PERSON, WRONG_PASSWORD)).status, 401);
    const validate = (token: string) => httpsRequest(`${server.url}/v1/token/validate`, { caFile: server.caCertFile, body: { token } });
    assert.equal(JSON.parse((await validate(personToken)).body).active, true);
    assert.equal(JSON.parse((await validate(`${personToken.slice(0, -8)}AAAAAAAA`)).body).active, false);
    const tokens = await httpsRequest(`${server.url}/v1/accounts/${PERSON}/tokens`, { caFile: server.caCertFile, token: adminToken });
    assert.equal(tokens.status, 200);
    // One address, one hash at a time: of four logins at once, the first is checked and the others refused.
    const burst = await Promise.all(Array.from({ length: 4 }, () => login(server, PERSON, WRONG_PASSWORD)));
    const refused = burst.filter((r) => r.status === 429);
    assert.ok(refused.length >= 1, burst.map((r) => r.status).join(','));
    for (const response of refused) assert.equal(JSON.parse(response.body).reason, 'hash_address_limit');

    const { text, samples } = await scrape();
    const moved = (name: string, labels: Record<string, string> = {}) => valueOf(samples, name, labels) - valueOf(before, name, labels);
    assert.equal(moved('mcias_logins_total', { outcome: 'success' }), 2);
    assert.equal(moved('mcias_logins_total', { outcome: 'invalid_credentials' }), 1 + burst.length - refused.length);
    assert.equal(moved('mcias_logins_total', { outcome: 'rate_limited' }), refused.length);
    assert.equal(moved('mcias_token_validations_total', { result: 'active' }), 1);
    assert.equal(moved('mcias_token_validations_total', { result: 'inactive', reason: 'bad_signature' }), 1);
    assert.equal(moved('mcias_rate_limited_total', { source: 'hash_address_limit' }), refused.length);
    assert.equal(moved('mcias_rate_limited_total'), refused.length);
    const count = 'mcias_http_request_duration_seconds_count';
    assert.equal(moved(count, { method: 'GET', route: '/v1/accounts/:username/tokens', status_class: '2xx' }), 1);
    assert.equal(moved(count, { method: 'POST', route: '/v1/auth/login', status_class: '4xx' }), burst.length + 1);
    assert.equal(moved(count, { method: 'POST', route: '/v1/auth/login', status_class: '2xx' }), 2);
    assert.ok(!text.includes(`/v1/accounts/${PERSON}`), 'a raw path with a username is a label');

    // Nothing the scenario used is in the scrape: no username, password, token or token id.
    const jtis = [adminToken, personToken].map((t) => (JSON.parse(Buffer.from(t.split('.')[1] as string, 'base64url').toString()) as { jti: string }).jti);
    for (const secret of [PERSON, PERSON_PASSWORD, WRONG_PASSWORD, server.adminPassword, adminToken, personToken, ...jtis]) {
      assert.ok(!text.includes(secret), `the scrape holds ${secret.slice(0, 12)}…`);
    }
  });

  test('it stops with the server: SIGTERM with a scraper connection kept alive still exits 0, and the port is closed', async () => {
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    assert.equal((await plainRequest(metricsUrl, { agent })).status, 200);
    assert.deepEqual(listeningPorts(server.child.pid as number), [portOfUrl(server.url), portOfUrl(metricsUrl)].sort((a, b) => a - b));
    const started = Date.now();
    assert.equal(await server.stop('SIGTERM'), 0);
    assert.ok(Date.now() - started < 10_000, 'shutdown waited for the idle scraper connection');
    await assert.rejects(plainRequest(metricsUrl), { code: 'ECONNREFUSED' });
    agent.destroy();
  });
});

describe('[metrics] listen: off, and addresses off loopback', () => {
  let server: ServerProcess;
  before(async () => {
    server = await startServerProcess({ env: { MCIAS_METRICS_LISTEN: 'off' } });
  });
  after(() => server.dispose());

  test('off: the server listens on the API port only', async () => {
    assert.equal(server.metricsUrl, undefined);
    assert.deepEqual(listeningPorts(server.child.pid as number), [portOfUrl(server.url)]);
  });

  test('a non-loopback listen address is refused at config load, by serve and by config check, naming the setting', async () => {
    for (const listen of ['0.0.0.0:9464', '[::]:9464', '192.0.2.10:9464']) {
      const env = { MCIAS_METRICS_LISTEN: listen };
      const serve = await run(MCIASSRV, ['serve', '--data-dir', server.dataDir], { env });
      assert.equal(serve.code, 1, serve.stderr);
      assert.match(serve.stderr, /MCIAS_METRICS_LISTEN: "[^"]+" is not a loopback address/);
      const check = await run(MCIASSRV, ['config', 'check', '--data-dir', server.dataDir], { env });
      assert.equal(check.code, 1);
      assert.match(check.stderr, /MCIAS_METRICS_LISTEN: "[^"]+" is not a loopback address/);
    }
  });
});
