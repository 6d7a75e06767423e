import { readFileSync } from 'node:fs';
import type { ConnectionOptions } from 'node:tls';
import type pg from 'pg';
import type { PgAdminConnection } from '../config/load.ts';
import { MciasError } from '../domain/errors.ts';
import { PG_SSLMODES, type PgSslMode } from '../domain/model.ts';
import type { PgAdmin, PgLogin, PgTarget } from '../domain/ports.ts';
import { scramVerifier } from './scram.ts';

/**
 * The `PgAdmin` port over real admin connections from `[pg_admin.NAME]` (docs/pg-admin.md, SECURITY.md §44).
 *
 * - One short-lived connection per operation: nothing is held open between rotations.
 * - The admin URL is parsed here, not by node-postgres: every connection setting is passed explicitly, so
 *   `sslmode=verify-full` cannot be weakened by pg's own URL handling or by PG* environment variables.
 * - Passwords leave only as SCRAM-SHA-256 verifiers (./scram.ts); role and database names only as quoted
 *   identifiers. A role that does not exist is an error, never created by `setPassword`; superusers and the admin's
 *   own role are refused.
 * - Every failure is an MciasError `upstream_failed` with a `reason` from issue 9's vocabulary (pg_unreachable,
 *   pg_tls_failed, pg_admin_refused, pg_role_missing, pg_outcome_unknown); messages name the entry, host and port,
 *   never the URL (it holds the admin password), a password or a verifier.
 */

/** Connecting (TCP, TLS and authentication) may take this long. */
const PG_CONNECT_TIMEOUT_MS = 5_000;
/** The server cancels a statement after this long (`statement_timeout`; `lock_timeout` too): it then did not run. */
const PG_STATEMENT_TIMEOUT_MS = 5_000;
/** The client gives up waiting for an answer after this long (the statement's outcome is then unknown). */
const PG_QUERY_TIMEOUT_MS = PG_STATEMENT_TIMEOUT_MS + 5_000;

/** PostgreSQL's identifier limit (NAMEDATALEN - 1 bytes): longer names would be silently truncated by the server. */
const MAX_IDENTIFIER_BYTES = 63;

/** The only URL parameters an admin URL may carry; anything else is refused rather than silently ignored. */
const URL_PARAMETERS = new Set(['sslmode', 'sslrootcert']);

interface Endpoint {
  /** Names what failed in messages: `pg_admin.NAME (host:port)` or `host:port`. Never a URL. */
  readonly label: string;
  readonly host: string;
  readonly port: number;
  readonly user: string;
  readonly password: string | undefined;
  readonly database: string;
  readonly ssl: false | ConnectionOptions;
}

interface AdminEndpoint extends Endpoint {
  readonly name: string;
  readonly sslmode: PgSslMode;
}

/** What `mciassrv config check` reports about an admin connection. */
export interface PgAdminPrivileges {
  /** `pg_admin.NAME (host:port)`. */
  readonly label: string;
  readonly sslmode: PgSslMode;
  readonly role: string;
  readonly superuser: boolean;
  readonly createRole: boolean;
  readonly createDb: boolean;
  readonly serverVersion: number;
}

/**
 * TLS settings for `sslmode` as libpq reads it: `disable` none; `require` encrypted but unverified, unless a CA is
 * given, which makes it `verify-ca`; `verify-ca` the chain against the CA, not the host name; `verify-full` chain
 * and host name, against the CA when given, else the system's trusted CAs (libpq's `sslrootcert=system`).
 */
function tlsOptions(sslmode: PgSslMode, ca: string | undefined): false | ConnectionOptions {
  switch (sslmode) {
    case 'disable':
      return false;
    case 'require':
      return ca === undefined ? { rejectUnauthorized: false } : { ca, rejectUnauthorized: true, checkServerIdentity: () => undefined };
    case 'verify-ca':
      if (ca === undefined) throw new Error('sslmode=verify-ca needs a CA (ca_file or sslrootcert)');
      return { ca, rejectUnauthorized: true, checkServerIdentity: () => undefined };
    case 'verify-full':
      return ca === undefined ? { rejectUnauthorized: true } : { ca, rejectUnauthorized: true };
  }
}

