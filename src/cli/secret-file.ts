import { readFileSync } from 'node:fs';
import { CliError } from './errors.ts';

/**
 * Secrets read from files, for scripts (`--password-file`, `--admin-password-file`, `--code-file`, ...). One rule for
 * every such file: exactly one line; one trailing line ending (`\n` or `\r\n`) is dropped, so `echo secret > file`
 * works, and nothing else is trimmed, so a password may begin or end with spaces. An empty file, or one with more
 * than one line, is refused rather than guessed at. Errors name the file, never its content.
 */
export function readPasswordFile(file: string): string {
  return readSecretFile(file, 'password');
}

/** A TOTP or recovery code from a file: its one line, without the spaces people copy from an app ("123 456"). */
export function readCodeFile(file: string): string {
  const code = readSecretFile(file, 'code').replace(/\s/g, '');
  if (code === '') throw new CliError(`the code file ${file} is empty`, 'usage');
  return code;
}

/**
 * A password piped on standard input (`--password-stdin`), by the same rule as a file. Never from a terminal: there,
 * the command asks without echo instead.
 */
export function readPasswordStdin(): string {
  if (process.stdin.isTTY) throw new CliError('--password-stdin reads a pipe, not a terminal: leave it out to be asked', 'usage');
  return readSecretFile(0, 'password', 'from standard input');
}

function readSecretFile(file: string | 0, what: string, where = `file ${String(file)}`): string {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    throw new CliError(`cannot read the ${what} ${where}: ${(error as NodeJS.ErrnoException).code ?? 'error'}`, 'usage');
  }
  const value = text.replace(/\r?\n$/, '');
  if (value === '') throw new CliError(`the ${what} ${where} is empty`, 'usage');
  if (/[\r\n]/.test(value)) throw new CliError(`the ${what} ${where} has more than one line`, 'usage');
  return value;
}
