import type { Principal, RequestContext } from './model.ts';

/** Typed audit events (SECURITY.md §30). Every row is written in the transaction of the change it records. */
export const AUDIT_EVENT_TYPES = [
  'login_succeeded',
  'login_failed',
  'token_issued',
  'token_renewed',
  'token_revoked',
  'token_validation_failed',
  'account_bootstrapped',
  'account_created',
  'account_status_changed',
  'account_deleted',
  'password_changed',
  'password_reset',
  'role_created',
  'role_deleted',
  'role_granted',
  'role_revoked',
  'totp_enrollment_started',
  'totp_enabled',
  'totp_disabled',
  'totp_reset',
  'signing_key_created',
  'signing_key_rotated',
  'signing_key_deleted',
  // Throttling and lockout (SECURITY.md §9): a counter reached its lockout threshold; an administrator's unlock.
  'account_locked',
  'address_locked',
  'account_unlocked',
  // Bounded records of anonymous failures and 429 refusals: one row per address and interval (SECURITY.md §41).
  'failures_summarized',
  'audit_pruned',
  'master_key_rotated',
  'pg_credentials_set',
  'pg_credentials_read',
  'pg_credentials_deleted',
  'pg_credentials_rotated',
  'pg_credentials_rotation_failed',
  'pg_credentials_provisioned',
  'registration_created',
  'registration_deleted',
  'account_registered',
  'permission_created',
  'permission_deleted',
  'permission_granted',
  'permission_revoked',
] as const;

export type AuditEventType = (typeof AUDIT_EVENT_TYPES)[number];

export interface AuditEvent {
  readonly type: AuditEventType;
  readonly outcome: 'success' | 'failure';
  readonly occurredAt: number;
  readonly actor?: { readonly id: string; readonly username: string } | undefined;
  readonly subject?: { readonly id: string; readonly username: string } | undefined;
  readonly ip?: string | null | undefined;
  readonly userAgent?: string | null | undefined;
  readonly requestId?: string | null | undefined;
  /** Non-secret facts only: reasons, factors, role names, token ids. Never passwords, tokens, codes or hashes. */
  readonly details?: Readonly<Record<string, string | number | boolean | null>> | undefined;
}

/** An account as the audit trail names it. */
type Party = { readonly id: string; readonly username: string };

/**
 * The one builder of audit events: what happened, when, who acted on which account, and from where when a request
 * caused it (work done without a request, such as the bootstrap or a key pruned at start-up, has no `ctx`).
 */
export function auditEvent(input: {
  readonly at: number;
  readonly type: AuditEventType;
  readonly outcome?: AuditEvent['outcome'];
  readonly actor?: Party | undefined;
  readonly subject?: Party | undefined;
  readonly ctx?: RequestContext | undefined;
  readonly details?: AuditEvent['details'];
}): AuditEvent {
  return {
    type: input.type,
    outcome: input.outcome ?? 'success',
    occurredAt: input.at,
    actor: input.actor && { id: input.actor.id, username: input.actor.username },
    subject: input.subject && { id: input.subject.id, username: input.subject.username },
    ip: input.ctx?.ip,
    userAgent: input.ctx?.userAgent,
    requestId: input.ctx?.requestId,
    details: input.details,
  };
}

/** An event caused by a request: who acted (from their token; none for a login), on which account, from where. */
export function requestEvent(input: {
  readonly at: number;
  readonly ctx: RequestContext;
  readonly actor?: Principal | undefined;
  readonly subject?: Party | undefined;
  readonly type: AuditEventType;
  readonly outcome?: AuditEvent['outcome'];
  readonly details?: AuditEvent['details'];
}): AuditEvent {
  return auditEvent({ ...input, actor: input.actor?.account });
}

/** An event as the chain holds it (SECURITY.md §31): its place (`seq`), its hash and the hash of the row before it. */
export interface AuditRecord extends AuditEvent {
  readonly seq: number;
  readonly hash: string | null;
  readonly prevHash: string | null;
}

/** Which rows to read: every filter is optional; rows come in chain order, after `afterSeq`. */
export interface AuditQuery {
  readonly afterSeq: number;
  readonly limit: number;
  readonly since?: number | undefined;
  readonly until?: number | undefined;
  readonly type?: AuditEventType | undefined;
  /** An account id or username, as actor or as subject. */
  readonly account?: string | undefined;
  readonly outcome?: AuditEvent['outcome'] | undefined;
}

/** What `verify` found: the chain holds from its start to its head, or the first row where it breaks and why. */
export type ChainVerification =
  | {
      readonly ok: true;
      readonly rows: number;
      /** Where the walk started: the anchor left by the last prune, or genesis (seq 0). */
      readonly start: { readonly seq: number; readonly hash: string };
      readonly head: { readonly seq: number; readonly hash: string };
    }
  | {
      readonly ok: false;
      readonly rows: number;
      /** The first bad row (for rows missing at the end of the chain: the seq after the last one found). */
      readonly seq: number;
      readonly problem: 'content_changed' | 'missing_rows' | 'out_of_order' | 'unchained';
      readonly message: string;
    };

/**
 * Control characters in a user-supplied value (CR, LF, ESC, DEL, C1, the Unicode line and paragraph separators, the
 * bidirectional overrides) written as visible `\u{XX}` escapes, so a value cannot break a log line or a terminal row
 * into two, forge another, or repaint what is printed around it (SECURITY.md §30). A backslash is doubled, so the
 * escaped form of a value is never the escaped form of another.
 */
export function escapeControls(value: string): string {
  return value.replace(/[\\\u0000-\u001f\u007f-\u009f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069]/g, (c) =>
    c === '\\' ? '\\\\' : `\\u{${c.codePointAt(0)!.toString(16).padStart(2, '0')}}`,
  );
}
