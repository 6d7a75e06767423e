import { execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import { chmodSync, readFileSync } from 'node:fs';
import { request } from 'node:https';
import path from 'node:path';
import { connect } from 'node:tls';
import { promisify } from 'node:util';
import { TEST_PROCESS_ENV, ROOT, nodeArgs, type CommandResult, type ServerProcess } from './server-process.ts';

const execFileAsync = promisify(execFile);

/**
 * Like `run`, but the child is killed after `timeoutMs`: a command that should refuse to start must not hang the
 * test run when it starts serving instead.
 */
export async function runBounded(
  script: string,
  args: readonly string[],
  options: { env?: Record<string, string | undefined>; cwd?: string; timeoutMs?: number } = {},
): Promise<CommandResult & { timedOut: boolean }> {
  const env: Record<string, string | undefined> = { ...process.env, ...TEST_PROCESS_ENV, ...options.env };
  for (const [name, value] of Object.entries(env)) if (value === undefined) delete env[name];
  const child = spawn(process.execPath, nodeArgs(script, args), { cwd: options.cwd ?? ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    child.kill('SIGKILL');
  }, options.timeoutMs ?? 15_000);
  const [code] = (await once(child, 'close')) as [number | null];
  clearTimeout(timer);
  return { code, stdout, stderr, timedOut };
}

export function portOf(server: ServerProcess): number {
  return Number(new URL(server.url).port);
}

export interface SClientResult {
  /** openssl's exit status: 0 when the handshake succeeded. */
  readonly code: number | null;
  readonly output: string;
  readonly protocol: string | undefined;
  readonly cipher: string | undefined;
}

/** `openssl s_client` against the server, stdin closed so it exits right after the handshake. */
export async function sClient(port: number, args: readonly string[]): Promise<SClientResult> {
  const child = spawn('openssl', ['s_client', '-connect', `127.0.0.1:${port}`, '-servername', 'localhost', ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr.on('data', (d: Buffer) => (output += d.toString()));
  const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
  const [code] = (await once(child, 'close')) as [number | null];
  clearTimeout(timer);
  const negotiated = /^New, (TLSv[\d.]+), Cipher is (\S+)/m.exec(output);
  return { code, output, protocol: negotiated?.[1], cipher: negotiated?.[2] };
}

/** Runs `work` over `items` with at most `limit` at a time. */
export async function mapLimit<T, R>(items: readonly T[], limit: number, work: (item: T) => Promise<R>): Promise<R[]> {
  const results: R[] = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const index = next++;
      results[index] = await work(items[index] as T);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}

/** The SHA-256 fingerprint of the certificate a fresh TLS connection is presented (not verified: we only look). */
export async function presentedFingerprint(port: number): Promise<string> {
  const socket = connect({ host: '127.0.0.1', port, servername: 'localhost', rejectUnauthorized: false });
  try {
    await once(socket, 'secureConnect');
    const certificate = socket.getPeerX509Certificate();
    if (certificate === undefined) throw new Error('no peer certificate');
    return certificate.fingerprint256;
  } finally {
    socket.destroy();
  }
}

export interface HttpsResponse {
  readonly status: number;
  readonly headers: Record<string, string | string[] | undefined>;
  readonly body: string;
}

/**
 * One HTTPS request that trusts only the given CA file (a fresh connection each time); `localAddress` picks the
 * client's loopback address (127.0.0.2, ...), so one test can play several clients.
 */
export async function httpsRequest(
  url: string,
  options: {
    caFile: string;
    method?: string;
    body?: unknown;
    /** A form body (application/x-www-form-urlencoded) instead of JSON. */
    form?: Record<string, string>;
    token?: string;
    headers?: Record<string, string>;
    localAddress?: string;
  },
): Promise<HttpsResponse> {
  const payload =
    options.form !== undefined ? new URLSearchParams(options.form).toString() : options.body === undefined ? undefined : JSON.stringify(options.body);
  const type = options.form !== undefined ? 'application/x-www-form-urlencoded' : 'application/json';
  return new Promise((resolve, reject) => {
    const req = request(
      url,
      {
        method: options.method ?? (payload === undefined ? 'GET' : 'POST'),
        ca: readFileSync(options.caFile),
        agent: false,
        ...(options.localAddress === undefined ? {} : { localAddress: options.localAddress }),
        headers: {
          ...options.headers,
          ...(payload === undefined ? {} : { 'content-type': type }),
          ...(options.token === undefined ? {} : { authorization: `Bearer ${options.token}` }),
        },
      },
      (res) => {
        let body = '';
        res.on('data', (d: Buffer) => (body += d.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(payload);
  });
}

export async function login(server: { url: string; caCertFile: string }, username: string, password: string): Promise<HttpsResponse> {
  return httpsRequest(`${server.url}/v1/auth/login`, { caFile: server.caCertFile, body: { username, password } });
}

/** Polls until `check` returns true (or throws after `timeoutMs`). */
export async function waitFor(check: () => boolean, what: string, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** Parsed JSON log lines of a server process (non-JSON lines skipped). */
export function logEntries(server: ServerProcess): Array<Record<string, unknown>> {
  return server.logs.flatMap((line) => {
    try {
      return [JSON.parse(line) as Record<string, unknown>];
    } catch {
      return [];
    }
  });
}

/** A fresh self-signed certificate and key written with openssl (the way an operator would make one). */
export async function opensslCertificate(
  dir: string,
  name: string,
  options: { keyType: 'ec' | 'rsa'; san?: string },
): Promise<{ certFile: string; keyFile: string }> {
  const certFile = path.join(dir, `${name}-cert.pem`);
  const keyFile = path.join(dir, `${name}-key.pem`);
  const keyArgs = options.keyType === 'ec' ? ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256'] : ['-newkey', 'rsa:2048'];
  await execFileAsync('openssl', [
    'req', '-x509', ...keyArgs, '-nodes', '-days', '2', '-subj', `/CN=${name}`,
    '-addext', `subjectAltName=${options.san ?? 'DNS:localhost,IP:127.0.0.1'}`,
    '-keyout', keyFile, '-out', certFile,
  ]);
  chmodSync(keyFile, 0o600);
  return { certFile, keyFile };
}
