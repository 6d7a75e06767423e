import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { MciasClient, checkCaCertificate, normalizeServerUrl } from '@mcias/client';
import { CliError } from '../errors.ts';
import { promptNewPassword, promptPassword } from '../prompt.ts';
import { readPasswordFile } from '../secret-file.ts';
import { readSession, type Session } from './session-file.ts';

/**
 * How every mciasctl command reaches the server: which server, which CA certificate, which token (the global
 * --server/--ca-cert options, MCIAS_TOKEN and the session file), and the clients to close when the run ends.
 */
interface GlobalOptions {
  server?: string;
  caCert?: string;
}

interface Connection {
  readonly client: MciasClient;
  /** The server's normalised URL. */
  readonly server: string;
  readonly session: Session | undefined;
  readonly caCertFile: string | undefined;
  /** Where the token came from, so logout knows whether to forget it. */
  readonly tokenSource: 'env' | 'session' | undefined;
}

export const env = process.env;

function readCaCert(file: string): Buffer {
  let pem: Buffer;
  try {
    pem = readFileSync(file);
  } catch (error) {
    throw new CliError(`cannot read the CA certificate ${file}: ${(error as NodeJS.ErrnoException).code ?? 'error'}`, 'usage');
  }
  checkCaCertificate(pem, `the CA certificate file ${file}`);
  return pem;
}

const reached = new WeakSet<MciasClient>();
/** Clients this run opened; closeClients() closes their connections when the run ends. */
const opened: MciasClient[] = [];
/** The CA certificate file the run's last connection trusts, for the advice on a certificate that does not verify. */
let trustedCaCertFile: string | undefined;

/** The CA certificate file (from --ca-cert, MCIAS_CA_CERT or the session) the run's connection trusts, if any. */
export function caCertInUse(): string | undefined {
  return trustedCaCertFile;
}

/**
 * Asks the server for /healthz before the first prompt, so a TLS or network problem is reported before anyone types
 * a password that could not be used anyway.
 */
export async function checkReachable(client: MciasClient): Promise<void> {
  if (reached.has(client)) return;
  await client.health();
  reached.add(client);
}

function sessionFor(needToken: boolean): Session | undefined {
  try {
    return readSession(env);
  } catch (error) {
    // login replaces a damaged session file; everything else needs it.
    if (needToken) throw error;
    return undefined;
  }
}

/**
 * The server is --server, else MCIAS_SERVER, else the one logged in to. The stored token and CA certificate belong
 * to the stored server: they are never sent to, or used to trust, another one.
 */
export function connect(command: Command, options: { needToken: boolean }): Connection {
  const globals = command.optsWithGlobals<GlobalOptions>();
  const session = sessionFor(options.needToken);
  const server = globals.server || session?.server;
  if (!server) throw new CliError('no server given: use --server URL or MCIAS_SERVER, or log in first', 'usage');
  const normalized = normalizeServerUrl(server);
  const sameServer = session !== undefined && session.server === normalized;
  const caCertFile = globals.caCert || (sameServer ? (session.caCert ?? undefined) : undefined);
  let token: string | undefined;
  let tokenSource: Connection['tokenSource'];
  if (env['MCIAS_TOKEN']) {
    token = env['MCIAS_TOKEN'];
    tokenSource = 'env';
  } else if (sameServer && session.token !== undefined) {
    token = session.token;
    tokenSource = 'session';
  }
  if (options.needToken && token === undefined) throw new CliError(`not logged in to ${normalized}: run 'mciasctl login'`, 'unauthenticated');
  const client = new MciasClient({ server, token, caCert: caCertFile === undefined ? undefined : readCaCert(caCertFile) });
  opened.push(client);
  trustedCaCertFile = caCertFile;
  return { client, server: normalized, session, caCertFile, tokenSource };
}

/** The client of a command that needs a token: most of them. */
export function authenticated(command: Command): MciasClient {
  return connect(command, { needToken: true }).client;
}

/** Closes the TLS connections, so the process ends because its work is done rather than by a cut. */
export function closeClients(): void {
  for (const client of opened.splice(0)) client.close();
}

/** A password from --…-file `file`, else asked on the terminal (twice if `confirm`), once the server is known to answer. */
export async function passwordFrom(client: MciasClient, file: string | undefined, prompt: string, confirm: boolean): Promise<string> {
  if (file !== undefined) return readPasswordFile(file);
  await checkReachable(client);
  return confirm ? promptNewPassword(prompt) : promptPassword(prompt);
}
