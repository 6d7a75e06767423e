import { readFileSync } from 'node:fs';
import path from 'node:path';
import { Command, CommanderError, Option } from 'commander';
import { MciasClient, MciasClientError, normalizeServerUrl } from '../../packages/client/src/index.ts';
import { VERSION } from '../version.ts';
import { CliError, accountDetails, accountTable, printJson, printLines, roleTable } from './output.ts';
import { promptLine, promptNewPassword, promptPassword, readPasswordFile } from './prompt.ts';
import { readSession, writeSession, type Session } from './session.ts';

/**
 * The administrator's CLI, organised as `noun verb`. It talks to the server only through the client SDK, so every
 * test of it is also a test of the SDK. Nothing it prints contains a token or a password.
 */
interface GlobalOptions {
  server?: string;
  caCert?: string;
  json?: boolean;
}

interface Connection {
  readonly client: MciasClient;
  readonly session: Session | undefined;
  readonly caCertFile: string | undefined;
  /** Where the token came from, so logout knows whether to forget it. */
  readonly tokenSource: 'env' | 'session' | undefined;
}

const env = process.env;

function globalsOf(command: Command): GlobalOptions {
  return command.optsWithGlobals<GlobalOptions>();
}

function readCaCert(file: string): Buffer {
  try {
    return readFileSync(file);
  } catch (error) {
    throw new CliError(`cannot read the CA certificate ${file}: ${(error as NodeJS.ErrnoException).code ?? 'error'}`, 'usage');
  }
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
function connect(command: Command, options: { needToken: boolean }): Connection {
  const globals = globalsOf(command);
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
  return { client, session, caCertFile, tokenSource };
}

/** What a write command says when it worked: a line for people, or with --json the resulting object (`{}` if none). */
function done(command: Command, line: string, result: object = {}): void {
  if (globalsOf(command).json) printJson(result);
  else printLines(line);
}

async function passwordFrom(file: string | undefined, prompt: string, confirm: boolean): Promise<string> {
  if (file !== undefined) return readPasswordFile(file);
  return confirm ? promptNewPassword(prompt) : promptPassword(prompt);
}

export function program(): Command {
  const cli = new Command('mciasctl')
    .description('MCIAS administration: log in, then manage accounts and roles through the HTTPS API')
    .version(VERSION)
    .addOption(new Option('--server <url>', 'the server, https://host:port (default: the one you logged in to)').env('MCIAS_SERVER'))
    .addOption(new Option('--ca-cert <file>', "PEM certificate to trust for the server's TLS certificate").env('MCIAS_CA_CERT'))
    .option('--json', 'print machine-readable JSON on stdout (write commands print the changed object, or {})')
    .addHelpText('after', '\nThe token comes from MCIAS_TOKEN, else from the session file written by login.')
    .exitOverride()
    .configureOutput({
      // Usage errors are one line, like every other error.
      outputError: (text, write) => write(`mciasctl: ${text.replace(/^error: /, '').replace(/\s*\n\s*/g, ' ').trim()} (usage)\n`),
    });

  cli
    .command('login')
    .description('log in with a password and keep the token (0600) in the config directory')
    .option('-u, --username <name>', 'who to log in as (asked for if not given)')
    .option('--password-file <file>', 'read the password from this file instead of asking (for scripts)')
    .action(async (o: { username?: string; passwordFile?: string }, command: Command) => {
      const { client, caCertFile } = connect(command, { needToken: false });
      const username = o.username ?? (await promptLine('Username:', 'use --username'));
      const password = await passwordFrom(o.passwordFile, `Password for ${username}:`, false);
      const result = await client.login(username, password);
      writeSession(env, {
        server: client.server,
        caCert: caCertFile === undefined ? null : path.resolve(caCertFile),
        token: result.token,
        username: result.account.username,
        expiresAt: result.expires_at,
      });
      done(command, `logged in as ${result.account.username}`, { account: result.account, expires_at: result.expires_at });
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
      const account = await connect(command, { needToken: true }).client.me();
      if (globalsOf(command).json) printJson(account);
      else printLines(`${account.username} (${account.kind}, ${account.status}; roles: ${account.roles.join(',') || '-'})`);
    });

  cli
    .command('password')
    .description('change your own password (your other tokens are revoked)')
    .option('--current-password-file <file>', 'read the current password from this file')
    .option('--password-file <file>', 'read the new password from this file')
    .action(async (o: { currentPasswordFile?: string; passwordFile?: string }, command: Command) => {
      const { client } = connect(command, { needToken: true });
      const current = await passwordFrom(o.currentPasswordFile, 'Current password:', false);
      const next = await passwordFrom(o.passwordFile, 'New password:', true);
      await client.changePassword(current, next);
      done(command, 'password changed; your other sessions were logged out');
    });

  accountCommands(cli.command('account').description('manage accounts (admin)'));
  roleCommands(cli.command('role').description('manage roles (admin)'));
  return cli;
}

function accountCommands(account: Command): void {
  account
    .command('list')
    .description('list every account')
    .action(async (_o: unknown, command: Command) => {
      const accounts = await connect(command, { needToken: true }).client.listAccounts();
      if (globalsOf(command).json) printJson(accounts);
      else printLines(...accountTable(accounts));
    });

  account
    .command('create')
    .description('create a human account (asks for its password) or, with --system, a system account')
    .argument('<username>')
    .option('--system', 'a system account (a service; it has no password)')
    .option('--password-file <file>', 'read the password from this file instead of asking')
    .action(async (username: string, o: { system?: boolean; passwordFile?: string }, command: Command) => {
      if (o.system && o.passwordFile !== undefined) throw new CliError('a system account has no password: drop --password-file', 'usage');
      const { client } = connect(command, { needToken: true });
      const created = o.system
        ? await client.createAccount({ username, kind: 'system' })
        : await client.createAccount({ username, kind: 'human', password: await passwordFrom(o.passwordFile, `Password for ${username}:`, true) });
      done(command, `created ${created.kind} account ${created.username}`, created);
    });

  account
    .command('show')
    .description('show one account')
    .argument('<username>')
    .action(async (username: string, _o: unknown, command: Command) => {
      const found = await connect(command, { needToken: true }).client.getAccount(username);
      if (globalsOf(command).json) printJson(found);
      else printLines(...accountDetails(found));
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
        const updated = await connect(command, { needToken: true }).client.setAccountStatus(username, status);
        done(command, `${verb}d account ${updated.username}`, updated);
      });
  }

  account
    .command('delete')
    .description('delete an account, its tokens and credentials (its audit events stay)')
    .argument('<username>')
    .action(async (username: string, _o: unknown, command: Command) => {
      await connect(command, { needToken: true }).client.deleteAccount(username);
      done(command, `deleted account ${username}`);
    });

  account
    .command('set-password')
    .description("set a human account's password (asks for it); its tokens are revoked")
    .argument('<username>')
    .option('--password-file <file>', 'read the password from this file instead of asking')
    .action(async (username: string, o: { passwordFile?: string }, command: Command) => {
      const { client } = connect(command, { needToken: true });
      await client.resetPassword(username, await passwordFrom(o.passwordFile, `New password for ${username}:`, true));
      done(command, `set the password of ${username}`);
    });
}

