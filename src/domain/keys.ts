import { createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { calculateJwkThumbprint, type JWK } from 'jose';
import type { Clock } from './clock.ts';
import type { SigningKeyRecord } from './model.ts';
import type { Store } from './ports.ts';
import type { Sealer } from './sealing.ts';

export const TOKEN_ALGORITHM = 'EdDSA';
/** How often an unknown `kid` may send us back to the database (another instance may have rotated). */
const RELOAD_INTERVAL_MS = 1_000;

interface LoadedKey {
  readonly record: SigningKeyRecord;
  readonly publicKey: KeyObject;
}

/**
 * The server's Ed25519 signing keys. Private keys live in the database sealed under the master key; the newest
 * unretired key signs. Verification keys come only from here, never from a token's own headers (security.md 16).
 */
export class KeyRing {
  readonly #store: Store;
  readonly #sealer: Sealer;
  readonly #clock: Clock;
  readonly #maxTokenLifetimeMs: number;
  #keys = new Map<string, LoadedKey>();
  #signing: { kid: string; privateKey: KeyObject } | undefined;
  #lastReload = 0;

  constructor(deps: { store: Store; sealer: Sealer; clock: Clock; maxTokenLifetimeMs: number }) {
    this.#store = deps.store;
    this.#sealer = deps.sealer;
    this.#clock = deps.clock;
    this.#maxTokenLifetimeMs = deps.maxTokenLifetimeMs;
  }

  /** Loads every key, creating the first one if the database has none. */
  async load(): Promise<void> {
    let records = await this.#store.keys.list();
    if (!records.some((k) => k.retiredAt === null)) {
      await this.#store.transaction((tx) => this.#create(tx));
      records = await this.#store.keys.list();
    }
    this.#install(records);
  }

  signingKey(): { kid: string; privateKey: KeyObject } {
    if (this.#signing === undefined) throw new Error('KeyRing.load() must run before tokens are signed');
    return this.#signing;
  }

  async verificationKey(kid: string): Promise<KeyObject | undefined> {
    const known = this.#keys.get(kid);
    if (known !== undefined) return known.publicKey;
    const now = this.#clock.now();
    if (now - this.#lastReload < RELOAD_INTERVAL_MS) return undefined;
    this.#lastReload = now;
    this.#install(await this.#store.keys.list());
    return this.#keys.get(kid)?.publicKey;
  }

  /** Every key that can still verify an unexpired token. */
  publicJwks(): JWK[] {
    const now = this.#clock.now();
    return [...this.#keys.values()]
      .filter(({ record }) => record.retiredAt === null || record.retiredAt + this.#maxTokenLifetimeMs > now)
      .map(({ record }) => JSON.parse(record.publicJwk) as JWK);
  }

  async #create(tx: Store): Promise<void> {
    const { publicKey, privateKey } = generateKeyPairSync('ed25519');
    const jwk = publicKey.export({ format: 'jwk' }) as JWK;
    const kid = await calculateJwkThumbprint(jwk);
    const now = this.#clock.now();
    const sealed = this.#sealer.seal(privateKey.export({ format: 'der', type: 'pkcs8' }), {
      table: 'signing_keys',
      column: 'private_key',
      id: kid,
    });
    await tx.keys.insert({
      kid,
      algorithm: TOKEN_ALGORITHM,
      publicJwk: JSON.stringify({ ...jwk, kid, alg: TOKEN_ALGORITHM, use: 'sig' }),
      privateKey: sealed,
      createdAt: now,
      retiredAt: null,
    });
    await tx.audit.insert({ type: 'signing_key_created', outcome: 'success', occurredAt: now, details: { kid } });
  }

  #install(records: SigningKeyRecord[]): void {
    const keys = new Map<string, LoadedKey>();
    for (const record of records) {
      const jwk = JSON.parse(record.publicJwk) as JWK;
      keys.set(record.kid, { record, publicKey: createPublicKey({ key: jwk as never, format: 'jwk' }) });
    }
    const newest = records.filter((k) => k.retiredAt === null).at(-1);
    if (newest !== undefined && newest.kid !== this.#signing?.kid) {
      let der: Buffer;
      try {
        der = this.#sealer.open(newest.privateKey, { table: 'signing_keys', column: 'private_key', id: newest.kid });
      } catch (cause) {
        throw new Error('cannot unseal the token signing key: is this the master key this database was created with?', { cause });
      }
      this.#signing = { kid: newest.kid, privateKey: createPrivateKey({ key: der, format: 'der', type: 'pkcs8' }) };
    }
    this.#keys = keys;
  }
}
