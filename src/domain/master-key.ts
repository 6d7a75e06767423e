import { randomBytes, timingSafeEqual } from 'node:crypto';
import { auditEvent } from './audit.ts';
import type { Clock } from './clock.ts';
import { MciasError } from './errors.ts';
import type { SealedValue, Store } from './ports.ts';
import { DIGEST_KEY_BYTES, DIGEST_PURPOSES, DigestKeys, Sealer, derivedDigestKey, digestKeyContext, type DigestPurpose } from './sealing.ts';

/**
 * The master key and the database, together (SECURITY.md §24): a server starts only with the master key its
 * database was sealed with, and `mciassrv keys rotate-master` re-seals every sealed value under a new one at once.
 */

/** What opening a database with a master key gives: the sealer, and the digest keys stored under it. */
export interface Unlocked {
  readonly sealer: Sealer;
  readonly digests: DigestKeys;
}

const REPLACE_HINT =
  'if "mciassrv keys rotate-master" was run on this database, the master key must be replaced by the new one it was given';

/**
 * Opens the database's digest keys with this master key, and refuses a key that does not open them, before
 * anything is served: the digest keys are the check value. A database without them yet (a new one, or one from
 * before they were stored) gets them here, once, under the master_key lock, and only after every value already
 * sealed there has opened with this key, so that a wrong key cannot leave rows behind that the right one refuses.
 * A purpose with digests already stored keeps the key those were made with (derived from this master key); one
 * without any gets a random key.
 */
export async function unlock(store: Store, masterKey: Uint8Array, clock: Clock): Promise<Unlocked> {
  const sealer = new Sealer(masterKey);
  let stored = await store.sealed.digestKeys();
  if (DIGEST_PURPOSES.some((p) => !stored.has(p))) {
    await store.transaction(async (tx) => {
      await tx.lock('master_key');
      const present = await tx.sealed.digestKeys();
      const missing = DIGEST_PURPOSES.filter((p) => !present.has(p));
      if (missing.length === 0) return;
      for (const { values } of await tx.sealed.list()) for (const value of values) openOrRefuse(sealer, value, 'is this the master key this database was created with?');
      for (const purpose of missing) {
        const key = (await tx.sealed.hasDigests(purpose)) ? derivedDigestKey(masterKey, purpose) : randomBytes(DIGEST_KEY_BYTES);
        await tx.sealed.insertDigestKey(purpose, sealer.seal(key, digestKeyContext(purpose)), clock.now());
      }
    });
    stored = await store.sealed.digestKeys();
  }
  return { sealer, digests: new DigestKeys(openDigestKeys(sealer, stored)) };
}

/**
 * Checks, without changing anything, that this master key opens the digest keys the database has (`mciassrv config
 * check`); throws the error a start would.
 */
export async function checkMasterKey(store: Store, masterKey: Uint8Array): Promise<void> {
  await assertSealerCurrent(store, new Sealer(masterKey));
}

/**
 * The same check for a sealer already in use: a transaction about to seal a new value under a lock that a master-key
 * rotation also takes calls it after taking the lock, so that a rotation committed meanwhile makes it fail rather
 * than store a value under the old key.
 */
export async function assertSealerCurrent(store: Store, sealer: Sealer): Promise<void> {
  openDigestKeys(sealer, await store.sealed.digestKeys());
}

function openDigestKeys(sealer: Sealer, stored: ReadonlyMap<DigestPurpose, Uint8Array>): Map<DigestPurpose, Buffer> {
  const keys = new Map<DigestPurpose, Buffer>();
  for (const [purpose, sealed] of stored) {
    try {
      keys.set(purpose, sealer.open(sealed, digestKeyContext(purpose)));
    } catch (cause) {
      throw new Error(`wrong master key: it does not open this database's sealed digest keys; ${REPLACE_HINT}`, { cause });
    }
  }
  return keys;
}

/**
 * Re-seals every sealed value under `next`, in one transaction: each value is opened with `current` and sealed
 * with `next` under its own context, and a value that does not open aborts it all with its row named, nothing
 * written. The transaction first takes the bootstrap, signing_keys and master_key locks and holds off every write
 * to the tables with sealed columns, so no value is added or changed under the old key meanwhile (PostgreSQL; on
 * SQLite its write lock does that). Returns how many values it re-sealed, per column. The servers must be stopped
 * first, and started with `next` afterwards: `current` no longer opens the database.
 */
export async function rotateMasterKey(store: Store, current: Uint8Array, next: Uint8Array, clock: Clock): Promise<Map<string, number>> {
  const to = new Sealer(next);
  if (current.length === next.length && timingSafeEqual(current, next)) throw new MciasError('invalid_request', 'the new master key is the current one');
  // Refuses a current key that is not the database's, and creates the digest keys a database may not have yet.
  const { sealer: from } = await unlock(store, current, clock);
  return store.transaction(async (tx) => {
    await tx.lock('bootstrap');
    await tx.lock('signing_keys');
    await tx.sealed.lockAll();
    const counts = new Map<string, number>();
    for (const { column, values } of await tx.sealed.list()) {
      counts.set(column, 0);
      for (const value of values) {
        const plaintext = openOrRefuse(from, value, 'nothing was re-encrypted');
        await tx.sealed.replace(value, to.seal(plaintext, value.context));
        plaintext.fill(0);
        counts.set(column, (counts.get(column) ?? 0) + 1);
      }
    }
    await tx.audit.insert(auditEvent({ at: clock.now(), type: 'master_key_rotated', details: Object.fromEntries(counts) }));
    return counts;
  });
}

/** Opens one value, or throws naming its column and row (never the data). */
function openOrRefuse(sealer: Sealer, value: SealedValue, advice: string): Buffer {
  try {
    return sealer.open(value.sealed, value.context);
  } catch (cause) {
    throw new Error(`the master key does not open ${value.column} of ${value.rowId}: ${advice}`, { cause });
  }
}
