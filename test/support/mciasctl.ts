import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, afterEach, before, beforeEach } from 'node:test';
import { USER_PASSWORD } from './harness.ts';
import { TEST_PROCESS_ENV, MCIASCTL, ROOT, nodeArgs, run, startServerProcess, type CommandResult, type ServerProcess } from './server-process.ts';
import { required } from './fixture.ts';

/**
 * The shipped mciasctl, driven as people and scripts drive it: the one fixture of the mciasctl end-to-end tests (a
 * real mciassrv over TLS, scratch files, fresh config directories, logged-in sessions, a runner), the pseudo-terminal
 * runner for its prompts, and the assertions on what it prints.
 */

/** What mciasctl is given: a config directory (its "home") and the variables that point it at a server. */
export type CtlEnv = Record<string, string>;

/** Exactly one line on stderr, in the `mciasctl: <message> (<code>)` form, and the expected non-zero exit. */
export function assertOneLineError(result: CommandResult, code: string, exitCode = 1): void {
  assert.equal(result.code, exitCode, result.stderr);
  assert.match(result.stderr, new RegExp(`^mciasctl: [^\\n]+ \\(${code}\\)\\n$`));
}

/** Success, and nothing on stderr. */
export function assertOk(result: CommandResult): void {
  assert.equal(result.code, 0, result.stderr);
  assert.equal(result.stderr, '');
}

/** Runs mciasctl to completion without a terminal, with `env` over the test process's environment. */
export function ctl(env: CtlEnv, ...args: string[]): Promise<CommandResult> {
  return run(MCIASCTL, args, { env });
}

const HAVE_SCRIPT = spawnSync('script', ['--version'], { stdio: 'ignore' }).status === 0;
/** The option that skips a test needing a pseudo-terminal where util-linux `script` is missing. */
export const needsTerminal = { skip: HAVE_SCRIPT ? false : 'util-linux script is not installed' } as const;

/** What to type at a prompt: text, or text computed from everything printed so far, at that moment (a fresh TOTP code). */
type Answer = string | ((output: string) => string | Promise<string>);

/**
 * Runs mciasctl on a pseudo-terminal (util-linux `script`): each answer is typed once its prompt has appeared, in
 * order. Without answers nothing is typed, so a prompt waits until the kill after `timeoutMs`.
 */
