import type { Command } from 'commander';
import { renderUnicodeCompact } from 'uqr';
import { MciasClient, isMciasApiError } from '@mcias/client';
import { CliError } from '../errors.ts';
import { done, printLines, show, wantsJson } from '../output.ts';
import { CODE_PROMPT, promptCode, requireTerminal } from '../prompt.ts';
import { readCodeFile } from '../secret-file.ts';
import { authenticated, passwordFrom } from './connect.ts';

/** Your own second factor: totp enroll, confirm, disable. */

function recoveryCodeLines(codes: readonly string[]): string[] {
  return [
    'TOTP is on: from now on, log in with your password and a code from the app.',
    '',
    'Recovery codes (each works once, in place of a code, if you lose the app):',
    '',
    ...codes.map((code) => `  ${code}`),
    '',
    'Store them somewhere safe, away from this device: they are not shown again.',
  ];
}

/** Confirms an enrollment; a wrong code leaves it pending, so say how to try again. */
async function confirmTotp(client: MciasClient, code: string): Promise<readonly string[]> {
  try {
    return (await client.confirmTotp(code)).recovery_codes;
  } catch (error) {
    if (isMciasApiError(error, 'invalid_credentials')) {
      throw new CliError("the code is not correct: run 'mciasctl totp confirm <code>' with the app's current code", 'invalid_credentials');
    }
    throw error;
  }
}

export function addTotpCommands(cli: Command): void {
  const totp = cli.command('totp').description('your own second factor (TOTP): enroll, confirm, disable');

  totp
    .command('enroll')
    .description('turn on TOTP: shows a QR code for your authenticator app, asks for a code from it, prints recovery codes')
    .option('--uri-only', "only start: print the otpauth:// URI and stop; finish with 'mciasctl totp confirm <code>'")
    .option('--code-file <file>', 'read the code from this file instead of asking; it is read only after the secret is shown (e.g. a named pipe)')
    .option('--password-file <file>', 'read your current password from this file instead of asking (enrolling needs it)')
    .addHelpText(
      'after',
      [
        '',
        'Scripts enroll in two steps, as the code depends on a secret that exists only once enrollment starts:',
        '  mciasctl totp enroll --uri-only --password-file F   print the otpauth:// URI (--json: {"otpauth_uri", "secret"})',
        '  mciasctl totp confirm <code>                        activate TOTP, print the recovery codes (--json: {"recovery_codes"})',
        'With --json, enroll always stops after the first step. An unconfirmed enrollment changes nothing at',
        'login; enrolling again starts over with a new secret.',
      ].join('\n'),
    )
    .action(async (o: { uriOnly?: boolean; codeFile?: string; passwordFile?: string }, command: Command) => {
      const json = wantsJson(command);
      if ((o.uriOnly || json) && o.codeFile !== undefined) {
        throw new CliError(`--code-file goes with the interactive enrollment, not with ${o.uriOnly ? '--uri-only' : '--json'}: use 'mciasctl totp confirm <code>'`, 'usage');
      }
      const interactive = !json && !o.uriOnly;
      // Fail before a secret is made and shown that could not be confirmed anyway.
      if (interactive && o.codeFile === undefined) requireTerminal('the TOTP code', "use --uri-only, then 'mciasctl totp confirm <code>'");
      const client = authenticated(command);
      // Re-authentication (SECURITY.md §14): a stolen session alone cannot turn TOTP on.
      const password = await passwordFrom(client, o.passwordFile, 'Current password:', false);
      const { secret, otpauth_uri: uri } = await client.beginTotp(password);
      if (!interactive) {
        show(command, { otpauth_uri: uri, secret }, () => [uri]);
        return;
      }
      printLines(
        'Scan this QR code with your authenticator app:',
        '',
        ...renderUnicodeCompact(uri).split('\n'),
        '',
        `or add this URI to it: ${uri}`,
        `or type in the secret by hand: ${secret}   (time-based, SHA-1, 6 digits, every 30 seconds)`,
        '',
      );
      const code = o.codeFile !== undefined ? readCodeFile(o.codeFile) : await promptCode('Code from the app:', 'use --code-file');
      printLines(...recoveryCodeLines(await confirmTotp(client, code)));
    });

  totp
    .command('confirm')
    .description("activate the enrollment started by 'totp enroll --uri-only' with the app's current code; prints the recovery codes")
    .argument('<code>', 'the 6-digit code the authenticator app shows')
    .action(async (code: string, _o: unknown, command: Command) => {
      const codes = await confirmTotp(authenticated(command), code.replace(/\s/g, ''));
      show(command, { recovery_codes: codes }, () => recoveryCodeLines(codes));
    });

  totp
    .command('disable')
    .description('turn off your TOTP (asks for your password and a current code, or a recovery code)')
    .option('--password-file <file>', 'read the password from this file instead of asking')
    .option('--code-file <file>', 'read the code from this file instead of asking')
    .action(async (o: { passwordFile?: string; codeFile?: string }, command: Command) => {
      const client = authenticated(command);
      const password = await passwordFrom(client, o.passwordFile, 'Password:', false);
      const code = o.codeFile !== undefined ? readCodeFile(o.codeFile) : await promptCode(CODE_PROMPT, 'use --code-file');
      await client.disableTotp(password, code);
      done(command, 'TOTP is off: you log in with your password alone');
    });
}
