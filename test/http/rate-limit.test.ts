import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { createHarness, type Harness } from '../support/harness.ts';
import { auditRows, lastAuditSeq } from '../support/audit.ts';
import { DIALECTS } from '../support/databases.ts';
import { assertProblem } from '../support/inspect.ts';

/** SECURITY.md §46 and §41: the general per-address request limit, and bounded records of what strangers cause. */

const BAD_VALIDATIONS = 20_000;
const MAX_ADDRESSES = 100;

/** The i-th of many distinct client addresses: 10.0.0.0/8, one per request. */
function address(i: number): string {
  return `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`;
}

async function summaryRows(h: Harness, since: number) {
  return (await auditRows(h, { after: since })).filter((r) => r.type === 'failures_summarized');
}

for (const dialect of DIALECTS) {
  describe(`the per-address request limit [${dialect}]`, () => {
    let h: Harness;
    before(async () => {
      h = await createHarness(dialect, { config: { rate_limit: { requests: 20, window: '1m' } } });
    });
    after(() => h.close());

    test('past rate_limit.requests, every route answers 429 problem+json with Retry-After; probes and other addresses are not limited', async () => {
      const from = (remoteAddress: string, url = '/v1/me', token: string | undefined = h.adminToken) =>
        h.app.inject({ method: 'GET', url, remoteAddress, headers: token === undefined ? {} : { authorization: `Bearer ${token}` } });
      const statuses: number[] = [];
      for (let i = 0; i < 25; i++) statuses.push((await from('192.0.2.50')).statusCode);
      assert.deepEqual(statuses, [...Array(20).fill(200), ...Array(5).fill(429)]);
      const refused = await from('192.0.2.50');
      const body = assertProblem(refused, { status: 429, code: 'rate_limited' });
      assert.equal(body['reason'], 'too_many_requests');
      assert.ok(Number(refused.headers['retry-after']) >= 1 && Number(refused.headers['retry-after']) <= 60, String(refused.headers['retry-after']));
      // Counted before the token check: a request without a token is refused the same way, not with 401.
      assertProblem(await from('192.0.2.50', '/v1/me', undefined), { status: 429, code: 'rate_limited' });
      // Other addresses are not affected; an IPv6 /64 is one address.
      assert.equal((await from('192.0.2.51')).statusCode, 200);
      const v6 = [];
      for (let i = 0; i < 21; i++) v6.push((await from(`2001:db8:1:2::${(i + 1).toString(16)}`)).statusCode);
      assert.equal(v6.at(-1), 429, 'twenty-one requests from one /64 are over the limit');
      // The probes are exempt.
      assert.equal((await from('192.0.2.50', '/healthz', undefined)).statusCode, 200);
      assert.equal((await from('192.0.2.50', '/readyz', undefined)).statusCode, 200);
    });

    test('the 429s are recorded, bounded: one failures_summarized row per address for the interval, with counts by route', async () => {
      const since = await lastAuditSeq(h);
      await h.runtime.services.summaries.flush();
      const rows = await summaryRows(h, since);
      const byAddress = new Map(rows.map((r) => [r.details['address'], r.details]));
      assert.equal(byAddress.get('192.0.2.50')?.['rate_limited./v1/me'], 7);
      assert.equal(byAddress.get('2001:db8:1:2::/64')?.['rate_limited./v1/me'], 1);
      assert.equal(byAddress.has('192.0.2.51'), false);
    });
  });

  describe(`bounded anonymous writes [${dialect}]`, () => {
    let h: Harness;
    before(async () => {
      h = await createHarness(dialect, {
        // An interval longer than the test: only the flush below ends it, so the bound is exact.
        config: { rate_limit: { requests: 100_000_000, summary_interval: '1h', summary_max_addresses: MAX_ADDRESSES } },
      });
    });
    after(() => h.close());

    test(`${BAD_VALIDATIONS} bad validations from ${BAD_VALIDATIONS} addresses add ${MAX_ADDRESSES + 1} rows to their interval, counting every one`, async () => {
      await h.runtime.services.summaries.flush();
      const since = await lastAuditSeq(h);
      for (let start = 0; start < BAD_VALIDATIONS; start += 200) {
        const batch = Array.from({ length: 200 }, (_, j) =>
          h.app.inject({ method: 'POST', url: '/v1/token/validate', payload: { token: `not-a-token-${start + j}` }, remoteAddress: address(start + j) }),
        );
        for (const response of await Promise.all(batch)) assert.equal(response.body, '{"active":false}');
      }
      // Nothing is written until the interval ends.
      await h.runtime.services.summaries.flush();
      const rows = await summaryRows(h, since);
      assert.equal((await auditRows(h, { after: since })).length, rows.length, 'only summary rows were written');
      // One interval: a row for each of the first MAX_ADDRESSES addresses, and one "others" row for the rest.
      assert.equal(rows.length, MAX_ADDRESSES + 1);
      const total = rows.reduce((sum, r) => sum + Number(r.details['token_validation_failed.malformed'] ?? 0), 0);
      assert.equal(total, BAD_VALIDATIONS, 'every failure is counted');
      assert.ok(rows.some((r) => r.details['address'] === 'others'), 'the addresses past the bound share one row');
    });

  });

  describe(`summaries are written when their interval ends [${dialect}]`, () => {
    let h: Harness;
    before(async () => {
      h = await createHarness(dialect, { config: { rate_limit: { requests: 100_000_000, summary_interval: '1s' } } });
    });
    after(() => h.close());

    test('from one address, 2,000 bad validations make one row per interval; the interval timer writes it without a flush', async () => {
      await h.runtime.services.summaries.flush();
      const since = await lastAuditSeq(h);
      const started = performance.now();
      for (let i = 0; i < 2_000; i++) {
        await h.app.inject({ method: 'POST', url: '/v1/token/validate', payload: { token: 'eyJhbGciOiJub25lIn0.e30.' }, remoteAddress: '198.51.100.77' });
      }
      let rows: Awaited<ReturnType<typeof summaryRows>> = [];
      for (let waited = 0; rows.reduce((sum, r) => sum + Number(r.details['total']), 0) < 2_000 && waited < 5_000; waited += 100) {
        await sleep(100);
        rows = await summaryRows(h, since);
      }
      const seconds = (performance.now() - started) / 1000;
      const ours = rows.filter((r) => r.details['address'] === '198.51.100.77');
      // One row per interval of one second at most (the burst took a few).
      assert.ok(ours.length >= 1 && ours.length <= Math.ceil(seconds) + 10, `${ours.length} rows`);
      assert.equal(
        ours.reduce((sum, r) => sum + Number(r.details['total']), 0),
        2_000,
      );
      assert.equal(ours[0]?.outcome, 'failure');
    });
  });
}
