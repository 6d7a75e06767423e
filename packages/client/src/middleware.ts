import type { IncomingHttpHeaders } from 'node:http';
import type { MciasClient } from './client.ts';
import { MciasApiError, MciasConnectionError } from './errors.ts';
import { permits } from './permits.ts';
import type { AccountKind, Permission } from './types.ts';

/**
 * The one core behind the Fastify plugin (./fastify.ts) and the Express/Connect middleware (./express.ts): find the
 * token (a bearer token, else the `mcias_token` cookie), check it, and answer the guards' questions. The adapters
 * only move headers in and problems out.
 */

export interface MciasAuthOptions {
  /** A client of the server; for `mode: 'offline'` it needs the `issuer` option. Its own token is used only by nothing. */
  readonly client: MciasClient;
  /**
   * `online` (the default): every request's token is checked by the server (POST /v1/token/validate), so a revoked
   * token or a disabled account is refused at once, and roles and permissions are the current ones.
   * `offline`: checked locally against the server's JWKS with the server's rules (no round trip); roles are those in
   * the token, and revocation is seen only when the token expires. `requirePermission` asks the server even then.
   */
  readonly mode?: 'online' | 'offline';
  /** The cookie read when there is no Authorization header; default `mcias_token` (what the login page sets). */
  readonly cookieName?: string;
}

/** Who made the request, as the middleware attaches it (`request.mcias` / `req.mcias`). */
export interface MciasPrincipal {
  /** The account id. */
  readonly id: string;
  readonly username: string;
  readonly kind: AccountKind;
  readonly roles: readonly string[];
  /** The account's permissions now (online mode); undefined when checked offline (not in the token). */
  readonly permissions: readonly Permission[] | undefined;
  readonly jti: string;
  /** Seconds since the epoch. */
  readonly exp: number;
  /** The token itself, to call the server as this person. */
  readonly token: string;
}

/** An RFC 9457 problem, shaped like the server's own (docs/api.md, Errors). */
export interface MciasProblem {
  readonly status: 401 | 403 | 503;
  readonly headers: Readonly<Record<string, string>>;
  readonly body: { readonly type: 'about:blank'; readonly title: string; readonly status: number; readonly code: string; readonly detail: string };
}

export const PROBLEM_CONTENT_TYPE = 'application/problem+json';

function problem(status: 401 | 403 | 503, code: string, title: string, detail: string): MciasProblem {
  return {
    status,
    headers: status === 401 ? { 'www-authenticate': 'Bearer' } : {},
    body: { type: 'about:blank', title, status, code, detail },
  };
}

const UNAUTHENTICATED = problem(401, 'unauthenticated', 'Unauthorized', 'a valid MCIAS token is required');
const UNAVAILABLE = problem(503, 'unavailable', 'Service Unavailable', 'the identity server cannot be reached');

/** The bearer token of `Authorization`, else the named cookie; undefined when neither is there. */
export function tokenFrom(headers: IncomingHttpHeaders, cookieName = 'mcias_token'): string | undefined {
  const authorization = headers.authorization;
  if (typeof authorization === 'string') {
    const match = /^Bearer +(\S+) *$/i.exec(authorization);
    return match?.[1];
  }
  const cookie = headers.cookie;
  if (typeof cookie !== 'string') return undefined;
  for (const pair of cookie.split(';')) {
    const at = pair.indexOf('=');
    if (at > 0 && pair.slice(0, at).trim() === cookieName) {
      const value = pair.slice(at + 1).trim();
      return value === '' ? undefined : value;
    }
  }
  return undefined;
}

export class MciasAuth {
  readonly #client: MciasClient;
  readonly #mode: 'online' | 'offline';
  readonly #cookieName: string;

  constructor(options: MciasAuthOptions) {
    this.#client = options.client;
    this.#mode = options.mode ?? 'online';
    this.#cookieName = options.cookieName ?? 'mcias_token';
    if (this.#mode !== 'online' && this.#mode !== 'offline') throw new TypeError("mode must be 'online' or 'offline'");
  }

  /**
   * The request's principal, undefined when it has no token or an invalid one (the guards then answer 401), or a
   * 503 problem when the server cannot be asked.
   */
  async authenticate(headers: IncomingHttpHeaders): Promise<MciasPrincipal | undefined | MciasProblem> {
    const token = tokenFrom(headers, this.#cookieName);
    if (token === undefined) return undefined;
    try {
      if (this.#mode === 'offline') {
        const verified = await this.#client.verify(token);
        if (!verified.active) return undefined;
        const { sub, username, kind, roles, jti, exp } = verified;
        return { id: sub, username, kind, roles, permissions: undefined, jti, exp, token };
      }
      return await this.#online(token);
    } catch (error) {
      if (unavailable(error)) return UNAVAILABLE;
      throw error;
    }
  }

  /** 401 without a principal, else nothing. */
  requireAuth(principal: MciasPrincipal | undefined): MciasProblem | undefined {
    return principal === undefined ? UNAUTHENTICATED : undefined;
  }

  /** 401 without a principal, 403 unless it holds `role`. */
  requireRole(principal: MciasPrincipal | undefined, role: string): MciasProblem | undefined {
    if (principal === undefined) return UNAUTHENTICATED;
    if (principal.roles.includes(role)) return undefined;
    return problem(403, 'forbidden', 'Forbidden', `the role ${role} is required`);
  }

  /**
   * 401 without a principal, 403 unless its account may do `action` on `resource` (the server's own rule, `permits`:
   * admin, or a permission of one of its roles, `*` matching any). Permissions are not in tokens: offline, this asks
   * the server for the account's current ones.
   */
  async requirePermission(principal: MciasPrincipal | undefined, resource: string, action: string): Promise<MciasProblem | undefined> {
    if (principal === undefined) return UNAUTHENTICATED;
    let subject: MciasPrincipal | undefined = principal;
    if (subject.permissions === undefined) {
      try {
        subject = await this.#online(principal.token);
      } catch (error) {
        if (unavailable(error)) return UNAVAILABLE;
        throw error;
      }
      if (subject === undefined) return UNAUTHENTICATED;
    }
    if (permits({ roles: subject.roles, permissions: subject.permissions ?? [] }, resource, action)) return undefined;
    return problem(403, 'forbidden', 'Forbidden', `the permission ${action} on ${resource} is required`);
  }

  async #online(token: string): Promise<MciasPrincipal | undefined> {
    const validation = await this.#client.validate(token);
    if (!validation.active) return undefined;
    const { sub, username, kind, roles, permissions, jti, exp } = validation;
    return { id: sub, username, kind, roles, permissions, jti, exp, token };
  }
}

/**
 * The server could not answer: unreachable, TLS, timeout, or an error answer to a question that has none for a bad
 * token (validate answers `active: false` for those): a 429 of its request limit, a 5xx. The app answers 503 then,
 * never 500 and never "allowed".
 */
function unavailable(error: unknown): boolean {
  return error instanceof MciasConnectionError || (error instanceof MciasApiError && (error.status === 429 || error.status >= 500));
}

export function isProblem(value: MciasPrincipal | MciasProblem | undefined): value is MciasProblem {
  return value !== undefined && 'body' in value && 'status' in value;
}
