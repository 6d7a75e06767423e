import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, test } from 'node:test';
import { MciasClient } from '@mcias/client';
import { USER_PASSWORD } from '../support/harness.ts';
import { assertOk, assertOneLineError, ctl, useMciasctlFixture } from '../support/mciasctl.ts';

/** mciasctl permission create|list|delete|grant|revoke and role show, through the shipped binary against a real mciassrv. */

describe('mciasctl permissions against a real mciassrv', () => {
  const fx = useMciasctlFixture({ admin: true });

  test('create, grant, list, role show, revoke, delete; each change seen by authz/check', async () => {
    const client = new MciasClient({ server: fx.server.url, caCert: readFileSync(fx.server.caCertFile) });
    try {
      for (const args of [
        ['role', 'create', 'editors'],
        ['account', 'create', 'ed', '--password-file', fx.userPasswordFile, '--no-temporary'],
        ['role', 'grant', 'editors', 'ed'],
      ]) {
        assertOk(await ctl(fx.admin, ...args));
      }
      const edToken = (await client.login('ed', USER_PASSWORD)).token;
      const asker = client.withToken(edToken);
      const allowed = () => asker.checkPermission(edToken, 'wiki', 'edit');

      const created = await ctl(fx.admin, 'permission', 'create', 'wiki', 'edit', '--description', 'edit wiki pages');
      assertOk(created);
      assert.equal(created.stdout, 'created permission wiki:edit\n');
      assertOneLineError(await ctl(fx.admin, 'permission', 'create', 'wiki', 'edit', '--description', 'again'), 'conflict');
      assert.equal(await allowed(), false);

      assertOk(await ctl(fx.admin, 'permission', 'grant', 'editors', 'wiki', 'edit'));
      assert.equal(await allowed(), true);
      const listed = await ctl(fx.admin, 'permission', 'list');
      assertOk(listed);
      assert.match(listed.stdout, /^RESOURCE\s+ACTION\s+ROLES\s+DESCRIPTION\nwiki\s+edit\s+editors\s+edit wiki pages\n$/);
      const shown = await ctl(fx.admin, 'role', 'show', 'editors');
      assertOk(shown);
      assert.match(shown.stdout, /^role:\s+editors\npermissions:\s+wiki:edit\nholders:\s+ed\n$/);
      const json = await ctl(fx.admin, '--json', 'role', 'show', 'editors');
      assert.deepEqual(JSON.parse(json.stdout).holders, ['ed']);

      assertOk(await ctl(fx.admin, 'permission', 'revoke', 'editors', 'wiki', 'edit'));
      assert.equal(await allowed(), false);
      assertOneLineError(await ctl(fx.admin, 'permission', 'revoke', 'editors', 'wiki', 'edit'), 'not_found');
      assertOk(await ctl(fx.admin, 'permission', 'grant', 'editors', 'wiki', 'edit'));
      assertOk(await ctl(fx.admin, 'permission', 'delete', 'wiki', 'edit'));
      assert.equal(await allowed(), false);
      assertOneLineError(await ctl(fx.admin, 'permission', 'delete', 'wiki', 'edit'), 'not_found');
      assertOneLineError(await ctl(fx.admin, 'role', 'show', 'nobody'), 'not_found');
    } finally {
      client.close();
    }
  });
});
