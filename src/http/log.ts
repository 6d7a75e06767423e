import type { FastifyReply, FastifyRequest } from 'fastify';
import { stdSerializers, type Logger } from 'pino';
import { escapeControls, type AuditRecord } from '../domain/audit.ts';

/**
 * What the server logs about a request, and how errors are serialized, so that no token or other value a client put
 * in a URL reaches the log (SECURITY.md §19). Tokens belong in the Authorization header; a client that puts one in a
 * query string (`?token=…`, `?access_token=…`) or a path segment gets its request refused, and the log keeps only
 * that it happened.
 */

/** A JWS compact string: the base64url of `{"` (every JWT header starts so), then at least a payload. */
const JWS_SHAPE = /eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]*)?/g;
const REDACTED = '[redacted]';

/** Replaces anything token-shaped in a string (a path, an error message) with `[redacted]`. */
function scrubTokens(text: string): string {
  return text.replace(JWS_SHAPE, REDACTED);
}

/**
 * The request target as it is logged: the path, with any token-shaped segment redacted, and the query string
 * replaced whole by `?[redacted]`. The whole query goes, not just its values: a key can be the secret (`?eyJ…`), and
 * an access line does its job (who called what, with what result) without it.
 */
function loggableUrl(url: string): string {
  const end = url.search(/[?#]/);
  const path = end === -1 ? url : url.slice(0, end);
  return end === -1 ? scrubTokens(path) : `${scrubTokens(path)}?${REDACTED}`;
}

/** The access-log line: one per request, the URL without its query string (SECURITY.md §19). */
export function logAccess(request: FastifyRequest, reply: FastifyReply): void {
  request.log.info(
    { method: request.method, url: loggableUrl(request.url), status: reply.statusCode, ms: Math.round(reply.elapsedTime * 10) / 10, ip: request.ip },
    'request',
  );
}

interface LoggedRequest {
  readonly method?: string;
  readonly url?: string;
  readonly ip?: string;
}

/**
 * pino serializers for every logger the server uses (mciassrv's, and through it Fastify's). They replace Fastify's
 * `req` serializer, which logs `request.url` whole, and pino's `err` serializer, which copies every enumerable field of
 * an error: Node's client errors carry `rawPacket`, the raw bytes of the request, Authorization header included.
 */
export const logSerializers = {
  req: (request: LoggedRequest) => ({
    method: request.method,
    url: loggableUrl(String(request.url ?? '')),
    ...(request.ip === undefined ? {} : { remoteAddress: request.ip }),
  }),
  err: (error: Error) => {
    const serialized: Record<string, unknown> = { ...stdSerializers.err(error) };
    delete serialized['rawPacket'];
    for (const field of ['message', 'stack'] as const) {
      if (typeof serialized[field] === 'string') serialized[field] = scrubTokens(serialized[field]);
    }
    return serialized;
  },
};

/** An audit field as logged: user-supplied text with its control characters escaped (SECURITY.md §30). */
function loggable(value: string | null | undefined): string | null {
  return value === null || value === undefined ? null : escapeControls(value);
}

/**
 * The structured line for one committed audit event (SECURITY.md §30): one JSON object per line, for journald or a
 * log shipper, with its chain position and hash (a copy of the chain's head outside the database). Every string that
 * a client could have chosen (usernames, user agent, request id, details) has its control characters escaped, so a
 * CR or LF in a username neither splits the line nor forges another once a reader decodes the JSON.
 */
export function logAuditEvent(logger: Logger, record: AuditRecord): void {
  const party = (p: AuditRecord['actor']) => (p === undefined ? null : { id: loggable(p.id), username: loggable(p.username) });
  const details = Object.fromEntries(
    Object.entries(record.details ?? {}).map(([key, value]) => [escapeControls(key), typeof value === 'string' ? escapeControls(value) : value]),
  );
  logger.info(
    {
      audit: {
        seq: record.seq,
        hash: record.hash,
        type: record.type,
        outcome: record.outcome,
        occurred_at: new Date(record.occurredAt).toISOString(),
        actor: party(record.actor),
        subject: party(record.subject),
        ip: loggable(record.ip),
        user_agent: loggable(record.userAgent),
        request_id: loggable(record.requestId),
        details,
      },
    },
    'audit event',
  );
}
