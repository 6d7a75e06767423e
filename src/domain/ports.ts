import type { AuditEvent, AuditQuery, AuditRecord, ChainVerification } from './audit.ts';
import type { ErrorCode } from './errors.ts';
import type {
  AccountRecord,
  AccountStatus,
  Permission,
  PermissionGrant,
  PgCredentialsRecord,
  RegistrationRecord,
  PgSslMode,
  Role,
  SigningKeyRecord,
  TokenInfo,
  TokenRecord,
} from './model.ts';
import type { DigestPurpose, SealContext } from './sealing.ts';

/**
 * What the domain needs from storage. The Kysely implementation lives in src/store; the domain never imports it.
 * `transaction` runs its callback with a Store whose every call is part of one database transaction.
 */
export interface Store {
  transaction<T>(work: (tx: Store) => Promise<T>): Promise<T>;
  /**
   * Holds the named lock until the transaction ends, across every instance on the database: transactions that must
   * each see what the one before wrote (two bootstraps, two rotations) take the same lock and queue on it. Only
   * inside `transaction`.
   */
  lock(name: LockName): Promise<void>;
  readonly accounts: AccountStore;
  readonly credentials: CredentialStore;
  readonly roles: RoleStore;
  readonly tokens: TokenStore;
  readonly keys: KeyStore;
  readonly audit: AuditStore;
  readonly pgcreds: PgCredentialStore;
  readonly failures: FailureCounterStore;
  readonly registrations: RegistrationStore;
  readonly permissions: PermissionStore;
  readonly sealed: SealedValueStore;
}

export interface AccountStore {
  findById(id: string): Promise<AccountRecord | undefined>;
  findByUsername(username: string): Promise<AccountRecord | undefined>;
  list(): Promise<AccountRecord[]>;
  count(): Promise<number>;
  insert(account: AccountRecord): Promise<void>;
  updateStatus(id: string, status: AccountStatus, now: number): Promise<void>;
  updatePasswordHash(id: string, hash: string, now: number): Promise<void>;
  /** Marks the password temporary (the account must change it before anything else), or clears the mark. */
  setPasswordChangeRequired(id: string, required: boolean, now: number): Promise<void>;
  delete(id: string): Promise<void>;
  /** Holds the account's row lock until the transaction ends (serialises token issuance for one account). */
  lock(id: string): Promise<void>;
}

/** The named locks; each is a row of its own, so unrelated changes do not queue on each other. */
export type LockName = 'bootstrap' | 'signing_keys' | 'master_key' | 'audit';

/** An account's TOTP state: the sealed secret (pending until confirmed) and the last accepted time step. */
export interface TotpState {
  readonly secret: Uint8Array | null;
  readonly confirmedAt: number | null;
  readonly lastStep: number | null;
}

/**
 * An account's second factor: its TOTP secret and state, and the recovery codes that stand in for a lost device.
 * The codes exist only while TOTP is confirmed: created when it is, deleted when it is removed.
 */
export interface CredentialStore {
  findTotp(id: string): Promise<TotpState | undefined>;
  /** Stores a new, unconfirmed secret (replacing a pending one); TOTP is not active until confirmed. */
  setPendingTotp(id: string, sealedSecret: Uint8Array, now: number): Promise<void>;
  /** Activates a pending secret at the step its first code used; false if there was nothing pending. */
  confirmTotp(id: string, step: number, now: number): Promise<boolean>;
  /**
   * Records `step` as the last accepted one, only if it is later than the last: the database decides, so a code
   * is accepted once across every instance (RFC 6238 §5.2). False means replayed (or no active TOTP).
   */
  acceptTotpStep(id: string, step: number): Promise<boolean>;
  clearTotp(id: string, now: number): Promise<void>;
  /** Replaces the account's recovery codes with these digests. */
  replaceRecoveryCodes(accountId: string, digests: readonly string[], now: number): Promise<void>;
  /** Marks an unused code used; false if it is unknown or already used (the database decides, once). */
  useRecoveryCode(accountId: string, digest: string, now: number): Promise<boolean>;
  deleteRecoveryCodes(accountId: string): Promise<void>;
}

