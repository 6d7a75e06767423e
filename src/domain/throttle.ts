import { auditEvent, type AuditEvent } from './audit.ts';
import { addressKey } from './address.ts';
import type { Clock } from './clock.ts';
import { MciasError } from './errors.ts';
import type { AccountRecord, Principal, RequestContext } from './model.ts';
import { NO_OBSERVER, type FailureCounter, type Observer, type Store } from './ports.ts';

/** One kind of counter's lockout: after `lockoutFailures` failures, refused until `lockoutMs` after the last one. */
interface LockoutSettings {
  readonly lockoutFailures: number;
  readonly lockoutMs: number;
}

/** `[login_throttle]` (SECURITY.md §9; docs/configuration.md argues the defaults). */
export interface ThrottleSettings {
  /** Failures a counter may hold before each further attempt waits. */
  readonly freeFailures: number;
  /** The wait after the first failure beyond the free ones; it doubles with each further failure, up to `maxDelayMs`. */
  readonly baseDelayMs: number;
  readonly maxDelayMs: number;
  readonly account: LockoutSettings;
  readonly address: LockoutSettings;
}

/**
 * A counter whose last failure is older than this is forgotten: its failures start again from zero (and its row may
 * be pruned). Long enough that a patient attacker gains nothing from waiting out a lockout.
 */
const FORGET_AFTER_MS = 24 * 3_600_000;
/** How often an instance prunes forgotten counters (on a failure, at most this often). */
const PRUNE_EVERY_MS = 60_000;

type CounterKind = 'account' | 'address';

/**
 * The counter of a username: every username, known or not, has one, so the throttle answers the same for an account
 * that exists and one that does not (SECURITY.md §8). Deleting an account does not clear it; `unlock` does.
 */
function userKey(username: string | undefined): string {
  return `user:${username ?? '(invalid)'}`;
}

function addressCounterKey(ctx: RequestContext): string {
  return `address:${addressKey(ctx.ip)}`;
}

/**
 * Stands for "no username": a guess at something other than an account's password (a registration code, SECURITY.md
 * §49), which counts against the address alone. Counting it against a shared username counter instead would let one
 * guesser lock that counter for everyone.
 */
const ADDRESS_ONLY = Symbol('address only');
type Attempted = string | undefined | typeof ADDRESS_ONLY;

/** The counters an attempt touches, by kind: the username's (unless address-only) and the address's. */
function counterKeys(username: Attempted, ctx: RequestContext): Partial<Record<CounterKind, string>> {
  const address = addressCounterKey(ctx);
  return username === ADDRESS_ONLY ? { address } : { account: userKey(username), address };
}

/** When a counter lets the next attempt through (0: at once), and whether that is a lockout rather than a delay. */
function nextAttemptAt(counter: FailureCounter | undefined, lockout: LockoutSettings, settings: ThrottleSettings): { at: number; locked: boolean } {
  if (counter === undefined) return { at: 0, locked: false };
  if (counter.failures >= lockout.lockoutFailures) return { at: counter.lastFailureAt + lockout.lockoutMs, locked: true };
  const beyond = counter.failures - settings.freeFailures;
  if (beyond <= 0) return { at: 0, locked: false };
  // 2^(beyond-1) grows past any max_delay long before it overflows; the cap keeps the exponent small anyway.
  const delay = Math.min(settings.baseDelayMs * 2 ** Math.min(beyond - 1, 40), settings.maxDelayMs);
  return { at: counter.lastFailureAt + delay, locked: false };
}

/**
 * Failed-login throttling and lockout (SECURITY.md §9), counted in the database so every instance shares the counts.
 * Two counters take each failure: the username's and the client address's (IPv6 by /64). Each answers with a
 * growing delay once past its free failures, and locks at its threshold until its lockout time has passed since its
 * last failure; the address threshold is the tighter one, so a single attacker locks their own address long before
 * the account. An attempt is checked (one read of both counters) before any password hash is spent on it, and a
 * refused attempt is not counted, so waiting out a lockout is all it takes to be let in again. A success clears the
 * username's counter, never the address's (else an attacker with an account of their own could clear theirs).
 */
export class LoginThrottle {
  readonly #store: Store;
  readonly #clock: Clock;
  readonly settings: ThrottleSettings;
  readonly #observer: Observer;
  #prunedAt = 0;

  constructor(deps: { store: Store; clock: Clock; settings: ThrottleSettings; observer?: Observer | undefined }) {
    this.#store = deps.store;
    this.#clock = deps.clock;
    this.settings = deps.settings;
    this.#observer = deps.observer ?? NO_OBSERVER;
  }

  /**
   * Refuses the attempt with 429 `rate_limited` and a Retry-After while either counter's wait has not passed: even
   * for the right password, and before any hash. `username` is the canonical name (undefined: one that breaks the
   * naming rule, an unknown user like any other).
   */
  check(username: string | undefined, ctx: RequestContext): Promise<void> {
    return this.#check(username, ctx);
  }

