import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { apiError, useClientFixture } from '../support/client.ts';

/** MciasClient.listAudit against a real mciassrv: filters reach the server as query parameters, pages chain by cursor. */
describe('MciasClient.listAudit against a real mciassrv', () => {
  const fx = useClientFixture();

  test('filters, paging by cursor, and the admin-only answer for others', async () => {
    const erin = await fx.person('erin');
    await apiError(fx.anonymous.login('erin', 'not erin at all, no'), 401, 'invalid_credentials');

    const failed = await fx.admin.listAudit({ type: 'login_failed', account: 'erin', outcome: 'failure', since: new Date(Date.now() - 3_600_000).toISOString() });
    assert.equal(failed.events.length, 1);
    const [event] = failed.events;
    assert.deepEqual([event!.type, event!.outcome, event!.subject?.username, event!.details['reason']], ['login_failed', 'failure', 'erin', 'wrong_password']);
    assert.match(event!.hash ?? '', /^[0-9a-f]{64}$/);

    const seen: number[] = [];
    let page = await fx.admin.listAudit({ limit: 2 });
    seen.push(...page.events.map((e) => e.seq));
    while (page.more) {
      page = await fx.admin.listAudit({ limit: 2, cursor: page.next_cursor });
      seen.push(...page.events.map((e) => e.seq));
    }
    assert.deepEqual(seen, Array.from({ length: seen.length }, (_, i) => i + 1));
    assert.ok(seen.length >= 4);

    await apiError(erin.listAudit(), 403, 'forbidden');
    await apiError(fx.anonymous.listAudit(), 401, 'unauthenticated');
    await apiError(fx.admin.listAudit({ limit: 5000 }), 400, 'invalid_request');
  });
});
