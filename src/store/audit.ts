import type { Selectable } from 'kysely';
import type { AuditEvent, AuditEventType, AuditQuery, AuditRecord, ChainVerification } from '../domain/audit.ts';
import type { AuditStore } from '../domain/ports.ts';
import { CHAIN_VERSION, GENESIS_HASH, chainHash, storableText, type ChainedColumns } from './audit-chain.ts';
import type { Executor } from './executor.ts';
import { lockRow } from './locks.ts';
import type { AuditEventsTable } from './schema.ts';

type AuditRow = Selectable<AuditEventsTable>;

/** Where an event goes: inside a transaction, onto the list appended at commit; outside, into a transaction of its own. */
export type AuditSink = { readonly pending: AuditEvent[] } | { readonly outside: (event: AuditEvent) => Promise<void> };

export class KyselyAuditStore implements AuditStore {
  readonly #db: Executor;
  readonly #sink: AuditSink;
  constructor(db: Executor, sink: AuditSink) {
    this.#db = db;
    this.#sink = sink;
  }

  async insert(e: AuditEvent): Promise<void> {
    if ('pending' in this.#sink) this.#sink.pending.push(e);
    else await this.#sink.outside(e);
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

  async list(query: AuditQuery): Promise<AuditRecord[]> {
    let select = this.#db.selectFrom('audit_events').selectAll().where('seq', '>', query.afterSeq);
    if (query.since !== undefined) select = select.where('occurred_at', '>=', query.since);
    if (query.until !== undefined) select = select.where('occurred_at', '<', query.until);
    if (query.type !== undefined) select = select.where('type', '=', query.type);
    if (query.outcome !== undefined) select = select.where('outcome', '=', query.outcome);
    const account = query.account;
    if (account !== undefined) {
      select = select.where((eb) =>
        eb.or([eb('actor_id', '=', account), eb('subject_id', '=', account), eb('actor_username', '=', account), eb('subject_username', '=', account)]),
      );
    }
    const rows = await select.orderBy('seq').limit(query.limit).execute();
    return rows.map(toRecord);
  }

  async verify(pageSize = 1000): Promise<ChainVerification> {
    const start = await this.#anchor();
    let expected = start;
    let rows = 0;
    for (;;) {
      const page = await this.#db.selectFrom('audit_events').selectAll().where('seq', '>', expected.seq).orderBy('seq').limit(pageSize).execute();
      for (const row of page) {
        const problem = checkLink(row, expected);
        if (problem !== undefined) return { ok: false, rows, ...problem };
        rows++;
        expected = { seq: Number(row.seq), hash: row.hash as string };
      }
      if (page.length < pageSize) return { ok: true, rows, start, head: expected };
    }
  }

  async advanceAnchor(before: number, now: number): Promise<{ seq: number; hash: string } | undefined> {
    await lockRow(this.#db, 'audit');
    const current = await this.#anchor();
    // The prefix to prune ends before the first recent row, so no recent row goes even if clocks disagreed.
    const firstRecent = await this.#db
      .selectFrom('audit_events')
      .select((eb) => eb.fn.min('seq').as('seq'))
      .where('occurred_at', '>=', before)
      .executeTakeFirst();
    let last = this.#db.selectFrom('audit_events').select(['seq', 'hash']).where('seq', '>', current.seq);
    if (firstRecent?.seq != null) last = last.where('seq', '<', Number(firstRecent.seq));
    const row = await last.orderBy('seq', 'desc').limit(1).executeTakeFirst();
    if (row === undefined || row.hash === null) return undefined;
    const anchor = { seq: Number(row.seq), hash: row.hash };
    const values = { seq: anchor.seq, hash: anchor.hash, pruned_at: now };
    await this.#db.insertInto('audit_anchor').values({ id: 1, ...values }).onConflict((oc) => oc.column('id').doUpdateSet(values)).execute();
    return anchor;
  }

  async deleteBehindAnchor(batch: number): Promise<number> {
    const anchor = await this.#anchor();
    const victims = this.#db.selectFrom('audit_events').select('seq').where('seq', '<=', anchor.seq).orderBy('seq').limit(batch);
    const result = await this.#db.deleteFrom('audit_events').where('seq', 'in', victims).executeTakeFirst();
    return Number(result.numDeletedRows);
  }

  async #anchor(): Promise<{ seq: number; hash: string }> {
    const row = await this.#db.selectFrom('audit_anchor').select(['seq', 'hash']).where('id', '=', 1).executeTakeFirst();
    return row === undefined ? { seq: 0, hash: GENESIS_HASH } : { seq: Number(row.seq), hash: row.hash };
  }
}

/**
 * Appends events to the chain, in order, inside the transaction that produced them: takes the `audit` lock (held to
 * commit, so the head read here is still the head when this transaction commits, in every process), reads the head,
 * and inserts each event one seq after it with its hash. Returns the rows as written.
 */
export async function appendToChain(db: Executor, events: readonly AuditEvent[]): Promise<AuditRecord[]> {
  if (events.length === 0) return [];
  await lockRow(db, 'audit');
  let head = await db.selectFrom('audit_events').select(['seq', 'hash']).orderBy('seq', 'desc').limit(1).executeTakeFirst();
  head ??= await db.selectFrom('audit_anchor').select(['seq', 'hash']).where('id', '=', 1).executeTakeFirst();
  let prev = { seq: Number(head?.seq ?? 0), hash: head?.hash ?? GENESIS_HASH };
  const rows: (ChainedColumns & { outcome: AuditEvent['outcome']; hash: string })[] = [];
  for (const e of events) {
    const columns = {
      chain_version: CHAIN_VERSION,
      seq: prev.seq + 1,
      occurred_at: e.occurredAt,
      type: storableText(e.type),
      outcome: e.outcome,
      actor_id: storableText(e.actor?.id ?? null),
      actor_username: storableText(e.actor?.username ?? null),
      subject_id: storableText(e.subject?.id ?? null),
      subject_username: storableText(e.subject?.username ?? null),
      ip: storableText(e.ip ?? null),
      user_agent: storableText(e.userAgent ?? null),
      request_id: storableText(e.requestId ?? null),
      details: JSON.stringify(e.details ?? {}),
      prev_hash: prev.hash,
    };
    const hash = chainHash(columns);
    rows.push({ ...columns, hash });
    prev = { seq: columns.seq, hash };
  }
  await db.insertInto('audit_events').values(rows).execute();
  return rows.map(toRecord);
}

/** Why a row does not follow `expected` (the row before it, or the anchor), or undefined if it does. */
function checkLink(row: AuditRow, expected: { seq: number; hash: string }): { seq: number; problem: Extract<ChainVerification, { ok: false }>['problem']; message: string } | undefined {
  const seq = Number(row.seq);
  if (row.hash === null || row.prev_hash === null) {
    return { seq, problem: 'unchained', message: `row ${seq} has no hash: it was not written by the chained append` };
  }
  if (row.prev_hash !== expected.hash) {
    if (seq !== expected.seq + 1) {
      return {
        seq,
        problem: 'missing_rows',
        message: `row ${seq} does not follow row ${expected.seq}: ${seq === expected.seq + 2 ? `row ${expected.seq + 1} is` : `rows ${expected.seq + 1} to ${seq - 1} are`} missing (deleted)`,
      };
    }
    return { seq, problem: 'out_of_order', message: `row ${seq} does not follow row ${expected.seq}: its previous-row hash is another row's (rows reordered, or one replaced)` };
  }
  if (chainHash(row as ChainedColumns) !== row.hash) {
    return { seq, problem: 'content_changed', message: `row ${seq} was changed: its content no longer matches its hash` };
  }
  return undefined;
}

function toRecord(row: AuditRow): AuditRecord {
  const party = (id: string | null, username: string | null) => (id === null || username === null ? undefined : { id, username });
  return {
    seq: Number(row.seq),
    type: row.type as AuditEventType,
    outcome: row.outcome,
    occurredAt: Number(row.occurred_at),
    actor: party(row.actor_id, row.actor_username),
    subject: party(row.subject_id, row.subject_username),
    ip: row.ip,
    userAgent: row.user_agent,
    requestId: row.request_id,
    details: JSON.parse(row.details) as AuditRecord['details'],
    hash: row.hash,
    prevHash: row.prev_hash,
  };
}
