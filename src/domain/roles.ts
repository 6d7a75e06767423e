import { requestEvent, type AuditEvent } from './audit.ts';
import { isAdminRole, mayActForService } from './authorization.ts';
import type { AccountService } from './accounts.ts';
import type { Clock } from './clock.ts';
import { fail } from './errors.ts';
import type { Account, Principal, RequestContext, Role } from './model.ts';
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

  /** One role with its permissions and the usernames of its holders, as they are now. */
  async show(name: string): Promise<Role & { readonly holders: readonly string[] }> {
    const role = normalizeName(name, 'role');
    const found = (await this.#store.roles.list()).find((r) => r.name === role);
    if (found === undefined) fail('not_found', 'no such role');
    return { ...found, holders: await this.#store.roles.holders(role) };
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

  /**
   * Granting a role to a system account may take its live token beyond what the person who issued it holds: then
   * that token is revoked in the same transaction (SECURITY.md §38), and the service needs a token from someone who
   * may act for it now.
   */
  async grant(username: string, roleName: string, actor: Principal, ctx: RequestContext): Promise<void> {
    const role = normalizeName(roleName, 'role');
    await this.#store.transaction(async (tx) => {
      const account = await this.#accounts.get(username, tx);
      if (!(await tx.roles.exists(role))) fail('not_found', 'no such role');
      if (account.roles.includes(role)) return;
      await tx.roles.grant(account.id, role, this.#clock.now());
      await tx.audit.insert(this.#event(ctx, actor, account, 'role_granted', { role }));
      if (account.kind === 'system') await this.#revokeExceededDelegation(tx, account, actor, ctx);
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

  /**
   * Revokes the service's live token if whoever issued it may no longer act for the service with the roles it holds
   * now (an administrator always may; an issuer who no longer exists no longer vouches for anything).
   */
  async #revokeExceededDelegation(tx: Store, service: Account, actor: Principal, ctx: RequestContext): Promise<void> {
    // Under the account's lock, as token issuance takes it: a concurrent issue or grant is seen, not raced.
    await tx.accounts.lock(service.id);
    const now = this.#clock.now();
    const roles = (await tx.roles.rolesOf([service.id])).get(service.id) ?? [];
    for (const token of await tx.tokens.listLive(service.id, now)) {
      const issuer = token.issuedBy === null ? undefined : await tx.accounts.findById(token.issuedBy);
      if (issuer !== undefined) {
        const issuerRoles = (await tx.roles.rolesOf([issuer.id])).get(issuer.id) ?? [];
        if (mayActForService({ kind: issuer.kind, roles: issuerRoles }, { username: service.username, roles }).allowed) continue;
      }
      if (await tx.tokens.revoke(token.jti, now, 'delegation_exceeded')) {
        await tx.audit.insert(this.#event(ctx, actor, service, 'token_revoked', { jti: token.jti, kind: 'service', reason: 'delegation_exceeded' }));
      }
    }
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
