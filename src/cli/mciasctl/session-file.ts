import { chmodSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import path from 'node:path';
import { CliError } from '../errors.ts';

/**
 * mciasctl's login state: where the server is, which CA certificate it is trusted with, and the bearer token.
 * The file is 0600 in a 0700 directory; it never holds a password.
 */
export interface Session {
  readonly server: string;
  /** Absolute path of the CA certificate file, or null for the bundled public roots. */
  readonly caCert: string | null;
  readonly token?: string | undefined;
  readonly username?: string | undefined;
  readonly expiresAt?: string | undefined;
}

const SESSION_FILE_NAME = 'session.json';

type Env = Readonly<Record<string, string | undefined>>;

/** `$MCIAS_CONFIG_DIR`, else `$XDG_CONFIG_HOME/mcias`, else `~/.config/mcias`. */
function configDir(env: Env): string {
  if (env['MCIAS_CONFIG_DIR']) return path.resolve(env['MCIAS_CONFIG_DIR']);
  if (env['XDG_CONFIG_HOME']) return path.join(path.resolve(env['XDG_CONFIG_HOME']), 'mcias');
  return path.join(homedir(), '.config', 'mcias');
}

function sessionFile(env: Env): string {
  return path.join(configDir(env), SESSION_FILE_NAME);
}

export function readSession(env: Env): Session | undefined {
  const file = sessionFile(env);
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new CliError(`cannot read ${file}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`, 'session_file');
  }
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch {
    throw new CliError(`${file} is not valid JSON: log in again`, 'session_file');
  }
  const s = (typeof data === 'object' && data !== null ? data : {}) as Record<string, unknown>;
  const optional = (key: string) => (typeof s[key] === 'string' ? (s[key] as string) : undefined);
  if (typeof s['server'] !== 'string') throw new CliError(`${file} has no server: log in again`, 'session_file');
  return {
    server: s['server'],
    caCert: typeof s['caCert'] === 'string' ? s['caCert'] : null,
    token: optional('token'),
    username: optional('username'),
    expiresAt: optional('expiresAt'),
  };
}

/** Replaces the session file atomically; it is created 0600 and never exists with wider permissions. */
export function writeSession(env: Env, session: Session): string {
  const dir = configDir(env);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  chmodSync(dir, 0o700);
  const file = path.join(dir, SESSION_FILE_NAME);
  const temporary = `${file}.${process.pid}.tmp`;
  try {
    writeFileSync(temporary, `${JSON.stringify(session, null, 2)}\n`, { mode: 0o600, flag: 'wx' });
    renameSync(temporary, file);
  } finally {
    rmSync(temporary, { force: true });
  }
  return file;
}
