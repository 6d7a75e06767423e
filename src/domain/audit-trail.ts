import { auditEvent, type AuditQuery, type AuditRecord, type ChainVerification } from './audit.ts';
import type { Clock } from './clock.ts';
import { fail } from './errors.ts';
import type { Store } from './ports.ts';

/** The largest page a reader may ask for, and the default when it asks for none. */
export const AUDIT_PAGE_MAX = 1000;
const AUDIT_PAGE_DEFAULT = 100;
/** Rows deleted per statement while pruning, so no transaction grows with the table. */
const PRUNE_BATCH = 5000;

/**
 * The audit trail as a whole (SECURITY.md §31): reading it in chain order, verifying the chain, and pruning it behind
 * an anchor. Writing stays where the changes are (each service's own transaction); this never writes an event but its
 * own `audit_pruned`.
 */
export class AuditTrail {
  readonly #store: Store;
  readonly #clock: Clock;
  readonly #retentionMs: number | null;

  constructor(deps: { store: Store; clock: Clock; retentionMs: number | null }) {
    this.#store = deps.store;
    this.#clock = deps.clock;
    this.#retentionMs = deps.retentionMs;
  }

  /** One page of rows after the cursor (a seq), and the cursor after them; an empty page keeps the cursor. */
  async list(query: Omit<AuditQuery, 'limit'> & { limit?: number | undefined }): Promise<{ records: AuditRecord[]; next: number; more: boolean }> {
    const limit = query.limit ?? AUDIT_PAGE_DEFAULT;
    if (!Number.isInteger(limit) || limit < 1 || limit > AUDIT_PAGE_MAX) fail('invalid_request', `limit must be 1 to ${AUDIT_PAGE_MAX}`);
    if (query.since !== undefined && query.until !== undefined && query.until <= query.since) fail('invalid_request', 'until must be after since');
    // One more than asked: whether another page exists, without a count.
    const rows = await this.#store.audit.list({ ...query, limit: limit + 1 });
    const records = rows.slice(0, limit);
    return { records, next: records.at(-1)?.seq ?? query.afterSeq, more: rows.length > limit };
  }

  verify(): Promise<ChainVerification> {
    return this.#store.audit.verify();
  }

  /**
   * Deletes the events older than the retention (none when it is forever), moving the anchor first and recording
   * `audit_pruned` in that same transaction, so the chain that remains verifies from the anchor.
   */
  async prune(): Promise<{ throughSeq: number | undefined; deleted: number } | undefined> {
    if (this.#retentionMs === null) return undefined;
    const now = this.#clock.now();
    const anchor = await this.#store.transaction(async (tx) => {
      const moved = await tx.audit.advanceAnchor(now - this.#retentionMs!, now);
      if (moved !== undefined) {
        await tx.audit.insert(auditEvent({ at: now, type: 'audit_pruned', details: { through_seq: moved.seq, anchor_hash: moved.hash } }));
      }
      return moved;
    });
    // Deleted after the anchor moved, in batches: rows behind the anchor are outside the chain whether or not they are gone yet.
    let deleted = 0;
    for (let n = -1; n !== 0; deleted += n) n = await this.#store.audit.deleteBehindAnchor(PRUNE_BATCH);
    // Rows can be left behind an earlier anchor by a prune that stopped midway: they go now, the anchor stays.
    return anchor === undefined && deleted === 0 ? undefined : { throughSeq: anchor?.seq, deleted };
  }
}
