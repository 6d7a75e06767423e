/**
 * The MCIAS client SDK: a typed client for the HTTP API (docs/integration.md), used by mciasctl, the tests and apps.
 *
 *   const client = new MciasClient({ server: 'https://127.0.0.1:8443', caCert: readFileSync('data/tls/cert.pem') });
 *   const { token } = await client.login('alice', password);
 *   const me = await client.withToken(token).me();
 */
export { MciasClient, type MciasClientOptions, type UnverifiedToken, type VerifiedToken } from './client.ts';
export { DEFAULT_JWKS_REFETCH_FLOOR_MS } from './jwks.ts';
export { ServiceTokenKeeper, writeTokenFile, type KeeperClock, type ServiceTokenKeeperOptions } from './keeper.ts';
export { MciasAuth, tokenFrom, type MciasAuthOptions, type MciasPrincipal, type MciasProblem } from './middleware.ts';
export { permits, type PermissionSubject } from './permits.ts';
export { checkTokenRules, type TokenRuleFailure } from './token-rules.ts';
export {
  CONNECTION_ERROR_CODES,
  MciasApiError,
  MciasClientError,
  MciasConnectionError,
  isMciasApiError,
  type ConnectionErrorCode,
} from './errors.ts';
export { pgClientConfig } from './pg.ts';
export { certificatePins, checkCaCertificate, normalizeServerUrl } from './transport.ts';
export {
  ACCOUNT_KINDS,
  ACCOUNT_STATUSES,
  PG_SSLMODES,
  TOKEN_KINDS,
  type Account,
  type AccountKind,
  type CreatedRegistration,
  type AccountStatus,
  type ActiveToken,
  type AuditEvent,
  type AuditFilter,
  type AuditPage,
  type AuditParty,
  type HealthStatus,
  type InactiveToken,
  type IssuedToken,
  type Jwk,
  type Jwks,
  type KeyRotation,
  type LoginResult,
  type NewAccount,
  type NewPermission,
  type NewRegistration,
  type NewPgCredentials,
  type PgProvisionRequest,
  type PasswordResetOptions,
  type PgClientConfig,
  type PgCredentials,
  type PgCredentialsWithPassword,
  type PgRotationMode,
  type PgSslMode,
  type PgTlsOptions,
  type Permission,
  type PermissionDefinition,
  type Registration,
  type Role,
  type RoleDetails,
  type RolePermission,
  type TokenInfo,
  type TokenKind,
  type TokenValidation,
  type TotpConfirmation,
  type TotpEnrollment,
} from './types.ts';
