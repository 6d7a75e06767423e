import { readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { Command, Option } from 'commander';
import { PG_SSLMODES, checkCaCertificate, type NewPgCredentials, type PgProvisionRequest, type PgRotationMode, type PgSslMode } from '@mcias/client';
import { CliError } from '../errors.ts';
import { done, pgCredentialsDetails, pgCredentialsEnv, pgCredentialsUrl, printLines, show, wantsJson } from '../output.ts';
import { readPasswordStdin } from '../secret-file.ts';
import { authenticated, passwordFrom } from './connect.ts';

/**
 * Services' PostgreSQL credentials (docs/pgcreds.md): pgcreds set and delete (admin), pgcreds get (the service's own
 * token, a delegate or an admin). The password is never an argument: it is asked without echo, or read from a pipe
 * (--password-stdin) or a file (--password-file). `get` prints it, since handing it out is its point.
 */

const FORMATS = ['text', 'env', 'url'] as const;
type Format = (typeof FORMATS)[number];

/** --port's parser. */
function port(value: string): number {
  const n = Number(value);
  if (!/^\d{1,5}$/.test(value) || n < 1 || n > 65535) throw new CliError(`--port must be a number from 1 to 65535, not ${JSON.stringify(value)}`, 'usage');
  return n;
}

/**
 * Writes the CA certificate for libpq's PGSSLROOTCERT / sslrootcert: complete or not at all (a temporary file renamed
 * into place), so a service re-reading it never sees half. Certificates are public: the file is 0644.
 */
function writeCaFile(file: string, pem: string): string {
  const target = path.resolve(file);
  const temporary = `${target}.${process.pid}.tmp`;
  try {
    writeFileSync(temporary, pem, { mode: 0o644, flag: 'wx' });
    renameSync(temporary, target);
  } catch (error) {
    rmSync(temporary, { force: true });
    throw new CliError(`cannot write ${target}: ${(error as NodeJS.ErrnoException).code ?? 'error'}`, 'usage');
  }
  return target;
}

/**
 * Adds the `pgcreds` command group and returns it, so that other modules add their subcommands to the same group
 * (`addPgRotationCommands(addPgCredentialsCommands(cli))`).
 */
export function addPgCredentialsCommands(cli: Command): Command {
  const pgcreds = cli.command('pgcreds').description("services' PostgreSQL credentials: set, delete (admin); get (the service, a delegate or an admin)");

  connectionOptions(
    pgcreds
      .command('set')
      .description("store or replace a system account's PostgreSQL credentials (asks for the password without echo)")
      .argument('<service>', 'the system account'),
  )
    .option('--password-stdin', 'read the password from standard input (a pipe) instead of asking')
    .option('--password-file <file>', 'read the password from this file instead of asking')
    .action(async (service: string, o: SetOptions, command: Command) => {
      if (o.passwordStdin && o.passwordFile !== undefined) throw new CliError('give --password-stdin or --password-file, not both', 'usage');
      const client = authenticated(command);
      const password = o.passwordStdin ? readPasswordStdin() : await passwordFrom(client, o.passwordFile, o.mode === 'alternating' ? `PostgreSQL password of the ${o.user} login in use (${o.user}_a the first time):` : `PostgreSQL password of ${o.user}:`, true);
      const body: NewPgCredentials = { ...connectionBody(o), password };
      const stored = await client.setPgCredentials(service, body);
      done(command, `stored the PostgreSQL credentials of ${service}: ${stored.username}@${stored.host}:${stored.port}/${stored.database}, sslmode ${stored.sslmode}`, stored);
    });

  pgcreds
    .command('get')
    .description("print a service's PostgreSQL credentials, password included (the service's own token, a delegate or an admin)")
    .argument('<service>', 'the system account')
    .addOption(new Option('--format <format>', 'text for people; env: PGHOST=... lines for a shell; url: a postgres:// URL').choices(FORMATS).default('text'))
    .option('--ca-out <file>', 'write the stored CA certificate to this file (PGSSLROOTCERT / sslrootcert in env and url)')
    .action(async (service: string, o: { format: Format; caOut?: string }, command: Command) => {
      if (o.format !== 'text' && wantsJson(command)) throw new CliError('--json and --format env|url are different outputs: give one', 'usage');
      const credentials = await authenticated(command).getPgCredentials(service);
      const caFile = o.caOut !== undefined && credentials.ca_cert !== null ? writeCaFile(o.caOut, credentials.ca_cert) : undefined;
      if (o.format !== 'text' && credentials.ca_cert !== null && caFile === undefined) {
        // libpq would look for ~/.postgresql/root.crt instead and fail, or worse, trust another CA.
        throw new CliError(`the credentials of ${service} carry a CA certificate: add --ca-out FILE so that ${o.format} can point to it`, 'usage');
      }
      if (o.format === 'env') printLines(...pgCredentialsEnv(credentials, caFile));
      else if (o.format === 'url') printLines(pgCredentialsUrl(credentials, caFile));
      else show(command, credentials, pgCredentialsDetails);
    });

  pgcreds
    .command('delete')
    .description("forget a service's PostgreSQL credentials (admin; the roles on the PostgreSQL server stay)")
    .argument('<service>', 'the system account')
    .action(async (service: string, _o: unknown, command: Command) => {
      await authenticated(command).deletePgCredentials(service);
      done(command, `deleted the PostgreSQL credentials of ${service}`);
    });

  return pgcreds;
}

/** The options `set` and `provision` share: where the service's database is and how rotation treats it. */
export interface ConnectionOptions {
  host: string;
  port?: number;
  database: string;
  user: string;
  sslmode?: PgSslMode;
  mode?: PgRotationMode;
  pgCaCert?: string;
  admin?: string;
  rotateEvery?: string;
}

/** Declares the ConnectionOptions on `set` or `provision`. */
export function connectionOptions(command: Command): Command {
  return command
    .requiredOption('--host <host>', 'the PostgreSQL server: a host name or an IP address')
    .option('--port <port>', 'its port (default 5432)', port)
    .requiredOption('--database <name>', 'the database')
    .requiredOption('--user <role>', 'the login role (with --mode alternating: the group role; its logins are <role>_a and <role>_b)')
    .addOption(new Option('--sslmode <mode>', 'default: verify-full with --pg-ca-cert, else require').choices(PG_SSLMODES))
    .addOption(new Option('--mode <mode>', 'how rotation changes the password (default single)').choices(['single', 'alternating']))
    .option('--pg-ca-cert <file>', "PEM certificate(s) the service should trust for the PostgreSQL server (--ca-cert is MCIAS's own)")
    .option('--admin <name>', 'the [pg_admin.NAME] connection that provisions and rotates (default: the one matching host and port)')
    .option('--rotate-every <duration>', 'rotate on a schedule, e.g. 30d (at least 1h)');
}

/** The request fields from ConnectionOptions; the --pg-ca-cert file is read and checked here, before anything is sent. */
export function connectionBody(o: ConnectionOptions): Omit<PgProvisionRequest, 'create_database'> {
  const caCert = o.pgCaCert === undefined ? undefined : readCaCertFile(o.pgCaCert);
  return {
    host: o.host,
    database: o.database,
    username: o.user,
    ...(o.port === undefined ? {} : { port: o.port }),
    ...(o.sslmode === undefined ? {} : { sslmode: o.sslmode }),
    ...(caCert === undefined ? {} : { ca_cert: caCert }),
    ...(o.mode === undefined ? {} : { mode: o.mode }),
    ...(o.admin === undefined ? {} : { admin: o.admin }),
    ...(o.rotateEvery === undefined ? {} : { rotate_every: o.rotateEvery }),
  };
}

interface SetOptions extends ConnectionOptions {
  passwordStdin?: boolean;
  passwordFile?: string;
}

/** The --pg-ca-cert file, checked here so that a wrong file is named before anything is sent. */
function readCaCertFile(file: string): string {
  let pem: string;
  try {
    pem = readFileSync(file, 'utf8');
  } catch (error) {
    throw new CliError(`cannot read the certificate file ${file}: ${(error as NodeJS.ErrnoException).code ?? 'error'}`, 'usage');
  }
  checkCaCertificate(pem, `the certificate file ${file}`);
  return pem;
}
