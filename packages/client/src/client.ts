import { MciasClientError, MciasConnectionError } from './errors.ts';
import { JwksCache } from './jwks.ts';
import { pgClientConfig } from './pg.ts';
import { checkTokenRules, type TokenRuleFailure } from './token-rules.ts';
import { Transport, type Method } from './transport.ts';
import type {
  Account,
  AccountStatus,
  AuditFilter,
  AuditPage,
  CreatedRegistration,
  HealthStatus,
  IssuedToken,
  Jwks,
  KeyRotation,
  LoginResult,
  NewAccount,
  NewPermission,
  NewRegistration,
  NewPgCredentials,
  PgProvisionRequest,
  PasswordResetOptions,
  PgClientConfig,
  PgCredentials,
  PgCredentialsWithPassword,
  PermissionDefinition,
  Registration,
  Role,
  RoleDetails,
  TokenInfo,
  TokenValidation,
  TotpConfirmation,
  TotpEnrollment,
} from './types.ts';

export interface MciasClientOptions {
  /** The server's https:// URL, e.g. `https://mcias.example.net:8443`. Anything else is refused. */
  readonly server: string;
  /** The bearer token sent with every authenticated call. */
  readonly token?: string | undefined;
  /** PEM certificate(s) to trust instead of the bundled public roots (for a self-signed server certificate). */
  readonly caCert?: string | Buffer | undefined;
  /**
   * Pin the server's leaf certificate instead of (or, with `caCert`, on top of) verifying its chain: `sha256/BASE64`
   * (SHA-256 of its public key, SPKI) or its SHA-256 fingerprint in hex (see `certificatePins`). Nothing is sent to
   * a server that matches no pin. There is no option that turns verification off.
   */
  readonly pin?: string | readonly string[] | undefined;
  /** Deadline for each whole request; default 30 s. */
  readonly timeoutMs?: number | undefined;
  /** For `verify`: the server's `tokens.issuer` (required to verify offline). */
  readonly issuer?: string | undefined;
  /** For `verify`: the server's `tokens.audience`; default `mcias`, the server's default. */
  readonly audience?: string | undefined;
  /** For `verify`: the least time between JWKS refetches caused by an unknown `kid`; default 30 s. */
  readonly jwksRefetchFloorMs?: number | undefined;
  /** The clock `verify` checks expiry against, in ms since the epoch (tests); default `Date.now`. */
  readonly now?: (() => number) | undefined;
}

/** What `verify` found in a token that passed the server's rules (SECURITY.md §53): its claims, not the database's state. */
export interface VerifiedToken {
  readonly active: true;
  /** The account id. */
  readonly sub: string;
  readonly username: string;
  readonly kind: 'human' | 'system';
  /** The roles the account held when the token was issued (the server's current roles: `validate`). */
  readonly roles: readonly string[];
  readonly exp: number;
  readonly iat: number;
  readonly jti: string;
}

/** A token `verify` refused, and why (for the app's own logs; never tell the presenter). */
export interface UnverifiedToken {
  readonly active: false;
  readonly reason: TokenRuleFailure;
}

/** Lets withToken() share the connection pool and the JWKS copy without widening the public options. */
const SHARED_TRANSPORT = Symbol('shared transport');
const SHARED_JWKS = Symbol('shared JWKS');
interface InternalOptions extends MciasClientOptions {
  readonly [SHARED_TRANSPORT]?: Transport;
  readonly [SHARED_JWKS]?: { cache: JwksCache | undefined };
}

/**
 * A typed client for the MCIAS HTTP API. A client is immutable: login() returns the token and never changes the
 * client, so one client can log many people in; withToken() gives a client that acts as one of them.
 */
export class MciasClient {
  readonly #transport: Transport;
  readonly #token: string | undefined;
  readonly #options: MciasClientOptions;
  /** Filled by the first verify(); shared with every client withToken() derives. */
  readonly #jwks: { cache: JwksCache | undefined };

  constructor(options: MciasClientOptions) {
    this.#transport = (options as InternalOptions)[SHARED_TRANSPORT] ?? new Transport(options);
    this.#jwks = (options as InternalOptions)[SHARED_JWKS] ?? { cache: undefined };
    this.#token = options.token;
    this.#options = options;
  }

