import { closeSync, openSync, readFileSync, rmSync, writeSync } from 'node:fs';
import path from 'node:path';
import { Command, CommanderError, Option } from 'commander';
import { renderUnicodeCompact } from 'uqr';
import {
  MciasClient,
  MciasClientError,
  checkCaCertificate,
  isMciasApiError,
  normalizeServerUrl,
  type IssuedToken,
  type LoginResult,
} from '../../packages/client/src/index.ts';
import { VERSION } from '../version.ts';
import { CliError, accountDetails, accountTable, describeError, printJson, printLines, roleTable, tokenTable } from './output.ts';
import { promptCode, promptLine, requireTerminal, promptNewPassword, promptPassword, readCodeFile, readPasswordFile } from './prompt.ts';
import { readSession, writeSession, type Session } from './session.ts';

/**
 * The administrator's CLI, organised as `noun verb`. It talks to the server only through the client SDK, so every
 * test of it is also a test of the SDK. Nothing it prints contains a password, nor a token or TOTP secret except where
 * printing one is the point (`token issue` without --out; `totp enroll` and `totp confirm`, which show the secret and
 * the recovery codes once). Codes and passwords typed at its prompts are not echoed.
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
/** Clients this run opened; main() closes their connections before it returns. */
const opened: MciasClient[] = [];

/**
 * Asks the server for /healthz before the first prompt, so a TLS or network problem is reported before anyone types
 * a password that could not be used anyway.
 */
async function checkReachable(client: MciasClient): Promise<void> {
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
  opened.push(client);
  return { client, session, caCertFile, tokenSource };
}

/** What a write command says when it worked: a line for people, or with --json the resulting object (`{}` if none). */
function done(command: Command, line: string, result: object = {}): void {
  if (globalsOf(command).json) printJson(result);
  else printLines(line);
}

async function passwordFrom(client: MciasClient, file: string | undefined, prompt: string, confirm: boolean): Promise<string> {
  if (file !== undefined) return readPasswordFile(file);
  await checkReachable(client);
  return confirm ? promptNewPassword(prompt) : promptPassword(prompt);
}

const CODE_PROMPT = 'TOTP code (or recovery code):';

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
 * --new-password-file, or asked twice without echo (asked again, up to three times, if the server refuses it).
 */
async function replaceTemporaryPassword(client: MciasClient, token: string, current: string, newPasswordFile: string | undefined): Promise<void> {
  const session = client.withToken(token);
  const attempts = newPasswordFile === undefined ? 3 : 1;
  if (newPasswordFile === undefined) {
    requireTerminal('a new password', 'this password is temporary and must be replaced: use --new-password-file');
    process.stderr.write('This password is temporary: choose your own now.\n');
  }
  for (let attempt = 1; ; attempt++) {
    const next = await passwordFrom(client, newPasswordFile, 'New password:', true);
    try {
      await session.changePassword(current, next);
      return;
    } catch (error) {
      if (!isMciasApiError(error, 'invalid_request') || attempt >= attempts) {
        const why = error instanceof MciasClientError ? error.message : String(error);
        throw new CliError(`the new password was not set (${why}); until it is, this session can do nothing else: run 'mciasctl password'`, isMciasApiError(error) ? error.code : 'invalid_request');
      }
      process.stderr.write(`${error.message}\n`);
    }
  }
}