/**
 * Parses one `[pg_admin.NAME]` entry. The CA is `ca_file`, else the URL's `sslrootcert`; `sslmode` defaults to
 * `verify-full` when there is a CA, else `require` (TLS always, unless the URL says `sslmode=disable`). With a CA,
 * only `verify-full` and `verify-ca` are accepted.
 * Throws an Error naming the entry (never the URL) for anything it cannot honour.
 */
function parseEntry(entry: PgAdminConnection): AdminEndpoint {
  const where = `pg_admin.${entry.name}.url`;
  let url: URL;
  try {
    url = new URL(entry.url);
  } catch {
    throw new Error(`${where}: not a valid URL`);
  }
  if (url.protocol !== 'postgres:' && url.protocol !== 'postgresql:') throw new Error(`${where}: must start with postgres://`);
  const host = url.hostname.replace(/^\[(.*)\]$/, '$1');
  if (host === '') throw new Error(`${where}: names no host (Unix sockets are not supported for admin connections)`);
  const port = url.port === '' ? 5432 : Number(url.port);
  for (const key of url.searchParams.keys()) {
    if (!URL_PARAMETERS.has(key)) throw new Error(`${where}: unsupported parameter ${key} (only sslmode and sslrootcert are read)`);
  }
  const user = decodeURIComponent(url.username);
  if (user === '') throw new Error(`${where}: names no user`);
  const sslrootcert = url.searchParams.get('sslrootcert');
  let ca: string | undefined;
  const caPath = entry.caFile ?? sslrootcert ?? undefined;
  if (caPath !== undefined) {
    try {
      ca = readFileSync(caPath, 'utf8');
    } catch (error) {
      throw new Error(`pg_admin.${entry.name}: cannot read the CA file ${caPath}: ${(error as NodeJS.ErrnoException).code ?? 'error'}`);
    }
  }
  const sslmode = url.searchParams.get('sslmode') ?? (ca === undefined ? 'require' : 'verify-full');
  if (!(PG_SSLMODES as readonly string[]).includes(sslmode)) {
    throw new Error(`${where}: sslmode=${sslmode} is not supported (use ${PG_SSLMODES.join(', ')}; prefer and allow fall back to clear text)`);
  }
  // A CA names the server to trust; a mode that then skips the check would silently ignore it (the storage
  // connection's ca_file likewise always verifies).
  if (ca !== undefined && (sslmode === 'disable' || sslmode === 'require')) {
    throw new Error(`${where}: sslmode=${sslmode} with a CA (ca_file or sslrootcert) would not verify the server; use verify-full`);
  }
  let ssl: false | ConnectionOptions;
  try {
    ssl = tlsOptions(sslmode as PgSslMode, ca);
  } catch (error) {
    throw new Error(`pg_admin.${entry.name}: ${(error as Error).message}`);
  }
  return {
    name: entry.name,
    label: `pg_admin.${entry.name} (${host}:${port})`,
    host,
    port,
    user,
    password: url.password === '' ? undefined : decodeURIComponent(url.password),
    database: url.pathname.length > 1 ? decodeURIComponent(url.pathname.slice(1)) : user,
    ssl,
    sslmode: sslmode as PgSslMode,
  };
}

/** A role or database name the server takes whole: 1 to 63 bytes, no NUL. */
function checkName(kind: string, name: string): void {
  const bytes = Buffer.byteLength(name, 'utf8');
  if (bytes === 0 || bytes > MAX_IDENTIFIER_BYTES || name.includes('\0')) {
    throw new MciasError('invalid_request', `${kind} names must be 1 to ${MAX_IDENTIFIER_BYTES} bytes without NUL`, { reason: 'pg_name_invalid' });
  }
}

function upstream(reason: string, message: string, cause?: unknown): MciasError {
  return new MciasError('upstream_failed', message, { reason, cause });
}

/** pg, loaded by the first admin connection: a server that never rotates or provisions never loads it. */
let pgModule: typeof pg | undefined;

function isServerError(error: unknown): error is pg.DatabaseError {
  // Only a pg connection raises pg errors, and making one loaded the module.
  return pgModule !== undefined && error instanceof pgModule.DatabaseError;
}

