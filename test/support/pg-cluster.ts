import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir, userInfo } from 'node:os';
import path from 'node:path';
import { after, before } from 'node:test';
import { promisify } from 'node:util';
import pg from 'pg';
import { required } from './fixture.ts';
import { freePort } from './ports.ts';

/**
 * A throwaway PostgreSQL cluster where every connection authenticates with `scram-sha-256`: the machine's own
 * PostgreSQL trusts every local connection, so it cannot prove that a password is refused. initdb and postgres refuse
 * to run as root, so they run as the `postgres` OS user (runuser). Options: TLS (a test CA, a server certificate for
 * `DNS:localhost` only, so connecting to 127.0.0.1 fails the host name check, and an unrelated CA), and
 * `log_statement = 'all'` into `logFile`. Built for speed: no fsync, small buffers.
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

/** Why a throwaway cluster cannot run here (a `skip` reason for describe/test), or false. */
export const PG_CLUSTER_SKIP: string | false =
  BIN === undefined
    ? 'no PostgreSQL server binaries under /usr/lib/postgresql/*/bin'
    : RUNUSER === undefined
      ? 'runuser not found'
      : userInfo().uid !== 0
        ? 'needs root (to run initdb/postgres as the postgres user)'
        : false;

export interface PgClusterOptions {
  /** Serve TLS (plain connections are still accepted, so a test can show TLS is the client's doing). */
  readonly tls?: boolean;
  /** `log_statement = 'all'`: every statement the server receives lands in `logFile`. */
  readonly logStatements?: boolean;
}

export interface PgClusterTls {
  /** The CA that signed the server certificate (which names DNS:localhost only). */
  readonly caFile: string;
  /** An unrelated CA: verification against it must fail. */
  readonly otherCaFile: string;
}

export interface UrlParts {
  readonly user?: string;
  readonly password?: string;
  /** `localhost` or `127.0.0.1` (default): only `localhost` matches the server certificate. */
  readonly host?: string;
  readonly database?: string;
  /** Query string including `?`, e.g. `?sslmode=disable`. */
  readonly query?: string;
}

