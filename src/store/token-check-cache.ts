import { LRUCache } from 'lru-cache';
import type { TokenWithAccount } from '../domain/ports.ts';

/**
 * How many token checks one instance remembers. With a TTL of a second this is more distinct tokens than an instance
 * checks in that second; past it, the least recently used are dropped.
 */
export const TOKEN_CHECK_CACHE_SIZE = 10_000;

/**
 * The token-check read (the token's row, its account, roles and permissions), remembered by token id for a short
 * time (SECURITY.md §51). Correctness rests on two rules:
 *
 * - `invalidate` empties it. It is called after every write this instance's database handle commits (see
 *   `reportCommittedWrites` in src/store/committed-writes.ts), before that write's caller goes on, so the next check on
 *   this instance reads the database again.
 * - A read that began before an invalidation is not remembered when it ends after it: it may have seen the database
 *   before the write (a generation counter, compared before the insert).
 *
 * Other instances' writes are seen when an entry expires: after at most the TTL. A token that was not found is not
 * remembered. Entries are frozen, since every request that hits one shares it.
 */
export class TokenCheckCache {
  readonly #entries: LRUCache<string, TokenWithAccount>;
  #generation = 0;

  constructor(options: { readonly ttlMs: number; readonly max?: number }) {
    this.#entries = new LRUCache({ max: options.max ?? TOKEN_CHECK_CACHE_SIZE, ttl: options.ttlMs });
  }

  /** The remembered read of `jti`, or `load(jti)`, remembered unless an invalidation happened while it ran. */
  async read(jti: string, load: (jti: string) => Promise<TokenWithAccount | undefined>): Promise<TokenWithAccount | undefined> {
    const hit = this.#entries.get(jti);
    if (hit !== undefined) return hit;
    const generation = this.#generation;
    const found = await load(jti);
    if (found !== undefined && generation === this.#generation) this.#entries.set(jti, freeze(found));
    return found;
  }

  /** Forgets everything, and every read now in flight. */
  invalidate(): void {
    this.#generation += 1;
    this.#entries.clear();
  }

  /** How many reads are remembered (for tests and diagnostics). */
  get size(): number {
    return this.#entries.size;
  }
}

function freeze(found: TokenWithAccount): TokenWithAccount {
  for (const grant of found.permissions) Object.freeze(grant);
  Object.freeze(found.permissions);
  Object.freeze(found.roles);
  Object.freeze(found.token);
  Object.freeze(found.account);
  return Object.freeze(found);
}
