/**
 * `node bench/json-body.ts`: what refusing repeated JSON keys (src/http/json-body.ts) costs per request body, next to
 * plain JSON.parse and Fastify's own JSON parser (secure-json-parse), which runs before the scan in the server.
 * CPU only, in process; the numbers in docs/operations.md come from here.
 */
import Fastify from 'fastify';
import { duplicateKey } from '../src/http/json-body.ts';

const fastifyParse = Fastify().getDefaultJsonParser('error', 'error');
const parseWithFastify = (text: string): unknown => {
  let result: unknown;
  fastifyParse({} as never, text, (error, value) => {
    if (error) throw error;
    result = value;
  });
  return result;
};

function manySmallObjects(limit: number): string {
  const body: Record<string, unknown> = {};
  for (let i = 0; JSON.stringify(body).length < limit - 64; i++) body[`key${i}`] = { a: i, b: `v${i}`, c: [1, 2, { d: true }] };
  return JSON.stringify(body);
}

const BODIES: Record<string, string> = {
  'login body': JSON.stringify({ username: 'alice', password: 'correct horse battery staple', totp_code: '123456' }),
  '64 KiB, one long string': JSON.stringify({ username: 'alice', password: 'x'.repeat(65_000) }),
  '64 KiB, many small objects': manySmallObjects(65_536),
};

const WAYS: Record<string, (text: string) => unknown> = {
  'JSON.parse': (text) => JSON.parse(text),
  'Fastify parser (before)': parseWithFastify,
  'Fastify parser + duplicateKey': (text) => {
    parseWithFastify(text);
    return duplicateKey(text);
  },
};

function microseconds(work: () => unknown, iterations: number): number {
  for (let i = 0; i < iterations / 10; i++) work();
  const started = process.hrtime.bigint();
  for (let i = 0; i < iterations; i++) work();
  return Number(process.hrtime.bigint() - started) / iterations / 1_000;
}

for (const [name, text] of Object.entries(BODIES)) {
  console.log(`${name} (${text.length} bytes)`);
  const iterations = text.length < 1_000 ? 200_000 : 2_000;
  for (const [way, parse] of Object.entries(WAYS)) {
    console.log(`  ${way.padEnd(32)} ${microseconds(() => parse(text), iterations).toFixed(2).padStart(10)} µs`);
  }
}
