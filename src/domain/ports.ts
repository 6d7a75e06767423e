import type { AuditEvent } from './audit.ts';
import type { AccountRecord, AccountStatus, Role, SigningKeyRecord, TokenRecord } from './model.ts';

/**
 * What the domain needs from storage. The Kysely implementation lives in src/store; the domain never imports it.
 * `transaction` runs its callback with a Store whose every call is part of one database transaction.
 */
export interface Store {
  transaction<T>(work: (tx: Store) => Promise<T>): Promise<T>;
  readonly accounts: AccountStore;
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
  delete(id: string): Promise<void>;
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
  /** Holds the role's row lock until the transaction ends: transactions that must not interleave queue on it. */
  lock(name: string): Promise<void>;
}

/** A token row with its account and the account's roles, read together in one query. */
export interface TokenWithAccount {
  readonly token: TokenRecord;
  readonly account: AccountRecord;
  readonly roles: string[];
}

export interface TokenStore {
  insert(token: TokenRecord): Promise<void>;
  findWithAccount(jti: string): Promise<TokenWithAccount | undefined>;
  /** Revokes one token if it is not revoked yet; returns whether it did. */
  revoke(jti: string, now: number, reason: string): Promise<boolean>;
  /** Revokes the account's unrevoked tokens, except one; returns how many. */
  revokeAllOf(accountId: string, now: number, reason: string, exceptJti?: string): Promise<number>;
}

export interface KeyStore {
  list(): Promise<SigningKeyRecord[]>;
  insert(key: SigningKeyRecord): Promise<void>;
}

export interface AuditStore {
  insert(event: AuditEvent): Promise<void>;
}
