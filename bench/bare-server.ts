/**
 * The baseline of `npm run bench`: a bare Fastify HTTPS route returning a constant, in its own process, with the
 * same certificate and key as the measured mciassrv; and a POST route that reads validate's body. `node bench/bare-server.ts CERT KEY` prints its URL on stdout.
 */
import { readFileSync } from 'node:fs';
import Fastify from 'fastify';

const [certFile, keyFile] = process.argv.slice(2);
if (certFile === undefined || keyFile === undefined) throw new Error('usage: node bench/bare-server.ts CERT KEY');
const app = Fastify({ logger: false, https: { cert: readFileSync(certFile), key: readFileSync(keyFile) } });
app.get('/', async () => ({ status: 'ok' }));
// The same JSON body and body schema as POST /v1/token/validate, answered with a constant: what Fastify alone costs a
// route that reads a body, the floor under validate (bench/run.ts).
const body = { type: 'object', properties: { token: { type: 'string', maxLength: 8192 } }, required: ['token'], additionalProperties: false };
app.post('/', { schema: { body } }, async () => ({ active: false }));
const address = await app.listen({ host: '127.0.0.1', port: 0 });
console.log(address);
process.on('SIGTERM', () => void app.close().then(() => process.exit(0)));