export interface RoleStore {
  list(): Promise<Role[]>;
  exists(name: string): Promise<boolean>;
  insert(name: string, now: number): Promise<void>;
  delete(name: string): Promise<void>;
  /** Role names per account id, for every id given. */
  rolesOf(accountIds: readonly string[]): Promise<Map<string, string[]>>;
  grant(accountId: string, role: string, now: number): Promise<void>;
  revoke(accountId: string, role: string): Promise<boolean>;
  /** The usernames of the accounts holding the role, sorted. */
  holders(role: string): Promise<string[]>;
}

/**
 * Registration codes (SECURITY.md §49), found by their keyed digest; the code itself is never stored. `consume` is
 * the one place a use is spent: a single conditional update, so the database decides which of concurrent
 * redemptions gets the last use.
 */
export interface RegistrationStore {
  insert(registration: RegistrationRecord): Promise<void>;
  list(): Promise<RegistrationRecord[]>;
  /** The code's registration if it has a use left and has not expired at `now`; nothing is spent. */
  findUsable(codeHash: string, now: number): Promise<RegistrationRecord | undefined>;
  /** Spends one use if one is left and the code has not expired at `now`; undefined if there was none to spend. */
  consume(codeHash: string, now: number): Promise<RegistrationRecord | undefined>;
  delete(id: string): Promise<boolean>;
}

/** Permissions (SECURITY.md §50): named (resource, action) pairs, attached to roles. */
export interface PermissionStore {
  list(): Promise<Permission[]>;
  find(id: string): Promise<Permission | undefined>;
  insert(permission: Permission): Promise<void>;
  /** Deletes it and every role's grant of it (the foreign key cascades). */
  delete(id: string): Promise<boolean>;
  /** Attaches it to a role; false if the role held it already. */
  grant(role: string, permissionId: string): Promise<boolean>;
  /** Detaches it from a role; false if the role did not hold it. */
  revoke(role: string, permissionId: string): Promise<boolean>;
}

/** A token row with its account, the account's roles and their permissions, read together in one query. */
export interface TokenWithAccount {
  readonly token: TokenRecord;
  readonly account: AccountRecord;
  readonly roles: string[];
  readonly permissions: PermissionGrant[];
}

export interface TokenStore {
  insert(token: TokenRecord): Promise<void>;
  /**
   * The token, its account and grants; undefined also when the key that signed it no longer exists. The token
   * check's read: it may answer from a short-lived cache (SECURITY.md §51), which every write this instance commits
   * empties before the write's caller goes on; another instance's writes show within `[tokens] check_cache`.
   */
  findWithAccount(jti: string): Promise<TokenWithAccount | undefined>;
  find(jti: string): Promise<TokenInfo | undefined>;
  /** The account's unexpired, unrevoked tokens, oldest first. */
  listLive(accountId: string, now: number): Promise<TokenInfo[]>;
  /** Whether the key signed at least one unexpired, unrevoked token (an indexed lookup). */
  keyInUse(kid: string, now: number): Promise<boolean>;
  /** Revokes one token if it is not revoked yet; returns whether it did. */
  revoke(jti: string, now: number, reason: string): Promise<boolean>;
  /** Revokes the account's unrevoked tokens, except one; returns how many. */
  revokeAllOf(accountId: string, now: number, reason: string, exceptJti?: string): Promise<number>;
}

export interface KeyStore {
  list(): Promise<SigningKeyRecord[]>;
  insert(key: SigningKeyRecord): Promise<void>;
  /** Marks every unretired key retired; returns their ids. */
  retireAll(now: number): Promise<string[]>;
  delete(kid: string): Promise<void>;
}

/**
 * The audit trail, a hash chain (SECURITY.md §31). `insert` is the one way in: inside a transaction the event is
 * appended when the transaction commits (the `audit` lock taken last, so held briefly and never before another);
 * outside one, in a transaction of its own. Rows are never updated; `prune` deletes the oldest behind an anchor.
 */
