import { randomUUID } from 'node:crypto';
import { requestEvent, type AuditEvent } from './audit.ts';
import { mayPerform } from './authorization.ts';
import type { Clock } from './clock.ts';
import { MciasError, fail, isMciasError } from './errors.ts';
import type { Permission, Principal, RequestContext } from './model.ts';
import { normalizeName } from './names.ts';
import type { Store } from './ports.ts';
import type { TokenService } from './tokens.ts';

/**
 * Permissions (SECURITY.md §50): named (resource, action) pairs with a description, attached to roles, and the
 * check apps ask. Every change writes its audit row in the same transaction. Nothing here is cached: a check reads
 * the token, its account, roles and permissions in one query at the moment it is asked, so a change made on any
 * instance is seen by the next check on every instance.
 */
export class PermissionService {
  readonly #store: Store;
  readonly #tokens: TokenService;
  readonly #clock: Clock;

  constructor(deps: { store: Store; tokens: TokenService; clock: Clock }) {
    this.#store = deps.store;
    this.#tokens = deps.tokens;
    this.#clock = deps.clock;
  }

  list(): Promise<Permission[]> {
    return this.#store.permissions.list();
  }

  async create(input: { resource: string; action: string; description: string }, actor: Principal, ctx: RequestContext): Promise<Permission> {
    const permission: Permission = { id: randomUUID(), ...input, createdAt: this.#clock.now(), roles: [] };
    return this.#store.transaction(async (tx) => {
      const existing = (await tx.permissions.list()).find((p) => p.resource === input.resource && p.action === input.action);
      if (existing !== undefined) fail('conflict', 'that permission exists');
      try {
        await tx.permissions.insert(permission);
      } catch (cause) {
        if (isMciasError(cause, 'unavailable')) throw cause;
        // Lost a race with a concurrent create of the same pair: the unique constraint decided.
        throw new MciasError('conflict', 'that permission exists', { cause });
      }
      await tx.audit.insert(this.#event(ctx, actor, 'permission_created', permission, {}));
      return permission;
    });
  }

  async delete(id: string, actor: Principal, ctx: RequestContext): Promise<void> {
    await this.#store.transaction(async (tx) => {
      const permission = await this.#get(tx, id);
      await tx.permissions.delete(id);
      await tx.audit.insert(this.#event(ctx, actor, 'permission_deleted', permission, { roles: permission.roles.join(' ') }));
    });
  }

  /** Attaches the permission to the role; attaching it again changes nothing. */
  async grant(roleName: string, id: string, actor: Principal, ctx: RequestContext): Promise<void> {
    const role = normalizeName(roleName, 'role');
    await this.#store.transaction(async (tx) => {
      if (!(await tx.roles.exists(role))) fail('not_found', 'no such role');
      const permission = await this.#get(tx, id);
      if (await tx.permissions.grant(role, id)) await tx.audit.insert(this.#event(ctx, actor, 'permission_granted', permission, { role }));
    });
  }

  async revoke(roleName: string, id: string, actor: Principal, ctx: RequestContext): Promise<void> {
    const role = normalizeName(roleName, 'role');
    await this.#store.transaction(async (tx) => {
      const permission = await this.#get(tx, id);
      if (!(await tx.permissions.revoke(role, id))) fail('not_found', 'the role does not hold that permission');
      await tx.audit.insert(this.#event(ctx, actor, 'permission_revoked', permission, { role }));
    });
  }

  /**
   * Whether the holder of `token` may do `action` on `resource` now: never for a token that is not active (expired,
   * revoked, forged, of a disabled or deleted account, or a session whose temporary password is not replaced yet);
   * otherwise as `mayPerform` decides.
   */
  async check(token: string, resource: string, action: string): Promise<boolean> {
    const result = await this.#tokens.check(token);
    if (!result.ok || result.principal.account.passwordChangeRequired) return false;
    return mayPerform(result.principal, resource, action);
  }

  async #get(tx: Store, id: string): Promise<Permission> {
    const permission = await tx.permissions.find(id);
    if (permission === undefined) fail('not_found', 'no such permission');
    return permission;
  }

  #event(ctx: RequestContext, actor: Principal, type: AuditEvent['type'], permission: Permission, details: Record<string, string>): AuditEvent {
    return requestEvent({
      at: this.#clock.now(),
      ctx,
      actor,
      type,
      details: { permission: permission.id, resource: permission.resource, action: permission.action, ...details },
    });
  }
}
