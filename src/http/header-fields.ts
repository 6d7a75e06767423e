import type { FastifyReply, FastifyRequest } from 'fastify';
import { MciasError } from '../domain/errors.ts';

/**
 * Header fields that make a request ambiguous are refused before anything else looks at it, authentication included
 * (SECURITY.md §34, §42): a repeated Authorization or Host, or no Host. The last is the check Node would make itself
 * (`requireHostHeader`), made here instead so that the answer is in the house format.
 */
export function refuseBadHeaderFields(request: FastifyRequest, reply: FastifyReply): void {
  const raw = request.raw;
  // Node keeps the first of two Authorization or Host fields and drops the second, while a proxy or WAF in front may
  // have acted on the other one: the header-level twin of a JSON key named twice (SECURITY.md §34).
  let authorization = 0;
  let host = 0;
  const fields = raw.rawHeaders;
  for (let i = 0; i < fields.length; i += 2) {
    const name = fields[i] as string;
    // Only a name of the right length can be one of the two: the others are not lower-cased (one copy per field).
    if (name.length === 13 && name.toLowerCase() === 'authorization') authorization++;
    else if (name.length === 4 && name.toLowerCase() === 'host') host++;
  }
  if (authorization > 1) refuse(reply, 'the request carries more than one Authorization header');
  if (host > 1) refuse(reply, 'the request carries more than one Host header');
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
