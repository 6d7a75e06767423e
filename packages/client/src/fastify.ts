import type { FastifyPluginAsync, FastifyReply, FastifyRequest, preHandlerAsyncHookHandler } from 'fastify';
import fp from 'fastify-plugin';
import { MciasAuth, PROBLEM_CONTENT_TYPE, isProblem, type MciasAuthOptions, type MciasPrincipal, type MciasProblem } from './middleware.ts';

/**
 * The Fastify plugin: each request's token (bearer, else the `mcias_token` cookie) is checked and its principal put
 * on `request.mcias`; routes guard themselves with `preHandler: app.mcias.requireRole('x')` and friends, which
 * answer 401/403 as problem+json.
 *
 *   await app.register(mcias, { client: new MciasClient({ server, caCert }) });
 *   app.get('/admin', { preHandler: app.mcias.requireRole('admin') }, (request) => `hello ${request.mcias?.username}`);
 */

export interface MciasGuards {
  requireAuth(): preHandlerAsyncHookHandler;
  requireRole(role: string): preHandlerAsyncHookHandler;
  requirePermission(resource: string, action: string): preHandlerAsyncHookHandler;
}

declare module 'fastify' {
  interface FastifyRequest {
    /** The caller, when the request carried a valid MCIAS token. */
    mcias: MciasPrincipal | undefined;
  }
  interface FastifyInstance {
    mcias: MciasGuards;
  }
}

export type { MciasAuthOptions, MciasPrincipal } from './middleware.ts';

function send(reply: FastifyReply, problem: MciasProblem): FastifyReply {
  return reply.code(problem.status).headers(problem.headers).type(PROBLEM_CONTENT_TYPE).send(JSON.stringify(problem.body));
}

const plugin: FastifyPluginAsync<MciasAuthOptions> = async (app, options) => {
  const auth = new MciasAuth(options);
  app.decorateRequest('mcias', undefined);
  app.addHook('onRequest', async (request: FastifyRequest, reply: FastifyReply) => {
    const found = await auth.authenticate(request.headers);
    if (isProblem(found)) return send(reply, found);
    request.mcias = found;
    return undefined;
  });
  const guard = (check: (request: FastifyRequest) => MciasProblem | undefined | Promise<MciasProblem | undefined>): preHandlerAsyncHookHandler =>
    async function (request, reply) {
      const refused = await check(request);
      if (refused !== undefined) await send(reply, refused);
    };
  app.decorate('mcias', {
    requireAuth: () => guard((request) => auth.requireAuth(request.mcias)),
    requireRole: (role: string) => guard((request) => auth.requireRole(request.mcias, role)),
    requirePermission: (resource: string, action: string) => guard((request) => auth.requirePermission(request.mcias, resource, action)),
  } satisfies MciasGuards);
};

/** Register with `app.register(mcias, options)`; not encapsulated, so every route of the app sees `request.mcias`. */
export const mcias = fp(plugin, { fastify: '5.x', name: '@mcias/client' });