export interface AuditStore {
  insert(event: AuditEvent): Promise<void>;
  /** Rows in chain order after `query.afterSeq`, filtered, at most `query.limit`. */
  list(query: AuditQuery): Promise<AuditRecord[]>;
  /** Walks the chain from the anchor (or genesis) to its head, a page at a time, and reports the first bad row. */
  verify(pageSize?: number): Promise<ChainVerification>;
  /**
   * Moves the anchor to the last row before the first one that occurred at or after `before` (only forward), under
   * the `audit` lock; returns it, or undefined when nothing is old enough. Only inside `transaction`.
   */
  advanceAnchor(before: number, now: number): Promise<{ readonly seq: number; readonly hash: string } | undefined>;
  /** Deletes up to `batch` rows behind the anchor; returns how many (0: none left). */
  deleteBehindAnchor(batch: number): Promise<number>;
  /** Whether an event of this type about this account exists. */
  exists(subjectId: string, type: AuditEvent['type']): Promise<boolean>;
}

/** A failed-login counter (SECURITY.md §9): failures since the last success (or since it was forgotten). */
export interface FailureCounter {
  readonly failures: number;
  readonly lastFailureAt: number;
}

/**
 * Failed-login counters shared by every instance (SECURITY.md §9), by key (`user:<username>`, `address:<key>`).
 * The database does the counting, so two instances taking failures at once both count.
 */
export interface FailureCounterStore {
  /** The counters of these keys, in one query; a key without failures is absent. */
  read(keys: readonly string[]): Promise<Map<string, FailureCounter>>;
  /**
   * Counts one failure at `now` for each key and returns the counters after it. A counter whose last failure is
   * before `forgetBefore` starts again from one.
   */
  recordFailure(keys: readonly string[], now: number, forgetBefore: number): Promise<Map<string, FailureCounter>>;
  /** Drops a counter (a success, an administrator's unlock); returns the failures it held (0 if none). */
  reset(key: string): Promise<number>;
  /** Drops counters whose last failure is before `before`; returns how many. */
  prune(before: number): Promise<number>;
}

/** One sealed value where it is stored: the column (`table.column`), its row, and the context it is sealed with. */
export interface SealedValue {
  readonly column: string;
  readonly rowId: string;
  readonly context: SealContext;
  readonly sealed: Uint8Array;
}

/**
 * Every value sealed under the master key, whatever record it belongs to, for what concerns them all: checking that
 * a master key is the database's, and re-sealing them under a new one (SECURITY.md §24). The columns are declared
 * in one list in the store (src/store/sealed-columns.ts), which a test holds against the migrated schema.
 */
export interface SealedValueStore {
  /** Every declared sealed column in order, each with its non-null values. */
  list(): Promise<{ readonly column: string; readonly values: readonly SealedValue[] }[]>;
  /** Replaces one sealed value in place; throws unless exactly that row changed. */
  replace(value: SealedValue, sealed: Uint8Array): Promise<void>;
  /** Holds off every write to a table with a sealed column until the transaction ends (takes the master_key lock too). */
  lockAll(): Promise<void>;
  /** The sealed digest keys, by purpose. */
  digestKeys(): Promise<Map<DigestPurpose, Uint8Array>>;
  insertDigestKey(purpose: DigestPurpose, sealed: Uint8Array, now: number): Promise<void>;
  /** Whether any digest made for this purpose is stored (one that a new digest key would no longer verify). */
  hasDigests(purpose: DigestPurpose): Promise<boolean>;
}

/** The settings a PUT replaces; everything else in the record is rotation state. */
export type PgCredentialsSettings = Pick<
  PgCredentialsRecord,
  'accountId' | 'host' | 'port' | 'database' | 'username' | 'activeLogin' | 'password' | 'sslmode' | 'caCert' | 'mode' | 'admin' | 'rotateEvery' | 'nextRotationAt'
>;

/**
 * Service accounts' PostgreSQL credentials and their rotation state. The rotation steps are separate writes, each
 * its own commit, so that a crash between them leaves a record the next attempt can finish (SECURITY.md §43).
 */