export function program(): Command {
  const cli = new Command('mciasctl')
    .description('MCIAS administration: log in, then manage accounts, roles and tokens through the HTTPS API')
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
      if (globalsOf(command).json) {
        printJson({
          account,
          expires_at: result.expires_at,
          ...(changed ? { password_changed: true } : {}),
          ...(enroll ? { totp_enrollment_required: true } : {}),
        });
        return;
      }
      printLines(
        ...(changed ? ['password changed: from now on, log in with the new one'] : []),
        `logged in as ${result.account.username}`,
        ...(enroll ? ["administrators must use TOTP: run 'mciasctl totp enroll' now, or your next login will be refused"] : []),
      );
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
      else {
        const change = account.password_change_required ? "; the password is temporary: run 'mciasctl password'" : '';
        printLines(`${account.username} (${account.kind}, ${account.status}; roles: ${account.roles.join(',') || '-'}${change})`);
      }
    });

  cli
    .command('password')
    .description('change your own password (your other tokens are revoked)')
    .option('--current-password-file <file>', 'read the current password from this file')
    .option('--password-file <file>', 'read the new password from this file')
    .action(async (o: { currentPasswordFile?: string; passwordFile?: string }, command: Command) => {
      const { client } = connect(command, { needToken: true });
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

  totpCommands(cli.command('totp').description('your own second factor (TOTP): enroll, confirm, disable'));
  accountCommands(cli.command('account').description('manage accounts (admin)'));
  roleCommands(cli.command('role').description('manage roles (admin)'));
  tokenCommands(cli.command('token').description('service tokens (admin or delegate); list and revoke tokens (admin)'));

  cli
    .command('keys')
    .description('token signing keys (admin)')
    .command('rotate')
    .description('start signing with a new key; old keys keep verifying until their tokens expire')
    .action(async (_o: unknown, command: Command) => {
      const { kid } = await connect(command, { needToken: true }).client.rotateKeys();
      done(command, `new signing key ${kid}`, { kid });
    });
  return cli;
}

function printRecoveryCodes(codes: readonly string[]): void {
  printLines(
    'TOTP is on: from now on, log in with your password and a code from the app.',
    '',
    'Recovery codes (each works once, in place of a code, if you lose the app):',
    '',
    ...codes.map((code) => `  ${code}`),
    '',
    'Store them somewhere safe, away from this device: they are not shown again.',
  );
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

function totpCommands(totp: Command): void {
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
      const json = globalsOf(command).json === true;
      if ((o.uriOnly || json) && o.codeFile !== undefined) {
        throw new CliError(`--code-file goes with the interactive enrollment, not with ${o.uriOnly ? '--uri-only' : '--json'}: use 'mciasctl totp confirm <code>'`, 'usage');
      }
      const interactive = !json && !o.uriOnly;
      // Fail before a secret is made and shown that could not be confirmed anyway.
      if (interactive && o.codeFile === undefined) requireTerminal('the TOTP code', "use --uri-only, then 'mciasctl totp confirm <code>'");
      const { client } = connect(command, { needToken: true });
      // Re-authentication (security.md 14): a stolen session alone cannot turn TOTP on.
      const password = await passwordFrom(client, o.passwordFile, 'Current password:', false);
      const { secret, otpauth_uri: uri } = await client.beginTotp(password);
      if (!interactive) {
        if (json) printJson({ otpauth_uri: uri, secret });
        else printLines(uri);
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
      printRecoveryCodes(await confirmTotp(client, code));
    });

  totp
    .command('confirm')
    .description("activate the enrollment started by 'totp enroll --uri-only' with the app's current code; prints the recovery codes")
    .argument('<code>', 'the 6-digit code the authenticator app shows')
    .action(async (code: string, _o: unknown, command: Command) => {
      const codes = await confirmTotp(connect(command, { needToken: true }).client, code.replace(/\s/g, ''));
      if (globalsOf(command).json) printJson({ recovery_codes: codes });
      else printRecoveryCodes(codes);
    });

  totp
    .command('disable')
    .description('turn off your TOTP (asks for your password and a current code, or a recovery code)')
    .option('--password-file <file>', 'read the password from this file instead of asking')
    .option('--code-file <file>', 'read the code from this file instead of asking')
    .action(async (o: { passwordFile?: string; codeFile?: string }, command: Command) => {
      const { client } = connect(command, { needToken: true });
      const password = await passwordFrom(client, o.passwordFile, 'Password:', false);
      const code = o.codeFile !== undefined ? readCodeFile(o.codeFile) : await promptCode(CODE_PROMPT, 'use --code-file');
      await client.disableTotp(password, code);
      done(command, 'TOTP is off: you log in with your password alone');
    });
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
    .description('create a human account (asks for its password, temporary unless --no-temporary) or, with --system, a system account')
    .argument('<username>')
    .option('--system', 'a system account (a service; it has no password)')
    .option('--password-file <file>', 'read the password from this file instead of asking')
    .option('--no-temporary', 'the password is final: no change is asked at the first login (for automation)')
    .action(async (username: string, o: { system?: boolean; passwordFile?: string; temporary: boolean }, command: Command) => {
      if (o.system && o.passwordFile !== undefined) throw new CliError('a system account has no password: drop --password-file', 'usage');
      if (o.system && !o.temporary) throw new CliError('a system account has no password: drop --no-temporary', 'usage');
      const { client } = connect(command, { needToken: true });
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
    .description("set a human account's password (asks for it; temporary unless --no-temporary); its tokens are revoked")
    .argument('<username>')
    .option('--password-file <file>', 'read the password from this file instead of asking')
    .option('--no-temporary', 'the password is final: no change is asked at the next login (for automation)')
    .action(async (username: string, o: { passwordFile?: string; temporary: boolean }, command: Command) => {
      const { client } = connect(command, { needToken: true });
      const password = await passwordFrom(client, o.passwordFile, `New password for ${username}:`, true);
      await client.resetPassword(username, password, o.temporary ? {} : { temporary: false });
      done(command, `set the password of ${username}${o.temporary ? ' (temporary: they choose their own at their next login)' : ''}`);
    });

  account
    .command('reset-totp')
    .description("remove a person's TOTP and recovery codes (a lost authenticator): they log in with the password, then enroll again")
    .argument('<username>')
    .action(async (username: string, _o: unknown, command: Command) => {
      await connect(command, { needToken: true }).client.resetTotp(username);
      done(command, `reset the TOTP of ${username}: they log in with the password alone`);
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

function tokenCommands(token: Command): void {
  token
    .command('issue')
    .description("issue a system account's token, revoking its previous one (admin, or a holder of the role named after it)")
    .argument('<service>', 'the system account')
    .option('--out <file>', 'write the token to this new file (0600) instead of printing it')
    .action(async (service: string, o: { out?: string }, command: Command) => {
      const { client } = connect(command, { needToken: true });
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
      const json = globalsOf(command).json;
      if (out === undefined) {
        // The only time the token is shown: one line, so it can be piped.
        if (json) printJson({ token: issued.token, token_type: issued.token_type, expires_at: issued.expires_at });
        else printLines(issued.token);
        return;
      }
      closeSync(out.fd);
      if (json) printJson({ token_type: issued.token_type, expires_at: issued.expires_at });
      else printLines(`wrote the token of ${service} to ${out.path}; it expires at ${issued.expires_at}`);
    });

  token
    .command('revoke')
    .description("revoke a system account's live token (admin)")
    .argument('<service>', 'the system account')
    .action(async (service: string, _o: unknown, command: Command) => {
      await connect(command, { needToken: true }).client.revokeServiceToken(service);
      done(command, `revoked the token of ${service}`);
    });

  token
    .command('list')
    .description("list an account's unexpired, unrevoked tokens (never their values)")
    .argument('<account>', 'the username')
    .action(async (username: string, _o: unknown, command: Command) => {
      const tokens = await connect(command, { needToken: true }).client.listTokens(username);
      if (globalsOf(command).json) printJson(tokens);
      else printLines(...tokenTable(tokens));
    });

  token
    .command('revoke-id')
    .description('revoke any token by its id (the JTI column of token list)')
    .argument('<jti>')
    .action(async (jti: string, _o: unknown, command: Command) => {
      await connect(command, { needToken: true }).client.revokeToken(jti);
      done(command, `revoked token ${jti}`);
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
  } finally {
    // Close the TLS connections, so the process ends because its work is done rather than by a cut.
    for (const client of opened.splice(0)) client.close();
  }
}

