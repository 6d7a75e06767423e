import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import rateLimit from '@fastify/rate-limit';
import { register as globalRegistry } from 'prom-client';
import { buildApp } from '../../src/http/app.ts';
import { Metrics } from '../../src/http/metrics.ts';
import { DIALECTS } from '../support/databases.ts';
import { ADMIN_PASSWORD, USER_PASSWORD, createHarness, type Harness } from '../support/harness.ts';
import { appRoutes, issueToken, routeKey } from '../support/inspect.ts';
import { labelValues, parseScrape, valueOf, type Sample } from '../support/metrics.ts';
import { enrollTotp } from '../support/totp-codes.ts';

/**
 * SECURITY.md §48: what the metrics count, by which labels, and that no label carries a name, an address, a token or
 * a raw URL. The in-process app is scraped through `Metrics.scrape()`; test/e2e/metrics.test.ts scrapes the listener
 * of a real server process.
 */

async function scrape(metrics: Metrics | undefined): Promise<{ text: string; samples: Sample[] }> {
  assert.ok(metrics, 'the harness was built without metrics');
  const { body, contentType } = await metrics.scrape();
  assert.match(contentType, /^text\/plain; version=0\.0\.4/);
  return { text: body, samples: parseScrape(body) };
}

/** How much each metric moved while `work` ran. */
async function delta(metrics: Metrics | undefined, work: () => Promise<unknown>): Promise<(name: string, labels?: Record<string, string>) => number> {
  const before = (await scrape(metrics)).samples;
  await work();
  const after = (await scrape(metrics)).samples;
  return (name, labels = {}) => valueOf(after, name, labels) - valueOf(before, name, labels);
}

const WRONG_PASSWORD = 'not quentin’s password at all, sorry';

