/**
 * `npm run bench`: a real `mciassrv` process over real TLS on loopback, loaded by autocannon, every scenario beside
 * its baseline in the same run (issue 12's targets; the README shows the latest table):
 *
 *   validate, me, healthz  POST /v1/token/validate (a valid token), GET /v1/me, GET /healthz, each against a bare
 *                        Fastify HTTPS route returning a constant, in its own process, same certificate and
 *                        connections (bench/bare-server.ts): the ceiling any route can reach on this machine. The two
 *                        alternate in rounds, so load from elsewhere on a shared machine hits both alike.
 *   validate+logins      validate while logins keep the password-hash workers busy, against validate alone;
 *                        /healthz is asked every 100 ms throughout and must always answer
 *   login                POST /v1/auth/login at the production scrypt cost, against raw crypto.scrypt with the same
 *                        parameters and as many hashes at once as the server runs (passwords.max_concurrent_hashes)
 *   bare POST            the bare server's POST / with validate's JSON body and body schema, answered with a constant,
 *                        against its bare GET: what Fastify alone costs a route with a body, the floor under validate
 *   forward              GET /v1/auth/forward (the same check as validate, as a reverse proxy asks), against the bare route
 *   renew, service token, pgcreds get, audit list: req/s and p99 only
 *   SDK offline verify   in-process, against jose's jwtVerify with the key in hand (bench/verify.ts)
 *
 * Each at 16 and 50 connections (login: LOGIN_CONNECTIONS, keeping the server's hash slots busy), on SQLite and on
 * the local PostgreSQL (a database the bench creates and drops), with the server's idle RSS and its peak RSS per
 * scenario read from /proc/PID/status. Writes bench/results/latest.{json,md}; `npm run bench -- --quick` runs each
 * scenario for about a second (CI proves the harness works; no timing is asserted) and writes
 * bench/results/quick.{json,md} (not committed).
 *
 * Options (environment): BENCH_SECONDS (default 8), BENCH_DIALECTS (default sqlite,postgres).
 */