/** The socket-level code of a connection error (AggregateError when several addresses were tried). */
function errorCode(error: unknown): string | undefined {
  const code = (error as { code?: unknown }).code;
  if (typeof code === 'string') return code;
  if (error instanceof AggregateError) return errorCode(error.errors[0]);
  return undefined;
}

function isTlsError(error: unknown): boolean {
  const code = errorCode(error) ?? '';
  if (code === 'EPROTO' || /^ERR_(TLS|SSL)_/.test(code) || /CERT|SELF_SIGNED|UNABLE_TO_|HOSTNAME|_CA_|KEY_TOO_SMALL/.test(code)) return true;
  return error instanceof Error && /does not support SSL/.test(error.message);
}

/** What a failed connection attempt means: TLS, refused login, or no connection. */
function connectFailure(endpoint: Endpoint, error: unknown, loginReason: string): MciasError {
  if (isServerError(error)) {
    const what = `${error.message} (SQLSTATE ${error.code})`;
    if (error.code?.startsWith('28') === true) return upstream(loginReason, `${endpoint.label}: login refused: ${what}`, error);
    return upstream('pg_unreachable', `${endpoint.label}: the server did not accept the connection: ${what}`, error);
  }
  if (isTlsError(error)) {
    return upstream('pg_tls_failed', `${endpoint.label}: TLS failed: ${errorCode(error) ?? (error as Error).message}`, error);
  }
  const detail = errorCode(error) ?? (error instanceof Error ? error.message : 'unknown error');
  return upstream('pg_unreachable', `${endpoint.label}: cannot connect: ${detail}`, error);
}

/**
 * What a failed statement means. A server error response (severity ERROR) means the statement was rolled back: it
 * did not run. Anything else once `sent` is true (a reset connection, FATAL termination, the client's timeout) leaves
 * the outcome unknown; before that, nothing was sent that could change anything.
 */
function statementFailure(endpoint: Endpoint, error: unknown, sent: boolean): MciasError {
  if (isServerError(error) && error.severity === 'ERROR') {
    const what = `${error.message} (SQLSTATE ${error.code})`;
    if (error.code === '42704') return upstream('pg_role_missing', `${endpoint.label}: ${what}`, error);
    if (error.code === '42501') return upstream('pg_admin_refused', `${endpoint.label}: the admin role lacks the privilege: ${what}`, error);
    return upstream('pg_admin_refused', `${endpoint.label}: the server refused the statement: ${what}`, error);
  }
  const detail = isServerError(error) ? `${error.message} (SQLSTATE ${error.code})` : (errorCode(error) ?? (error as Error).message);
  if (sent) return upstream('pg_outcome_unknown', `${endpoint.label}: the connection failed after the statement was sent (it may or may not have run): ${detail}`, error);
  return upstream('pg_unreachable', `${endpoint.label}: the connection failed before any change was sent: ${detail}`, error);
}

/** Runs `work` on a fresh connection, mapping every failure to `upstream_failed`, and always closes it. */
async function withConnection<T>(
  endpoint: Endpoint,
  loginReason: string,
  work: (client: pg.Client, markSent: () => void) => Promise<T>,
): Promise<T> {
  pgModule ??= (await import('pg')).default;
  const client = new pgModule.Client({
    host: endpoint.host,
    port: endpoint.port,
    user: endpoint.user,
    password: endpoint.password,
    database: endpoint.database,
    ssl: endpoint.ssl,
    connectionTimeoutMillis: PG_CONNECT_TIMEOUT_MS,
    statement_timeout: PG_STATEMENT_TIMEOUT_MS,
    lock_timeout: PG_STATEMENT_TIMEOUT_MS,
    query_timeout: PG_QUERY_TIMEOUT_MS,
    application_name: 'mcias',
  });
  // A connection the server drops between queries emits 'error'; the pending query (if any) reports it.
  client.on('error', () => {});
  try {
    await client.connect();
  } catch (error) {
    await client.end().catch(() => {});
    throw connectFailure(endpoint, error, loginReason);
  }
  let sent = false;
  try {
    return await work(client, () => {
      sent = true;
    });
  } catch (error) {
    if (error instanceof MciasError) throw error;
    throw statementFailure(endpoint, error, sent);
  } finally {
    await client.end().catch(() => {});
  }
}

function sameHost(a: string, b: string): boolean {
  return a.toLowerCase() === b.toLowerCase();
}

