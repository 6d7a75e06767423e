import { randomUUID } from 'node:crypto';
import type { Server as HttpsServer, ServerOptions as HttpsServerOptions } from 'node:https';
import rateLimit from '@fastify/rate-limit';
import swagger from '@fastify/swagger';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import Fastify, { LogController, type FastifyInstance, type FastifyReply, type FastifyRequest, type FastifyServerOptions } from 'fastify';
import type { ConnectionLimits } from '../config/load.ts';
import { addressKey } from '../domain/address.ts';
import { MciasError } from '../domain/errors.ts';
import { accessControl } from './access.ts';
import { refuseBadHeaderFields } from './header-fields.ts';
import { refuseDuplicateKeys } from './json-body.ts';
import { logAccess, logSerializers } from './log.ts';
import { observeRequests, type Metrics } from './metrics.ts';
import { clientErrorHandler, fastifyConnectionOptions, httpsConnectionOptions, limitConnections } from './connections.ts';
import { SECURITY_HEADERS } from './headers.ts';
import { sendProblem } from './problem.ts';
import { accountRoutes } from './routes/accounts.ts';
import { auditRoutes } from './routes/audit.ts';
import { authRoutes } from './routes/auth.ts';
import { forwardRoutes } from './routes/forward.ts';
import { meRoutes } from './routes/me.ts';
import { pgCredentialsRoutes } from './routes/pgcreds.ts';
import { permissionRoutes } from './routes/permissions.ts';
import { pgRotationRoutes } from './routes/pgcreds-rotation.ts';
import { publicRoutes } from './routes/public.ts';
import { registrationRoutes } from './routes/registrations.ts';
import { roleRoutes } from './routes/roles.ts';
import type { AppServices } from './services.ts';
import { tokenRoutes } from './routes/tokens.ts';
import { totpRoutes } from './routes/totp.ts';
import { ProblemSchema } from './schemas.ts';
import { webPages } from './web/pages.ts';
import type { WebSettings } from './web/policy.ts';

export interface AppOptions {
  readonly bodyLimit: number;
  readonly trustedProxies: readonly string[];
  /** The general per-address request limit (SECURITY.md §46), in memory on this instance. */
  readonly rateLimit: { readonly requests: number; readonly windowMs: number };
  readonly logger: FastifyServerOptions['loggerInstance'] | false;
  /** TLS for a real listener; tests that use `inject` leave it out. */
  readonly https?: HttpsServerOptions;
  /** Bounds on the real listener's connections (SECURITY.md §36); only with `https`. */
  readonly connections?: ConnectionLimits;
  readonly version?: string;
  /** Fed from every request when given (SECURITY.md §48); served by src/server.ts on its own listener. */
  readonly metrics?: Metrics;
  /** The login page (`[web] enabled`); without it there is no page, and forward-auth never redirects. */
  readonly web?: WebSettings | undefined;
}

export { HSTS } from './headers.ts';
/** Addresses whose request counts one instance keeps (SECURITY.md §46). */
const RATE_LIMIT_ADDRESSES = 10_000;
/** What Fastify does with `__proto__` and `constructor.prototype` keys in a JSON body (SECURITY.md §33). */
const POISONING = 'error';

/** Headers on every response, including the ones Fastify's router answers before any hook runs. */
function securityHeaders(request: FastifyRequest, reply: FastifyReply): void {
  reply.header('x-request-id', request.id);
  reply.headers(SECURITY_HEADERS);
}

/** A body is present if one was parsed, or the request announces one (GET and HEAD bodies are never parsed). */
function hasBody(request: FastifyRequest): boolean {
  if (request.body !== undefined && request.body !== null) return true;
  const length = request.headers['content-length'];
  return (length !== undefined && length !== '0') || request.headers['transfer-encoding'] !== undefined;
}

