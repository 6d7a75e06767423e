import type { Command } from 'commander';
import {
  MciasClientError,
  type Account,
  type AuditEvent,
  type PgCredentials,
  type PermissionDefinition,
  type PgCredentialsWithPassword,
  type Registration,
  type Role,
  type RoleDetails,
  type TokenInfo,
} from '@mcias/client';
import { escapeControls } from '../domain/audit.ts';
import { CliError } from './errors.ts';

/**
 * The one way mciasctl prints: results on stdout (lines for people, or with --json the object), failures as one line
 * on stderr. No command formats its own table, its own JSON or its own error message.
 */

/**
 * The one line mciasctl prints for a failure: `<message>[; <what to do>] (<code>)`. What to do about a connection
 * problem is said here, once, for every command.
 */
function describeError(error: unknown, context: ErrorContext): string {
  if (error instanceof MciasClientError || error instanceof CliError) {
    const hint = error.code === 'unauthenticated' && !error.message.includes('mciasctl login') ? ": run 'mciasctl login'" : '';
    const advice = error instanceof MciasClientError ? connectionAdvice(error, context) : undefined;
    return `${error.message}${hint}${advice === undefined ? '' : `; ${advice}`} (${error.code})`;
  }
  return (error as Error).message;
}

const LOCAL_CERT = 'data/tls/cert.pem for a local `npm start`';

/** What the command was running with when it failed, so the advice does not suggest what was already done. */
interface ErrorContext {
  /** The CA certificate file the connection trusted (--ca-cert, MCIAS_CA_CERT or the session's). */
  readonly caCertFile?: string | undefined;
}

function connectionAdvice(error: MciasClientError, context: ErrorContext): string | undefined {
  const cause = (error.cause as NodeJS.ErrnoException | undefined)?.code ?? '';
  switch (error.code) {
    case 'tls_verification_failed':
      if (cause === 'ERR_TLS_CERT_ALTNAME_INVALID') return "use in --server a host name or address that the server's certificate names";
      if (cause === 'CERT_HAS_EXPIRED' || cause === 'CERT_NOT_YET_VALID') return undefined;
      if (context.caCertFile !== undefined) {
        return `the certificate given with --ca-cert (${context.caCertFile}) is not the one the server presents: pass the server's certificate instead (${LOCAL_CERT})`;
      }
      return `pass --ca-cert with the server's certificate (${LOCAL_CERT})`;
    case 'tls_failed':
      // OpenSSL's "wrong version number": what came back was not TLS (plain HTTP, say).
      return /wrong version number/.test(error.message) ? 'the server did not answer in TLS: is --server the address of mciassrv?' : undefined;
    case 'connection_failed':
      if (cause === 'ENOTFOUND' || cause === 'EAI_AGAIN') return 'check the host name in --server';
      return 'check that mciassrv is running and that --server is the address it serves (its log says: "mciassrv is serving")';
    default:
      return undefined;
  }
}

/** Whether the command was given the global --json. */
export function wantsJson(command: Command): boolean {
  return command.optsWithGlobals<{ json?: boolean }>().json === true;
}

/** A result: with --json the value itself, else the lines `lines` makes of it. */
export function show<T>(command: Command, value: T, lines: (value: T) => readonly string[]): void {
  if (wantsJson(command)) printJson(value);
  else printLines(...lines(value));
}

/** What a write command says when it worked: a line for people, or with --json the resulting object (`{}` if none). */
export function done(command: Command, line: string, result: object = {}): void {
  show(command, result, () => [line]);
}

/** Mistakes in how mciasctl was called, as opposed to failures of the call. */
const USAGE_CODES: ReadonlySet<string> = new Set(['usage', 'invalid_argument']);

