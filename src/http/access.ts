import type { FastifyInstance, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import { MciasError, fail } from '../domain/errors.ts';
import { isAdmin } from '../domain/authorization.ts';
import type { Principal, RequestContext } from '../domain/model.ts';
import type { TokenService } from '../domain/tokens.ts';

/**
 * Who may call a route (SECURITY.md §20): every route declares one of these in `config.access`, and a route that
 * declares nothing cannot be registered. `token` is any valid token, human or system.
 */
const ACCESS_LEVELS = ['public', 'token', 'human', 'admin'] as const;
type Access = (typeof ACCESS_LEVELS)[number];

declare module 'fastify' {
  interface FastifyContextConfig {
    access?: Access;
    /**
     * The route stays open to a session whose password is temporary (SECURITY.md §39). Only reading the own account,
     * changing the own password and logging out declare it; every other route refuses such a session.
     */
    duringPasswordChange?: true;
  }
  interface FastifyRequest {
    principal: Principal | undefined;
  }
}

/**
 * The scheme name is case-insensitive (RFC 9110 §11.1), so `bearer` and `BEARER` are `Bearer`; the token's own class
 * already holds both cases, so the `i` flag changes nothing about which tokens match, and the token is never altered.
 */
const BEARER = /^Bearer ([A-Za-z0-9_.-]{1,8192})$/i;

/** The token of an `Authorization: Bearer` header, or undefined (also read by forward-auth, src/http/routes/forward.ts). */
export function bearerToken(request: FastifyRequest): string | undefined {
  return BEARER.exec(request.headers.authorization ?? '')?.[1];
}

/** The caller of a route whose access is not `public`. */
export function principalOf(request: FastifyRequest): Principal {
  if (request.principal === undefined) throw new Error(`route ${request.routeOptions.url} read a principal it did not require`);
  return request.principal;
}

export function requestContext(request: FastifyRequest): RequestContext {
  const userAgent = request.headers['user-agent'];
  return { ip: request.ip, userAgent: userAgent === undefined ? null : userAgent.slice(0, 256), requestId: request.id };
}

export const accessControl = fp(
  async (app: FastifyInstance, deps: { tokens: TokenService }) => {
    app.decorateRequest('principal', undefined);
    app.addHook('onRoute', (route) => {
      const access = route.config?.access;
      if (access === undefined || !ACCESS_LEVELS.includes(access)) {
        throw new Error(`route ${route.method} ${route.url} does not declare config.access`);
      }
    });
    /** The caller of a route that needs a token, or the refusal. */
    const admit = async (request: FastifyRequest, access: Exclude<Access, 'public'>): Promise<void> => {
      const token = bearerToken(request);
      if (token === undefined) throw new MciasError('unauthenticated', 'a bearer token is required');
      const principal = await deps.tokens.authenticate(token);
      // The flag comes from the database with the token's row (never from a claim), so a change takes effect at once.
      if (principal.account.passwordChangeRequired && request.routeOptions.config.duringPasswordChange !== true) {
        fail('password_change_required', 'this account must change its password first (PUT /v1/me/password)');
      }
      if (access === 'human' && principal.account.kind !== 'human') fail('forbidden', 'this route is for human accounts');
      if (access === 'admin' && !isAdmin(principal.account)) fail('forbidden', 'this route needs the admin role');
      request.principal = principal;
    };
    // Before the body is read: an unauthenticated caller learns nothing from validation errors. Callback form, so a
    // public route (validate, login, JWKS) pays no promise for a check it does not make.
    app.addHook('onRequest', (request, _reply, done) => {
      const access = request.routeOptions.config.access ?? 'admin';
      if (request.is404 || access === 'public') done();
      else admit(request, access).then(() => done(), done);
    });
  },
  { name: 'mcias-access-control' },
);
