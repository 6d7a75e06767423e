import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { readMasterKeyFile } from '../../src/config/files.ts';
import { loadConfig } from '../../src/config/load.ts';
import { Sealer } from '../../src/domain/sealing.ts';
import { openDatabase, type Database } from '../../src/store/database.ts';
import { DIALECTS, createTestDatabase, type TestDatabase } from '../support/databases.ts';
import { ADMIN_PASSWORD, USER_PASSWORD } from '../support/harness.ts';
import { httpsRequest, login, runBounded } from '../support/process-tools.ts';
import { MCIASSRV, run, serveDataDir, startServerProcess, type ServerProcess } from '../support/server-process.ts';
import { Authenticator } from '../support/totp.ts';

/**
 * SECURITY.md §24 with the real binary: `mciassrv keys rotate-master --new-key-file F` re-seals every kind of sealed
 * value (TOTP secret, signing keys current and retired, a service's PostgreSQL password and its pending rotation
 * intent, the digest keys) in one transaction. After the key file is swapped, everything still works, including a
 * recovery code issued before; the old key is refused at start with a clear message; and a value that does not open
 * aborts the rotation with the row named and nothing changed.
 */

const PG_PASSWORD = 'the-stored-postgres-password';
const PG_PENDING = 'the-pending-postgres-password';

