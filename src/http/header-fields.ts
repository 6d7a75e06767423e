import type { FastifyReply, FastifyRequest } from 'fastify';
import { MciasError } from '../domain/errors.ts';

/**
 * Header fields that make a request ambiguous are refused before anything else looks at it (SECURITY.md §42): the
 * check Node would make itself (`requireHostHeader`) is made here instead, so the answer is in the house format.
 */
export function refuseBadHeaderFields(request: FastifyRequest, reply: FastifyReply): void {
  const raw = request.raw;
  // RFC 9112 §3.2: an HTTP/1.1 request without Host is a 400 (HTTP/1.0 may omit it, as Node allows).
  if (raw.httpVersionMajor === 1 && raw.httpVersionMinor === 1 && raw.headers.host === undefined) {
    refuse(reply, 'the request has no Host header');
  }
}

/** The request is malformed, so the connection is not reused after the answer. */
function refuse(reply: FastifyReply, detail: string): never {
  reply.header('connection', 'close');
  throw new MciasError('invalid_request', detail);
}