/** Builds the application without listening, so tests can `inject` into it (src/server.ts listens). */
export async function buildApp(services: AppServices, options: AppOptions): Promise<FastifyInstance> {
  const limits = options.https ? options.connections : undefined;
  const app = Fastify({
    // The serializers keep query strings and raw request bytes out of Fastify's own log lines (SECURITY.md §19).
    ...(options.logger ? { loggerInstance: options.logger.child({}, { serializers: logSerializers }) } : { logger: false }),
    // Node would answer an HTTP/1.1 request without Host itself, bare; the app refuses it in the house format
    // (refuseBadHeaderFields, SECURITY.md §42).
    ...(options.https ? { https: { ...options.https, requireHostHeader: false, ...(limits ? httpsConnectionOptions(limits) : {}) } } : {}),
    ...(limits ? fastifyConnectionOptions(limits) : {}),
    // Errors Node's parser answers before Fastify sees a request get the house format too (SECURITY.md §42).
    clientErrorHandler,
    bodyLimit: options.bodyLimit,
    trustProxy: options.trustedProxies.length > 0 ? [...options.trustedProxies] : false,
    genReqId: () => randomUUID(),
    requestIdHeader: false,
    onProtoPoisoning: POISONING,
    onConstructorPoisoning: POISONING,
    return503OnClosing: true,
    // One access-log line per request (below) instead of Fastify's two.
    logController: new LogController({ disableRequestLogging: true }),
    // Errors the router raises before any hook runs (an over-long or malformed path parameter) are problem+json too.
    frameworkErrors: (error, request, reply) => {
      securityHeaders(request, reply);
      sendProblem(reply, error);
      // No onResponse hook runs for these.
      logAccess(request, reply);
      options.metrics?.observeResponse(request, reply);
    },
    ajv: { customOptions: { removeAdditional: false, coerceTypes: false, useDefaults: true, allErrors: false } },
  }).withTypeProvider<TypeBoxTypeProvider>();

  if (limits) limitConnections(app.server as HttpsServer, limits, options.trustedProxies);

  // JSON only: a text/plain body gets 415 instead of reaching a handler.
  app.removeContentTypeParser('text/plain');
  refuseDuplicateKeys(app, POISONING);
  app.setErrorHandler((error, _request, reply) => sendProblem(reply, error));
  app.setNotFoundHandler((_request, reply) => sendProblem(reply, new MciasError('not_found', 'no such route')));

  // The hooks every request runs take Fastify's callback form: none of them waits for anything, and an async hook
  // costs every request a promise and a microtask turn for nothing (issue 12's hot path).
  app.addHook('onRequest', (request, reply, done) => {
    securityHeaders(request, reply);
    try {
      refuseBadHeaderFields(request, reply);
    } catch (error) {
      done(error as Error);
      return;
    }
    // An unknown route is 404 whatever the request carries (docs/api.md): answered here, before any body is read, so a
    // URL typo with a body (malformed, oversized or of another type) is not mistaken for a bad body. The body is
    // left unread, so the connection closes after the answer rather than reading on (as Fastify does for 413).
    if (request.is404) {
      if (hasBody(request)) reply.header('connection', 'close');
      done(new MciasError('not_found', 'no such route'));
      return;
    }
    done();
  });
  app.addHook('onResponse', (request, reply, done) => {
    logAccess(request, reply);
    // Every 429, whoever refused (the request limit, the login throttle, the hash queue), is counted, bounded
    // (SECURITY.md §41): by address and route, written as one row per address and interval.
    if (reply.statusCode === 429) services.summaries.record(request.ip, `rate_limited.${request.routeOptions.url ?? 'unmatched'}`);
    done();
  });
  if (options.metrics) observeRequests(app, options.metrics);
  // A body sent to a route that takes none is refused rather than ignored (SECURITY.md §22).
  app.addHook('preValidation', (request, _reply, done) => {
    done(request.routeOptions.schema?.body === undefined && hasBody(request) ? new MciasError('invalid_request', 'this route takes no request body') : undefined);
  });

  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: { title: 'MCIAS', version: options.version ?? '1', description: 'Metacircular Identity and Access System, API version 1' },
      components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer', bearerFormat: 'JWT' } } },
    },
    transform: ({ schema, url, route }) => {
      const access = route.config?.access ?? 'admin';
      const documented = {
        ...schema,
        ...(access === 'public' ? {} : { security: [{ bearer: [] }] }),
        'x-mcias-access': access,
        ...(route.config?.duringPasswordChange === true ? { 'x-mcias-during-password-change': true } : {}),
        response: { ...(schema?.response as object), '4XX': ProblemSchema, '5XX': ProblemSchema },
      };
      return { schema: documented as typeof schema, url };
    },
  });
  // The general request limit (SECURITY.md §46), as an app-wide onRequest hook registered before access control's, so it counts every
  // request (unauthenticated ones too) before any token check. Keyed by the one client address (request.ip: the
  // socket peer, or what a trusted proxy forwarded; SECURITY.md §10), IPv6 by /64. Probes declare
  // `config.rateLimit: false` and are exempt.
  await app.register(rateLimit, {
    global: false,
    max: options.rateLimit.requests,
    timeWindow: options.rateLimit.windowMs,
    keyGenerator: (request) => addressKey(request.ip),
    // The counts of this many addresses are kept, the least recently seen dropped first: memory stays bounded.
    cache: RATE_LIMIT_ADDRESSES,
    // No X-RateLimit-* headers: a 429 carries Retry-After (sendProblem), and other answers stay as they were.
    addHeadersOnExceeding: { 'x-ratelimit-limit': false, 'x-ratelimit-remaining': false, 'x-ratelimit-reset': false },
    addHeaders: { 'x-ratelimit-limit': false, 'x-ratelimit-remaining': false, 'x-ratelimit-reset': false, 'retry-after': false },
    errorResponseBuilder: (_request, context) =>
      new MciasError('rate_limited', `too many requests from your address: try again in ${context.after}`, {
        retryAfter: Math.max(1, Math.ceil(context.ttl / 1000)),
        reason: 'too_many_requests',
      }),
  });
  const limitRequests = app.rateLimit();
  app.addHook('onRequest', (request, reply, done) => {
    if (request.routeOptions.config.rateLimit === false) done();
    else limitRequests.call(app, request, reply).then(() => done(), done);
  });
  await app.register(accessControl, { tokens: services.tokens });
  await app.register(publicRoutes, services);
  await app.register(authRoutes, services);
  await app.register(meRoutes, services);
  await app.register(accountRoutes, services);
  await app.register(roleRoutes, services);
  await app.register(tokenRoutes, services);
  await app.register(totpRoutes, services);
  await app.register(auditRoutes, services);
  await app.register(pgCredentialsRoutes, services);
  await app.register(pgRotationRoutes, services);
  await app.register(registrationRoutes, services);
  await app.register(permissionRoutes, services);
  await app.register(forwardRoutes, { services, web: options.web });
  // Its own encapsulated context: HTML errors, form bodies, CSRF and its CSP stay there (SECURITY.md §55).
  if (options.web !== undefined) await app.register(webPages, { services, web: options.web });
  return app;
}