describe('mciassrv keys rotate-master', { concurrency: true }, () => {
  for (const dialect of DIALECTS) {
    describe(dialect, { concurrency: false }, () => {
      let database: TestDatabase | undefined;
      let server: ServerProcess;
      let dataDir: string;
      let masterKeyFile: string;
      let newKeyFile: string;
      let oldKey: Buffer;
      let beforeToken: string;
      let jwksBefore: string[];
      let authenticator: Authenticator;
      let recoveryCodes: string[];
      let serviceId: string;

      const call = (url: string, options: { body?: unknown; token?: string; method?: string } = {}) =>
        httpsRequest(`${server.url}${url}`, { caFile: server.caCertFile, ...options });
      const json = <T>(body: string) => JSON.parse(body) as T;
      const jwksKids = async () => json<{ keys: { kid: string }[] }>((await call('/.well-known/jwks.json')).body).keys.map((k) => k.kid).sort();
      /** The database as mciassrv opens it, from the data directory's config. */
      const withDatabase = async <T>(work: (db: Database) => Promise<T>): Promise<T> => {
        const db = openDatabase(loadConfig({ file: path.join(dataDir, 'mcias.toml') }).storage);
        try {
          return await work(db);
        } finally {
          await db.close();
        }
      };
      /** Every sealed value, as stored: column and row to hex. */
      const sealedSnapshot = () =>
        withDatabase(async (db) =>
          Object.fromEntries((await db.store.sealed.list()).flatMap(({ values }) => values.map((v) => [`${v.column} of ${v.rowId}`, Buffer.from(v.sealed).toString('hex')]))),
        );
      const rotateMaster = (...extra: string[]) => run(MCIASSRV, ['keys', 'rotate-master', '--data-dir', dataDir, '--new-key-file', newKeyFile, ...extra]);

      before(async () => {
        if (dialect === 'postgres') database = await createTestDatabase('postgres');
        server = await startServerProcess(database === undefined ? {} : { storageUrl: database.location });
        dataDir = server.dataDir;
        masterKeyFile = path.join(dataDir, 'master.key');
        newKeyFile = path.join(dataDir, 'master.key.new');
        oldKey = readMasterKeyFile(masterKeyFile);

        // A token signed by the first signing key, which then retires but stays (the token still needs it).
        beforeToken = json<{ token: string }>((await login(server, 'admin', ADMIN_PASSWORD)).body).token;
        const rotated = await run(MCIASSRV, ['keys', 'rotate', '--data-dir', dataDir]);
        assert.equal(rotated.code, 0, rotated.stderr);
        jwksBefore = await jwksKids();
        assert.equal(jwksBefore.length, 2);

        // A person with TOTP confirmed and recovery codes.
        const created = await call('/v1/accounts', { token: beforeToken, body: { username: 'tess', kind: 'human', password: USER_PASSWORD, temporary: false } });
        assert.equal(created.status, 201, created.body);
        const tessToken = json<{ token: string }>((await login(server, 'tess', USER_PASSWORD)).body).token;
        const begun = await call('/v1/me/totp', { token: tessToken, body: { password: USER_PASSWORD } });
        assert.equal(begun.status, 200, begun.body);
        authenticator = new Authenticator(json<{ secret: string }>(begun.body).secret);
        const confirmed = await call('/v1/me/totp/confirm', { token: tessToken, body: { code: await authenticator.next() } });
        assert.equal(confirmed.status, 200, confirmed.body);
        recoveryCodes = json<{ recovery_codes: string[] }>(confirmed.body).recovery_codes;

        // A service with PostgreSQL credentials and a rotation intent, written through the store as the service would.
        const service = await call('/v1/accounts', { token: beforeToken, body: { username: 'wiki', kind: 'system' } });
        assert.equal(service.status, 201, service.body);
        serviceId = json<{ id: string }>(service.body).id;
        await server.stop();
        const sealer = new Sealer(oldKey);
        const context = { table: 'pg_credentials', column: 'password', id: serviceId };
        await withDatabase(async (db) => {
          const now = Date.now();
          await db.store.pgcreds.put(
            {
              accountId: serviceId, host: 'db.example', port: 5432, database: 'wiki', username: 'wiki', activeLogin: 'wiki',
              password: sealer.seal(Buffer.from(PG_PASSWORD), context), sslmode: 'require', caCert: null, mode: 'single',
              admin: null, rotateEvery: null, nextRotationAt: null,
            },
            now,
          );
          await db.store.pgcreds.beginRotation(serviceId, 'wiki', sealer.seal(Buffer.from(PG_PENDING), context), now);
        });
      });
      after(async () => {
        await server.dispose();
        await database?.drop();
      });

      test('keys generate-master writes a new 0600 key file, and never over an existing file', async () => {
        const result = await run(MCIASSRV, ['keys', 'generate-master', newKeyFile]);
        assert.equal(result.code, 0, result.stderr);
        assert.equal(statSync(newKeyFile).mode & 0o777, 0o600);
        assert.equal(readMasterKeyFile(newKeyFile).length, 32);
        assert.ok(!result.stdout.includes(readFileSync(newKeyFile, 'utf8').trim()), 'the key is not printed');
        const again = await run(MCIASSRV, ['keys', 'generate-master', newKeyFile]);
        assert.equal(again.code, 1);
        assert.match(again.stderr, /exists; a key file is never overwritten/);
      });

      test('a new key file that others can read, that is malformed, or that holds the current key is refused; nothing changes', async () => {
        const before = await sealedSnapshot();
        const good = readFileSync(newKeyFile);
        try {
          chmodSync(newKeyFile, 0o640);
          assert.match((await rotateMaster()).stderr, /master key file .*master\.key\.new has mode 0640; refusing to use it/);
          chmodSync(newKeyFile, 0o600);
          writeFileSync(newKeyFile, `${randomBytes(16).toString('base64')}\n`);
          assert.match((await rotateMaster()).stderr, /master key file .*master\.key\.new: the master key must be 32 bytes/);
          writeFileSync(newKeyFile, readFileSync(masterKeyFile));
          const same = await rotateMaster();
          assert.equal(same.code, 1);
          assert.match(same.stderr, /the new master key is the current one/);
        } finally {
          chmodSync(newKeyFile, 0o600);
          writeFileSync(newKeyFile, good);
        }
        assert.deepEqual(await sealedSnapshot(), before);
      });

      test('a value that does not open aborts the rotation with its row named, and nothing is re-encrypted', async () => {
        const pending = `pg_credentials.pending_password of ${serviceId}`;
        const original = await withDatabase(async (db) => (await db.db.selectFrom('pg_credentials').select('pending_password').executeTakeFirstOrThrow()).pending_password!);
        const corrupted = Buffer.from(original);
        corrupted[corrupted.length - 1]! ^= 0x01;
        const setPending = (value: Uint8Array) => withDatabase((db) => db.db.updateTable('pg_credentials').set({ pending_password: value }).execute());
        await setPending(corrupted);
        try {
          const before = await sealedSnapshot();
          const result = await rotateMaster();
          assert.equal(result.code, 1);
          assert.equal(result.stdout, '');
          assert.ok(result.stderr.includes(`the master key does not open ${pending}: nothing was re-encrypted`), result.stderr);
          // The values before it in the list (the TOTP secret, the signing keys, the stored password) were re-sealed
          // inside the transaction, and rolled back with it.
          assert.deepEqual(await sealedSnapshot(), before);
        } finally {
          await setPending(original);
        }
        // The old key still opens the database (mciassrv config check tries it).
        const stillOld = await run(MCIASSRV, ['config', 'check', '--data-dir', dataDir]);
        assert.equal(stillOld.code, 0, stillOld.stderr);
      });

      test('rotates every sealed value; the old key is refused at start; with the new key everything still works', async () => {
        const before = await sealedSnapshot();
        const result = await rotateMaster();
        assert.equal(result.code, 0, result.stderr);
        const counts = Object.fromEntries([...result.stdout.matchAll(/^ {2}(\S+)\s+(\d+)$/gm)].map((m) => [m[1], Number(m[2])]));
        assert.deepEqual(counts, {
          'accounts.totp_secret': 1,
          'signing_keys.private_key': 2,
          'pg_credentials.password': 1,
          'pg_credentials.pending_password': 1,
          'digest_keys.sealed_key': 2,
        });
        assert.match(result.stdout, /The old master key no longer opens this database: replace the master key file with it \(mv /);
        for (const secret of [oldKey.toString('base64'), readMasterKeyFile(newKeyFile).toString('base64'), PG_PASSWORD, PG_PENDING]) {
          assert.ok(!`${result.stdout}${result.stderr}`.includes(secret), 'no key or secret is printed');
        }

        // Every value changed, and opens under the new key in its own context, not under the old one.
        const newKey = readMasterKeyFile(newKeyFile);
        const after = await sealedSnapshot();
        assert.deepEqual(Object.keys(after).sort(), Object.keys(before).sort());
        for (const [where, hex] of Object.entries(after)) assert.notEqual(hex, before[where], where);
        const plain = await withDatabase(async (db) =>
          (await db.store.sealed.list()).flatMap(({ values }) =>
            values.map((v) => {
              assert.throws(() => new Sealer(oldKey).open(v.sealed, v.context), /failed authentication/);
              return [`${v.column}`, new Sealer(newKey).open(v.sealed, v.context).toString()] as const;
            }),
          ),
        );
        assert.deepEqual(plain.filter(([c]) => c.startsWith('pg_credentials')), [
          ['pg_credentials.password', PG_PASSWORD],
          ['pg_credentials.pending_password', PG_PENDING],
        ]);

        // Forgetting the swap: the server refuses to start, before serving, and says what to do.
        const refused = await runBounded(MCIASSRV, ['serve', '--data-dir', dataDir]);
        assert.equal(refused.timedOut, false, 'the server started with the old key');
        assert.equal(refused.code, 1);
        assert.match(refused.stderr, /^mciassrv: wrong master key: it does not open this database's sealed digest keys; if "mciassrv keys rotate-master" was run on this database, the master key must be replaced by the new one it was given\n$/);
        assert.ok(!refused.stdout.includes('mciassrv is serving'));

        const check = await run(MCIASSRV, ['config', 'check', '--data-dir', dataDir]);
        assert.equal(check.code, 1);
        assert.match(check.stderr, /- wrong master key: it does not open this database's sealed digest keys/);

        // The swap, and a start.
        renameSync(newKeyFile, masterKeyFile);
        assert.equal(existsSync(newKeyFile), false);
        const checked = await run(MCIASSRV, ['config', 'check', '--data-dir', dataDir]);
        assert.equal(checked.code, 0, checked.stderr);
        server = await serveDataDir(dataDir);
        assert.deepEqual(await jwksKids(), jwksBefore, 'the same signing keys, the retired one included');
        assert.equal((await call('/v1/me', { token: beforeToken })).status, 200, 'a token issued before still validates');
        const withTotp = await call('/v1/auth/login', { body: { username: 'tess', password: USER_PASSWORD, totp_code: await authenticator.next() } });
        assert.equal(withTotp.status, 200, withTotp.body);
        const withRecovery = await call('/v1/auth/login', { body: { username: 'tess', password: USER_PASSWORD, totp_code: recoveryCodes[0] } });
        assert.equal(withRecovery.status, 200, `a recovery code issued before the rotation: ${withRecovery.body}`);
        const admin = await login(server, 'admin', ADMIN_PASSWORD);
        assert.equal(admin.status, 200, 'the server signs new tokens');
        assert.equal((await call('/v1/me', { token: json<{ token: string }>(admin.body).token })).status, 200);
        assert.ok(!server.logs.join('\n').includes(newKey.toString('base64')), 'the key is not logged');
      });
    });
  }
});
