import { requestEvent, type AuditEvent } from './audit.ts';
import { isAdmin } from './authorization.ts';
import type { Clock } from './clock.ts';
import { MciasError, type ErrorCode } from './errors.ts';
import type { Account, AccountRecord, RequestContext } from './model.ts';
import { canonicalName } from './names.ts';
import { addressKey } from './address.ts';
import { passwordLength, type PasswordHasher } from './password.ts';
import { NO_OBSERVER, type Observer, type Store } from './ports.ts';
import type { LoginThrottle } from './throttle.ts';
import type { TokenService } from './tokens.ts';
import type { TotpService } from './totp.ts';

export interface LoginResult {
  readonly token: string;
  readonly expiresAt: number;
  readonly account: Account;
  /** The bootstrap administrator's first login under `auth.require_totp_for_admins`: enroll now. */
  readonly totpEnrollmentRequired: boolean;
}

/**
 * Interactive login for human accounts: password, then the TOTP code (or a recovery code) where TOTP is enabled.
 * Every first-factor failure, whatever its cause, does the same work (one scrypt verification, one audit row) and
 * answers with the same error (SECURITY.md §8); the cause goes to the audit trail.
 */
export class LoginService {
  readonly #store: Store;
  readonly #hasher: PasswordHasher;
  readonly #tokens: TokenService;
  readonly #totp: TotpService;
  readonly #clock: Clock;
  readonly #throttle: LoginThrottle;
  readonly #observer: Observer;

  readonly #minPasswordLength: { readonly withoutTotp: number; readonly withTotp: number };

  constructor(deps: {
    store: Store;
    hasher: PasswordHasher;
    tokens: TokenService;
    totp: TotpService;
    clock: Clock;
    throttle: LoginThrottle;
    observer?: Observer;
    /** passwords.min_length and passwords.min_length_with_totp: a shorter password must be replaced at login. */
    minPasswordLength: { readonly withoutTotp: number; readonly withTotp: number };
  }) {
    this.#minPasswordLength = deps.minPasswordLength;
    this.#store = deps.store;
    this.#hasher = deps.hasher;
    this.#tokens = deps.tokens;
    this.#totp = deps.totp;
    this.#clock = deps.clock;
    this.#throttle = deps.throttle;
    this.#observer = deps.observer ?? NO_OBSERVER;
  }

  /** Logs in, and reports how every attempt ended, whatever refused it (a wrong password, a full hash queue...). */
  async login(input: { username: string; password: string; totpCode?: string | undefined }, ctx: RequestContext): Promise<LoginResult> {
    try {
      const result = await this.#attempt(input, ctx);
      this.#observer.loginAttempt('success');
      return result;
    } catch (error) {
      this.#observer.loginAttempt(error instanceof MciasError ? error.code : 'internal');
      throw error;
    }
  }

  async #attempt(input: { username: string; password: string; totpCode?: string | undefined }, ctx: RequestContext): Promise<LoginResult> {
    // A name that breaks the rule is an unknown user: the same work and answer as any other (SECURITY.md §8).
    const username = canonicalName(input.username);
    // Throttled or locked (SECURITY.md §9): refused before the account is even looked up, and before any hash.
    await this.#throttle.check(username, ctx);
    const record = username === undefined ? undefined : await this.#store.accounts.findByUsername(username);
    const usable = record !== undefined && record.kind === 'human';
    const hashKey = addressKey(ctx.ip);
    const { ok, needsRehash } = await this.#hasher.verify(input.password, usable ? record.passwordHash : undefined, hashKey);