function roleCommands(role: Command): void {
  role
    .command('list')
    .description('list roles and their permissions')
    .action(async (_o: unknown, command: Command) => {
      const roles = await connect(command, { needToken: true }).client.listRoles();
      if (globalsOf(command).json) printJson(roles);
      else printLines(...roleTable(roles));
    });

  role
    .command('create')
    .description('create a role')
    .argument('<name>')
    .action(async (name: string, _o: unknown, command: Command) => {
      const created = await connect(command, { needToken: true }).client.createRole(name);
      done(command, `created role ${created.name}`, created);
    });

  role
    .command('delete')
    .description('delete a role (not admin); its grants go with it')
    .argument('<name>')
    .action(async (name: string, _o: unknown, command: Command) => {
      await connect(command, { needToken: true }).client.deleteRole(name);
      done(command, `deleted role ${name}`);
    });

  role
    .command('grant')
    .description('grant a role to an account')
    .argument('<role>')
    .argument('<username>')
    .action(async (name: string, username: string, _o: unknown, command: Command) => {
      await connect(command, { needToken: true }).client.grantRole(username, name);
      done(command, `granted role ${name} to ${username}`);
    });

  role
    .command('revoke')
    .description('revoke a role from an account')
    .argument('<role>')
    .argument('<username>')
    .action(async (name: string, username: string, _o: unknown, command: Command) => {
      await connect(command, { needToken: true }).client.revokeRole(username, name);
      done(command, `revoked role ${name} from ${username}`);
    });
}

/** Mistakes in how mciasctl was called, as opposed to failures of the call. */
const USAGE_CODES: ReadonlySet<string> = new Set(['usage', 'invalid_argument']);

/** One line on stderr, `mciasctl: <message> (<code>)`; exit 1, or 2 for a usage error. */
export async function main(argv: string[]): Promise<void> {
  try {
    await program().parseAsync(argv);
  } catch (error) {
    if (error instanceof CommanderError) {
      // Commander has printed help, the version, or its one-line usage error already.
      process.exitCode = error.exitCode === 0 ? 0 : 2;
      return;
    }
    process.stderr.write(`mciasctl: ${describeError(error)}\n`);
    process.exitCode = (error instanceof CliError || error instanceof MciasClientError) && USAGE_CODES.has(error.code) ? 2 : 1;
  }
}

function describeError(error: unknown): string {
  if (error instanceof MciasClientError || error instanceof CliError) {
    const hint = error.code === 'unauthenticated' && !error.message.includes('mciasctl login') ? ": run 'mciasctl login'" : '';
    return `${error.message}${hint} (${error.code})`;
  }
  return (error as Error).message;
}
