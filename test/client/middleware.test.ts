import assert from 'node:assert/strict';
import { once } from 'node:events';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { MciasClient } from '@mcias/client';
import { mciasExpress } from '@mcias/client/express';
import { mcias } from '@mcias/client/fastify';
import express from 'express';
import Fastify, { type FastifyInstance } from 'fastify';
import { decodeJwt } from 'jose';
import { useClientFixture } from '../support/client.ts';
import { USER_PASSWORD } from '../support/harness.ts';
import { serveOverTls } from '../support/tls-app.ts';

/**
 * The Fastify plugin and the Express middleware (one core, packages/client/src/middleware.ts) in front of a real
 * mciassrv over TLS, with a real role, a real permission grant, and a revoked token; online and offline.
 */

type Mode = 'online' | 'offline';
const ROUTES = ['/public', '/me', '/editors', '/wiki/edit'] as const;

async function fastifyApp(client: MciasClient, mode: Mode): Promise<{ url: string; close(): Promise<void> }> {
  const app: FastifyInstance = Fastify();
  await app.register(mcias, { client, mode });
  app.get('/public', async (request) => ({ user: request.mcias?.username ?? null }));
  app.get('/me', { preHandler: app.mcias.requireAuth() }, async (request) => ({ user: request.mcias?.username }));
  app.get('/editors', { preHandler: app.mcias.requireRole('editor') }, async (request) => ({ user: request.mcias?.username }));
  app.get('/wiki/edit', { preHandler: app.mcias.requirePermission('wiki', 'edit') }, async (request) => ({ user: request.mcias?.username }));
  const url = await app.listen({ port: 0, host: '127.0.0.1' });
  return { url, close: () => app.close() };
}

async function expressApp(client: MciasClient, mode: Mode): Promise<{ url: string; close(): Promise<void> }> {
  const app = express();
  const auth = mciasExpress({ client, mode });
  app.use(auth.authenticate);
  app.get('/public', (req, res) => res.json({ user: req.mcias?.username ?? null }));
  app.get('/me', auth.requireAuth(), (req, res) => res.json({ user: req.mcias?.username }));
  app.get('/editors', auth.requireRole('editor'), (req, res) => res.json({ user: req.mcias?.username }));
  app.get('/wiki/edit', auth.requirePermission('wiki', 'edit'), (req, res) => res.json({ user: req.mcias?.username }));
  const server: Server = app.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    async close() {
      server.closeAllConnections();
      server.close();
    },
  };
}

