import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type, type Static } from 'typebox';
import { AUDIT_EVENT_TYPES, type AuditRecord } from '../../domain/audit.ts';
import { AUDIT_PAGE_MAX } from '../../domain/audit-trail.ts';
import { fail } from '../../domain/errors.ts';
import type { AppServices } from '../services.ts';
import { rfc3339 } from '../schemas.ts';

/** RFC 3339 with a zone (`Z` or an offset), fractions allowed: what `since` and `until` take. */
const RFC3339 = '^\\d{4}-\\d{2}-\\d{2}T\\d{2}:\\d{2}:\\d{2}(\\.\\d{1,9})?(Z|[+-]\\d{2}:\\d{2})$';

const Party = Type.Union([Type.Object({ id: Type.String(), username: Type.String() }, { additionalProperties: false }), Type.Null()]);

const AuditEventView = Type.Object(
  {
    seq: Type.Integer({ description: 'position in the chain' }),
    occurred_at: Type.String({ format: 'date-time' }),
    type: Type.String(),
    outcome: Type.Union([Type.Literal('success'), Type.Literal('failure')]),
    actor: Party,
    subject: Party,
    ip: Type.Union([Type.String(), Type.Null()]),
    user_agent: Type.Union([Type.String(), Type.Null()]),
    request_id: Type.Union([Type.String(), Type.Null()]),
    details: Type.Record(Type.String(), Type.Union([Type.String(), Type.Number(), Type.Boolean(), Type.Null()])),
    hash: Type.Union([Type.String(), Type.Null()], { description: "the row's chain hash (SECURITY.md §31)" }),
  },
  { additionalProperties: false },
);

const AuditQuery = Type.Object(
  {
    since: Type.Optional(Type.String({ pattern: RFC3339, description: 'events at or after this time (RFC 3339)' })),
    until: Type.Optional(Type.String({ pattern: RFC3339, description: 'events before this time (RFC 3339)' })),
    type: Type.Optional(Type.Union(AUDIT_EVENT_TYPES.map((t) => Type.Literal(t)))),
    account: Type.Optional(Type.String({ minLength: 1, maxLength: 64, description: 'a username or account id, as actor or subject' })),
    outcome: Type.Optional(Type.Union([Type.Literal('success'), Type.Literal('failure')])),
    cursor: Type.Optional(Type.String({ pattern: '^[A-Za-z0-9_-]{1,64}$', description: 'next_cursor of the previous page' })),
    limit: Type.Optional(Type.String({ pattern: '^[0-9]{1,4}$', description: `events per page, 1 to ${AUDIT_PAGE_MAX} (default 100)` })),
  },
  { additionalProperties: false },
);

/** The cursor is opaque to clients: a versioned position in the chain, base64url. */
function encodeCursor(seq: number): string {
  return Buffer.from(`a1:${seq}`).toString('base64url');
}

function decodeCursor(cursor: string | undefined): number {
  if (cursor === undefined) return 0;
  const match = /^a1:(\d{1,15})$/.exec(Buffer.from(cursor, 'base64url').toString('latin1'));
  if (match === null) fail('invalid_request', 'cursor is not one this server gave out');
  return Number(match[1]);
}

function instant(text: string | undefined, name: string): number | undefined {
  if (text === undefined) return undefined;
  const ms = Date.parse(text);
  if (Number.isNaN(ms)) fail('invalid_request', `${name} is not a valid time`);
  return ms;
}

function auditEventView(record: AuditRecord): Static<typeof AuditEventView> {
  const party = (p: AuditRecord['actor']) => (p === undefined ? null : { id: p.id, username: p.username });
  return {
    seq: record.seq,
    occurred_at: rfc3339(record.occurredAt),
    type: record.type,
    outcome: record.outcome,
    actor: party(record.actor),
    subject: party(record.subject),
    ip: record.ip ?? null,
    user_agent: record.userAgent ?? null,
    request_id: record.requestId ?? null,
    details: { ...record.details },
    hash: record.hash,
  };
}

export const auditRoutes: FastifyPluginAsyncTypebox<AppServices> = async (app, services) => {
  app.get(
    '/v1/audit',
    {
      config: { access: 'admin' },
      schema: {
        tags: ['audit'],
        summary: 'Read the audit trail in chain order, filtered, a page at a time',
        querystring: AuditQuery,
        response: { 200: Type.Object({ events: Type.Array(AuditEventView), next_cursor: Type.String(), more: Type.Boolean() }, { additionalProperties: false }) },
      },
    },
    async (request) => {
      const q = request.query;
      const page = await services.audit.list({
        afterSeq: decodeCursor(q.cursor),
        limit: q.limit === undefined ? undefined : Number(q.limit),
        since: instant(q.since, 'since'),
        until: instant(q.until, 'until'),
        type: q.type,
        account: q.account?.toLowerCase(),
        outcome: q.outcome,
      });
      return { events: page.records.map(auditEventView), next_cursor: encodeCursor(page.next), more: page.more };
    },
  );
};