  /** The normalised server URL. */
  get server(): string {
    return this.#transport.server;
  }

  /** A client that sends `token`, sharing this one's connections. */
  withToken(token: string): MciasClient {
    const options: InternalOptions = { ...this.#options, token, [SHARED_TRANSPORT]: this.#transport, [SHARED_JWKS]: this.#jwks };
    return new MciasClient(options);
  }

  /** Closes idle connections (optional: they never keep the process alive). */
  close(): void {
    this.#transport.close();
  }

  // Public

  async health(): Promise<HealthStatus> {
    return this.#call('GET', '/healthz', { auth: false });
  }

  /** Readiness: resolves when the server's database answers, throws MciasApiError (503) otherwise. */
  async ready(): Promise<HealthStatus> {
    return this.#call('GET', '/readyz', { auth: false });
  }

  async jwks(): Promise<Jwks> {
    return this.#call('GET', '/.well-known/jwks.json', { auth: false });
  }

  async openapi(): Promise<Record<string, unknown>> {
    return this.#call('GET', '/openapi.json', { auth: false });
  }

  /**
   * Logs a person in; the result's token is not kept by this client (see withToken). Once the account has TOTP
   * enabled, `totpCode` (the current 6-digit code, or a recovery code) is needed: without it the password is checked
   * and the call throws MciasApiError with code `totp_required` (401), so the caller asks for the code and calls
   * again. A wrong or already used code is `invalid_credentials`, like a wrong password.
   */
  async login(username: string, password: string, totpCode?: string): Promise<LoginResult> {
    const body = totpCode === undefined ? { username, password } : { username, password, totp_code: totpCode };
    return this.#call('POST', '/v1/auth/login', { auth: false, body });
  }

  /**
   * Asks the server whether `token` is good right now (RFC 7662 style), with its account's current roles and
   * permissions. A bad token is not an error: the answer is `{ active: false }`. Sends no bearer token.
   */
  async validate(token: string): Promise<TokenValidation> {
    if (typeof token !== 'string') throw new MciasClientError('invalid_argument', 'the token to validate must be a string');
    return this.#call('POST', '/v1/token/validate', { auth: false, body: { token } });
  }

  /**
   * Checks `token` offline against the server's published keys (JWKS, cached; refetched when a token names an
   * unknown `kid`, at most once per `jwksRefetchFloorMs`), with exactly the server's rules (SECURITY.md §53):
   * canonical spelling, `alg: EdDSA`, `typ: JWT`, issuer, audience, `exp`/`nbf` (5 s tolerance), `iat` at most a
   * minute ahead, `exp`/`iat`/`jti`/`sub` present. It cannot see revocation, a disabled account or changed roles:
   * a revoked token passes until it expires. Use `validate` where that matters. Needs the `issuer` option.
   */
  async verify(token: string): Promise<VerifiedToken | UnverifiedToken> {
    const issuer = this.#options.issuer;
    if (issuer === undefined) throw new MciasClientError('invalid_argument', 'verify needs the issuer option (the server\'s tokens.issuer)');
    const now = this.#options.now ?? Date.now;
    const jwks = (this.#jwks.cache ??= new JwksCache({
      fetch: () => this.jwks(),
      now,
      ...(this.#options.jwksRefetchFloorMs === undefined ? {} : { refetchFloorMs: this.#options.jwksRefetchFloorMs }),
    }));
    const result = await checkTokenRules(token, (kid) => jwks.key(kid), { issuer, audience: this.#options.audience ?? 'mcias', now: now() });
    if (!result.ok) return { active: false, reason: result.reason };
    const { sub, username, kind, roles, exp, iat, jti } = result.claims;
    // The signature covers these, but a token the server signed always has them: anything else is not one of its tokens.
    if (typeof username !== 'string' || (kind !== 'human' && kind !== 'system') || !Array.isArray(roles) || !roles.every((r) => typeof r === 'string')) {
      return { active: false, reason: 'invalid_claims' };
    }
    return { active: true, sub, username, kind, roles: roles as string[], exp, iat, jti };
  }

  // Any valid token

  /**
   * Exchanges this client's token for a new one (new jti and expiry); the old one is revoked. Like login, the new
   * token is returned and not kept: use withToken() to go on with it.
   */
  async renew(): Promise<IssuedToken> {
    return this.#call('POST', '/v1/auth/renew');
  }

  /** Revokes this client's token. */
  async logout(): Promise<void> {
    await this.#call('POST', '/v1/auth/logout');
  }

  async me(): Promise<Account> {
    return this.#call('GET', '/v1/me');
  }

  /**
   * Changes the caller's own password; every other token of the account is revoked. After a login that answered
   * `password_change_required`, this is the call that ends the restriction (the new password must differ).
   */
  async changePassword(currentPassword: string, newPassword: string): Promise<void> {
    await this.#call('PUT', '/v1/me/password', { body: { current_password: currentPassword, new_password: newPassword } });
  }

  // TOTP (human token)

  /**
   * Starts (or restarts) TOTP enrollment: a fresh secret and its otpauth:// URI for an authenticator app. Nothing
   * changes at login until confirmTotp() with a correct code. Needs the caller's current password (a token alone
   * cannot turn TOTP on): a wrong one is 401 `invalid_credentials`. 409 `conflict` if TOTP is already enabled.
   */
  async beginTotp(password: string): Promise<TotpEnrollment> {
    return this.#call('POST', '/v1/me/totp', { body: { password } });
  }

  /** Activates the started enrollment with a current code; returns the ten single-use recovery codes, shown this once. */
  async confirmTotp(code: string): Promise<TotpConfirmation> {
    return this.#call('POST', '/v1/me/totp/confirm', { body: { code } });
  }

  /** Removes the caller's TOTP; needs the password and a current code (or a recovery code). */
  async disableTotp(password: string, code: string): Promise<void> {
    await this.#call('DELETE', '/v1/me/totp', { body: { password, code } });
  }

  /** The caller's own unexpired, unrevoked tokens (human token). */
  async listMyTokens(): Promise<TokenInfo[]> {
    const { tokens } = await this.#call<{ tokens: TokenInfo[] }>('GET', '/v1/me/tokens');
    return tokens;
  }

  /** Revokes one of the caller's own tokens by its jti (human token). */
  async revokeMyToken(jti: string): Promise<void> {
    await this.#call('DELETE', `/v1/me/tokens/${segment(jti)}`);
  }

  // Service tokens (admin, or a delegate: a person holding the role named after the service)

  /**
   * Issues a system account's token; its previous token, if any, is revoked. Admin, or a delegate who holds every
   * role the service holds (else MciasApiError 403 `forbidden` with reason `delegation_exceeds_roles`).
   */
  async issueServiceToken(service: string): Promise<IssuedToken> {
    return this.#call('POST', `/v1/accounts/${segment(service)}/token`);
  }

  /** Revokes a system account's live token (admin). */
  async revokeServiceToken(service: string): Promise<void> {
    await this.#call('DELETE', `/v1/accounts/${segment(service)}/token`);
  }

  // PostgreSQL credentials (docs/pgcreds.md)

  /**
   * A service's PostgreSQL credentials as a ready node-postgres configuration: `new pg.Client(await
   * client.pgcreds('wiki'))`. For the service's own token, an admin, or a delegate who holds every role the service
   * holds; anyone else gets MciasApiError 403 `forbidden`. Fetch again when the database refuses the password: it
   * has been rotated.
   */
  async pgcreds(service: string): Promise<PgClientConfig> {
    return pgClientConfig(await this.getPgCredentials(service));
  }

  /** The same credentials as the server answers them (settings, rotation state and password). */
  async getPgCredentials(service: string): Promise<PgCredentialsWithPassword> {
    return this.#call('GET', `/v1/accounts/${segment(service)}/pgcreds`);
  }

  /** Stores or replaces a service's PostgreSQL credentials (admin); answers them without the password. */
  async setPgCredentials(service: string, credentials: NewPgCredentials): Promise<PgCredentials> {
    return this.#call('PUT', `/v1/accounts/${segment(service)}/pgcreds`, { body: credentials });
  }

  /**
   * Sets a new random password on the service's PostgreSQL login now, and stores it (admin). Answers the credentials
   * without the password (the service fetches it); a failure on the PostgreSQL side is MciasApiError 502
   * `upstream_failed` with its `reason`, and leaves the stored password working.
   */
  async rotatePgCredentials(service: string): Promise<PgCredentials> {
    return this.#call('POST', `/v1/accounts/${segment(service)}/pgcreds/rotate`);
  }

  /** Creates the service's login role(s) (and optionally its database) with generated passwords, and stores them (admin). */
  async provisionPgCredentials(service: string, settings: PgProvisionRequest): Promise<PgCredentials> {
    return this.#call('POST', `/v1/accounts/${segment(service)}/pgcreds/provision`, { body: settings });
  }

  /** Forgets a service's PostgreSQL credentials (admin); the roles on the PostgreSQL server stay. */
  async deletePgCredentials(service: string): Promise<void> {
    await this.#call('DELETE', `/v1/accounts/${segment(service)}/pgcreds`);
  }

  // Administration (role admin)

  /** An account's unexpired, unrevoked tokens. */
  async listTokens(username: string): Promise<TokenInfo[]> {
    const { tokens } = await this.#call<{ tokens: TokenInfo[] }>('GET', `/v1/accounts/${segment(username)}/tokens`);
    return tokens;
  }

  /** Revokes any token by its jti. */
  async revokeToken(jti: string): Promise<void> {
    await this.#call('DELETE', `/v1/tokens/${segment(jti)}`);
  }

  /** Starts signing with a new key; tokens signed with the old one keep verifying until they expire. */
  async rotateKeys(): Promise<KeyRotation> {
    return this.#call('POST', '/v1/keys/rotate');
  }

  async listAccounts(): Promise<Account[]> {
    const { accounts } = await this.#call<{ accounts: Account[] }>('GET', '/v1/accounts');
    return accounts;
  }

  /** Creates an account; a human account's password is temporary unless `temporary: false`. */
  async createAccount(account: NewAccount): Promise<Account> {
    const body = {
      username: account.username,
      kind: account.kind,
      ...(account.password === undefined ? {} : { password: account.password }),
      ...(account.temporary === undefined ? {} : { temporary: account.temporary }),
    };
    return this.#call('POST', '/v1/accounts', { body });
  }

  async getAccount(username: string): Promise<Account> {
    return this.#call('GET', `/v1/accounts/${segment(username)}`);
  }

  /** Enables or disables an account; disabling revokes all of its tokens. */
  async setAccountStatus(username: string, status: AccountStatus): Promise<Account> {
    return this.#call('PATCH', `/v1/accounts/${segment(username)}`, { body: { status } });
  }

  async deleteAccount(username: string): Promise<void> {
    await this.#call('DELETE', `/v1/accounts/${segment(username)}`);
  }

  /** Sets a human account's password (admin reset); revokes its tokens. Temporary unless `temporary: false`. */
  async resetPassword(username: string, password: string, options: PasswordResetOptions = {}): Promise<void> {
    const body = options.temporary === undefined ? { password } : { password, temporary: options.temporary };
    await this.#call('PUT', `/v1/accounts/${segment(username)}/password`, { body });
  }

  /** Removes a person's TOTP and recovery codes (admin reset of a lost authenticator): they log in with the password alone. */
  async resetTotp(username: string): Promise<void> {
    await this.#call('DELETE', `/v1/accounts/${segment(username)}/totp`);
  }

  /** Clears an account's failed-login count (admin): the person may log in at once. Returns the failures cleared. */
  async unlockAccount(username: string): Promise<{ username: string; failures_cleared: number }> {
    return this.#call('POST', `/v1/accounts/${segment(username)}/unlock`);
  }

  async grantRole(username: string, role: string): Promise<void> {
    await this.#call('PUT', `/v1/accounts/${segment(username)}/roles/${segment(role)}`);
  }

  async revokeRole(username: string, role: string): Promise<void> {
    await this.#call('DELETE', `/v1/accounts/${segment(username)}/roles/${segment(role)}`);
  }

  async listRoles(): Promise<Role[]> {
    const { roles } = await this.#call<{ roles: Role[] }>('GET', '/v1/roles');
    return roles;
  }

  async createRole(name: string): Promise<Role> {
    return this.#call('POST', '/v1/roles', { body: { name } });
  }

  async deleteRole(name: string): Promise<void> {
    await this.#call('DELETE', `/v1/roles/${segment(name)}`);
  }

  /** One page of the audit trail, oldest first, filtered (admin). */
  async listAudit(filter: AuditFilter = {}): Promise<AuditPage> {
    const query = new URLSearchParams();
    for (const [name, value] of Object.entries(filter)) if (value !== undefined) query.set(name, String(value));
    const text = query.toString();
    return this.#call('GET', `/v1/audit${text === '' ? '' : `?${text}`}`);
  }

  /** One role, its permissions and the usernames holding it. */
  async getRole(name: string): Promise<RoleDetails> {
    return this.#call('GET', `/v1/roles/${segment(name)}`);
  }

  // Registration codes (docs/api.md "Registrations").

  /** Creates your own account with a registration code (no token needed); roles come from the code. */
  async register(code: string, username: string, password: string): Promise<Account> {
    return this.#call('POST', '/v1/register', { auth: false, body: { code, username, password } });
  }

  async listRegistrations(): Promise<Registration[]> {
    const { registrations } = await this.#call<{ registrations: Registration[] }>('GET', '/v1/registrations');
    return registrations;
  }

  /** Creates a registration code; the answer is the only place the code is ever shown. */
  async createRegistration(options: NewRegistration = {}): Promise<CreatedRegistration> {
    const body = {
      ...(options.roles === undefined ? {} : { roles: options.roles }),
      ...(options.uses === undefined ? {} : { uses: options.uses }),
      ...(options.expiresIn === undefined ? {} : { expires_in: options.expiresIn }),
      ...(options.allowAdmin === undefined ? {} : { allow_admin: options.allowAdmin }),
    };
    return this.#call('POST', '/v1/registrations', { body });
  }

  async deleteRegistration(id: string): Promise<void> {
    await this.#call('DELETE', `/v1/registrations/${segment(id)}`);
  }

  // Permissions (docs/api.md "Permissions").

  async listPermissions(): Promise<PermissionDefinition[]> {
    const { permissions } = await this.#call<{ permissions: PermissionDefinition[] }>('GET', '/v1/permissions');
    return permissions;
  }

  async createPermission(permission: NewPermission): Promise<PermissionDefinition> {
    const body = { resource: permission.resource, action: permission.action, description: permission.description };
    return this.#call('POST', '/v1/permissions', { body });
  }

  async deletePermission(id: string): Promise<void> {
    await this.#call('DELETE', `/v1/permissions/${segment(id)}`);
  }

  async grantPermission(role: string, permissionId: string): Promise<void> {
    await this.#call('PUT', `/v1/roles/${segment(role)}/permissions/${segment(permissionId)}`);
  }

  async revokePermission(role: string, permissionId: string): Promise<void> {
    await this.#call('DELETE', `/v1/roles/${segment(role)}/permissions/${segment(permissionId)}`);
  }

  /**
   * Whether the holder of `token` (a token your app was handed) may do `action` on `resource`, decided by the server
   * now. This client's own token authenticates the question.
   */
  async checkPermission(token: string, resource: string, action: string): Promise<boolean> {
    const { allowed } = await this.#call<{ allowed: boolean }>('POST', '/v1/authz/check', { body: { token, resource, action } });
    return allowed;
  }

  async #call<T>(method: Method, path: string, options: { auth?: boolean; body?: unknown } = {}): Promise<T> {
    const response = await this.#transport.send(method, path, {
      token: options.auth === false ? undefined : this.#token,
      body: options.body,
    });
    if (response.status !== 204 && (typeof response.body !== 'object' || response.body === null)) {
      throw new MciasConnectionError('invalid_response', `${this.#transport.origin} answered ${method} ${path} with ${response.status} and no JSON object`);
    }
    return response.body as T;
  }
}

/** One path segment: percent-encoded, and never empty or a dot segment that would change the path. */
function segment(value: string): string {
  if (typeof value !== 'string' || value === '' || value === '.' || value === '..') {
    throw new MciasClientError('invalid_argument', `${JSON.stringify(value)} is not a valid name`);
  }
  return encodeURIComponent(value);
}
