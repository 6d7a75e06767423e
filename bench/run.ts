/**
 * `npm run bench`: measures a real `mciassrv` process over TLS on loopback.
 *
 *   healthz       a bare Fastify HTTPS route (no database): the ceiling for any route
 *   me            GET /v1/me: signature check (cached after the first) + one indexed query for token, account, grants
 *   validate      POST /v1/token/validate: the same check, as an app would ask for it
 *   forward       GET /v1/auth/forward: the same check again, as a reverse proxy asks for it (SECURITY.md §54)
 *   login         POST /v1/auth/login at the production scrypt cost (N=2^17)
 *   me+storm      GET /v1/me while a login storm runs: bounded hashing must keep token checks fast
 *
 * Options (environment): BENCH_SECONDS (default 5), BENCH_CONCURRENCY (default 16).
 */
import { readFileSync } from 'node:fs';
import { Agent, request } from 'node:https';
import { performance } from 'node:perf_hooks';
import { startServerProcess } from '../test/support/server-process.ts';

const SECONDS = Number(process.env['BENCH_SECONDS'] ?? 5);
const CONCURRENCY = Number(process.env['BENCH_CONCURRENCY'] ?? 16);

interface Result {
  name: string;
  requests: number;
  errors: number;
  perSecond: number;
  p50: number;
  p99: number;
}

function call(agent: Agent, url: string, ca: Buffer, init: { method: string; token?: string; body?: string }): Promise<number> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = {};
    if (init.token) headers['authorization'] = `Bearer ${init.token}`;
    if (init.body) headers['content-type'] = 'application/json';
    const req = request(url, { method: init.method, agent, ca, headers }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', reject);
    req.end(init.body);
  });
}

async function load(
  name: string,
  seconds: number,
  concurrency: number,
  once: () => Promise<number>,
  expected: number,
): Promise<Result> {
  const latencies: number[] = [];
  let errors = 0;
  const deadline = performance.now() + seconds * 1000;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (performance.now() < deadline) {
        const t0 = performance.now();
        const status = await once().catch(() => 0);
        latencies.push(performance.now() - t0);
        if (status !== expected) errors += 1;
      }
    }),
  );
  const elapsed = (performance.now() - started) / 1000;
  latencies.sort((a, b) => a - b);
  const at = (q: number) => latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))] ?? 0;
  return { name, requests: latencies.length, errors, perSecond: latencies.length / elapsed, p50: at(0.5), p99: at(0.99) };
}

// Every pool below connects from 127.0.0.1: lift the per-address cap (SECURITY.md §36) to what they open together,
// and the per-address request limit (SECURITY.md §46), which one benchmarking address passes in a second.
const server = await startServerProcess({
  env: {
    MCIAS_PASSWORDS_SCRYPT_LN: '17',
    MCIAS_SERVER_MAX_CONNECTIONS_PER_ADDRESS: String(CONCURRENCY + 64 + 16),
    MCIAS_RATE_LIMIT_REQUESTS: '100000000',
  },
});
try {
  const ca = readFileSync(server.caCertFile);
  // Separate connection pools, so that slow logins never hold the sockets a measured request needs.
  const agent = new Agent({ keepAlive: true, maxSockets: CONCURRENCY });
  const stormAgent = new Agent({ keepAlive: true, maxSockets: 64 });
  const loginBody = JSON.stringify({ username: 'admin', password: server.adminPassword });
  const loginWith = (pool: Agent) => () => call(pool, `${server.url}/v1/auth/login`, ca, { method: 'POST', body: loginBody });
  // The first login upgrades the init-time hash to the production cost; every later one pays it.
  const token = await new Promise<string>((resolve, reject) => {
    const req = request(`${server.url}/v1/auth/login`, { method: 'POST', ca, headers: { 'content-type': 'application/json' } }, (res) => {
      let text = '';
      res.on('data', (d: Buffer) => (text += d.toString()));
      res.on('end', () => resolve((JSON.parse(text) as { token: string }).token));
    });
    req.on('error', reject);
    req.end(loginBody);
  });
  const me = () => call(agent, `${server.url}/v1/me`, ca, { method: 'GET', token });

  const results: Result[] = [];
  await load('warm-up', 1, CONCURRENCY, me, 200);
  results.push(await load('healthz', SECONDS, CONCURRENCY, () => call(agent, `${server.url}/healthz`, ca, { method: 'GET' }), 200));
  results.push(await load('me', SECONDS, CONCURRENCY, me, 200));
  const validateBody = JSON.stringify({ token });
  results.push(
    await load('validate', SECONDS, CONCURRENCY, () => call(agent, `${server.url}/v1/token/validate`, ca, { method: 'POST', body: validateBody }), 200),
  );
  results.push(await load('forward', SECONDS, CONCURRENCY, () => call(agent, `${server.url}/v1/auth/forward`, ca, { method: 'GET', token }), 200));
  results.push(await load('login (scrypt N=2^17)', SECONDS, 4, loginWith(agent), 200));
  const storm = load('login storm', SECONDS, 32, loginWith(stormAgent), 200);
  results.push(await load('me during login storm', SECONDS, CONCURRENCY, me, 200));
  results.push(await storm);
  agent.destroy();
  stormAgent.destroy();

  console.log(`\nMCIAS benchmark: ${SECONDS}s per row, ${CONCURRENCY} concurrent clients, one process over TLS on loopback\n`);
  console.log('| scenario | requests | errors | req/s | p50 ms | p99 ms |');
  console.log('|---|---:|---:|---:|---:|---:|');
  for (const r of results) {
    console.log(`| ${r.name} | ${r.requests} | ${r.errors} | ${r.perSecond.toFixed(0)} | ${r.p50.toFixed(2)} | ${r.p99.toFixed(2)} |`);
  }
  const [healthz, meResult, validateResult, forwardResult] = results;
  const share = (r: Result | undefined) => (healthz && r ? `${((r.perSecond / healthz.perSecond) * 100).toFixed(0)}%` : '?');
  console.log(
    `\n/v1/me runs at ${share(meResult)}, /v1/token/validate at ${share(validateResult)} and /v1/auth/forward at ${share(forwardResult)} of the bare route's rate.`,
  );
} finally {
  await server.dispose();
}
