import { randomBytes } from 'node:crypto';
import { Secret, TOTP } from 'otpauth';
import { requestEvent, type AuditEvent } from './audit.ts';
import type { AccountService } from './accounts.ts';
import type { Clock } from './clock.ts';
import { MciasError, fail } from './errors.ts';
import type { AccountRecord, Principal, RequestContext } from './model.ts';
import { addressKey } from './address.ts';
import { passwordLength, type PasswordHasher } from './password.ts';
import type { Store } from './ports.ts';
import type { DigestKeys, DigestPurpose, Sealer } from './sealing.ts';
import type { LoginThrottle } from './throttle.ts';

/** RFC 6238 as SECURITY.md §12 fixes it: a 160-bit secret, SHA-1, 6 digits, 30 s steps, at most ±1 step. */
const SECRET_BYTES = 20;
const PERIOD_S = 30;
const DIGITS = 6;
const WINDOW = 1;
const RECOVERY_CODES = 10;
/** 80 random bits each, shown as four groups of four base32 characters. */
const RECOVERY_CODE_BYTES = 10;
const RECOVERY_DIGEST_PURPOSE: DigestPurpose = 'recovery codes';

/** A TOTP code: exactly its digits. The API's schema for a code alone (confirming enrollment) is this pattern. */
export const TOTP_CODE_PATTERN = `^[0-9]{${DIGITS}}$`;
const TOTP_CODE = new RegExp(TOTP_CODE_PATTERN);
/**
 * A second factor as people type it at login and at removal: a TOTP code ("123 456", as apps show it) or a recovery
 * code with its dashes. `verify` tells the two apart.
 */
export const TYPED_CODE_PATTERN = `^[0-9A-Za-z -]{${DIGITS},32}$`;
const RECOVERY_CODE = /^[A-Z2-7]{16}$/;

export interface TotpSettings {
  readonly issuer: string;
  readonly requireForAdmins: boolean;
}

export type SecondFactorResult =
  | { readonly ok: true; readonly factor: 'totp' | 'recovery_code' }
  | { readonly ok: false; readonly reason: 'wrong_totp' | 'totp_replayed' | 'wrong_recovery_code' };

function sealContext(accountId: string) {
  return { table: 'accounts', column: 'totp_secret', id: accountId } as const;
}

function totpFor(secret: Uint8Array, issuer: string, username: string): TOTP {
  const buffer = new Uint8Array(secret).buffer;
  return new TOTP({ issuer, label: username, algorithm: 'SHA1', digits: DIGITS, period: PERIOD_S, secret: new Secret({ buffer }) });
}

/** The time step a code belongs to, within ±1 step of now; undefined if it matches none. */
export function matchTotpStep(secret: Uint8Array, code: string, now: number): number | undefined {
  if (!TOTP_CODE.test(code)) return undefined;
  const delta = totpFor(secret, 'MCIAS', 'x').validate({ token: code, timestamp: now, window: WINDOW });
  return delta === null ? undefined : TOTP.counter({ period: PERIOD_S, timestamp: now }) + delta;
}

/** Upper-case, without the dashes and spaces people type; the form that is digested. */
export function normalizeRecoveryCode(code: string): string {
  return code.toUpperCase().replace(/[\s-]/g, '');
}

function newRecoveryCode(): string {
  const base32 = new Secret({ buffer: new Uint8Array(randomBytes(RECOVERY_CODE_BYTES)).buffer }).base32;
  return base32.match(/.{4}/g)!.join('-');
}

/**
 * The TOTP second factor (SECURITY.md §12–§15): enrollment that is active only after a correct code, codes
 * accepted once (the last accepted step is kept in the database), secrets sealed at rest, single-use recovery
 * codes stored as keyed digests, removal with password and code, and an administrator's reset.
 */
export class TotpService {
  readonly #store: Store;
  readonly #sealer: Sealer;
  readonly #digests: DigestKeys;
  readonly #hasher: PasswordHasher;
  readonly #accounts: AccountService;
  readonly #clock: Clock;
  readonly #throttle: LoginThrottle;
  readonly settings: TotpSettings;
  readonly #minPasswordLength: number;

