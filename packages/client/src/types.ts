/** The API's JSON shapes (docs: /openapi.json). Timestamps are RFC 3339 strings in UTC. */
export const ACCOUNT_KINDS = ['human', 'system'] as const;
export type AccountKind = (typeof ACCOUNT_KINDS)[number];

export const ACCOUNT_STATUSES = ['active', 'disabled'] as const;
export type AccountStatus = (typeof ACCOUNT_STATUSES)[number];

export interface Account {
  readonly id: string;
  readonly username: string;
  readonly kind: AccountKind;
  readonly status: AccountStatus;
  readonly roles: readonly string[];
  readonly totp_enabled: boolean;
  readonly created_at: string;
}

export interface RolePermission {
  readonly id: string;
  readonly resource: string;
  readonly action: string;
}

export interface Role {
  readonly name: string;
  readonly permissions: readonly RolePermission[];
}

export interface LoginResult {
  readonly token: string;
  readonly token_type: 'Bearer';
  readonly expires_at: string;
  readonly account: Account;
  /**
   * Present (true) only on the bootstrap administrator's first login when the server requires TOTP for
   * administrators: enroll now (beginTotp, confirmTotp), or the next login is refused.
   */
  readonly totp_enrollment_required?: boolean;
}

/** A started TOTP enrollment: the base32 secret (for typing in by hand) and the URI to show as a QR code. */
export interface TotpEnrollment {
  readonly secret: string;
  readonly otpauth_uri: string;
}

/** The answer to a confirmed enrollment: single-use recovery codes (`ABCD-EFGH-IJKL-MNOP`), shown only this once. */
export interface TotpConfirmation {
  readonly recovery_codes: readonly string[];
}

export interface NewAccount {
  readonly username: string;
  readonly kind: AccountKind;
  /** Required for a human account, refused for a system account. */
  readonly password?: string;
}

export interface HealthStatus {
  readonly status: string;
}

/** An Ed25519 public key (RFC 8037) as served in the JWKS. */
export interface Jwk {
  readonly kty: string;
  readonly crv: string;
  readonly x: string;
  readonly kid: string;
  readonly alg: string;
  readonly use: string;
}

export interface Jwks {
  readonly keys: readonly Jwk[];
}

/** A freshly issued token (renewal, service token). The value is shown only in this answer. */
export interface IssuedToken {
  readonly token: string;
  readonly token_type: 'Bearer';
  readonly expires_at: string;
}

export const TOKEN_KINDS = ['session', 'service'] as const;
/** `session`: from a login (or its renewal); `service`: a system account's token. */
export type TokenKind = (typeof TOKEN_KINDS)[number];

/** An unexpired, unrevoked token as listed by the server; the token value itself is never listed. */
export interface TokenInfo {
  readonly jti: string;
  /** The username of the token's account. */
  readonly account: string;
  readonly kind: TokenKind;
  readonly issued_at: string;
  readonly expires_at: string;
  /** The username of whoever issued it, or null. */
  readonly issued_by: string | null;
}

export interface Permission {
  readonly resource: string;
  readonly action: string;
}

/** The answer of POST /v1/token/validate when the token is good: the account's current roles and permissions. */
export interface ActiveToken {
  readonly active: true;
  /** The account id. */
  readonly sub: string;
  readonly username: string;
  readonly kind: AccountKind;
  readonly roles: readonly string[];
  readonly permissions: readonly Permission[];
  /** Seconds since the epoch. */
  readonly exp: number;
  /** Seconds since the epoch. */
  readonly iat: number;
  readonly jti: string;
}

/** Expired, revoked, malformed, forged, or its account is disabled or gone: the server does not say which. */
export interface InactiveToken {
  readonly active: false;
}

/** RFC 7662-style: branch on `active`. */
export type TokenValidation = ActiveToken | InactiveToken;

export interface KeyRotation {
  /** The id of the new signing key, as it appears in the JWKS. */
  readonly kid: string;
}
