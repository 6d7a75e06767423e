import type { Command } from 'commander';
import type { PgProvisionRequest } from '@mcias/client';
import { done } from '../output.ts';
import { authenticated } from './connect.ts';
import { connectionBody, connectionOptions, type ConnectionOptions } from './pgcreds.ts';

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

  connectionOptions(
    pgcreds
      .command('provision')
      .description("create a new service's PostgreSQL login role(s), and optionally its database, with generated passwords, and store them (admin)")
      .argument('<service>', 'the system account'),
  )
    .option('--create-database', 'also create the database, owned by the group role (single mode: the login)')
    .action(async (service: string, o: ProvisionOptions, command: Command) => {
      const body: PgProvisionRequest = { ...connectionBody(o), ...(o.createDatabase === true ? { create_database: true } : {}) };
      const stored = await authenticated(command).provisionPgCredentials(service, body);
      done(command, `provisioned ${stored.username}@${stored.host}:${stored.port}/${stored.database} for ${service} (pgcreds get ${service} prints the password)`, stored);
    });

  return pgcreds;
}

interface ProvisionOptions extends ConnectionOptions {
  createDatabase?: boolean;
}