  constructor(deps: {
    store: Store;
    sealer: Sealer;
    digests: DigestKeys;
    hasher: PasswordHasher;
    accounts: AccountService;
    clock: Clock;
    throttle: LoginThrottle;
    settings: TotpSettings;
    minPasswordLength: number;
  }) {
    this.#store = deps.store;
    this.#sealer = deps.sealer;
    this.#digests = deps.digests;
    this.#hasher = deps.hasher;
    this.#accounts = deps.accounts;
    this.#clock = deps.clock;
    this.#throttle = deps.throttle;
    this.settings = deps.settings;
    this.#minPasswordLength = deps.minPasswordLength;
  }

  /**
   * Starts (or restarts) enrollment with a fresh secret; nothing changes at login until it is confirmed. It needs the
   * current password (SECURITY.md §14, ASVS 7.5.1): a stolen token alone cannot put an attacker's authenticator on the
   * account. A wrong password is audited and stores nothing.
   */
  async begin(principal: Principal, password: string, ctx: RequestContext): Promise<{ secret: string; uri: string }> {
    const account = this.#human(principal);
    if (account.totpConfirmedAt !== null) fail('conflict', 'TOTP is already enabled; remove it first to enroll again');
    await this.#throttle.check(account.username, ctx);
    const stored = await this.#store.accounts.findById(account.id);
    const { ok } = await this.#hasher.verify(password, stored?.passwordHash, addressKey(ctx.ip));
    if (!ok) {
      const event = this.#event(ctx, principal, account, 'totp_enrollment_started', 'failure', { reason: 'wrong_password' });
      await this.#throttle.failedWith(event, { subject: account, ctx });
      fail('invalid_credentials', 'the password is not correct');
    }
    const secret = randomBytes(SECRET_BYTES);
    await this.#store.transaction(async (tx) => {
      await tx.credentials.setPendingTotp(account.id, this.#sealer.seal(secret, sealContext(account.id)), this.#clock.now());
      await tx.audit.insert(this.#event(ctx, principal, account, 'totp_enrollment_started', 'success', {}));
    });
    const totp = totpFor(secret, this.settings.issuer, account.username);
    return { secret: totp.secret.base32, uri: totp.toString() };
  }

