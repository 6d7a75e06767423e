import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { USER_PASSWORD } from '../support/harness.ts';
import { apiError, useClientFixture } from '../support/client.ts';

/** The SDK's registration methods against a real mciassrv (docs/api.md "Registrations"). */

describe('MciasClient registration codes against a real mciassrv', () => {
  const fx = useClientFixture();

  test('create, list (without the code), redeem with the roles, used up, delete', async () => {
    await fx.admin.createRole('readers');
    const made = await fx.admin.createRegistration({ roles: ['readers'], uses: 1, expiresIn: '2d' });
    assert.match(made.code, /^mciasreg_/);
    assert.deepEqual(made.roles, ['readers']);
    assert.ok(Math.abs(Date.parse(made.expires_at) - Date.now() - 2 * 86_400_000) < 60_000);
    const listed = (await fx.admin.listRegistrations()).find((r) => r.id === made.id);
    assert.deepEqual(listed, { id: made.id, roles: ['readers'], uses_left: 1, expires_at: made.expires_at, created_at: made.created_at });

    const account = await fx.anonymous.register(made.code, 'Newcomer', USER_PASSWORD);
    assert.equal(account.username, 'newcomer');
    assert.deepEqual(account.roles, ['readers']);
    assert.equal((await fx.anonymous.login('newcomer', USER_PASSWORD)).account.id, account.id);
    await apiError(fx.anonymous.register(made.code, 'second', USER_PASSWORD), 401, 'invalid_credentials');

    const other = await fx.admin.createRegistration();
    await fx.admin.deleteRegistration(other.id);
    await apiError(fx.anonymous.register(other.code, 'third', USER_PASSWORD), 401, 'invalid_credentials');
    await apiError(fx.admin.deleteRegistration(other.id), 404, 'not_found');
  });

  test('admin on sign-up needs allowAdmin', async () => {
    const refused = await apiError(fx.admin.createRegistration({ roles: ['admin'] }), 400, 'invalid_request');
    assert.equal(refused.reason, 'admin_needs_flag');
    const made = await fx.admin.createRegistration({ roles: ['admin'], allowAdmin: true });
    assert.deepEqual(made.roles, ['admin']);
    await fx.admin.deleteRegistration(made.id);
  });
});
