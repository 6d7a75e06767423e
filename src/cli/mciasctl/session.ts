import path from 'node:path';
import type { Command } from 'commander';
import { MciasClient, MciasClientError, isMciasApiError, type LoginResult } from '@mcias/client';
import { CliError } from '../errors.ts';
import { done, show } from '../output.ts';
import { CODE_PROMPT, PasswordsDiffer, promptCode, promptLine, requireTerminal } from '../prompt.ts';
import { readCodeFile } from '../secret-file.ts';
import { authenticated, checkReachable, connect, env, passwordFrom } from './connect.ts';
import { writeSession } from './session-file.ts';

/** Your own session: login, logout, whoami, password, renew. */

/**
 * Logs in with the password; if the server answers `totp_required`, asks for the code on the terminal and logs in
 * again with it. A code from --totp-code-file goes with the first request (the server ignores it without TOTP).
 */
async function logIn(client: MciasClient, username: string, password: string, codeFile: string | undefined): Promise<LoginResult> {
  if (codeFile !== undefined) return client.login(username, password, readCodeFile(codeFile));
  try {
    return await client.login(username, password);
  } catch (error) {
    if (!isMciasApiError(error, 'totp_required')) throw error;
  }
  const code = await promptCode(CODE_PROMPT, 'use --totp-code-file');
  try {
    return await client.login(username, password, code);
  } catch (error) {
    // The password was right a moment ago: what failed is the code.
    if (isMciasApiError(error, 'invalid_credentials')) throw new CliError('the code is not correct, or was already used', 'invalid_credentials');
    throw error;
  }
}

/**
 * After a login with a temporary password (`password_change_required`), sets the person's own password at once: from
 * --new-password-file, or asked twice without echo (asked again, up to three times in all, if the two typings
 * differ or the server refuses it).
 */
async function replaceTemporaryPassword(client: MciasClient, token: string, current: string, newPasswordFile: string | undefined): Promise<void> {
  const session = client.withToken(token);
  const attempts = newPasswordFile === undefined ? 3 : 1;
  if (newPasswordFile === undefined) {
    requireTerminal('a new password', 'this password is temporary and must be replaced: use --new-password-file');
    process.stderr.write('This password is temporary: choose your own now.\n');
  }
  const notSet = (why: string, code: string) =>
    new CliError(`the new password was not set (${why}); until it is, this session can do nothing else: run 'mciasctl password'`, code);
  for (let attempt = 1; ; attempt++) {
    let next: string;
    try {
      next = await passwordFrom(client, newPasswordFile, 'New password:', true);
    } catch (error) {
      if (!(error instanceof PasswordsDiffer)) throw error;
      if (attempt >= attempts) throw notSet(error.message, error.code);
      process.stderr.write(`${error.message}\n`);
      continue;
    }
    try {
      await session.changePassword(current, next);
      return;
    } catch (error) {
      if (!isMciasApiError(error, 'invalid_request') || attempt >= attempts) {
        throw notSet(error instanceof MciasClientError ? error.message : String(error), isMciasApiError(error) ? error.code : 'invalid_request');
      }
      process.stderr.write(`${error.message}\n`);
    }
  }
}

