import { requestEvent, type AuditEvent } from './audit.ts';
import { mayActForService, mayActForServiceName } from './authorization.ts';
import type { AccountService } from './accounts.ts';
import type { Clock } from './clock.ts';
import { MciasError, fail } from './errors.ts';
import { type Account, type PermissionGrant, type Principal, type RequestContext, type TokenInfo } from './model.ts';
import { normalizeName } from './names.ts';
import { NO_OBSERVER, type Observer, type Store } from './ports.ts';
import type { FailureSummaries } from './summaries.ts';
import type { IssuedToken, TokenService } from './tokens.ts';

export type Validation =
  | { readonly active: false }
  | {
      readonly active: true;
      readonly account: Account;
      readonly permissions: readonly PermissionGrant[];
      readonly jti: string;
      readonly issuedAt: number;
      readonly expiresAt: number;
    };

/**
 * What happens to tokens after login: renewal, logout and revocation, listings, service tokens for system
 * accounts, and validation for apps. Every change writes its audit row in the same transaction.
 */
export class TokenLifecycle {
  readonly #store: Store;
  readonly #tokens: TokenService;
  readonly #accounts: AccountService;
  readonly #clock: Clock;
  readonly #summaries: FailureSummaries;
  readonly #observer: Observer;

  constructor(deps: {
    store: Store;
    tokens: TokenService;
    accounts: AccountService;
    clock: Clock;
    summaries: FailureSummaries;
    observer?: Observer;
  }) {
    this.#store = deps.store;
    this.#tokens = deps.tokens;
    this.#accounts = deps.accounts;
    this.#clock = deps.clock;
    this.#summaries = deps.summaries;
    this.#observer = deps.observer ?? NO_OBSERVER;
  }

