import { closeSync, openSync, rmSync, writeSync } from 'node:fs';
import path from 'node:path';
import type { Command } from 'commander';
import type { IssuedToken } from '@mcias/client';
import { CliError } from '../errors.ts';
import { done, show, tokenTable } from '../output.ts';
import { authenticated } from './connect.ts';

/** Tokens: token issue (admin or delegate), revoke, list, revoke-id (admin). */

/**
 * Creates the token file before the token is issued (issuing revokes the previous one, so a path that cannot be
 * written must fail first). O_EXCL: never an existing file, nor through a symbolic link; 0600 from the start.
 */
function createTokenFile(file: string): { fd: number; path: string } {
  const target = path.resolve(file);
  try {
    return { fd: openSync(target, 'wx', 0o600), path: target };
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? 'error';
    if (code === 'EEXIST') throw new CliError(`${target} exists; refusing to overwrite it`, 'usage');
    throw new CliError(`cannot create ${target}: ${code}`, 'usage');
  }
}

export function addTokenCommands(cli: Command): void {
  const token = cli.command('token').description('service tokens (admin or delegate); list and revoke tokens (admin)');

  token
    .command('issue')
    .description("issue a system account's token, revoking its previous one (admin, or a holder of the role named after it)")
    .argument('<service>', 'the system account')
    .option('--out <file>', 'write the token to this new file (0600) instead of printing it')
    .action(async (service: string, o: { out?: string }, command: Command) => {
      const client = authenticated(command);
      const out = o.out === undefined ? undefined : createTokenFile(o.out);
      let issued: IssuedToken;
      try {
        issued = await client.issueServiceToken(service);
        if (out !== undefined) writeSync(out.fd, `${issued.token}\n`);
      } catch (error) {
        if (out !== undefined) {
          closeSync(out.fd);
          rmSync(out.path, { force: true });
        }
        throw error;
      }
      const { token: value, token_type, expires_at } = issued;
      if (out === undefined) {
        // The only time the token is shown: one line, so it can be piped.
        show(command, { token: value, token_type, expires_at }, () => [value]);
        return;
      }
      closeSync(out.fd);
      show(command, { token_type, expires_at }, () => [`wrote the token of ${service} to ${out.path}; it expires at ${expires_at}`]);
    });

  token
    .command('revoke')
    .description("revoke a system account's live token (admin)")
    .argument('<service>', 'the system account')
    .action(async (service: string, _o: unknown, command: Command) => {
      await authenticated(command).revokeServiceToken(service);
      done(command, `revoked the token of ${service}`);
    });

  token
    .command('list')
    .description("list an account's unexpired, unrevoked tokens (never their values)")
    .argument('<account>', 'the username')
    .action(async (username: string, _o: unknown, command: Command) => {
      show(command, await authenticated(command).listTokens(username), tokenTable);
    });

  token
    .command('revoke-id')
    .description('revoke any token by its id (the JTI column of token list)')
    .argument('<jti>')
    .action(async (jti: string, _o: unknown, command: Command) => {
      await authenticated(command).revokeToken(jti);
      done(command, `revoked token ${jti}`);
    });
}
