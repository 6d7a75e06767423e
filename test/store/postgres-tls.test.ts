import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, test } from 'node:test';
import { sql } from 'kysely';
import { resolveConfig, type Config } from '../../src/config/load.ts';
import { createRuntime, type Runtime } from '../../src/server.ts';
import { TEST_SCRYPT } from '../support/harness.ts';
import { PG_CLUSTER_SKIP, usePgCluster } from '../support/pg-cluster.ts';

/**
 * SECURITY.md §29: connections to PostgreSQL support `sslmode=verify-full` with a CA file. The machine's PostgreSQL
 * has no TLS, so this starts a throwaway PostgreSQL of its own with TLS on (test/support/pg-cluster.ts: a test CA, a
 * server certificate for `DNS:localhost` only, and an unrelated CA).
 */

/** One throwaway database, so one master key: the signing key sealed by the first runtime must unseal in the next. */
const MASTER_KEY = randomBytes(32);

function config(url: string, caFile: string | undefined): Config {
  const result = resolveConfig({ passwords: TEST_SCRYPT }, { baseDir: '/nonexistent', env: {} });
  if (result.config === undefined) throw new Error(result.problems.join('; '));
  return { ...result.config, storage: { kind: 'postgres', url, caFile, poolSize: 2 } };
}

/** Opens (and migrates) the database, runs `body`, and always closes the runtime. */
async function withRuntime(url: string, caFile: string | undefined, body: (runtime: Runtime) => Promise<void>): Promise<void> {
  const runtime = await createRuntime(config(url, caFile), { masterKey: MASTER_KEY });
  try {
    await body(runtime);
  } finally {
    await runtime.close();
  }
}

/** Whether this session's connection to the server is TLS, as the server sees it. */
async function sessionUsesTls(runtime: Runtime): Promise<boolean> {
  const { rows } = await sql<{ ssl: boolean }>`select ssl from pg_stat_ssl where pid = pg_backend_pid()`.execute(runtime.database.db);
  assert.equal(rows.length, 1);
  return rows[0]!.ssl;
}

/** createRuntime must fail; returns the error codes and messages along the cause chain. */
async function openingFails(url: string, caFile: string | undefined): Promise<{ codes: string[]; messages: string }> {
  let runtime: Runtime | undefined;
  try {
    runtime = await createRuntime(config(url, caFile), { masterKey: MASTER_KEY });
  } catch (error) {
    const codes: string[] = [];
    const messages: string[] = [];
    for (let e: unknown = error; e instanceof Error; e = e.cause) {
      messages.push(e.message);
      const code = (e as { code?: unknown }).code;
      if (typeof code === 'string') codes.push(code);
    }
    return { codes, messages: messages.join(' <- ') };
  }
  await runtime.close();
  assert.fail(`createRuntime succeeded against ${url} (caFile ${caFile ?? 'none'})`);
}

describe('PostgreSQL over verified TLS (SECURITY.md §29)', { skip: PG_CLUSTER_SKIP }, () => {
  const cluster = usePgCluster({ tls: true });
  const url = (host: string, query = '') => cluster().url({ host, query });
  const rightCa = () => cluster().tls!.caFile;
  const otherCa = () => cluster().tls!.otherCaFile;

  test('control: the server also accepts plain connections, so TLS below is the client’s doing', async () => {
    await withRuntime(url('localhost', '?sslmode=disable'), undefined, async (runtime) => {
      assert.equal(await sessionUsesTls(runtime), false);
    });
  });

  test('with ca_file = the server’s CA, the database opens over TLS', async () => {
    await withRuntime(url('localhost'), rightCa(), async (runtime) => {
      assert.equal(await sessionUsesTls(runtime), true);
      // Migrated: the schema is there.
      await sql`select count(*) from accounts`.execute(runtime.database.db);
    });
  });

  test('with ca_file = an unrelated CA, opening fails certificate verification', async () => {
    const { codes, messages } = await openingFails(url('localhost'), otherCa());
    assert.ok(codes.includes('UNABLE_TO_VERIFY_LEAF_SIGNATURE'), messages);
  });

  test('the host name is verified: the right CA but a certificate without the host fails', async () => {
    // The certificate names only DNS:localhost; 127.0.0.1 is the same server, reached by a name it does not carry.
    const { codes, messages } = await openingFails(url('127.0.0.1'), rightCa());
    assert.ok(codes.includes('ERR_TLS_CERT_ALTNAME_INVALID'), messages);
  });

  test('ca_file wins over TLS settings in the URL (sslmode=disable, ssl=false, sslrootcert)', async () => {
    await withRuntime(url('localhost', '?sslmode=disable'), rightCa(), async (runtime) => {
      assert.equal(await sessionUsesTls(runtime), true);
    });
    await withRuntime(url('localhost', `?ssl=false&sslrootcert=${encodeURIComponent(otherCa())}`), rightCa(), async (runtime) => {
      assert.equal(await sessionUsesTls(runtime), true);
    });
    // And it is still verified against ca_file, not skipped: the unrelated CA fails even with sslmode=disable.
    const { codes, messages } = await openingFails(url('localhost', '?sslmode=disable'), otherCa());
    assert.ok(codes.includes('UNABLE_TO_VERIFY_LEAF_SIGNATURE'), messages);
  });

  test('without ca_file, the URL form sslmode=verify-full&sslrootcert=… verifies chain and host', async () => {
    const query = (ca: string) => `?sslmode=verify-full&sslrootcert=${encodeURIComponent(ca)}`;
    await withRuntime(url('localhost', query(rightCa())), undefined, async (runtime) => {
      assert.equal(await sessionUsesTls(runtime), true);
    });
    const unrelated = await openingFails(url('localhost', query(otherCa())), undefined);
    assert.ok(unrelated.codes.includes('UNABLE_TO_VERIFY_LEAF_SIGNATURE'), unrelated.messages);
    const wrongHost = await openingFails(url('127.0.0.1', query(rightCa())), undefined);
    assert.ok(wrongHost.codes.includes('ERR_TLS_CERT_ALTNAME_INVALID'), wrongHost.messages);
  });
});
