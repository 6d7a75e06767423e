import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { USER_PASSWORD } from '../support/harness.ts';
import { apiError, useClientFixture } from '../support/client.ts';

/** The SDK's permission methods against a real mciassrv (docs/api.md "Permissions"). */

describe('MciasClient permissions against a real mciassrv', () => {
  const fx = useClientFixture();

  test('create, grant, check, show the role, revoke, delete', async () => {
    await fx.admin.createRole('editors');
    const person = await fx.person('editor', ['editors']);
    const { token } = await fx.anonymous.login('editor', USER_PASSWORD);
    const edit = await fx.admin.createPermission({ resource: 'wiki', action: 'edit', description: 'edit wiki pages' });
    assert.deepEqual({ ...edit, id: '', created_at: '' }, { id: '', resource: 'wiki', action: 'edit', description: 'edit wiki pages', roles: [], created_at: '' });
    assert.equal(await fx.admin.checkPermission(token, 'wiki', 'edit'), false);

    await fx.admin.grantPermission('editors', edit.id);
    assert.equal(await fx.admin.checkPermission(token, 'wiki', 'edit'), true);
    assert.equal(await fx.admin.checkPermission(token, 'wiki', 'delete'), false);
    // Any token may ask: the person's own too.
    assert.equal(await person.checkPermission(token, 'wiki', 'edit'), true);
    assert.deepEqual((await fx.admin.listPermissions()).find((p) => p.id === edit.id)?.roles, ['editors']);
    const role = await fx.admin.getRole('editors');
    assert.deepEqual(role, { name: 'editors', permissions: [{ id: edit.id, resource: 'wiki', action: 'edit' }], holders: ['editor'] });
    const validated = await fx.anonymous.validate(token);
    assert.ok(validated.active);
    assert.deepEqual(validated.permissions, [{ resource: 'wiki', action: 'edit' }]);

    await fx.admin.revokePermission('editors', edit.id);
    assert.equal(await fx.admin.checkPermission(token, 'wiki', 'edit'), false);
    await apiError(fx.admin.revokePermission('editors', edit.id), 404, 'not_found');
    await fx.admin.deletePermission(edit.id);
    await apiError(fx.admin.deletePermission(edit.id), 404, 'not_found');
    await apiError(fx.anonymous.checkPermission(token, 'wiki', 'edit'), 401, 'unauthenticated');
  });
});
