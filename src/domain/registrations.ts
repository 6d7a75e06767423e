import { randomBytes, randomUUID } from 'node:crypto';
import { auditEvent, requestEvent } from './audit.ts';
import type { AccountService } from './accounts.ts';
import { isAdminRole } from './authorization.ts';
import type { Clock } from './clock.ts';
import { MciasError, fail } from './errors.ts';
import type { Account, Principal, RegistrationRecord, RequestContext } from './model.ts';
import { normalizeName } from './names.ts';
import type { Store } from './ports.ts';
import type { DigestKeys, DigestPurpose } from './sealing.ts';
import type { LoginThrottle } from './throttle.ts';

const PURPOSE: DigestPurpose = 'registration codes';
/** 160 bits from the CSPRNG (SECURITY.md §49), base64url, after a prefix that secret scanners can look for. */
const CODE_BYTES = 20;
const CODE_PREFIX = 'mciasreg_';
const DEFAULT_REGISTRATION_TTL_MS = 7 * 24 * 3_600_000;
/** Bounds an administrator's typo, not a policy: a code for a whole school is still one code. */
export const MAX_REGISTRATION_USES = 10_000;
const MAX_REGISTRATION_TTL_MS = 365 * 24 * 3_600_000;

/**
 * The one answer for a code that cannot be redeemed, whatever the reason (unknown, garbage, expired, used up,
 * deleted, or spent by a concurrent redemption): a guesser learns nothing about which codes exist.
 */
function invalidCode(): MciasError {
  return new MciasError('invalid_credentials', 'the registration code is not valid');
}

/**
 * Invite-only sign-up (SECURITY.md §49): administrators create codes, shown once and stored as keyed digests; a
 * person redeems one to create their own account, which gets the code's roles. A use is spent in the database, in
 * the transaction that creates the account, by one conditional update.
 */
export class RegistrationService {
  readonly #store: Store;
  readonly #accounts: AccountService;
  readonly #digests: DigestKeys;
  readonly #throttle: LoginThrottle;
  readonly #clock: Clock;

  constructor(deps: { store: Store; accounts: AccountService; digests: DigestKeys; throttle: LoginThrottle; clock: Clock }) {
    this.#store = deps.store;
    this.#accounts = deps.accounts;
    this.#digests = deps.digests;
    this.#throttle = deps.throttle;
    this.#clock = deps.clock;
  }

  list(): Promise<RegistrationRecord[]> {
    return this.#store.registrations.list();
  }

  /**
   * A new code, returned this once. `admin` among the roles needs `allowAdmin`, and the flag is in the audit row:
   * an invitation that makes administrators is never made by accident.
   */
  async create(
    input: { roles?: readonly string[] | undefined; uses?: number | undefined; ttlMs?: number | undefined; allowAdmin?: boolean | undefined },
    actor: Principal,
    ctx: RequestContext,
  ): Promise<{ registration: RegistrationRecord; code: string }> {
    const roles = [...new Set((input.roles ?? []).map((role) => normalizeName(role, 'role')))].sort();
    const allowAdmin = input.allowAdmin === true;
    if (roles.some(isAdminRole) && !allowAdmin) {
      fail('invalid_request', 'a registration code that grants admin needs allow_admin (mciasctl: --allow-admin)', 'admin_needs_flag');
    }
    const uses = input.uses ?? 1;
    if (!Number.isInteger(uses) || uses < 1 || uses > MAX_REGISTRATION_USES) fail('invalid_request', `uses must be 1 to ${MAX_REGISTRATION_USES}`);
    const ttlMs = input.ttlMs ?? DEFAULT_REGISTRATION_TTL_MS;
    if (ttlMs < 60_000 || ttlMs > MAX_REGISTRATION_TTL_MS) fail('invalid_request', 'the expiry must be between 1m and 365d');
    const code = CODE_PREFIX + randomBytes(CODE_BYTES).toString('base64url');
    return this.#store.transaction(async (tx) => {
      for (const role of roles) if (!(await tx.roles.exists(role))) fail('not_found', `no such role: ${role}`);
      const now = this.#clock.now();
      const registration: RegistrationRecord = {
        id: randomUUID(),
        codeHash: this.#digest(code),
        roles,
        usesLeft: uses,
        expiresAt: now + ttlMs,
        createdBy: actor.account.id,
        createdAt: now,
      };
      await tx.registrations.insert(registration);
      await tx.audit.insert(
        requestEvent({
          at: now,
          ctx,
          actor,
          type: 'registration_created',
          details: { registration: registration.id, roles: roles.join(' '), uses, expires_at: registration.expiresAt, allow_admin: allowAdmin },
        }),
      );
      return { registration, code };
    });
  }

  async delete(id: string, actor: Principal, ctx: RequestContext): Promise<void> {
    await this.#store.transaction(async (tx) => {
      if (!(await tx.registrations.delete(id))) fail('not_found', 'no such registration code');
      await tx.audit.insert(requestEvent({ at: this.#clock.now(), ctx, actor, type: 'registration_deleted', details: { registration: id } }));
    });
  }

  /**
   * Creates the person's account if the code has a use left. A code that cannot be used counts against the client
   * address in the failed-login counter (SECURITY.md §9), and a throttled address is refused before the code is
   * looked up. The code is looked up before the password is hashed, so a guess costs the server no hash; the use is
   * then spent atomically with the account's creation. A username that is taken is 409 and spends nothing.
   */
  async register(input: { code: string; username: string; password: string }, ctx: RequestContext): Promise<Account> {
    await this.#throttle.checkAddress(ctx);
    const codeHash = this.#digest(input.code);
    const usable = await this.#store.registrations.findUsable(codeHash, this.#clock.now());
    if (usable === undefined) return this.#refuse(ctx, 'invalid_code');
    try {
      return await this.#accounts.register({ username: input.username, password: input.password, registrationId: usable.id }, async (tx) => {
        const spent = await tx.registrations.consume(codeHash, this.#clock.now());
        if (spent === undefined) throw invalidCode();
        return spent.roles;
      }, ctx);
    } catch (error) {
      // Spent by a concurrent redemption (or expired) between the look-up and the update: the same answer.
      if (error instanceof MciasError && error.code === 'invalid_credentials') return this.#refuse(ctx, 'code_spent');
      throw error;
    }
  }

  /**
   * The one refusal, audited; a guess (`invalid_code`) is also counted against the address, in the same transaction.
   * A valid code that a concurrent redemption spent first (`code_spent`) was no guess, and is not counted.
   */
  async #refuse(ctx: RequestContext, reason: 'invalid_code' | 'code_spent'): Promise<never> {
    await this.#store.transaction(async (tx) => {
      await tx.audit.insert(auditEvent({ at: this.#clock.now(), ctx, type: 'account_registered', outcome: 'failure', details: { reason } }));
      if (reason === 'invalid_code') await this.#throttle.failedAddress(tx, ctx);
    });
    throw invalidCode();
  }

  #digest(code: string): string {
    return this.#digests.digest(PURPOSE, code.trim());
  }
}
