import type { Generated } from 'kysely';
import type { AccountKind, AccountStatus, TokenKind } from '../domain/model.ts';

/**
 * The database as Kysely sees it, identical on SQLite and PostgreSQL. Times are epoch milliseconds (BIGINT on
 * PostgreSQL, INTEGER on SQLite); sealed secrets are bytes (BYTEA / BLOB); lists are JSON text.
 */
export interface DB {
  accounts: AccountsTable;
  roles: RolesTable;
  account_roles: AccountRolesTable;
  permissions: PermissionsTable;
  role_permissions: RolePermissionsTable;
  tokens: TokensTable;
  signing_keys: SigningKeysTable;
  pg_credentials: PgCredentialsTable;
  registrations: RegistrationsTable;
  audit_events: AuditEventsTable;
  audit_anchor: AuditAnchorTable;
  recovery_codes: RecoveryCodesTable;
  locks: LocksTable;
  login_failures: LoginFailuresTable;
  digest_keys: DigestKeysTable;
}

/** A failed-login counter (SECURITY.md §9): failures since the last success, and when the last one happened. */
interface LoginFailuresTable {
  key: string;
  failures: number;
  last_failure_at: number;
}

/** One key per purpose of keyed digests (DigestKeys), sealed under the master key: it outlives a master-key rotation. */
interface DigestKeysTable {
  purpose: string;
  sealed_key: Uint8Array;
  created_at: number;
}

/** One row per named lock (Store.lock): a transaction holds the row to queue the others that take it. */
interface LocksTable {
  name: string;
}

interface RecoveryCodesTable {
  account_id: string;
  /** Keyed digest (DigestKeys.digest) of a single-use recovery code; the code itself is shown once, never stored. */
  code_hash: string;
  created_at: number;
  used_at: number | null;
}

export interface AccountsTable {
  id: string;
  username: string;
  kind: AccountKind;
  status: AccountStatus;
  password_hash: string | null;
  /** Sealed TOTP secret; present from enrollment on, active once totp_confirmed_at is set. */
  totp_secret: Uint8Array | null;
  totp_confirmed_at: number | null;
  /** The last accepted TOTP step, so a code is accepted once (RFC 6238 §5.2). */
  totp_last_step: number | null;
  /** 1 while the password is temporary (set by an administrator or by init): the person must change it first. */
  password_change_required: number;
  created_at: number;
  updated_at: number;
}

interface RolesTable {
  name: string;
  created_at: number;
}

interface AccountRolesTable {
  account_id: string;
  role_name: string;
  granted_at: number;
}

interface PermissionsTable {
  id: string;
  resource: string;
  action: string;
  description: string;
  created_at: number;
}

interface RolePermissionsTable {
  role_name: string;
  permission_id: string;
}

export interface TokensTable {
  jti: string;
  account_id: string;
  kind: TokenKind;
  kid: string;
  issued_at: number;
  expires_at: number;
  /** When the password login that started this chain of renewals happened (humans' absolute session cap). */
  session_started_at: number;
  issued_by: string | null;
  revoked_at: number | null;
  revoked_reason: string | null;
}

interface SigningKeysTable {
  kid: string;
  algorithm: string;
  public_jwk: string;
  private_key: Uint8Array;
  created_at: number;
  retired_at: number | null;
}

interface PgCredentialsTable {
  account_id: string;
  host: string;
  port: number;
  database: string;
  username: string;
  active_login: string;
  password: Uint8Array;
  sslmode: string;
  ca_cert: string | null;
  mode: string;
  admin: string | null;
  rotate_every: number | null;
  next_rotation_at: number | null;
  last_rotated_at: number | null;
  last_rotation_error: string | null;
  rotation_failures: Generated<number>;
  pending_login: string | null;
  pending_password: Uint8Array | null;
  pending_since: number | null;
  lease_holder: string | null;
  lease_until: number | null;
  created_at: number;
  updated_at: number;
}

export interface RegistrationsTable {
  id: string;
  code_hash: string;
  roles: string;
  uses_left: number;
  expires_at: number;
  created_by: string | null;
  created_at: number;
}

/** The chain's starting point after a prune (SECURITY.md §31): at most one row, id 1. */
interface AuditAnchorTable {
  id: number;
  /** The last pruned row's seq and hash: the next row's prev_hash. */
  seq: number;
  hash: string;
  pruned_at: number;
}

/** One audit event on the hash chain (src/store/audit-chain.ts); appended once, never updated. */
export interface AuditEventsTable {
  /** Assigned by the appender under the `audit` lock: chain order is seq order is commit order. */
  seq: number;
  occurred_at: number;
  type: string;
  outcome: 'success' | 'failure';
  actor_id: string | null;
  actor_username: string | null;
  subject_id: string | null;
  subject_username: string | null;
  ip: string | null;
  user_agent: string | null;
  request_id: string | null;
  details: string;
  chain_version: Generated<number>;
  /** Null only on a row the chain does not cover (which verification reports). */
  prev_hash: string | null;
  hash: string | null;
}
