import { createHash } from 'node:crypto';

/**
 * The audit chain's encoding (SECURITY.md §31). Each row's `hash` is SHA-256, in lowercase hex, over the UTF-8 bytes
 * of one JSON array holding, in this order:
 *
 *   [chain_version, seq, occurred_at, type, outcome, actor_id, actor_username, subject_id, subject_username, ip,
 *    user_agent, request_id, details, prev_hash]
 *
 * every column as stored (`details` is the stored JSON text, hashed as a string; absent values are null), and
 * `prev_hash` the hash of the row before it in `seq` order (the anchor's after a prune, GENESIS_HASH for the first
 * row ever). JSON.stringify makes the encoding unambiguous (strings quoted and escaped, numbers in one form), and the
 * leading version lets a later encoding coexist with this one. Version 1 never changes: rows hashed with it, and
 * migration 0009 that hashed the rows written before it, depend on it.
 */
export const CHAIN_VERSION = 1;

/** The `prev_hash` of the first row ever written. */
export const GENESIS_HASH = '0'.repeat(64);

/** The columns the hash covers, as the database stores them. */
export interface ChainedColumns {
  readonly chain_version: number;
  readonly seq: number;
  readonly occurred_at: number;
  readonly type: string;
  readonly outcome: string;
  readonly actor_id: string | null;
  readonly actor_username: string | null;
  readonly subject_id: string | null;
  readonly subject_username: string | null;
  readonly ip: string | null;
  readonly user_agent: string | null;
  readonly request_id: string | null;
  readonly details: string;
  readonly prev_hash: string;
}

export function chainHash(row: ChainedColumns): string {
  if (row.chain_version !== 1) throw new Error(`audit row ${row.seq}: unknown chain version ${row.chain_version}`);
  const encoded = JSON.stringify([
    row.chain_version,
    Number(row.seq),
    Number(row.occurred_at),
    row.type,
    row.outcome,
    row.actor_id,
    row.actor_username,
    row.subject_id,
    row.subject_username,
    row.ip,
    row.user_agent,
    row.request_id,
    row.details,
    row.prev_hash,
  ]);
  return createHash('sha256').update(encoded, 'utf8').digest('hex');
}

/**
 * A text column's value as both databases give it back, so the hash computed before the insert is the hash of what
 * is read later: PostgreSQL stores no lone surrogate (the driver sends U+FFFD) and no NUL, so neither may reach it.
 */
export function storableText(value: string): string;
export function storableText(value: string | null): string | null;
export function storableText(value: string | null): string | null {
  return value === null ? null : value.toWellFormed().replaceAll('\u0000', '\uFFFD');
}
