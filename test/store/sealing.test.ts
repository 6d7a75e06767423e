import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { isMciasError } from '../../src/domain/errors.ts';
import { MASTER_KEY_BYTES, Sealer, type SealContext } from '../../src/domain/sealing.ts';
import { createRuntime } from '../../src/server.ts';
import { DIALECTS } from '../support/databases.ts';
import { USER_PASSWORD, createHarness, type Harness } from '../support/harness.ts';

/** SECURITY.md §23 and §24, for the secret that exists so far: the signing private key, sealed under the master key. */

const CONTEXT: SealContext = { table: 'signing_keys', column: 'private_key', id: 'kid-1' };

/** Every way the plaintext could show up in a dump: raw bytes, and hex / base64 / base64url text. */
function encodings(secret: Buffer): Buffer[] {
  return [secret, Buffer.from(secret.toString('hex')), Buffer.from(secret.toString('base64').replace(/=+$/, '')), Buffer.from(secret.toString('base64url'))];
}

/** The runtime may wrap the sealing failure in a friendlier message; the cause chain still has the coded error. */
function isUnsealFailure(error: unknown, kid?: string): boolean {
  for (let e: unknown = error; e instanceof Error; e = e.cause) {
    if (isMciasError(e, 'internal') && /failed authentication/.test(e.message) && (kid === undefined || e.message.includes(kid))) return true;
  }
  return false;
}

function assertNotIn(haystack: Buffer, secret: Buffer, what: string): void {
  for (const needle of encodings(secret)) assert.equal(haystack.indexOf(needle), -1, `${what} contains the plaintext private key`);
}

describe('sealing (AES-256-GCM under the master key)', () => {
  const key = randomBytes(MASTER_KEY_BYTES);
  const sealer = new Sealer(key);
  const plaintext = Buffer.from('the private key material, for example');

  test('a sealed value opens to the plaintext with the same key and context', () => {
    assert.deepEqual(sealer.open(sealer.seal(plaintext, CONTEXT), CONTEXT), plaintext);
  });

  test('sealing is randomised: the same plaintext seals differently each time, with a fresh 96-bit nonce', () => {
    const nonces = new Set<string>();
    const sealed = new Set<string>();
    for (let i = 0; i < 20; i++) {
      const box = sealer.seal(plaintext, CONTEXT);
      sealed.add(box.toString('hex'));
      nonces.add(box.subarray(1, 13).toString('hex'));
      assert.equal(box.length, 1 + 12 + plaintext.length + 16, 'version, nonce, ciphertext, tag');
      assert.equal(box.indexOf(plaintext), -1);
    }
    assert.equal(sealed.size, 20);
    assert.equal(nonces.size, 20);
  });

  test('any flipped byte (version, nonce, ciphertext, tag) fails to open', () => {
    const box = sealer.seal(plaintext, CONTEXT);
    for (let i = 0; i < box.length; i++) {
      const tampered = Buffer.from(box);
      tampered[i] = (tampered[i] as number) ^ 0x01;
      assert.throws(() => sealer.open(tampered, CONTEXT), (error) => isMciasError(error, 'internal'), `byte ${i}`);
    }
  });

  test('a truncated or empty value fails to open', () => {
    const box = sealer.seal(plaintext, CONTEXT);
    for (const cut of [box.subarray(0, box.length - 1), box.subarray(0, 29), Buffer.alloc(0)]) {
      assert.throws(() => sealer.open(cut, CONTEXT), (error) => isMciasError(error, 'internal'));
    }
  });

  test('a value moved to another row, column or table fails to open', () => {
    const box = sealer.seal(plaintext, CONTEXT);
    for (const other of [
      { ...CONTEXT, id: 'kid-2' },
      { ...CONTEXT, column: 'public_jwk' },
      { ...CONTEXT, table: 'pg_credentials' },
    ]) {
      assert.throws(() => sealer.open(box, other), (error) => isMciasError(error, 'internal'), JSON.stringify(other));
    }
  });

  test('another master key cannot open it, and the error names the row but not the data', () => {
    const box = sealer.seal(plaintext, CONTEXT);
    assert.throws(
      () => new Sealer(randomBytes(MASTER_KEY_BYTES)).open(box, CONTEXT),
      (error) => isMciasError(error, 'internal') && error.message.includes('kid-1') && !error.message.includes(plaintext.toString()),
    );
  });

  test('a master key of the wrong length is refused', () => {
    for (const length of [0, 16, 31, 33, 64]) assert.throws(() => new Sealer(randomBytes(length)), /32 bytes/);
  });
});

