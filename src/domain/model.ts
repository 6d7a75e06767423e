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
