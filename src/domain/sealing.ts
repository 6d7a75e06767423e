import { createCipheriv, createDecipheriv, createHmac, hkdfSync, randomBytes } from 'node:crypto';
import { MciasError } from './errors.ts';

/**
 * Authenticated encryption of secrets at rest (SECURITY.md §23): AES-256-GCM under the master key, a fresh 96-bit
 * nonce per encryption, and the identity of the row and column bound as additional data, so a ciphertext copied
 * to another row or column does not decrypt.
 *
 * Layout: version (1 byte) || nonce (12) || ciphertext || tag (16).
 */
const VERSION = 1;
const NONCE_BYTES = 12;
const TAG_BYTES = 16;
export const MASTER_KEY_BYTES = 32;

/** Where a sealed value lives, e.g. `{ table: 'signing_keys', column: 'private_key', id: kid }`. */
export interface SealContext {
  readonly table: string;
  readonly column: string;
  readonly id: string;
}

export class Sealer {
  readonly #key: Buffer;

  constructor(masterKey: Uint8Array) {
    if (masterKey.length !== MASTER_KEY_BYTES) throw new Error(`the master key must be ${MASTER_KEY_BYTES} bytes`);
    this.#key = Buffer.from(masterKey);
  }

  seal(plaintext: Uint8Array, context: SealContext): Buffer {
    const nonce = randomBytes(NONCE_BYTES);
    const cipher = createCipheriv('aes-256-gcm', this.#key, nonce, { authTagLength: TAG_BYTES });
    cipher.setAAD(additionalData(context));
    const body = Buffer.concat([cipher.update(plaintext), cipher.final()]);
    return Buffer.concat([Buffer.of(VERSION), nonce, body, cipher.getAuthTag()]);
  }

  open(sealed: Uint8Array, context: SealContext): Buffer {
    const data = Buffer.from(sealed);
    if (data.length < 1 + NONCE_BYTES + TAG_BYTES || data[0] !== VERSION) throw unreadable(context);
    const nonce = data.subarray(1, 1 + NONCE_BYTES);
    const tag = data.subarray(data.length - TAG_BYTES);
    const body = data.subarray(1 + NONCE_BYTES, data.length - TAG_BYTES);
    try {
      const decipher = createDecipheriv('aes-256-gcm', this.#key, nonce, { authTagLength: TAG_BYTES });
      decipher.setAAD(additionalData(context));
      decipher.setAuthTag(tag);
      return Buffer.concat([decipher.update(body), decipher.final()]);
    } catch (cause) {
      throw unreadable(context, cause);
    }
  }
}

/** JSON keeps the parts apart, so no two contexts can produce the same additional data, whatever their ids hold. */
function additionalData(context: SealContext): Buffer {
  return Buffer.from(JSON.stringify(['mcias', VERSION, context.table, context.column, context.id]), 'utf8');
}

function unreadable(context: SealContext, cause?: unknown): MciasError {
  // The message names the row, never the data.
  return new MciasError('internal', `sealed ${context.table}.${context.column} of ${context.id} failed authentication`, { cause });
}

/**
 * What keyed digests are for; each purpose has its own digest key. The names are part of the stored data (the
 * `digest_keys` rows, and the derivation of keys made before they were stored): never rename one.
 */
export const DIGEST_PURPOSES = ['recovery codes', 'registration codes'] as const;
export type DigestPurpose = (typeof DIGEST_PURPOSES)[number];
export const DIGEST_KEY_BYTES = 32;

/** Where a purpose's digest key is sealed: its row in `digest_keys`. */
export function digestKeyContext(purpose: DigestPurpose): SealContext {
  return { table: 'digest_keys', column: 'sealed_key', id: purpose };
}

/**
 * The digest key that versions before stored digest keys derived from the master key on every use. It is computed
 * once, when a database that already holds digests of this purpose gets its stored key, so those digests keep
 * verifying; from then on the stored key is used, and a new master key does not change it (SECURITY.md §24).
 */
export function derivedDigestKey(masterKey: Uint8Array, purpose: DigestPurpose): Buffer {
  return Buffer.from(hkdfSync('sha256', masterKey, Buffer.alloc(0), `mcias digest v${VERSION}: ${purpose}`, DIGEST_KEY_BYTES));
}

/**
 * Keyed digests for secrets that are checked but never read back (recovery codes): HMAC-SHA256 under a random
 * key per purpose, stored sealed under the master key, so a database dump alone is not enough to test guesses
 * offline, and rotating the master key (which re-seals these keys) keeps every digest verifiable.
 */
export class DigestKeys {
  readonly #keys: ReadonlyMap<DigestPurpose, Buffer>;

  constructor(keys: ReadonlyMap<DigestPurpose, Uint8Array>) {
    for (const purpose of DIGEST_PURPOSES) {
      if (keys.get(purpose)?.length !== DIGEST_KEY_BYTES) throw new Error(`the digest key for ${purpose} must be ${DIGEST_KEY_BYTES} bytes`);
    }
    this.#keys = new Map([...keys].map(([purpose, key]) => [purpose, Buffer.from(key)]));
  }

  digest(purpose: DigestPurpose, value: string): string {
    return createHmac('sha256', this.#keys.get(purpose) as Buffer).update(value, 'utf8').digest('base64url');
  }
}