import { spawn } from 'node:child_process';
import { scrypt, type ScryptOptions } from 'node:crypto';
import { once } from 'node:events';
import { readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { request } from 'node:https';
import { availableParallelism, cpus } from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { createInterface } from 'node:readline';
import autocannon from 'autocannon';
import { benchVerify } from './verify.ts';
import { DEFAULT_SCRYPT } from '../src/domain/password.ts';
import { createTestDatabase, type TestDialect } from '../test/support/databases.ts';
import { PG_CREDENTIALS_BODY } from '../test/support/pgcreds.ts';
import { ROOT, startServerProcess, type ServerProcess } from '../test/support/server-process.ts';

const QUICK = process.argv.includes('--quick');
const SECONDS = QUICK ? 1 : Number(process.env['BENCH_SECONDS'] ?? 8);
/** A production-cost hash takes 0.3 s on an idle core and seconds on a busy one: the login rows run longer. */
const LOGIN_SECONDS = QUICK ? 1 : Math.max(SECONDS, 20);
const CONNECTIONS = [16, 50] as const;
const DIALECTS = (process.env['BENCH_DIALECTS'] ?? 'sqlite,postgres').split(',').map((d) => d.trim()) as TestDialect[];
/** What mciassrv runs at once by default (passwords.max_concurrent_hashes = 0): one fewer than the cores. */
const HASH_CONCURRENCY = Math.max(1, availableParallelism() - 1);
/** Logins in flight from the bench's one address: enough to keep every hash slot busy, within the per-client cap. */
const LOGIN_CONNECTIONS = 8;
/** System accounts for the renew and service-token rows: more than the most connections, so no two share one. */
const SERVICES = 2 * Math.max(...CONNECTIONS);

interface Load {
  readonly rps: number;
  readonly p50: number;
  readonly p99: number;
  readonly requests: number;
  readonly errors: number;
  /** How many answers had each unexpected status (0: no answer), when there were any. */
  readonly unexpected?: Record<string, number>;
}

interface Row extends Load {
  readonly dialect: TestDialect | 'none';
  readonly scenario: string;
  readonly connections: number;
  readonly baseline?: { readonly name: string; readonly rps: number; readonly p99: number };
  /** req/s over the baseline's req/s. */
  readonly ratio?: number;
  readonly target?: string;
  /** The server's peak resident memory during the scenario, MB. */
  readonly peakRssMb?: number;
  readonly note?: string;
}

// ---------------------------------------------------------------------------------------------------------------
// Load generation and measurement

type Requests = NonNullable<autocannon.Options['requests']>;

async function cannon(
  url: string,
  options: {
    connections: number;
    method?: 'GET' | 'POST';
    path: string;
    token?: string;
    body?: unknown;
    requests?: Requests;
    expect?: number;
    seconds?: number;
  },
): Promise<Load> {
  const headers: Record<string, string> = {};
  if (options.token !== undefined) headers['authorization'] = `Bearer ${options.token}`;
  if (options.body !== undefined) headers['content-type'] = 'application/json';
  const result = await autocannon({
    url: `${url}${options.path}`,
    method: options.method ?? 'GET',
    connections: options.connections,
    duration: options.seconds ?? SECONDS,
    // Queued logins wait for every hash ahead of them.
    timeout: 120,
    headers,
    ...(options.body === undefined ? {} : { body: JSON.stringify(options.body) }),
    ...(options.requests === undefined ? {} : { requests: options.requests }),
  });
  // A response other than the expected status is an error (autocannon counts only non-2xx).
  const expected = options.expect ?? 200;
  const unexpected = Object.fromEntries(
    Object.entries(result.statusCodeStats ?? {}).filter(([code, s]) => Number(code) !== expected && (s.count ?? 0) > 0).map(([code, s]) => [code, s.count ?? 0]),
  );
  const wrong = Object.values(unexpected).reduce((n, count) => n + count, 0);
  if (result.errors + result.timeouts > 0) unexpected['0'] = result.errors + result.timeouts;
  return {
    ...(Object.keys(unexpected).length > 0 ? { unexpected } : {}),
    // Only answers with the expected status count towards the rate: a fast refusal is not a served request.
    rps: (result.requests.total - wrong) / result.duration,
    p50: result.latency.p50,
    p99: result.latency.p99,
    requests: result.requests.total,
    errors: result.errors + result.timeouts + wrong,
  };
}

/** Rounds of a scenario and its baseline, alternated, so that load from elsewhere on the machine hits both alike. */
const ROUNDS = QUICK ? 1 : 4;

/**
 * `measure` and `baseline` in ROUNDS alternating slices of SECONDS/ROUNDS each; req/s over all slices, p50 and p99
 * the median of the slices'.
 */
async function paired(measure: (seconds: number) => Promise<Load>, baseline: (seconds: number) => Promise<Load>): Promise<[Load, Load]> {
  const ours: Load[] = [];
  const theirs: Load[] = [];
  for (let i = 0; i < ROUNDS; i++) {
    // Alternate which goes first, so neither always runs right after the other's load.
    if (i % 2 === 0) {
      theirs.push(await baseline(SECONDS / ROUNDS));
      ours.push(await measure(SECONDS / ROUNDS));
    } else {
      ours.push(await measure(SECONDS / ROUNDS));
      theirs.push(await baseline(SECONDS / ROUNDS));
    }
  }
  return [combine(ours), combine(theirs)];
}

function combine(loads: Load[]): Load {
  const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)] ?? 0;
  const unexpected: Record<string, number> = {};
  for (const load of loads) for (const [code, count] of Object.entries(load.unexpected ?? {})) unexpected[code] = (unexpected[code] ?? 0) + count;
  return {
    rps: loads.reduce((n, l) => n + l.rps, 0) / loads.length,
    p50: median(loads.map((l) => l.p50)),
    p99: median(loads.map((l) => l.p99)),
    requests: loads.reduce((n, l) => n + l.requests, 0),
    errors: loads.reduce((n, l) => n + l.errors, 0),
    ...(Object.keys(unexpected).length > 0 ? { unexpected } : {}),
  };
}

/** The server's resident memory (VmRSS) and its peak since the last reset (VmHWM), from /proc. */
class Memory {
  readonly #pid: number;
  constructor(pid: number) {
    this.#pid = pid;
  }

  #status(field: 'VmRSS' | 'VmHWM'): number {
    const match = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${this.#pid}/status`, 'utf8'));
    if (match === null) throw new Error(`no ${field} in /proc/${this.#pid}/status`);
    return Number(match[1]) / 1024;
  }

  rssMb(): number {
    return this.#status('VmRSS');
  }

