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
 *
 * Checks of one token that miss at the same moment (an app's requests when its entry has just expired) share one
 * read instead of each sending its own; a check that begins after an invalidation never joins a read that began
 * before it, so the rule above holds for it too.
 */
export class TokenCheckCache {
  readonly #entries: LRUCache<string, TokenWithAccount>;
  /** The read of each token id now on its way, with the generation it began in. */
  readonly #inFlight = new Map<string, { readonly generation: number; readonly read: Promise<TokenWithAccount | undefined> }>();
  #generation = 0;

  constructor(options: { readonly ttlMs: number; readonly max?: number }) {
    this.#entries = new LRUCache({ max: options.max ?? TOKEN_CHECK_CACHE_SIZE, ttl: options.ttlMs });
  }

  /** The remembered read of `jti`, or `load(jti)`, remembered unless an invalidation happened while it ran. */
  read(jti: string, load: (jti: string) => Promise<TokenWithAccount | undefined>): Promise<TokenWithAccount | undefined> {
    const hit = this.#entries.get(jti);
    if (hit !== undefined) return Promise.resolve(hit);
    const generation = this.#generation;
    const pending = this.#inFlight.get(jti);
    if (pending !== undefined && pending.generation === generation) return pending.read;
    const read = this.#load(jti, generation, load);
    const entry = { generation, read };
    this.#inFlight.set(jti, entry);
    // Gone once settled, unless a later read has taken its place.
    const settled = () => {
      if (this.#inFlight.get(jti) === entry) this.#inFlight.delete(jti);
    };
    read.then(settled, settled);
    return read;
  }

  async #load(jti: string, generation: number, load: (jti: string) => Promise<TokenWithAccount | undefined>): Promise<TokenWithAccount | undefined> {
    const found = await load(jti);
    if (found === undefined) return undefined;
    // Its callers share the answer: frozen whether or not it is remembered.
    const shared = freeze(found);
    if (generation === this.#generation) this.#entries.set(jti, shared);
    return shared;
  }

  /** Forgets everything, and every read now in flight. */
  invalidate(): void {
    this.#generation += 1;
    this.#entries.clear();
    this.#inFlight.clear();
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
