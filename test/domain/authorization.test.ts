import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  isAdmin,
  mayActForService,
  mayActForServiceName,
  mayReadServiceCredentials,
  mayReadServiceCredentialsName,
  mayPerform,
} from '../../src/domain/authorization.ts';

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

  test("reading a service's credentials (SECURITY.md §45): the service itself, by name and then by id", () => {
    const self = { id: 'id-wiki', kind: 'system' as const, username: 'wiki', roles: ['finance'] };
    const wiki = { id: 'id-wiki', username: 'wiki', roles: ['finance'] };
    assert.deepEqual(mayReadServiceCredentialsName(self, 'wiki'), { allowed: true, as: 'self' });
    assert.deepEqual(mayReadServiceCredentials(self, wiki), { allowed: true, as: 'self' });
    // A later account that took over the name is not the same service.
    assert.deepEqual(mayReadServiceCredentials(self, { ...wiki, id: 'id-new-wiki' }), { allowed: false, reason: 'not_delegate' });
  });

  test("another service never reads a service's credentials, whatever roles it holds", () => {
    for (const roles of [[], ['wiki'], ['admin'], ['admin', 'wiki']]) {
      const other = { id: 'id-billing', kind: 'system' as const, username: 'billing', roles };
      assert.deepEqual(mayReadServiceCredentialsName(other, 'wiki'), { allowed: false, reason: 'not_delegate' }, roles.join());
      assert.deepEqual(mayReadServiceCredentials(other, { id: 'id-wiki', username: 'wiki', roles: [] }), { allowed: false, reason: 'not_delegate' }, roles.join());
    }
  });

  test("people read a service's credentials exactly when they may act for it (§38)", () => {
    const person = (...roles: string[]) => ({ id: 'id-p', kind: 'human' as const, username: 'wiki', roles });
    const wiki = { id: 'id-wiki', username: 'wiki', roles: ['finance'] };
    // A person named like the service is not the service.
    assert.deepEqual(mayReadServiceCredentialsName(person(), 'wiki'), { allowed: false, reason: 'not_delegate' });
    assert.deepEqual(mayReadServiceCredentials(person('admin'), wiki), { allowed: true, as: 'admin' });
    assert.deepEqual(mayReadServiceCredentials(person('wiki', 'finance'), wiki), { allowed: true, as: 'delegate' });
    assert.deepEqual(mayReadServiceCredentials(person('wiki'), wiki), { allowed: false, reason: 'delegation_exceeds_roles', missing: ['finance'] });
  });
});

describe('mayPerform (SECURITY.md §50)', () => {
  const holder = (roles: string[], ...grants: [string, string][]) => ({
    account: { roles },
    permissions: grants.map(([resource, action]) => ({ resource, action })),
  });

  test('admin may do everything, with no permission at all', () => {
    assert.equal(mayPerform(holder(['admin']), 'anything', 'at-all'), true);
  });

  test('a permission matches its own resource and action only', () => {
    const h = holder(['wiki'], ['docs', 'read']);
    assert.equal(mayPerform(h, 'docs', 'read'), true);
    assert.equal(mayPerform(h, 'docs', 'write'), false);
    assert.equal(mayPerform(h, 'docs2', 'read'), false);
    assert.equal(mayPerform(h, 'doc', 'read'), false);
    assert.equal(mayPerform(holder(['wiki']), 'docs', 'read'), false);
  });

  test('a stored * matches every resource or every action; nothing else is a pattern', () => {
    assert.equal(mayPerform(holder(['r'], ['*', 'read']), 'docs', 'read'), true);
    assert.equal(mayPerform(holder(['r'], ['*', 'read']), 'docs', 'write'), false);
    assert.equal(mayPerform(holder(['r'], ['docs', '*']), 'docs', 'delete'), true);
    assert.equal(mayPerform(holder(['r'], ['docs', '*']), 'wiki', 'delete'), false);
    assert.equal(mayPerform(holder(['r'], ['*', '*']), 'wiki', 'delete'), true);
    assert.equal(mayPerform(holder(['r'], ['docs.*', 'read']), 'docs.x', 'read'), false);
    assert.equal(mayPerform(holder(['r'], ['docs', 'read']), '*', 'read'), false);
  });
});