export class PostgresAdmin implements PgAdmin {
  private readonly endpoints: readonly AdminEndpoint[];

  /** Throws an Error naming the entry for a URL or CA file it cannot honour (at startup, not at the first rotation). */
  constructor(connections: readonly PgAdminConnection[]) {
    this.endpoints = connections.map(parseEntry);
  }

  /**
   * The entry named by `target.admin`, else the first entry (in configuration order) whose host (case-insensitive)
   * and port are the target's. None: 409 `conflict`, reason `no_pg_admin`.
   */
  private choose(target: PgTarget): AdminEndpoint {
    if (target.admin !== null) {
      const named = this.endpoints.find((e) => e.name === target.admin);
      if (named === undefined) throw new MciasError('conflict', `no [pg_admin.${target.admin}] in the configuration`, { reason: 'no_pg_admin' });
      return named;
    }
    const matching = this.endpoints.find((e) => sameHost(e.host, target.host) && e.port === target.port);
    if (matching === undefined) {
      throw new MciasError('conflict', `no [pg_admin.NAME] entry for ${target.host}:${target.port}`, { reason: 'no_pg_admin' });
    }
    return matching;
  }

  async setPassword(target: PgTarget, login: string, password: string): Promise<void> {
    checkName('role', login);
    const endpoint = this.choose(target);
    const verifier = await scramVerifier(password);
    await withConnection(endpoint, 'pg_admin_refused', async (client, markSent) => {
      const { rows } = await client.query<{ rolsuper: boolean; self: boolean }>(
        'select rolsuper, rolname = current_user as self from pg_roles where rolname = $1',
        [login],
      );
      const role = rows[0];
      if (role === undefined) {
        throw upstream('pg_role_missing', `${endpoint.label}: role "${login}" does not exist (MCIAS does not create it here; provision does)`);
      }
      // A superuser's password is not a service credential; and rotating the admin's own would cut MCIAS off.
      if (role.rolsuper) throw upstream('pg_admin_refused', `${endpoint.label}: role "${login}" is a superuser: MCIAS does not change superusers' passwords`);
      if (role.self) throw upstream('pg_admin_refused', `${endpoint.label}: role "${login}" is the admin connection's own role`);
      markSent();
      await client.query(`ALTER ROLE ${client.escapeIdentifier(login)} PASSWORD ${client.escapeLiteral(verifier)}`);
    });
  }

  async provision(
    target: PgTarget,
    plan: {
      readonly group: string | null;
      readonly logins: readonly { readonly login: string; readonly password: string }[];
      readonly createDatabase: boolean;
    },
  ): Promise<{ readonly created: readonly string[] }> {
    if (plan.group !== null) checkName('role', plan.group);
    for (const { login } of plan.logins) checkName('role', login);
    if (plan.createDatabase) checkName('database', target.database);
    if (plan.logins.length === 0 || (plan.group === null && plan.logins.length !== 1)) {
      throw new MciasError('invalid_request', 'provision needs one login role, or a group role and its logins', { reason: 'pg_plan_invalid' });
    }
    const endpoint = this.choose(target);
    const logins = await Promise.all(plan.logins.map(async ({ login, password }) => ({ login, verifier: await scramVerifier(password) })));
    return withConnection(endpoint, 'pg_admin_refused', async (client, markSent) => {
      const id = (name: string) => client.escapeIdentifier(name);
      const roleExists = async (name: string) => (await client.query('select 1 from pg_roles where rolname = $1', [name])).rowCount === 1;
      const created: string[] = [];
      // The roles together or not at all.
      markSent();
      await client.query('begin');
      try {
        if (plan.group !== null && !(await roleExists(plan.group))) {
          await client.query(`CREATE ROLE ${id(plan.group)} NOLOGIN`);
          created.push(plan.group);
        }
        for (const { login, verifier } of logins) {
          if (!(await roleExists(login))) {
            const inGroup = plan.group === null ? '' : ` IN ROLE ${id(plan.group)}`;
            await client.query(`CREATE ROLE ${id(login)} LOGIN PASSWORD ${client.escapeLiteral(verifier)}${inGroup}`);
            created.push(login);
          } else if (plan.group !== null) {
            // An existing login that is not yet a member of the group is made one (what alternating mode needs).
            const { rows } = await client.query<{ member: boolean }>(
              'select exists (select 1 from pg_auth_members m join pg_roles g on g.oid = m.roleid join pg_roles l on l.oid = m.member where g.rolname = $1 and l.rolname = $2) as member',
              [plan.group, login],
            );
            if (rows[0]?.member !== true) await client.query(`GRANT ${id(plan.group)} TO ${id(login)}`);
          }
        }
        await client.query('commit');
      } catch (error) {
        await client.query('rollback').catch(() => {});
        throw error;
      }
      // CREATE DATABASE cannot run inside a transaction block.
      if (plan.createDatabase && (await client.query('select 1 from pg_database where datname = $1', [target.database])).rowCount === 0) {
        const owner = plan.group ?? logins[0]!.login;
        await createDatabaseOwnedBy(client, target.database, owner);
        created.push(target.database);
      }
      return { created };
    });
  }