export async function inTerminal(
  args: readonly string[],
  env: CtlEnv,
  answers: readonly (readonly [prompt: string, answer: Answer])[] = [],
  timeoutMs = 20_000,
): Promise<{ code: number | null; output: string }> {
  const quote = (s: string) => `'${s.replaceAll("'", `'\\''`)}'`;
  const command = [process.execPath, ...nodeArgs(MCIASCTL, args)].map(quote).join(' ');
  const child = spawn('script', ['-qfec', command, '/dev/null'], { cwd: ROOT, env: { ...process.env, ...TEST_PROCESS_ENV, ...env } });
  let output = '';
  let next = 0;
  let searchFrom = 0;
  let answering = false;
  let failure: unknown;
  const pump = () => {
    const answer = answers[next];
    if (answering || answer === undefined) return;
    const at = output.indexOf(answer[0], searchFrom);
    if (at === -1) return;
    next += 1;
    searchFrom = at + answer[0].length;
    answering = true;
    Promise.resolve(typeof answer[1] === 'function' ? answer[1](output) : answer[1]).then(
      (text) => {
        child.stdin.write(`${text}\r`);
        answering = false;
        pump();
      },
      (error: unknown) => {
        failure = error;
        child.kill('SIGKILL');
      },
    );
  };
  const onOutput = (d: Buffer) => {
    output += d.toString();
    pump();
  };
  child.stdout.on('data', onOutput);
  child.stderr.on('data', onOutput);
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  const [code] = (await once(child, 'close')) as [number | null];
  clearTimeout(timer);
  if (failure !== undefined) throw failure;
  return { code, output };
}

/** The fixture's parts; each is there from the fixture's `before` on. */
export interface MciasctlFixture {
  /** A real mciassrv over TLS, started for this describe block. */
  readonly server: ServerProcess;
  /** A scratch directory for files, removed after the block. */
  readonly scratch: string;
  /** Files holding the administrator's password and USER_PASSWORD. */
  readonly adminPasswordFile: string;
  readonly userPasswordFile: string;
  /** The administrator, logged in for the whole block (only with `{ admin: true }`). */
  readonly admin: CtlEnv;
  /**
   * A fresh config directory and the environment pointing mciasctl at it and at `target` (no MCIAS_TOKEN). Those made
   * during a test go after it; those made in `before` hooks last for the block.
   */
  freshEnv(target?: ServerProcess): CtlEnv;
  /** `mciasctl login --password-file` in a fresh config directory; by default the administrator, else USER_PASSWORD. */
  loggedIn(username?: string, file?: string, target?: ServerProcess): Promise<CtlEnv>;
  /** The session file of a config directory, and the token stored in it. */
  sessionPath(env: CtlEnv): string;
  storedToken(env: CtlEnv): string;
  /** A new 0600 file in the scratch directory holding `content` and a newline. */
  fileWith(content: string): string;
}

/**
 * Registers the hooks of the mciasctl fixture in the calling describe block: a server and scratch directory in
 * `before` (and, with `admin`, the administrator's session), the config directories made by each test after it, and
 * everything after the block. The block's own `before` hooks run after the fixture's, with every part in place.
 */
export function useMciasctlFixture(options: { admin?: boolean } = {}): MciasctlFixture {
  let server: ServerProcess | undefined;
  let scratch: string | undefined;
  let admin: CtlEnv | undefined;
  let testing = false;
  let files = 0;
  const perTest: string[] = [];
  const lasting: string[] = [];
  const ready = <T>(value: T | undefined, what: string): T => required(value, 'mciasctl', what);

  const fixture: MciasctlFixture = {
    get server() {
      return ready(server, 'server');
    },
    get scratch() {
      return ready(scratch, 'scratch directory');
    },
    get adminPasswordFile() {
      return path.join(fixture.scratch, 'admin-password');
    },
    get userPasswordFile() {
      return path.join(fixture.scratch, 'user-password');
    },
    get admin() {
      return ready(admin, 'admin session (pass { admin: true })');
    },
    freshEnv(target = fixture.server) {
      const dir = mkdtempSync(path.join(tmpdir(), 'mciasctl-config-'));
      (testing ? perTest : lasting).push(dir);
      return { MCIAS_CONFIG_DIR: path.join(dir, 'mcias'), MCIAS_SERVER: target.url, MCIAS_CA_CERT: target.caCertFile, MCIAS_TOKEN: '' };
    },
    async loggedIn(username = 'admin', file = username === 'admin' ? fixture.adminPasswordFile : fixture.userPasswordFile, target = fixture.server) {
      const env = fixture.freshEnv(target);
      const result = await ctl(env, 'login', '--username', username, '--password-file', file);
      assert.equal(result.code, 0, result.stderr);
      return env;
    },
    sessionPath: (env) => path.join(env['MCIAS_CONFIG_DIR'] as string, 'session.json'),
    storedToken: (env) => (JSON.parse(readFileSync(fixture.sessionPath(env), 'utf8')) as { token: string }).token,
    fileWith(content) {
      const file = path.join(fixture.scratch, `file-${(files += 1)}`);
      writeFileSync(file, `${content}\n`, { mode: 0o600 });
      return file;
    },
  };

  before(async () => {
    server = await startServerProcess();
    scratch = mkdtempSync(path.join(tmpdir(), 'mciasctl-scratch-'));
    writeFileSync(fixture.adminPasswordFile, `${server.adminPassword}\n`, { mode: 0o600 });
    writeFileSync(fixture.userPasswordFile, `${USER_PASSWORD}\n`, { mode: 0o600 });
    if (options.admin) admin = await fixture.loggedIn();
  });
  beforeEach(() => {
    testing = true;
  });
  afterEach(() => {
    for (const dir of perTest.splice(0)) rmSync(dir, { recursive: true, force: true });
  });
  after(async () => {
    for (const dir of [...perTest, ...lasting.splice(0), ...(scratch === undefined ? [] : [scratch])]) rmSync(dir, { recursive: true, force: true });
    await server?.dispose();
  });
  return fixture;
}
