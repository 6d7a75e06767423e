/**
 * `node bench/metrics.ts`: what counting costs the token-check routes (SECURITY.md §48), measured so that a busy
 * machine does not decide the answer. Two in-process servers (inject, no TLS), one with metrics and one without,
 * answer GET /v1/me and POST /v1/token/validate in alternating rounds; each round's CPU time per request is taken
 * from this process's own CPU clock, which other processes' load does not advance. Medians over the rounds.
 *
 * Options (environment): BENCH_ROUNDS (default 15), BENCH_REQUESTS (per round and route, default 2000).
 */
import { performance } from 'node:perf_hooks';
import { createHarness, type Harness } from '../test/support/harness.ts';

const ROUNDS = Number(process.env['BENCH_ROUNDS'] ?? 15);
const REQUESTS = Number(process.env['BENCH_REQUESTS'] ?? 2000);
const BATCH = 16;

type Route = 'me' | 'validate';

async function round(h: Harness, route: Route): Promise<{ cpuUs: number; wallUs: number }> {
  const once = () =>
    route === 'me'
      ? h.request({ method: 'GET', url: '/v1/me', token: h.adminToken })
      : h.request({ method: 'POST', url: '/v1/token/validate', body: { token: h.adminToken } });
  const cpu = process.cpuUsage();
  const started = performance.now();
  for (let sent = 0; sent < REQUESTS; sent += BATCH) {
    const answers = await Promise.all(Array.from({ length: BATCH }, once));
    if (answers.some((a) => a.statusCode !== 200)) throw new Error(`${route} failed: ${answers[0]?.body}`);
  }
  const used = process.cpuUsage(cpu);
  return { cpuUs: (used.user + used.system) / REQUESTS, wallUs: ((performance.now() - started) * 1000) / REQUESTS };
}

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)] ?? 0;

const plain = await createHarness('sqlite');
const counted = await createHarness('sqlite', { metrics: true });
try {
  const results = new Map<string, { cpu: number[]; wall: number[] }>();
  for (const route of ['me', 'validate'] as const) {
    await round(plain, route); // warm-up
    await round(counted, route);
    for (let i = 0; i < ROUNDS; i++) {
      // Alternate which goes first, so neither always runs on a warmer process.
      const order = i % 2 === 0 ? ([['without', plain], ['with', counted]] as const) : ([['with', counted], ['without', plain]] as const);
      for (const [variant, h] of order) {
        const { cpuUs, wallUs } = await round(h, route);
        const key = `${route} ${variant} metrics`;
        const entry = results.get(key) ?? { cpu: [], wall: [] };
        entry.cpu.push(cpuUs);
        entry.wall.push(wallUs);
        results.set(key, entry);
      }
    }
  }
  console.log(`\nMetrics cost: ${ROUNDS} alternating rounds of ${REQUESTS} requests, in process (inject), medians\n`);
  console.log('| route | CPU µs/request | wall µs/request |');
  console.log('|---|---:|---:|');
  for (const [key, { cpu, wall }] of results) console.log(`| ${key} | ${median(cpu).toFixed(1)} | ${median(wall).toFixed(1)} |`);
  for (const route of ['me', 'validate']) {
    const without = median(results.get(`${route} without metrics`)?.cpu ?? []);
    const withMetrics = median(results.get(`${route} with metrics`)?.cpu ?? []);
    console.log(`${route}: with metrics ${((withMetrics / without) * 100).toFixed(1)}% of the CPU time without`);
  }
} finally {
  await plain.close();
  await counted.close();
}