/** Prints a failure as one line on stderr, `mciasctl: <message> (<code>)`; returns the exit code, 1, or 2 for a usage error. */
export function printError(error: unknown, context: ErrorContext = {}): number {
  process.stderr.write(`mciasctl: ${describeError(error, context)}\n`);
  return (error instanceof CliError || error instanceof MciasClientError) && USAGE_CODES.has(error.code) ? 2 : 1;
}

/** Commander's own usage errors, in the same one-line form as every other error. */
export function printUsageError(text: string, write: (line: string) => void): void {
  write(`mciasctl: ${text.replace(/^error: /, '').replace(/\s*\n\s*/g, ' ').trim()} (usage)\n`);
}

function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

/** One JSON value on one line (a stream of events, as `audit tail --json` prints). */
export function printJsonLine(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value)}\n`);
}

export function printLines(...lines: string[]): void {
  process.stdout.write(lines.map((line) => `${line}\n`).join(''));
}

/** Columns padded to their widest cell; the last column is not padded. */
function table(header: readonly string[] | undefined, rows: readonly (readonly string[])[]): string[] {
  const all = header === undefined ? rows : [header, ...rows];
  const columns = Math.max(0, ...all.map((row) => row.length));
  const widths = Array.from({ length: columns }, (_, i) => Math.max(...all.map((row) => (row[i] ?? '').length)));
  return all.map((row) => row.map((cell, i) => (i === row.length - 1 ? cell : cell.padEnd(widths[i] ?? 0))).join('  ').trimEnd());
}

const list = (items: readonly string[]) => (items.length === 0 ? '-' : items.join(','));

export function accountTable(accounts: readonly Account[]): string[] {
  return table(
    ['USERNAME', 'KIND', 'STATUS', 'TOTP', 'CREATED', 'ROLES'],
    accounts.map((a) => [a.username, a.kind, a.status, a.totp_enabled ? 'yes' : 'no', a.created_at, list(a.roles)]),
  );
}

export function accountDetails(account: Account): string[] {
  return table(undefined, [
    ['username:', account.username],
    ['id:', account.id],
    ['kind:', account.kind],
    ['status:', account.status],
    ['roles:', list(account.roles)],
    ['totp:', account.totp_enabled ? 'enabled' : 'not enabled'],
    ...(account.password_change_required ? [['password:', 'temporary (to be changed at the next login)']] : []),
    ['created:', account.created_at],
  ]);
}

export function roleTable(roles: readonly Role[]): string[] {
  return table(
    ['NAME', 'PERMISSIONS'],
    roles.map((r) => [r.name, list(r.permissions.map((p) => `${p.resource}:${p.action}`))]),
  );
}

export function roleDetails(role: RoleDetails): string[] {
  return table(undefined, [
    ['role:', role.name],
    ['permissions:', list(role.permissions.map((p) => `${p.resource}:${p.action}`))],
    ['holders:', list(role.holders)],
  ]);
}

export function permissionTable(permissions: readonly PermissionDefinition[]): string[] {
  return table(
    ['RESOURCE', 'ACTION', 'ROLES', 'DESCRIPTION'],
    permissions.map((p) => [p.resource, p.action, list(p.roles), p.description]),
  );
}

export function registrationTable(registrations: readonly Registration[]): string[] {
  return table(
    ['ID', 'USES LEFT', 'EXPIRES', 'ROLES'],
    registrations.map((r) => [r.id, String(r.uses_left), r.expires_at, list(r.roles)]),
  );
}

export function tokenTable(tokens: readonly TokenInfo[]): string[] {
  return table(
    ['JTI', 'KIND', 'ISSUED', 'EXPIRES', 'ISSUED BY'],
    tokens.map((t) => [t.jti, t.kind, t.issued_at, t.expires_at, t.issued_by ?? '-']),
  );
}

/**
 * Audit events, one per row. Every value that a client could have chosen (usernames, user agent, details) has its
 * control characters escaped, so an event cannot break its row or repaint the terminal (SECURITY.md §30).
 */
export function auditTable(events: readonly AuditEvent[], options: { header?: boolean } = {}): string[] {
  const party = (p: AuditEvent['actor']) => (p === null ? '-' : escapeControls(p.username));
  const details = (d: AuditEvent['details']) => {
    const pairs = Object.entries(d).map(([key, value]) => `${escapeControls(key)}=${typeof value === 'string' ? escapeControls(value) : String(value)}`);
    return pairs.length === 0 ? '-' : pairs.join(' ');
  };
  return table(
    options.header === false ? undefined : ['SEQ', 'TIME', 'TYPE', 'OUTCOME', 'ACTOR', 'SUBJECT', 'ADDRESS', 'DETAILS'],
    events.map((e) => [String(e.seq), e.occurred_at, e.type, e.outcome, party(e.actor), party(e.subject), e.ip === null ? '-' : escapeControls(e.ip), details(e.details)]),
  );
}

/** A service's PostgreSQL credentials for people; the password line only when the read answered one. */
export function pgCredentialsDetails(credentials: PgCredentials | PgCredentialsWithPassword): string[] {
  const c = credentials;
  return table(undefined, [
    ['host:', c.host],
    ['port:', String(c.port)],
    ['database:', c.database],
    ['user:', c.username],
    ...('password' in c ? [['password:', c.password]] : []),
    ['sslmode:', c.sslmode],
    ['ca cert:', c.ca_cert === null ? '-' : 'stored (--json shows it; --ca-out writes it to a file)'],
    ['mode:', c.group_role === null ? c.mode : `${c.mode} (group role ${c.group_role})`],
    ['admin:', c.admin ?? '- (the [pg_admin] entry matching host and port)'],
    ['rotation:', c.rotate_every === null ? 'on request only' : `every ${c.rotate_every}, next at ${c.next_rotation_at ?? '-'}`],
    ['last rotated:', c.last_rotated_at ?? '-'],
    ...(c.last_rotation_error === null ? [] : [['last error:', c.last_rotation_error]]),
    ...(c.rotation_pending ? [['pending:', 'a rotation has begun and not finished: fetch again shortly']] : []),
  ]);
}

/** One value for POSIX sh, in single quotes (a `'` inside becomes `'\''`): `eval` reads back exactly the value. */
function shellQuote(value: string): string {
  return `'${value.replaceAll("'", `'\\''`)}'`;
}

