import { createPublicKey, type KeyObject } from 'node:crypto';
import { TOKEN_ALGORITHM } from './token-rules.ts';
import type { Jwks } from './types.ts';

/** The least time between two fetches of the JWKS caused by unknown `kid`s: forged tokens cannot make us hammer the server. */
export const DEFAULT_JWKS_REFETCH_FLOOR_MS = 30_000;
/** How long a fetched JWKS is used before it is fetched again anyway (keys retire and are deleted on the server). */
const DEFAULT_JWKS_MAX_AGE_MS = 10 * 60_000;

/**
 * The server's public keys, fetched from `GET /.well-known/jwks.json` over the client's verified TLS, kept by `kid`.
 * A `kid` not in the copy causes one refetch (a rotation on the server), but never sooner than `refetchFloorMs`
 * after the last fetch; concurrent lookups share one fetch. Only Ed25519 keys for EdDSA are taken.
 */
export class JwksCache {
  readonly #fetch: () => Promise<Jwks>;
  readonly #now: () => number;
  readonly #refetchFloorMs: number;
  readonly #maxAgeMs: number;
  #keys = new Map<string, KeyObject>();
  #fetchedAt = Number.NEGATIVE_INFINITY;
  #inFlight: Promise<void> | undefined;

  constructor(options: { fetch: () => Promise<Jwks>; now: () => number; refetchFloorMs?: number; maxAgeMs?: number }) {
    this.#fetch = options.fetch;
    this.#now = options.now;
    this.#refetchFloorMs = options.refetchFloorMs ?? DEFAULT_JWKS_REFETCH_FLOOR_MS;
    this.#maxAgeMs = options.maxAgeMs ?? DEFAULT_JWKS_MAX_AGE_MS;
  }

  /** The key with this id, fetching the JWKS when the copy is stale or lacks it (subject to the floor). */
  async key(kid: string): Promise<KeyObject | undefined> {
    const age = this.#now() - this.#fetchedAt;
    if (age >= this.#maxAgeMs || (!this.#keys.has(kid) && age >= this.#refetchFloorMs)) await this.#refresh();
    return this.#keys.get(kid);
  }

  #refresh(): Promise<void> {
    this.#inFlight ??= (async () => {
      try {
        const jwks = await this.#fetch();
        const keys = new Map<string, KeyObject>();
        for (const jwk of Array.isArray(jwks.keys) ? jwks.keys : []) {
          if (jwk.kty !== 'OKP' || jwk.crv !== 'Ed25519' || jwk.alg !== TOKEN_ALGORITHM || typeof jwk.kid !== 'string') continue;
          if (jwk.use !== undefined && jwk.use !== 'sig') continue;
          keys.set(jwk.kid, createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: jwk.x }, format: 'jwk' }));
        }
        this.#keys = keys;
      } finally {
        // A failed fetch counts too, so an unreachable server is not asked again on every request.
        this.#fetchedAt = this.#now();
        this.#inFlight = undefined;
      }
    })();
    return this.#inFlight;
  }
}
