import { ADMIN_ROLE, permits } from '@mcias/client/permits';
import type { Account, PermissionGrant } from './model.ts';

/**
 * Who may do what beyond the per-route access levels: the one place that decides. Route access control
 * (src/http/access.ts) and the domain services ask it; none of them looks at role names itself. Plain functions of
 * accounts (with their current roles, read from the database for this request: SECURITY.md §21), one section per
 * question:
 * - is this account an administrator (below);
 * - may this person act for this service account (delegation, further below);
 * - may this account do this action on this resource (permissions, SECURITY.md §50: the last section).
 */

/** The role that makes an account an administrator; it exists from the first migration and cannot be deleted. */
export { ADMIN_ROLE };

/** Holds the admin role. Route access (src/http/access.ts) adds nothing to this; human-only rules say so themselves. */
export function isAdmin(account: Pick<Account, 'roles'>): boolean {
  return account.roles.includes(ADMIN_ROLE);
}

/** Whether `role` is the one that makes its holders administrators (so it cannot be deleted or self-revoked). */
export function isAdminRole(role: string): boolean {
  return role === ADMIN_ROLE;
}

/**
 * Why someone may not act for a service account:
 * - `not_delegate`: neither an administrator nor a human holding the role named after the service (decided on the
 *   name alone, so callers can refuse before they look the name up and reveal whether it exists);
 * - `delegation_exceeds_roles`: a delegate, but the service holds a role the delegate does not (SECURITY.md §38),
 *   so the service's token would give the delegate more than they hold.
 */
type DelegationRefusal = 'not_delegate' | 'delegation_exceeds_roles';

export type Delegation =
  | { readonly allowed: true; readonly as: 'admin' | 'delegate' }
  | { readonly allowed: false; readonly reason: DelegationRefusal; readonly missing?: readonly string[] };

/**
 * The part of the delegation rule that needs only the service's (normalised) name. Only people act for services:
 * a system account never does, even one holding `admin` or the service's role.
 */
export function mayActForServiceName(actor: Pick<Account, 'kind' | 'roles'>, serviceName: string): Delegation {
  if (actor.kind !== 'human') return { allowed: false, reason: 'not_delegate' };
  if (isAdmin(actor)) return { allowed: true, as: 'admin' };
  if (actor.roles.includes(serviceName)) return { allowed: true, as: 'delegate' };
  return { allowed: false, reason: 'not_delegate' };
}

/**
 * Whether `actor` may act for the service account `service` (issue its token; read its credentials): an
 * administrator always; a delegate only if every role the service holds is one the delegate holds too
 * (SECURITY.md §38). Otherwise a delegate of a service holding `admin` could issue its token and act as admin.
 */
export function mayActForService(actor: Pick<Account, 'kind' | 'roles'>, service: Pick<Account, 'username' | 'roles'>): Delegation {
  const byName = mayActForServiceName(actor, service.username);
  if (!byName.allowed || byName.as === 'admin') return byName;
  const missing = service.roles.filter((role) => !actor.roles.includes(role));
  return missing.length === 0 ? byName : { allowed: false, reason: 'delegation_exceeds_roles', missing };
}

/**
 * Who may read a service account's stored PostgreSQL credentials (SECURITY.md §45): the service itself (its own
 * token), or someone who may act for it (an administrator, or a delegate within §38). Never another service.
 */
export type CredentialsRead =
  | { readonly allowed: true; readonly as: 'self' | 'admin' | 'delegate' }
  | { readonly allowed: false; readonly reason: DelegationRefusal; readonly missing?: readonly string[] };

/**
 * The part of the credentials rule that needs only the service's (normalised) name, so that a caller refused here
 * is refused before the name is looked up and learns nothing about which services exist or have credentials.
 */
export function mayReadServiceCredentialsName(actor: Pick<Account, 'kind' | 'username' | 'roles'>, serviceName: string): CredentialsRead {
  if (actor.kind === 'system') return actor.username === serviceName ? { allowed: true, as: 'self' } : { allowed: false, reason: 'not_delegate' };
  return mayActForServiceName(actor, serviceName);
}

/** The full credentials rule, once the service account is known: the same account by id, or §38 delegation. */
export function mayReadServiceCredentials(
  actor: Pick<Account, 'id' | 'kind' | 'username' | 'roles'>,
  service: Pick<Account, 'id' | 'username' | 'roles'>,
): CredentialsRead {
  if (actor.kind === 'system') return actor.id === service.id ? { allowed: true, as: 'self' } : { allowed: false, reason: 'not_delegate' };
  return mayActForService(actor, service);
}

/**
 * May this account do `action` on `resource` (SECURITY.md §50)? Asked with the account, its roles and their
 * permissions as the database holds them now (read with the token's row, never cached), and only for an active
 * account and an active token: the caller answers "no" for anything else before asking. An administrator may do
 * everything; anyone else needs a permission of one of their roles whose resource and action are each the one asked
 * about or `*`.
 */
export function mayPerform(
  subject: { readonly account: Pick<Account, 'roles'>; readonly permissions: readonly PermissionGrant[] },
  resource: string,
  action: string,
): boolean {
  // The rule itself lives in the SDK package, so that its middleware's requirePermission decides exactly as we do.
  return permits({ roles: subject.account.roles, permissions: subject.permissions }, resource, action);
}
