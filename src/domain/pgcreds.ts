import { X509Certificate, randomUUID } from 'node:crypto';
import { isIP } from 'node:net';
import { requestEvent, type AuditEvent } from './audit.ts';
import { mayReadServiceCredentials, mayReadServiceCredentialsName, type CredentialsRead } from './authorization.ts';
import type { AccountService } from './accounts.ts';
import type { Clock } from './clock.ts';
import { MciasError, fail } from './errors.ts';
import type { Account, PgCredentialsRecord, PgRotationMode, PgSslMode, Principal, RequestContext } from './model.ts';
import { normalizeName } from './names.ts';
import type { Store } from './ports.ts';
import type { SealContext, Sealer } from './sealing.ts';

/** What an administrator stores for a service (PUT); left-out fields take the defaults below. */
export interface PgCredentialsInput {
  readonly host: string;
  /** Default 5432. */
  readonly port?: number | undefined;
  readonly database: string;
  /**
   * single: the login role; alternating: the group role (the stored login is `<username>_a` at first, and stays the
   * login in use when the same group is stored again).
   */
  readonly username: string;
  /** The current password of the login in use (the one `GET` shows). */
  readonly password: string;
  /** Default `verify-full` when `caCert` is given, else `require`. */
  readonly sslmode?: PgSslMode | undefined;
  readonly caCert?: string | null | undefined;
  /** Default `single`. */
  readonly mode?: PgRotationMode | undefined;
  /** A `[pg_admin.NAME]` entry; left out: the one whose host and port match, chosen at rotation time. */
  readonly admin?: string | null | undefined;
  /** Milliseconds between scheduled rotations; left out or null: no schedule. */
  readonly rotateEvery?: number | null | undefined;
}

/** A service's credentials as handed out: the record and its password, opened for this one answer. */
export interface PgCredentialsRead {
  readonly record: PgCredentialsRecord;
  readonly password: string;
}

