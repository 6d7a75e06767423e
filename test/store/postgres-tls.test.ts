import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir, userInfo } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { sql } from 'kysely';
import { resolveConfig, type Config } from '../../src/config/load.ts';
import { createRuntime, type Runtime } from '../../src/server.ts';
import { TEST_SCRYPT } from '../support/harness.ts';

/**
 * SECURITY.md §29: connections to PostgreSQL support `sslmode=verify-full` with a CA file. The machine's PostgreSQL
 * has no TLS, so this starts a throwaway PostgreSQL of its own with TLS on (as the `postgres` user, since initdb and
 * postgres refuse root), with a test CA, a server certificate for `DNS:localhost` only, and an unrelated CA.
 */

const execFileAsync = promisify(execFile);

/** The newest installed PostgreSQL's bin directory (Debian layout), or undefined. */
function postgresBinDir(): string | undefined {
  const root = '/usr/lib/postgresql';
  if (!existsSync(root)) return undefined;
  const versions = readdirSync(root)
    .filter((v) => existsSync(path.join(root, v, 'bin', 'initdb')))
    .sort((a, b) => Number(b) - Number(a));
  return versions[0] === undefined ? undefined : path.join(root, versions[0], 'bin');
}

const BIN = postgresBinDir();
const RUNUSER = ['/usr/sbin/runuser', '/sbin/runuser', '/usr/bin/runuser'].find((p) => existsSync(p));
const SKIP =
  BIN === undefined
    ? 'no PostgreSQL server binaries under /usr/lib/postgresql/*/bin'
    : RUNUSER === undefined
      ? 'runuser not found'
      : userInfo().uid !== 0
        ? 'needs root (to run initdb/postgres as the postgres user)'
        : false;

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

async function openssl(cwd: string, args: readonly string[]): Promise<void> {
  await execFileAsync('openssl', args, { cwd });
}

/** A self-signed ECDSA P-256 CA: `<name>.crt`, `<name>.key`. */
async function makeCa(dir: string, name: string): Promise<string> {
  await openssl(dir, [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes',
    '-keyout', `${name}.key`, '-out', `${name}.crt`, '-days', '2', '-subj', `/CN=${name}`,
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign',
  ]);
  return path.join(dir, `${name}.crt`);
}

/** A server certificate for `san`, signed by CA `ca`: `<name>.crt`, `<name>.key`. */
async function makeServerCert(dir: string, name: string, ca: string, san: string): Promise<{ cert: string; key: string }> {
  const ext = path.join(dir, `${name}.ext`);
  writeFileSync(
    ext,
    `basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=${san}\n`,
  );
  await openssl(dir, [
    'req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes',
    '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${name}`,
  ]);
  await openssl(dir, [
    'x509', '-req', '-in', `${name}.csr`, '-CA', `${ca}.crt`, '-CAkey', `${ca}.key`, '-set_serial', `0x${randomBytes(8).toString('hex')}`,
    '-days', '2', '-extfile', ext, '-out', `${name}.crt`,
  ]);
  return { cert: path.join(dir, `${name}.crt`), key: path.join(dir, `${name}.key`) };
}

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