  /** Runs `work` and returns its result with the server's peak RSS meanwhile (VmHWM after resetting it). */
  async peak<T>(work: () => Promise<T>): Promise<{ value: T; peakRssMb: number }> {
    // Writing 5 to clear_refs resets the peak to the current RSS (Linux 4.0+). Where that is refused, sample.
    let reset = true;
    try {
      writeFileSync(`/proc/${this.#pid}/clear_refs`, '5');
    } catch {
      reset = false;
    }
    let sampled = this.rssMb();
    const timer = setInterval(() => (sampled = Math.max(sampled, this.rssMb())), 50);
    try {
      const value = await work();
      return { value, peakRssMb: Math.max(sampled, reset ? this.#status('VmHWM') : 0) };
    } finally {
      clearInterval(timer);
    }
  }
}

/** One HTTPS request with the server's CA; resolves with the status and body. */
function call(server: ServerProcess, method: string, urlPath: string, options: { token?: string; body?: unknown; timeoutMs?: number } = {}) {
  return new Promise<{ status: number; body: string }>((resolve, reject) => {
    const headers: Record<string, string> = {};
    if (options.token !== undefined) headers['authorization'] = `Bearer ${options.token}`;
    if (options.body !== undefined) headers['content-type'] = 'application/json';
    const req = request(`${server.url}${urlPath}`, { method, headers, ca: readFileSync(server.caCertFile), agent: false, timeout: options.timeoutMs ?? 120_000 }, (res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('timeout', () => req.destroy(new Error('timed out')));
    req.on('error', reject);
    req.end(options.body === undefined ? undefined : JSON.stringify(options.body));
  });
}

async function ok<T>(server: ServerProcess, method: string, urlPath: string, status: number, options: { token?: string; body?: unknown } = {}): Promise<T> {
  const response = await call(server, method, urlPath, options);
  if (response.status !== status) throw new Error(`${method} ${urlPath}: ${response.status} ${response.body}`);
  return (response.body === '' ? undefined : JSON.parse(response.body)) as T;
}

/** Asks /healthz every 100 ms until stopped; counts the answers that were not a 200 within a second. */
function pollHealth(server: ServerProcess): { stop(): Promise<{ asked: number; failed: number; slowestMs: number }> } {
  let asked = 0;
  let failed = 0;
  let slowestMs = 0;
  let running = true;
  const loop = (async () => {
    while (running) {
      const started = performance.now();
      asked += 1;
      const status = await call(server, 'GET', '/healthz', { timeoutMs: 1_000 }).then((r) => r.status, () => 0);
      slowestMs = Math.max(slowestMs, performance.now() - started);
      if (status !== 200) failed += 1;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  })();
  return {
    async stop() {
      running = false;
      await loop;
      return { asked, failed, slowestMs };
    },
  };
}

/** Raw crypto.scrypt at the production parameters, `concurrency` hashes at once, for SECONDS. */
async function rawScrypt(concurrency: number, seconds: number): Promise<Load> {
  const N = 2 ** DEFAULT_SCRYPT.ln;
  const options: ScryptOptions = { N, r: DEFAULT_SCRYPT.r, p: DEFAULT_SCRYPT.p, maxmem: 256 * N * DEFAULT_SCRYPT.r };
  const latencies: number[] = [];
  const started = performance.now();
  const deadline = started + seconds * 1000;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (performance.now() < deadline) {
        const t0 = performance.now();
        await new Promise<void>((resolve, reject) => scrypt('a password of some length', 'sixteen byte salt', 32, options, (e) => (e ? reject(e) : resolve())));
        latencies.push(performance.now() - t0);
      }
    }),
  );
  const elapsed = (performance.now() - started) / 1000;
  latencies.sort((a, b) => a - b);
  const at = (q: number) => latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))] ?? 0;
  return { rps: latencies.length / elapsed, p50: at(0.5), p99: at(0.99), requests: latencies.length, errors: 0 };
}