export interface PgCluster {
  readonly host: string;
  readonly port: number;
  /** The `postgres` superuser's password (scram-sha-256, like every role). */
  readonly superuserPassword: string;
  /** The server's log (stderr), with every statement when `logStatements` is on. */
  readonly logFile: string;
  /** Present when started with `tls: true`. */
  readonly tls: PgClusterTls | undefined;
  /** A `postgres://` URL; by default the superuser on 127.0.0.1 to database `postgres`, no query. */
  url(parts?: UrlParts): string;
  /** Runs one statement as the superuser on database `postgres` (plain connection) and returns the rows. */
  query<R extends Record<string, unknown> = Record<string, unknown>>(text: string, values?: readonly unknown[]): Promise<R[]>;
  /** Whether `user`/`password` can log in (false when the server refuses the password; throws on anything else). */
  canConnect(user: string, password: string, database?: string): Promise<boolean>;
  /** The server log's text so far. */
  log(): string;
  start(): Promise<void>;
  /** Stops the server (fast shutdown); `start` brings it back on the same port with the same data. */
  stop(): Promise<void>;
  restart(): Promise<void>;
  /** Stops the server and deletes everything. */
  destroy(): Promise<void>;
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

async function postgresIds(): Promise<{ uid: number; gid: number }> {
  const uid = Number((await execFileAsync('id', ['-u', 'postgres'])).stdout.trim());
  const gid = Number((await execFileAsync('id', ['-g', 'postgres'])).stdout.trim());
  return { uid, gid };
}

/** Starts a new cluster. Call `destroy()` when done (or use `usePgCluster`, which does). */
export async function startPgCluster(options: PgClusterOptions = {}): Promise<PgCluster> {
  if (PG_CLUSTER_SKIP !== false) throw new Error(`no throwaway PostgreSQL here: ${PG_CLUSTER_SKIP}`);
  const bin = BIN!;
  const dir = mkdtempSync(path.join(tmpdir(), 'mcias-pgcluster-'));
  const dataDir = path.join(dir, 'data');
  const logFile = path.join(dir, 'postgres.log');
  const superuserPassword = randomBytes(18).toString('base64url');
  const asPostgres = (program: string, args: readonly string[]) =>
    execFileAsync(RUNUSER!, ['-u', 'postgres', '--', path.join(bin, program), ...args], { cwd: dir });
  let running = false;
  try {
    const { uid, gid } = await postgresIds();
    mkdirSync(dataDir, { mode: 0o700 });
    const pwfile = path.join(dir, 'pwfile');
    writeFileSync(pwfile, `${superuserPassword}\n`, { mode: 0o600 });
    const owned = [dir, dataDir, pwfile];
    let tls: PgClusterTls | undefined;
    const settings = [
      '-c listen_addresses=127.0.0.1', `-k ${dir}`, '-c fsync=off', '-c synchronous_commit=off', '-c full_page_writes=off',
      '-c shared_buffers=16MB', '-c max_connections=30', '-c password_encryption=scram-sha-256',
    ];
    if (options.tls === true) {
      const caFile = await makeCa(dir, 'ca');
      const otherCaFile = await makeCa(dir, 'other-ca');
      const server = await makeServerCert(dir, 'server', 'ca', 'DNS:localhost');
      owned.push(server.cert, server.key);
      tls = { caFile, otherCaFile };
      settings.push('-c ssl=on', `-c ssl_cert_file=${server.cert}`, `-c ssl_key_file=${server.key}`);
    }
    if (options.logStatements === true) settings.push('-c log_statement=all');
    for (const p of owned) chownSync(p, uid, gid);
    chmodSync(dir, 0o755);
    if (tls !== undefined) chmodSync(path.join(dir, 'server.key'), 0o600);

    await asPostgres('initdb', [
      '-D', dataDir, '-U', 'postgres', '--auth=scram-sha-256', `--pwfile=${pwfile}`, '--no-sync', '--no-instructions',
    ]);
    rmSync(pwfile);
    let port = 0;
    const pgctl = (args: readonly string[]) => asPostgres('pg_ctl', ['-D', dataDir, ...args]);
    const start = async () => {
      await pgctl(['-l', logFile, '-o', [`-p ${port}`, ...settings].join(' '), '-w', '-t', '30', 'start']);
      running = true;
    };
    const stop = async (mode: 'fast' | 'immediate') => {
      if (!running) return;
      await pgctl(['-m', mode, '-w', '-t', '30', 'stop']);
      running = false;
    };
    // The spare port may be taken by another process between freePort and postgres binding it: try another.
    for (let attempt = 1; ; attempt++) {
      port = await freePort();
      try {
        await start();
        break;
      } catch (error) {
        if (attempt === 3) throw error;
      }
    }

    const host = '127.0.0.1';
    const url = (parts: UrlParts = {}) => {
      const u = new URL(`postgres://${parts.host ?? host}:${port}`);
      u.username = encodeURIComponent(parts.user ?? 'postgres');
      u.password = encodeURIComponent(parts.password ?? superuserPassword);
      u.pathname = `/${encodeURIComponent(parts.database ?? 'postgres')}`;
      return `${u.toString()}${parts.query ?? ''}`;
    };
    const connect = async (user: string, password: string, database: string) => {
      const client = new pg.Client({ host, port, user, password, database, ssl: false, connectionTimeoutMillis: 10_000 });
      client.on('error', () => {});
      await client.connect();
      return client;
    };
    return {
      host,
      port,
      superuserPassword,
      logFile,
      tls,
      url,
      async query<R extends Record<string, unknown>>(text: string, values: readonly unknown[] = []) {
        const client = await connect('postgres', superuserPassword, 'postgres');
        try {
          return (await client.query<R>(text, values as unknown[])).rows;
        } finally {
          await client.end();
        }
      },
      async canConnect(user: string, password: string, database = 'postgres') {
        let client: pg.Client;
        try {
          client = await connect(user, password, database);
        } catch (error) {
          if ((error as { code?: unknown }).code === '28P01') return false;
          throw error;
        }
        await client.end();
        return true;
      },
      log: () => (existsSync(logFile) ? readFileSync(logFile, 'utf8') : ''),
      start,
      stop: () => stop('fast'),
      async restart() {
        await stop('fast');
        await start();
      },
      async destroy() {
        try {
          await stop('immediate');
        } finally {
          rmSync(dir, { recursive: true, force: true });
        }
      },
    };
  } catch (error) {
    if (running) await asPostgres('pg_ctl', ['-D', dataDir, '-m', 'immediate', '-w', 'stop']).catch(() => {});
    rmSync(dir, { recursive: true, force: true });
    throw error;
  }
}

/** A cluster for the enclosing describe (or file): started in `before`, destroyed in `after`. */
export function usePgCluster(options: PgClusterOptions = {}): () => PgCluster {
  let cluster: PgCluster | undefined;
  before(async () => {
    cluster = await startPgCluster(options);
  });
  after(async () => {
    await cluster?.destroy();
  });
  return () => required(cluster, 'pg-cluster', 'cluster');
}
