import { createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { TOKEN_ALGORITHM } from '@mcias/client/token-rules';
import type { JWK } from 'jose';
// jose's narrow entry points: its root module loads every JOSE feature (JWE, JWKS fetching, ...), which stays resident.
import { calculateJwkThumbprint } from 'jose/jwk/thumbprint';
import { auditEvent } from './audit.ts';
import type { Clock } from './clock.ts';
import { assertSealerCurrent } from './master-key.ts';
import type { RequestContext, SigningKeyRecord } from './model.ts';
import type { Store } from './ports.ts';
import type { Sealer } from './sealing.ts';

export { TOKEN_ALGORITHM };
/** How often an unknown `kid` may send us back to the database (another instance may have rotated). */
const RELOAD_INTERVAL_MS = 1_000;
/** How long a signing key is used before checking whether another instance rotated to a newer one. */
const SIGNING_REFRESH_MS = 10_000;

interface LoadedKey {
  readonly record: SigningKeyRecord;
  readonly publicKey: KeyObject;
}

/**
 * The server's Ed25519 signing keys. Private keys live in the database sealed under the master key; the newest
 * unretired key signs. Verification keys come only from here, never from a token's own headers (SECURITY.md §16).
 * Rotation retires the current key; a retired key keeps verifying, and stays in the JWKS, while any unexpired,
 * unrevoked token it signed remains, and is deleted at the next rotation or start-up after that.
 */
export class KeyRing {
  readonly #store: Store;
  readonly #sealer: Sealer;
  readonly #clock: Clock;
  #keys = new Map<string, LoadedKey>();
  #signing: { kid: string; privateKey: KeyObject } | undefined;
  #lastReload = 0;

  constructor(deps: { store: Store; sealer: Sealer; clock: Clock }) {
    this.#store = deps.store;
    this.#sealer = deps.sealer;
    this.#clock = deps.clock;
  }

  /** Creates the first key if there is none, deletes retired keys nothing needs, and loads the rest. */
  async load(): Promise<void> {
    const records = await this.#store.keys.list();
    if (!records.some((k) => k.retiredAt === null)) await this.#store.transaction((tx) => this.#create(tx, undefined));
    await this.#prune();
    await this.#reload();
  }

  async signingKey(): Promise<{ kid: string; privateKey: KeyObject }> {
    if (this.#clock.now() - this.#lastReload >= SIGNING_REFRESH_MS) await this.#reload();
    if (this.#signing === undefined) throw new Error('KeyRing.load() must run before tokens are signed');
    return this.#signing;
  }

  async verificationKey(kid: string): Promise<KeyObject | undefined> {
    const known = this.#keys.get(kid);
    if (known !== undefined) return known.publicKey;
    if (this.#clock.now() - this.#lastReload < RELOAD_INTERVAL_MS) return undefined;
    await this.#reload();
    return this.#keys.get(kid)?.publicKey;
  }

  /**
   * Every key that can still verify an unexpired token: the current one and retired ones still in use. The route is
   * public: it costs a read of the (small) key table and one indexed lookup per retired key.
   */
  async publicJwks(): Promise<JWK[]> {
    const now = this.#clock.now();
    const keys: JWK[] = [];
    for (const record of await this.#store.keys.list()) {
      if (record.retiredAt === null || (await this.#store.tokens.keyInUse(record.kid, now))) keys.push(JSON.parse(record.publicJwk) as JWK);
    }
    return keys;
  }

  /** Retires the current key and starts signing with a new one; returns the new key's id. */
  async rotate(actor: { id: string; username: string } | undefined, ctx: RequestContext | undefined): Promise<string> {
    const kid = await this.#store.transaction(async (tx) => {
      // Concurrent rotations queue here, so each retires the key the one before it created.
      await tx.lock('signing_keys');
      // A master-key rotation holds this lock too: if one committed while this waited, this key is the old one.
      await assertSealerCurrent(tx, this.#sealer);
      const retired = await tx.keys.retireAll(this.#clock.now());
      return this.#create(tx, { actor, ctx, retired });
    });
    await this.#prune();
    await this.#reload();
    return kid;
  }

  /** Deletes retired keys that no unexpired, unrevoked token needs any more. */
  async #prune(): Promise<void> {
    const now = this.#clock.now();
    for (const key of await this.#store.keys.list()) {
      if (key.retiredAt === null || (await this.#store.tokens.keyInUse(key.kid, now))) continue;
      await this.#store.transaction(async (tx) => {
        await tx.keys.delete(key.kid);
        await tx.audit.insert(auditEvent({ at: now, type: 'signing_key_deleted', details: { kid: key.kid } }));
      });
    }
  }

  async #create(
    tx: Store,
    rotation: { actor: { id: string; username: string } | undefined; ctx: RequestContext | undefined; retired: string[] } | undefined,
  ): Promise<string> {
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
    await tx.audit.insert(
      auditEvent({
        at: now,
        type: rotation === undefined ? 'signing_key_created' : 'signing_key_rotated',
        actor: rotation?.actor,
        ctx: rotation?.ctx,
        details: { kid, ...(rotation === undefined ? {} : { retired: rotation.retired.join(',') }) },
      }),
    );
    return kid;
  }

  async #reload(): Promise<void> {
    this.#lastReload = this.#clock.now();
    const records = await this.#store.keys.list();
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