export function addSessionCommands(cli: Command): void {
  cli
    .command('login')
    .description('log in with a password (and a TOTP code once TOTP is on) and keep the token (0600) in the config directory')
    .option('-u, --username <name>', 'who to log in as (asked for if not given)')
    .option('--password-file <file>', 'read the password from this file instead of asking (for scripts)')
    .option('--totp-code-file <file>', 'read the TOTP code, or a recovery code, from this file instead of asking (for scripts)')
    .option('--new-password-file <file>', 'if the password is temporary, read the new one from this file instead of asking (for scripts)')
    .action(async (o: { username?: string; passwordFile?: string; totpCodeFile?: string; newPasswordFile?: string }, command: Command) => {
      const { client, caCertFile } = connect(command, { needToken: false });
      await checkReachable(client);
      const username = o.username ?? (await promptLine('Username:', 'use --username'));
      const password = await passwordFrom(client, o.passwordFile, `Password for ${username}:`, false);
      const result = await logIn(client, username, password, o.totpCodeFile);
      // Kept before a required change, so that a refused new password still leaves a session for 'mciasctl password'.
      writeSession(env, {
        server: client.server,
        caCert: caCertFile === undefined ? null : path.resolve(caCertFile),
        token: result.token,
        username: result.account.username,
        expiresAt: result.expires_at,
      });
      const changed = result.password_change_required === true;
      // The same token goes on: the server lifts the restriction the moment the password changes.
      if (changed) await replaceTemporaryPassword(client, result.token, password, o.newPasswordFile);
      const account = changed ? await client.withToken(result.token).me() : result.account;
      const enroll = result.totp_enrollment_required === true;
      const outcome = {
        account,
        expires_at: result.expires_at,
        ...(changed ? { password_changed: true } : {}),
        ...(enroll ? { totp_enrollment_required: true } : {}),
      };
      show(command, outcome, () => [
        ...(changed ? ['password changed: from now on, log in with the new one'] : []),
        `logged in as ${result.account.username}`,
        ...(enroll ? ["administrators must use TOTP: run 'mciasctl totp enroll' now, or your next login will be refused"] : []),
      ]);
    });

  cli
    .command('logout')
    .description('revoke the token and forget it')
    .action(async (_o: unknown, command: Command) => {
      const { client, session, tokenSource } = connect(command, { needToken: true });
      let note = '';
      try {
        await client.logout();
      } catch (error) {
        // A token the server already refuses (expired, revoked) is as good as logged out: forget it anyway.
        if (!(error instanceof MciasClientError && error.code === 'unauthenticated')) throw error;
        note = ' (the token was no longer valid)';
      }
      if (tokenSource === 'session' && session !== undefined) {
        writeSession(env, { server: session.server, caCert: session.caCert });
      }
      done(command, `logged out${note}`);
    });

  cli
    .command('whoami')
    .description('show the account the token belongs to')
    .action(async (_o: unknown, command: Command) => {
      show(command, await authenticated(command).me(), (account) => {
        const change = account.password_change_required ? "; the password is temporary: run 'mciasctl password'" : '';
        return [`${account.username} (${account.kind}, ${account.status}; roles: ${account.roles.join(',') || '-'}${change})`];
      });
    });

  cli
    .command('password')
    .description('change your own password (your other tokens are revoked)')
    .option('--current-password-file <file>', 'read the current password from this file')
    .option('--password-file <file>', 'read the new password from this file')
    .action(async (o: { currentPasswordFile?: string; passwordFile?: string }, command: Command) => {
      const client = authenticated(command);
      const current = await passwordFrom(client, o.currentPasswordFile, 'Current password:', false);
      const next = await passwordFrom(client, o.passwordFile, 'New password:', true);
      await client.changePassword(current, next);
      done(command, 'password changed; your other sessions were logged out');
    });

  cli
    .command('renew')
    .description('exchange the stored session token for a new one (the old one is revoked) and keep it')
    .action(async (_o: unknown, command: Command) => {
      const { client, session, tokenSource } = connect(command, { needToken: true });
      if (tokenSource !== 'session' || session === undefined) {
        // The presented token is revoked by renewal: a token from MCIAS_TOKEN would be lost with nowhere to keep the new one.
        throw new CliError("renew replaces the token stored by 'mciasctl login', and MCIAS_TOKEN is set: unset it", 'usage');
      }
      const renewed = await client.renew();
      writeSession(env, { ...session, token: renewed.token, expiresAt: renewed.expires_at });
      done(command, `renewed; the session now expires at ${renewed.expires_at}`, { expires_at: renewed.expires_at });
    });
}