describe('middleware against a real server', () => {
  const f = useClientFixture();
  let editorToken: string;
  let outsiderToken: string;
  let permissionId: string;
  let issuer: string;

  before(async () => {
    await f.admin.createRole('editor');
    const permission = await f.admin.createPermission({ resource: 'wiki', action: 'edit', description: 'edit the wiki' });
    permissionId = permission.id;
    await f.admin.grantPermission('editor', permission.id);
    await f.person('ed', ['editor']);
    await f.person('otto');
    editorToken = (await f.anonymous.login('ed', USER_PASSWORD)).token;
    outsiderToken = (await f.anonymous.login('otto', USER_PASSWORD)).token;
    issuer = decodeJwt(f.adminToken).iss as string;
  });

  for (const [adapter, build] of [['fastify', fastifyApp], ['express', expressApp]] as const) {
    for (const mode of ['online', 'offline'] as const) {
      describe(`${adapter}, ${mode}`, () => {
        let app: { url: string; close(): Promise<void> };
        const get = (path: string, headers: Record<string, string> = {}) => fetch(`${app.url}${path}`, { headers });
        const bearer = (token: string) => ({ authorization: `Bearer ${token}` });
        const status = async (path: string, headers: Record<string, string> = {}) => (await get(path, headers)).status;

        before(async () => {
          app = await build(new MciasClient({ server: f.server.url, caCert: f.caCert, issuer }), mode);
        });
        after(() => app.close());

        test('no token: public routes see no principal, guarded ones answer 401 problem+json', async () => {
          assert.deepEqual(await (await get('/public')).json(), { user: null });
          for (const path of ROUTES.slice(1)) {
            const response = await get(path);
            assert.equal(response.status, 401, path);
            assert.match(response.headers.get('content-type') ?? '', /^application\/problem\+json/);
            assert.equal(response.headers.get('www-authenticate'), 'Bearer');
            const body = (await response.json()) as { code: string; status: number };
            assert.equal(body.code, 'unauthenticated');
            assert.equal(body.status, 401);
          }
          assert.equal(await status('/me', bearer('not-a-token')), 401, 'a garbage token');
        });

        test('a person with the role and the permission passes every guard, by bearer token or by the mcias_token cookie', async () => {
          for (const headers of [bearer(editorToken), { cookie: `theme=dark; mcias_token=${editorToken}` }]) {
            for (const path of ROUTES) {
              const response = await get(path, headers);
              assert.equal(response.status, 200, `${path} ${JSON.stringify(Object.keys(headers))}`);
              assert.deepEqual(await response.json(), { user: 'ed' });
            }
          }
        });

        test('a person without them: 403 problem+json on the role and the permission', async () => {
          assert.equal(await status('/me', bearer(outsiderToken)), 200);
          for (const path of ['/editors', '/wiki/edit']) {
            const response = await get(path, bearer(outsiderToken));
            assert.equal(response.status, 403, path);
            assert.match(response.headers.get('content-type') ?? '', /^application\/problem\+json/);
            assert.equal(((await response.json()) as { code: string }).code, 'forbidden');
          }
        });

        test('an administrator holds every permission (the server\'s permits rule)', async () => {
          assert.equal(await status('/wiki/edit', bearer(f.adminToken)), 200);
        });

        test(mode === 'online' ? 'a revoked token is refused at once' : 'a revoked token passes offline until it expires, except where a permission is asked', async () => {
          const token = (await f.anonymous.login('ed', USER_PASSWORD)).token;
          assert.equal(await status('/editors', bearer(token)), 200);
          await f.anonymous.withToken(token).logout();
          if (mode === 'online') {
            for (const path of ROUTES.slice(1)) assert.equal(await status(path, bearer(token)), 401, path);
          } else {
            assert.equal(await status('/editors', bearer(token)), 200, 'documented: offline sees revocation only at expiry');
            assert.equal(await status('/wiki/edit', bearer(token)), 401, 'requirePermission asks the server');
          }
        });

        test('a permission taken from the role is refused at the next request', async () => {
          await f.admin.revokePermission('editor', permissionId);
          try {
            assert.equal(await status('/wiki/edit', bearer(editorToken)), 403);
          } finally {
            await f.admin.grantPermission('editor', permissionId);
          }
          assert.equal(await status('/wiki/edit', bearer(editorToken)), 200);
        });
      });
    }
  }

  test("the server's request limit (429) or a 5xx while validating: 503 problem+json, never 500 and never let in", async () => {
    for (const status of [429, 500, 503]) {
      const stub = Fastify();
      stub.post('/v1/token/validate', async (_request, reply) =>
        reply.code(status).type('application/problem+json').send({ type: 'about:blank', title: 'x', status, code: status === 429 ? 'rate_limited' : 'internal' }),
      );
      const front = await serveOverTls(stub);
      const app = await expressApp(new MciasClient({ server: front.url, caCert: front.certPem }), 'online');
      try {
        const response = await fetch(`${app.url}/me`, { headers: { authorization: `Bearer ${editorToken}` } });
        assert.equal(response.status, 503, String(status));
        assert.equal(((await response.json()) as { code: string }).code, 'unavailable');
      } finally {
        await app.close();
        await front.close();
        await stub.close();
      }
    }
  });

  test('the server unreachable: 503 problem+json, not a crash', async () => {
    const client = new MciasClient({ server: 'https://127.0.0.1:9', caCert: f.caCert, issuer });
    const app = await fastifyApp(client, 'online');
    try {
      const response = await fetch(`${app.url}/me`, { headers: { authorization: `Bearer ${editorToken}` } });
      assert.equal(response.status, 503);
      assert.equal(((await response.json()) as { code: string }).code, 'unavailable');
    } finally {
      await app.close();
    }
  });
});