    const failed = async (reason: string, code: ErrorCode, message: string, factor = 'password'): Promise<never> => {
      await this.#store.transaction(async (tx) => {
        await tx.audit.insert(this.#event(ctx, record, 'login_failed', 'failure', { reason, factor, username: username ?? null }));
        // Every failure answered invalid_credentials counts, whatever its cause, so the throttle cannot tell them apart.
        if (code === 'invalid_credentials') await this.#throttle.failed(tx, { username, subject: record, ctx });
      });
      throw new MciasError(code, message, code === 'forbidden' ? { reason } : {});
    };
    const wrong = 'the username or password is not correct';
    if (record === undefined) return failed('unknown_user', 'invalid_credentials', wrong);
    if (record.kind !== 'human') return failed('system_account', 'invalid_credentials', wrong);
    if (!ok) return failed('wrong_password', 'invalid_credentials', wrong);
    if (record.status !== 'active') return failed('account_disabled', 'invalid_credentials', wrong);

    const roles = (await this.#store.roles.rolesOf([record.id])).get(record.id) ?? [];
    let factor = 'password';
    let totpEnrollmentRequired = false;
    if (record.totpConfirmedAt !== null) {
      if (input.totpCode === undefined) return failed('totp_missing', 'totp_required', 'a TOTP code is required', 'totp');
      const second = await this.#totp.verify(record, input.totpCode);
      // A wrong or replayed code is a failed login like a wrong password (and counts as one).
      if (!second.ok) return failed(second.reason, 'invalid_credentials', wrong, 'totp');
      factor = `password+${second.factor}`;
    } else if (this.#totp.settings.requireForAdmins && isAdmin({ roles })) {
      if (!(await this.#isBootstrapFirstLogin(record))) {
        return failed('totp_enrollment_required', 'forbidden', 'administrators must have TOTP enabled: ask another administrator for help');
      }
      totpEnrollmentRequired = true;
    }

    const rehash = needsRehash ? await this.#hasher.hash(input.password, hashKey) : undefined;
    // Only a login sees the plaintext, so only a login can tell that a password is now too short for its account:
    // after an administrator's TOTP reset left an 8-character password alone, or after min_length was raised.
    const tooShort = !record.passwordChangeRequired && this.#tooShort(input.password, record.totpConfirmedAt !== null);
    const account: Account = { ...record, roles, passwordChangeRequired: record.passwordChangeRequired || tooShort };
    const issued = await this.#tokens.mint(account, { kind: 'session', issuedBy: record.id });
    await this.#store.transaction(async (tx) => {
      if (rehash !== undefined) await tx.accounts.updatePasswordHash(record.id, rehash, this.#clock.now());
      if (tooShort) await tx.accounts.setPasswordChangeRequired(record.id, true, this.#clock.now());
      await this.#throttle.succeeded(tx, record.username);
      await tx.tokens.insert(issued.record);
      await tx.audit.insert(
        this.#event(ctx, record, 'login_succeeded', 'success', {
          factor,
          jti: issued.record.jti,
          rehashed: rehash !== undefined,
          ...(account.passwordChangeRequired ? { password_change_required: tooShort ? 'password_too_short' : 'temporary_password' } : {}),
        }),
      );
    });
    return { token: issued.token, expiresAt: issued.record.expiresAt, account, totpEnrollmentRequired };
  }

  /** Shorter than the minimum for a new password of this account now (SECURITY.md §4), counted as checkNewPassword counts. */
  #tooShort(password: string, withTotp: boolean): boolean {
    const minimum = withTotp ? this.#minPasswordLength.withTotp : this.#minPasswordLength.withoutTotp;
    return passwordLength(password) < minimum;
  }

  /** The first administrator, logging in for the first time, may do so once without TOTP: to enroll it. */
  async #isBootstrapFirstLogin(record: AccountRecord): Promise<boolean> {
    const [bootstrapped, loggedInBefore] = await Promise.all([
      this.#store.audit.exists(record.id, 'account_bootstrapped'),
      this.#store.audit.exists(record.id, 'login_succeeded'),
    ]);
    return bootstrapped && !loggedInBefore;
  }

  #event(
    ctx: RequestContext,
    subject: AccountRecord | undefined,
    type: AuditEvent['type'],
    outcome: AuditEvent['outcome'],
    details: AuditEvent['details'],
  ): AuditEvent {
    return requestEvent({ at: this.#clock.now(), ctx, subject, type, outcome, details });
  }
}
