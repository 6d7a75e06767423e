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

  /**
   * A keyed digest for secrets that are checked but never read back (recovery codes): HMAC-SHA256 under a key
   * derived from the master key for this purpose alone, so a database dump is not enough to test guesses offline.
   */
  digest(purpose: string, value: string): string {
    const key = Buffer.from(hkdfSync('sha256', this.#key, Buffer.alloc(0), `mcias digest v${VERSION}: ${purpose}`, 32));
    return createHmac('sha256', key).update(value, 'utf8').digest('base64url');
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