describe('PostgreSQL over verified TLS (SECURITY.md §29)', { skip: SKIP }, () => {
  let dir: string;
  let dataDir: string;
  let port: number;
  let rightCa: string;
  let otherCa: string;
  let started = false;

  const pgctl = (args: readonly string[]) =>
    execFileAsync(RUNUSER!, ['-u', 'postgres', '--', path.join(BIN!, 'pg_ctl'), ...args], { cwd: dir });
  const url = (host: string, query = '') => `postgres://postgres@${host}:${port}/postgres${query}`;

  before(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'mcias-pgtls-'));
    dataDir = path.join(dir, 'data');
    rightCa = await makeCa(dir, 'ca');
    otherCa = await makeCa(dir, 'other-ca');
    // Only DNS:localhost: connecting to 127.0.0.1 must then fail the host name check.
    const server = await makeServerCert(dir, 'server', 'ca', 'DNS:localhost');
    mkdirSync(dataDir, { mode: 0o700 });
    const { uid, gid } = await execFileAsync('id', ['-u', 'postgres']).then(async ({ stdout }) => ({
      uid: Number(stdout.trim()),
      gid: Number((await execFileAsync('id', ['-g', 'postgres'])).stdout.trim()),
    }));
    for (const p of [dir, dataDir, server.cert, server.key]) chownSync(p, uid, gid);
    chmodSync(dir, 0o755);
    chmodSync(server.key, 0o600);

    await execFileAsync(RUNUSER!, ['-u', 'postgres', '--', path.join(BIN!, 'initdb'), '-D', dataDir, '--auth=trust', '-U', 'postgres', '--no-sync'], {
      cwd: dir,
    });
    port = await freePort();
    const options = [
      `-p ${port}`, `-k ${dir}`, '-c listen_addresses=127.0.0.1', '-c fsync=off',
      '-c ssl=on', `-c ssl_cert_file=${server.cert}`, `-c ssl_key_file=${server.key}`,
    ].join(' ');
    await pgctl(['-D', dataDir, '-l', path.join(dir, 'postgres.log'), '-o', options, '-w', '-t', '15', 'start']);
    started = true;
  });

  after(async () => {
    if (started) await pgctl(['-D', dataDir, '-m', 'immediate', '-w', 'stop']);
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
  });

  test('control: the server also accepts plain connections, so TLS below is the client’s doing', async () => {
    await withRuntime(url('localhost', '?sslmode=disable'), undefined, async (runtime) => {
      assert.equal(await sessionUsesTls(runtime), false);
    });
  });

  test('with ca_file = the server’s CA, the database opens over TLS', async () => {
    await withRuntime(url('localhost'), rightCa, async (runtime) => {
      assert.equal(await sessionUsesTls(runtime), true);
      // Migrated: the schema is there.
      await sql`select count(*) from accounts`.execute(runtime.database.db);
    });
  });

  test('with ca_file = an unrelated CA, opening fails certificate verification', async () => {
    const { codes, messages } = await openingFails(url('localhost'), otherCa);
    assert.ok(codes.includes('UNABLE_TO_VERIFY_LEAF_SIGNATURE'), messages);
  });

  test('the host name is verified: the right CA but a certificate without the host fails', async () => {
    // The certificate names only DNS:localhost; 127.0.0.1 is the same server, reached by a name it does not carry.
    const { codes, messages } = await openingFails(url('127.0.0.1'), rightCa);
    assert.ok(codes.includes('ERR_TLS_CERT_ALTNAME_INVALID'), messages);
  });

  test('ca_file wins over TLS settings in the URL (sslmode=disable, ssl=false, sslrootcert)', async () => {
    await withRuntime(url('localhost', '?sslmode=disable'), rightCa, async (runtime) => {
      assert.equal(await sessionUsesTls(runtime), true);
    });
    await withRuntime(url('localhost', `?ssl=false&sslrootcert=${encodeURIComponent(otherCa)}`), rightCa, async (runtime) => {
      assert.equal(await sessionUsesTls(runtime), true);
    });
    // And it is still verified against ca_file, not skipped: the unrelated CA fails even with sslmode=disable.
    const { codes, messages } = await openingFails(url('localhost', '?sslmode=disable'), otherCa);
    assert.ok(codes.includes('UNABLE_TO_VERIFY_LEAF_SIGNATURE'), messages);
  });

  test('without ca_file, the URL form sslmode=verify-full&sslrootcert=… verifies chain and host', async () => {
    const query = (ca: string) => `?sslmode=verify-full&sslrootcert=${encodeURIComponent(ca)}`;
    await withRuntime(url('localhost', query(rightCa)), undefined, async (runtime) => {
      assert.equal(await sessionUsesTls(runtime), true);
    });
    const unrelated = await openingFails(url('localhost', query(otherCa)), undefined);
    assert.ok(unrelated.codes.includes('UNABLE_TO_VERIFY_LEAF_SIGNATURE'), unrelated.messages);
    const wrongHost = await openingFails(url('127.0.0.1', query(rightCa)), undefined);
    assert.ok(wrongHost.codes.includes('ERR_TLS_CERT_ALTNAME_INVALID'), wrongHost.messages);
  });
});
