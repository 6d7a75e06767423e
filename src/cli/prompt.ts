import { read } from 'read';
import { CliError } from './errors.ts';

/**
 * Asking people for names and passwords. Prompts go to stderr so stdout stays clean for --json; passwords are read
 * without echo, and only from a terminal: a script passes a password file instead.
 */
export function requireTerminal(what: string, hint: string): void {
  if (!process.stdin.isTTY) throw new CliError(`no terminal to ask for ${what}: ${hint}`, 'usage');
}

export async function promptLine(prompt: string, hint: string): Promise<string> {
  requireTerminal('input', hint);
  const answer = (await ask({ prompt, silent: false })).trim();
  if (answer === '') throw new CliError('no answer given', 'usage');
  return answer;
}

export async function promptPassword(prompt: string): Promise<string> {
  requireTerminal('a password', 'use --password-file');
  const password = await ask({ prompt, silent: true });
  if (password === '') throw new CliError('the password is empty', 'usage');
  return password;
}

/** The two typings of a new password were not the same; a caller that can ask again catches it. */
export class PasswordsDiffer extends CliError {
  constructor() {
    super('the two passwords differ', 'usage');
  }
}

/** A new password, typed twice. */
export async function promptNewPassword(prompt: string): Promise<string> {
  const first = await promptPassword(prompt);
  const second = await promptPassword('Repeat it:');
  if (first !== second) throw new PasswordsDiffer();
  return first;
}

/** The prompt for the second factor at login and when TOTP is turned off. */
export const CODE_PROMPT = 'TOTP code (or recovery code):';

/**
 * A one-time code (a TOTP code, a recovery code or a registration code), read without echo like a password; the spaces people copy from
 * an authenticator app ("123 456") are dropped.
 */
export async function promptCode(prompt: string, hint: string, what = 'the TOTP code'): Promise<string> {
  requireTerminal(what, hint);
  const code = (await ask({ prompt, silent: true })).replace(/\s/g, '');
  if (code === '') throw new CliError('no code given', 'usage');
  return code;
}

async function ask(options: { prompt: string; silent: boolean }): Promise<string> {
  try {
    return await read({ prompt: options.prompt, silent: options.silent, input: process.stdin, output: process.stderr, terminal: true });
  } catch (error) {
    // read() rejects with 'canceled' on Ctrl-C, after restoring the terminal.
    throw new CliError((error as Error).message === 'canceled' ? 'canceled' : `cannot read from the terminal: ${(error as Error).message}`, 'canceled');
  } finally {
    if (options.silent) process.stderr.write('\n');
  }
}
