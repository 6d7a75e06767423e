import { Command, Option } from 'commander';
import { PG_SSLMODES, type PgProvisionRequest, type PgRotationMode, type PgSslMode } from '@mcias/client';
import { done } from '../output.ts';
import { authenticated } from './connect.ts';
import { port, readCaCertFile } from './pgcreds.ts';

/**
 * pgcreds rotate and provision (admin), added to the `pgcreds` group: both change roles on the service's PostgreSQL
 * server through the server's `[pg_admin.NAME]` connection, with passwords the server generates. Neither prints a
 * password: the service fetches it with `pgcreds get`.
 */
export function addPgRotationCommands(pgcreds: Command): Command {
  pgcreds
    .command('rotate')
    .description("set a new random password on a service's PostgreSQL login now, and store it (admin)")
    .argument('<service>', 'the system account')
    .action(async (service: string, _o: unknown, command: Command) => {
      const stored = await authenticated(command).rotatePgCredentials(service);
      done(command, `rotated the PostgreSQL password of ${service}: ${stored.username} is in use (pgcreds get ${service} prints it)`, stored);
    });

  pgcreds
    .command('provision')
    .description("create a new service's PostgreSQL login role(s), and optionally its database, with generated passwords, and store them (admin)")
    .argument('<service>', 'the system account')
    .requiredOption('--host <host>', 'the PostgreSQL server: a host name or an IP address')
    .option('--port <port>', 'its port (default 5432)', port)
    .requiredOption('--database <name>', 'the database')
    .requiredOption('--user <role>', 'the login role (with --mode alternating: the group role; the logins are <role>_a and <role>_b)')
    .addOption(new Option('--sslmode <mode>', 'default: verify-full with --pg-ca-cert, else require').choices(PG_SSLMODES))
    .addOption(new Option('--mode <mode>', 'how rotation changes the password (default single)').choices(['single', 'alternating']))
    .option('--pg-ca-cert <file>', "PEM certificate(s) the service should trust for the PostgreSQL server (--ca-cert is MCIAS's own)")
    .option('--admin <name>', 'the [pg_admin.NAME] connection to use (default: the one matching host and port)')
    .option('--rotate-every <duration>', 'rotate on a schedule, e.g. 30d (at least 1h)')
    .option('--create-database', 'also create the database, owned by the group role (single mode: the login)')
    .action(async (service: string, o: ProvisionOptions, command: Command) => {
      const caCert = o.pgCaCert === undefined ? undefined : readCaCertFile(o.pgCaCert);
      const body: PgProvisionRequest = {
        host: o.host,
        database: o.database,
        username: o.user,
        ...(o.port === undefined ? {} : { port: o.port }),
        ...(o.sslmode === undefined ? {} : { sslmode: o.sslmode }),
        ...(caCert === undefined ? {} : { ca_cert: caCert }),
        ...(o.mode === undefined ? {} : { mode: o.mode }),
        ...(o.admin === undefined ? {} : { admin: o.admin }),
        ...(o.rotateEvery === undefined ? {} : { rotate_every: o.rotateEvery }),
        ...(o.createDatabase === true ? { create_database: true } : {}),
      };
      const stored = await authenticated(command).provisionPgCredentials(service, body);
      done(command, `provisioned ${stored.username}@${stored.host}:${stored.port}/${stored.database} for ${service} (pgcreds get ${service} prints the password)`, stored);
    });

  return pgcreds;
}

interface ProvisionOptions {
  host: string;
  port?: number;
  database: string;
  user: string;
  sslmode?: PgSslMode;
  mode?: PgRotationMode;
  pgCaCert?: string;
  admin?: string;
  rotateEvery?: string;
  createDatabase?: boolean;
}