  /** `check` for a guess that names no account (a registration code): the address's counter alone. */
  checkAddress(ctx: RequestContext): Promise<void> {
    return this.#check(ADDRESS_ONLY, ctx);
  }

  async #check(username: Attempted, ctx: RequestContext): Promise<void> {
    const now = this.#clock.now();
    const keys = counterKeys(username, ctx);
    const counters = await this.#store.failures.read(Object.values(keys));
    for (const kind of ['address', 'account'] as const) {
      const key = keys[kind];
      if (key === undefined) continue;
      const counter = this.#live(counters.get(key), now);
      const next = nextAttemptAt(counter, this.settings[kind], this.settings);
      if (next.at > now) {
        const seconds = Math.max(1, Math.ceil((next.at - now) / 1000));
        const whom = kind === 'account' ? 'this account' : 'your address';
        const message = next.locked
          ? `too many failed attempts for ${whom}: locked for ${seconds} s (an administrator can unlock an account)`
          : `too many failed attempts for ${whom}: wait ${seconds} s before trying again`;
        throw new MciasError('rate_limited', message, { retryAfter: seconds, reason: `${kind}_${next.locked ? 'locked' : 'throttled'}` });
      }
    }
  }

  /**
   * Counts a failure against the username and the address, inside the caller's transaction (with its audit row),
   * and records a lockout event for each counter that this failure locks.
   */
  failed(
    tx: Store,
    input: { username: string | undefined; subject: AccountRecord | Principal['account'] | undefined; ctx: RequestContext },
  ): Promise<void> {
    return this.#failed(tx, input);
  }

  /** `failed` for a guess that names no account (a registration code): counted against the address alone. */
  failedAddress(tx: Store, ctx: RequestContext): Promise<void> {
    return this.#failed(tx, { username: ADDRESS_ONLY, subject: undefined, ctx });
  }

  async #failed(
    tx: Store,
    input: { username: Attempted; subject: AccountRecord | Principal['account'] | undefined; ctx: RequestContext },
  ): Promise<void> {
    const now = this.#clock.now();
    const keys = counterKeys(input.username, input.ctx);
    const counters = await tx.failures.recordFailure(Object.values(keys), now, now - FORGET_AFTER_MS);
    for (const kind of ['account', 'address'] as const) {
      const key = keys[kind];
      if (key === undefined) continue;
      const failures = counters.get(key)?.failures ?? 0;
      // A refused attempt is never counted, so a failure at or past the threshold is the one that (re)locks.
      if (failures >= this.settings[kind].lockoutFailures) {
        const username = input.username === ADDRESS_ONLY ? undefined : input.username;
        await tx.audit.insert(this.#lockEvent(kind, failures, { ...input, username }, now));
        this.#observer.lockout();
      }
    }
    await this.#prune(tx, now);
  }

  /**
   * A failed check of a signed-in person's password or code (TOTP enrollment, confirmation and removal, a password
   * change): its audit row and the counting, in one transaction. A stolen session cannot guess faster than a login.
   */
  async failedWith(event: AuditEvent, input: { subject: Principal['account']; ctx: RequestContext }): Promise<void> {
    await this.#store.transaction(async (tx) => {
      await tx.audit.insert(event);
      await this.failed(tx, { username: input.subject.username, subject: input.subject, ctx: input.ctx });
    });
  }

  /** A success clears the username's counter (inside the caller's transaction). */
  async succeeded(tx: Store, username: string): Promise<void> {
    await tx.failures.reset(userKey(username));
  }

  /** An administrator's unlock: clears the username's counter; returns the failures it held. */
  unlock(tx: Store, username: string): Promise<number> {
    return tx.failures.reset(userKey(username));
  }

  #live(counter: FailureCounter | undefined, now: number): FailureCounter | undefined {
    return counter === undefined || counter.lastFailureAt < now - FORGET_AFTER_MS ? undefined : counter;
  }

  #lockEvent(
    kind: CounterKind,
    failures: number,
    input: { username: string | undefined; subject: { id: string; username: string } | undefined; ctx: RequestContext },
    now: number,
  ): AuditEvent {
    const lockedForS = Math.ceil(this.settings[kind].lockoutMs / 1000);
    if (kind === 'address') {
      return auditEvent({ at: now, ctx: input.ctx, type: 'address_locked', outcome: 'failure', details: { address: addressKey(input.ctx.ip), failures, locked_for_s: lockedForS } });
    }
    return auditEvent({
      at: now,
      ctx: input.ctx,
      type: 'account_locked',
      outcome: 'failure',
      subject: input.subject,
      details: { username: input.username ?? null, known: input.subject !== undefined, failures, locked_for_s: lockedForS },
    });
  }

  async #prune(tx: Store, now: number): Promise<void> {
    if (now - this.#prunedAt < PRUNE_EVERY_MS) return;
    this.#prunedAt = now;
    await tx.failures.prune(now - FORGET_AFTER_MS);
  }
}
