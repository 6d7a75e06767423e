import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { LightMyRequestResponse } from 'fastify';
import { DIALECTS } from '../support/databases.ts';
import { ADMIN_PASSWORD, USER_PASSWORD, createHarness, type Harness } from '../support/harness.ts';
import { assertProblem } from '../support/inspect.ts';

/** docs/api.md POST /v1/auth/login; SECURITY.md §8 (uniform failures), 10 (client address), 30 (login audit). */

const DAY_MS = 86_400_000;

/** The four ways a login fails, each arranged so that only its one cause is wrong. */
const FAILURES = {
  unknown_user: { username: 'nobody-here', password: USER_PASSWORD },
  wrong_password: { username: 'walt', password: 'this is not walt’s password' },
  account_disabled: { username: 'dis', password: USER_PASSWORD },
  system_account: { username: 'robot', password: USER_PASSWORD },
} as const;
type FailureReason = keyof typeof FAILURES;

async function prepareFailureAccounts(h: Harness): Promise<void> {
  await h.createAccount('walt');
  await h.createAccount('dis');
  const disabled = await h.request({ method: 'PATCH', url: '/v1/accounts/dis', token: h.adminToken, body: { status: 'disabled' } });
  assert.equal(disabled.statusCode, 200);
  await h.createAccount('robot', 'system');
}

/** Everything a client can see of an answer, minus what differs per request. */
function visible(response: LightMyRequestResponse): unknown {
  const { request_id: _requestId, ...body } = response.json() as Record<string, unknown>;
  const { 'x-request-id': _id, date: _date, ...headers } = response.headers;
  return { status: response.statusCode, body, headers };
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? (sorted[middle] as number) : ((sorted[middle - 1] as number) + (sorted[middle] as number)) / 2;
}

const loginAuditRows = (h: Harness) =>
  h.runtime.database.db.selectFrom('audit_events').selectAll().where('type', 'in', ['login_failed', 'login_succeeded']).orderBy('seq').execute();