for (const dialect of DIALECTS) {
  describe(`the signing key at rest [${dialect}]`, () => {
    let h: Harness;
    let kid: string;
    /** The plaintext PKCS#8 DER of the signing key, and its 32-byte Ed25519 seed. */
    let der: Buffer;
    let seed: Buffer;
    const keyRows = () => h.runtime.database.db.selectFrom('signing_keys').selectAll().orderBy('created_at').execute();
    const startAnother = (masterKey: Buffer = h.masterKey) => createRuntime(h.config, { clock: h.clock, masterKey });

    before(async () => {
      h = await createHarness(dialect);
      // Some traffic, so the dump holds more than an empty database.
      await h.createAccount('sam');
      await h.login('sam', USER_PASSWORD);
      const signing = (await h.runtime.services.keys.signingKey());
      kid = signing.kid;
      der = signing.privateKey.export({ format: 'der', type: 'pkcs8' });
      seed = der.subarray(der.length - 32);
    });
    after(() => h.close());

    test('the stored private key is sealed: it opens, under the master key and its own row, to the signing key', async () => {
      const [row, ...others] = await keyRows();
      assert.equal(others.length, 0);
      assert.equal(row?.kid, kid);
      const stored = Buffer.from(row?.private_key ?? []);
      assertNotIn(stored, seed, 'the private_key column');
      assert.deepEqual(new Sealer(h.masterKey).open(stored, { table: 'signing_keys', column: 'private_key', id: kid }), der);
      assert.equal(JSON.parse(row?.public_jwk ?? '{}').d, undefined, 'the public JWK holds the private part');
    });

    test('a raw dump of the database holds no plaintext private key', async () => {
      let dump: Buffer;
      if (dialect === 'sqlite') {
        // The file itself, its write-ahead log and shared memory: everything SQLite has written.
        const file = h.db.location;
        dump = Buffer.concat([file, `${file}-wal`, `${file}-shm`].filter((f) => existsSync(f)).map((f) => readFileSync(f)));
        assert.ok(dump.indexOf(Buffer.from(kid)) >= 0, 'the dump does not contain the key row at all');
      } else {
        const { stdout } = await promisify(execFile)('pg_dump', ['--no-owner', '--dbname', h.db.location], { maxBuffer: 64 * 1024 * 1024 });
        dump = Buffer.from(stdout);
        assert.ok(dump.includes('signing_keys') && dump.includes(kid), 'the dump does not contain the key row at all');
      }
      assertNotIn(dump, seed, 'the database dump');
      assertNotIn(dump, der, 'the database dump');
    });

    test('the same master key starts another runtime on the database, with the same signing key', async () => {
      const other = await startAnother();
      try {
        assert.equal((await other.services.keys.signingKey()).kid, kid);
        assert.deepEqual((await other.services.keys.signingKey()).privateKey.export({ format: 'der', type: 'pkcs8' }), der);
      } finally {
        await other.close();
      }
    });

    test('a runtime with a different master key refuses to start, on the check value, before the signing key', async () => {
      await assert.rejects(
        startAnother(randomBytes(MASTER_KEY_BYTES)),
        (error) => isUnsealFailure(error, 'recovery codes') && /^wrong master key: it does not open this database's sealed digest keys/.test((error as Error).message),
      );
    });

    test('a runtime without a master key refuses to start', async () => {
      // The harness config points master_key_file at /nonexistent/master.key.
      await assert.rejects(createRuntime(h.config, { clock: h.clock }), /master key file .* no such file/);
    });

    test('a flipped byte in the stored private key makes the runtime refuse to start', async () => {
      const [row] = await keyRows();
      const original = Buffer.from(row?.private_key ?? []);
      for (const position of [0, 5, original.length - 20, original.length - 1]) {
        const tampered = Buffer.from(original);
        tampered[position] = (tampered[position] as number) ^ 0x80;
        await h.runtime.database.db.updateTable('signing_keys').set({ private_key: tampered }).where('kid', '=', kid).execute();
        try {
          await assert.rejects(startAnother(), (error) => isUnsealFailure(error, kid) && !String(error).includes(seed.toString('hex')), `byte ${position}`);
        } finally {
          await h.runtime.database.db.updateTable('signing_keys').set({ private_key: original }).where('kid', '=', kid).execute();
        }
      }
      const restored = await startAnother();
      await restored.close();
    });

    test('a sealed private key copied to another key row does not open there', async () => {
      const [row] = await keyRows();
      assert.ok(row);
      await h.runtime.database.db
        .insertInto('signing_keys')
        .values({ ...row, kid: 'copied-key', created_at: row.created_at + 1_000 })
        .execute();
      try {
        // The newest unretired key signs, so the new runtime must open the copy, under its own row's identity.
        await assert.rejects(startAnother(), (error) => isUnsealFailure(error, 'copied-key'));
      } finally {
        await h.runtime.database.db.deleteFrom('signing_keys').where('kid', '=', 'copied-key').execute();
      }
    });
  });
}