/**
 * libpq's environment variables, one `NAME='value'` line each, for `set -a; eval "$(...)"; set +a` in a shell.
 * PGSSLROOTCERT only when the CA certificate was written to a file (`caFile`).
 */
export function pgCredentialsEnv(c: PgCredentialsWithPassword, caFile: string | undefined): string[] {
  const vars: [string, string][] = [
    ['PGHOST', c.host],
    ['PGPORT', String(c.port)],
    ['PGDATABASE', c.database],
    ['PGUSER', c.username],
    ['PGPASSWORD', c.password],
    ['PGSSLMODE', c.sslmode],
    ...(caFile === undefined ? [] : ([['PGSSLROOTCERT', caFile]] as [string, string][])),
  ];
  return vars.map(([name, value]) => `${name}=${shellQuote(value)}`);
}

/** RFC 3986 percent-encoding of everything but the unreserved characters (encodeURIComponent leaves !'()* as they are). */
function percentEncode(value: string): string {
  return encodeURIComponent(value).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}

/** A `postgres://` connection URI (libpq, node-postgres): user, password and database percent-encoded. */
export function pgCredentialsUrl(c: PgCredentialsWithPassword, caFile: string | undefined): string {
  const host = c.host.includes(':') ? `[${c.host}]` : c.host;
  const query = [`sslmode=${c.sslmode}`, ...(caFile === undefined ? [] : [`sslrootcert=${percentEncode(caFile)}`])].join('&');
  return `postgres://${percentEncode(c.username)}:${percentEncode(c.password)}@${host}:${c.port}/${percentEncode(c.database)}?${query}`;
}
