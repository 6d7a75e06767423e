import type { Clock } from './clock.ts';
import { MciasError } from './errors.ts';
import type { Account, Principal, RequestContext } from './model.ts';
import type { PasswordHasher } from './password.ts';
import type { Store } from './ports.ts';
import type { TokenService } from './tokens.ts';

export interface LoginResult {
  readonly token: string;
  readonly expiresAt: number;
  readonly account: Account;
}

type FailureReason = 'unknown_user' | 'wrong_password' | 'account_disabled' | 'system_account';

/**
 * Password login for human accounts. Every failure, whatever its cause, does the same work (one scrypt
 * verification, one audit row) and answers with the same error (security.md 8); the cause goes to the audit trail.
 */
export class LoginService {
  readonly #store: Store;
  readonly #hasher: PasswordHasher;
  readonly #tokens: TokenService;
  readonly #clock: Clock;

  constructor(deps: { store: Store; hasher: PasswordHasher; tokens: TokenService; clock: Clock }) {
    this.#store = deps.store;
    this.#hasher = deps.hasher;
    this.#tokens = deps.tokens;
    this.#clock = deps.clock;
  }

  async login(input: { username: string; password: string }, ctx: RequestContext): Promise<LoginResult> {
    const username = input.username.toLowerCase();
    const record = await this.#store.accounts.findByUsername(username);
    const usable = record !== undefined && record.kind === 'human';
    const { ok, needsRehash } = await this.#hasher.verify(input.password, usable ? record.passwordHash : undefined);

    let reason: FailureReason | undefined;
    if (record === undefined) reason = 'unknown_user';
    else if (record.kind !== 'human') reason = 'system_account';
    else if (!ok) reason = 'wrong_password';
    else if (record.status !== 'active') reason = 'account_disabled';

    const event = {
      occurredAt: this.#clock.now(),
      subject: record ? { id: record.id, username: record.username } : undefined,
      ip: ctx.ip,
      userAgent: ctx.userAgent,
      requestId: ctx.requestId,
    };
    if (reason !== undefined || record === undefined) {
      await this.#store.audit.insert({
        ...event,
        type: 'login_failed',
        outcome: 'failure',
        details: { reason: reason ?? 'unknown_user', factor: 'password', username },
      });
      throw new MciasError('invalid_credentials', 'the username or password is not correct');
    }

    const rehash = needsRehash ? await this.#hasher.hash(input.password) : undefined;
    const roles = (await this.#store.roles.rolesOf([record.id])).get(record.id) ?? [];
    const account: Account = { ...record, roles };
    const issued = await this.#tokens.mint(account, { kind: 'session', issuedBy: record.id });
    await this.#store.transaction(async (tx) => {
      if (rehash !== undefined) await tx.accounts.updatePasswordHash(record.id, rehash, this.#clock.now());
      await tx.tokens.insert(issued.record);
      await tx.audit.insert({
        ...event,
        type: 'login_succeeded',
        outcome: 'success',
        details: { factor: 'password', jti: issued.record.jti, rehashed: rehash !== undefined },
      });
    });
    return { token: issued.token, expiresAt: issued.record.expiresAt, account };
  }

  /** Revokes the presented token. */
  async logout(principal: Principal, ctx: RequestContext): Promise<void> {
    await this.#store.transaction(async (tx) => {
      const now = this.#clock.now();
      await tx.tokens.revoke(principal.token.jti, now, 'logout');
      await tx.audit.insert({
        type: 'token_revoked',
        outcome: 'success',
        occurredAt: now,
        actor: { id: principal.account.id, username: principal.account.username },
        subject: { id: principal.account.id, username: principal.account.username },
        ip: ctx.ip,
        userAgent: ctx.userAgent,
        requestId: ctx.requestId,
        details: { jti: principal.token.jti, reason: 'logout' },
      });
    });
  }
}
