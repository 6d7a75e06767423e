import type { Command } from 'commander';
import type { CreatedRegistration } from '@mcias/client';
import { CliError } from '../errors.ts';
import { done, registrationTable, show, wantsJson, printLines } from '../output.ts';
import { promptCode } from '../prompt.ts';
import { readCodeFile } from '../secret-file.ts';
import { checkReachable, connect, passwordFrom } from './connect.ts';

/** Registration codes (admin): registration create, list, delete; and `register`, which redeems one (anyone). */

/**
 * What the administrator passes on: the code, and the command that redeems it. The code is a secret, so it is not
 * part of the command (an argv is visible to other users of a host): `mciasctl register` asks for it without echo.
 */
function shareLines(made: CreatedRegistration, server: string, caCertFile: string | undefined): string[] {
  const uses = made.uses_left === 1 ? '1 use' : `${made.uses_left} uses`;
  const roles = made.roles.length === 0 ? 'no roles' : `roles ${made.roles.join(', ')}`;
  const caCert = caCertFile === undefined ? '' : ' --ca-cert <the server certificate>';
  return [
    `created registration code ${made.id}: ${uses}, ${roles}, expires ${made.expires_at}`,
    'the code is shown only now; pass this line on privately:',
    `MCIAS invitation code ${made.code} (until ${made.expires_at}); sign up with: mciasctl --server ${server}${caCert} register <username> (it asks for the code and a new password)`,
  ];
}

export function addRegistrationCommands(cli: Command): void {
  const registration = cli.command('registration').description('registration codes for invite-only sign-up (admin)');

  registration
    .command('create')
    .description('create a registration code and print it with the command that redeems it (the code is shown once)')
    .option('--role <role>', 'a role granted on sign-up (repeatable)', (value: string, all: string[]) => [...all, value], [] as string[])
    .option('--uses <n>', 'how many accounts it may create (default 1)', (value: string) => {
      if (!/^\d+$/.test(value)) throw new CliError(`--uses must be a whole number, not ${JSON.stringify(value)}`, 'usage');
      return Number(value);
    })
    .option('--expires <duration>', 'how long it stays valid, such as 12h or 30d (default 7d)')
    .option('--allow-admin', 'allow --role admin: every account made with the code is an administrator (audited)')
    .action(async (o: { role: string[]; uses?: number; expires?: string; allowAdmin?: boolean }, command: Command) => {
      const { client, server, caCertFile } = connect(command, { needToken: true });
      const made = await client.createRegistration({
        roles: o.role,
        ...(o.uses === undefined ? {} : { uses: o.uses }),
        ...(o.expires === undefined ? {} : { expiresIn: o.expires }),
        ...(o.allowAdmin === true ? { allowAdmin: true } : {}),
      });
      show(command, made, () => shareLines(made, server, caCertFile));
    });

  registration
    .command('list')
    .description('list registration codes (never the codes themselves)')
    .action(async (_o: unknown, command: Command) => {
      show(command, await connect(command, { needToken: true }).client.listRegistrations(), registrationTable);
    });

  registration
    .command('delete')
    .description('delete a registration code: it can no longer be redeemed')
    .argument('<id>', 'the id that create and list show')
    .action(async (id: string, _o: unknown, command: Command) => {
      await connect(command, { needToken: true }).client.deleteRegistration(id);
      done(command, `deleted registration code ${id}`);
    });

  cli
    .command('register')
    .description('create your own account with a registration code (asks for the code and a new password)')
    .argument('<username>')
    .option('--code-file <file>', 'read the registration code from this file instead of asking')
    .option('--password-file <file>', 'read the new password from this file instead of asking')
    .action(async (username: string, o: { codeFile?: string; passwordFile?: string }, command: Command) => {
      const { client } = connect(command, { needToken: false });
      let code: string;
      if (o.codeFile !== undefined) code = readCodeFile(o.codeFile);
      else {
        await checkReachable(client);
        code = await promptCode('Registration code:', 'use --code-file', 'the registration code');
      }
      const password = await passwordFrom(client, o.passwordFile, 'New password:', true);
      const account = await client.register(code, username, password);
      if (wantsJson(command)) show(command, account, () => []);
      else printLines(`created account ${account.username}${account.roles.length === 0 ? '' : ` with roles ${account.roles.join(', ')}`}; log in with: mciasctl login ${account.username}`);
    });
}
