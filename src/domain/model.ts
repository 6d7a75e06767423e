/** The records the domain works with. Times are epoch milliseconds; the HTTP layer formats them. */
export const ACCOUNT_KINDS = ['human', 'system'] as const;
export type AccountKind = (typeof ACCOUNT_KINDS)[number];

export const ACCOUNT_STATUSES = ['active', 'disabled'] as const;
export type AccountStatus = (typeof ACCOUNT_STATUSES)[number];

export const TOKEN_KINDS = ['session', 'service'] as const;
export type TokenKind = (typeof TOKEN_KINDS)[number];

export interface AccountRecord {
  readonly id: string;
  readonly username: string;
  readonly kind: AccountKind;
  readonly status: AccountStatus;
  readonly passwordHash: string | null;
  readonly totpConfirmedAt: number | null;
  /** The password is temporary (SECURITY.md §39): until it is changed, the account's sessions may do nothing else. */
  readonly passwordChangeRequired: boolean;
  readonly createdAt: number;
  readonly updatedAt: number;
}

/** An account with its current roles: what the API shows. */
export interface Account extends AccountRecord {
  readonly roles: readonly string[];
}

export interface TokenRecord {
  readonly jti: string;
  readonly accountId: string;
  readonly kind: TokenKind;
  readonly kid: string;
  readonly issuedAt: number;
  readonly expiresAt: number;
  readonly sessionStartedAt: number;
  readonly issuedBy: string | null;
  readonly revokedAt: number | null;
}

export interface SigningKeyRecord {
  readonly kid: string;
  readonly algorithm: string;
  readonly publicJwk: string;
  readonly privateKey: Uint8Array;
  readonly createdAt: number;
  readonly retiredAt: number | null;
}

/** A token row with the usernames of its account and of whoever issued it: what token listings show. */
export interface TokenInfo extends TokenRecord {
  readonly username: string;
  readonly issuedByUsername: string | null;
}

export interface PermissionGrant {
  readonly resource: string;
  readonly action: string;
}

/** A permission as administered: the pair, what it is for, and the roles it is attached to. */
export interface Permission extends PermissionGrant {
  readonly id: string;
  readonly description: string;
  readonly createdAt: number;
  /** The roles holding it, sorted (empty when it is being created). */
  readonly roles: readonly string[];
}

/** A registration code's record (SECURITY.md §49): never the code, only its keyed digest. */
export interface RegistrationRecord {
  readonly id: string;
  readonly codeHash: string;
  /** The roles an account registered with the code gets. */
  readonly roles: readonly string[];
  readonly usesLeft: number;
  readonly expiresAt: number;
  /** The account id of the administrator who created it (null once that account is gone). */
  readonly createdBy: string | null;
  readonly createdAt: number;
}

export interface Role {
  readonly name: string;
  readonly permissions: readonly (PermissionGrant & { readonly id: string })[];
}

/** Who is calling, established from a bearer token whose row, account, roles and permissions were read just now. */
export interface Principal {
  readonly account: Account;
  readonly token: TokenRecord;
  readonly permissions: readonly PermissionGrant[];
}

/** Facts about the request that the audit trail keeps. */
export interface RequestContext {
  readonly ip: string | null;
  readonly userAgent: string | null;
  readonly requestId: string | null;
}

/** How a service's PostgreSQL password is rotated (docs/pgcreds.md). */
export const PG_ROTATION_MODES = ['single', 'alternating'] as const;
export type PgRotationMode = (typeof PG_ROTATION_MODES)[number];

/** The libpq sslmodes MCIAS stores and hands out; `prefer` and `allow` are left out, since they fall back to clear. */
export const PG_SSLMODES = ['disable', 'require', 'verify-ca', 'verify-full'] as const;
export type PgSslMode = (typeof PG_SSLMODES)[number];

/**
 * A service account's PostgreSQL credentials and their rotation state. `password` and `pendingPassword` are sealed
 * with the same context, `{ table: 'pg_credentials', column: 'password', id: accountId }`, so completing a rotation
 * moves the intent into place without opening it. Times are epoch milliseconds; `rotateEvery` is a duration in ms.
 */
export interface PgCredentialsRecord {
  readonly accountId: string;
  readonly host: string;
  readonly port: number;
  readonly database: string;
  /** single: the login role; alternating: the group role that owns the objects (logins are `<username>_a`, `_b`). */
  readonly username: string;
  /** The login role whose password is stored: `username` in single mode, `<username>_a` or `_b` in alternating. */
  readonly activeLogin: string;
  readonly password: Uint8Array;
  readonly sslmode: PgSslMode;
  /** PEM bundle the service should trust for the server's certificate (public; not sealed). */
  readonly caCert: string | null;
  readonly mode: PgRotationMode;
  /** The `[pg_admin.NAME]` entry chosen in the PUT body; null: the one whose host and port match. */
  readonly admin: string | null;
  readonly rotateEvery: number | null;
  readonly nextRotationAt: number | null;
  readonly lastRotatedAt: number | null;
  readonly lastRotationError: string | null;
  readonly rotationFailures: number;
  /** The rotation intent: the login and the sealed new password, written before the server is changed. */
  readonly pendingLogin: string | null;
  readonly pendingPassword: Uint8Array | null;
  readonly pendingSince: number | null;
  readonly createdAt: number;
  readonly updatedAt: number;
}
