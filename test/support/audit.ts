import assert from 'node:assert/strict';
import type { Harness } from './harness.ts';

/** Reading the audit trail in tests: rows by type, rows written since a point, and the no-secrets check (SECURITY.md §30). */

export interface AuditRow {
  readonly seq: number;
  readonly type: string;
  readonly outcome: string;
  readonly actor_username: string | null;
  readonly subject_username: string | null;
  readonly request_id: string | null;
  readonly details: Record<string, unknown>;
  /** The whole row as stored, for "contains nothing secret" checks. */
  readonly raw: string;
}

export async function auditRows(h: Harness, options: { type?: string; after?: number } = {}): Promise<AuditRow[]> {
  let query = h.runtime.database.db.selectFrom('audit_events').selectAll().orderBy('seq');
  if (options.type !== undefined) query = query.where('type', '=', options.type);
  if (options.after !== undefined) query = query.where('seq', '>', options.after);
  const rows = await query.execute();
  return rows.map((row) => ({
    seq: Number(row.seq),
    type: row.type,
    outcome: row.outcome,
    actor_username: row.actor_username,
    subject_username: row.subject_username,
    request_id: row.request_id,
    details: JSON.parse(row.details) as Record<string, unknown>,
    raw: JSON.stringify(row, (_key, value: unknown) => (typeof value === 'bigint' ? Number(value) : value)),
  }));
}

/** The sequence number of the newest audit row (0 when there is none): pass it as `after` to see what came next. */
export async function lastAuditSeq(h: Harness): Promise<number> {
  const row = await h.runtime.database.db
    .selectFrom('audit_events')
    .select((eb) => eb.fn.max('seq').as('seq'))
    .executeTakeFirst();
  return Number(row?.seq ?? 0);
}

/**
 * The token validation failures written since `after` (SECURITY.md §41): the current interval's summary is flushed
 * first, then each `failures_summarized` row's `token_validation_failed.<reason>` counts are expanded into reasons,
 * one per failure, sorted. Returns the rows too, for checks on what they hold.
 */
export async function validationFailures(h: Harness, after: number): Promise<{ reasons: string[]; rows: AuditRow[] }> {
  await h.runtime.services.summaries.flush();
  const rows = await auditRows(h, { after });
  const reasons: string[] = [];
  for (const row of rows.filter((r) => r.type === 'failures_summarized')) {
    for (const [key, count] of Object.entries(row.details)) {
      const reason = /^token_validation_failed\.(.+)$/.exec(key)?.[1];
      if (reason !== undefined) for (let i = 0; i < Number(count); i++) reasons.push(reason);
    }
  }
  return { reasons: reasons.sort(), rows };
}

/** Compact JWS text: `header.payload` in base64url, the header starting with `{"` (`eyJ`). */
const JWT_SHAPED = /eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}/;

/**
 * No audit row holds a token (whole, or its signature), anything shaped like a JWT, a password hash, or any of the
 * given secrets. Token ids (`jti`) are not secret and may appear.
 */
export async function assertAuditHasNoSecrets(h: Harness, tokens: readonly string[], secrets: readonly string[] = []): Promise<void> {
  const rows = await auditRows(h);
  assert.ok(rows.length > 0, 'the audit trail is empty');
  const needles = [
    ...tokens.filter((t) => t.length >= 20),
    ...tokens.map((t) => t.split('.')[2] ?? '').filter((s) => s.length >= 20),
    ...secrets.filter((s) => s.length > 0),
    '$scrypt$',
  ];
  for (const row of rows) {
    assert.doesNotMatch(row.raw, JWT_SHAPED, `audit row ${row.seq} (${row.type}) holds a token`);
    assert.doesNotMatch(row.raw, /password_hash|private_key|totp_secret/i, `audit row ${row.seq} (${row.type}) names a secret field`);
    for (const needle of needles) assert.ok(!row.raw.includes(needle), `audit row ${row.seq} (${row.type}) holds a secret`);
  }
}
