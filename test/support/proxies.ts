import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { connect } from 'node:net';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { httpsRequest, type HttpsResponse } from './process-tools.ts';
import { freePort } from './ports.ts';
import { ROOT, startServerProcess, type ServerProcess } from './server-process.ts';

/**
 * Real reverse proxies (the Debian nginx and caddy binaries) for the forward-auth tests, each run from a temporary
 * directory of its own (config, pid, logs, temp files; never the system service), in front of a tiny app that
 * echoes what it was told about the person. The proxies' configuration is examples/forward-auth/, with the example
 * names, ports and files replaced.
 */

const EXAMPLES = path.join(ROOT, 'examples', 'forward-auth');

/** What the example app saw of a request. */
export interface Echo {
  readonly user: string | null;
  readonly roles: string | null;
  readonly accountId: string | null;
  readonly cookie: string | null;
  readonly url: string;
}

/** The app behind the proxy: plain HTTP on loopback, answering every request with what it was told. */
export async function startEchoApp(): Promise<{ port: number; close(): Promise<void> }> {
  const server: Server = createServer((request, response) => {
    const header = (name: string) => (typeof request.headers[name] === 'string' ? (request.headers[name] as string) : null);
    const echo: Echo = { user: header('x-mcias-user'), roles: header('x-mcias-roles'), accountId: header('x-mcias-account-id'), cookie: header('cookie'), url: request.url ?? '' };
    response.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(echo));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as { port: number }).port,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

/**
 * A real mciassrv with the login page on, on a port chosen up front (its login URL is `tokens.issuer` + `/login`,
 * so the issuer must name the port), that sends browsers back to the given loopback ports only; and a function that
 * calls its API as the bootstrap administrator.
 */
export async function startWebServer(proxyPorts: readonly number[]): Promise<{ server: ServerProcess; admin: (method: string, url: string, body?: unknown) => Promise<HttpsResponse> }> {
  const port = await freePort();
  const server = await startServerProcess({
    env: {
      MCIAS_SERVER_LISTEN: `127.0.0.1:${port}`,
      MCIAS_TOKENS_ISSUER: `https://127.0.0.1:${port}`,
      MCIAS_WEB_ENABLED: 'true',
      MCIAS_WEB_ALLOWED_REDIRECT_ORIGINS: proxyPorts.map((p) => `https://127.0.0.1:${p}`).join(','),
    },
  });
  const caFile = server.caCertFile;
  const login = await httpsRequest(`${server.url}/v1/auth/login`, { caFile, body: { username: 'admin', password: server.adminPassword } });
  const token = (JSON.parse(login.body) as { token: string }).token;
  const admin = async (method: string, url: string, body?: unknown) => {
    const response = await httpsRequest(`${server.url}${url}`, { caFile, method, token, ...(body === undefined ? {} : { body }) });
    assert.ok(response.status < 300, `${method} ${url}: ${response.status} ${response.body}`);
    return response;
  };
  return { server, admin };
}

/** Replaces each example name with the test's value, failing if the example no longer has it. */
function fillExample(text: string, replacements: ReadonlyArray<readonly [string, string]>): string {
  let result = text;
  for (const [from, to] of replacements) {
    assert.ok(result.includes(from), `the example no longer contains ${from}`);
    result = result.replaceAll(from, to);
  }
  return result;
}

/**
 * examples/forward-auth/nginx.conf for a proxy on `port` in front of the app on `appPort`, protected by `server`. The
 * proxy serves TLS with the server's own self-signed certificate (it names 127.0.0.1), so one CA file is trusted
 * throughout.
 */
export function nginxExample(server: ServerProcess, port: number, appPort: number): string {
  return fillExample(readFileSync(path.join(EXAMPLES, 'nginx.conf'), 'utf8'), [
    ['listen 443 ssl;', `listen 127.0.0.1:${port} ssl;`],
    ['/etc/ssl/wiki.example.home.pem', server.caCertFile],
    ['/etc/ssl/wiki.example.home.key', path.join(server.dataDir, 'tls', 'key.pem')],
    ['https://mcias.example.home', server.url],
    // The generated certificate names localhost and 127.0.0.1; nginx checks the DNS names.
    ['proxy_ssl_name mcias.example.home;', 'proxy_ssl_name localhost;'],
    ['/etc/ssl/mcias-ca.pem', server.caCertFile],
    ['http://127.0.0.1:3000', `http://127.0.0.1:${appPort}`],
  ]);
}

/** examples/forward-auth/Caddyfile, as `nginxExample` does it. */
export function caddyExample(server: ServerProcess, port: number, appPort: number): string {
  return fillExample(readFileSync(path.join(EXAMPLES, 'Caddyfile'), 'utf8'), [
    ['wiki.example.home {', `https://127.0.0.1:${port} {\n\tbind 127.0.0.1\n\ttls ${server.caCertFile} ${path.join(server.dataDir, 'tls', 'key.pem')}`],
    ['https://mcias.example.home', server.url],
    ['/etc/ssl/mcias-ca.pem', server.caCertFile],
    ['127.0.0.1:3000', `127.0.0.1:${appPort}`],
  ]);
}

export interface ProxyProcess {
  readonly url: string;
  readonly log: () => string;
  stop(): Promise<void>;
}

async function waitForPort(port: number, child: ChildProcess, output: () => string): Promise<void> {
  const deadline = Date.now() + 15_000;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`the proxy exited: ${output()}`);
    const open = await new Promise<boolean>((resolve) => {
      const socket = connect(port, '127.0.0.1');
      socket.once('connect', () => resolve(true)).once('error', () => resolve(false));
      setTimeout(() => socket.destroy(), 1_000).unref();
    });
    if (open) return;
    if (Date.now() > deadline) throw new Error(`the proxy did not listen on ${port}: ${output()}`);
    await sleep(50);
  }
}

