import cookie from '@fastify/cookie';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { Type } from 'typebox';
import { MciasError } from '../../domain/errors.ts';
import { bearerToken, requestContext } from '../access.ts';
import type { AppServices } from '../services.ts';
import { RoleName } from '../schemas.ts';
import { TOKEN_COOKIE, allowedRedirect, type WebSettings } from '../web/policy.ts';

/** The token text a bearer header may carry (src/http/access.ts): a cookie holding anything else holds no token. */
const TOKEN_TEXT = /^[A-Za-z0-9_.-]{1,8192}$/;

function single(value: string | string[] | undefined): string | undefined {
  return typeof value === 'string' && value !== '' ? value : undefined;
}

/** The bearer token, else the `mcias_token` cookie the login page set. */
function presentedToken(request: FastifyRequest): string | undefined {
  const bearer = bearerToken(request);
  if (bearer !== undefined) return bearer;
  const cookie = request.cookies[TOKEN_COOKIE];
  return cookie !== undefined && TOKEN_TEXT.test(cookie) ? cookie : undefined;
}

/**
 * The URL the browser asked the proxy for: nginx sends it whole (`X-Original-URL`, set in its configuration), Caddy
 * and Traefik in parts (`X-Forwarded-Proto`, `-Host`, `-Uri`). Whoever sends these only chooses where the login page
 * may send the browser back, which `allowedRedirect` limits to the configured origins.
 */
function originalUrl(request: FastifyRequest): { url: string | undefined; nginx: boolean } {
  const whole = single(request.headers['x-original-url']);
  if (whole !== undefined) return { url: whole, nginx: true };
  const host = single(request.headers['x-forwarded-host']);
  if (host === undefined) return { url: undefined, nginx: false };
  const proto = single(request.headers['x-forwarded-proto']) ?? 'https';
  const uri = single(request.headers['x-forwarded-uri']) ?? '/';
  return { url: `${proto}://${host}${uri.startsWith('/') ? uri : `/${uri}`}`, nginx: false };
}

/**
 * `GET /v1/auth/forward` for nginx `auth_request`, Caddy `forward_auth` and Traefik `forwardAuth` (SECURITY.md §54).
 * The token check is `TokenLifecycle.validate`, the very function behind `POST /v1/token/validate`: the same
 * signature, database row, account and temporary-password checks, so revocation counts at once and the cost is a
 * validation's.
 */
export const forwardRoutes: FastifyPluginAsyncTypebox<{ services: AppServices; web: WebSettings | undefined }> = async (app, { services, web }) => {
  // The mcias_token cookie is read here and by the login page (src/http/web/pages.ts) only: each registers the cookie
  // plugin in its own context, so no other request pays for its hooks (issue 12's hot path).
  await app.register(cookie);
  app.get(
    '/v1/auth/forward',
    {
      config: { access: 'public' },
      schema: {
        tags: ['auth'],
        summary: 'Forward-auth for reverse proxies: 200 with X-Mcias-User, X-Mcias-Roles and X-Mcias-Account-Id for a valid token',
        description:
          'The token comes from Authorization: Bearer or the mcias_token cookie. No valid token: 401, or for a browser (Accept: text/html) ' +
          'the way to the login page, when the original URL is on an allowed origin: a 302 (Caddy, Traefik) or a 401 with Location (nginx). ' +
          '?role=NAME requires that role (403).',
        querystring: Type.Object({ role: Type.Optional(RoleName) }, { additionalProperties: false }),
        response: { 200: Type.Null({ description: 'no body; the headers name the account' }), 302: Type.Null({ description: 'to the login page' }) },
      },
    },
    async (request, reply) => {
      const token = presentedToken(request);
      const result = token === undefined ? { active: false as const } : await services.lifecycle.validate(token, requestContext(request));
      if (!result.active) {
        const login = web === undefined || !(request.headers.accept ?? '').includes('text/html') ? undefined : loginRedirect(request, web);
        if (login !== undefined) {
          reply.header('location', login.location);
          // nginx's auth_request turns anything but 2xx, 401 and 403 into a 500: it gets the 401 with the Location,
          // which its error_page turns into the redirect (examples/forward-auth/nginx.conf).
          if (!login.nginx) return empty(reply, 302);
        }
        throw new MciasError('unauthenticated', 'a valid token (bearer or the mcias_token cookie) is required');
      }
      const role = request.query.role?.toLowerCase();
      if (role !== undefined && !result.account.roles.includes(role)) throw new MciasError('forbidden', `this needs the role ${role}`);
      reply.header('x-mcias-user', result.account.username);
      reply.header('x-mcias-roles', result.account.roles.join(','));
      reply.header('x-mcias-account-id', result.account.id);
      return empty(reply, 200);
    },
  );
};

/** No body: the status and headers are the answer. */
function empty(reply: FastifyReply, status: number): FastifyReply {
  return reply.code(status).send();
}

function loginRedirect(request: FastifyRequest, web: WebSettings): { location: string; nginx: boolean } | undefined {
  const { url, nginx } = originalUrl(request);
  const back = allowedRedirect(url, web.allowedRedirectOrigins);
  if (back === undefined) return undefined;
  return { location: `${web.loginUrl}?rd=${encodeURIComponent(back)}`, nginx };
}
