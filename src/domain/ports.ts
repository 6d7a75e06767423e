import type { AuditEvent } from './audit.ts';
import type { AccountRecord, AccountStatus, PermissionGrant, Role, SigningKeyRecord, TokenInfo, TokenRecord } from './model.ts';

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
export type LockName = 'bootstrap' | 'signing_keys';

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
  /** The token, its account and grants; undefined also when the key that signed it no longer exists. */
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

export interface AuditStore {
  insert(event: AuditEvent): Promise<void>;
  /** Whether an event of this type about this account exists. */
  exists(subjectId: string, type: AuditEvent['type']): Promise<boolean>;
}
