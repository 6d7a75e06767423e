import { randomUUID } from 'node:crypto';
import { auditEvent, requestEvent, type AuditEvent } from './audit.ts';
import type { Clock } from './clock.ts';
import { MciasError, fail, isMciasError } from './errors.ts';
import { ADMIN_ROLE } from './authorization.ts';
import {
  type Account,
  type AccountKind,
  type AccountRecord,
  type AccountStatus,
  type Principal,
  type RequestContext,
} from './model.ts';
import { addressKey } from './address.ts';
import { normalizeName } from './names.ts';
import { BOOTSTRAP_HASH_KEY, checkNewPassword, normalizePassword, type PasswordHasher } from './password.ts';
import type { Store } from './ports.ts';
import type { LoginThrottle } from './throttle.ts';

export interface AccountServiceDeps {
  readonly store: Store;
  readonly hasher: PasswordHasher;
  readonly clock: Clock;
  readonly minPasswordLength: number;
  /** The shorter minimum for accounts with TOTP enabled (NIST SP 800-63B: 8 with a second factor). */
  readonly minPasswordLengthWithTotp: number;
  readonly throttle: LoginThrottle;
}

/** Account and password administration (roles: src/domain/roles.ts). Every change writes its audit row in the same transaction. */
export class AccountService {
  readonly #store: Store;
  readonly #hasher: PasswordHasher;
  readonly #clock: Clock;
  readonly #minPasswordLength: number;
  readonly #minPasswordLengthWithTotp: number;
  readonly #throttle: LoginThrottle;

  constructor(deps: AccountServiceDeps) {
    this.#store = deps.store;
    this.#hasher = deps.hasher;
    this.#clock = deps.clock;
    this.#minPasswordLength = deps.minPasswordLength;
    this.#minPasswordLengthWithTotp = deps.minPasswordLengthWithTotp;
    this.#throttle = deps.throttle;
  }

  async list(): Promise<Account[]> {
    const records = await this.#store.accounts.list();
    const roles = await this.#store.roles.rolesOf(records.map((r) => r.id));
    return records.map((r) => ({ ...r, roles: roles.get(r.id) ?? [] }));
  }

  async get(username: string, store: Store = this.#store): Promise<Account> {
    const record = await store.accounts.findByUsername(normalizeName(username, 'username'));
    if (record === undefined) fail('not_found', 'no such account');
    return this.#withRoles(store, record);
  }

