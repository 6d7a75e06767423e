import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { ADMIN_PASSWORD } from './harness.ts';

/** The repository root, and the shipped entry points (bin/ runs the compiled dist/, as an installed package does). */
export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const MCIASSRV = path.join(ROOT, 'bin', 'mciassrv.js');
export const MCIASCTL = path.join(ROOT, 'bin', 'mciasctl.js');

/**
 * The Node.js options on a program's shebang line (`#!/usr/bin/env -S node OPTIONS`): bin/mciassrv.js carries its
 * young-generation size there, and that line is the one place it is set, for every way the program is started.
 */
export function shebangNodeOptions(script: string): string[] {
  const first = readFileSync(script, 'utf8').split('\n', 1)[0] ?? '';
  const shebang = /^#!\/usr\/bin\/env (?:-S )?node((?: +\S+)*) *$/.exec(first);
  if (!shebang) throw new Error(`${script} does not start with a "#!/usr/bin/env [-S] node" line: ${first}`);
  return shebang[1]!.split(' ').filter((option) => option !== '');
}

/** The arguments after the Node.js executable that run `script` as its shebang line runs it, as an installed bin. */
export function nodeArgs(script: string, args: readonly string[]): string[] {
  return [...shebangNodeOptions(script), script, ...args];
}

/**
 * The environment of every spawned program: cheap scrypt (the production default stays ln=17), and the metrics
 * listener on a free loopback port, so that servers running side by side do not all reach for 9464.
 */
export const TEST_PROCESS_ENV = { MCIAS_PASSWORDS_SCRYPT_LN: '4', MCIAS_METRICS_LISTEN: '127.0.0.1:0' } as const;

/**
 * Every test client connects from 127.0.0.1, so the failed-login throttle's production defaults (SECURITY.md §9)
 * would throttle end-to-end tests that are about something else after five failures. Served processes get this
 * unless a test sets the variables itself (test/e2e/lockout.test.ts, test/e2e/trusted-proxy.test.ts do); the
 * defaults stay in the schema.
 */
const RELAXED_THROTTLE_ENV = {
  MCIAS_LOGIN_THROTTLE_FREE_FAILURES: '1000000',
  MCIAS_LOGIN_THROTTLE_ADDRESS_LOCKOUT_FAILURES: '1000000',
} as const;

export interface CommandResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs one of the programs to completion with Node 24 (the runtime running the tests), with its shebang's options. */
export async function run(
  script: string,
  args: readonly string[],
  options: { env?: Record<string, string>; input?: string; cwd?: string } = {},
): Promise<CommandResult> {
  const child = spawn(process.execPath, nodeArgs(script, args), {
    cwd: options.cwd ?? ROOT,
    env: { ...process.env, ...TEST_PROCESS_ENV, ...options.env },
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  child.stdin.end(options.input ?? '');
  const [code] = (await once(child, 'close')) as [number | null];
  return { code, stdout, stderr };
}

export interface ServerProcess {
  readonly url: string;
  /** The metrics listener's `http://…/metrics`, as the server logged it; undefined when off. */
  readonly metricsUrl: string | undefined;
  readonly dataDir: string;
  readonly caCertFile: string;
  readonly adminPassword: string;
  readonly child: ChildProcessWithoutNullStreams;
  /** Every log line the server has written so far (JSON, one per line). */
  readonly logs: string[];
  /** Sends a signal and waits for the process to exit; returns its exit code. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
  /** Stops the server (if running) and removes its data directory. */
  dispose(): Promise<void>;
}

/**
 * Initialises a data directory with `mciassrv init` (no terminal, password from a file) and starts
 * `mciassrv serve` on a free loopback port, over real TLS with the generated self-signed certificate.
 */
export interface ServeOptions {
  /**
   * false: stop reading the server's log once it is serving (`logs` then ends with the start-up lines). The bench
   * does, so that parsing one access-log line per request does not take CPU from the load generator beside it.
   */
  readonly keepLogs?: boolean;
}

export async function startServerProcess(
  options: { storageUrl?: string; env?: Record<string, string>; initArgs?: string[] } & ServeOptions = {},
): Promise<ServerProcess> {
  const dataDir = mkdtempSync(path.join(tmpdir(), 'mcias-e2e-'));
  const passwordFile = path.join(dataDir, 'admin-password');
  writeFileSync(passwordFile, `${ADMIN_PASSWORD}\n`, { mode: 0o600 });
  const init = await run(MCIASSRV, [
    'init',
    '--data-dir',
    dataDir,
    '--admin-password-file',
    passwordFile,
    '--listen',
    '127.0.0.1:0',
    ...(options.storageUrl ? ['--storage-url', options.storageUrl] : []),
    ...(options.initArgs ?? []),
  ], { env: options.env ?? {} });
  if (init.code !== 0) throw new Error(`mciassrv init failed: ${init.stderr}`);
  rmSync(passwordFile);
  return serveDataDir(dataDir, options.env, [], options);
}

/** Starts `mciassrv serve` (plus `args`, e.g. `--listen`) on a data directory and waits until it listens. */
export async function serveDataDir(
  dataDir: string,
  env: Record<string, string> = {},
  args: readonly string[] = [],
  options: ServeOptions = {},
): Promise<ServerProcess> {
  const child = spawn(process.execPath, nodeArgs(MCIASSRV, ['serve', '--data-dir', dataDir, ...args]), {
    cwd: ROOT,
    env: { ...process.env, ...TEST_PROCESS_ENV, ...RELAXED_THROTTLE_ENV, ...env },
  });
  const logs: string[] = [];
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = once(child, 'exit') as Promise<[number | null]>;
  const lines = createInterface({ input: child.stdout });
  const serving = await new Promise<{ url: string; metrics?: string }>((resolve, reject) => {
    lines.on('line', (line) => {
      logs.push(line);
      try {
        const entry = JSON.parse(line) as { msg?: string; url?: string; metrics?: string };
        if (entry.msg === 'mciassrv is serving' && entry.url) resolve({ url: entry.url, ...(entry.metrics ? { metrics: entry.metrics } : {}) });
      } catch {
        // not a log line
      }
    });
    void exited.then(([code]) => reject(new Error(`mciassrv serve exited with ${code}: ${stderr}`)));
  });
  if (options.keepLogs === false) {
    // From here on the output is drained unread: closing the reader pauses the stream, and resuming it with no
    // listener discards what arrives, so the server never blocks on a full pipe.
    lines.close();
    child.stdout.resume();
  }
  const stop = async (signal: NodeJS.Signals = 'SIGTERM') => {
    if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
    child.kill(signal);
    const [code] = await exited;
    return code;
  };
  return {
    url: serving.url,
    metricsUrl: serving.metrics === 'off' ? undefined : serving.metrics,
    dataDir,
    caCertFile: path.join(dataDir, 'tls', 'cert.pem'),
    adminPassword: ADMIN_PASSWORD,
    child,
    logs,
    stop,
    async dispose() {
      await stop();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}
