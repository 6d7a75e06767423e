/** Typed audit events (security.md 30). Every row is written in the transaction of the change it records. */
export const AUDIT_EVENT_TYPES = [
  'login_succeeded',
  'login_failed',
  'token_issued',
  'token_revoked',
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
  'signing_key_created',
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
