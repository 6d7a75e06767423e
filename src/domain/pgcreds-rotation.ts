import { randomBytes, randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import { auditEvent } from './audit.ts';
import type { Clock } from './clock.ts';
import { MciasError, fail, isMciasError } from './errors.ts';
import type { Account, PgCredentialsRecord, Principal, RequestContext } from './model.ts';
import { normalizeName } from './names.ts';
import { initialLogin, pgPasswordContext, type PgCredentialsInput, type PgCredentialsService } from './pgcreds.ts';
import type { PgAdmin, PgTarget, Store } from './ports.ts';
import type { Sealer } from './sealing.ts';

/**
 * Rotation of service accounts' PostgreSQL passwords on the real server (SECURITY.md §43, docs/pgcreds.md "Rotation").
 *
 * One rotation, under the service's lease:
 * 1. the intent (the login and the new sealed password) is committed before the server is touched;
 * 2. the admin connection sets the password (as a SCRAM verifier; idempotent);
 * 3. the intent becomes the stored password, with its audit event, in one transaction.
 * A failure the adapter knows left the server unchanged drops the intent (the old password is stored and works);
 * an outcome it cannot know keeps the intent, and the next attempt rolls it forward: it sends the intent's password
 * again and completes. So whatever step a crash or a failure interrupts, the stored password, or the intent that
 * recovery will complete, is the one the server has.
 */

/** Generated passwords: 32 random bytes from the CSPRNG, base64url (43 characters, no padding). */
const PASSWORD_BYTES = 32;
/** How long one rotation may hold a service's lease: longer than the admin connection's timeouts, bounded so a crashed holder's lease expires. */
const ROTATION_LEASE_MS = 120_000;
/** Backoff after a failed rotation: 1 min · 2^(failures before this one), at most an hour and at most `rotate_every`. */
const BACKOFF_BASE_MS = 60_000;
const BACKOFF_CAP_MS = 3_600_000;

/** The reasons under `upstream_failed` that say the statement certainly did not run (issue 9's shared vocabulary). */
const DID_NOT_RUN = new Set(['pg_unreachable', 'pg_tls_failed', 'pg_admin_refused', 'pg_role_missing']);

function generatePgPassword(): string {
  return randomBytes(PASSWORD_BYTES).toString('base64url');
}

/** The login roles of an alternating service: two, each a member of the group role `username`; `_a` is stored first. */
function alternatingLogins(username: string): readonly [string, string] {
  return [initialLogin(username, 'alternating'), `${username}_b`];
}

/** When to try again after `failuresBefore` consecutive failures (this one not counted). */
export function retryDelayMs(failuresBefore: number, rotateEvery: number | null): number {
  const exponential = BACKOFF_BASE_MS * 2 ** Math.min(failuresBefore, 30);
  return Math.min(exponential, BACKOFF_CAP_MS, rotateEvery ?? Number.POSITIVE_INFINITY);
}

/** Whether a failure left the server certainly unchanged: the intent may be dropped. */
function certainlyNotRun(error: unknown): boolean {
  if (!isMciasError(error)) return false;
  if (error.code === 'upstream_failed') return error.reason !== undefined && DID_NOT_RUN.has(error.reason);
  return error.code === 'conflict' && error.reason === 'no_pg_admin';
}

/** What the record keeps and the audit trail shows of a failure: code, reason and the adapter's message (never a secret). */
function describeFailure(error: unknown): string {
  if (isMciasError(error)) return `${error.code}${error.reason === undefined ? '' : ` (${error.reason})`}: ${error.message}`;
  return 'internal error (see the server log)';
}

function targetOf(record: PgCredentialsRecord): PgTarget {
  return { host: record.host, port: record.port, database: record.database, admin: record.admin };
}

/** A provision request: PUT's settings without the password (generated here), and whether to create the database. */
export type PgProvisionInput = Omit<PgCredentialsInput, 'password'> & { readonly createDatabase: boolean };

/** The services (by name) a run rotated, and those whose rotation failed (recorded on each, and audited). */
export interface RotationOutcome {
  readonly rotated: string[];
  readonly failed: string[];
}

type Party = { readonly id: string; readonly username: string };

export class PgRotationService {
  readonly #store: Store;
  readonly #sealer: Sealer;
  readonly #pgAdmin: PgAdmin;
  readonly #clock: Clock;
  readonly #credentials: PgCredentialsService;
  readonly #leaseMs: number;
  /** This process, in lease holders; each operation adds its own id, so two in one process exclude each other too. */
  readonly #instance = `${hostname()}:${process.pid}:${randomUUID().slice(0, 8)}`;

  constructor(deps: { store: Store; sealer: Sealer; pgAdmin: PgAdmin; clock: Clock; credentials: PgCredentialsService; leaseMs?: number }) {
    this.#credentials = deps.credentials;
    this.#store = deps.store;
    this.#sealer = deps.sealer;
    this.#pgAdmin = deps.pgAdmin;
    this.#clock = deps.clock;
    this.#leaseMs = deps.leaseMs ?? ROTATION_LEASE_MS;
  }

  /**
   * Rotates the service's password now (an administrator's request). A pending intent is rolled forward first, and
   * that is the rotation. Throws what the server answered: `upstream_failed` (502) with its reason, `conflict`
   * `no_pg_admin`, or `conflict` `rotation_in_progress` when another rotation holds the lease.
   */
  async rotate(service: string, actor: Principal, ctx: RequestContext): Promise<PgCredentialsRecord> {
    const account = await this.#serviceAccount(service);
    const holder = await this.#claim(account.id);
    if (holder === undefined) fail('conflict', 'another rotation of this service is in progress; try again shortly', 'rotation_in_progress');
    try {
      await this.#rotateHeld(account, holder, { actor: actor.account, ctx });
      const record = await this.#store.pgcreds.find(account.id);
      if (record === undefined) fail('not_found', 'the service has no PostgreSQL credentials');
      return record;
    } finally {
      await this.#release(account.id, holder);
    }
  }

  /**
   * Rotates every service whose rotation is due at `now`, and finishes every pending intent (start-up recovery and
   * each scheduler tick). Each service is rotated under its lease, so of several instances on one database exactly
   * one does it. Errors are recorded on the service (and audited); none escapes.
   */
  async runDue(now: number = this.#clock.now()): Promise<RotationOutcome> {
    const outcome: RotationOutcome = { rotated: [], failed: [] };
    for (const accountId of await this.#store.pgcreds.listDue(now)) {
      const holder = await this.#claim(accountId);
      if (holder === undefined) continue; // another instance is on it
      let name = accountId;
      try {
        const account = await this.#store.accounts.findById(accountId);
        const record = await this.#store.pgcreds.find(accountId);
        // Another instance may have finished it between listDue and the lease.
        if (account === undefined || record === undefined) continue;
        if (record.pendingPassword === null && (record.nextRotationAt === null || record.nextRotationAt > now)) continue;
        name = account.username;
        await this.#rotateHeld(account, holder, { actor: undefined, ctx: undefined });
        outcome.rotated.push(name);
      } catch {
        // Recorded on the service and in the audit trail by #rotateHeld; the caller logs the names.
        outcome.failed.push(name);
      } finally {
        await this.#release(accountId, holder);
      }
    }
    return outcome;
  }

  /**
   * Creates the service's login role(s) on its server (and optionally its database), then stores the credentials:
   * single mode: the login `username`; alternating: the group role `username` and the logins `_a` (active) and `_b`,
   * each with its own generated password. The server is changed first and the record written last, so a crash
   * leaves no record (only roles whose passwords nobody holds) and running it again finishes the job: logins that
   * exist already get their password set. Refused when the service already has credentials (rotate those instead).
   */
  async provision(service: string, input: PgProvisionInput, actor: Principal, ctx: RequestContext): Promise<PgCredentialsRecord> {
    const settings = this.#credentials.settings(input);
    const account = await this.#serviceAccount(service, { mustHaveCredentials: false });
    if ((await this.#store.pgcreds.find(account.id)) !== undefined) {
      fail('conflict', 'the service already has PostgreSQL credentials; rotate them instead', 'pgcreds_exist');
    }
    const target: PgTarget = { host: settings.host, port: settings.port, database: settings.database, admin: settings.admin };
    const logins =
      settings.mode === 'alternating'
        ? alternatingLogins(settings.username).map((login) => ({ login, password: generatePgPassword() }))
        : [{ login: settings.username, password: generatePgPassword() }];
    const active = logins[0]!;
    const group = settings.mode === 'alternating' ? settings.username : null;
    const audit = (outcome: 'success' | 'failure', details: Record<string, string | number | boolean | null>) =>
      auditEvent({ at: this.#clock.now(), type: 'pg_credentials_provisioned', outcome, actor: actor.account, subject: account, ctx, details });

    let created: readonly string[];
    try {
      ({ created } = await this.#pgAdmin.provision(target, { group, logins, createDatabase: input.createDatabase }));
      // A login that existed (made by hand, or by a run a crash interrupted) keeps its old password unless set here.
      for (const { login, password } of logins) {
        if (!created.includes(login)) await this.#pgAdmin.setPassword(target, login, password);
      }
    } catch (error) {
      await this.#store.audit.insert(audit('failure', { host: settings.host, port: settings.port, error: describeFailure(error) }));
      throw error;
    }

    const now = this.#clock.now();
    const stored = await this.#store.transaction(async (tx) => {
      await tx.accounts.lock(account.id); // two provisions of one service: the second sees the first's record
      if ((await tx.pgcreds.find(account.id)) !== undefined) return false;
      await tx.pgcreds.put(
        {
          accountId: account.id,
          host: settings.host,
          port: settings.port,
          database: settings.database,
          username: settings.username,
          activeLogin: active.login,
          password: this.#sealer.seal(Buffer.from(active.password, 'utf8'), pgPasswordContext(account.id)),
          sslmode: settings.sslmode,
          caCert: settings.caCert,
          mode: settings.mode,
          admin: settings.admin,
          rotateEvery: settings.rotateEvery,
          nextRotationAt: settings.rotateEvery === null ? null : now + settings.rotateEvery,
        },
        now,
      );
      await tx.audit.insert(
        audit('success', { host: settings.host, port: settings.port, mode: settings.mode, created: created.join(',') || null, active_login: active.login }),
      );
      return true;
    });
    if (!stored) {
      // A concurrent provision stored its credentials first, and ours may have overwritten its password on the
      // server: put the stored one back, under the lease, before refusing.
      await this.#restoreStored(account.id);
      fail('conflict', 'the service already has PostgreSQL credentials; rotate them instead', 'pgcreds_exist');
    }
    const record = await this.#store.pgcreds.find(account.id);
    if (record === undefined) fail('not_found', 'the service has no PostgreSQL credentials');
    return record;
  }

  async #serviceAccount(service: string, options: { mustHaveCredentials?: boolean } = {}): Promise<Account> {
    const account = await this.#credentials.service(normalizeName(service, 'username'));
    if (options.mustHaveCredentials !== false && (await this.#store.pgcreds.find(account.id)) === undefined) {
      fail('not_found', 'the service has no PostgreSQL credentials');
    }
    return account;
  }

  async #claim(accountId: string): Promise<string | undefined> {
    const holder = `${this.#instance}/${randomUUID()}`;
    const now = this.#clock.now();
    return (await this.#store.pgcreds.claimLease(accountId, holder, now, now + this.#leaseMs)) ? holder : undefined;
  }

  async #release(accountId: string, holder: string): Promise<void> {
    await this.#store.pgcreds.releaseLease(accountId, holder);
  }

  /** One rotation of a service whose lease `holder` has: roll a pending intent forward, or start and finish a new one. */
  async #rotateHeld(account: Party, holder: string, by: { actor: Party | undefined; ctx: RequestContext | undefined }): Promise<void> {
    const record = await this.#store.pgcreds.find(account.id);
    if (record === undefined) fail('not_found', 'the service has no PostgreSQL credentials');

    let login: string;
    let password: string;
    const rollingForward = record.pendingPassword !== null && record.pendingLogin !== null;
    if (rollingForward) {
      // An earlier attempt may or may not have changed the server: send the same password again (idempotent).
      login = record.pendingLogin!;
      password = this.#sealer.open(record.pendingPassword!, pgPasswordContext(account.id)).toString('utf8');
    } else {
      login = record.mode === 'alternating' ? inactiveLogin(record) : record.username;
      password = generatePgPassword();
      // Its own commit: the intent is durable before the server is touched.
      const sealed = this.#sealer.seal(Buffer.from(password, 'utf8'), pgPasswordContext(account.id));
      await this.#store.pgcreds.beginRotation(account.id, login, sealed, this.#clock.now());
    }

    const details = { login, mode: record.mode, roll_forward: rollingForward, scheduled: by.actor === undefined };
    try {
      await this.#pgAdmin.setPassword(targetOf(record), login, password);
    } catch (error) {
      const now = this.#clock.now();
      const message = describeFailure(error);
      // Unscheduled services are not retried on a timer, except that a kept intent is finished at every check.
      const retryAt = record.rotateEvery === null ? null : now + retryDelayMs(record.rotationFailures, record.rotateEvery);
      // A roll-forward that did not run this time still does not tell what the earlier attempt did: keep the intent.
      const dropIntent = certainlyNotRun(error) && !rollingForward;
      await this.#store.transaction(async (tx) => {
        await this.#stillHeld(tx, account.id, holder);
        if (dropIntent) await tx.pgcreds.failRotation(account.id, message, now, retryAt);
        else await tx.pgcreds.recordRotationError(account.id, message, now, retryAt);
        await tx.audit.insert(
          auditEvent({
            at: now,
            type: 'pg_credentials_rotation_failed',
            outcome: 'failure',
            actor: by.actor,
            subject: account,
            ctx: by.ctx,
            details: { ...details, error: message, intent_kept: !dropIntent, retry_at: retryAt },
          }),
        );
      });
      throw error instanceof MciasError ? error : new MciasError('internal', 'the rotation failed', { cause: error });
    }

    const now = this.#clock.now();
    await this.#store.transaction(async (tx) => {
      await this.#stillHeld(tx, account.id, holder);
      await tx.pgcreds.completeRotation(account.id, now, record.rotateEvery === null ? null : now + record.rotateEvery);
      await tx.audit.insert(auditEvent({ at: now, type: 'pg_credentials_rotated', actor: by.actor, subject: account, ctx: by.ctx, details }));
    });
  }

  /**
   * Renews the lease inside the transaction that finishes a rotation: if it expired and another instance took it
   * (and may be on a rotation of its own, or have kept an intent and let go), this one must not complete or drop
   * that one's intent. A lease taken over and released since is not re-taken: the intent may no longer be ours.
   */
  async #stillHeld(tx: Store, accountId: string, holder: string): Promise<void> {
    if (!(await tx.pgcreds.renewLease(accountId, holder, this.#clock.now() + this.#leaseMs))) {
      fail('conflict', 'the rotation outlived its lease; another instance finishes it', 'rotation_in_progress');
    }
  }

  /** Sets the stored password on the server again (after a lost provisioning race), under the lease. */
  async #restoreStored(accountId: string): Promise<void> {
    const holder = await this.#claim(accountId);
    if (holder === undefined) return; // a rotation is on it, and will set a password of its own
    try {
      const record = await this.#store.pgcreds.find(accountId);
      if (record === undefined || record.pendingPassword !== null) return; // recovery rolls the intent forward
      const password = this.#sealer.open(record.password, pgPasswordContext(accountId)).toString('utf8');
      await this.#pgAdmin.setPassword(targetOf(record), record.activeLogin, password);
    } finally {
      await this.#release(accountId, holder);
    }
  }
}

/** Alternating mode: the login not in use now, which gets the new password and then becomes the active one. */
function inactiveLogin(record: PgCredentialsRecord): string {
  const [a, b] = alternatingLogins(record.username);
  return record.activeLogin === a ? b : a;
}