for (const dialect of DIALECTS) {
  describe(`password login [${dialect}]`, () => {
    let h: Harness;
    before(async () => {
      h = await createHarness(dialect);
      await prepareFailureAccounts(h);
    });
    after(() => h.close());

    test('a correct login answers a Bearer token, its expiry 30 days out, and the account', async () => {
      const response = await h.request({
        method: 'POST',
        url: '/v1/auth/login',
        body: { username: 'walt', password: USER_PASSWORD },
        headers: { 'user-agent': 'login-test/1.0' },
      });
      assert.equal(response.statusCode, 200, response.body);
      assert.equal(response.headers['cache-control'], 'no-store');
      const body = response.json();
      assert.deepEqual(Object.keys(body).sort(), ['account', 'expires_at', 'token', 'token_type']);
      assert.equal(body.token_type, 'Bearer');
      assert.equal(body.expires_at, new Date(h.clock.now() + 30 * DAY_MS).toISOString().replace(/\.\d{3}Z$/, 'Z'));
      assert.equal(body.account.username, 'walt');
      assert.equal((await h.principal(body.token)).account.username, 'walt');

      const success = (await loginAuditRows(h)).filter((r) => r.type === 'login_succeeded' && r.subject_username === 'walt');
      assert.equal(success.length, 1);
      const details = JSON.parse(success[0]?.details ?? '{}');
      assert.equal(details.factor, 'password');
      assert.equal(details.jti, (await h.principal(body.token)).token.jti);
      assert.equal(success[0]?.user_agent, 'login-test/1.0');
      assert.equal(success[0]?.ip, '127.0.0.1');
      assert.equal(success[0]?.request_id, response.headers['x-request-id']);
    });

    test('the username is matched case-insensitively', async () => {
      const response = await h.request({ method: 'POST', url: '/v1/auth/login', body: { username: 'WALT', password: USER_PASSWORD } });
      assert.equal(response.statusCode, 200);
      assert.equal(response.json().account.username, 'walt');
    });

    test('unknown user, wrong password, disabled account and system account answer identically', async () => {
      const answers = new Map<FailureReason, unknown>();
      for (const [reason, body] of Object.entries(FAILURES) as [FailureReason, (typeof FAILURES)[FailureReason]][]) {
        const response = await h.request({ method: 'POST', url: '/v1/auth/login', body });
        assertProblem(response, { status: 401, code: 'invalid_credentials' });
        answers.set(reason, visible(response));
      }
      const [first, ...rest] = [...answers.values()];
      for (const other of rest) assert.deepEqual(other, first);
    });

    test('each failed login is audited with its reason, the factor and the attempted username; no token is issued', async () => {
      const tokensBefore = await h.runtime.database.db.selectFrom('tokens').select('jti').execute();
      const seqBefore = (await loginAuditRows(h)).at(-1)?.seq ?? 0;
      for (const body of Object.values(FAILURES)) await h.request({ method: 'POST', url: '/v1/auth/login', body, headers: { 'user-agent': 'probe' } });
      const rows = (await loginAuditRows(h)).filter((r) => r.seq > seqBefore);
      assert.deepEqual(
        rows.map((r) => [r.type, r.outcome, JSON.parse(r.details).reason]),
        Object.keys(FAILURES).map((reason) => ['login_failed', 'failure', reason]),
      );
      for (const row of rows) {
        const details = JSON.parse(row.details);
        assert.equal(details.factor, 'password');
        assert.ok(Object.values(FAILURES).some((f) => f.username === details.username));
        assert.equal(row.user_agent, 'probe');
        assert.equal(row.ip, '127.0.0.1');
        // No secret in the trail: not the attempted password, not a hash.
        assert.ok(!JSON.stringify(row).includes(USER_PASSWORD));
        assert.ok(!JSON.stringify(row).includes('$scrypt$'));
      }
      assert.equal(rows.find((r) => JSON.parse(r.details).reason === 'unknown_user')?.subject_id, null);
      assert.deepEqual(await h.runtime.database.db.selectFrom('tokens').select('jti').execute(), tokensBefore);
    });

    test('X-Forwarded-For from a peer that is not a trusted proxy does not change the recorded address', async () => {
      const response = await h.request({
        method: 'POST',
        url: '/v1/auth/login',
        body: { username: 'admin', password: ADMIN_PASSWORD },
        headers: { 'x-forwarded-for': '203.0.113.9', 'x-real-ip': '203.0.113.10', forwarded: 'for=203.0.113.11' },
      });
      assert.equal(response.statusCode, 200);
      const [row] = (await loginAuditRows(h)).slice(-1);
      assert.equal(row?.type, 'login_succeeded');
      assert.equal(row?.ip, '127.0.0.1');
    });
  });

  describe(`login behind a trusted proxy [${dialect}]`, () => {
    let h: Harness;
    before(async () => {
      // inject's remoteAddress is 127.0.0.1, so the test client plays the proxy.
      h = await createHarness(dialect, { config: { server: { trusted_proxies: ['127.0.0.1'] } } });
    });
    after(() => h.close());

    test('the address a trusted proxy forwards is recorded, not a client-spoofed one before it', async () => {
      for (const [forwarded, expected] of [
        ['203.0.113.9', '203.0.113.9'],
        // The client sent "X-Forwarded-For: 1.2.3.4"; the proxy appended the address it saw.
        ['1.2.3.4, 203.0.113.20', '203.0.113.20'],
      ] as const) {
        const response = await h.request({
          method: 'POST',
          url: '/v1/auth/login',
          body: { username: 'admin', password: 'not the admin password' },
          headers: { 'x-forwarded-for': forwarded },
        });
        assertProblem(response, { status: 401, code: 'invalid_credentials' });
        const [row] = (await loginAuditRows(h)).slice(-1);
        assert.equal(row?.ip, expected);
      }
    });
  });

  describe(`failed logins take the same time whatever the cause [${dialect}]`, () => {
    let h: Harness;
    before(async () => {
      // A moderately expensive scrypt (N=2^12), so the hash, not noise, dominates each login.
      h = await createHarness(dialect, { config: { passwords: { scrypt_ln: 12 } } });
      await prepareFailureAccounts(h);
    });
    after(() => h.close());

    test('median latencies of the four failure causes are within 20% of each other', async () => {
      const reasons = Object.keys(FAILURES) as FailureReason[];
      const attempt = async (reason: FailureReason) => {
        const started = performance.now();
        const response = await h.request({ method: 'POST', url: '/v1/auth/login', body: FAILURES[reason] });
        const elapsed = performance.now() - started;
        assert.equal(response.statusCode, 401);
        return elapsed;
      };
      const measure = async () => {
        const timings = new Map<FailureReason, number[]>(reasons.map((r) => [r, []]));
        const relative = new Map<FailureReason, number[]>(reasons.map((r) => [r, []]));
        // Each measurement fails each account 22 times; three would pass the lockout (SECURITY.md §9): a day later
        // the counts are forgotten.
        h.clock.advance(2 * DAY_MS);
        for (const reason of reasons) await attempt(reason); // warm-up, not measured
        for (let round = 0; round < 21; round++) {
          // Interleaved, the order rotating each round, so drift in machine load hits every cause alike.
          const times = new Map<FailureReason, number>();
          for (let i = 0; i < reasons.length; i++) {
            const reason = reasons[(round + i) % reasons.length] as FailureReason;
            times.set(reason, await attempt(reason));
          }
          // Each attempt relative to its round's median: what is left is the difference between the causes.
          const middle = median([...times.values()]);
          for (const [reason, ms] of times) {
            timings.get(reason)?.push(ms);
            relative.get(reason)?.push(ms / middle);
          }
        }
        const medians = reasons.map((r) => median(timings.get(r) ?? []));
        const ratios = reasons.map((r) => median(relative.get(r) ?? []));
        return {
          medians,
          within: Math.max(...medians) <= Math.min(...medians) * 1.2 || Math.max(...ratios) <= Math.min(...ratios) * 1.2,
          report: reasons.map((r, i) => `${r}=${(medians[i] as number).toFixed(2)}ms (x${(ratios[i] as number).toFixed(2)})`).join(', '),
        };
      };
      // A shared test machine adds noise that can push one median out by chance; a real difference (a skipped
      // hash costs a fraction of a millisecond against ~10 ms) fails every measurement, so up to three are taken.
      const reports: string[] = [];
      for (let run = 0; run < 3; run++) {
        const { medians, within, report } = await measure();
        assert.ok(Math.min(...medians) > 1, `the hash should dominate a login (${report})`);
        if (within) return;
        reports.push(report);
      }
      assert.fail(`median login latencies differ by more than 20% in three measurements: ${reports.join(' | ')}`);
    });
  });
}