for (const dialect of DIALECTS) {
  describe(`metrics [${dialect}]`, () => {
    let h: Harness;
    /** Everything secret or personal the scenario used: none may appear in a scrape. */
    const used: string[] = [ADMIN_PASSWORD, USER_PASSWORD, WRONG_PASSWORD, 'quentin', 'tess-totp', 'nobody-known'];
    before(async () => {
      h = await createHarness(dialect, { metrics: true });
      used.push(h.adminToken);
      await h.createAccount('quentin');
    });
    after(() => h.close());

    test('logins are counted by outcome: success, invalid_credentials, totp_required', async () => {
      await h.createAccount('tess-totp');
      const tessToken = await issueToken(h, 'tess-totp');
      used.push(tessToken, (await enrollTotp(h, tessToken)).secret);
      const moved = await delta(h.metrics, async () => {
        used.push(await h.login('quentin', USER_PASSWORD));
        const login = (username: string, password: string) => h.request({ method: 'POST', url: '/v1/auth/login', body: { username, password } });
        assert.equal((await login('quentin', WRONG_PASSWORD)).statusCode, 401);
        assert.equal((await login('nobody-known', WRONG_PASSWORD)).statusCode, 401);
        const totpMissing = await login('tess-totp', USER_PASSWORD);
        assert.equal((totpMissing.json() as { code: string }).code, 'totp_required');
      });
      assert.equal(moved('mcias_logins_total', { outcome: 'success' }), 1);
      assert.equal(moved('mcias_logins_total', { outcome: 'invalid_credentials' }), 2);
      assert.equal(moved('mcias_logins_total', { outcome: 'totp_required' }), 1);
      assert.equal(moved('mcias_logins_total'), 4);
    });

    test('validations are counted as active, or inactive with the reason', async () => {
      const token = await h.login('quentin', USER_PASSWORD);
      const revoked = await h.login('quentin', USER_PASSWORD);
      used.push(token, revoked);
      const logout = await h.request({ method: 'POST', url: '/v1/auth/logout', token: revoked });
      assert.equal(logout.statusCode, 204);
      const validate = async (candidate: string) =>
        (await h.request({ method: 'POST', url: '/v1/token/validate', body: { token: candidate } })).json() as { active: boolean };
      const moved = await delta(h.metrics, async () => {
        assert.equal((await validate(token)).active, true);
        assert.equal((await validate(revoked)).active, false);
        assert.equal((await validate('not-a-token')).active, false);
        assert.equal((await validate(`${token.slice(0, -8)}AAAAAAAA`)).active, false);
      });
      assert.equal(moved('mcias_token_validations_total', { result: 'active' }), 1);
      assert.equal(moved('mcias_token_validations_total', { result: 'inactive', reason: 'revoked' }), 1);
      assert.equal(moved('mcias_token_validations_total', { result: 'inactive', reason: 'malformed' }), 1);
      assert.equal(moved('mcias_token_validations_total', { result: 'inactive', reason: 'bad_signature' }), 1);
      assert.equal(moved('mcias_token_validations_total', { result: 'inactive' }), 3);
    });

    test('request latency is labelled by route pattern and status class, never by the path the client sent', async () => {
      const { jti } = (await h.principal(h.adminToken)).token;
      const strangerJti = randomUUID();
      used.push(jti, strangerJti);
      const moved = await delta(h.metrics, async () => {
        assert.equal((await h.request({ method: 'GET', url: '/v1/accounts/quentin/tokens', token: h.adminToken })).statusCode, 200);
        assert.equal((await h.request({ method: 'GET', url: '/v1/accounts/quentin/tokens?user=quentin', token: h.adminToken })).statusCode, 200);
        assert.equal((await h.request({ method: 'DELETE', url: `/v1/tokens/${strangerJti}`, token: h.adminToken })).statusCode, 404);
        assert.equal((await h.request({ method: 'GET', url: `/v1/no-such-route/${h.adminToken}` })).statusCode, 404);
        // Refused by the router itself (a broken percent-escape): counted too, with no route.
        assert.equal((await h.request({ method: 'GET', url: '/v1/accounts/quentin%zz/tokens', token: h.adminToken })).statusCode, 400);
      });
      const count = 'mcias_http_request_duration_seconds_count';
      assert.equal(moved(count, { method: 'GET', route: '/v1/accounts/:username/tokens', status_class: '2xx' }), 2);
      assert.equal(moved(count, { method: 'DELETE', route: '/v1/tokens/:jti', status_class: '4xx' }), 1);
      assert.equal(moved(count, { method: 'GET', route: 'unmatched', status_class: '4xx' }), 2);
      const { samples } = await scrape(h.metrics);
      // Every route label is 'unmatched' or a pattern the router serves with that method.
      const served = appRoutes(h.app);
      for (const sample of samples.filter((x) => x.name === count && x.labels['route'] !== 'unmatched')) {
        const { method = '', route = '' } = sample.labels;
        assert.ok(served.has(routeKey(method, route)), `${method} ${route} is not a route pattern`);
      }
      const routes = labelValues(samples, 'mcias_http_request_duration_seconds', 'route');
      for (const route of routes) assert.doesNotMatch(route, /quentin|\?|[0-9a-f]{8}-[0-9a-f]{4}|eyJ/, `a raw path reached a label: ${route}`);
      assert.ok(valueOf(samples, 'mcias_http_request_duration_seconds_bucket', { route: '/v1/token/validate', le: '+Inf' }) > 0);
    });

    test('a lockout reported through the observer is counted', async () => {
      const moved = await delta(h.metrics, async () => h.metrics?.lockout());
      assert.equal(moved('mcias_lockouts_total'), 1);
    });

    test('the server has a registry of its own: nothing in the global one, nothing shared between two servers', async () => {
      assert.equal((await globalRegistry.metrics()).trim(), '');
      const other = new Metrics();
      other.loginAttempt('success');
      other.loginAttempt('success');
      const mine = valueOf((await scrape(h.metrics)).samples, 'mcias_logins_total', { outcome: 'success' });
      assert.equal(valueOf((await scrape(other)).samples, 'mcias_logins_total', { outcome: 'success' }), 2);
      assert.equal(valueOf((await scrape(h.metrics)).samples, 'mcias_logins_total', { outcome: 'success' }), mine);
      assert.ok(valueOf((await scrape(other)).samples, 'nodejs_eventloop_lag_seconds') >= 0, 'the default process metrics are there');
      assert.match((await other.scrape()).body, /^nodejs_eventloop_lag_p99_seconds /m);
    });

    test('words outside the known sets become "other": a label never takes a value the code did not write', async () => {
      const other = new Metrics();
      other.loginAttempt('quentin');
      other.tokenValidation(USER_PASSWORD);
      const { text, samples } = await scrape(other);
      assert.equal(valueOf(samples, 'mcias_logins_total', { outcome: 'other' }), 1);
      assert.equal(valueOf(samples, 'mcias_token_validations_total', { result: 'inactive', reason: 'other' }), 1);
      assert.ok(!text.includes('quentin') && !text.includes(USER_PASSWORD));
    });

    test('after the scenario, no username, password, token, TOTP secret, token id or address is in the scrape', async () => {
      const { text, samples } = await scrape(h.metrics);
      assert.ok(valueOf(samples, 'mcias_logins_total') > 0, 'the scenario ran');
      for (const secret of used) assert.ok(!text.includes(secret), `the scrape holds ${secret.slice(0, 12)}…`);
      assert.ok(!text.includes('127.0.0.1'), 'the scrape holds a client address');
    });
  });

  describe(`metrics: 429s and the password-hash gauges [${dialect}]`, () => {
    let h: Harness;
    before(async () => {
      // Slow hashes, one at a time, a short queue: logins from one client fill it (as in test/domain/password.test.ts).
      h = await createHarness(dialect, {
        metrics: true,
        config: { passwords: { scrypt_ln: 15, max_concurrent_hashes: 1, max_queued_hashes: 2, max_hashes_per_client: 100 } },
      });
    });
    after(() => h.close());

    const wrongLogin = () => h.request({ method: 'POST', url: '/v1/auth/login', body: { username: 'admin', password: 'wrong but long enough' } });

    test('the queue depth and the running hashes are read from the hasher at each scrape', async () => {
      const logins = Array.from({ length: 3 }, wrongLogin);
      // The logins reach the hasher after their database lookups, at times the machine decides: scrape until one
      // hash runs while another waits.
      let during: Sample[] = [];
      for (let tries = 0; tries < 400; tries++) {
        during = (await scrape(h.metrics)).samples;
        if (valueOf(during, 'mcias_password_hash_queue_depth') >= 1) break;
        await new Promise((resolve) => setTimeout(resolve, 5));
      }
      assert.ok(valueOf(during, 'mcias_password_hash_queue_depth') >= 1, 'no scrape saw a hash waiting');
      assert.equal(valueOf(during, 'mcias_password_hashes_running'), 1);
      await Promise.all(logins);
      const afterwards = (await scrape(h.metrics)).samples;
      assert.equal(valueOf(afterwards, 'mcias_password_hashes_running'), 0);
      assert.equal(valueOf(afterwards, 'mcias_password_hash_queue_depth'), 0);
    });

    test('every 429 is counted once, by source, whichever limit sent it: the hash queue, and a request limit plugin', async () => {
      // A second app on the same services and metrics, with @fastify/rate-limit on one route: a 429 that no domain
      // code raises (the kind issue 10's per-address limit sends).
      const app = await buildApp(h.runtime.services, { bodyLimit: 65_536, trustedProxies: [], rateLimit: h.config.rateLimit, logger: false, metrics: h.metrics });
      await app.register(rateLimit, { global: false });
      app.get('/limited', { config: { access: 'public', rateLimit: { max: 1, timeWindow: 60_000 } } }, async () => ({ status: 'ok' }));
      try {
        let statuses: number[] = [];
        const moved = await delta(h.metrics, async () => {
          const logins = await Promise.all(Array.from({ length: 8 }, wrongLogin));
          const limited = [await app.inject({ method: 'GET', url: '/limited' }), await app.inject({ method: 'GET', url: '/limited' })];
          statuses = [...logins, ...limited].map((r) => r.statusCode);
        });
        const refused = statuses.filter((s) => s === 429).length;
        // At least one login past the full queue, and the second call of the limited route.
        assert.ok(refused >= 2 && statuses.at(-1) === 429, statuses.join(','));
        assert.equal(moved('mcias_rate_limited_total'), refused, 'every 429 is counted, and only 429s');
        assert.equal(moved('mcias_rate_limited_total', { source: 'hash_queue_full' }), refused - 1);
        assert.equal(moved('mcias_rate_limited_total', { source: 'unspecified' }), 1);
        assert.equal(moved('mcias_logins_total', { outcome: 'rate_limited' }), refused - 1);
        assert.equal(moved('mcias_http_request_duration_seconds_count', { route: '/limited', status_class: '4xx' }), 1);
      } finally {
        await app.close();
      }
    });
  });
}