function supervise(command: string, args: readonly string[], env: Record<string, string>, port: number, readLog: () => string): Promise<ProxyProcess> {
  const child = spawn(command, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout?.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (output += d.toString()));
  const exited = once(child, 'exit');
  const log = () => `${output}\n${readLog()}`;
  return waitForPort(port, child, log).then(
    () => ({
      url: `https://127.0.0.1:${port}`,
      log,
      async stop() {
        if (child.exitCode !== null || child.signalCode !== null) return;
        child.kill('SIGTERM');
        await exited;
      },
    }),
    (error: unknown) => {
      child.kill('SIGKILL');
      throw error;
    },
  );
}

/** nginx with its own prefix, pid, logs and temp paths in `dir`, serving `site` (an http-context include). */
export function startNginx(dir: string, site: string, port: number): Promise<ProxyProcess> {
  mkdirSync(path.join(dir, 'tmp'), { recursive: true });
  writeFileSync(path.join(dir, 'site.conf'), site);
  const main = [
    'daemon off;',
    'worker_processes 1;',
    `pid ${dir}/nginx.pid;`,
    `error_log ${dir}/error.log info;`,
    'events { worker_connections 64; }',
    'http {',
    `  access_log ${dir}/access.log;`,
    ...['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'].map((kind) => `  ${kind}_temp_path ${dir}/tmp/${kind};`),
    `  include ${dir}/site.conf;`,
    '}',
  ].join('\n');
  writeFileSync(path.join(dir, 'nginx.conf'), main);
  const readLog = () => {
    try {
      return readFileSync(path.join(dir, 'error.log'), 'utf8');
    } catch {
      return '';
    }
  };
  return supervise('/usr/sbin/nginx', ['-p', dir, '-c', path.join(dir, 'nginx.conf'), '-e', path.join(dir, 'error.log')], {}, port, readLog);
}

/** Caddy with no admin endpoint, its storage and home in `dir`, serving `site` (a Caddyfile site block). */
export function startCaddy(dir: string, site: string, port: number): Promise<ProxyProcess> {
  const file = path.join(dir, 'Caddyfile');
  writeFileSync(file, [`{\n\tadmin off\n\tauto_https off\n\tstorage file_system ${dir}/data\n}`, site].join('\n\n'));
  const env = { HOME: dir, XDG_DATA_HOME: path.join(dir, 'xdg-data'), XDG_CONFIG_HOME: path.join(dir, 'xdg-config') };
  return supervise('/usr/bin/caddy', ['run', '--config', file, '--adapter', 'caddyfile'], env, port, () => '');
}

/** The value of a cookie a response sets, or undefined. */
export function setCookie(response: HttpsResponse, name: string): string | undefined {
  const all = response.headers['set-cookie'] ?? [];
  for (const line of Array.isArray(all) ? all : [all]) {
    const match = new RegExp(`^${name}=([^;]*)`).exec(line);
    if (match !== null) return match[1];
  }
  return undefined;
}

/**
 * Fills the login page's form as a browser would: GET the login URL (the one a proxy redirected to), then POST the
 * form with its CSRF token and secret cookie. Answers the POST's response and the token cookie it set.
 */
export async function formLogin(loginUrl: string, caFile: string, username: string, password: string): Promise<{ response: HttpsResponse; token: string | undefined }> {
  const shown = await httpsRequest(loginUrl, { caFile, headers: { accept: 'text/html' } });
  assert.equal(shown.status, 200, shown.body);
  const hidden = (name: string) => new RegExp(`name="${name}" value="([^"]*)"`).exec(shown.body)?.[1];
  const csrf = hidden('_csrf');
  const rd = hidden('rd');
  const secret = setCookie(shown, '__Host-mcias_csrf');
  assert.ok(csrf !== undefined && secret !== undefined, 'the login page gave no CSRF token');
  const form: Record<string, string> = { _csrf: csrf, username, password };
  // The page escapes & (html.ts); a browser would send it back unescaped.
  if (rd !== undefined) form['rd'] = rd.replaceAll('&#38;', '&');
  const response = await httpsRequest(`${new URL(loginUrl).origin}/login`, { caFile, form, headers: { cookie: `__Host-mcias_csrf=${secret}` } });
  return { response, token: setCookie(response, 'mcias_token') };
}
