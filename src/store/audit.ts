import type { AuditEvent } from '../domain/audit.ts';
import type { AuditStore } from '../domain/ports.ts';
import type { Executor } from './executor.ts';

export class KyselyAuditStore implements AuditStore {
  readonly #db: Executor;
  constructor(db: Executor) {
    this.#db = db;
  }

  async insert(e: AuditEvent): Promise<void> {
    await this.#db
      .insertInto('audit_events')
      .values({
        occurred_at: e.occurredAt,
        type: e.type,
        outcome: e.outcome,
        actor_id: e.actor?.id ?? null,
        actor_username: e.actor?.username ?? null,
        subject_id: e.subject?.id ?? null,
        subject_username: e.subject?.username ?? null,
        ip: e.ip ?? null,
        user_agent: e.userAgent ?? null,
        request_id: e.requestId ?? null,
        details: JSON.stringify(e.details ?? {}),
      })
      .execute();
  }

  async exists(subjectId: string, type: AuditEvent['type']): Promise<boolean> {
    const row = await this.#db
      .selectFrom('audit_events')
      .select('seq')
      .where('subject_id', '=', subjectId)
      .where('type', '=', type)
      .limit(1)
      .executeTakeFirst();
    return row !== undefined;
  }
}
