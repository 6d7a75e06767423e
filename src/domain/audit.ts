import type { Principal, RequestContext } from './model.ts';

/** Typed audit events (SECURITY.md §30). Every row is written in the transaction of the change it records. */
const AUDIT_EVENT_TYPES = [
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