const PG_DEFAULT_PORT = 5432;
/** PostgreSQL's NAMEDATALEN is 64: identifiers are at most 63 bytes. */
const PG_IDENTIFIER_BYTES = 63;
/** The login roles of alternating mode are the group role's name and `_a` or `_b`. */
const ALTERNATING_SUFFIX = '_a';
const PG_PASSWORD_MAX = 1024;
const HOST_MAX = 253;
/** DNS labels: letters, digits and hyphens, not starting or ending with a hyphen. */
const HOSTNAME = /^(?=.{1,253}\.?$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$/;
const PEM_CERTIFICATE = /-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g;
/** Scheduled rotation at most once an hour (each one changes a role on the server), at least once in ten years. */
const PG_ROTATE_EVERY_MIN_MS = 3_600_000;
const PG_ROTATE_EVERY_MAX_MS = 3650 * 86_400_000;
/** How long a PUT's lease would last if its transaction did not end first (it always does: commit or rollback). */
const LEASE_MS = 60_000;

/** The one context both the stored password and a rotation intent are sealed under (see PgCredentialsRecord). */
export function pgPasswordContext(accountId: string): SealContext {
  return { table: 'pg_credentials', column: 'password', id: accountId };
}

/** The login role whose password is stored right after a PUT. */
export function initialLogin(username: string, mode: PgRotationMode): string {
  return mode === 'alternating' ? `${username}${ALTERNATING_SUFFIX}` : username;
}

function identifier(value: string, field: string, maxBytes = PG_IDENTIFIER_BYTES): void {
  const bytes = Buffer.byteLength(value, 'utf8');
  if (bytes === 0 || bytes > maxBytes) fail('invalid_request', `${field} must be 1 to ${maxBytes} bytes`);
  if (value.includes('\0')) fail('invalid_request', `${field} must not contain a NUL character`);
}

function checkHost(host: string): void {
  if (host.length > HOST_MAX || (isIP(host) === 0 && !HOSTNAME.test(host))) {
    fail('invalid_request', 'host must be a host name or an IP address (no port, scheme, path or spaces)');
  }
}

/** Every PEM block parses as an X.509 certificate, and there is at least one; nothing else is in the text. */
function checkCaCert(pem: string): void {
  const blocks = pem.match(PEM_CERTIFICATE) ?? [];
  const rest = pem.replace(PEM_CERTIFICATE, '').trim();
  if (blocks.length === 0 || rest !== '') {
    fail('invalid_request', 'ca_cert must be PEM certificates ("-----BEGIN CERTIFICATE-----" blocks) and nothing else', 'ca_cert_invalid');
  }
  for (const block of blocks) {
    try {
      new X509Certificate(block);
    } catch {
      fail('invalid_request', 'ca_cert holds a certificate that cannot be read', 'ca_cert_invalid');
    }
  }
}

/**
 * Service accounts' PostgreSQL credentials (docs/pgcreds.md): administrators store them, the service, its delegates
 * and administrators read them (SECURITY.md §45). The password is sealed bound to the account (SECURITY.md §23) and
 * opened only for a read, whose answer is the one place it appears. Every read, refused read and write is an audit
 * event (SECURITY.md §30), written in the transaction of what it records; none holds the password.
 */
export class PgCredentialsService {
  readonly #store: Store;
  readonly #sealer: Sealer;
  readonly #accounts: AccountService;
  readonly #clock: Clock;
  readonly #adminNames: ReadonlySet<string>;

  constructor(deps: { store: Store; sealer: Sealer; accounts: AccountService; clock: Clock; adminNames: readonly string[] }) {
    this.#store = deps.store;
    this.#sealer = deps.sealer;
    this.#accounts = deps.accounts;
    this.#clock = deps.clock;
    this.#adminNames = new Set(deps.adminNames);
  }

  /**
   * The credentials with their password, for the service itself, an administrator or a delegate. The checks run in
   * this order, so each answer tells the caller only what they may know: a caller who is neither the service nor may
   * act for its name is refused (403) before the name is looked up; then the account (404), its kind (400), the
   * delegation rule (403 `delegation_exceeds_roles`), its status (409), and whether it has credentials (404).
   */
  async get(principal: Principal, serviceName: string, ctx: RequestContext): Promise<PgCredentialsRead> {
    const name = normalizeName(serviceName, 'username');
    const byName = mayReadServiceCredentialsName(principal.account, name);
    if (!byName.allowed) {
      // Audited with the account when it exists (the answer is the same 403 either way).
      const found = await this.#store.accounts.findByUsername(name);
      await this.#store.audit.insert(this.#readEvent(ctx, principal, found ?? undefined, name, byName));
      fail('forbidden', `reading the credentials of ${name} needs its own token, the admin role or the ${name} role`);
    }
    const service = await this.service(name);
    const access = mayReadServiceCredentials(principal.account, service);
    if (!access.allowed) {
      await this.#store.audit.insert(this.#readEvent(ctx, principal, service, name, access));
      fail('forbidden', `${name} holds roles you do not hold, so you may not read its credentials`, access.reason);
    }
    if (service.status !== 'active') {
      await this.#store.audit.insert(this.#readEvent(ctx, principal, service, name, access, 'account_disabled'));
      fail('conflict', 'the account is disabled');
    }
    const result = await this.#store.transaction(async (tx) => {
      const record = await tx.pgcreds.find(service.id);
      if (record === undefined) {
        await tx.audit.insert(this.#readEvent(ctx, principal, service, name, access, 'none_stored'));
        return { record, password: undefined, error: undefined };
      }
      let password: string | undefined;
      let error: unknown;
      try {
        password = this.#sealer.open(record.password, pgPasswordContext(service.id)).toString('utf8');
      } catch (cause) {
        error = cause;
      }
      await tx.audit.insert(this.#readEvent(ctx, principal, service, name, access, error === undefined ? undefined : 'unreadable'));
      return { record, password, error };
    });
    if (result.error !== undefined) throw result.error;
    if (result.record === undefined || result.password === undefined) fail('not_found', `${name} has no stored database credentials`);
    return { record: result.record, password: result.password };
  }

  /** Stores (or replaces) a service's credentials (admin); returns the stored record. */
  async put(principal: Principal, serviceName: string, input: PgCredentialsInput, ctx: RequestContext): Promise<PgCredentialsRecord> {
    const settings = this.settings(input);
    const service = await this.service(normalizeName(serviceName, 'username'));
    const sealed = this.#sealer.seal(Buffer.from(input.password, 'utf8'), pgPasswordContext(service.id));
    const now = this.#clock.now();
    const holder = `put:${randomUUID()}`;
    return this.#store.transaction(async (tx) => {
      const existing = await tx.pgcreds.find(service.id);
      if (existing !== undefined) {
        // A rotation holds the lease from before it writes its intent until after it completes; replacing the
        // settings meanwhile would discard a password the server may already have. Taking the lease here (released
        // in this same transaction) makes a rotation that starts now wait for, and then see, the new settings.
        const free = existing.pendingPassword === null && (await tx.pgcreds.claimLease(service.id, holder, now, now + LEASE_MS));
        if (!free) {
          fail('conflict', `a rotation of ${service.username}'s password is under way: store them once it has finished (or delete them first)`, 'rotation_in_progress');
        }
      }
      // Storing again in alternating mode with the same group keeps the login in use: after an odd number of
      // rotations that is `_b`, and the password given is the one `GET` handed out for it.
      const activeLogin =
        existing !== undefined && existing.mode === 'alternating' && settings.mode === 'alternating' && existing.username === settings.username
          ? existing.activeLogin
          : settings.activeLogin;
      await tx.pgcreds.put(
        {
          accountId: service.id,
          ...settings,
          activeLogin,
          password: sealed,
          nextRotationAt: settings.rotateEvery === null ? null : now + settings.rotateEvery,
        },
        now,
      );
      await tx.audit.insert(
        this.#event(ctx, principal, service, 'pg_credentials_set', 'success', {
          created: existing === undefined,
          host: settings.host,
          port: settings.port,
          database: settings.database,
          login: activeLogin,
          sslmode: settings.sslmode,
          mode: settings.mode,
          admin: settings.admin,
          rotate_every_ms: settings.rotateEvery,
        }),
      );
      if (existing !== undefined) await tx.pgcreds.releaseLease(service.id, holder);
      const stored = await tx.pgcreds.find(service.id);
      if (stored === undefined) throw new MciasError('internal', 'the stored PostgreSQL credentials vanished');
      return stored;
    });
  }

  /**
   * Removes a service's credentials (admin); 404 when it has none. The PostgreSQL roles are left as they are.
   * Refused while a rotation holds the lease: its ALTER may land after a PUT that follows, leaving a stored password
   * the server refuses. An intent left with no live lease (a rotation that gave up) may be deleted: that is the way out.
   */
  async delete(principal: Principal, serviceName: string, ctx: RequestContext): Promise<void> {
    const service = await this.service(normalizeName(serviceName, 'username'));
    const now = this.#clock.now();
    await this.#store.transaction(async (tx) => {
      if (!(await tx.pgcreds.claimLease(service.id, `delete:${randomUUID()}`, now, now + LEASE_MS))) {
        if ((await tx.pgcreds.find(service.id)) === undefined) fail('not_found', `${service.username} has no stored database credentials`);
        fail('conflict', `a rotation of ${service.username}'s password is under way: delete them once it has finished`, 'rotation_in_progress');
      }
      await tx.pgcreds.delete(service.id);
      await tx.audit.insert(this.#event(ctx, principal, service, 'pg_credentials_deleted', 'success', {}));
    });
  }

  /** A system account by name: 404 when there is none, 400 `not_a_service` for a person's account. (Also rotation's.) */
  async service(name: string): Promise<Account> {
    const account = await this.#accounts.get(name);
    if (account.kind !== 'system') fail('invalid_request', 'database credentials are for system accounts, not people', 'not_a_service');
    return account;
  }

  /**
   * The input checked and completed with its defaults (SECURITY.md §34: bad input changes nothing). Without a
   * password: provisioning's settings (src/domain/pgcreds-rotation.ts), whose passwords are generated.
   */
  settings(input: Omit<PgCredentialsInput, 'password'> & { readonly password?: string }) {
    checkHost(input.host);
    const mode = input.mode ?? 'single';
    identifier(input.database, 'database');
    identifier(input.username, 'username', mode === 'alternating' ? PG_IDENTIFIER_BYTES - ALTERNATING_SUFFIX.length : PG_IDENTIFIER_BYTES);
    if (input.password !== undefined) {
      if (input.password.length < 1 || input.password.length > PG_PASSWORD_MAX) fail('invalid_request', `password must be 1 to ${PG_PASSWORD_MAX} characters`);
      if (input.password.includes('\0')) fail('invalid_request', 'password must not contain a NUL character');
    }
    const caCert = input.caCert ?? null;
    if (caCert !== null) checkCaCert(caCert);
    const sslmode = input.sslmode ?? (caCert === null ? 'require' : 'verify-full');
    if (caCert !== null && sslmode !== 'verify-ca' && sslmode !== 'verify-full') {
      fail('invalid_request', `ca_cert is only used to verify the server: with sslmode ${sslmode} leave it out, or use verify-full`, 'ca_cert_unused');
    }
    const admin = input.admin ?? null;
    if (admin !== null && !this.#adminNames.has(admin)) {
      fail('invalid_request', `admin names no [pg_admin.${admin}] entry in the server's configuration`, 'unknown_pg_admin');
    }
    const rotateEvery = input.rotateEvery ?? null;
    if (rotateEvery !== null && (rotateEvery < PG_ROTATE_EVERY_MIN_MS || rotateEvery > PG_ROTATE_EVERY_MAX_MS)) {
      fail('invalid_request', 'rotate_every must be between 1h and 3650d', 'rotate_every_out_of_range');
    }
    return {
      host: input.host,
      port: input.port ?? PG_DEFAULT_PORT,
      database: input.database,
      username: input.username,
      activeLogin: initialLogin(input.username, mode),
      sslmode,
      caCert,
      mode,
      admin,
      rotateEvery,
    };
  }

  /** A read, refused or not: who, which service, in what capacity, and why it failed; never the password. */
  #readEvent(
    ctx: RequestContext,
    principal: Principal,
    service: { id: string; username: string } | undefined,
    name: string,
    access: CredentialsRead,
    failure?: string,
  ): AuditEvent {
    if (!access.allowed) {
      return this.#event(ctx, principal, service, 'pg_credentials_read', 'failure', {
        service: name,
        reason: access.reason,
        ...(access.missing === undefined ? {} : { missing_roles: access.missing.join(',') }),
      });
    }
    return this.#event(ctx, principal, service, 'pg_credentials_read', failure === undefined ? 'success' : 'failure', {
      service: name,
      as: access.as,
      ...(failure === undefined ? {} : { reason: failure }),
    });
  }

  #event(
    ctx: RequestContext,
    actor: Principal,
    subject: { id: string; username: string } | undefined,
    type: AuditEvent['type'],
    outcome: AuditEvent['outcome'],
    details: NonNullable<AuditEvent['details']>,
  ): AuditEvent {
    return requestEvent({ at: this.#clock.now(), ctx, actor, subject, type, outcome, details });
  }
}
