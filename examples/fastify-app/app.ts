import { readFileSync } from 'node:fs';
import { MciasClient } from '@mcias/client';
import { mcias } from '@mcias/client/fastify';
import Fastify, { type FastifyInstance } from 'fastify';

/** A small app protected by MCIAS: the whole integration is the plugin registration and one preHandler per route. */
export async function buildApp(client: MciasClient): Promise<FastifyInstance> {
  const app = Fastify();
  await app.register(mcias, { client, mode: 'offline' });
  app.get('/', async (request) => ({ hello: request.mcias?.username ?? 'stranger' }));
  app.get('/admin', { preHandler: app.mcias.requireRole('admin') }, async (request) => ({ admin: request.mcias?.username }));
  app.post('/notes', { preHandler: app.mcias.requirePermission('notes', 'write') }, async (request) => ({ saved_by: request.mcias?.username }));
  return app;
}

if (import.meta.main) {
  const env = (name: string) => process.env[name] ?? (console.error(`set ${name}`), process.exit(2));
  const client = new MciasClient({
    server: env('MCIAS_URL'),
    caCert: readFileSync(env('MCIAS_CA_CERT')),
    issuer: process.env['MCIAS_ISSUER'] ?? env('MCIAS_URL'),
  });
  const app = await buildApp(client);
  const url = await app.listen({ host: '127.0.0.1', port: Number(process.env['PORT'] ?? 3000) });
  console.log(`example app listening on ${url}`);
}
