import { requestEvent, type AuditEvent } from './audit.ts';
import { isAdminRole } from './authorization.ts';
import type { AccountService } from './accounts.ts';
import type { Clock } from './clock.ts';
import { fail } from './errors.ts';
import type { Principal, RequestContext, Role } from './model.ts';
import { normalizeName } from './names.ts';
import type { Store } from './ports.ts';

/**
 * Roles and who holds them (admin): the roles themselves, and granting and revoking them on accounts (whose routes
 * live under /v1/accounts/{username}/roles/{role}). Every change writes its audit row in the same transaction.
 */
export class RoleService {
  readonly #store: Store;
  readonly #accounts: AccountService;
  readonly #clock: Clock;

  constructor(deps: { store: Store; accounts: AccountService; clock: Clock }) {
    this.#store = deps.store;
    this.#accounts = deps.accounts;
    this.#clock = deps.clock;
  }

  list(): Promise<Role[]> {
    return this.#store.roles.list();
  }

  async create(name: string, actor: Principal, ctx: RequestContext): Promise<Role> {
    const role = normalizeName(name, 'role');
    return this.#store.transaction(async (tx) => {
      if (await tx.roles.exists(role)) fail('conflict', 'a role with that name exists');
      await tx.roles.insert(role, this.#clock.now());
      await tx.audit.insert(this.#event(ctx, actor, undefined, 'role_created', { role }));
      return { name: role, permissions: [] };
    });
  }

  async delete(name: string, actor: Principal, ctx: RequestContext): Promise<void> {
    const role = normalizeName(name, 'role');
    if (isAdminRole(role)) fail('conflict', 'the admin role cannot be deleted');
    await this.#store.transaction(async (tx) => {
      if (!(await tx.roles.exists(role))) fail('not_found', 'no such role');
      await tx.roles.delete(role);
      await tx.audit.insert(this.#event(ctx, actor, undefined, 'role_deleted', { role }));
    });
  }

  async grant(username: string, roleName: string, actor: Principal, ctx: RequestContext): Promise<void> {
    const role = normalizeName(roleName, 'role');
    await this.#store.transaction(async (tx) => {
      const account = await this.#accounts.get(username, tx);
      if (!(await tx.roles.exists(role))) fail('not_found', 'no such role');
      if (account.roles.includes(role)) return;
      await tx.roles.grant(account.id, role, this.#clock.now());
      await tx.audit.insert(this.#event(ctx, actor, account, 'role_granted', { role }));
    });
  }

  async revoke(username: string, roleName: string, actor: Principal, ctx: RequestContext): Promise<void> {
    const role = normalizeName(roleName, 'role');
    await this.#store.transaction(async (tx) => {
      const account = await this.#accounts.get(username, tx);
      if (isAdminRole(role) && account.id === actor.account.id) fail('conflict', 'an administrator cannot remove their own admin role');
      if (!(await tx.roles.revoke(account.id, role))) fail('not_found', 'the account does not hold that role');
      await tx.audit.insert(this.#event(ctx, actor, account, 'role_revoked', { role }));
    });
  }

  #event(
    ctx: RequestContext,
    actor: Principal,
    subject: { id: string; username: string } | undefined,
    type: AuditEvent['type'],
    details: AuditEvent['details'],
  ): AuditEvent {
    return requestEvent({ at: this.#clock.now(), ctx, actor, subject, type, details });
  }
}