  /**
   * A new token for the presented one, which is revoked in the same transaction (so it renews once). Humans renew
   * up to the absolute session age counted from their password login (SECURITY.md §18); renewal never extends past
   * it. System accounts renew while active, keeping their single live token.
   */
  async renew(principal: Principal, ctx: RequestContext): Promise<IssuedToken> {
    const { account, token } = principal;
    const now = this.#clock.now();
    if (account.kind === 'human' && token.sessionStartedAt + this.#tokens.settings.maxSessionAgeMs <= now) {
      throw new MciasError('unauthenticated', 'the session has reached its maximum age: log in again', { reason: 'session_expired' });
    }
    // mint caps a human's expiry at the session's end.
    const issued = await this.#tokens.mint(account, { kind: token.kind, issuedBy: token.issuedBy, sessionStartedAt: token.sessionStartedAt });
    await this.#store.transaction(async (tx) => {
      // A service token renews under the account lock issueServiceToken takes: otherwise an issue running
      // alongside would not see this renewal's new row, and its insert would collide with it in the unique index.
      if (token.kind === 'service') await tx.accounts.lock(account.id);
      // Whoever revokes it first renews it: a second concurrent renewal of the same token finds it revoked.
      if (!(await tx.tokens.revoke(token.jti, now, 'renewed'))) fail('unauthenticated', 'the bearer token is not valid');
      await tx.tokens.insert(issued.record);
      await tx.audit.insert(this.#event(ctx, principal, account, 'token_renewed', { jti: issued.record.jti, replaces: token.jti }));
    });
    return issued;
  }

  async logout(principal: Principal, ctx: RequestContext): Promise<void> {
    await this.#revoke(principal, principal.account, principal.token.jti, 'logout', ctx);
  }

  listOwn(principal: Principal): Promise<TokenInfo[]> {
    return this.#store.tokens.listLive(principal.account.id, this.#clock.now());
  }

  /** Revokes one of the caller's own tokens; someone else's is "not found", as if it did not exist. */
  async revokeOwn(principal: Principal, jti: string, ctx: RequestContext): Promise<void> {
    const token = await this.#store.tokens.find(jti);
    if (token === undefined || token.accountId !== principal.account.id) fail('not_found', 'no such token');
    await this.#revoke(principal, principal.account, jti, 'revoked_by_owner', ctx);
  }

  async listFor(username: string): Promise<TokenInfo[]> {
    const account = await this.#accounts.get(username);
    return this.#store.tokens.listLive(account.id, this.#clock.now());
  }

  /** An administrator revokes any token by id (idempotent for a token already revoked). */
  async revoke(principal: Principal, jti: string, ctx: RequestContext): Promise<void> {
    const token = await this.#store.tokens.find(jti);
    if (token === undefined) fail('not_found', 'no such token');
    await this.#revoke(principal, { id: token.accountId, username: token.username }, jti, 'revoked_by_admin', ctx);
  }

  /**
   * Issues a system account's token, for an administrator or a delegate (a human holding the role named after the
   * service) who holds every role the service holds (SECURITY.md §38). The account holds one live token: the
   * previous one is revoked in the same transaction, the account's row lock serialises concurrent issues, and a
   * partial unique index makes two live tokens impossible regardless.
   */
  async issueServiceToken(principal: Principal, serviceName: string, ctx: RequestContext): Promise<IssuedToken> {
    // Authorised on the name before the lookup, so a caller who may not issue cannot tell taken names (403) from
    // free ones (404).
    const name = normalizeName(serviceName, 'username');
    if (!mayActForServiceName(principal.account, name).allowed) {
      fail('forbidden', `issuing a token for ${name} needs the admin role or the ${name} role`);
    }
    const service = await this.#accounts.get(name);
    if (service.kind !== 'system') fail('invalid_request', 'service tokens are for system accounts; people log in');
    const delegation = mayActForService(principal.account, service);
    if (!delegation.allowed) {
      // A delegate reaching for more than they hold: worth an audit row (the caller is authenticated, so bounded).
      await this.#store.audit.insert(
        requestEvent({
          at: this.#clock.now(),
          ctx,
          actor: principal,
          subject: service,
          type: 'token_issued',
          outcome: 'failure',
          details: { kind: 'service', reason: delegation.reason, missing_roles: (delegation.missing ?? []).join(',') },
        }),
      );
      fail('forbidden', `${name} holds roles you do not hold, so you may not issue its token`, delegation.reason);
    }
    if (service.status !== 'active') fail('conflict', 'the account is disabled');
    const issued = await this.#tokens.mint(service, { kind: 'service', issuedBy: principal.account.id });
    await this.#store.transaction(async (tx) => {
      await tx.accounts.lock(service.id);
      // A role granted to the service since the check above would widen this token (SECURITY.md §38): the grant
      // takes the same lock, so checking again under it sees every grant that the token could otherwise outlive.
      if (!mayActForService(principal.account, await this.#accounts.get(service.username, tx)).allowed) {
        fail('forbidden', `${name} holds roles you do not hold, so you may not issue its token`, 'delegation_exceeds_roles');
      }
      const now = this.#clock.now();
      const replaced = await tx.tokens.revokeAllOf(service.id, now, 'replaced');
      await tx.tokens.insert(issued.record);
      await tx.audit.insert(
        this.#event(ctx, principal, service, 'token_issued', { jti: issued.record.jti, kind: 'service', delegate: delegation.as === 'delegate', replaced }),
      );
    });
    return issued;
  }

  /** Revokes a system account's live token (admin). */
  async revokeServiceToken(principal: Principal, serviceName: string, ctx: RequestContext): Promise<void> {
    const service = await this.#accounts.get(serviceName);
    if (service.kind !== 'system') fail('invalid_request', 'service tokens are for system accounts');
    await this.#store.transaction(async (tx) => {
      const revoked = await tx.tokens.revokeAllOf(service.id, this.#clock.now(), 'revoked_by_admin');
      if (revoked === 0) fail('not_found', 'the account has no live token');
      await tx.audit.insert(this.#event(ctx, principal, service, 'token_revoked', { kind: 'service', reason: 'revoked_by_admin' }));
    });
  }

  /**
   * RFC 7662-style introspection for apps: active with the account's current roles and permissions, or just
   * inactive, whatever the reason (which goes to the audit trail, never to the caller).
   */
  async validate(token: string, ctx: RequestContext): Promise<Validation> {
    const result = await this.#tokens.check(token);
    if (!result.ok) return this.#inactive(result.reason, ctx);
    // A session whose password is temporary may only change it (SECURITY.md §39): for an app, it is not active yet.
    if (result.principal.account.passwordChangeRequired) return this.#inactive('password_change_required', ctx);
    const { account, token: record, permissions } = result.principal;
    this.#observer.tokenValidation('active');
    return { active: true, account, permissions, jti: record.jti, issuedAt: record.issuedAt, expiresAt: record.expiresAt };
  }

  /**
   * Anyone may ask, so a failure is counted in memory and summarised per address and interval (SECURITY.md §41),
   * never written as a row of its own: a stranger's requests cannot grow the audit trail without bound.
   */
  #inactive(reason: string, ctx: RequestContext): Validation {
    this.#observer.tokenValidation(reason);
    this.#summaries.record(ctx.ip, `token_validation_failed.${reason}`);
    return { active: false };
  }

  async #revoke(
    principal: Principal,
    owner: { id: string; username: string },
    jti: string,
    reason: string,
    ctx: RequestContext,
  ): Promise<void> {
    await this.#store.transaction(async (tx) => {
      const revoked = await tx.tokens.revoke(jti, this.#clock.now(), reason);
      if (revoked) await tx.audit.insert(this.#event(ctx, principal, owner, 'token_revoked', { jti, reason }));
    });
  }

  #event(
    ctx: RequestContext,
    actor: Principal,
    subject: { id: string; username: string },
    type: AuditEvent['type'],
    details: AuditEvent['details'],
  ): AuditEvent {
    return requestEvent({ at: this.#clock.now(), ctx, actor, subject, type, details });
  }
}
