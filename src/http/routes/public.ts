import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { UNAVAILABLE_RETRY_AFTER_S } from '../../domain/errors.ts';
import type { AppServices } from '../services.ts';
import { PROBLEM_CONTENT_TYPE, buildProblem } from '../problem.ts';
import { ProblemSchema } from '../schemas.ts';

const Status = Type.Object({ status: Type.String() }, { additionalProperties: false });

/** Liveness, readiness, the JWKS for offline validation, and the OpenAPI document. */
export const publicRoutes: FastifyPluginAsyncTypebox<AppServices> = async (app, services) => {
  app.get(
    '/healthz',
    // Probes are exempt from the request limit (SECURITY.md §46): a load balancer sharing an address with busy clients
    // must not see a healthy instance as down.
    { config: { access: 'public', rateLimit: false }, schema: { tags: ['public'], summary: 'Liveness (no database access)', response: { 200: Status } } },
    async () => ({ status: 'ok' }),
  );

  app.get(
    '/readyz',
    {
      config: { access: 'public', rateLimit: false },
      schema: { tags: ['public'], summary: 'Readiness: the database answers', response: { 200: Status, 503: ProblemSchema } },
    },
    async (_request, reply) => {
      try {
        await services.ready();
      } catch (error) {
        reply.log.warn({ err: error }, 'readiness check failed');
        // Whatever the database's error: the server is sound, its database is not answering (SECURITY.md §52).
        reply.header('retry-after', String(UNAVAILABLE_RETRY_AFTER_S));
        return reply.code(503).type(PROBLEM_CONTENT_TYPE).send(buildProblem(503, 'unavailable', reply.request.id, 'the database is not reachable'));
      }
      return { status: 'ok' };
    },
  );

  app.get(
    '/.well-known/jwks.json',
    {
      config: { access: 'public' },
      schema: {
        tags: ['public'],
        summary: 'Every public key that can still verify an unexpired token',
        response: {
          200: Type.Object({
            keys: Type.Array(
              Type.Object({
                kty: Type.String(),
                crv: Type.String(),
                x: Type.String(),
                kid: Type.String(),
                alg: Type.String(),
                use: Type.String(),
              }),
            ),
          }),
        },
      },
    },
    async (_request, reply) => {
      // Short, so offline validators learn a rotated key within a minute (jose also refetches on an unknown kid).
      reply.header('cache-control', 'public, max-age=60');
      return { keys: (await services.keys.publicJwks()) as never };
    },
  );

  app.get(
    '/openapi.json',
    { config: { access: 'public' }, schema: { tags: ['public'], summary: 'This OpenAPI 3.1 document' } },
    async (_request, reply) => {
      reply.header('cache-control', 'public, max-age=300');
      return app.swagger();
    },
  );
};
