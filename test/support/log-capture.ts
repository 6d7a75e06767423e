import { Writable } from 'node:stream';
import type { FastifyInstance } from 'fastify';
import { pino } from 'pino';
import { buildApp } from '../../src/http/app.ts';
import type { Harness } from './harness.ts';

/** The harness's services in an app that logs everything, at trace level, into `lines` (one JSON object each). */
export function loggingApp(h: Harness, lines: string[]): Promise<FastifyInstance> {
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      lines.push(...chunk.toString('utf8').split('\n').filter((l) => l !== ''));
      done();
    },
  });
  return buildApp(h.runtime.services, { bodyLimit: 65_536, trustedProxies: [], rateLimit: h.config.rateLimit, logger: pino({ level: 'trace' }, sink) });
}