  /** Activates enrollment with a correct code; returns the recovery codes, shown this once. */
  async confirm(principal: Principal, code: string, ctx: RequestContext): Promise<string[]> {
    const account = this.#human(principal);
    const state = await this.#store.credentials.findTotp(account.id);
    if (state?.secret == null || state.confirmedAt !== null) fail('conflict', 'there is no TOTP enrollment to confirm: start one first');
    // Wrong codes count like failed logins (SECURITY.md §9): a million codes are not a million free guesses.
    await this.#throttle.check(account.username, ctx);
    const step = matchTotpStep(this.#sealer.open(state.secret, sealContext(account.id)), code, this.#clock.now());
    if (step === undefined) {
      await this.#throttle.failedWith(this.#event(ctx, principal, account, 'totp_enabled', 'failure', { reason: 'wrong_totp' }), { subject: account, ctx });
      fail('invalid_credentials', 'the code is not correct');
    }
    const codes = Array.from({ length: RECOVERY_CODES }, newRecoveryCode);
    await this.#store.transaction(async (tx) => {
      const now = this.#clock.now();
      if (!(await tx.credentials.confirmTotp(account.id, step, now))) fail('conflict', 'the enrollment changed; start again');
      await tx.credentials.replaceRecoveryCodes(account.id, codes.map((c) => this.#digest(c)), now);
      await tx.audit.insert(this.#event(ctx, principal, account, 'totp_enabled', 'success', { recovery_codes: codes.length }));
    });
    return codes;
  }

  /**
   * Removal needs the password and a current code, or a recovery code for a lost device (SECURITY.md §14). A password that is only long enough because
   * TOTP was on must be changed first, so removing the factor never leaves a weak password alone.
   */
  async disable(principal: Principal, input: { password: string; code: string }, ctx: RequestContext): Promise<void> {
    const account = this.#human(principal);
    if (account.totpConfirmedAt === null) fail('conflict', 'TOTP is not enabled');
    await this.#throttle.check(account.username, ctx);
    const stored = await this.#store.accounts.findById(account.id);
    const { ok } = await this.#hasher.verify(input.password, stored?.passwordHash, addressKey(ctx.ip));
    const refuse = async (reason: string, error: MciasError): Promise<never> => {
      const event = this.#event(ctx, principal, account, 'totp_disabled', 'failure', { reason });
      // A wrong password or code counts (SECURITY.md §9); a refusal for a short password guessed nothing.
      if (error.code === 'invalid_credentials') await this.#throttle.failedWith(event, { subject: account, ctx });
      else await this.#store.audit.insert(event);
      throw error;
    };
    const wrong = new MciasError('invalid_credentials', 'the password or code is not correct');
    if (!ok) return refuse('wrong_password', wrong);
    // Checked before the code, so a refusal here does not use the code up.
    if (passwordLength(input.password) < this.#minPasswordLength) {
      const message = `change your password to at least ${this.#minPasswordLength} characters before removing TOTP`;
      return refuse('password_too_short', new MciasError('conflict', message, { reason: 'password_too_short' }));
    }
    const second = await this.verify(account, input.code);
    if (!second.ok) return refuse(second.reason, wrong);
    await this.#clear(account, principal, ctx, 'totp_disabled');
  }

  /**
   * An administrator's reset for a lost authenticator. Like a password reset, a credential reset ends every session
   * of the account. The next login decides whether the password alone is long enough (LoginService): if it is
   * shorter than passwords.min_length (allowed only while TOTP was on), that login may do nothing but change it.
   */
  async reset(principal: Principal, username: string, ctx: RequestContext): Promise<void> {
    const account = await this.#accounts.get(username);
    if (account.kind !== 'human') fail('invalid_request', 'a system account has no TOTP');
    await this.#clear(account, principal, ctx, 'totp_reset');
  }

  /**
   * Checks a second factor at login: a TOTP code, accepted once (the database records its step only if it is
   * later than the last), or an unused recovery code, which is used up.
   */
  async verify(account: AccountRecord, code: string): Promise<SecondFactorResult> {
    const recovery = normalizeRecoveryCode(code);
    if (RECOVERY_CODE.test(recovery)) {
      const used = await this.#store.credentials.useRecoveryCode(account.id, this.#digest(recovery), this.#clock.now());
      return used ? { ok: true, factor: 'recovery_code' } : { ok: false, reason: 'wrong_recovery_code' };
    }
    const state = await this.#store.credentials.findTotp(account.id);
    if (state?.secret == null || state.confirmedAt === null) return { ok: false, reason: 'wrong_totp' };
    // The login and removal schemas let spaces through (for recovery codes): "123 456", as apps show it, is a code too.
    const step = matchTotpStep(this.#sealer.open(state.secret, sealContext(account.id)), code.replace(/\s/g, ''), this.#clock.now());
    if (step === undefined) return { ok: false, reason: 'wrong_totp' };
    return (await this.#store.credentials.acceptTotpStep(account.id, step)) ? { ok: true, factor: 'totp' } : { ok: false, reason: 'totp_replayed' };
  }

  async #clear(account: AccountRecord, principal: Principal, ctx: RequestContext, type: 'totp_disabled' | 'totp_reset'): Promise<void> {
    await this.#store.transaction(async (tx) => {
      const now = this.#clock.now();
      await tx.credentials.clearTotp(account.id, now);
      await tx.credentials.deleteRecoveryCodes(account.id);
      const revoked = type === 'totp_reset' ? await tx.tokens.revokeAllOf(account.id, now, 'totp_reset') : undefined;
      await tx.audit.insert(this.#event(ctx, principal, account, type, 'success', revoked === undefined ? {} : { tokens_revoked: revoked }));
    });
  }

  #digest(code: string): string {
    return this.#digests.digest(RECOVERY_DIGEST_PURPOSE, normalizeRecoveryCode(code));
  }

  #human(principal: Principal): Principal['account'] {
    if (principal.account.kind !== 'human') throw new MciasError('forbidden', 'a system account has no TOTP');
    return principal.account;
  }

  #event(
    ctx: RequestContext,
    actor: Principal,
    subject: { id: string; username: string },
    type: AuditEvent['type'],
    outcome: AuditEvent['outcome'],
    details: AuditEvent['details'],
  ): AuditEvent {
    return requestEvent({ at: this.#clock.now(), ctx, actor, subject, type, outcome, details });
  }
}