/** The baseline server (bench/bare-server.ts) in its own process, with the measured server's certificate. */
async function startBare(server: ServerProcess): Promise<{ url: string; stop(): Promise<void> }> {
  const child = spawn(process.execPath, [path.join(ROOT, 'bench', 'bare-server.ts'), server.caCertFile, path.join(server.dataDir, 'tls', 'key.pem')], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const [line] = (await once(createInterface({ input: child.stdout }), 'line')) as [string];
  return {
    url: line.trim(),
    async stop() {
      child.kill('SIGTERM');
      await once(child, 'exit');
    },
  };
}

// ---------------------------------------------------------------------------------------------------------------
// The scenarios, for one database

async function benchDialect(dialect: TestDialect, rows: Row[], memory: Record<string, { idleRssMb: number; afterRssMb: number }>, health: Record<string, unknown>): Promise<void> {
  const testDb = await createTestDatabase(dialect);
  const server = await startServerProcess({
    ...(dialect === 'postgres' ? { storageUrl: testDb.location } : {}),
    // The server still writes its access log (a cost it pays in production); the bench just does not parse it.
    keepLogs: false,
    env: {
      MCIAS_PASSWORDS_SCRYPT_LN: String(DEFAULT_SCRYPT.ln),
      // Everything comes from 127.0.0.1: lift the per-address connection cap (SECURITY.md §36) and request limit
      // (SECURITY.md §46) that one benchmarking address would otherwise meet at once.
      MCIAS_SERVER_MAX_CONNECTIONS_PER_ADDRESS: String(4 * Math.max(...CONNECTIONS)),
      MCIAS_RATE_LIMIT_REQUESTS: '100000000',
      // autocannon ignores the `Connection: close` the server sends on a connection's last allowed request and
      // would be answered 503 from then on; a real client reconnects (one handshake per 1,000 requests by default).
      MCIAS_SERVER_MAX_REQUESTS_PER_SOCKET: '1000000',
    },
  });
  const bare = await startBare(server);
  const mem = new Memory(server.child.pid as number);
  try {
    // Idle: started, migrated, the admin logged in once (the hasher's dummy hash is computed at start), no load.
    const login = await ok<{ token: string }>(server, 'POST', '/v1/auth/login', 200, { body: { username: 'admin', password: server.adminPassword } });
    const admin = login.token;
    // Hashes queued by a load that has ended still run: a login answered 200 has waited behind all of them.
    const drainLogins = async () => {
      for (;;) {
        const { status } = await call(server, 'POST', '/v1/auth/login', { body: { username: 'admin', password: server.adminPassword } });
        if (status === 200) return;
        if (status !== 429) throw new Error(`login answered ${status}`);
        await new Promise((resolve) => setTimeout(resolve, 1_000));
      }
    };
    await new Promise((resolve) => setTimeout(resolve, 2_000));
    const idleRssMb = mem.rssMb();

    const services = Array.from({ length: SERVICES }, (_, i) => `svc${i}`);
    for (const name of services) await ok(server, 'POST', '/v1/accounts', 201, { token: admin, body: { username: name, kind: 'system' } });
    await ok(server, 'POST', '/v1/accounts', 201, { token: admin, body: { username: 'pgsvc', kind: 'system' } });
    await ok(server, 'PUT', '/v1/accounts/pgsvc/pgcreds', 200, { token: admin, body: PG_CREDENTIALS_BODY });
    const pgsvc = (await ok<{ token: string }>(server, 'POST', '/v1/accounts/pgsvc/token', 201, { token: admin })).token;

    const add = (row: Omit<Row, 'dialect'>) => {
      rows.push({ dialect, ...row });
      console.log(JSON.stringify({ dialect, ...row }));
    };
    const measured = async (work: () => Promise<Load>) => {
      const { value, peakRssMb } = await mem.peak(work);
      return { ...value, peakRssMb };
    };

    for (const connections of CONNECTIONS) {
      const bareLoad = (seconds: number) => cannon(bare.url, { connections, path: '/', seconds });
      /** A scenario beside the bare route; `ofServer: false` for a load on the bare server itself (no MCIAS RSS). */
      const vsBare = async (name: string, work: (seconds: number) => Promise<Load>, row: { target?: string; note?: string } = {}, ofServer = true) => {
        let base: Load | undefined;
        const both = async () => {
          const [ours, theirs] = await paired(work, bareLoad);
          base = theirs;
          return ours;
        };
        const load = ofServer ? await measured(both) : await both();
        if (base === undefined) throw new Error('no baseline');
        add({ scenario: name, connections, ...load, baseline: { name: 'bare', rps: base.rps, p99: base.p99 }, ratio: load.rps / base.rps, ...row });
        return load;
      };

      await vsBare('GET /healthz', (seconds) => cannon(server.url, { connections, path: '/healthz', seconds }));
      const validate = await vsBare(
        'POST /v1/token/validate',
        (seconds) => cannon(server.url, { connections, method: 'POST', path: '/v1/token/validate', body: { token: admin }, seconds }),
        { target: connections === 16 ? '≥ 0.5×, p99 ≤ 10 ms' : '≥ 0.5×' },
      );
      // What Fastify alone costs a route with a body, against the same bare GET: validate cannot be cheaper than this.
      await vsBare(
        'bare POST / with the validate body (the floor for a route with a body)',
        (seconds) => cannon(bare.url, { connections, method: 'POST', path: '/', body: { token: admin }, seconds }),
        { note: "bench/bare-server.ts, not MCIAS: validate's body and body schema, a constant answer" },
        false,
      );
      await vsBare('GET /v1/me', (seconds) => cannon(server.url, { connections, path: '/v1/me', token: admin, seconds }), { target: '≥ 0.5×' });
      // Forward-auth is the same token check as validate, asked for by a reverse proxy (SECURITY.md §54).
      await vsBare('GET /v1/auth/forward', (seconds) => cannon(server.url, { connections, path: '/v1/auth/forward', token: admin, seconds }), { target: 'as validate' });

      // Logins from LOGIN_CONNECTIONS connections keep every hash slot busy while validate runs; /healthz is polled.
      const poll = pollHealth(server);
      let storm: Load | undefined;
      const underLogins = await measured(async () => {
        const [validating, logging] = await Promise.all([
          cannon(server.url, { connections, method: 'POST', path: '/v1/token/validate', body: { token: admin } }),
          cannon(server.url, { connections: LOGIN_CONNECTIONS, method: 'POST', path: '/v1/auth/login', body: { username: 'admin', password: server.adminPassword } }),
        ]);
        storm = logging;
        return validating;
      });
      if (storm === undefined) throw new Error('the login storm did not run');
      await drainLogins();
      const healthz2 = await poll.stop();
      health[`${dialect}/${connections}`] = { ...healthz2, logins: storm.requests, loginErrors: storm.errors };
      add({
        scenario: 'validate while logins saturate the hash workers',
        connections,
        ...underLogins,
        baseline: { name: 'validate alone', rps: validate.rps, p99: validate.p99 },
        ratio: underLogins.rps / validate.rps,
        target: 'p99 ≤ 25 ms; /healthz answered throughout',
        note: `/healthz ${healthz2.asked - healthz2.failed}/${healthz2.asked} answered (slowest ${healthz2.slowestMs.toFixed(0)} ms); ${storm.requests} logins, ${storm.errors} not 200`,
      });

      // renew: each token renews once, so every request takes a live token from a shared pool and returns its successor.
      const pool: string[] = [];
      for (const name of services) pool.push((await ok<{ token: string }>(server, 'POST', `/v1/accounts/${name}/token`, 201, { token: admin })).token);
      const renew = await measured(() =>
        cannon(server.url, {
          connections,
          method: 'POST',
          path: '/v1/auth/renew',
          requests: [
            {
              setupRequest: (req) => {
                const token = pool.shift();
                return token === undefined ? (null as never) : { ...req, headers: { ...req.headers, authorization: `Bearer ${token}` } };
              },
              onResponse: (status, body) => {
                if (status === 200) pool.push((JSON.parse(body) as { token: string }).token);
              },
            },
          ],
        }),
      );
      add({ scenario: 'POST /v1/auth/renew', connections, ...renew });

      let next = 0;
      const issue = await measured(() =>
        cannon(server.url, {
          connections,
          method: 'POST',
          path: '/v1/accounts/svc0/token',
          token: admin,
          expect: 201,
          requests: [{ setupRequest: (req) => ({ ...req, path: `/v1/accounts/${services[next++ % services.length]}/token` }) }],
        }),
      );
      add({ scenario: 'POST /v1/accounts/{svc}/token (service token issue)', connections, ...issue });

      const pgcreds = await measured(() => cannon(server.url, { connections, path: '/v1/accounts/pgsvc/pgcreds', token: pgsvc }));
      add({ scenario: 'GET /v1/accounts/{svc}/pgcreds', connections, ...pgcreds });

      const audit = await measured(() => cannon(server.url, { connections, path: '/v1/audit?limit=50', token: admin }));
      add({ scenario: 'GET /v1/audit?limit=50', connections, ...audit });
    }

    // Password login at the production cost, against raw scrypt running as many hashes at once as the server does.
    const raw = await rawScrypt(HASH_CONCURRENCY, LOGIN_SECONDS);
    add({ scenario: `raw crypto.scrypt ln=${DEFAULT_SCRYPT.ln} (baseline)`, connections: HASH_CONCURRENCY, ...raw });
    const logins = await measured(() =>
      cannon(server.url, { connections: LOGIN_CONNECTIONS, seconds: LOGIN_SECONDS, method: 'POST', path: '/v1/auth/login', body: { username: 'admin', password: server.adminPassword } }),
    );
    await drainLogins();
    add({
      scenario: `POST /v1/auth/login (scrypt ln=${DEFAULT_SCRYPT.ln}, ${HASH_CONCURRENCY} at once)`,
      connections: LOGIN_CONNECTIONS,
      ...logins,
      baseline: { name: 'raw scrypt', rps: raw.rps, p99: raw.p99 },
      ratio: logins.rps / raw.rps,
      target: '≥ 0.9×',
    });

    await new Promise((resolve) => setTimeout(resolve, 2_000));
    memory[dialect] = { idleRssMb, afterRssMb: mem.rssMb() };
  } finally {
    await bare.stop();
    await server.dispose();
    await testDb.drop();
  }
}

// ---------------------------------------------------------------------------------------------------------------
// In-process rows: the SDK's offline verify against jose's jwtVerify with the key in hand (bench/verify.ts).

async function benchInProcess(rows: Row[]): Promise<void> {
  const v = await benchVerify(SECONDS);
  rows.push({
    dialect: 'none',
    scenario: 'SDK offline verify (in-process)',
    connections: 1,
    rps: v.sdkPerSecond,
    p50: 0,
    p99: 0,
    requests: 0,
    errors: 0,
    note: 'ops/s in one process, alternating 100 ms slices; no latency figures',
    baseline: { name: 'jose jwtVerify, cached key', rps: v.josePerSecond, p99: 0 },
    ratio: v.ratio,
    target: '≥ 0.9×',
  });
}

// ---------------------------------------------------------------------------------------------------------------

function markdown(report: { machine: Record<string, unknown>; rows: Row[]; memory: Record<string, { idleRssMb: number; afterRssMb: number }> }): string {
  const n = (v: number | undefined, digits = 0) => (v === undefined ? '' : v.toFixed(v < 10 && digits === 0 ? 2 : digits));
  const lines = [
    `Machine: ${report.machine['cpu']}, ${report.machine['nproc']} cores (nproc), Node ${report.machine['node']}, ${report.machine['seconds']} s per scenario, ${report.machine['date']}${report.machine['quick'] === true ? ' (--quick: not a measurement)' : ''}`,
    '',
    '| database | scenario | conns | req/s | p50 ms | p99 ms | errors | baseline req/s | ratio | target | peak RSS MB | note |',
    '|---|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---|',
    ...report.rows.map(
      (r) =>
        `| ${r.dialect} | ${r.scenario} | ${r.connections} | ${n(r.rps)} | ${n(r.p50, 1)} | ${n(r.p99, 1)} | ${r.errors} | ${n(r.baseline?.rps)} | ${r.ratio === undefined ? '' : `${r.ratio.toFixed(2)}×`} | ${r.target ?? ''} | ${n(r.peakRssMb)} | ${[r.note, r.unexpected ? `unexpected statuses ${JSON.stringify(r.unexpected)}` : undefined].filter(Boolean).join('; ')} |`,
    ),
    '',
    '| database | idle RSS MB (target ≤ 90) | RSS MB after the run, idle 2 s |',
    '|---|---:|---:|',
    ...Object.entries(report.memory).map(([d, m]) => `| ${d} | ${n(m.idleRssMb)} | ${n(m.afterRssMb)} |`),
    '',
  ];
  return lines.join('\n');
}

const out = path.join(ROOT, 'bench', 'results');
if (process.argv.includes('--render')) {
  // Rewrites latest.md from latest.json (after a change to the table's layout), measuring nothing.
  const report = JSON.parse(readFileSync(path.join(out, 'latest.json'), 'utf8')) as Parameters<typeof markdown>[0];
  writeFileSync(path.join(out, 'latest.md'), markdown(report));
  process.exit(0);
}
const rows: Row[] = [];
const memory: Record<string, { idleRssMb: number; afterRssMb: number }> = {};
const health: Record<string, unknown> = {};
for (const dialect of DIALECTS) await benchDialect(dialect, rows, memory, health);
await benchInProcess(rows);
const machine = {
  cpu: cpus()[0]?.model ?? 'unknown',
  nproc: availableParallelism(),
  node: process.version,
  seconds: SECONDS,
  quick: QUICK,
  date: new Date().toISOString(),
};
const report = { machine, rows, memory, healthDuringLogins: health };
mkdirSync(out, { recursive: true });
const name = QUICK ? 'quick' : 'latest';
writeFileSync(path.join(out, `${name}.json`), `${JSON.stringify(report, null, 2)}\n`);
writeFileSync(path.join(out, `${name}.md`), markdown(report));
console.log(`\n${markdown(report)}\nwritten: bench/results/${name}.json and .md`);