  /**
   * A password an administrator chooses for someone else is temporary unless `temporary` is false (SECURITY.md §39):
   * the person must replace it at their first login. `temporary: false` is for automation.
   */
  async create(
    input: { username: string; kind: AccountKind; password?: string | undefined; temporary?: boolean | undefined },
    actor: Principal,
    ctx: RequestContext,
  ): Promise<Account> {
    const username = normalizeName(input.username, 'username');
    if (input.kind === 'human' && input.password === undefined) fail('invalid_request', 'a human account needs a password');
    if (input.kind === 'system' && (input.password !== undefined || input.temporary !== undefined)) {
      fail('invalid_request', 'a system account has no password: it only ever presents a token');
    }
    const passwordHash = input.password === undefined ? null : await this.#newPasswordHash(input.password, username, addressKey(ctx.ip));
    const passwordChangeRequired = input.kind === 'human' && input.temporary !== false;
    return this.#store.transaction(async (tx) => {
      const account = await this.#insert(tx, { username, kind: input.kind, passwordHash, passwordChangeRequired });
      await this.#audit(tx, ctx, actor, account, 'account_created', {
        kind: account.kind,
        ...(account.kind === 'human' ? { temporary_password: passwordChangeRequired } : {}),
      });
      return account;
    });
  }

  /**
   * A person signing up with a registration code (SECURITY.md §49): always a human account, with a password the
   * person chose (not temporary). `redeem` spends one use of the code inside the account's transaction and answers
   * the roles to grant, or throws; so the use is spent only if the account is created, and an account is created
   * only if a use was spent. Roles deleted since the code was made are skipped.
   */
  async register(
    input: { username: string; password: string; registrationId: string },
    redeem: (tx: Store) => Promise<readonly string[]>,
    ctx: RequestContext,
  ): Promise<Account> {
    const username = normalizeName(input.username, 'username');
    const passwordHash = await this.#newPasswordHash(input.password, username, addressKey(ctx.ip));
    return this.#store.transaction(async (tx) => {
      const roles = await redeem(tx);
      const account = await this.#insert(tx, { username, kind: 'human', passwordHash, passwordChangeRequired: false });
      const granted: string[] = [];
      for (const role of roles) {
        if (!(await tx.roles.exists(role))) continue;
        await tx.roles.grant(account.id, role, this.#clock.now());
        granted.push(role);
      }
      await tx.audit.insert(
        auditEvent({
          at: this.#clock.now(),
          ctx,
          type: 'account_registered',
          subject: account,
          details: { registration: input.registrationId, roles: granted.join(' '), admin: granted.includes(ADMIN_ROLE) },
        }),
      );
      return { ...account, roles: granted.sort() };
    });
  }

  /**
   * The first administrator (SECURITY.md §11: no default accounts). Refuses once any account exists, so it cannot
   * be used to take over an initialised server.
   */
  async bootstrapAdmin(username: string, password: string, options: { temporary: boolean }): Promise<Account> {
    const name = normalizeName(username, 'username');
    const passwordHash = await this.#newPasswordHash(password, name, BOOTSTRAP_HASH_KEY);
    return this.#store.transaction(async (tx) => {
      // Concurrent bootstraps queue on this lock, so each one counts the accounts the ones before it created.
      await tx.lock('bootstrap');
      if ((await tx.accounts.count()) > 0) fail('conflict', 'accounts already exist; bootstrap is only for an empty server');
      const account = await this.#insert(tx, { username: name, kind: 'human', passwordHash, passwordChangeRequired: options.temporary });
      await tx.roles.grant(account.id, ADMIN_ROLE, this.#clock.now());
      await tx.audit.insert(
        auditEvent({ at: this.#clock.now(), type: 'account_bootstrapped', subject: account, details: { temporary_password: options.temporary } }),
      );
      return { ...account, roles: [ADMIN_ROLE] };
    });
  }

  /** Disabling revokes every token of the account in the same transaction. */
  async setStatus(username: string, status: AccountStatus, actor: Principal, ctx: RequestContext): Promise<Account> {
    return this.#store.transaction(async (tx) => {
      const account = await this.get(username, tx);
      if (account.id === actor.account.id && status === 'disabled') fail('conflict', 'an administrator cannot disable their own account');
      const now = this.#clock.now();
      await tx.accounts.updateStatus(account.id, status, now);
      const revoked = status === 'disabled' ? await tx.tokens.revokeAllOf(account.id, now, 'account_disabled') : 0;
      await this.#audit(tx, ctx, actor, account, 'account_status_changed', { status, tokens_revoked: revoked });
      return { ...account, status, updatedAt: now };
    });
  }

  /**
   * An administrator's unlock (SECURITY.md §9): clears the account's failed-login counter, so the person may log in
   * at once. The addresses that failed stay limited. Returns the canonical username and the failures it held.
   */
  async unlock(username: string, actor: Principal, ctx: RequestContext): Promise<{ username: string; failures: number }> {
    return this.#store.transaction(async (tx) => {
      const account = await this.get(username, tx);
      const failures = await this.#throttle.unlock(tx, account.username);
      await this.#audit(tx, ctx, actor, account, 'account_unlocked', { failures });
      return { username: account.username, failures };
    });
  }

  /** Deletes the account; its tokens and credentials go with it (foreign keys cascade); audit rows stay. */
  async delete(username: string, actor: Principal, ctx: RequestContext): Promise<void> {
    await this.#store.transaction(async (tx) => {
      const account = await this.get(username, tx);
      if (account.id === actor.account.id) fail('conflict', 'an administrator cannot delete their own account');
      await tx.tokens.revokeAllOf(account.id, this.#clock.now(), 'account_deleted');
      await tx.accounts.delete(account.id);
      await this.#audit(tx, ctx, actor, account, 'account_deleted', { kind: account.kind });
    });
  }

  /**
   * An administrator's reset: a new password and every token of the account revoked. The password is temporary
   * unless `temporary` is false (SECURITY.md §39).
   */
  async resetPassword(
    username: string,
    input: { password: string; temporary?: boolean | undefined },
    actor: Principal,
    ctx: RequestContext,
  ): Promise<void> {
    const target = await this.get(username);
    if (target.kind !== 'human') fail('invalid_request', 'a system account has no password');
    const hash = await this.#newPasswordHash(input.password, target.username, addressKey(ctx.ip), target.totpConfirmedAt !== null);
    const temporary = input.temporary !== false;
    await this.#store.transaction(async (tx) => {
      const now = this.#clock.now();
      await tx.accounts.updatePasswordHash(target.id, hash, now);
      await tx.accounts.setPasswordChangeRequired(target.id, temporary, now);
      const revoked = await tx.tokens.revokeAllOf(target.id, now, 'password_reset');
      await this.#audit(tx, ctx, actor, target, 'password_reset', { tokens_revoked: revoked, temporary_password: temporary });
    });
  }

  /**
   * Own change (SECURITY.md §5): the current password is required; every other token is revoked. It is also the way
   * out of a temporary password (SECURITY.md §39): then the new one must differ from it, and the change clears the flag.
   */
  async changeOwnPassword(
    principal: Principal,
    input: { currentPassword: string; newPassword: string },
    ctx: RequestContext,
  ): Promise<void> {
    const account = principal.account;
    if (account.kind !== 'human') fail('forbidden', 'a system account has no password');
    await this.#throttle.check(account.username, ctx);
    const stored = await this.#store.accounts.findById(account.id);
    const { ok } = await this.#hasher.verify(input.currentPassword, stored?.passwordHash, addressKey(ctx.ip));
    if (!ok) {
      const event = this.#event(ctx, principal, account, 'password_changed', 'failure', { reason: 'wrong_current_password' });
      await this.#throttle.failedWith(event, { subject: account, ctx });
      fail('invalid_credentials', 'the current password is not correct');
    }
    // Replacing a temporary password with itself would leave one that someone else chose (or saw) in place.
    if (stored?.passwordChangeRequired === true && normalizePassword(input.newPassword) === normalizePassword(input.currentPassword)) {
      fail('invalid_request', 'the new password is the current one: choose another', 'password_unchanged');
    }
    const hash = await this.#newPasswordHash(input.newPassword, account.username, addressKey(ctx.ip), stored?.totpConfirmedAt != null);
    await this.#store.transaction(async (tx) => {
      const now = this.#clock.now();
      await tx.accounts.updatePasswordHash(account.id, hash, now);
      if (stored?.passwordChangeRequired === true) await tx.accounts.setPasswordChangeRequired(account.id, false, now);
      const revoked = await tx.tokens.revokeAllOf(account.id, now, 'password_changed', principal.token.jti);
      await this.#audit(tx, ctx, principal, account, 'password_changed', { tokens_revoked: revoked });
    });
  }

  /** `hashKey`: whom the hash is for (SECURITY.md §37), the client's address in a request. */
  async #newPasswordHash(password: string, username: string, hashKey: string, withTotp = false): Promise<string> {
    checkNewPassword(password, { username, minLength: withTotp ? this.#minPasswordLengthWithTotp : this.#minPasswordLength });
    return this.#hasher.hash(password, hashKey);
  }

  async #insert(
    tx: Store,
    input: { username: string; kind: AccountKind; passwordHash: string | null; passwordChangeRequired: boolean },
  ): Promise<Account> {
    if (await tx.accounts.findByUsername(input.username)) fail('conflict', 'an account with that username exists');
    const now = this.#clock.now();
    const record: AccountRecord = {
      id: randomUUID(),
      username: input.username,
      kind: input.kind,
      status: 'active',
      passwordHash: input.passwordHash,
      totpConfirmedAt: null,
      passwordChangeRequired: input.passwordChangeRequired,
      createdAt: now,
      updatedAt: now,
    };
    try {
      await tx.accounts.insert(record);
    } catch (cause) {
      if (isMciasError(cause, 'unavailable')) throw cause;
      // Lost a race with a concurrent create of the same name: the unique index decided.
      throw new MciasError('conflict', 'an account with that username exists', { cause });
    }
    return { ...record, roles: [] };
  }

  async #withRoles(store: Store, record: AccountRecord): Promise<Account> {
    const roles = await store.roles.rolesOf([record.id]);
    return { ...record, roles: roles.get(record.id) ?? [] };
  }

  #audit(
    tx: Store,
    ctx: RequestContext,
    actor: Principal,
    subject: AccountRecord,
    type: AuditEvent['type'],
    details: AuditEvent['details'],
  ): Promise<void> {
    return tx.audit.insert(this.#event(ctx, actor, subject, type, 'success', details));
  }

  #event(
    ctx: RequestContext,
    actor: Principal,
    subject: AccountRecord | undefined,
    type: AuditEvent['type'],
    outcome: AuditEvent['outcome'],
    details: AuditEvent['details'],
  ): AuditEvent {
    return requestEvent({ at: this.#clock.now(), ctx, actor, subject, type, outcome, details });
  }
}
