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