export interface PgCredentialStore {
  find(accountId: string): Promise<PgCredentialsRecord | undefined>;
  /** Stores new settings and password, replacing any earlier ones and clearing the rotation intent, error and count. */
  put(settings: PgCredentialsSettings, now: number): Promise<void>;
  delete(accountId: string): Promise<boolean>;
  /** Writes the rotation intent (step 1, before the server is changed). */
  beginRotation(accountId: string, login: string, sealedPassword: Uint8Array, now: number): Promise<void>;
  /** The server has the intent's password: it becomes the stored one, and the next rotation is scheduled. */
  completeRotation(accountId: string, now: number, nextRotationAt: number | null): Promise<void>;
  /** The rotation failed and the server certainly kept the old password: the intent goes, the error stays. */
  failRotation(accountId: string, error: string, now: number, retryAt: number | null): Promise<void>;
  /**
   * The attempt failed but the server may have the intent's password (the outcome is unknown, or an earlier attempt's
   * is): the intent stays for the next attempt to roll forward; the error is recorded and counted.
   */
  recordRotationError(accountId: string, error: string, now: number, retryAt: number | null): Promise<void>;
  /** Accounts with an unfinished intent, or whose scheduled rotation is due at `now`. */
  listDue(now: number): Promise<string[]>;
  /**
   * Takes the account's rotation lease for `holder` until `until`, if no other holder has an unexpired one; the
   * database decides, so one instance at a time rotates a service.
   */
  claimLease(accountId: string, holder: string, now: number, until: number): Promise<boolean>;
  releaseLease(accountId: string, holder: string): Promise<void>;
  /**
   * Extends the lease until `until` only if `holder` still has it, expired or not: false once another holder has
   * taken it, even if that one has released it since.
   */
  renewLease(accountId: string, holder: string, until: number): Promise<boolean>;
}

/** Where a service's database lives, and which `[pg_admin.NAME]` connection may change its roles. */
export interface PgTarget {
  readonly host: string;
  readonly port: number;
  readonly database: string;
  /** The admin entry named in the PUT body; null: the entry whose host and port match. */
  readonly admin: string | null;
}

/** How a service connects: what `canLogin` uses to test a password. */
export interface PgLogin {
  readonly login: string;
  readonly password: string;
  readonly sslmode: PgSslMode;
  readonly caCert: string | null;
}

/**
 * Changes roles on a service's PostgreSQL server through an admin connection from the configuration
 * (`[pg_admin.NAME]`). Every failure on the PostgreSQL side (server down, admin refused, role missing, TLS) is an
 * MciasError `upstream_failed` whose message names what failed and never a password.
 */
export interface PgAdmin {
  /**
   * Sets an existing login role's password, sent as a SCRAM-SHA-256 verifier computed here, never in clear. A role
   * that does not exist is an error; it is never created.
   */
  setPassword(target: PgTarget, login: string, password: string): Promise<void>;
  /**
   * Creates what is missing, for a new service in one command: in alternating mode the group role `group` (NOLOGIN,
   * owner of the objects) and each login role in `logins` (LOGIN, member of `group`); in single mode (`group` null)
   * the one login role. Passwords are set as verifiers. With `createDatabase`, also the target database, owned by
   * the group role (single mode: by the login). Returns the names of what it created, in order.
   */
  provision(
    target: PgTarget,
    plan: {
      readonly group: string | null;
      readonly logins: readonly { readonly login: string; readonly password: string }[];
      readonly createDatabase: boolean;
    },
  ): Promise<{ readonly created: readonly string[] }>;
  /** Whether this login and password connect to the target database now (false when refused; throws when unreachable). */
  canLogin(target: PgTarget, login: PgLogin): Promise<boolean>;
}

/**
 * What the domain reports to operators' metrics (SECURITY.md §48), one way: services call it and it never calls back,
 * so the domain knows nothing of Prometheus. Every argument is one word from a fixed set, never a name, an address or
 * a token; the implementation (src/http/metrics.ts) also turns any word it does not know into `other`.
 */
export interface Observer {
  /** A login attempt ended: `success`, or the error code it was refused with (`invalid_credentials`, `rate_limited`...). */
  loginAttempt(outcome: 'success' | ErrorCode): void;
  /** A validation for an app ended: `active`, or why the token is inactive (a TokenFailure, or `password_change_required`). */
  tokenValidation(outcome: string): void;
  /** An account or an address was locked out after repeated failures. */
  lockout(): void;
}

/** Reports nothing: for commands and tests that serve no metrics. */
export const NO_OBSERVER: Observer = { loginAttempt() {}, tokenValidation() {}, lockout() {} };
