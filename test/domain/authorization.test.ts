import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { isAdmin, mayActForService, mayActForServiceName } from '../../src/domain/authorization.ts';

/** SECURITY.md §38: the delegation rule as plain functions of (actor, service), shared by every route that needs it. */

const human = (...roles: string[]) => ({ kind: 'human' as const, roles });
const system = (...roles: string[]) => ({ kind: 'system' as const, roles });
const service = (username: string, ...roles: string[]) => ({ username, roles });

describe('authorization', () => {
  test('isAdmin is holding the admin role, whatever else is held', () => {
    assert.equal(isAdmin(human('admin')), true);
    assert.equal(isAdmin(human('ops', 'admin')), true);
    assert.equal(isAdmin(human('ops', 'administrator', 'Admin')), false);
    assert.equal(isAdmin(human()), false);
  });

  test('an administrator may act for any service, whatever it holds', () => {
    assert.deepEqual(mayActForService(human('admin'), service('opsbot', 'admin', 'billing')), { allowed: true, as: 'admin' });
    assert.deepEqual(mayActForServiceName(human('admin'), 'opsbot'), { allowed: true, as: 'admin' });
  });

  test('a delegate may act for a service holding nothing, its own name, or only roles the delegate holds', () => {
    for (const roles of [[], ['opsbot'], ['billing'], ['billing', 'opsbot']]) {
      assert.deepEqual(mayActForService(human('opsbot', 'billing'), service('opsbot', ...roles)), { allowed: true, as: 'delegate' }, roles.join());
    }
  });

  test('a delegate may not act for a service holding a role the delegate lacks; the missing roles are named', () => {
    assert.deepEqual(mayActForService(human('opsbot'), service('opsbot', 'admin')), { allowed: false, reason: 'delegation_exceeds_roles', missing: ['admin'] });
    assert.deepEqual(mayActForService(human('opsbot', 'billing'), service('opsbot', 'billing', 'hr', 'admin')), {
      allowed: false,
      reason: 'delegation_exceeds_roles',
      missing: ['hr', 'admin'],
    });
  });

  test('no role of the name, or a system account (even one holding admin or the role): not a delegate', () => {
    for (const [actor, what] of [
      [human('billing'), 'a person without the role'],
      [system('opsbot'), 'a system account holding the role'],
      [system('admin'), 'a system account holding admin'],
    ] as const) {
      assert.deepEqual(mayActForServiceName(actor, 'opsbot'), { allowed: false, reason: 'not_delegate' }, what);
      assert.deepEqual(mayActForService(actor, service('opsbot')), { allowed: false, reason: 'not_delegate' }, what);
    }
  });
});
