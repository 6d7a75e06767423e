import type { Command } from 'commander';
import { CliError } from '../errors.ts';
import { accountDetails, accountTable, done, show } from '../output.ts';
import { authenticated, passwordFrom } from './connect.ts';

/** Accounts (admin): account list, create, show, disable, enable, delete, set-password, unlock, reset-totp. */
export function addAccountCommands(cli: Command): void {
  const account = cli.command('account').description('manage accounts (admin)');

  account
    .command('list')
    .description('list every account')
    .action(async (_o: unknown, command: Command) => {
      show(command, await authenticated(command).listAccounts(), accountTable);
    });

  account
    .command('create')
    .description('create a human account (asks for its password, temporary unless --no-temporary) or, with --system, a system account')
    .argument('<username>')
    .option('--system', 'a system account (a service; it has no password)')
    .option('--password-file <file>', 'read the password from this file instead of asking')
    .option('--no-temporary', 'the password is final: no change is asked at the first login (for automation)')
    .action(async (username: string, o: { system?: boolean; passwordFile?: string; temporary: boolean }, command: Command) => {
      if (o.system && o.passwordFile !== undefined) throw new CliError('a system account has no password: drop --password-file', 'usage');
      if (o.system && !o.temporary) throw new CliError('a system account has no password: drop --no-temporary', 'usage');
      const client = authenticated(command);
      const created = o.system
        ? await client.createAccount({ username, kind: 'system' })
        : await client.createAccount({
            username,
            kind: 'human',
            password: await passwordFrom(client, o.passwordFile, `Password for ${username}:`, true),
            ...(o.temporary ? {} : { temporary: false }),
          });
      const note = created.password_change_required ? ' (the password is temporary: they choose their own at their first login)' : '';
      done(command, `created ${created.kind} account ${created.username}${note}`, created);
    });

  account
    .command('show')
    .description('show one account')
    .argument('<username>')
    .action(async (username: string, _o: unknown, command: Command) => {
      show(command, await authenticated(command).getAccount(username), accountDetails);
    });

  for (const [verb, status, description] of [
    ['disable', 'disabled', 'disable an account and revoke all of its tokens'],
    ['enable', 'active', 'enable a disabled account'],
  ] as const) {
    account
      .command(verb)
      .description(description)
      .argument('<username>')
      .action(async (username: string, _o: unknown, command: Command) => {
        const updated = await authenticated(command).setAccountStatus(username, status);
        done(command, `${verb}d account ${updated.username}`, updated);
      });
  }

  account
    .command('delete')
    .description('delete an account, its tokens and credentials (its audit events stay)')
    .argument('<username>')
    .action(async (username: string, _o: unknown, command: Command) => {
      await authenticated(command).deleteAccount(username);
      done(command, `deleted account ${username}`);
    });

  account
    .command('set-password')
    .description("set a human account's password (asks for it; temporary unless --no-temporary); its tokens are revoked")
    .argument('<username>')
    .option('--password-file <file>', 'read the password from this file instead of asking')
    .option('--no-temporary', 'the password is final: no change is asked at the next login (for automation)')
    .action(async (username: string, o: { passwordFile?: string; temporary: boolean }, command: Command) => {
      const client = authenticated(command);
      const password = await passwordFrom(client, o.passwordFile, `New password for ${username}:`, true);
      await client.resetPassword(username, password, o.temporary ? {} : { temporary: false });
      done(command, `set the password of ${username}${o.temporary ? ' (temporary: they choose their own at their next login)' : ''}`);
    });

  account
    .command('unlock')
    .description('clear the failed-login count of an account locked by failed attempts: the person may log in at once')
    .argument('<username>')
    .action(async (username: string, _o: unknown, command: Command) => {
      const result = await authenticated(command).unlockAccount(username);
      done(command, `unlocked ${result.username} (${result.failures_cleared} failed attempts cleared)`, result);
    });

  account
    .command('reset-totp')
    .description("remove a person's TOTP and recovery codes (a lost authenticator): they log in with the password, then enroll again")
    .argument('<username>')
    .action(async (username: string, _o: unknown, command: Command) => {
      await authenticated(command).resetTotp(username);
      done(command, `reset the TOTP of ${username}: they log in with the password alone`);
    });
}
