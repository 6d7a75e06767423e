import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { DIALECTS } from '../support/databases.ts';
import { createHarness, type Harness } from '../support/harness.ts';

for (const dialect of DIALECTS) {
  describe(`login and /v1/me [${dialect}]`, () => {
    let h: Harness;
    before(async () => {
      h = await createHarness(dialect);
    });
    after(() => h.close());

    test('the bootstrap admin logs in and sees itself', async () => {
      const me = await h.request({ method: 'GET', url: '/v1/me', token: h.adminToken });
      assert.equal(me.statusCode, 200);
      assert.equal(me.json().username, 'admin');
      assert.deepEqual(me.json().roles, ['admin']);
    });
  });
}