  async canLogin(target: PgTarget, login: PgLogin): Promise<boolean> {
    checkName('role', login.login);
    let endpoint: Endpoint = {
      label: `${target.host}:${target.port}`,
      host: target.host,
      port: target.port,
      user: login.login,
      password: login.password,
      database: target.database,
      ssl: false,
    };
    try {
      endpoint = { ...endpoint, ssl: tlsOptions(login.sslmode, login.caCert ?? undefined) };
    } catch (error) {
      throw upstream('pg_tls_failed', `${endpoint.label}: ${(error as Error).message}`);
    }
    try {
      await withConnection(endpoint, 'pg_login_refused', async (client) => {
        await client.query('select 1');
      });
      return true;
    } catch (error) {
      if (error instanceof MciasError && error.reason === 'pg_login_refused') return false;
      throw error;
    }
  }

  /** Connects with the named entry and reads its role's privileges (for `mciassrv config check`). */
  async privileges(name: string): Promise<PgAdminPrivileges> {
    const endpoint = this.choose({ host: '', port: 0, database: '', admin: name });
    return withConnection(endpoint, 'pg_admin_refused', async (client) => {
      const { rows } = await client.query<{ rolname: string; rolsuper: boolean; rolcreaterole: boolean; rolcreatedb: boolean; version: string }>(
        `select rolname, rolsuper, rolcreaterole, rolcreatedb, current_setting('server_version_num') as version
           from pg_roles where rolname = current_user`,
      );
      const row = rows[0]!;
      return {
        label: endpoint.label,
        sslmode: endpoint.sslmode,
        role: row.rolname,
        superuser: row.rolsuper,
        createRole: row.rolcreaterole,
        createDb: row.rolcreatedb,
        serverVersion: Number(row.version),
      };
    });
  }
}

/**
 * `CREATE DATABASE ... OWNER owner` needs the admin to be able to act as `owner` (a member on PostgreSQL 15, the SET
 * option on 16+). A CREATEROLE admin is not, so it is made a member just for the statement and removed afterwards.
 * (Tested on PostgreSQL 15; the 16+ form follows the PostgreSQL 16 documentation of GRANT's WITH options.)
 */
async function createDatabaseOwnedBy(client: pg.Client, database: string, owner: string): Promise<void> {
  const id = (name: string) => client.escapeIdentifier(name);
  const version = Number((await client.query<{ v: string }>(`select current_setting('server_version_num') as v`)).rows[0]!.v);
  const { rows } = await client.query<{ can: boolean }>('select pg_has_role(current_user, $1, $2) as can', [owner, version >= 160000 ? 'SET' : 'MEMBER']);
  const grant = rows[0]?.can !== true;
  // On 16+ a grant carries options: SET is what CREATE DATABASE needs; INHERIT FALSE keeps the owner's privileges
  // from reaching the admin even for this moment. The REVOKE removes only this grant (the one by the admin itself).
  if (grant) await client.query(`GRANT ${id(owner)} TO CURRENT_USER${version >= 160000 ? ' WITH INHERIT FALSE, SET TRUE' : ''}`);
  try {
    await client.query(`CREATE DATABASE ${id(database)} OWNER ${id(owner)}`);
  } finally {
    if (grant) await client.query(`REVOKE ${id(owner)} FROM CURRENT_USER`);
  }
}
